"""Self-contained HTML pages: one model's report, a comparison of several, and an index of reports.

Each page carries everything it needs (CSS, the plotly library once, the page script, the data as JSON), so it works
offline from file://. Text from a spec is escaped here with html.escape, and travels to the script as escaped JSON
(render/html/data.py).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

from archviz.analysis.report import CONVENTIONS, Report
from archviz.format import shape
from archviz.render.html.data import model_data, script_json

if TYPE_CHECKING:
    from archviz.analysis.papers import PaperCheck
    from archviz.inside.run import RunView


@dataclass(frozen=True)
class DiagramViews:
    """Pre-rendered SVGs of one model's diagram, one per fold state, and which click switches to which view."""

    default: str
    svgs: dict[str, str]  # view id -> SVG text
    toggles: dict[str, dict[str, str]] = field(default_factory=dict)  # view id -> {group path -> view id}
    costs: dict[str, dict] = field(default_factory=dict)  # cost -> each view's fills and key (diagrams.py)
    merged: dict[str, list[str]] = field(default_factory=dict)  # a merged run's node id -> the groups it holds


def asset(name: str) -> str:
    return resources.files("archviz.render.html").joinpath(name).read_text(encoding="utf-8")


def plotly_js() -> str:
    """The plotly.js bundle shipped inside the plotly Python package (read as a file: plotly is not imported)."""
    from archviz.errors import MissingDependencyError

    try:
        bundle = resources.files("plotly").joinpath("package_data", "plotly.min.js")
        return bundle.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        raise MissingDependencyError("HTML reports need plotly: pip install 'archviz[report]'") from None


def _page(title: str, body: str, data: dict, *, scripts: tuple[str, ...] = (), css: str = "",
          plotly: str | None = None) -> str:
    """plotly: the address of a plotly.min.js that pages written together share (write_zoo); None inlines it."""
    from archviz import __version__

    data = {**data, "archviz_version": __version__}
    library = f'<script src="{html.escape(plotly)}"></script>' if plotly else f"<script>{plotly_js()}</script>"
    script_blocks = "\n".join([library, *(f"<script>{s}</script>" for s in (*scripts, asset("report.js")))])
    return f"""{page_head(title, css=css)}
<body>
{body}
<aside id="explain-panel" hidden></aside>
<script type="application/json" id="archviz-data">{script_json(data)}</script>
{script_blocks}
</body>
</html>
"""


def page_head(title: str, *, css: str = "") -> str:
    """The document's start up to </head>: charset, viewport, generator, title, and the report CSS with `css`."""
    from archviz import __version__

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="archviz {__version__}">
<title>{html.escape(title)}</title>
<style>{asset("report.css")}{css}</style>
</head>"""


def _header(title: str, description: str, meta: str) -> str:
    return (f'<header><h1>{html.escape(title)}</h1><p class="description">{html.escape(description)}</p>'
            f'<p class="meta">{html.escape(meta)}</p></header>')


def _diagram_section(views: DiagramViews | None) -> str:
    """The diagram as a tool (render/html/diagram.js): a toolbar (find a layer, colour by a cost, zoom, fit, fold
    all), the key of the colours, the views in a frame the script zooms and pans, and the panel of the selected
    layer beside it (below it on a phone)."""
    if views is None:
        return ""
    blocks = "\n".join(
        f'<div class="diagram-view" data-view="{html.escape(view)}"{"" if view == views.default else " hidden"}>'
        f"{svg}</div>"
        for view, svg in views.svgs.items()
    )
    colours = '<option value="kind">kind of layer</option>' + "".join(
        f'<option value="{html.escape(cost)}">{html.escape(data["title"])}</option>'
        for cost, data in views.costs.items())
    return f"""<section id="diagram"><h2>Diagram</h2>
<div class="diagram-tools">
<input id="diagram-search" type="search" aria-label="Find a layer in the diagram" autocomplete="off"
placeholder="Find a layer by name" title="Typing jumps to the first match, Enter to the next"><span id="diagram-found" class="muted" aria-live="polite"></span>
<label>Colour by <select id="diagram-colour">{colours}</select></label>
<span class="zoom"><button id="diagram-zoom-in" type="button" aria-label="zoom in" title="zoom in">+</button><button
id="diagram-zoom-out" type="button" aria-label="zoom out" title="zoom out">&minus;</button><button id="diagram-fit"
type="button" title="the whole diagram">Fit</button></span>
<button id="diagram-reset" type="button">Fold all</button></div>
<div id="diagram-key" hidden></div>
<p id="diagram-wheel-hint" class="muted" hidden>Click the diagram (or hold Ctrl) to zoom with the wheel; the wheel
scrolls the page until then.</p>
<div class="diagram-body"><div id="diagram-frame">
{blocks}
</div><aside id="diagram-panel" aria-label="the selected layer" hidden></aside></div>
<p class="muted">Drag to pan; + and &minus;, or the wheel once you have clicked the diagram (or with Ctrl), to zoom
(pinch on a phone). Click a block (blue border) to
open it, an open block's frame to fold it, a layer for its figures and arithmetic.</p>
</section>"""


def model_report_html(report: Report, *, views: DiagramViews | None = None, run: RunView | None = None,
                      plotly: str | None = None, paper: PaperCheck | None = None) -> str:
    """One model: summary cards, diagram, sortable layer table, charts, cross-check, each layer's arithmetic; with
    `run`, first the training run's curves, per-class report, filters, activations and class-activation maps; with
    `paper`, its published figures beside archviz's (render/html/paper_section.py).
    plotly: the address of a shared plotly.min.js (None: the page carries its own copy)."""
    from archviz.render.html.paper_section import PAPER_CSS, paper_nav, paper_section

    run_nav = run_body = ""
    if run is not None:
        run_nav, run_body, run_json = _run_parts(run)
    meta = (f"input {shape(report.input)} · batch {report.batch} · {report.dtype.value} · "
            f"{report.totals.layers} layers")
    roofline = '<div class="chart" id="chart-roofline"></div>' if report.latency is not None else ""
    body = f"""{_header(f"archviz: {report.model}", report.description, meta)}
