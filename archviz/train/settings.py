"""The settings of a training run: what decides the weights (Settings) apart from where it runs (Runtime).

The defaults are chosen for `archviz train lenet --dataset digits`: AdamW at 3e-3 with weight decay 0.05, batch 32,
a cosine schedule after one epoch of warm-up and light affine augmentation reach 98.3%, 99.2% and 98.9% test
accuracy (seeds 0, 1, 2; 20 epochs, about 8 s of training on 2 idle CPU cores), where Adam at 1e-3, batch 64, no
schedule and no augmentation plateaus at 96-97.8%.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, fields

from archviz.train.choices import Adapt, Augment, Device, Log, Normalize, Optimizer, Schedule

__all__ = ["Adapt", "Augment", "Normalize", "Device", "Optimizer", "Schedule", "Settings", "Runtime", "SGD_MOMENTUM", "Bound", "BOUNDS",
           "OPTIONAL_BOUNDS", "LATER_SETTINGS"]


@dataclass(frozen=True)
class Settings:
    """Everything that decides the trained weights, for a given model, dataset and thread count."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    optimizer: Optimizer = Optimizer.ADAMW
    schedule: Schedule = Schedule.COSINE
    weight_decay: float = 0.05
    augment: Augment = Augment.LIGHT  # a preset (batches.AUGMENTATIONS); true/false in runs before the presets
    adapt: Adapt = Adapt.INPUT
    seed: int = 0
    patience: int | None = None  # stop after this many epochs without a lower validation loss; None: never
    label_smoothing: float = 0.0  # of the training loss's targets (Szegedy et al. 2016, "Rethinking Inception")
    clip_grad: float | None = None  # the largest L2 norm of all gradients together; None: not clipped
    val_fraction: float = 0.1  # data.VAL_FRACTION: the share of the images held out for validation
    init: str | None = None  # the weights the run starts from (init.py): a run folder, a file or "torchvision"
    freeze: str | None = None  # layer paths whose parameters are not trained, or "backbone" (init.py)
    normalize: Normalize = Normalize.DATASET  # the statistics each channel is normalised with

    def as_dict(self) -> dict:
        return {key: (value.value if isinstance(value, enum.Enum) else value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        kinds = {"optimizer": Optimizer, "schedule": Schedule, "adapt": Adapt, "augment": Augment.of,
                 "normalize": Normalize}
        return cls(**{f.name: kinds[f.name](data[f.name]) if f.name in kinds else data[f.name]
                      for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class Bound:
    """The values a number setting may take: the same bound for an option and for a setting read from a file."""

    low: float
    high: float = math.inf
    above: bool = False  # low itself is out (a learning rate above 0)
    integer: bool = False

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        return math.isfinite(value) and (value > self.low if self.above else value >= self.low) and value <= self.high

    def describe(self) -> str:
        if self.integer:
            return f"{self.low}..{self.high}" if math.isfinite(self.high) else f"at least {self.low}"
        if math.isfinite(self.high):
            return f"a number {'above' if self.above else 'from'} {self.low:g} {'and' if self.above else 'to'} " \
                f"{'at most ' if self.above else ''}{self.high:g}"
        if self.above:
            return "a positive number" if self.low == 0 else f"a number above {self.low:g}"
        return f"{self.low:g} or more"


EPOCHS_MAX = 100_000  # far beyond any run here (20 to 200 epochs); a file cannot ask for a run of 10**9 epochs
SEED_MAX = 2**32 - 1  # numpy's global seed takes 0..2**32 - 1
BATCH_MAX = 10**9  # the --batch-size option's cap (cli.MAX_COUNT), for a batch size read from a file too
BOUNDS = {"epochs": Bound(1, EPOCHS_MAX, integer=True), "batch_size": Bound(1, BATCH_MAX, integer=True),
          "lr": Bound(0, above=True), "weight_decay": Bound(0), "seed": Bound(0, SEED_MAX, integer=True),
          "label_smoothing": Bound(0, 0.99), "val_fraction": Bound(0, 0.75, above=True)}
OPTIONAL_BOUNDS = {"patience": Bound(1, EPOCHS_MAX, integer=True), "clip_grad": Bound(0, above=True)}  # or None
# settings added after the first runs were recorded: a run.json or checkpoint without them had their defaults
LATER_SETTINGS = ("patience", "label_smoothing", "clip_grad", "val_fraction", "init", "freeze", "normalize")
TEXT_SETTINGS = ("init", "freeze")  # a string or None


@dataclass(frozen=True)
class Runtime:
    """Where a run computes. The thread count changes results on the CPU (1 and 2 threads differ), so it is recorded."""

    device: Device = Device.AUTO
    threads: int | None = None  # None: the cores free when the run starts (threads.choose_threads)
    compile: bool = False  # torch.compile; measured 3-12% slower for resnet18 on a 2-core CPU after a 36 s compile
    log: Log = Log.CSV  # tensorboard: event files too (tensorboard_log.py)

    def thread_count(self) -> int:
        from archviz.train.threads import choose_threads

        return self.threads if self.threads is not None else choose_threads().threads


SGD_MOMENTUM = 0.9  # the usual momentum for SGD (He et al. 2016 and most image classifiers since)
