"""The page `archviz compare` writes: models trained under the same settings, their accuracy beside their cost.

One self-contained HTML file, like the report pages (render/html/page.py): the CSS, the plotly bundle and the page
script inline, the data as escaped JSON (render/html/data.py's script_json). Sections: the results table, test
accuracy against MACs and against params, learning curves (validation accuracy and loss per epoch, one line per
model), each model's per-class report on the test split, and links to the run folders and to the architecture
comparison of the trained graphs (the report page of `archviz report M1 M2`, written beside it, which links back).
Every text from a user (model names, spec paths, class folders) is escaped here with html.escape, or travels as JSON
that the script hands to plotly escaped.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from archviz.output import write_atomic
from archviz.render.html.data import script_json
from archviz.render.html.page import asset, page_head, plotly_js

if TYPE_CHECKING:
    from archviz.train.compare import Row
    from archviz.train.metrics import ClassReport
    from archviz.train.run import RunResult

HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


EXTRA_CSS = """
.class-reports { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 8px 24px; }
.class-reports h3 { margin: 8px 0 4px; font-size: 16px; }
tr.total td { border-top: 1px solid var(--muted); }
"""


def write_training_comparison(target: str | Path, rows: list[Row], results: list[RunResult]) -> Path:
    """Write the page to target and the architecture comparison of the trained graphs beside it (TARGET-architectures
    .html), each linking to the other; atomically. Returns the page's path."""
    import archviz
    from archviz.render.html.page import comparison_report_html

    target = Path(target)
    architectures = target.with_name(f"{target.stem}-architectures.html")
    reports = [archviz.inspect(result.graph) for result in results]
    write_atomic(architectures, comparison_report_html(reports, related={"Training comparison": quote(target.name)}))
    return write_atomic(target, training_comparison_html(rows, results, links_from=target.parent,
                                                         architectures=quote(architectures.name)))


def comparison_data(rows: list[Row], results: list[RunResult]) -> dict:
    """What the page's charts read: one entry per model, in the order trained."""
    return {"kind": "training", "models": [
        {"name": row.run, "params": row.params, "macs": row.macs, "test_accuracy": row.test_accuracy,
         "best_val_accuracy": row.best_val_accuracy, "images_per_second": row.images_per_second,
         "peak_memory_bytes": row.peak_memory_bytes,
         "history": [{key: entry[key] for key in HISTORY_KEYS} for entry in result.history]}
        for row, result in zip(rows, results)]}


def training_comparison_html(rows: list[Row], results: list[RunResult], *, links_from: Path | None = None,
                             architectures: str | None = None) -> str:
    """The page as text. links_from: the folder the page is written to, for relative links to the run folders;
    architectures: the address of the architecture comparison page, when there is one."""
    from archviz import __version__

    first = results[0]
    names = ", ".join(row.run for row in rows)
    settings = first.settings
    meta = (f"{first.dataset} · {settings.optimizer.value} lr {settings.lr:g}, weight decay "
            f"{settings.weight_decay:g}, {settings.schedule.value} schedule, batch {settings.batch_size}, seed "
            f"{settings.seed}, {'augmented' if settings.augment else 'no augmentation'} · archviz {__version__}")
    sections = [
        f'<section id="results"><h2>Results</h2><div class="table-wrap">{_results_table(rows, first.test_split)}'
        '</div><p class="muted">Test accuracy is best.pt\'s (the epoch of lowest validation loss); MACs per image at '
        "the input the model was trained at; peak memory: tensors alive at once (CUDA: over the run; CPU: in a "
        "training step, counted by archviz's live-storage tracker).</p></section>",
        '<section id="cost"><h2>Accuracy against cost</h2><p class="chart-tools"><label><input type="checkbox" '
        'id="log-scale"> log scale for the cost axes (linear by default)</label></p><div class="charts">'
        '<div class="chart" id="chart-accuracy-macs"></div><div class="chart" id="chart-accuracy-params"></div>'
        "</div></section>",
        '<section id="curves"><h2>Learning curves</h2><div class="charts">'
        '<div class="chart" id="chart-val-accuracy"></div><div class="chart" id="chart-loss"></div></div></section>',
        f'<section id="classes"><h2>Per-class reports ({html.escape(first.test_split)} split)</h2>'
        '<div class="class-reports">'
        + "".join(class_table(row.run, result.report) for row, result in zip(rows, results)) + "</div></section>",
        f'<section id="runs"><h2>Run folders</h2><ul>{_run_links(rows, links_from)}</ul></section>',
    ]
    architecture_link = (f'<a href="{html.escape(architectures)}">Architectures (layers, MACs, memory)</a>'
                         if architectures else "")
    body = f"""<header><h1>{html.escape(f"archviz compare: {names}")}</h1>
<p class="description">{len(rows)} models trained with the same settings and seed</p>
<p class="meta">{html.escape(meta)}</p></header>
<nav><a href="#results">Results</a><a href="#cost">Accuracy against cost</a><a href="#curves">Learning curves</a>
<a href="#classes">Per-class reports</a><a href="#runs">Run folders</a>{architecture_link}</nav>
<main>
{chr(10).join(sections)}
</main>"""
    return f"""{page_head(f"archviz compare: {names}", css=EXTRA_CSS)}
<body>
{body}
<script type="application/json" id="archviz-data">{script_json(comparison_data(rows, results))}</script>
<script>{plotly_js()}</script>
<script>{asset("compare_runs.js")}</script>
</body>
</html>
"""


