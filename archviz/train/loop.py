"""The training loop of `archviz train`: a spec's model trained on a local dataset, resumable bit for bit.

One process per device (several under torchrun: distributed.py). Every epoch: a permutation of the training images
from a seeded generator, batches adapted on the device (batches.py), cross-entropy on logits, a step of the optimiser
and of the per-batch learning rate schedule; then the validation split, a line of metrics and a checkpoint (last.pt,
and best.pt when the validation loss is the lowest so far). At the end, best.pt is scored on the test split
(per-class report, confusion matrix).

Exact resume: a checkpoint holds the data-order generator's state at the start of its epoch and the number of
batches done in it, so the same permutation is drawn again and the finished batches skipped; with the weights,
optimiser, scheduler, augmentation generator and global RNG states restored, a run interrupted anywhere (Ctrl-C
stops after the current batch and saves a mid-epoch checkpoint) ends with the same weights as an uninterrupted one
on the CPU with the same thread count.

On CUDA: bf16 autocast, channels_last, cuDNN autotuning, and the images kept on the GPU when they fit; the loss is
read back every SYNC_EVERY batches rather than every batch, so the GPU is not stalled. On the CPU, networks with
convolutions train channels_last too (NHWC convolutions: measured 1.6x faster for lenet and 2-3x for mobilenet_v2 on
a 2-core CPU, resnet18 no slower; benchmarks/train_speed.py).
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from archviz.errors import ArchvizError
from archviz.train import batches as batching
from archviz.train import distributed
from archviz.train.checkpoint import FORMAT, Field, check_against, check_model, rng_state, set_rng_state, versions
from archviz.train.data import Dataset, DatasetKind, load_dataset, parse_dataset
from archviz.train.memory import PeakMemory
from archviz.train.metrics import class_report
from archviz.graph.structure import ExportError
from archviz.render.spec_yaml import graph_to_spec
from archviz.train.model import describe_input_adaptation, fit_model, model_source, source_input
from archviz.train.progress import Reporter, Silent, reporter
from archviz.train.run import (RunResult, TrainingDiverged, TrainingInterrupted, check_text_path, claimed,
                               default_folder)
from archviz.train.run_folder import (BEST, LAST, RunRecord, load_best, load_last, save_last, write_metrics,
                                      write_record, write_report)
from archviz.train.settings import BOUNDS, SGD_MOMENTUM, Adapt, Device, Optimizer, Runtime, Schedule, Settings

SYNC_EVERY = {"cpu": 1, "cuda": 32}  # batches between reading the loss back (a read waits for the GPU)
EVAL_BATCH_FACTOR = 4  # evaluation holds no gradients: larger batches fit


def loss_function(logits, labels):
    """Cross-entropy on logits, in float32 whatever the autocast dtype (a module attribute, so tests can patch it)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), labels)


def train(model: str | Path, *, dataset: str = "digits", data: str | Path | None = None, epochs: int | None = None,
          batch_size: int | None = None, lr: float | None = None, optimizer: str | None = None,
          schedule: str | None = None, weight_decay: float | None = None, augment: bool | None = None,
          adapt: str | None = None, seed: int | None = None, device: str = "auto", threads: int | None = None,
          compile: bool = False, output: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool | None = None, stop: Callable[[int, int], bool] | None = None,
          time_budget: float | None = None) -> RunResult:
    """Train a zoo model or spec file on a dataset; write the run folder; return the final figures.

    Settings left as None take Settings' defaults, or with resume=True the run's own (any given must match them).
    progress: None shows a bar on a terminal and lines elsewhere, True lines, False nothing. stop(epoch, batch),
    called after every batch, stops the run as Ctrl-C does when it returns True. time_budget (seconds of training)
    ends the run after the last epoch that fits in it, as if it were the last one (the schedule is cut short).
    Raises TrainingInterrupted when stopped, TrainingDiverged when the loss is not finite.
    The output folder must be new, empty or a run of archviz train; overwrite=True writes into a folder of other
    files (never replacing one) or trains a run anew; while the run writes it, no other run may (run.claimed).
    Under torchrun (WORLD_SIZE > 1) the run is data-parallel, one process per rank (archviz/train/distributed.py).

    >>> result = train("lenet", dataset="digits", epochs=1, output="runs/doc", progress=False)  # doctest: +SKIP
    >>> result.test_accuracy > 0.5  # doctest: +SKIP
    True
    """
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "schedule": schedule,
             "weight_decay": weight_decay, "augment": augment, "adapt": adapt, "seed": seed}
    return run_training(model, given=given, dataset=dataset, data=data, device=device, threads=threads,
                        compile=compile, output=output, resume=resume, overwrite=overwrite, progress=progress,
                        stop=stop, time_budget=time_budget)


