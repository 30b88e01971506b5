"""`archviz paper`: a PaperCheck as text (each published figure beside archviz's, its verdict and reasons) and as
JSON ({model, source, rows: [{quantity, layer, published, called, archviz, verdict, reasons, explained, source}]})."""

from __future__ import annotations

import textwrap

from archviz.analysis.papers import PaperCheck, PaperRow, Verdict
from archviz.spec.published import Quantity

_QUANTITY_NAMES = {Quantity.PARAMS: "params", Quantity.MACS: "MACs", Quantity.WEIGHT_MEMORY: "weight memory",
                   Quantity.OUTPUTS: "outputs"}
_MARKS = {Verdict.EXACT: "=", Verdict.ROUNDING: "~", Verdict.DIFFERS: "x"}


def paper_text(check: PaperCheck, *, width: int = 120) -> str:
    """One block per published figure: what, published, archviz, verdict; then its source and every reason."""
    lines = [f"{check.model} against its published figures: {verdict_summary(check)}", ""]
    figure_width = max(len(figure_name(row)) for row in check.rows)
    published_width = max(len(_published(row)) for row in check.rows)
    archviz_width = max(len(row.computed_text) for row in check.rows)
    for row in check.rows:
        lines.append(f"{_MARKS[row.verdict]} {figure_name(row):<{figure_width}}  {_published(row):>{published_width}}  "
                     f"archviz {row.computed_text:>{archviz_width}}  {row.verdict.value}")
        lines.extend(_wrapped(f"source: {row.source}", width))
        for reason in row.reasons:
            lines.extend(_wrapped(f"- {reason}", width))
    lines += ["", *textwrap.wrap("= exact, ~ within the paper's rounding (half a unit of its last printed digit), x "
                                 "differs. MACs are multiply-accumulates; FLOPs = 2 x MACs.", width=width)]
    return "\n".join(lines) + "\n"


def paper_dict(check: PaperCheck) -> dict:
    return {
        "model": check.model,
        "source": check.source,
        "rows": [{
            "quantity": row.quantity.value, "layer": row.layer, "published": row.printed, "called": row.called or None,
            "archviz": row.computed, "verdict": row.verdict.value, "reasons": list(row.reasons),
            "explained": row.explained, "source": row.source,
        } for row in check.rows],
    }


def verdict_summary(check: PaperCheck) -> str:
    """'1 exact, 1 within the paper's rounding, 2 differs': how many rows have each verdict, those with any."""
    counts = {verdict: sum(row.verdict == verdict for row in check.rows) for verdict in Verdict}
    return ", ".join(f"{n} {verdict.value}" for verdict, n in counts.items() if n)


def figure_name(row: PaperRow) -> str:
    name = _QUANTITY_NAMES[row.quantity]
    if row.called:
        name += f' ("{row.called}")'
    return f"{row.layer} {name}" if row.layer else name


def _published(row: PaperRow) -> str:
    return f"published {row.printed}"


def _wrapped(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent="    ", subsequent_indent="      ")
