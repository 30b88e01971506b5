"""The report's "Published figures" section: `archviz paper`'s comparison (analysis/papers.py) as a table, drawn
when the page is written (no script): each figure the source printed beside archviz's, its verdict, and under it the
citation and every reason, with the arithmetic."""

from __future__ import annotations

import html

from archviz.analysis.papers import PaperCheck, PaperRow, Verdict
from archviz.render.paper import figure_name, verdict_summary

PAPER_CSS = """
.paper-table td.reasons { white-space: normal; max-width: 60ch; }
.paper-table .verdict-rounding { color: #8a5a00; font-weight: 600; }
"""
_VERDICT_CLASS = {Verdict.EXACT: "verdict-ok", Verdict.ROUNDING: "verdict-rounding", Verdict.DIFFERS: "verdict-bad"}


def paper_nav(check: PaperCheck | None) -> str:
    return '<a href="#published">Published</a>' if check is not None else ""


def paper_section(check: PaperCheck | None) -> str:
    if check is None:
        return ""
    counts = verdict_summary(check)
    source = f" ({html.escape(check.source)})" if check.source else ""
    rows = "".join(_row(row) for row in check.rows)
    return (f'<section id="published"><h2>Published figures</h2><p>Each figure its source printed{source}, beside '
            f"archviz's count: {html.escape(counts)}. Within the rounding: within half a unit of the last printed "
            "digit. MACs are multiply-accumulates; a paper's \"FLOPs\" are often MACs.</p>"
            '<div class="table-wrap"><table class="paper-table"><thead><tr><th>figure</th><th class="num">published'
            '</th><th class="num">archviz</th><th>verdict</th><th>source and reasons</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div></section>")


def _row(row: PaperRow) -> str:
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in row.reasons)
    notes = f'<span class="muted">{html.escape(row.source)}</span>' + (f"<ul>{reasons}</ul>" if reasons else "")
    return (f"<tr><td>{html.escape(figure_name(row))}</td><td class=\"num\">{html.escape(row.printed)}</td>"
            f'<td class="num">{html.escape(row.computed_text)}</td>'
            f'<td class="{_VERDICT_CLASS[row.verdict]}">{html.escape(row.verdict.value)}</td>'
            f'<td class="reasons">{notes}</td></tr>')
