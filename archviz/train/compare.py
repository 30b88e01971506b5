"""`archviz compare` and `archviz sweep`: several training runs under the same settings, one table.

compare trains each model with the same settings and seed (and, with a time budget, the same seconds of training)
and sets its accuracy beside its cost by formula (params and MACs from archviz.inspect of the graph it trained).
sweep trains one model over a grid of learning rates and batch sizes, sorts the runs by validation loss (the
criterion of best.pt) and gives the best settings as the `archviz train` command that reproduces them.
Each run keeps its own folder under the comparison's, with the files `archviz train` writes; compare also writes
compare.html there (accuracy against MACs and params, learning curves, per-class reports: render/html/compare_runs.py).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from archviz.errors import ArchvizError
from archviz.format import slug
from archviz.output import write_atomic
from archviz.train.options import TrainOptions
from archviz.train.run import RunResult

COLUMNS = ("run", "params", "macs", "epochs", "best_val_accuracy", "best_val_loss", "test_accuracy",
           "last_test_accuracy", "train_seconds", "images_per_second", "peak_memory_bytes")


@dataclass(frozen=True)
class Row:
    run: str  # the model (compare) or the settings (sweep)
    params: int
    macs: int  # per image, at the input the model was trained at
    epochs: int
    best_val_accuracy: float  # the highest of any epoch
    best_val_loss: float  # best.pt's
    test_accuracy: float  # best.pt's
    last_test_accuracy: float  # the final weights'
    train_seconds: float
    images_per_second: float
    peak_memory_bytes: int  # tensors alive at once: CUDA over the run, the CPU in a training step (memory.py)
    folder: str
    options: dict  # the settings that differ between runs (sweep)

    def as_dict(self) -> dict:
        return {**{key: getattr(self, key) for key in COLUMNS}, "folder": self.folder, "options": self.options}


def row_of(name: str, result: RunResult, options: dict | None = None) -> Row:
    import archviz

    totals = archviz.inspect(result.graph).totals
    best_loss = min(row["val_loss"] for row in result.history if row["epoch"] == result.best_epoch)
    return Row(name, totals.params, totals.macs_per_image, len(result.history),
               max(row["val_accuracy"] for row in result.history), best_loss, result.test_accuracy,
               result.last_test_accuracy, result.train_seconds, result.images_per_second, result.peak_memory_bytes,
               str(result.folder), dict(options or {}))


def compare(models: list[str], *, dataset: str = "digits", output: str | Path | None = None,
            time_budget: float | None = None, progress: bool | None = None, announce: Callable[[str], None] = print,
            html: str | Path | bool | None = None, **options) -> list[Row]:
    """Train every model with the same options; one Row each, in the order given. html: the comparison page's file
    (None: compare.html in the output folder, written when plotly is installed; False: none).

    >>> rows = compare(["mlp", "lenet"], dataset="digits", epochs=1, progress=False)  # doctest: +SKIP
    """
    from archviz.train.distributed import is_main_process
    from archviz.train.loop import train

    if len(models) < 2:
        raise ArchvizError("compare needs at least two models, e.g. archviz compare mlp lenet --dataset digits")
    if len(set(models)) != len(models):
        raise ArchvizError(f"compare: a model is named twice in {', '.join(models)}")
    folder = Path(output) if output is not None else _default("compare", dataset)
    page = _page_target(folder, html)
    main = is_main_process()  # under torchrun only rank 0 announces and writes
    say = announce if main else (lambda text: None)
    rows, results = [], []
    for index, model in enumerate(models, 1):
        say(f"== [{index}/{len(models)}] {model}")
        result = train(model, dataset=dataset, output=folder / _safe(model), progress=progress,
                       time_budget=time_budget, **options)
        rows.append(row_of(model, result))
        results.append(result)
    if main:
        _write(folder, "compare", rows)
        if page is not None:
            from archviz.render.html.compare_runs import write_training_comparison

            say(f"wrote {write_training_comparison(page, rows, results)}")
    return rows


def _page_target(folder: Path, html: str | Path | bool | None) -> Path | None:
    """Where compare's HTML page goes; checked before any training, so that a missing plotly fails early."""
    if html is False:
        return None
    from archviz.errors import MissingDependencyError
    from archviz.render.html.page import plotly_js

    try:
        plotly_js()
    except MissingDependencyError:
        if html is None:
            return None  # the page is a bonus here; the table and the CSV are the results
        raise
    return folder / "compare.html" if html is None or html is True else Path(html)


