"""The run folder's format: the one module that knows its files' names, run.json's keys and version, and how each
file is written (atomically, archviz.output.write_atomic) and read back (checked: a corrupt or hostile file is one
ArchvizError line naming the file and the field, never a traceback, and checkpoints load weights-only, so reading a
run folder runs no code). Used by train, pretrain, probe, the report's run section and the pictures of a run.

    runs/lenet-digits-20250101-120000/
      metrics.csv, metrics.json   one row per epoch: train and validation loss and accuracy, lr, time, images/s
      report.txt, report.json     the per-class report on the test split (sklearn's classification_report layout)
      confusion.csv               the confusion matrix: true classes down, predicted across
      best.pt, last.pt            checkpoints (best: lowest validation loss; last: the latest state), checkpoint.py
      run.json                    settings, model changes, dataset, versions, status and final figures (RunRecord)
      tensorboard/                with --log tensorboard: TensorBoard event files (tensorboard_log.py)
    archviz pretrain writes all but the report's three, and archviz probe adds probe-KIND.json, source.yaml and the
    supervised/ and finetune/ runs it trains beside the pretext run.

run.json's version is its "format" key (RUN_FORMAT); run.json files written before it had one read as version 1.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from archviz.errors import ArchvizError, display_path
from archviz.output import write_atomic
from archviz.train.metrics import ClassReport, ClassRow

RUN_JSON = "run.json"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
REPORT_TXT = "report.txt"
REPORT_JSON = "report.json"
CONFUSION_CSV = "confusion.csv"
BEST = "best.pt"
LAST = "last.pt"
RUN_FILES = (METRICS_CSV, METRICS_JSON, REPORT_TXT, REPORT_JSON, CONFUSION_CSV, BEST, LAST,
             RUN_JSON)  # every file a run writes (archviz pretrain: all but the report's three)
SUMMARY_FILES = (METRICS_CSV, METRICS_JSON, REPORT_TXT, CONFUSION_CSV, BEST, LAST, RUN_JSON)  # named by train's summary
REPORT_FILES = (REPORT_TXT, REPORT_JSON, CONFUSION_CSV)
LOCK_FILE = ".archviz.lock"  # held with flock while a run writes the folder; it names the holder
SOURCE_SPEC = "source.yaml"  # a run of PyTorch code: the spec it traced to, which the probe's baselines train
SUPERVISED = "supervised"  # archviz probe: the supervised baseline's run, inside the pretext run's folder
FINETUNE = "finetune"  # archviz probe --finetune: the fine-tuned run, inside the pretext run's folder
SEED_PREFIX = "seed-"  # archviz pretrain --seeds N: one run per seed, FOLDER/seed-S
TENSORBOARD = "tensorboard"  # --log tensorboard: the event files' folder
METRIC_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                  "images_per_second")
RUN_FORMAT = "archviz-run/1"
STATUSES = ("finished", "interrupted", "diverged")


def probe_file(kind: str) -> str:
    """The file archviz probe --kind KIND writes into a pretext run's folder."""
    return f"probe-{kind}.json"


def read_probe(folder: Path, kind: str) -> dict | None:
    """FOLDER/probe-KIND.json as archviz probe wrote it, or None when the run has not been probed so."""
    path = folder / probe_file(kind)
    if not path.is_file():
        return None
    data = _json(path)
    if not isinstance(data, dict) or not isinstance(data.get("blocks"), list):
        raise ArchvizError("expected the scores of archviz probe (a JSON object with its blocks)", file=str(path))
    return data


