"""The run folder and its records. Every file goes through archviz.output.write_atomic.

    runs/lenet-digits-20250101-120000/
      metrics.csv, metrics.json   one row per epoch: train and validation loss and accuracy, lr, time, images/s
      report.txt, report.json     the per-class report on the test split (sklearn's classification_report layout)
      confusion.csv               the confusion matrix: true classes down, predicted across
      best.pt, last.pt            checkpoints (best: lowest validation loss; last: the latest state)
      run.json                    settings, model changes, dataset, versions, status and final figures
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archviz.errors import ArchvizError
from archviz.output import write_atomic
from archviz.train.metrics import ClassReport
from archviz.train.settings import Settings

if TYPE_CHECKING:
    from archviz.graph.ir import Graph

METRIC_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                  "images_per_second")


class TrainingInterrupted(Exception):
    """The run was stopped (Ctrl-C) after saving a checkpoint it can resume from; the CLI exits with status 130."""

    def __init__(self, message: str, *, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


class TrainingDiverged(ArchvizError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class RunResult:
    """What a finished run reached; the same figures are in the folder's run.json."""

    folder: Path
    model: str
    dataset: str
    settings: Settings
    params: int
    changes: tuple[str, ...]  # model and input adaptations, in words
    history: tuple[dict, ...]  # metrics.json's rows
    best_epoch: int
    best_val_accuracy: float
    test_split: str
    test_accuracy: float  # of best.pt, the epoch of lowest validation loss
    last_test_accuracy: float  # of the final weights
    report: ClassReport  # of best.pt on the test split
    train_seconds: float
    images_per_second: float
    graph: Graph  # the fitted graph that was trained: archviz.inspect(result.graph) gives its params and MACs
    stopped_early: str | None = None  # why fewer epochs ran than asked (the time budget), else None
    peak_memory_bytes: int = 0  # per process: CUDA tensors, or the rise of the resident set on the CPU (memory.py)
    peak_memory: str = ""  # how peak_memory_bytes was measured, in words
    rank: int = 0  # this process's rank under torchrun; only rank 0 wrote the folder
    world_size: int = 1  # processes that trained the model together


def default_folder(model: str, dataset: str, suffix: str = "") -> Path:
    """runs/<model>-<dataset>[-<suffix>]-<timestamp>, the model a zoo name or a spec file's stem."""
    stem = Path(model).stem if model.endswith((".yaml", ".yml")) else model
    kind = dataset.partition(":")[0]
    return Path("runs") / f"{stem}-{kind}{f'-{suffix}' if suffix else ''}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_metrics(folder: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({key: row[key] for key in METRIC_COLUMNS})
    write_atomic(folder / "metrics.csv", buffer.getvalue())
    write_atomic(folder / "metrics.json", json.dumps(history, indent=1) + "\n")


def write_report(folder: Path, report: ClassReport, *, heading: str) -> None:
    write_atomic(folder / "report.txt", f"{heading}\n\n{report.text()}")
    write_atomic(folder / "report.json", json.dumps(report.as_dict(), indent=1) + "\n")
    write_atomic(folder / "confusion.csv", report.confusion_csv())


def read_class_report(folder: Path) -> ClassReport:
    """The per-class report write_report wrote (report.json and confusion.csv), read back."""
    from archviz.train.metrics import ClassRow

    figures = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    table = list(csv.reader(io.StringIO((folder / "confusion.csv").read_text(encoding="utf-8"))))
    confusion = tuple(tuple(int(count) for count in row[1:]) for row in table[1:])

    def row(name: str, values: dict) -> ClassRow:
        return ClassRow(name, values["precision"], values["recall"], values["f1"], values["support"])

    return ClassReport(rows=tuple(row(name, values) for name, values in figures["classes"].items()),
                       accuracy=figures["accuracy"], macro=row("macro avg", figures["macro_avg"]),
                       weighted=row("weighted avg", figures["weighted_avg"]), confusion=confusion)


def write_run(folder: Path, record: dict) -> None:
    write_atomic(folder / "run.json", json.dumps(record, indent=1) + "\n")


def summary_text(result: RunResult) -> str:
    """The closing lines of a run: test accuracy, the per-class report and where the files are."""
    from archviz.format import size_bytes

    last = result.history[-1] if result.history else {}
    lines = [
        f"{result.test_split} accuracy {result.test_accuracy:.2%} ({result.report.support:,} images) with best.pt "
        f"(epoch {result.best_epoch}, lowest val loss; val accuracy {result.best_val_accuracy:.2%}); final weights "
        f"{result.last_test_accuracy:.2%}",
        *([f"stopped early: {result.stopped_early}"] if result.stopped_early else []),
        f"trained {len(result.history)} epochs in {result.train_seconds:.1f} s, {result.images_per_second:,.0f} "
        f"images/s" + (f"; final train loss {last['train_loss']:.4f}" if last else "")
        + (f"; peak memory {size_bytes(result.peak_memory_bytes)}" if result.peak_memory_bytes else ""),
        "",
        result.report.text().rstrip("\n"),
        "",
        f"run folder {result.folder}: metrics.csv, metrics.json, report.txt, confusion.csv, best.pt, last.pt, run.json",
    ]
    return "\n".join(lines) + "\n"
