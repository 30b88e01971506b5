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
import math
import statistics
from dataclasses import dataclass, field
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
    seeds: int = 1  # runs averaged (--seeds): the figures above are their means
    stds: dict = field(default_factory=dict)  # column -> standard deviation over the seeds (with seeds > 1)
    test_images: int = 0  # images of the test split (the binomial noise of test_accuracy)

    def as_dict(self) -> dict:
        return {**{key: getattr(self, key) for key in COLUMNS}, "folder": self.folder, "options": self.options,
                "seeds": self.seeds, "stds": self.stds, "test_images": self.test_images}

    def standard_error(self) -> float:
        """The standard error of test_accuracy: the test split's sampling (binomial, p(1 - p) / n) and, over
        several seeds, the seeds' spread (std^2 / seeds)."""
        p, n = self.test_accuracy, max(self.test_images, 1)
        return math.sqrt(p * (1 - p) / n + self.stds.get("test_accuracy", 0.0) ** 2 / self.seeds)


NOISE_SIGMAS = 2  # two runs whose test accuracies differ by less than 2 standard errors of the difference (~95%)


def within_noise(a: Row, b: Row) -> bool:
    """Whether a and b's test accuracies differ by less than NOISE_SIGMAS standard errors of their difference."""
    return abs(a.test_accuracy - b.test_accuracy) < NOISE_SIGMAS * math.hypot(a.standard_error(), b.standard_error())


def ranking(rows: list[Row]) -> list[str]:
    """Each row's rank by test accuracy, in the rows' order: "1", "2", ...; "1=" where a row is within noise of the
    row ranked just above it, so shares its rank.

    >>> a, b = (Row(n, 1, 1, 1, 0.9, 0.3, acc, acc, 1.0, 1.0, 0, "", {}, test_images=359) for n, acc in (
    ...     ("mlp", 0.983), ("lenet", 0.986)))
    >>> ranking([a, b])
    ['1=', '1']
    """
    order = sorted(range(len(rows)), key=lambda i: -rows[i].test_accuracy)
    ranks, labels, shared = {}, {}, set()
    for place, index in enumerate(order):
        above = order[place - 1] if place else None
        if above is not None and within_noise(rows[index], rows[above]):
            ranks[index] = ranks[above]
            shared |= {index, above}
        else:
            ranks[index] = place + 1
    for index in range(len(rows)):
        labels[index] = f"{ranks[index]}{'=' if index in shared and index != _first_of(ranks, index, order) else ''}"
    return [labels[i] for i in range(len(rows))]


def _first_of(ranks: dict, index: int, order: list[int]) -> int:
    return next(i for i in order if ranks[i] == ranks[index])


def noise_note(rows: list[Row]) -> str:
    """The line under compare's table that says what its rank column means."""
    seeds = rows[0].seeds if rows else 1
    spread = f" and {seeds} seeds' spread" if seeds > 1 else ""
    return (f"rank by test accuracy; n= shares rank n: within noise (under {NOISE_SIGMAS} standard errors, from "
            f"the test split's size{spread})")


def row_of(name: str, result: RunResult, options: dict | None = None) -> Row:
    import archviz

    totals = archviz.inspect(result.graph).totals
    best_loss = min(row["val_loss"] for row in result.history if row["epoch"] == result.best_epoch)
    return Row(name, totals.params, totals.macs_per_image, len(result.history),
               max(row["val_accuracy"] for row in result.history), best_loss, result.test_accuracy,
               result.last_test_accuracy, result.train_seconds, result.images_per_second, result.peak_memory_bytes,
               str(result.folder), dict(options or {}), test_images=result.report.support)


AVERAGED = ("epochs", "best_val_accuracy", "best_val_loss", "test_accuracy", "last_test_accuracy", "train_seconds",
            "images_per_second")


def mean_row(name: str, results: list[RunResult], options: dict | None = None) -> Row:
    """One Row for the runs of several seeds: the means of AVERAGED, their standard deviations in stds, the largest
    peak memory; the folder the seed-K runs are in."""
    rows = [row_of(name, result, options) for result in results]
    if len(rows) == 1:
        return rows[0]
    values = {key: [getattr(row, key) for row in rows] for key in AVERAGED}
    first = rows[0]
    return Row(name, first.params, first.macs, round(statistics.mean(values["epochs"])),
               *(statistics.mean(values[key]) for key in AVERAGED[1:]),
               max(row.peak_memory_bytes for row in rows), str(Path(first.folder).parent), first.options,
               seeds=len(rows), stds={key: statistics.stdev(values[key]) for key in AVERAGED[1:]},
               test_images=first.test_images)