def run_training(model, *, given: dict, dataset: str, data, device: str, threads: int | None, compile: bool, output,
                 resume: bool, progress: bool | None, stop, time_budget: float | None, make_run=None,
                 folder_kind: str = "", overwrite: bool = False, run_kind: str = "train"):
    """train()'s work, for any run class (`make_run`, default _Run; archviz pretrain passes its own, and
    run_kind="pretrain": the kind of run a folder may hold to be written again)."""
    given = {key: value for key, value in given.items() if value is not None}
    _check_choices(given, device)
    runtime = Runtime(Device(device), threads, compile)
    ranks = distributed.join(cuda=Device(device) != Device.CPU and _torch().cuda.is_available())
    try:
        return _train(model, ranks=ranks, dataset=dataset, data=data, given=given, runtime=runtime, output=output,
                      resume=resume, progress=progress, stop=stop, time_budget=time_budget, make_run=make_run,
                      folder_kind=folder_kind, overwrite=overwrite, run_kind=run_kind)
    except TrainingInterrupted:
        raise  # every rank stopped at the same batch and the checkpoint is written: the group is still sound
    except BaseException as error:
        if not ranks.distributed:
            raise
        distributed.leave(failed=True)  # the peers' collectives fail now, rather than at their timeout
        if distributed.is_collective_failure(error):
            raise ArchvizError(f"{ranks.describe()}: another process of the run failed or stopped "
                               f"({distributed.failure_text(error)}); its own message says why") from None
        raise


def _train(model, *, ranks: distributed.Ranks, dataset: str, data, given: dict, runtime: Runtime, output, resume: bool,
           progress: bool | None, stop, time_budget: float | None, make_run=None, folder_kind: str = "",
           overwrite: bool = False, run_kind: str = "train"):
    """The run in the folder: `make_run` (default _Run) builds it with _Run's arguments; folder_kind names the
    default folder (runs/MODEL-DATASET[-KIND]-TIME)."""
    folder = Path(output) if output is not None else default_folder(str(model), dataset, folder_kind)
    if output is None and ranks.distributed:  # the default's time stamp may differ by a second between ranks
        folder = Path(ranks.gather_objects(str(folder))[0])
    for option, value in (("model", model), ("--dataset", dataset), ("--data", data), ("-o", folder)):
        if value is not None:
            check_text_path(option, value)
    kind, path = parse_dataset(dataset, data)
    with claimed(folder, kind=run_kind, resume=resume, overwrite=overwrite, hold=ranks.main):
        return _train_in(model, ranks=ranks, kind=kind, path=path, given=given, runtime=runtime, folder=folder,
                         resume=resume, progress=progress, stop=stop, time_budget=time_budget, make_run=make_run)


def _train_in(model, *, ranks: distributed.Ranks, kind: DatasetKind, path, given: dict, runtime: Runtime,
              folder: Path, resume: bool, progress: bool | None, stop, time_budget: float | None, make_run):
    """The run, once its folder is claimed (run.claimed)."""
    dataset_name = kind.value if path is None else f"{kind.value}:{path}"
    saved = _resume_state(folder, model, dataset_name, given) if resume else None
    settings = Settings.from_dict(saved["settings"]) if saved else Settings.from_dict(
        {**Settings().as_dict(), **{k: (v.value if hasattr(v, "value") else v) for k, v in given.items()}})
    check_settings(settings, runtime)
    show = reporter(progress) if ranks.main else Silent()
    previous_threads = _torch().get_num_threads()
    try:
        with _interrupt_requests() as interrupted:
            def should_stop(epoch: int, batch: int) -> bool:
                return interrupted() or (stop is not None and stop(epoch, batch))

            return (make_run or _Run)(model, kind, path, settings, runtime, folder, show, should_stop, saved,
                                      time_budget, ranks).go()
    finally:
        show.close()
        _torch().set_num_threads(previous_threads)


def _check_choices(given: dict, device: str) -> None:
    """A value outside a closed set of choices (--optimizer adamx) as an ArchvizError naming the choices."""
    for option, value, kind in (("optimizer", given.get("optimizer"), Optimizer),
                                ("schedule", given.get("schedule"), Schedule), ("adapt", given.get("adapt"), Adapt),
                                ("device", device, Device)):
        if value is not None and value not in {choice.value for choice in kind}:
            raise ArchvizError(f"--{option} {value!r}: expected one of {', '.join(c.value for c in kind)}")


def check_settings(settings: Settings, runtime: Runtime) -> None:
    """Every bad value, up front, as one ArchvizError naming the option; a checkpoint's settings are held to the
    same BOUNDS (checkpoint.check_structure)."""
    problems = [f"--{name.replace('_', '-')} {getattr(settings, name)!r}: {bound.describe()}"
                for name, bound in BOUNDS.items() if not bound.holds(getattr(settings, name))]
    if runtime.threads is not None and runtime.threads < 1:
        problems.append(f"--threads {runtime.threads!r}: at least 1")
    if problems:
        raise ArchvizError("; ".join(problems))


def _torch():
    from archviz.torch_build import import_torch

    return import_torch()