def _cell(text: str, *, numeric: bool = True, tag: str = "td") -> str:
    attribute = ' class="num"' if numeric else ""
    return f"<{tag}{attribute}>{html.escape(text)}</{tag}>"


def _results_table(rows: list[Row], test_split: str) -> str:
    from archviz.format import human, size_bytes

    heads = ("Model", "Params", "MACs", "Epochs", "Best val acc", f"{test_split.capitalize()} acc",
             f"Final {test_split} acc", "Train s", "Images/s", "Peak memory")
    head = "".join(_cell(title, numeric=index > 0, tag="th") for index, title in enumerate(heads))
    body = "".join(
        "<tr>" + _cell(row.run, numeric=False) + "".join(_cell(text) for text in (
            f"{row.params:,}", human(row.macs), str(row.epochs), f"{row.best_val_accuracy:.2%}",
            f"{row.test_accuracy:.2%}", f"{row.last_test_accuracy:.2%}", f"{row.train_seconds:.1f}",
            f"{row.images_per_second:,.0f}", size_bytes(row.peak_memory_bytes))) + "</tr>"
        for row in rows)
    return f'<table id="results-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def class_table(model: str, report: ClassReport) -> str:
    heads = ("Class", "Precision", "Recall", "F1", "Support")
    head = "".join(_cell(title, numeric=index > 0, tag="th") for index, title in enumerate(heads))

    def line(name: str, precision: float, recall: float, f1: float, support: int) -> str:
        return ("<tr>" + _cell(name, numeric=False) + _cell(f"{precision:.3f}") + _cell(f"{recall:.3f}")
                + _cell(f"{f1:.3f}") + _cell(f"{support:,}") + "</tr>")

    body = "".join(line(r.name, r.precision, r.recall, r.f1, r.support) for r in report.rows)
    body += ('<tr class="total">' + _cell("accuracy", numeric=False) + _cell("") + _cell("")
             + _cell(f"{report.accuracy:.3f}") + _cell(f"{report.support:,}") + "</tr>")
    body += "".join(line(r.name, r.precision, r.recall, r.f1, r.support) for r in (report.macro, report.weighted))
    return (f'<div class="class-report"><h3>{html.escape(model)}</h3><div class="table-wrap">'
            f'<table class="class-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></div>')


def _run_links(rows: list[Row], links_from: Path | None) -> str:
    items = []
    for row in rows:
        folder = Path(row.folder)
        if links_from is not None:
            folder = Path(os.path.relpath(folder.resolve(), Path(links_from).resolve()))
        base = quote(folder.as_posix())
        files = " · ".join(f'<a href="{html.escape(f"{base}/{name}")}">{name}</a>'
                           for name in ("report.txt", "metrics.csv", "confusion.csv", "run.json"))
        items.append(f"<li><b>{html.escape(row.run)}</b>: {html.escape(row.folder)} ({files})</li>")
    return "".join(items)