def train_seeds(model: str, *, output: Path, seeds: int = 1, seed: int | None = None, **options) -> list[RunResult]:
    """One run of loop.train in `output`, or with seeds > 1 one per seed SEED, SEED+1, ... in output/seed-K
    (run_folder.seed_run)."""
    from archviz.train.loop import train
    from archviz.train.run_folder import seed_run

    if seeds == 1:
        return [train(model, output=output, seed=seed, **options)]
    first = 0 if seed is None else seed
    return [train(model, output=seed_run(Path(output), first + k), seed=first + k, **options) for k in range(seeds)]


def compare(models: list[str], *, dataset: str = "digits", output: str | Path | None = None,
            time_budget: float | None = None, progress: bool | None = None, announce: Callable[[str], None] = print,
            html: str | Path | bool | None = None, seeds: int = 1, **options) -> list[Row]:
    """Train every model with the same options (seeds > 1: each seed, averaged); one Row each, in the order given.
    html: the comparison page's file (None: compare.html in the output folder, written when plotly is installed;
    False: none).

    >>> rows = compare(["mlp", "lenet"], dataset="digits", epochs=1, progress=False)  # doctest: +SKIP
    """
    from archviz.train.distributed import is_main_process

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
        say(f"== [{index}/{len(models)}] {model}" + (f" ({seeds} seeds)" if seeds > 1 else ""))
        runs = train_seeds(model, output=folder / _safe(model), seeds=seeds, dataset=dataset, progress=progress,
                           time_budget=time_budget, **options)
        rows.append(mean_row(model, runs))
        results.append(runs[0])
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
          seeds: int = 1, **options) -> list[Row]:
    """Train model over every (lr, batch size) pair (seeds > 1: each seed, averaged); the rows sorted best first
    (lowest validation loss)."""
    from archviz.train.distributed import is_main_process

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
        runs = train_seeds(model, output=folder / f"lr{lr:g}-batch{batch_size}", seeds=seeds, dataset=dataset,
                           progress=progress, lr=lr, batch_size=batch_size, **options)
        rows.append(mean_row(name, runs, {"lr": lr, "batch_size": batch_size}))
    rows.sort(key=lambda row: (row.best_val_loss, -row.best_val_accuracy))
    if main:
        _write(folder, "sweep", rows)
    return rows


def train_command(model: str, row: Row, options: TrainOptions) -> str:
    """The `archviz train` command that reproduces a sweep's row: every option the sweep ran with, and the row's."""
    return " ".join(["archviz", "train", model, *options.but(**row.options).flags()])


def table(rows: list[Row], *, title: str, rank: bool = False):
    """The rows as a rich Table; figures averaged over seeds as mean ± std; rank: a column of ranking()."""
    from rich.table import Table

    from archviz.format import human, size_bytes

    view = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    columns = (("rank", "right"),) if rank else ()
    columns += (("run", "left"), ("params", "right"), ("MACs", "right"), ("epochs", "right"),
                ("best val acc", "right"), ("test acc", "right"), ("final test acc", "right"), ("train s", "right"),
                ("images/s", "right"), ("peak memory", "right"))
    if any(row.seeds > 1 for row in rows):  # mean ± std: shorter names keep a row on one line of 120 columns
        columns = tuple((_SHORT.get(name, name), justify) for name, justify in columns)
    for name, justify in columns:
        view.add_column(name, justify=justify)
    ranks = ranking(rows) if rank else [None] * len(rows)
    for row, place in zip(rows, ranks):
        def spread(key: str, form: str, unit: str = "") -> str:
            text = f"{getattr(row, key) * (100 if unit else 1):{form}}"
            return f"{text} ± {row.stds[key] * (100 if unit else 1):{form}}{unit}" if row.seeds > 1 else text + unit

        cells = [row.run, f"{row.params:,}", human(row.macs), str(row.epochs),
                 spread("best_val_accuracy", ".2f", "%"), spread("test_accuracy", ".2f", "%"),
                 spread("last_test_accuracy", ".2f", "%"), spread("train_seconds", ".1f"),
                 spread("images_per_second", ",.0f"), size_bytes(row.peak_memory_bytes)]
        view.add_row(*([place] if rank else []), *cells)
    return view


_SHORT = {"best val acc": "val acc", "final test acc": "final acc", "images/s": "img/s", "peak memory": "peak mem"}


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
