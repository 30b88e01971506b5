"""What a training run is made of, before its first batch: a frozen Setup (the settings, where it runs, the data on
the device, the network, the batches) and a mutable State (the optimiser, the learning rate schedule, the data-order
and augmentation generators, the position in the run), made by set_up and start in the order that makes the weights
the same on every resume, a checkpoint's state restored into them. loop.py trains with them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from archviz.errors import ArchvizError
from archviz.graph.structure import ExportError
from archviz.render.spec_yaml import graph_to_spec
from archviz.torch_build import import_torch as _torch
from archviz.train import batches as batching
from archviz.train import distributed
from archviz.train.checkpoint import check_against, set_rng_state
from archviz.train.data import Dataset, DatasetKind, load_dataset
from archviz.train.init import Started, start_from
from archviz.train.memory import PeakMemory
from archviz.train.model import FittedModel, describe_input_adaptation, source_input
from archviz.train.progress import Reporter
from archviz.train.run_folder import LAST
from archviz.train.settings import SGD_MOMENTUM, Adapt, Device, Optimizer, Runtime, Schedule, Settings
from archviz.train.task import Task
from archviz.train.threads import ThreadChoice, choose_threads


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


@dataclass(frozen=True)
class Setup:
    """What a run trains with, made once by set_up and only read afterwards: the settings, where it runs, the data
    on the device, the network and how batches are made. (The modules and the memory meter it holds change inside.)"""

    model: str
    settings: Settings
    runtime: Runtime
    folder: Path
    ranks: distributed.Ranks
    task: Task
    show: Reporter
    should_stop: Callable[[int, int], bool]
    saved: dict | None  # the checkpoint a resumed run continues from
    time_budget: float | None
    threads: int
    device: Any
    memory: PeakMemory
    data: Dataset
    fitted: FittedModel
    input_steps: tuple[str, ...]
    stats: batching.Stats
    net: Any  # the module the optimiser trains and the checkpoint holds
    runner: Any  # net as trained: under DDP and/or torch.compile
    evaluator: Any  # net as scored: without DDP's collectives
    channels_last: bool
    params: int
    graph_spec: str | None
    images: dict  # split -> images on `store`, prepared once when they fit
    labels: dict  # split -> labels on the device
    store: Any  # where the images are kept
    make_batch: batching.BatchMaker
    prepared: bool
    batches: int  # training batches per epoch on this rank
    started: Started | None = None  # what --init loaded and --freeze froze
    log: Any = None  # a TensorBoardLog with --log tensorboard, on rank 0
    thread_choice: ThreadChoice | None = None  # how the default thread count was chosen (no --threads)


@dataclass
class State:
    """What changes as the run trains: the optimiser and schedule, the data-order and augmentation generators, where
    the run is (Position), and this process's counters."""

    optimizer: Any
    scheduler: Any
    order: Any  # the data-order generator
    augment_draws: Any  # the augmentation generator
    order_state: Any  # `order`'s state at the start of the current epoch: a checkpoint draws its permutation again
    position: _Position
    started: float = 0.0
    done_here: int = 0  # batches trained by this process (for the ETA)
    stopped_early: str | None = None


def set_up(model, kind: DatasetKind, path, *, settings: Settings, runtime: Runtime, folder: Path, show: Reporter,
           should_stop, saved: dict | None, time_budget: float | None, ranks: distributed.Ranks, task: Task) -> Setup:
    """Everything a run trains with, in the order that makes the weights the same on every resume: the data, the
    fitted model, then the seeded network, the batches and their count."""
    torch = _torch()
    threads, thread_choice = _threads(runtime, saved, ranks)
    torch.set_num_threads(threads)
    device = pick_device(runtime.device, torch, ranks)
    if saved:
        _check_world(saved, folder, ranks)
        task.check_resumable(saved, folder)
    data = _load_data(model, kind, path, settings)
    fitted = task.fit(model, data, settings)
    if saved and saved["source"]["kind"] == "code" and saved["source"]["spec_text"] != fitted.source.spec_text:
        raise ArchvizError(f"{model}: the model's code traces to a different network than when the run in "
                           f"{folder} started; an exact resume needs the same model")
    memory = PeakMemory.start(device)
    _seed(settings.seed, torch)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    from archviz.torch_build import to_torch

    stats = batching.normalization(settings.normalize, data.train.images, fitted.input_shape[0])
    net = task.wrap(to_torch(fitted.graph, device=device), model=str(model), fitted=fitted, stats=stats,
                    device=device)
    started = start_from(net, init=settings.init, freeze=settings.freeze, graph=fitted.graph, load=not saved)
    channels_last = cuda or _has_convolutions(fitted.graph)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    trainer = ranks.wrap(net, device)  # every rank starts from rank 0's weights
    runner = torch.compile(trainer) if runtime.compile else trainer
    if ranks.rank:
        torch.manual_seed(distributed.rank_seed(settings.seed, ranks.rank, 0))  # dropout differs per rank
    splits = ("train", "val", "test")
    store = batching.storage_device(sum(getattr(data, name).images.nbytes for name in splits), device)
    images = {name: torch.from_numpy(getattr(data, name).images).to(store) for name in splits}
    labels = {name: torch.from_numpy(getattr(data, name).labels).to(device) for name in splits}
    make_batch = batching.BatchMaker(input_shape=fitted.input_shape, stats=stats, device=device,
                                     channels_last=channels_last, augment=settings.augment, flips=data.flips)
    count = sum(len(getattr(data, name)) for name in splits)
    prepared = make_batch.needs_adapting(data.image_shape) and batching.prepared_fits(
        count * 4 * math.prod(fitted.input_shape), store)
    if prepared:  # resized and converted once, not every batch of every epoch
        images = {name: make_batch.prepare(split) for name, split in images.items()}
    return Setup(
        model=str(model), settings=settings, runtime=runtime, folder=folder, ranks=ranks, task=task, show=show,
        should_stop=should_stop, saved=saved, time_budget=time_budget, threads=threads, device=device, memory=memory,
        data=data, fitted=fitted, input_steps=describe_input_adaptation(data.image_shape, fitted.input_shape),
        stats=stats, net=net, runner=runner,
        evaluator=runner if not ranks.distributed else net,  # each rank's share, without DDP's collectives
        channels_last=channels_last, params=sum(p.numel() for p in net.parameters()),
        graph_spec=_exported(fitted.graph), images=images, labels=labels, store=store, make_batch=make_batch,
        prepared=prepared, batches=_batch_count(data, settings, ranks), started=started,
        log=_log(runtime, folder, ranks, saved), thread_choice=thread_choice)


