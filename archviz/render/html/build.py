"""Building report files: inspect, draw the diagram views, render the page, write it atomically."""

from __future__ import annotations

import sys
from pathlib import Path

from archviz.analysis.report import Report
from archviz.format import slug
from archviz.output import write_atomic
from archviz.render.html.page import DiagramViews, comparison_report_html, index_html, model_report_html

DEFAULT_FOLDER = Path("reports")


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
    target = Path(output) if output else DEFAULT_FOLDER / f"{slug(report.model)}.html"
    return write_atomic(target, model_report_html(report, views=diagram_views(report), run=view))


def write_comparison_of(reports: list[Report], output: str | Path | None, *, links: list[str] | None = None) -> Path:
    target = Path(output) if output else DEFAULT_FOLDER / f"{slug('-vs-'.join(slug(r.model) for r in reports))}.html"
    views = [diagram_views(r) for r in reports] if len(reports) <= 3 else None
    return write_atomic(target, comparison_report_html(reports, views=views, links=links))


def write_comparison(models: list[str], output: str | Path | None, **options) -> Path:
    return write_comparison_of([_inspect(m, **options) for m in models], output)


def write_zoo(folder: str | Path, **options) -> list[Path]:
    """One report per zoo model and index.html linking them (all in `folder`)."""
    from archviz.spec.zoo import zoo_names

    folder = Path(folder)
    written, reports = [], []
    for name in zoo_names():
        report = _inspect(name, **options)
        reports.append(report)
        written.append(write_atomic(folder / f"{name}.html", model_report_html(report, views=diagram_views(report))))
    written.append(write_atomic(folder / "index.html", index_html(reports, [p.name for p in written])))
    return written
