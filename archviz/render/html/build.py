"""Building report files: inspect, draw the diagram views, render the page, write it atomically."""

from __future__ import annotations

import sys
from pathlib import Path

from archviz.analysis.report import Report
from archviz.output import OUTPUT_FOLDER, default_output, write_atomic
from archviz.render.html.page import DiagramViews, comparison_report_html, index_html, model_report_html, plotly_js

SHARED_PLOTLY = "plotly.min.js"  # the one copy of plotly.js beside pages written together (write_zoo)


def _inspect(model: str, **options) -> Report:
    import archviz

    return archviz.inspect(model, **options)


def diagram_views(report: Report) -> DiagramViews | None:
    """The diagram's views, or None (with a note on stderr) when Graphviz's `dot` is not installed."""
    from archviz.errors import MissingDependencyError

    try:
        from archviz.render.html.diagrams import views_for
    except ImportError:
        return None
    try:
        return views_for(report)
    except MissingDependencyError as error:
        print(f"archviz: note: report without a diagram: {error}", file=sys.stderr)
        return None


def write_model_report(model: str, output: str | Path | None, *, run: str | Path | None = None, **options) -> Path:
    """The report of `model`; with `run` (a run folder of archviz train), of the graph that run trained, with the
    run's sections (render/html/run_section.py)."""
    view = None
    if run is not None:
        from archviz.inside.run import look_inside_run

        view = look_inside_run(run, model)
        options = {key: value for key, value in options.items() if key not in ("input", "overrides", "kwargs")}
        model = view.trained.graph
    report = _inspect(model, **options)
    target = Path(output) if output else default_output([report.model], ".html", run=run)
    paper = published_check(model, report, options) if run is None else None
    return write_atomic(target, model_report_html(report, views=diagram_views(report), run=view, paper=paper))


def published_check(model, report: Report, options: dict):
    """`archviz paper`'s comparison for a zoo model or spec file with published figures, reported as its source
    built it (its own input and parameters: the figures are of that network); None otherwise."""
    from archviz.analysis.papers import check_paper
    from archviz.spec.zoo import load_spec, zoo_names

    if options.get("input") or options.get("overrides") or not isinstance(model, str):
        return None
    if model not in zoo_names() and not model.endswith((".yaml", ".yml")):
        return None
    spec = load_spec(model)
    return check_paper(report, spec.published, source=spec.source) if spec.published else None


def write_comparison_of(reports: list[Report], output: str | Path | None, *, links: list[str] | None = None) -> Path:
    target = Path(output) if output else default_output([r.model for r in reports], ".html")
    views = [diagram_views(r) for r in reports] if len(reports) <= 3 else None
    return write_atomic(target, comparison_report_html(reports, views=views, links=links))


def write_comparison(models: list[str], output: str | Path | None, **options) -> Path:
    return write_comparison_of([_inspect(m, **options) for m in models], output)


def write_zoo(folder: str | Path | None, **options) -> list[Path]:
    """One report per zoo model, index.html linking them, and the plotly.min.js they share (all in `folder`,
    reports/ by default): a page of the folder works offline beside it, without carrying its own 4.8 MB copy."""
    from archviz.spec.zoo import zoo_names

    folder = Path(folder) if folder else OUTPUT_FOLDER
    written, reports = [write_atomic(folder / SHARED_PLOTLY, plotly_js())], []
    for name in zoo_names():
        report = _inspect(name, **options)
        reports.append(report)
        page = model_report_html(report, views=diagram_views(report), plotly=SHARED_PLOTLY,
                                 paper=published_check(name, report, options))
        written.append(write_atomic(folder / f"{name}.html", page))
    pages = written[1:]
    written.append(write_atomic(folder / "index.html", index_html(reports, [p.name for p in pages])))
    return written