def _resume_state(folder: Path, model, dataset_name: str, given: dict) -> dict:
    state = load_last(folder)
    if state["source"]["model"] != str(model):
        raise ArchvizError(f"{folder} is a run of {state['source']['model']!r}, not {str(model)!r}")
    if state["dataset"]["name"] != dataset_name:
        raise ArchvizError(f"{folder} is a run on {state['dataset']['name']!r}, not {dataset_name!r}")
    if state["source"]["kind"] != "code" and model_source(model).spec_text != state["source"]["spec_text"]:
        raise ArchvizError(f"{state['source']['spec_file']} changed since the run in {folder} started; an exact "
                           "resume needs the same spec")
    differ = [f"--{key.replace('_', '-')} {value!r} (the run has {state['settings'][key]!r})"
              for key, value in given.items()
              if (value.value if hasattr(value, "value") else value) != state["settings"][key]]
    if differ:
        raise ArchvizError(f"--resume continues {folder} with its own settings; leave out: {', '.join(differ)}")
    return state


@contextmanager
def _interrupt_requests():
    """A function telling whether Ctrl-C was pressed; a second Ctrl-C raises KeyboardInterrupt at once."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield lambda: False
        return
    pressed = []

    def handler(signum, frame):
        if pressed:
            signal.default_int_handler(signum, frame)
        pressed.append(time.monotonic())
        sys.stderr.write("\nstopping after this batch to save a checkpoint (Ctrl-C again stops at once)\n")
        sys.stderr.flush()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class _Position:
    """Where the run is: epochs completed, and batches done in the epoch after them, with that epoch's sums."""

    epoch: int = 0
    batch: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)
    best: dict | None = None  # {"epoch", "val_accuracy", "val_loss"} of best.pt

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "loss_sum": self.loss_sum, "correct": self.correct,
                "seen": self.seen, "seconds": self.seconds, "history": list(self.history), "best": self.best}


