"""`archviz pretrain`: the backbone of a model trained on a pretext task, the labels ignored.

The run is `archviz train`'s loop (archviz/train/loop.py) with another task (PretextTask, a Task of
archviz/train/task.py): the same data, batches and augmentation, progress, run folder, checkpoints written
atomically, Ctrl-C and exact --resume. What changes:
- the model is the backbone (archviz/pretrain/backbone.py) inside a PretextNet with the task's head (net.py);
- each batch becomes the task's inputs and targets (objectives.py), and the score is the pretext accuracy;
- best.pt has the lowest validation pretext loss, and the run ends with the pretext figures on the test split, not
  a per-class report. The checkpoint records the task; its "model" holds backbone.* and head.* tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from archviz.errors import ArchvizError
from archviz.train.run_folder import LAST

if TYPE_CHECKING:
    from archviz.pretrain.objectives import PretextObjective

PRETEXT_KEY = "pretext"  # the checkpoint's and run.json's record of the task
EVAL_SEED_OFFSET = 12345  # validation and test puzzles come from their own seeded generator, the same every epoch


@dataclass(frozen=True)
class PretrainResult:
    folder: Path
    model: str
    task: str
    dataset: str
    history: tuple[dict, ...]
    best_epoch: int
    test_split: str
    test_loss: float
    test_accuracy: float  # pretext accuracy of best.pt on the test split
    train_seconds: float
    params: int  # backbone and head
    graph: object  # the backbone's Graph
    rank: int = 0


class PretextTask:
    """The loop's Task (archviz/train/task.py) for a pretext objective: the backbone inside a PretextNet with the
    objective's head, each batch turned into the objective's inputs and targets, its state in every checkpoint."""

    kind = "pretrain"

    def __init__(self, task: str):
        self.task = task
        self.objective: PretextObjective | None = None  # made by fit(), once the data's classes and shape are known
        self.last_step = None  # (outputs, index) of the latest training batch, for after_step
        self.eval_draws = None  # the evaluation's generator, seeded afresh for each split scored

    @property
    def answers_per_image(self) -> int:
        return self.objective.answers_per_image

    def check_resumable(self, saved: dict, folder: Path) -> None:
        from archviz.pretrain.choices import Task
        from archviz.train.checkpoint import Field

        if PRETEXT_KEY not in saved:
            raise ArchvizError(f"{folder} is a run of supervised training, not of the {self.task} task")
        was = Field(folder / LAST, PRETEXT_KEY, saved[PRETEXT_KEY])["task"].text([t.value for t in Task])
        if was != self.task:
            raise ArchvizError(f"{folder} is a run of the {was} task, not of the {self.task} task")

    def fit(self, model, data, settings):
        from archviz.pretrain.objectives import objective_for
        from archviz.train.model import fit_model

        self.objective = objective_for(self.task, classes=len(data.classes), image_shape=data.image_shape,
                                       train_size=len(data.train), stats=None, seed=settings.seed)
        fitted = fit_model(model, classes=len(data.classes), image_shape=data.image_shape,
                           adapt=settings.adapt.value)
        graph = self.objective.backbone(fitted.graph)
        output = graph.by_name[graph.output]
        change = (f"backbone: {fitted.graph.name} up to {output.name} ({'x'.join(map(str, output.out_shape))} "
                  f"features); its classifier left out")
        return replace(fitted, graph=graph, changes=(*fitted.changes, change))

    def wrap(self, net, *, model: str, fitted, stats, device):
        from archviz.pretrain.net import pretext_net

        self.objective.stats = stats
        features = fitted.graph.by_name[fitted.graph.output].out_shape
        head = self.objective.head(tuple(features)).to(device)
        return pretext_net(net, head, tuple(fitted.input_shape[1:]))

    def title(self, model: str, params: int) -> str:
        return f"archviz pretrain: {model} backbone, {self.task} ({params:,} params with the head)"

    def header(self) -> list[str]:
        return [f"  pretext: {self.objective.describe()}; the labels are not used for training"]

    def check_state(self, setup, state: dict, path: Path) -> None:
        """The task's state against this run's: instdisc's memory bank, deepcluster's clusters."""
        from archviz.pretrain.choices import Task
        from archviz.train.checkpoint import Field

        pretext = Field(path, PRETEXT_KEY, state[PRETEXT_KEY])
        if self.task == Task.INSTDISC:
            _check_memory_bank(pretext["memory_bank"], tuple(self.objective.bank.features.shape))
        if self.task == Task.DEEPCLUSTER:
            started = state["position"]["epoch"] > 0 or state["position"]["batch"] > 0
            output = setup.fitted.graph.by_name[setup.fitted.graph.output]
            _check_clusters(pretext, images=len(setup.data.train), k=self.objective.k,
                            features=math.prod(output.out_shape), required=started)

    def load_state(self, state: dict) -> None:
        self.objective.load_state(state[PRETEXT_KEY])

    def extra_state(self) -> dict:
        return {PRETEXT_KEY: {"task": self.task, **self.objective.state()}}

    def record(self) -> dict:
        return {"pretext": {"task": self.task, "description": self.objective.describe()}}

    def epoch_begin(self, setup, state, epoch: int) -> None:
        self.objective.epoch_begin(setup, state, epoch)

    def epoch_order(self, setup, state, epoch: int):
        return self.objective.epoch_order(setup, state, epoch)

    def batch_loss(self, setup, x, y, index, generator):
        from archviz.train.loop import autocast

        inputs, targets = self.objective.inputs(x, index, generator)
        with autocast(setup):
            outputs = setup.runner(inputs)
        loss, right, count = self.objective.loss(outputs, targets, index)
        self.last_step = outputs.detach(), index
        return loss, right, count

    def after_step(self) -> None:
        self.objective.after_step(*self.last_step)

    def eval_begin(self, setup) -> None:
        import torch

        self.eval_draws = torch.Generator().manual_seed(setup.settings.seed + EVAL_SEED_OFFSET)

    def eval_batch(self, setup, x, y, start: int):
        loss, right, count = self.objective.eval_loss(setup.evaluator, x, y, start, self.eval_draws)
        return loss.double() * count, right, count, None

    def epoch_figures(self) -> dict:
        return self.objective.epoch_figures()

    def finish(self, setup, state) -> PretrainResult:
        from archviz.train.loop import evaluate, load_best_weights, write_run_record

        p, d = state.position, setup.data
        load_best_weights(setup)
        test_loss, test_accuracy, _ = evaluate(setup, "test")
        train_seconds = sum(row["seconds"] for row in p.history)
        final = {"test_split": d.test_split, "test_loss": test_loss, "test_pretext_accuracy": test_accuracy}
        write_run_record(setup, state, "finished", final=final, stopped_early=state.stopped_early,
                         time_budget=setup.time_budget)
        return PretrainResult(setup.folder, setup.model, self.task, d.name, tuple(p.history), p.best["epoch"],
                              d.test_split, test_loss, test_accuracy, train_seconds, setup.params,
                              setup.fitted.graph, setup.ranks.rank)


def _check_memory_bank(bank, shape: tuple[int, int]) -> None:
    """Instance discrimination's memory bank: one unit feature per training image, a momentum and a temperature."""
    import torch

    bank["features"].tensor(shape, dtype=torch.float32)
    momentum = bank["momentum"].number()
    if momentum > 1:
        raise bank["momentum"].wrong("0..1")
    if bank["temperature"].number() == 0:
        raise bank["temperature"].wrong("a positive number")


