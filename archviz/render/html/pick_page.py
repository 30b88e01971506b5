"""The page `archviz pick -o PAGE.html` writes: published top-1 against MACs (and against predicted latency with a
device), the Pareto front drawn, every point named, and the fitting models' table with each accuracy's citation.

One self-contained HTML file, like the report pages (render/html/page.py): the CSS, the plotly bundle and the page
script (pick.js) inline, the data as escaped JSON (render/html/data.py's script_json, render/pick.py's pick_dict).
Every text is escaped here with html.escape, or travels as JSON that the script escapes before plotly reads it.
"""

from __future__ import annotations

import html
from pathlib import Path

from archviz.analysis.pick import Pick, Row
from archviz.format import human, seconds_text, shape, size_bytes
from archviz.output import write_atomic
from archviz.render.html.data import script_json
from archviz.render.html.page import asset, page_head, plotly_js
from archviz.render.pick import budget_text, pick_dict

EXTRA_CSS = """
td.cite { font-size: 12px; min-width: 360px; max-width: 520px; white-space: normal; overflow-wrap: anywhere; }
tr.front td:first-child { font-weight: 600; }
"""


def write_pick_page(chosen: Pick, target: str | Path) -> Path:
    """Write the page to target, atomically; returns its path."""
    return write_atomic(target, pick_html(chosen))


def pick_html(chosen: Pick) -> str:
    """The page as text."""
    from archviz import __version__

    title = f"archviz pick: {budget_text(chosen.budget) or 'no budget'}"
    meta = (f"input {shape(chosen.options.input)} · batch {chosen.options.batch} · sources "
            f"{', '.join(chosen.sources)} · archviz {__version__}")
    latency_chart = '<div class="chart" id="chart-accuracy-latency"></div>' if chosen.options.device else ""
    body = f"""<header><h1>{html.escape(title)}</h1>
<p class="description">{len(chosen.fitting)} ImageNet classifiers fit, best published top-1 first; bold: on the
Pareto front of top-1 against MACs</p>
<p class="meta">{html.escape(meta)}</p></header>
<nav><a href="#front">Top-1 against cost</a><a href="#models">Models</a><a href="#sources">Sources</a></nav>
<main>
<section id="front"><h2>Published top-1 against cost</h2><p class="chart-tools"><label><input type="checkbox"
id="log-scale" checked> log scale for the cost axis</label></p><div class="charts">
<div class="chart" id="chart-accuracy-macs"></div>{latency_chart}</div>
<p class="muted">Each point is a model within the budget that has a published top-1 (hover for its citation); the
line joins the Pareto front: no other model has fewer MACs and a higher top-1. Models over the budget are in the
legend, hidden until clicked. tv: stands for torchvision:.</p></section>
<section id="models"><h2>Models within the budget</h2><div class="table-wrap">{_table(chosen)}</div></section>
<section id="sources"><h2>Sources</h2>{_sources(chosen)}</section>
</main>"""
    return f"""{page_head(title, css=EXTRA_CSS)}
<body>
{body}
<script type="application/json" id="archviz-data">{script_json(pick_dict(chosen))}</script>
<script>{plotly_js()}</script>
<script>{asset("pick.js")}</script>
</body>
</html>
"""


def _cell(text: str, *, numeric: bool = True, tag: str = "td", css: str = "") -> str:
    classes = " ".join(filter(None, ["num" if numeric else "", css]))
    attribute = f' class="{classes}"' if classes else ""
    return f"<{tag}{attribute}>{html.escape(text)}</{tag}>"


def _table(chosen: Pick) -> str:
    heads = ["Model", "Top-1 (%)", "Params", "MACs"]
    if chosen.options.memory:
        heads.append("Training memory" if chosen.options.optimizer else "Memory")
    if chosen.options.device:
        heads.append("Latency")
    heads += ["Front", "Top-1 from"]
    head = "".join(_cell(title, numeric=title not in ("Model", "Front", "Top-1 from"), tag="th") for title in heads)
    body = "".join(_row(chosen, row) for row in chosen.fitting)
    return f'<table id="pick-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _row(chosen: Pick, row: Row) -> str:
    accuracy = row.candidate.accuracy
    cells = [_cell(row.candidate.name, numeric=False), _cell("-" if accuracy is None else f"{accuracy.top1:.3f}"),
             _cell(f"{row.figures.params:,}"), _cell(human(row.figures.macs))]
    if chosen.options.memory:
        cells.append(_cell("-" if row.figures.memory_bytes is None else size_bytes(row.figures.memory_bytes)))
    if chosen.options.device:
        cells.append(_cell(("≥ " if row.figures.latency_partial else "") + seconds_text(row.figures.latency_s)))
    cells += [_cell("yes" if row.on_front else "", numeric=False), f'<td class="cite">{_citation(row)}</td>']
    attribute = ' class="front"' if row.on_front else ""
    return f"<tr{attribute}>{''.join(cells)}</tr>"


def _citation(row: Row) -> str:
    accuracy = row.candidate.accuracy
    note = html.escape(row.candidate.accuracy_note)
    if accuracy is None:
        return note
    recipe = (f' (<a href="{html.escape(accuracy.recipe)}">recipe</a>)'
              if accuracy.recipe.startswith("https://") else "")
    return f"torchvision {html.escape(accuracy.weights)}{recipe}, {html.escape(accuracy.source)}" + \
        (f"; {note}" if note else "")


def _sources(chosen: Pick) -> str:
    over = ", ".join(row.candidate.name for row in chosen.over_budget)
    twins = ", ".join(f"{zoo} = {twin}" for zoo, twin in chosen.twins)
    left = "".join(f"<li>{html.escape(item.candidate.name)}: {html.escape(item.reason)}</li>" for item in chosen.left)
    return (
        "<p>Top-1: ImageNet-1K acc@1 as torchvision publishes it in its weights' metadata (read from its installed "
        "models/*.py), per builder the best of its weights measured at the input's size, else the best at any size "
        "with that size named. A zoo model whose spec names a torchvision builder shares that network and its "
        "accuracy. timm's installed configs publish no top-1. Params, MACs (multiply-accumulates per image), memory "
        "and latency are archviz's own formulas at this input; latency is the roofline's prediction.</p>"
        + (f"<p>Zoo models listed once, under torchvision's name (the same networks): {html.escape(twins)}.</p>"
           if twins else "")
        + f"<p>Over the budget ({len(chosen.over_budget)}): {html.escape(over) or 'none'}.</p>"
        + (f"<p>Left out:</p><ul>{left}</ul>" if left else ""))