class _Run:
    """One run's state while it trains; made and driven by train()."""

    def __init__(self, model, kind: DatasetKind, path, settings: Settings, runtime: Runtime, folder: Path,
                 show: Reporter, should_stop, saved: dict | None, time_budget: float | None = None,
                 ranks: distributed.Ranks = distributed.Ranks()):
        self.torch = torch = _torch()
        self.model, self.settings, self.runtime, self.folder = str(model), settings, runtime, folder
        self.show, self.should_stop, self.saved = show, should_stop, saved
        self.time_budget, self.stopped_early = time_budget, None
        self.ranks = ranks
        # the processes of one machine share its cores
        self.threads = runtime.threads or max(1, runtime.thread_count() // ranks.local_world)
        torch.set_num_threads(self.threads)
        self.device = _pick_device(runtime.device, torch, ranks)
        if saved and saved["runtime"].get("world_size", 1) != ranks.world:
            was = saved["runtime"].get("world_size", 1)
            raise ArchvizError(f"{folder} was trained by {was} process{'es' if was != 1 else ''} and this is "
                               f"{ranks.world}; an exact resume needs the same number"
                               + (f": torchrun --nproc-per-node {was} ..." if was > 1 else ": run it without torchrun"))
        if saved:
            self._check_resumable(saved)
        self.data = self._load_data(model, kind, path)
        self.fitted = self._fit(model)
        if saved and saved["source"]["kind"] == "code" and saved["source"]["spec_text"] != self.fitted.source.spec_text:
            raise ArchvizError(f"{model}: the model's code traces to a different network than when the run in "
                               f"{folder} started; an exact resume needs the same model")
        self.input_steps = describe_input_adaptation(self.data.image_shape, self.fitted.input_shape)

    # --- what a subclass changes (archviz/pretrain/loop.py trains a pretext task instead of the labels) ---------
    def _fit(self, model):
        """The FittedModel whose graph is built and trained."""
        return fit_model(model, classes=len(self.data.classes), image_shape=self.data.image_shape,
                         adapt=self.settings.adapt.value)

    def _wrap(self, net):
        """The module the optimiser trains and the checkpoint holds, around the graph's module."""
        return net

    def _epoch_order(self, epoch: int):
        """The training images of one epoch, in the order they are used."""
        return self.torch.randperm(len(self.data.train), generator=self.order)

    def _batch_loss(self, x, y, index, generator):
        """(loss, number of right answers, number of answers) of one training batch; index: its images' positions
        in the training split."""
        with self._autocast():
            logits = self.runner(x)
        loss = loss_function(logits, y)
        return loss, (logits.argmax(1) == y).sum(), len(y)

    def _eval_batch(self, x, y, start: int):
        """(summed loss, right answers, answers, predicted labels or None) of one evaluation batch; start is the index
        of its first image in the split."""
        with self._autocast():
            logits = self.evaluator(x)
        guesses = logits.argmax(1)
        return loss_function(logits, y).double() * len(y), (guesses == y).sum(), len(y), guesses

    def _check_resumable(self, saved: dict) -> None:
        """Refuse a checkpoint of another kind of run, before anything is built."""
        if "pretext" in saved:
            task = Field(self.folder / LAST, "pretext", saved["pretext"])["task"].text()
            raise ArchvizError(f"{self.folder} is a run of archviz pretrain --task {task}; resume it with archviz "
                               "pretrain")

    def _after_step(self) -> None:
        """Work after each optimiser step."""

    def _answers_per_image(self) -> int:
        """How many scored answers one training image gives (archviz train: one label)."""
        return 1

    def _images_per_second(self) -> float:
        p = self.position
        return p.seen / self._answers_per_image() / p.seconds if p.seconds else 0.0

    def _epoch_figures(self) -> dict:
        """Figures of the epoch to record beside the losses and accuracies (metrics.json)."""
        return {}

    def _epoch_begin(self, epoch: int) -> None:
        """Work before an epoch's batches, also when a resumed run starts in the middle of the epoch."""

    def _title(self) -> str:
        return f"archviz train: {self.model} ({self.params:,} params)"

    def _extra_state(self) -> dict:
        """What a checkpoint holds besides the weights, optimiser and random states."""
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def _check_extra_state(self, state: dict, path: Path) -> None:
        """Refuse what _load_extra_state would load, before anything of the checkpoint is loaded."""

    def _load_best(self) -> None:
        """best.pt's weights into the net (on rank 0, which wrote it)."""
        path = self.folder / BEST
        state = load_best(self.folder)
        check_model(state, path, self.net.state_dict())
        self.net.load_state_dict(state["model"])

    def _load_data(self, model, kind, path) -> Dataset:
        shape = None
        if kind == DatasetKind.FOLDER and self.settings.adapt == Adapt.INPUT:
            shape = source_input(model)  # decode the photos at the model's size: no resizing per batch
        name = kind.value if path is None else f"{kind.value}:{path}"
        return load_dataset(name, image_size=tuple(shape[1:]) if shape and len(shape) == 3 else None,
                            channels=shape[0] if shape and len(shape) == 3 else None)

    # --- set-up ----------------------------------------------------------------------------------------------------
    def _build(self):
        torch, settings = self.torch, self.settings
        from archviz.torch_build import to_torch

        torch.manual_seed(settings.seed)
        random.seed(settings.seed)
        import numpy as np

        np.random.seed(settings.seed)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")
        self.stats = batching.channel_stats(self.data.train.images, self.fitted.input_shape[0])
        self.net = self._wrap(to_torch(self.fitted.graph, device=self.device))
        self.channels_last = cuda or _has_convolutions(self.fitted.graph)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        ranks = self.ranks
        trainer = ranks.wrap(self.net, self.device)  # every rank starts from rank 0's weights
        self.runner = torch.compile(trainer) if self.runtime.compile else trainer
        # evaluation runs each rank's share without DDP's collectives (shares may differ by one batch)
        self.evaluator = self.runner if not ranks.distributed else self.net
        if ranks.rank:
            torch.manual_seed(distributed.rank_seed(settings.seed, ranks.rank, 0))  # dropout differs per rank
        self.params = sum(p.numel() for p in self.net.parameters())
        self.graph_spec = _exported(self.fitted.graph)
        store = batching.storage_device(
            sum(s.images.nbytes for s in (self.data.train, self.data.val, self.data.test)), self.device)
        self.images = {name: torch.from_numpy(getattr(self.data, name).images).to(store)
                       for name in ("train", "val", "test")}
        self.labels = {name: torch.from_numpy(getattr(self.data, name).labels).to(self.device)
                       for name in ("train", "val", "test")}
        self.store = store
        self.make_batch = batching.BatchMaker(input_shape=self.fitted.input_shape, stats=self.stats,
                                              device=self.device, channels_last=self.channels_last,
                                              augment=settings.augment, flips=self.data.flips)
        count = sum(len(getattr(self.data, name)) for name in ("train", "val", "test"))
        self.prepared = self.make_batch.needs_adapting(self.data.image_shape) and batching.prepared_fits(
            count * 4 * math.prod(self.fitted.input_shape), store)
        if self.prepared:  # resized and converted once, not every batch of every epoch
            self.images = {name: self.make_batch.prepare(images) for name, images in self.images.items()}
        count = ranks.shard_size(len(self.data.train))
        # a batch of one would break batch norm's training statistics: that image sits out (a different one each epoch)
        self.batches = count // settings.batch_size + (1 if count % settings.batch_size > 1 else 0)
        if self.batches == 0:
            raise ArchvizError(f"{self.data.name}: the training split has {count} image(s); training needs at least 2")
        self.optimizer = _optimizer(settings, self.net.parameters(), torch)
        steps, epochs, schedule = self.batches, settings.epochs, settings.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, schedule=schedule, steps_per_epoch=steps, epochs=epochs))
        self.order = torch.Generator().manual_seed(settings.seed)
        self.augment_draws = torch.Generator().manual_seed(
            settings.seed + 1 if not ranks.rank else distributed.rank_seed(settings.seed, ranks.rank, 1))
        self.position = _Position()
        if self.saved:
            self._restore(self.saved)

    def _restore(self, state: dict):
        path = self.folder / LAST
        check_against(state, path, model=self.net.state_dict(), scheduler=self.scheduler.state_dict(),
                      param_shapes=[[tuple(p.shape) for p in group["params"]] for group in self.optimizer.param_groups],
                      batches=self.batches)
        self._check_extra_state(state, path)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.order.set_state(state["order_generator"])
        own = state["ranks"][self.ranks.rank] if self.ranks.distributed else state
        self.augment_draws.set_state(own["augment_generator"])
        set_rng_state(own["rng"])
        position = state["position"]
        self.position = _Position(**{k: position[k] for k in ("epoch", "batch", "loss_sum", "correct", "seen",
                                                              "seconds", "best")},
                                  history=list(position["history"]))
        self.order_state = state["order_generator"]
        self._load_extra_state(state)

    def _header(self):
        s, data = self.settings, self.data
        lines = [f"{self._title()} on {data.describe()}"]
        lines += [f"  data: {note}" for note in data.notes]
        once = " (once for the whole dataset, before training)" if self.prepared else ""
        lines += [f"  input: {step}{once}" for step in self.input_steps]
        lines += [f"  model: {change}" for change in self.fitted.changes]
        augment = batching.describe_augmentation(data.flips) if s.augment else "no augmentation"
        lines.append(f"  settings: {s.optimizer.value} lr {s.lr:g}, weight decay {s.weight_decay:g}, "
                     f"{s.schedule.value} schedule, batch {s.batch_size}, {s.epochs} epochs, seed {s.seed}; {augment}")
        on = (f"{self.device}" + (", bf16 autocast" if self.device.type == "cuda" else "")
              + (", channels_last" if self.channels_last else ""))
        lines.append(f"  device: {on}, {self.threads} CPU thread{'s' if self.threads != 1 else ''}"
                     f"{', torch.compile' if self.runtime.compile else ''}; run folder {self.folder}")
        if self.ranks.distributed:
            r = self.ranks
            lines.append(f"  data-parallel: {r.world} processes ({r.backend}), each training on a share of "
                         f"{r.shard_size(len(data.train)):,} images; batch {s.batch_size} per process, so each "
                         f"step sees {r.world * s.batch_size}")
        busy = _load_average()
        if self.device.type == "cpu" and self.threads > 1 and busy > self.threads - 0.5:
            lines.append(f"  note: this machine is busy (load {busy:.1f} on {self.threads} cores); threads that wait "
                         "for each other can make training many times slower: try --threads 1")
        if self.saved:
            p = self.saved["position"]
            lines.append(f"  resuming after epoch {p['epoch']}" + (f", batch {p['batch']}" if p["batch"] else ""))
            was = self.saved["runtime"]["threads"]
            if was != self.threads and self.device.type == "cpu":
                lines.append(f"  note: the run used {was} threads and this one {self.threads}: the weights may differ "
                             "in the last bits from an uninterrupted run")
        for line in lines:
            self.show.line(line)

    def _alive_between_steps(self) -> list:
        """The tensors a training step starts with: the weights, buffers and optimizer state."""
        tensors = [*self.net.parameters(), *self.net.buffers()]
        for state in self.optimizer.state.values():
            tensors += [value for value in state.values() if isinstance(value, self.torch.Tensor)]
        return tensors

    # --- the loop --------------------------------------------------------------------------------------------------
    def go(self) -> RunResult:
        self.memory = PeakMemory.start(self.device)
        self._build()
        self._header()
        if self.ranks.main:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self.done_here = 0
        try:
            while self.position.epoch < self.settings.epochs and not self._out_of_time():
                self._epoch()
        except TrainingDiverged as error:
            self._record("diverged", message=str(error))
            raise
        except TrainingInterrupted as error:
            self._record("interrupted", message=str(error))
            self.ranks.barrier()  # last.pt is written before any rank goes on (to resume it, say)
            raise
        result = self._finish()
        self.ranks.barrier()  # every file is written before any rank returns
        return result

    def _epoch(self):
        torch, p, s = self.torch, self.position, self.settings
        epoch = p.epoch + 1
        if p.batch == 0:
            p.loss_sum, p.correct, p.seen, p.seconds = 0.0, 0, 0, 0.0
        self._epoch_begin(epoch)
        self.order_state = self.order.get_state()
        order = self.ranks.shard(self._epoch_order(epoch)).to(self.store)
        self.show.epoch_start(epoch, s.epochs, self.batches, p.batch)
        self.net.train()
        sync_every = SYNC_EVERY.get(self.device.type, SYNC_EVERY["cuda"])
        pending, asked = [], False
        tick = time.perf_counter()
        for batch in range(p.batch, self.batches):
            index = order[batch * s.batch_size:(batch + 1) * s.batch_size]
            x = self.make_batch(self.images["train"][index], generator=self.augment_draws)
            y = self.labels["train"][index.to(self.device)]
            with self.memory.step(self._alive_between_steps, (x, y)):
                loss, correct, count = self._batch_loss(x, y, index, self.augment_draws)
                pending.append((batch + 1, loss.detach(), correct, count))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            self.scheduler.step()
            self._after_step()
            p.batch = batch + 1
            self.done_here += 1
            asked = self.should_stop(epoch, batch + 1) or (asked and self.ranks.distributed)
            stopping = False
            # under torchrun the ranks agree to stop when they flush, so that all stop after the same batch
            if len(pending) >= sync_every or (asked and not self.ranks.distributed) or batch + 1 == self.batches:
                stopping = self._flush(pending, epoch, stop=asked)
                p.seconds += time.perf_counter() - tick
                tick = time.perf_counter()
                self._progress(epoch)
            if stopping:
                self._interrupt(epoch)
        p.seconds += time.perf_counter() - tick
        p.seconds = self.ranks.max(p.seconds, self.device)  # the slowest rank's time is the run's
        val_loss, val_accuracy, _ = self._evaluate("val")
        row = {"epoch": epoch, "train_loss": p.loss_sum / max(p.seen, 1), "train_accuracy": p.correct / max(p.seen, 1),
               "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": self.optimizer.param_groups[0]["lr"],
               "seconds": p.seconds, "images_per_second": self._images_per_second(),
               **self._epoch_figures()}
        p.history.append(row)
        # lowest validation loss, not highest accuracy: a small validation split saturates its accuracy early
        best = p.best is None or (-val_loss, val_accuracy) > (-p.best["val_loss"], p.best["val_accuracy"])
        if best:
            p.best = {"epoch": epoch, "val_accuracy": val_accuracy, "val_loss": val_loss}
        p.epoch, p.batch = epoch, 0
        self.order_state = self.order.get_state()
        state = self._state()
        if self.ranks.main:
            save_last(self.folder, state, best=best)
            write_metrics(self.folder, p.history)
        self.show.line(_epoch_line(row, s.epochs, best))
        if self.ranks.any(self.should_stop(epoch, self.batches), self.device) and epoch < s.epochs:
            self._interrupt(epoch, at_epoch_end=True)

    def _out_of_time(self) -> bool:
        """Whether one more epoch, at the mean time of those run, would go past the time budget."""
        history = self.position.history
        if self.time_budget is None or not history:
            return False
        spent = sum(row["seconds"] for row in history)
        if spent + spent / len(history) <= self.time_budget:
            return False
        self.stopped_early = (f"the time budget of {self.time_budget:g} s allowed {len(history)} of "
                              f"{self.settings.epochs} epochs")
        self.show.line(f"stopped early: {self.stopped_early}")
        return True

    def _flush(self, pending: list, epoch: int, *, stop: bool = False) -> bool:
        """Add the pending batches' loss and accuracy to the epoch's (summed over the ranks under torchrun); stop at
        a loss that is not finite. Returns whether to stop now: `stop` here, and on any rank under torchrun."""
        torch, p = self.torch, self.position
        if self.ranks.distributed:
            return self._flush_ranks(pending, epoch, stop)
        losses = torch.stack([item[1] for item in pending]).float().cpu()
        self._check_finite(losses, pending, epoch)
        corrects = torch.stack([item[2] for item in pending]).cpu().tolist()
        for (_, _, _, size), loss, correct in zip(pending, losses.tolist(), corrects):
            p.loss_sum += loss * size
            p.correct += int(correct)
            p.seen += size
        pending.clear()
        return stop

    def _flush_ranks(self, pending: list, epoch: int, stop: bool) -> bool:
        torch, p, count = self.torch, self.position, len(pending)
        sizes = torch.tensor([item[3] for item in pending], dtype=torch.float64, device=self.device)
        packed = torch.cat([torch.stack([item[1] for item in pending]).double() * sizes,
                            torch.stack([item[2] for item in pending]).double(), sizes,
                            torch.tensor([float(stop)], dtype=torch.float64, device=self.device)])
        packed = self.ranks.sum_(packed).cpu()  # (loss sums, corrects, sizes) per batch, then the stop requests
        loss_sums, corrects, sizes = packed[:count], packed[count:2 * count], packed[2 * count:3 * count]
        self._check_finite(loss_sums / sizes, pending, epoch)
        p.loss_sum += float(loss_sums.sum())
        p.correct += int(corrects.sum())
        p.seen += int(sizes.sum())
        pending.clear()
        return bool(packed[-1] > 0)

    def _check_finite(self, losses, pending: list, epoch: int):
        torch, p = self.torch, self.position
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            first = int((~finite).nonzero()[0, 0])
            batch, value = pending[first][0], float(losses[first])
            kept = (f"last.pt keeps epoch {p.epoch}, the last good one" if p.epoch else
                    "no epoch completed, so there is no checkpoint")
            raise TrainingDiverged(
                f"the loss became {value} at epoch {epoch}, batch {batch} of {self.batches} (lr "
                f"{self.optimizer.param_groups[0]['lr']:g}); training stopped and {kept}; try a lower --lr")

    def _progress(self, epoch: int):
        p = self.position
        elapsed = time.perf_counter() - self.started
        remaining = (self.settings.epochs - epoch) * self.batches + self.batches - p.batch
        eta = elapsed / self.done_here * remaining if self.done_here else float("nan")
        self.show.batch(p.batch, p.loss_sum / max(p.seen, 1), p.correct / max(p.seen, 1),
                        self._images_per_second(), eta)

    def _interrupt(self, epoch: int, *, at_epoch_end: bool = False):
        if not at_epoch_end:
            state = self._state()
            if self.ranks.main:
                save_last(self.folder, state)
        where = (f"after epoch {epoch}" if at_epoch_end else
                 f"in epoch {epoch} after batch {self.position.batch} of {self.batches}")
        raise TrainingInterrupted(f"interrupted {where}; {self.folder / LAST} holds this point; continue with "
                                  f"--resume -o {self.folder}", checkpoint=self.folder / LAST)

    def _autocast(self):
        if self.device.type == "cuda":
            return self.torch.autocast("cuda", dtype=self.torch.bfloat16)
        from contextlib import nullcontext

        return nullcontext()

    def _evaluate(self, split: str, *, predictions: bool = False):
        """(mean loss, accuracy, predicted labels or None) of the current weights on a split, in eval mode.

        Under torchrun each rank scores every world-th image and the sums are added over the ranks.
        """
        torch, ranks = self.torch, self.ranks
        images, labels = self.images[split], self.labels[split]
        count = len(labels)
        if ranks.distributed:
            ranks.broadcast_module(self.net, buffers_only=True)  # batch norm's running statistics: rank 0's, saved
            images, labels = images[ranks.rank::ranks.world], labels[ranks.rank::ranks.world]
        size = self.settings.batch_size * EVAL_BATCH_FACTOR
        self.net.eval()
        sums, guesses = torch.zeros(3, device=self.device, dtype=torch.float64), []  # (loss sum, correct, answers)
        with torch.no_grad():
            for start in range(0, len(labels), size):
                x = self.make_batch(images[start:start + size])
                loss_sum, correct, answers, guess = self._eval_batch(x, labels[start:start + size], start)
                sums[0] += loss_sum
                sums[1] += correct
                sums[2] += answers
                guesses.append(guess)
        self.net.train()
        ranks.sum_(sums)
        predicted = None
        if predictions:
            predicted = ranks.gather_strided(torch.cat(guesses) if guesses else labels[:0], count).cpu()
        answers = max(float(sums[2]), 1.0)
        return float(sums[0]) / answers, float(sums[1]) / answers, predicted

    # --- records ---------------------------------------------------------------------------------------------------
    def _state(self) -> dict:
        """The checkpoint; under torchrun every rank calls it (it gathers each rank's random states)."""
        d = self.data
        own = {"augment_generator": self.augment_draws.get_state(), "rng": rng_state()}
        everyone = self.ranks.gather_objects(own)
        return {
            "format": FORMAT,
            "model": self.net.state_dict(),
            "source": self.fitted.source.as_dict(),
            "graph": {"name": self.fitted.graph.name, "input_shape": list(self.fitted.input_shape),
                      "changes": list(self.fitted.changes), "params": self.params,
                      "spec": self.graph_spec},  # the graph rebuilt from data, never by importing code
            "settings": self.settings.as_dict(),
            "runtime": self._runtime_record(),
            "dataset": {"name": d.name, "classes": list(d.classes), "image_shape": list(d.image_shape),
                        "sizes": {"train": len(d.train), "val": len(d.val), d.test_split: len(d.test)},
                        "notes": list(d.notes), "input_steps": list(self.input_steps),
                        "normalize": {"mean": list(self.stats.mean), "std": list(self.stats.std)}},
            "versions": versions(),
            "position": self.position.as_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "order_generator": self.order_state,
            **own,
            **({"ranks": everyone} if self.ranks.distributed else {}),
            **self._extra_state(),  # each rank's random states, for --resume
        }

    def _runtime_record(self) -> dict:
        record = {"device": str(self.device), "threads": self.threads, "compile": self.runtime.compile}
        if self.ranks.distributed:
            record.update(world_size=self.ranks.world, backend=self.ranks.backend)
        return record

    def _record(self, status: str, **extra) -> RunRecord:
        p, d = self.position, self.data
        record = RunRecord(
            status=status, **extra,
            model=self.model, source={k: v for k, v in self.fitted.source.as_dict().items() if k != "spec_text"},
            graph={"name": self.fitted.graph.name, "input_shape": list(self.fitted.input_shape),
                   "changes": list(self.fitted.changes), "params": self.params},
            dataset={"name": d.name, "classes": list(d.classes), "image_shape": list(d.image_shape),
                     "sizes": {"train": len(d.train), "val": len(d.val), d.test_split: len(d.test)},
                     "notes": list(d.notes), "input_steps": list(self.input_steps),
                     "augmentation": batching.describe_augmentation(d.flips) if self.settings.augment else None,
                     "normalize": {"mean": list(self.stats.mean), "std": list(self.stats.std)}},
            settings=self.settings.as_dict(), runtime=self._runtime_record(), versions=versions(),
            epochs_done=p.epoch, best=p.best, train_seconds=sum(row["seconds"] for row in p.history))
        if self.ranks.main:
            write_metrics(self.folder, p.history)
            write_record(self.folder, record)
        return record

    def _finish(self) -> RunResult:
        p, d = self.position, self.data
        _, last_accuracy, _ = self._evaluate("test")
        if self.ranks.main:
            self._load_best()
        self.ranks.broadcast_module(self.net)  # only rank 0 reads best.pt: the folder may be on its machine alone
        test_loss, test_accuracy, predicted = self._evaluate("test", predictions=True)
        report = class_report(d.test.labels, predicted.numpy(), d.classes)
        heading = (f"{self.model} on {d.name}: best.pt (epoch {p.best['epoch']} of {p.epoch}, the lowest validation "
                   f"loss) on the {d.test_split} split, {len(d.test):,} images")
        if self.ranks.main:
            write_report(self.folder, report, heading=heading)
        train_seconds = sum(row["seconds"] for row in p.history)
        images = sum(row["images_per_second"] * row["seconds"] for row in p.history)
        peak = int(self.ranks.max(self.memory.peak_bytes(), self.device))
        final = {"test_split": d.test_split, "test_accuracy": test_accuracy, "test_loss": test_loss,
                 "last_test_accuracy": last_accuracy,
                 "images_per_second": images / train_seconds if train_seconds else 0.0,
                 "peak_memory_bytes": peak, "peak_memory": self.memory.description}
        self._record("finished", final=final, stopped_early=self.stopped_early, time_budget=self.time_budget)
        return RunResult(
            folder=self.folder, model=self.model, dataset=d.name, settings=self.settings, params=self.params,
            changes=self.input_steps + self.fitted.changes, history=tuple(p.history), best_epoch=p.best["epoch"],
            best_val_accuracy=p.best["val_accuracy"], test_split=d.test_split, test_accuracy=test_accuracy,
            last_test_accuracy=last_accuracy, report=report, train_seconds=train_seconds,
            images_per_second=final["images_per_second"], graph=self.fitted.graph, stopped_early=self.stopped_early,
            peak_memory_bytes=peak, peak_memory=self.memory.description, rank=self.ranks.rank,
            world_size=self.ranks.world)


