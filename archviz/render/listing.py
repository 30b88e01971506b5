"""`archviz list`: the zoo, one line per model."""

from __future__ import annotations

from rich import box
from rich.table import Table

from archviz.format import human, shape


DESCRIPTION_WIDTH = 72  # keeps each model on one line of a 120-column terminal


def zoo_table() -> Table:
    import archviz
    from archviz.spec.zoo import zoo_names

    table = Table(box=box.SIMPLE_HEAD, title="archviz zoo (specs/)", title_justify="left")
    for column, justify in (("Model", "left"), ("Input", "right"), ("Params", "right"), ("MACs", "right")):
        table.add_column(column, justify=justify, no_wrap=True)
    table.add_column("Description", no_wrap=True, overflow="ellipsis", max_width=DESCRIPTION_WIDTH)
    for name in zoo_names():
        report = archviz.inspect(name)
        first_sentence = report.description.split(". ")[0].split("; ")[0].strip()
        table.add_row(name, shape(report.input), human(report.totals.params), human(report.totals.macs),
                      first_sentence)
    return table