# --- run.json ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunRecord:
    """run.json: what the run is (model, source, graph, dataset, settings, runtime, versions) and how far it went."""

    status: str  # one of STATUSES
    model: str
    source: dict  # model, kind, spec_file (the checkpoint alone holds spec_text)
    graph: dict  # name, input_shape, changes, params
    dataset: dict  # name, classes, image_shape, sizes, notes, input_steps, augmentation, normalize
    settings: dict  # Settings.as_dict()
    runtime: dict  # device, threads, compile[, world_size, backend]
    versions: dict
    epochs_done: int
    best: dict | None  # {"epoch", "val_accuracy", "val_loss"} of best.pt; None before the first epoch ends
    train_seconds: float
    message: str | None = None  # why the run stopped (interrupted, diverged)
    final: dict | None = None  # the figures on the test split (finished)
    stopped_early: str | None = None
    time_budget: float | None = None
    pretext: dict | None = None  # archviz pretrain: {"task", "description"}
    format: str = RUN_FORMAT

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def kind(self) -> str:
        """The command that wrote the run: "train" or "pretrain"."""
        return "pretrain" if self.pretext is not None else "train"

    def as_dict(self) -> dict:
        """run.json's content, its keys in the order archviz has always written them."""
        head = {"format": self.format, "status": self.status}
        if self.pretext is not None:
            head["pretext"] = self.pretext
        if self.message is not None:
            head["message"] = self.message
        if self.finished:
            head.update(final=self.final, stopped_early=self.stopped_early, time_budget=self.time_budget)
        return {**head, "model": self.model, "source": self.source, "graph": self.graph, "dataset": self.dataset,
                "settings": self.settings, "runtime": self.runtime, "versions": self.versions,
                "epochs_done": self.epochs_done, "best": self.best, "train_seconds": self.train_seconds}

    @classmethod
    def from_dict(cls, data, *, path: Path) -> RunRecord:
        """A record read from run.json, every field a reader uses checked; the first wrong one is an ArchvizError."""
        from archviz.train.checkpoint import Field, check_settings_field

        if not isinstance(data, dict):
            raise ArchvizError("expected a JSON object, the record of a run of archviz", file=str(path))
        root = Field(path, "", data)
        version = root.get("format")
        if version is not None and version.text() != RUN_FORMAT:
            raise version.wrong(f"{RUN_FORMAT} (a run.json of a newer archviz?)")
        root["status"].text(STATUSES)
        root["model"].text()
        for key in ("source", "graph", "dataset", "runtime", "versions"):
            root[key].mapping()
        root["dataset"]["name"].text()
        root["dataset"]["classes"].texts()
        root["graph"]["params"].integer(0)
        settings = check_settings_field(root["settings"])
        epochs = root["epochs_done"].integer(0, settings["epochs"])
        best = root["best"]
        if best.value is not None:
            best["epoch"].integer(1, max(epochs, 1))
            best["val_accuracy"].number()
            best["val_loss"].number(-math.inf)
        elif epochs:
            raise best.wrong("the best epoch's figures once an epoch has ended")
        root["train_seconds"].number()
        if root.value["status"] == "finished":
            final = root["final"]
            final["test_split"].text()
            for key, value in final.mapping().items():
                if key not in ("test_split", "peak_memory"):
                    final[key].number(-math.inf)
        if root.get("pretext") is not None:
            root["pretext"]["task"].text()
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def write_record(folder: Path, record: RunRecord) -> None:
    write_atomic(folder / RUN_JSON, json.dumps(record.as_dict(), indent=1) + "\n")


def read_record(folder: Path) -> RunRecord:
    """FOLDER/run.json, checked (RunRecord.from_dict); a missing, unreadable or wrong file is one ArchvizError."""
    path = folder / RUN_JSON
    if not path.is_file():
        raise ArchvizError(f"{display_path(str(folder))}: no {RUN_JSON}; a run of archviz train or pretrain writes "
                           "it (an interrupted one: finish it with --resume -o FOLDER)")
    return RunRecord.from_dict(_json(path), path=path)


def maybe_record(folder: Path) -> RunRecord | None:
    """FOLDER/run.json when archviz wrote it and it reads, else None (no file, someone else's, or damaged)."""
    try:
        return read_record(folder)
    except ArchvizError:
        return None


def looks_like_record(folder: Path) -> dict | None:
    """FOLDER/run.json's content when it has the shape archviz writes (a status and the settings), else None: the
    claim on a folder (run.claimed) asks only whose it is, and leaves the checks to the readers."""
    try:
        record = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and isinstance(record.get("status"), str) and isinstance(record.get("settings"), dict):
        return record
    return None


def is_finished(folder: Path) -> bool:
    record = maybe_record(folder)
    return record is not None and record.finished


def run_kind(folder: Path) -> str | None:
    """"train" or "pretrain" for a folder holding a run of archviz (its run.json, else its last.pt), else None."""
    from archviz.train.checkpoint import is_checkpoint, read_weights_only

    record = looks_like_record(folder)
    if record is None and (folder / RUN_JSON).exists():
        return None  # a run.json of someone else's
    if record is None:
        if not (folder / LAST).is_file():
            return None
        try:
            record = read_weights_only(folder / LAST)
        except ArchvizError:
            return None
        if not is_checkpoint(record):
            return None
    return "pretrain" if "pretext" in record else "train"


# --- metrics.json, metrics.csv ----------------------------------------------------------------------------------------

