"""`archviz pretrain`: the backbone of a model trained on a pretext task, the labels ignored.

The run is `archviz train`'s loop (archviz/train/loop.py) with the objective swapped: the same data, batches and
augmentation, progress, run folder, checkpoints written atomically, Ctrl-C and exact --resume. What changes:
- the model is the backbone (archviz/pretrain/backbone.py) inside a PretextNet with the task's head (net.py);
- each batch becomes the task's inputs and targets (objectives.py), and the score is the pretext accuracy;
- best.pt has the lowest validation pretext loss, and the run ends with the pretext figures on the test split, not
  a per-class report. The checkpoint records the task; its "model" holds backbone.* and head.* tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from archviz.errors import ArchvizError
from archviz.train.loop import _Run
from archviz.train.run_folder import LAST

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


class PretrainRun(_Run):
    def __init__(self, *args, task: str):
        self.task = task
        super().__init__(*args)

    def _check_resumable(self, saved: dict) -> None:
        from archviz.pretrain.choices import Task
        from archviz.train.checkpoint import Field

        if PRETEXT_KEY not in saved:
            raise ArchvizError(f"{self.folder} is a run of supervised training, not of the {self.task} task")
        was = Field(self.folder / LAST, PRETEXT_KEY, saved[PRETEXT_KEY])["task"].text([t.value for t in Task])
        if was != self.task:
            raise ArchvizError(f"{self.folder} is a run of the {was} task, not of the {self.task} task")

    def _check_extra_state(self, state: dict, path: Path) -> None:
        """The task's state against this run's: instdisc's memory bank, deepcluster's clusters."""
        from archviz.pretrain.choices import Task
        from archviz.train.checkpoint import Field

        pretext = Field(path, PRETEXT_KEY, state[PRETEXT_KEY])
        if self.task == Task.INSTDISC:
            _check_memory_bank(pretext["memory_bank"], tuple(self.objective.bank.features.shape))
        if self.task == Task.DEEPCLUSTER:
            started = state["position"]["epoch"] > 0 or state["position"]["batch"] > 0
            output = self.fitted.graph.by_name[self.fitted.graph.output]
            _check_clusters(pretext, images=len(self.data.train), k=self.objective.k,
                            features=math.prod(output.out_shape), required=started)

    def _fit(self, model):
        from archviz.pretrain.objectives import objective_for

        self.objective = objective_for(self.task, classes=len(self.data.classes), image_shape=self.data.image_shape,
                                       train_size=len(self.data.train), stats=None, seed=self.settings.seed)
        fitted = super()._fit(model)
        graph = self.objective.backbone(fitted.graph)
        output = graph.by_name[graph.output]
        change = (f"backbone: {fitted.graph.name} up to {output.name} ({'x'.join(map(str, output.out_shape))} "
                  f"features); its classifier left out")
        return replace(fitted, graph=graph, changes=(*fitted.changes, change))

    def _wrap(self, net):
        from archviz.pretrain.net import pretext_net

        self.objective.stats = self.stats
        features = self.fitted.graph.by_name[self.fitted.graph.output].out_shape
        head = self.objective.head(tuple(features)).to(self.device)
        return pretext_net(net, head, tuple(self.fitted.input_shape[1:]))

    def _title(self) -> str:
        return f"archviz pretrain: {self.model} backbone, {self.task} ({self.params:,} params with the head)"

    def _header(self):
        super()._header()
        self.show.line(f"  pretext: {self.objective.describe()}; the labels are not used for training")

    def _epoch_begin(self, epoch: int) -> None:
        self.objective.epoch_begin(self, epoch)

    def _epoch_figures(self) -> dict:
        return self.objective.epoch_figures()

    def _answers_per_image(self) -> int:
        return self.objective.answers_per_image

    def _epoch_order(self, epoch: int):
        order = self.objective.epoch_order(self, epoch)
        return super()._epoch_order(epoch) if order is None else order

    def _batch_loss(self, x, y, index, generator):
        inputs, targets = self.objective.inputs(x, index, generator)
        with self._autocast():
            outputs = self.runner(inputs)
        loss, right, count = self.objective.loss(outputs, targets, index)
        self.last_step = outputs.detach(), index
        return loss, right, count

    def _after_step(self) -> None:
        self.objective.after_step(*self.last_step)

    def _evaluate(self, split: str, *, predictions: bool = False):
        import torch

        self.eval_draws = torch.Generator().manual_seed(self.settings.seed + EVAL_SEED_OFFSET)
        loss, accuracy, _ = super()._evaluate(split)
        return loss, accuracy, None

    def _eval_batch(self, x, y, start: int):
        loss, right, count = self.objective.eval_loss(self.evaluator, x, y, start, self.eval_draws)
        return loss.double() * count, right, count, None

    def _extra_state(self) -> dict:
        return {PRETEXT_KEY: {"task": self.task, **self.objective.state()}}

    def _load_extra_state(self, state: dict) -> None:
        self.objective.load_state(state[PRETEXT_KEY])

    def _record(self, status: str, **extra) -> dict:
        return super()._record(status, pretext={"task": self.task, "description": self.objective.describe()},
                               **extra)

    def _finish(self) -> PretrainResult:
        p, d = self.position, self.data
        if self.ranks.main:
            self._load_best()
        self.ranks.broadcast_module(self.net)
        test_loss, test_accuracy, _ = self._evaluate("test")
        train_seconds = sum(row["seconds"] for row in p.history)
        final = {"test_split": d.test_split, "test_loss": test_loss, "test_pretext_accuracy": test_accuracy}
        self._record("finished", final=final, stopped_early=self.stopped_early, time_budget=self.time_budget)
        return PretrainResult(self.folder, self.model, self.task, d.name, tuple(p.history), p.best["epoch"],
                              d.test_split, test_loss, test_accuracy, train_seconds, self.params, self.fitted.graph,
                              self.ranks.rank)


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
    from functools import partial

    from archviz.pretrain.choices import Task
    from archviz.train import loop

    if task not in {t.value for t in Task}:
        raise ArchvizError(f"--task {task!r}: expected one of {', '.join(t.value for t in Task)}")
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "schedule": schedule,
             "weight_decay": weight_decay, "augment": augment, "adapt": adapt, "seed": seed}
    return loop.run_training(model, given=given, dataset=dataset, data=data, device=device, threads=threads,
                             compile=compile, output=output, resume=resume, progress=progress, stop=stop,
                             time_budget=time_budget, make_run=partial(PretrainRun, task=task), folder_kind=task,
                             overwrite=overwrite, run_kind="pretrain")