<nav>{run_nav}<a href="#summary">Summary</a><a href="#diagram">Diagram</a><a href="#layers">Layers</a>
<a href="#charts">Charts</a><a href="#crosscheck">Cross-check</a>{paper_nav(paper)}
<a href="#conventions">Conventions</a></nav>
<main>
{run_body}
<section id="summary"><div id="cards" class="cards"></div></section>
{_diagram_section(views)}
<section id="layers"><h2>Layers</h2>
<div class="table-tools"><input id="layer-filter" type="search" aria-label="Filter the layers"
placeholder="Filter by name (layer3, conv2); type:conv2d by type">
<span id="layer-count" class="muted"></span><span class="muted">Click a column to sort, a row for its arithmetic
(Escape closes it).</span></div>
<div class="table-wrap"><table id="layer-table"></table></div></section>
<section id="charts"><h2>Charts</h2>
<p class="chart-tools"><label>Per-layer charts: <select id="chart-scope"></select></label></p><div class="charts">
<div class="chart" id="chart-params"></div><div class="chart" id="chart-macs"></div>
<div class="chart" id="chart-memory"></div><div class="chart" id="chart-cumulative"></div>
<div class="chart" id="chart-rf"></div>{roofline}</div></section>
<section id="crosscheck"><h2>Cross-check</h2><div id="crosscheck-body"></div></section>
{paper_section(paper)}
<section id="conventions"><h2>Conventions</h2><p>{html.escape(CONVENTIONS)}</p></section>
</main>"""
    data = {"kind": "model", "models": [model_data(report)]}
    css = PAPER_CSS if paper is not None else ""
    scripts = (asset("diagram.js"),)
    if views is not None:
        data["diagram"] = {"default": views.default, "toggles": views.toggles, "costs": views.costs,
                           "merged": views.merged}
    if run is None:
        return _page(f"archviz: {report.model}", body, data, scripts=scripts, css=css, plotly=plotly)
    from archviz.render.html.run_section import RUN_CSS
    from archviz.render.html.walkthrough_section import WALK_CSS

    return _page(f"archviz: {report.model}", body, {**data, "run": run_json},
                 scripts=(*scripts, asset("run.js"), asset("walkthrough.js")), css=RUN_CSS + WALK_CSS + css,
                 plotly=plotly)


def _run_parts(run) -> tuple[str, str, dict]:
    """(navigation links, sections, chart data) of a training run (RunView) or a pretext run (PretextView)."""
    from archviz.pretrain.view import PretextView

    if isinstance(run, PretextView):
        from archviz.render.html.pretext_section import pretext_data, pretext_nav, pretext_sections

        return pretext_nav(), pretext_sections(run), pretext_data(run)
    from archviz.render.html.run_section import run_data, run_nav, run_sections
    from archviz.render.html.walkthrough_section import walkthrough_parts

    walk_nav, walk_section, walk_data = walkthrough_parts(run)  # the interactive walkthrough of one value
    return run_nav() + walk_nav, run_sections(run) + walk_section, {**run_data(run), **walk_data}


def _comparison_table(reports: list[Report]) -> str:
    from archviz.format import exact, human, size_bytes

    rows = [
        ("Input", [shape(r.input) for r in reports]),
        ("Params", [f"{exact(r.totals.params)} ({human(r.totals.params)})" for r in reports]),
        ("Param memory", [size_bytes(r.totals.param_bytes) for r in reports]),
        ("MACs", [f"{exact(r.totals.macs)} ({human(r.totals.macs)})" for r in reports]),
        ("FLOPs", [human(r.totals.flops) for r in reports]),
        ("Peak activation memory", [size_bytes(r.totals.peak_activation_bytes) for r in reports]),
        ("All outputs (training)", [size_bytes(r.totals.activation_bytes) for r in reports]),
        ("Depth (weight layers)", [str(r.totals.depth) for r in reports]),
        ("Layers", [str(r.totals.layers) for r in reports]),
        ("Receptive field (last map)", [_field_cell(r) for r in reports]),
    ]
    head = "".join(f'<th class="num">{html.escape(r.model)}</th>' for r in reports)
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>" + "".join(f'<td class="num">{html.escape(v)}</td>' for v in values) + "</tr>"
        for label, values in rows
    )
    return f'<table id="compare-table"><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>'


def _field_cell(report: Report) -> str:
    """'212 px at features.30': the last spatial layer's field (render/table.py field_headline has the full line)."""
    from archviz.format import field_text

    spatial = report.totals.last_spatial_field
    if spatial is None:
        return field_text(report.layers[-1].receptive_field)
    return f"{field_text(spatial.size)} px at {spatial.layer}"