def write_metrics(folder: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({key: row[key] for key in METRIC_COLUMNS})
    write_atomic(folder / METRICS_CSV, buffer.getvalue())
    write_atomic(folder / METRICS_JSON, json.dumps(history, indent=1) + "\n")


def read_history(folder: Path) -> tuple[dict, ...]:
    """metrics.json's rows, each checked: its epoch's number, then METRIC_COLUMNS and the task's figures, numbers."""
    from archviz.train.checkpoint import Field, check_history_row

    path = folder / METRICS_JSON
    rows = Field(path, "", _json(path))
    for number, row in enumerate(rows.items(), 1):
        check_history_row(row, number)
    return tuple(rows.value)


# --- report.txt, report.json, confusion.csv -----------------------------------------------------------------------

def write_report(folder: Path, report: ClassReport, *, heading: str) -> None:
    write_atomic(folder / REPORT_TXT, f"{heading}\n\n{report.text()}")
    write_atomic(folder / REPORT_JSON, json.dumps(report.as_dict(), indent=1) + "\n")
    write_atomic(folder / CONFUSION_CSV, report.confusion_csv())


def read_class_report(folder: Path) -> ClassReport:
    """The per-class report write_report wrote (report.json and confusion.csv), read back and checked."""
    from archviz.train.checkpoint import Field

    path = folder / REPORT_JSON
    figures = Field(path, "", _json(path))

    def row(name: str, values) -> ClassRow:
        return ClassRow(name, values["precision"].number(), values["recall"].number(), values["f1"].number(),
                        values["support"].integer(0))

    rows = tuple(row(name, values) for name, values in zip(figures["classes"].mapping(),
                                                              figures["classes"].children()))
    confusion = _confusion(folder / CONFUSION_CSV, len(rows))
    return ClassReport(rows=rows, accuracy=figures["accuracy"].number(), macro=row("macro avg", figures["macro_avg"]),
                       weighted=row("weighted avg", figures["weighted_avg"]), confusion=confusion)


def _confusion(path: Path, classes: int) -> tuple[tuple[int, ...], ...]:
    table = list(csv.reader(io.StringIO(_text(path))))
    try:
        confusion = tuple(tuple(int(count) for count in row[1:]) for row in table[1:])
    except ValueError as error:
        raise ArchvizError(f"a count that is not a whole number ({error})", file=str(path)) from None
    if len(confusion) != classes or any(len(row) != classes or min(row, default=0) < 0 for row in confusion):
        raise ArchvizError(f"expected a {classes}x{classes} table of counts (report.json's classes)", file=str(path))
    return confusion


# --- checkpoints ----------------------------------------------------------------------------------------------------

def save_last(folder: Path, state: dict, *, best: bool = False) -> None:
    """last.pt, and best.pt as the same bytes when this is the best epoch so far."""
    from archviz.train.checkpoint import save_checkpoint

    data = save_checkpoint(folder / LAST, state)
    if best:
        write_atomic(folder / BEST, data)


def load_last(folder: Path) -> dict:
    """last.pt, checked (checkpoint.load_checkpoint), for --resume."""
    from archviz.train.checkpoint import load_checkpoint

    return load_checkpoint(folder / LAST)


def load_best(folder: Path) -> dict:
    from archviz.train.checkpoint import load_checkpoint

    return load_checkpoint(folder / BEST)


def weights_file(path: Path) -> Path:
    """The checkpoint a run folder's weights are read from (best.pt, else last.pt), or `path` itself, a file."""
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise ArchvizError(f"{display_path(str(path))}: no {BEST} or {LAST} in this folder; --weights takes a run "
                           "folder of archviz train, a checkpoint or a state dict file")
    if not path.is_file():
        raise ArchvizError(f"no weights file {display_path(str(path))}")
    return path


def seed_run(folder: Path, seed: int) -> Path:
    """Where archviz pretrain --seeds N writes the run of `seed`."""
    return folder / f"{SEED_PREFIX}{seed}"


def seed_runs(folder: Path) -> list[Path]:
    """The run folder itself when it holds best.pt, else its seed-* runs that do (archviz pretrain --seeds N)."""
    if (folder / BEST).is_file():
        return [folder]
    return sorted((p for p in folder.glob(f"{SEED_PREFIX}*") if (p / BEST).is_file()), key=lambda p: p.name)


# --- reading text -------------------------------------------------------------------------------------------------

def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArchvizError(f"no {path.name} in {display_path(str(path.parent))}; the run did not finish, or the "
                           "file was moved") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ArchvizError(f"cannot read it ({getattr(error, 'strerror', None) or error})", file=str(path)) from None


def _json(path: Path):
    try:
        return json.loads(_text(path))
    except (ValueError, RecursionError) as error:
        raise ArchvizError(f"not JSON ({error})", file=str(path)) from None