def sweep(model: str, *, dataset: str = "digits", lrs: list[float], batch_sizes: list[int],
          output: str | Path | None = None, progress: bool | None = None, announce: Callable[[str], None] = print,
          **options) -> list[Row]:
    """Train model over every (lr, batch size) pair; the rows sorted best first (lowest validation loss)."""
    from archviz.train.distributed import is_main_process
    from archviz.train.loop import train

    if not lrs or not batch_sizes:
        raise ArchvizError("sweep needs at least one --lr and one --batch-size value")
    for name in ("lr", "batch_size"):  # the grid's own; a TrainOptions' None for them is left out
        if options.pop(name, None) is not None:
            raise ArchvizError(f"sweep: give --{name.replace('_', '-')} as the grid's list (lrs=, batch_sizes=)")
    folder = Path(output) if output is not None else _default(f"sweep-{_safe(model)}", dataset)
    grid = list(itertools.product(lrs, batch_sizes))
    rows = []
    main = is_main_process()
    for index, (lr, batch_size) in enumerate(grid, 1):
        name = f"lr={lr:g} batch={batch_size}"
        if main:
            announce(f"== [{index}/{len(grid)}] {model} {name}")
        result = train(model, dataset=dataset, output=folder / f"lr{lr:g}-batch{batch_size}", progress=progress,
                       lr=lr, batch_size=batch_size, **options)
        rows.append(row_of(name, result, {"lr": lr, "batch_size": batch_size}))
    rows.sort(key=lambda row: (row.best_val_loss, -row.best_val_accuracy))
    if main:
        _write(folder, "sweep", rows)
    return rows


def train_command(model: str, row: Row, options: TrainOptions) -> str:
    """The `archviz train` command that reproduces a sweep's row: every option the sweep ran with, and the row's."""
    return " ".join(["archviz", "train", model, *options.but(**row.options).flags()])


def table(rows: list[Row], *, title: str):
    """The rows as a rich Table."""
    from rich.table import Table

    from archviz.format import human, size_bytes

    view = Table(title=title, title_justify="left", box=None, header_style="bold")
    for name, justify in (("run", "left"), ("params", "right"), ("MACs", "right"), ("epochs", "right"),
                          ("best val acc", "right"), ("test acc", "right"), ("final test acc", "right"),
                          ("train s", "right"), ("images/s", "right"), ("peak memory", "right")):
        view.add_column(name, justify=justify)
    for row in rows:
        view.add_row(row.run, f"{row.params:,}", human(row.macs), str(row.epochs), f"{row.best_val_accuracy:.2%}",
                     f"{row.test_accuracy:.2%}", f"{row.last_test_accuracy:.2%}", f"{row.train_seconds:.1f}",
                     f"{row.images_per_second:,.0f}", size_bytes(row.peak_memory_bytes))
    return view


def _write(folder: Path, kind: str, rows: list[Row]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_dict())
    write_atomic(folder / f"{kind}.csv", buffer.getvalue())
    write_atomic(folder / f"{kind}.json", json.dumps([row.as_dict() for row in rows], indent=1) + "\n")


def _default(stem: str, dataset: str) -> Path:
    return Path("runs") / f"{stem}-{slug(dataset.partition(':')[0], fallback='data')}-{time.strftime('%Y%m%d-%H%M%S')}"


def _safe(name: str) -> str:
    """A model's folder name inside the comparison's folder, never a path."""
    return slug(Path(name).stem if name.endswith((".yaml", ".yml")) else name)


def parse_list(text: str, kind: type, option: str) -> list:
    """'1e-3,3e-3' -> [0.001, 0.003]."""
    values = []
    for part in text.split(","):
        try:
            values.append(kind(part.strip()))
        except ValueError:
            what, example = ("an integer", "32,64") if kind is int else ("a number", "1e-3,3e-3")
            raise ArchvizError(f"{option} {text!r}: {part.strip()!r} is not {what}; give a comma-separated list such "
                               f"as {example}") from None
    return values
