"""What a run trains the network to do, as an object the training loop (loop.py) calls: the Task protocol, and
Supervised, the task of `archviz train` (each image's label, cross-entropy on logits). archviz pretrain's pretext
tasks implement the same protocol (archviz/pretrain/loop.py PretextTask), so one loop runs them all; a task never
subclasses the loop, and reads the run only through the Setup and State it is handed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from archviz.errors import ArchvizError
from archviz.train.metrics import class_report
from archviz.train.model import FittedModel, fit_model
from archviz.train.run import RunResult
from archviz.train.run_folder import LAST, write_report

if TYPE_CHECKING:
    from archviz.train.data import Dataset
    from archviz.train.loop import Setup, State
    from archviz.train.settings import Settings


class Task(Protocol):
    """The declared interface between the loop and what it trains: the network, each batch's loss, the task's own
    state in checkpoints, and the run's result."""

    kind: str  # the command whose runs it writes: "train" or "pretrain" (run.claimed refuses the other's folder)
    answers_per_image: int  # scored answers one training image gives (the accuracy's denominator per image)

    def check_resumable(self, saved: dict, folder: Path) -> None:
        """Refuse a checkpoint of another kind of run, before anything is built."""

    def fit(self, model, data: Dataset, settings: Settings) -> FittedModel:
        """The FittedModel whose graph is built and trained."""

    def wrap(self, net, *, model: str, fitted: FittedModel, stats, device) -> Any:
        """The module the optimiser trains and the checkpoint holds, around the graph's module."""

    def title(self, model: str, params: int) -> str: ...

    def header(self) -> list[str]:
        """Lines the run's header adds after the loop's own."""

    def check_state(self, setup: Setup, state: dict, path: Path) -> None:
        """Refuse what load_state would load from a checkpoint, before anything of it is loaded."""

    def load_state(self, state: dict) -> None: ...

    def extra_state(self) -> dict:
        """What a checkpoint holds of the task besides the weights, optimiser and random states."""

    def record(self) -> dict:
        """run.json's fields of the task (RunRecord's keyword arguments)."""

    def epoch_begin(self, setup: Setup, state: State, epoch: int) -> None:
        """Work before an epoch's batches, also when a resumed run starts in the middle of the epoch."""

    def epoch_order(self, setup: Setup, state: State, epoch: int):
        """The training images of the epoch in the order they are used, or None for the loop's permutation."""

    def batch_loss(self, setup: Setup, x, y, index, generator) -> tuple[Any, Any, int]:
        """(loss, right answers, answers) of one training batch; index: its images' positions in the split."""

    def after_step(self) -> None:
        """Work after each optimiser step."""

    def eval_begin(self, setup: Setup) -> None:
        """Work before a split is scored."""

    def eval_batch(self, setup: Setup, x, y, start: int) -> tuple[Any, Any, int, Any]:
        """(summed loss, right answers, answers, predicted labels or None) of one evaluation batch."""

    def epoch_figures(self) -> dict:
        """Figures of the epoch to record beside the losses and accuracies (metrics.json)."""

    def finish(self, setup: Setup, state: State):
        """Score best.pt on the test split, write the run's last records and return its result."""


