"""archviz evaluate: a trained run scored on its own test split, or on another dataset in a format train reads.

The images are prepared as training prepared them (predict.scores: the run's BatchMaker, eval mode), so on the run's
own test split with best.pt the accuracy is the one the run recorded in run.json (final.test_accuracy), the per-class
report and confusion matrix those of report.json and confusion.csv (tests/test_predict.py). Another dataset's
classes are matched to the run's by name: it may hold fewer classes than the run, never one the run does not know.
A folder dataset is decoded at the run's dataset's image size and mode, as the run's own would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archviz.errors import ArchvizError
from archviz.train.choices import Device
from archviz.train.data import Dataset, DatasetKind, load_dataset, parse_dataset
from archviz.train.metrics import ClassReport, class_report
from archviz.train.predict import Checkpoint, load_run, scores
from archviz.train.run_folder import maybe_record

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Evaluation:
    weights: str  # where the weights came from, in words
    dataset: str
    split: str  # "test", "val" (a folder dataset without test/) or the split asked for
    loss: float  # mean cross-entropy
    accuracy: float
    report: ClassReport  # over the run's classes
    recorded: dict | None  # run.json's final figures, when this is the run's own test split with best.pt

    @property
    def images(self) -> int:
        return self.report.support


def evaluate_run(run: str | Path, *, dataset: str | None = None, split: str = "test",
                 checkpoint: Checkpoint | None = None, device: Device = Device.CPU) -> Evaluation:
    """Accuracy, loss, per-class report and confusion of the run's weights on a split of a dataset.

    >>> evaluate_run("runs/lenet").accuracy  # doctest: +SKIP
    0.9777158774373259
    """
    import torch
    import torch.nn.functional as F

    if split not in SPLITS:
        raise ArchvizError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    trained = load_run(run, checkpoint=checkpoint)
    data = _dataset(dataset or trained.dataset, trained.dataset_image_shape, _val_fraction(Path(run)))
    labels = _labels(data, split, trained.classes)
    logits = scores(trained, getattr(data, split).images, device=device)
    target = torch.as_tensor(labels)
    loss = float(F.cross_entropy(logits.float(), target)) if len(target) else float("nan")
    predicted = logits.argmax(1).numpy()
    report = class_report(labels, predicted, trained.classes)
    own_test = (dataset is None or data.name == trained.dataset) and split == "test" and checkpoint != Checkpoint.LAST
    recorded = _recorded(Path(run)) if own_test else None
    return Evaluation(trained.weights, data.name, data.test_split if split == "test" else split, loss,
                      report.accuracy, report, recorded)


def _dataset(source: str, image_shape: tuple[int, ...], val_fraction: float) -> Dataset:
    """The dataset, split as the run split it (--val-fraction), a folder one decoded at the run's images' size and
    mode."""
    kind, _ = parse_dataset(source)
    if kind != DatasetKind.FOLDER:
        return load_dataset(source, val_fraction=val_fraction)
    channels, height, width = image_shape
    return load_dataset(source, image_size=(height, width), channels=channels, val_fraction=val_fraction)


def _val_fraction(run: Path) -> float:
    """The share the run held out for validation (a run folder's settings; a bare checkpoint: the default)."""
    from archviz.train.run_folder import maybe_record
    from archviz.train.settings import Settings

    folder = run if run.is_dir() else run.parent
    record = maybe_record(folder)
    return float(record.settings.get("val_fraction", Settings().val_fraction)) if record else Settings().val_fraction


def _labels(data: Dataset, split: str, classes: tuple[str, ...]):
    """The split's labels as indices of the run's classes, matched by name."""
    import numpy as np

    labels = getattr(data, split).labels
    if data.classes == classes:
        return labels
    unknown = [name for name in data.classes if name not in classes]
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ArchvizError(f"{data.name}: classes {shown} are not classes of the run ({', '.join(classes[:10])}"
                           f"{', ...' if len(classes) > 10 else ''}); evaluate matches classes by name")
    index = np.asarray([classes.index(name) for name in data.classes], dtype=np.int64)
    return index[labels]


def _recorded(run: Path) -> dict | None:
    record = maybe_record(run) if run.is_dir() else None
    return record.final if record is not None and record.finished else None


# --- output -----------------------------------------------------------------------------------------------------

def evaluation_dict(result: Evaluation) -> dict:
    return {"weights": result.weights, "dataset": result.dataset, "split": result.split, "images": result.images,
            "accuracy": result.accuracy, "loss": result.loss, "report": result.report.as_dict(),
            "confusion": [list(row) for row in result.report.confusion],
            "recorded": result.recorded}


def evaluation_text(result: Evaluation) -> str:
    lines = [f"weights: {result.weights}",
             f"{result.dataset}, {result.split} split, {result.images:,} images: accuracy {result.accuracy:.2%}, "
             f"loss {result.loss:.4f}"]
    if result.recorded is not None and "test_accuracy" in result.recorded:
        recorded = result.recorded["test_accuracy"]
        same = "the same" if recorded == result.accuracy else (
            f"{round(abs(recorded - result.accuracy) * result.images)} image(s) apart (scored here in float32 on the "
            "CPU; a run on a GPU scored its own under bf16 autocast)")
        lines.append(f"the run recorded test accuracy {recorded:.2%}: {same}")
    lines += ["", result.report.text().rstrip("\n"), "", "confusion (true classes down, predicted across):",
              _confusion_text(result.report)]
    return "\n".join(lines) + "\n"


def _confusion_text(report: ClassReport) -> str:
    names = [row.name for row in report.rows]
    width = max([len(str(count)) for row in report.confusion for count in row] + [len(n) for n in names])
    head = " " * width + " " + " ".join(f"{name:>{width}}" for name in names)
    rows = [f"{name:>{width}} " + " ".join(f"{count:>{width}}" for count in counts)
            for name, counts in zip(names, report.confusion)]
    return "\n".join([head, *rows])