def _exported(graph) -> str | None:
    """The spec text a checkpoint rebuilds its graph from; None for the few graphs a spec cannot write (a group
    whose layers are apart), whose checkpoints are rebuilt from their zoo name or recorded spec instead."""
    try:
        return graph_to_spec(graph, when=None)
    except ExportError:
        return None


def _epoch_line(row: dict, epochs: int, best: bool) -> str:
    width = len(str(epochs))
    return (f"epoch {row['epoch']:>{width}}/{epochs}  train loss {row['train_loss']:.4f} acc "
            f"{row['train_accuracy']:6.1%}  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:6.1%}  "
            f"lr {row['lr']:.2e}  {row['images_per_second']:,.0f} img/s  {row['seconds']:.1f} s"
            + ("  *" if best else ""))


def _load_average() -> float:
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return 0.0


def _has_convolutions(graph) -> bool:
    from archviz.ops import OpKind, get_op

    return any(get_op(node.op).kind == OpKind.CONV for node in graph.nodes)


def _pick_device(choice: Device, torch, ranks: distributed.Ranks = distributed.Ranks()):
    if choice == Device.CPU:
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if choice == Device.CUDA and not available:
        raise ArchvizError("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    if available and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)  # one device per process of this machine
    return torch.device("cuda") if available else torch.device("cpu")


def _optimizer(settings: Settings, parameters, torch):
    if settings.optimizer == Optimizer.SGD:
        return torch.optim.SGD(parameters, lr=settings.lr, momentum=SGD_MOMENTUM, nesterov=True,
                               weight_decay=settings.weight_decay)
    if settings.optimizer == Optimizer.ADAM:
        return torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


def lr_factor(step: int, *, schedule: Schedule, steps_per_epoch: int, epochs: int) -> float:
    """The learning rate at optimiser step `step` (from 0), as a fraction of --lr.

    cosine: linear warm-up over the first epoch (when there are several), then 0.5 * (1 + cos(pi * t)) with t going
    from 0 to 1 over the remaining steps (I. Loshchilov and F. Hutter, "SGDR", ICLR 2017, without restarts).
    step: the same warm-up, then x0.1 from half the epochs and x0.01 from three quarters. none: 1 throughout.

    >>> [round(lr_factor(s, schedule=Schedule.COSINE, steps_per_epoch=2, epochs=3), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    if schedule == Schedule.NONE:
        return 1.0
    warm = steps_per_epoch if epochs > 1 else 0
    if step < warm:
        return (step + 1) / warm
    if schedule == Schedule.COSINE:
        t = (step - warm) / max(1, steps_per_epoch * epochs - warm)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    epoch = step // steps_per_epoch
    return 0.1 ** sum(1 for milestone in (epochs // 2, 3 * epochs // 4) if 0 < milestone <= epoch)