def _threads(runtime: Runtime, saved: dict | None, ranks: distributed.Ranks) -> tuple[int, ThreadChoice | None]:
    """--threads as given; a resumed run's own count (the weights depend on it); else the cores free now, shared by
    this machine's ranks."""
    if runtime.threads is not None:
        return runtime.threads, None
    if saved:
        return saved["runtime"]["threads"], None
    choice = choose_threads(share=ranks.local_world)
    return choice.threads, choice


def _log(runtime: Runtime, folder: Path, ranks: distributed.Ranks, saved: dict | None):
    from archviz.train.settings import Log

    if runtime.log != Log.TENSORBOARD or not ranks.main:
        return None
    from archviz.train.tensorboard_log import TensorBoardLog

    return TensorBoardLog(folder, first_epoch=saved["position"]["epoch"] if saved else 0)


def start(setup: Setup) -> State:
    """The optimiser, schedule and generators from the seed, or as the checkpoint left them."""
    torch, settings, ranks = _torch(), setup.settings, setup.ranks
    optimizer = _optimizer(settings, setup.net.parameters(), torch)
    steps, epochs, schedule = setup.batches, settings.epochs, settings.schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, schedule=schedule, steps_per_epoch=steps, epochs=epochs))
    order = torch.Generator().manual_seed(settings.seed)
    augment_draws = torch.Generator().manual_seed(
        settings.seed + 1 if not ranks.rank else distributed.rank_seed(settings.seed, ranks.rank, 1))
    state = State(optimizer, scheduler, order, augment_draws, order.get_state(), _Position())
    if setup.saved:
        _restore(setup, state, setup.saved)
    return state


def _check_world(saved: dict, folder: Path, ranks: distributed.Ranks) -> None:
    was = saved["runtime"].get("world_size", 1)
    if was != ranks.world:
        raise ArchvizError(f"{folder} was trained by {was} process{'es' if was != 1 else ''} and this is "
                           f"{ranks.world}; an exact resume needs the same number"
                           + (f": torchrun --nproc-per-node {was} ..." if was > 1 else ": run it without torchrun"))


def _load_data(model, kind: DatasetKind, path, settings: Settings) -> Dataset:
    shape = None
    if kind == DatasetKind.FOLDER and settings.adapt == Adapt.INPUT:
        shape = source_input(model)  # decode the photos at the model's size: no resizing per batch
    name = kind.value if path is None else f"{kind.value}:{path}"
    return load_dataset(name, image_size=tuple(shape[1:]) if shape and len(shape) == 3 else None,
                        channels=shape[0] if shape and len(shape) == 3 else None, val_fraction=settings.val_fraction)


def _seed(seed: int, torch) -> None:
    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _batch_count(data: Dataset, settings: Settings, ranks: distributed.Ranks) -> int:
    count = ranks.shard_size(len(data.train))
    # a batch of one would break batch norm's training statistics: that image sits out (a different one each epoch)
    batches = count // settings.batch_size + (1 if count % settings.batch_size > 1 else 0)
    if batches == 0:
        raise ArchvizError(f"{data.name}: the training split has {count} image(s); training needs at least 2")
    return batches


def _restore(setup: Setup, state: State, saved: dict) -> None:
    path = setup.folder / LAST
    check_against(saved, path, model=setup.net.state_dict(), scheduler=state.scheduler.state_dict(),
                  param_shapes=[[tuple(p.shape) for p in group["params"]] for group in state.optimizer.param_groups],
                  batches=setup.batches)
    setup.task.check_state(setup, saved, path)
    setup.net.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.order.set_state(saved["order_generator"])
    own = saved["ranks"][setup.ranks.rank] if setup.ranks.distributed else saved
    state.augment_draws.set_state(own["augment_generator"])
    set_rng_state(own["rng"])
    position = saved["position"]
    state.position = _Position(**{k: position[k] for k in ("epoch", "batch", "loss_sum", "correct", "seen",
                                                           "seconds", "best")},
                               history=list(position["history"]))
    state.order_state = saved["order_generator"]
    setup.task.load_state(saved)


def _exported(graph) -> str | None:
    """The spec text a checkpoint rebuilds its graph from; None for the few graphs a spec cannot write (a group
    whose layers are apart), whose checkpoints are rebuilt from their zoo name or recorded spec instead."""
    try:
        return graph_to_spec(graph, when=None)
    except ExportError:
        return None


def _has_convolutions(graph) -> bool:
    from archviz.ops import OpKind, get_op

    return any(get_op(node.op).kind == OpKind.CONV for node in graph.nodes)


def pick_device(choice: Device, torch, ranks: distributed.Ranks = distributed.Ranks()):
    """The torch device for --device: cpu, cuda (refused in one line where torch sees none), or auto (CUDA when
    available; under torchrun this process's own GPU)."""
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