def _stage_table(diff) -> str:
    from archviz.render.diff import STAGE_COLUMNS, stage_rows

    def cell(tag: str, index: int, text: str) -> str:
        numeric = ' class="num"' if index >= 2 else ""  # Stage and Model are text; the rest are figures
        return f"<{tag}{numeric}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", i, title) for i, title in enumerate(STAGE_COLUMNS))
    rows = "".join(
        "<tr>" + "".join(cell("td", i, text) for i, text in enumerate(row)) + "</tr>"
        for stage in stage_rows(diff) for row in stage
    )
    return f'<table id="stage-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def comparison_report_html(reports: list[Report], *, views: list[DiagramViews | None] | None = None,
                           links: list[str] | None = None, related: dict[str, str] | None = None) -> str:
    """Several models side by side: a table of totals, charts, and for two models the stages aligned and charted.
    related: {title: address} of pages about the same models (the training comparison of `archviz compare`)."""
    from archviz.analysis.diff import diff_reports
    from archviz.render.diff import alignment_text, diff_dict

    names = ", ".join(r.model for r in reports)
    data: dict = {"kind": "compare", "models": [model_data(r) for r in reports]}
    two = ""
    if len(reports) == 2:
        diff = diff_reports(*reports)
        data["stages"] = diff_dict(diff)["stages"]
        summary = "".join(f"<li>{html.escape(line)}</li>" for line in diff.summary)
        two = f"""<section id="differences"><h2>What differs</h2><ul>{summary}</ul></section>
<section id="stages"><h2>Stages, {alignment_text(diff)}</h2>{_stage_table(diff)}
<div class="charts"><div class="chart" id="chart-stage-params"></div><div class="chart" id="chart-stage-macs"></div></div>
</section>"""
    diagrams = ""
    if views and any(v is not None for v in views):
        cells = "".join(
            f'<div><h3>{html.escape(r.model)}</h3><div class="diagram-view">{v.svgs[v.default] if v else ""}</div></div>'
            for r, v in zip(reports, views)
        )
        diagrams = f'<section id="diagram"><h2>Diagrams</h2><div class="side-by-side">{cells}</div></section>'
    link_list = ""
    if links:
        items = "".join(f'<li><a href="{html.escape(link)}">{html.escape(r.model)}</a></li>'
                        for r, link in zip(reports, links))
        link_list = f"<section><h2>Reports</h2><ul>{items}</ul></section>"
    related_nav = ""
    if related:
        related_nav = "<nav>" + "".join(f'<a href="{html.escape(address)}">{html.escape(title)}</a>'
                                        for title, address in related.items()) + "</nav>"
    body = f"""{_header(f"archviz: {names}", f"{len(reports)} architectures side by side", CONVENTIONS)}{related_nav}
<main>
<section id="summary"><h2>Totals</h2><div class="table-wrap">{_comparison_table(reports)}</div></section>
{two}
<section id="charts"><h2>Charts</h2>
<p class="chart-tools"><label><input type="checkbox" id="log-scale"> log scale (linear by default: a bar's height is
its value)</label></p><div class="charts">
<div class="chart" id="chart-scatter"></div><div class="chart" id="chart-params"></div>
<div class="chart" id="chart-macs"></div><div class="chart" id="chart-memory"></div><div class="chart" id="chart-depth"></div>
</div></section>
{diagrams}
{link_list}
</main>"""
    return _page(f"archviz: {names}", body, data, scripts=(asset("compare.js"),))


def index_html(reports: list[Report], links: list[str]) -> str:
    """A page linking one report per model, with each model's key figures."""
    from archviz.format import human, size_bytes

    rows = "".join(
        f'<tr><td><a href="{html.escape(link)}">{html.escape(r.model)}</a></td><td class="num">{shape(r.input)}</td>'
        f'<td class="num">{human(r.totals.params)}</td><td class="num">{human(r.totals.macs)}</td>'
        f'<td class="num">{size_bytes(r.totals.peak_activation_bytes)}</td><td class="num">{r.totals.depth}</td>'
        f'<td class="description">{html.escape(r.description)}</td></tr>'
        for r, link in zip(reports, links)
    )
    head = "".join(f"<th>{t}</th>" for t in ("Model", "Input", "Params", "MACs", "Peak memory", "Depth", "Description"))
    body = f"""{_header("archviz zoo", f"{len(reports)} architectures, one report each", CONVENTIONS)}
<main><section><div class="scroll-x"><table id="index-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>
</table></div></section></main>"""
    return f"""{page_head("archviz zoo")}
<body>{body}</body></html>
"""
