"""How archviz's results show themselves in Jupyter (`_repr_html_`, `_repr_svg_`) and in a terminal REPL (text).

A Report shows its totals and its layer table, each group a fold (<details>) with the group's totals on its line,
and its diagram where Graphviz is installed; a Diff its verdict, totals side by side, stages and summary; a Drawing
its SVG. The HTML is self-contained (inline styles, no script), so it survives a notebook saved and reopened.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path

from archviz.analysis.diff import IDENTICAL, Diff
from archviz.analysis.fold import Row, rows
from archviz.analysis.report import CONVENTIONS, Report
from archviz.errors import ArchvizError, MissingDependencyError
from archviz.format import exact, field_text, human, shape, size_bytes

TEXT_WIDTH = 110  # columns of the plain-text form
STYLE = (
    "<style>.archviz{font:13px/1.4 system-ui,sans-serif}.archviz table{border-collapse:collapse;margin:4px 0}"
    ".archviz td,.archviz th{padding:2px 10px;text-align:right;white-space:nowrap}"
    ".archviz td:first-child,.archviz th:first-child{text-align:left}.archviz th{border-bottom:1px solid #999}"
    ".archviz details>summary{cursor:pointer}.archviz .group{font-weight:600}.archviz .dim{color:#777}"
    ".archviz .layers{max-height:480px;overflow:auto}</style>"
)
LAYER_COLUMNS = ("Layer", "Type", "Output shape", "Params", "MACs", "Output memory")


def as_text(renderable, *, width: int = TEXT_WIDTH) -> str:
    """A rich renderable as plain text, as a terminal of `width` columns without colour would show it."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, color_system=None, record=True, force_jupyter=False)
    console.print(renderable)
    return console.export_text().rstrip() + "\n"


def report_text(report: Report) -> str:
    """The totals and the layer table folded to its top-level groups, as `archviz inspect --depth 1` prints."""
    from rich.console import Group

    from archviz.render.table import layer_table, totals_table

    return as_text(Group(layer_table(report, depth=1), totals_table(report)))


def report_html(report: Report, *, diagram: bool = True) -> str:
    parts = [STYLE, '<div class="archviz">', f"<b>{_e(report.model)}</b>: input {_e(shape(report.input))}",
             f" (batch {report.batch})" if report.batch > 1 else "", _totals_html(report), _layers_html(report)]
    if diagram:
        parts.append(_diagram_html(report))
    parts.append(f'<p class="dim">{_e(CONVENTIONS)}</p></div>')
    return "".join(parts)


def _totals_html(report: Report) -> str:
    t = report.totals
    rows_ = [("Params", f"{exact(t.params)} ({human(t.params)})"), ("Param memory", size_bytes(t.param_bytes)),
             ("MACs", f"{exact(t.macs)} ({human(t.macs)})"), ("FLOPs", human(t.flops)),
             ("Peak activation memory", f"{size_bytes(t.peak_activation_bytes)} (inference, at {t.peak_at})"),
             ("Depth", f"{t.depth} weight layers, {t.layers} layers in all")]
    if t.last_spatial_field is not None:
        rows_.append(("Receptive field", f"{field_text(t.last_spatial_field.size)} at {t.last_spatial_field.layer}"))
    if t.training_memory is not None:
        rows_.append(("Training step (predicted)", f"{size_bytes(t.training_memory.peak_bytes)} at its peak"))
    if t.uncounted:
        rows_.append(("Not counted", f"{len(t.uncounted)} layers without a formula: {', '.join(t.uncounted[:5])}"))
    body = "".join(f"<tr><td>{_e(name)}</td><td>{_e(value)}</td></tr>" for name, value in rows_)
    return f"<table>{body}</table>"


def _layers_html(report: Report) -> str:
    """Every layer, each group a fold opened by a click (closed by default), its totals on its line."""
    out = ['<details><summary>Layers</summary><div class="layers"><table><tr>',
           "".join(f"<th>{c}</th>" for c in LAYER_COLUMNS), "</tr>"]
    for row in rows(report):
        out.append(_row_html(row))
    out.append("</table></div></details>")
    return "".join(out)