class Supervised:
    """archviz train: each image's label, cross-entropy on logits; the run ends with a per-class report of best.pt.
    backbone_from: start from a pretext run's backbone weights (archviz probe --finetune; the head keeps its
    seeded initialisation)."""

    kind = "train"
    answers_per_image = 1

    def __init__(self, *, backbone_from: Path | None = None):
        self.backbone_from = backbone_from

    def check_resumable(self, saved: dict, folder: Path) -> None:
        from archviz.train.checkpoint import Field

        if "pretext" in saved:
            task = Field(folder / LAST, "pretext", saved["pretext"])["task"].text()
            raise ArchvizError(f"{folder} is a run of archviz pretrain --task {task}; resume it with archviz "
                               "pretrain")

    def fit(self, model, data: Dataset, settings: Settings) -> FittedModel:
        return fit_model(model, classes=len(data.classes), image_shape=data.image_shape, adapt=settings.adapt.value)

    def wrap(self, net, *, model: str, fitted=None, stats=None, device=None):
        if self.backbone_from is None:
            return net
        from archviz.train.checkpoint import load_checkpoint

        state = load_checkpoint(self.backbone_from)["model"]
        tensors = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        missing = [name for name in tensors if name not in net.state_dict()]
        if missing:
            raise ArchvizError(f"{self.backbone_from}: the backbone does not fit {model} ({missing[0]})")
        net.load_state_dict(tensors, strict=False)
        return net

    def title(self, model: str, params: int) -> str:
        if self.backbone_from is not None:
            return f"archviz probe --finetune: {model} from {self.backbone_from} ({params:,} params)"
        return f"archviz train: {model} ({params:,} params)"

    def header(self) -> list[str]:
        return []

    def check_state(self, setup, state: dict, path: Path) -> None:
        pass

    def load_state(self, state: dict) -> None:
        pass

    def extra_state(self) -> dict:
        return {}

    def record(self) -> dict:
        return {}

    def epoch_begin(self, setup, state, epoch: int) -> None:
        pass

    def epoch_order(self, setup, state, epoch: int):
        return None

    def batch_loss(self, setup, x, y, index, generator):
        from archviz.train import loop

        if setup.make_batch.mixup:
            return self._mixup_loss(setup, x, y, generator)
        with loop.autocast(setup):
            logits = setup.runner(x)
        smoothing = setup.settings.label_smoothing
        # looked up on the module at each call: tests patch it; the validation loss is never smoothed
        loss = loop.loss_function(logits, y, label_smoothing=smoothing) if smoothing else loop.loss_function(logits, y)
        return loss, (logits.argmax(1) == y).sum(), len(y)

    def _mixup_loss(self, setup, x, y, generator):
        """mixup (Zhang et al. 2018): each image mixed with another of the batch, weight ~ U(0, 1) (Beta(1, 1)), the
        loss mixed the same way; a right answer is the label of the larger share."""
        import torch

        from archviz.train import loop

        weight = float(torch.rand(1, generator=generator))
        other = torch.randperm(len(y), generator=generator).to(y.device)
        with loop.autocast(setup):
            logits = setup.runner(weight * x + (1 - weight) * x[other])
        smoothing = {"label_smoothing": setup.settings.label_smoothing} if setup.settings.label_smoothing else {}
        loss = (weight * loop.loss_function(logits, y, **smoothing)
                + (1 - weight) * loop.loss_function(logits, y[other], **smoothing))
        target = y if weight >= 0.5 else y[other]
        return loss, (logits.argmax(1) == target).sum(), len(y)

    def after_step(self) -> None:
        pass

    def eval_begin(self, setup) -> None:
        pass

    def eval_batch(self, setup, x, y, start: int):
        from archviz.train import loop

        with loop.autocast(setup):
            logits = setup.evaluator(x)
        guesses = logits.argmax(1)
        return loop.loss_function(logits, y).double() * len(y), (guesses == y).sum(), len(y), guesses

    def epoch_figures(self) -> dict:
        return {}

    def finish(self, setup, state) -> RunResult:
        from archviz.train.loop import evaluate, load_best_weights, write_run_record

        p, d, ranks = state.position, setup.data, setup.ranks
        _, last_accuracy, _ = evaluate(setup, "test")
        load_best_weights(setup)
        test_loss, test_accuracy, predicted = evaluate(setup, "test", predictions=True)
        report = class_report(d.test.labels, predicted.numpy(), d.classes)
        heading = (f"{setup.model} on {d.name}: best.pt (epoch {p.best['epoch']} of {p.epoch}, the lowest validation "
                   f"loss) on the {d.test_split} split, {len(d.test):,} images")
        if ranks.main:
            write_report(setup.folder, report, heading=heading)
        train_seconds = sum(row["seconds"] for row in p.history)
        images = sum(row["images_per_second"] * row["seconds"] for row in p.history)
        peak = int(ranks.max(setup.memory.peak_bytes(), setup.device))
        final = {"test_split": d.test_split, "test_accuracy": test_accuracy, "test_loss": test_loss,
                 "last_test_accuracy": last_accuracy,
                 "images_per_second": images / train_seconds if train_seconds else 0.0,
                 "peak_memory_bytes": peak, "peak_memory": setup.memory.description}
        write_run_record(setup, state, "finished", final=final, stopped_early=state.stopped_early,
                         time_budget=setup.time_budget)
        return RunResult(
            folder=setup.folder, model=setup.model, dataset=d.name, settings=setup.settings, params=setup.params,
            changes=setup.input_steps + setup.fitted.changes, history=tuple(p.history), best_epoch=p.best["epoch"],
            best_val_accuracy=p.best["val_accuracy"], test_split=d.test_split, test_accuracy=test_accuracy,
            last_test_accuracy=last_accuracy, report=report, train_seconds=train_seconds,
            images_per_second=final["images_per_second"], graph=setup.fitted.graph, stopped_early=state.stopped_early,
            peak_memory_bytes=peak, peak_memory=setup.memory.description, rank=ranks.rank, world_size=ranks.world)


