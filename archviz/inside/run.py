"""What the report of a training run shows of the network: its records, and pictures of what it learned.

From a run folder of archviz train: the learning curves (metrics.json), the per-class report and confusion matrix
(report.json, confusion.csv), the settings (run.json), the kernels of the first convolutions after training beside
the same layers' initial weights (the run's seed rebuilds them exactly), and for a few validation images (one per
class in turn) the feature maps of an early, a middle and the last spatial layer and the Grad-CAM map of the
predicted class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archviz.errors import ArchvizError, display_path
from archviz.inside.cam import Cam
from archviz.inside.images import Input
from archviz.inside.trained import Trained
from archviz.train import run_folder
from archviz.train.run_folder import BEST, CONFUSION_CSV, METRICS_JSON, REPORT_JSON, RUN_JSON

FILTER_LAYERS = 2  # the first convolutions: deeper kernels read many channels and no longer look like image patches
SAMPLES = 3  # validation images shown with their feature maps and class-activation maps
RUN_FILES = (RUN_JSON, METRICS_JSON, REPORT_JSON, CONFUSION_CSV)  # what the report of a run reads
PRETEXT_RUN_FILES = (RUN_JSON, METRICS_JSON, BEST)


@dataclass(frozen=True)
class SampleView:
    image: Input
    activations: tuple[Any, ...]  # render.pictures.Grid, one per layer
    cam: Cam


@dataclass(frozen=True)
class RunView:
    folder: Path
    trained: Trained
    record: dict  # run.json
    history: tuple[dict, ...]  # metrics.json: one row per epoch
    report: Any  # train.metrics.ClassReport of best.pt on the test split
    filters: tuple[tuple[Any, Any], ...]  # (after training, initial) Grids per first convolution
    samples: tuple[SampleView, ...]


def look_inside_run(folder: str | Path, model: str | None = None, *, samples: int = SAMPLES):
    """Everything the run's report sections show (a RunView, or for archviz pretrain a pretrain.view.PretextView);
    model defaults to the run's own."""
    from archviz.inside.trained import load_trained

    folder = Path(folder)
    _check_run_folder(folder, pretext=_is_pretext(folder))
    trained = load_trained(model or folder, folder if model else None)
    record = run_folder.read_record(folder)
    if record.pretext is not None:
        from archviz.pretrain.view import look_at_pretext_run

        return look_at_pretext_run(folder, trained, record.as_dict())
    return RunView(folder, trained, record.as_dict(), run_folder.read_history(folder),
                   run_folder.read_class_report(folder), filter_pairs(trained, record.settings["seed"]),
                   _sample_views(trained, samples))


def _is_pretext(folder: Path) -> bool:
    record = run_folder.looks_like_record(folder)
    return record is not None and "pretext" in record


def _check_run_folder(folder: Path, *, pretext: bool) -> None:
    if not folder.is_dir():
        raise ArchvizError(f"--run {display_path(str(folder))}: no such folder; --run takes a run folder of archviz "
                           "train or archviz pretrain")
    needed = PRETEXT_RUN_FILES if pretext else RUN_FILES
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise ArchvizError(f"--run {display_path(str(folder))}: no {', '.join(missing)}; a finished run of archviz "
                           "train has them (an interrupted one: finish it with archviz train --resume -o FOLDER)")


def filter_pairs(trained: Trained, seed: int) -> tuple[tuple[Any, Any], ...]:
    from archviz.inside.filters import filter_grid
    from archviz.inside.layers import kernel_layers

    initial = trained.initial(seed)
    layers = [node.name for node in kernel_layers(trained.graph)[:FILTER_LAYERS]]
    return tuple((filter_grid(trained, name), filter_grid(initial, name)) for name in layers)


def _sample_views(trained: Trained, count: int) -> tuple[SampleView, ...]:
    from archviz.inside.activations import activation_grid, capture_maps
    from archviz.inside.cam import class_activation_map
    from archviz.inside.images import dataset_samples
    from archviz.inside.layers import auto_cam_layer, default_activation_layers

    layers = [node.name for node in default_activation_layers(trained.graph)]
    cam_layer = auto_cam_layer(trained.graph).name
    views = []
    for image in dataset_samples(trained, count):
        maps, _ = capture_maps(trained, image, layers)
        views.append(SampleView(image, tuple(activation_grid(m, limit=16) for m in maps),
                                class_activation_map(trained, image, layer=cam_layer)))
    return tuple(views)
