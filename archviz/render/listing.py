"""`archviz list`: the zoo, one line per model, as plain aligned text (rich would double the command's time)."""

from __future__ import annotations

from archviz.format import human, shape

HEADERS = ("Model", "Input", "Params", "MACs", "Description")
MIN_DESCRIPTION = 20  # narrower than this and the description is dropped rather than cut to a stub


def zoo_listing(*, width: int) -> str:
    """The zoo as text at most width columns wide (the description is cut to fit).

    >>> zoo_listing(width=100).splitlines()[0].split()
    ['Model', 'Input', 'Params', 'MACs', 'Description']
    """
    from archviz.analysis.zoo import zoo_summaries

    rows = [(row.name, shape(row.input_shape), human(row.params), human(row.macs), _first_sentence(row.description))
            for row in zoo_summaries()]
    widths = [max(len(HEADERS[i]), *(len(row[i]) for row in rows)) for i in range(4)]
    room = width - sum(widths) - 2 * 4
    return "\n".join(_line(cells, widths, room) for cells in [HEADERS, *rows]) + "\n"


def _line(cells: tuple[str, ...], widths: list[int], room: int) -> str:
    name, *numbers = (cells[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(cells[1:4], widths[1:])))
    text = "  ".join([name, *numbers])
    if room >= MIN_DESCRIPTION:
        description = cells[4] if len(cells[4]) <= room else cells[4][:room - 1] + "…"
        text += "  " + description
    return text.rstrip()


def _first_sentence(description: str) -> str:
    return description.split(". ")[0].split("; ")[0].strip()
