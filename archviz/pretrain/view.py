"""What the report of a pretext run shows (`archviz report MODEL --run RUN`): the task's inputs as the network sees
them, the pretext curves, the probe tables written by `archviz probe`, and the first-layer kernels after
pretraining beside the run's initial ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archviz.inside.trained import Trained
from archviz.pretrain.choices import ProbeKind
from archviz.train import run_folder

EXAMPLE_IMAGES = {"rotation": 4, "jigsaw": 2, "context": 4, "simclr": 4, "instdisc": 8, "deepcluster": 8,
                  "colorization": 4}  # validation images shown per task
EXAMPLE_SEED = 7  # the drawn puzzles, views and patches shown in the report


@dataclass(frozen=True)
class PretextView:
    folder: Path
    trained: Trained  # the backbone, with the pretext weights
    record: dict  # run.json
    history: tuple[dict, ...]
    examples: Any  # render.pictures.Grid of the task's inputs
    filters: tuple[tuple[Any, Any], ...]  # (after pretraining, initial) Grids of the first convolutions
    probes: dict[str, dict]  # "linear"/"knn" -> probe-KIND.json


def look_at_pretext_run(folder: Path, trained: Trained, record: dict) -> PretextView:
    from archviz.inside.run import filter_pairs

    history = run_folder.read_history(folder)
    probes = {kind: probe for kind in ProbeKind if (probe := run_folder.read_probe(folder, kind)) is not None}
    return PretextView(folder, trained, record, history, example_grid(trained, record),
                       filter_pairs(trained, record["settings"]["seed"]), probes)


def example_grid(trained: Trained, record: dict):
    """The pretext inputs the task makes of a few validation images, un-normalised, in colour or gray."""
    import torch

    from archviz.pretrain.objectives import objective_for
    from archviz.render.pictures import Grid, Scale
    from archviz.train.batches import BatchMaker
    from archviz.train.data import load_dataset

    task = record["pretext"]["task"]
    shape = trained.input_shape
    data = load_dataset(trained.dataset, image_size=tuple(shape[1:]), channels=shape[0]) \
        if trained.dataset.startswith("folder:") else load_dataset(trained.dataset)
    maker = BatchMaker(input_shape=shape, stats=trained.stats, device=torch.device("cpu"), channels_last=False,
                       augment=False, flips=False)
    x = maker(torch.from_numpy(data.val.images[:EXAMPLE_IMAGES.get(task, 4)].copy()))
    objective = objective_for(task, classes=len(data.classes), image_shape=data.image_shape,
                              train_size=len(data.train), stats=trained.stats, seed=record["settings"]["seed"])
    objective.head(tuple(trained.graph.by_name[trained.graph.output].out_shape))  # tells it the map's size
    pictures, captions, columns = objective.examples(x, torch.Generator().manual_seed(EXAMPLE_SEED))
    mean = torch.tensor(trained.stats.mean).view(-1, 1, 1)
    std = torch.tensor(trained.stats.std).view(-1, 1, 1)
    tiles = [_as_rgb((picture.float().cpu() * std + mean).clamp(0, 1)) for picture in pictures]
    return Grid(tiles=tuple(tiles), scale=Scale.RGB, title=f"{task}: what the network is given",
                captions=tuple(captions), columns=columns, note=objective.describe())


def _as_rgb(picture):
    """(C, h, w) in 0..1 -> (h, w, 3) numpy: gray repeated, colour as it is."""
    array = picture.permute(1, 2, 0).numpy()
    return array.repeat(3, axis=2) if array.shape[2] == 1 else array