def _check_clusters(pretext, *, images: int, k: int, features: int, required: bool) -> None:
    """DeepCluster's state: each training image's cluster (0..k-1) and the k centroids, once an epoch has begun."""
    import torch

    if "pseudo_labels" not in pretext.mapping() and not required:
        return
    labels = pretext["pseudo_labels"].tensor((images,), dtype=torch.int64)
    if images and not 0 <= int(labels.min()) <= int(labels.max()) < k:
        raise pretext["pseudo_labels"].wrong(f"clusters 0..{k - 1}", what="holds a cluster out of range")
    pretext["centroids"].tensor((k, features), dtype=torch.float32)
    pretext["nmi"].numbers()


def pretrain(model: str | Path, *, task: str, dataset: str = "digits", data: str | Path | None = None,
             epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
             optimizer: str | None = None, schedule: str | None = None, weight_decay: float | None = None,
             augment: bool | None = None, adapt: str | None = None, seed: int | None = None, device: str = "auto",
             threads: int | None = None, compile: bool = False, output: str | Path | None = None,
             resume: bool = False, overwrite: bool = False, progress: bool | None = None,
             stop: Callable[[int, int], bool] | None = None, time_budget: float | None = None) -> PretrainResult:
    """Train `model`'s backbone on the pretext `task` (a Task value); the options are archviz train's (the output
    folder may hold a run of archviz pretrain, not of archviz train, unless overwrite).

    >>> result = pretrain("lenet", task="rotation", epochs=1, output="runs/doc", progress=False)  # doctest: +SKIP
    >>> result.test_accuracy > 0.25  # doctest: +SKIP
    True
    """
    from archviz.pretrain.choices import Task
    from archviz.train import loop

    if task not in {t.value for t in Task}:
        raise ArchvizError(f"--task {task!r}: expected one of {', '.join(t.value for t in Task)}")
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "schedule": schedule,
             "weight_decay": weight_decay, "augment": augment, "adapt": adapt, "seed": seed}
    return loop.run_training(model, given=given, dataset=dataset, data=data, device=device, threads=threads,
                             compile=compile, output=output, resume=resume, progress=progress, stop=stop,
                             time_budget=time_budget, task=PretextTask(task), folder_kind=task,
                             overwrite=overwrite)