def _row_html(row: Row) -> str:
    indent = "&nbsp;" * 4 * row.depth
    label = f"{row.label} ({row.layer_count} layers)" if row.is_group else row.label
    cells = (f"{indent}{_e(row.name.rpartition('.')[2] if row.depth else row.name)}", _e(label),
             _e(shape(row.out_shape)), exact(row.params), human(row.macs) if row.macs else "",
             size_bytes(row.activation_bytes))
    css = ' class="group"' if row.is_group else ""
    return f"<tr{css} title=\"{_e(row.name)}\">" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _diagram_html(report: Report) -> str:
    try:
        svg = Drawing.of(report).svg
    except MissingDependencyError as missing:
        return f'<p class="dim">No diagram: {_e(missing.message)}</p>'
    return f"<details><summary>Diagram</summary>{svg}</details>"


def diff_text(diff: Diff) -> str:
    from archviz.render.diff import diff_view

    return as_text(diff_view(diff))


def diff_html(diff: Diff) -> str:
    from archviz.render.diff import totals_table

    a, b = diff.a, diff.b
    verdict = IDENTICAL if diff.identical else f"not identical: {diff.difference}"
    totals = _table_html(totals_table(diff))
    stages = "".join(f"<tr><td>{_e(_stage_name(sa, sb))}</td><td>{_stage_cells(sa)}</td><td>{_stage_cells(sb)}</td>"
                     "</tr>" for sa, sb in diff.stages)
    summary = "".join(f"<li>{_e(line)}</li>" for line in diff.summary)
    return (f'{STYLE}<div class="archviz"><b>{_e(a.model)} vs {_e(b.model)}</b>: {_e(verdict)}{totals}'
            f"<table><tr><th>Stage</th><th>{_e(a.model)}</th><th>{_e(b.model)}</th></tr>{stages}</table>"
            f"<ul>{summary}</ul></div>")


def _stage_name(a, b) -> str:
    stage = a or b
    return stage.label if stage is not None else ""


def _stage_cells(stage) -> str:
    if stage is None:
        return "—"
    return _e(f"{stage.name or stage.label}: {stage.layers} layers, {human(stage.params)} params, "
              f"{human(stage.macs)} MACs")


def _table_html(table) -> str:
    """A rich Table's cells as an HTML table (headers, then rows)."""
    columns = table.columns
    head = "".join(f"<th>{_e(str(c.header))}</th>" for c in columns)
    cells = [list(c.cells) for c in columns]
    body = "".join("<tr>" + "".join(f"<td>{_e(str(column[i]))}</td>" for column in cells) + "</tr>"
                   for i in range(len(cells[0]) if cells else 0))
    return f"<table><tr>{head}</tr>{body}</table>"


@dataclass(frozen=True)
class Drawing:
    """A model's diagram as SVG: shown by Jupyter, saved by `save` (.svg, .png, .pdf or .dot by the extension)."""

    report: Report
    depth: int | None = None
    expand: bool = False
    style: str = "graph"  # "graph" (Graphviz) or "paper" (the layered figure of the papers)
    cost: str | None = None  # graph style: fill boxes by macs, params, memory or time (time: a report with a device)

    @classmethod
    def of(cls, report: Report, **options) -> "Drawing":
        return cls(report, **options)

    @property
    def svg(self) -> str:
        return self.data("svg").decode("utf-8")

    def data(self, fmt: str) -> bytes:
        if self.style == "paper":
            from archviz.diagram.paper import draw_paper

            if self.cost is not None:
                raise ArchvizError("colouring by a cost is for the graph style; the paper style draws shapes")
            return draw_paper(self.report.graph, fmt)
        if self.style != "graph":
            raise ArchvizError(f"style {self.style!r}: choose graph or paper")
        from archviz.diagram.render import draw

        return draw(self.report, fmt, depth=self.depth, expand=self.expand, cost=self.cost)

    def save(self, path: str | Path) -> Path:
        from archviz.output import write_atomic

        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in ("svg", "png", "pdf", "dot"):
            raise ArchvizError(f"{path}: cannot tell the format from the extension; use .svg, .png, .pdf or .dot")
        write_atomic(path, self.data(fmt))
        return path

    def _repr_svg_(self) -> str:
        return self.svg

    def __repr__(self) -> str:
        return f"<archviz drawing of {self.report.model} ({self.style}): .save('name.svg') writes it>"


def _e(text) -> str:
    return html.escape(str(text), quote=True)
