"""The options of `archviz train`, shared by `compare` and `sweep`: one record (TrainOptions), declared once.

The CLI declares each option once (cli.TRAIN_OPTIONS) and hands the three commands the same TrainOptions; a value
left as None takes Settings' default (settings.py). `flags()` writes the options back as command-line flags, so that
sweep's best command repeats every option its runs were trained with.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace

__all__ = ["TrainOptions"]


@dataclass(frozen=True)
class TrainOptions:
    """What `archviz train` is told besides the model and the run folder (None: the default)."""

    dataset: str = "digits"
    data: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    schedule: str | None = None
    weight_decay: float | None = None
    augment: str | None = None  # a preset: none, light, standard, strong
    adapt: str | None = None
    device: str = "auto"
    seed: int | None = None
    threads: int | None = None
    compile: bool = False
    time_budget: float | None = None
    patience: int | None = None
    label_smoothing: float | None = None
    clip_grad: float | None = None
    val_fraction: float | None = None
    init: str | None = None
    freeze: str | None = None
    normalize: str | None = None
    log: str | None = None  # csv (the default) or tensorboard
    seeds: int = 1  # runs of seeds SEED, SEED+1, ...; not an option of one run (compare.train_seeds)

    def train_kwargs(self) -> dict:
        """The keyword arguments of loop.train() (enums as their values), and of compare/sweep with seeds."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def run_kwargs(self) -> dict:
        """The keyword arguments of one run's loop.train(): all but seeds."""
        return {key: value for key, value in self.train_kwargs().items() if key != "seeds"}

    def but(self, **changes) -> TrainOptions:
        return replace(self, **changes)

    def flags(self) -> list[str]:
        """The options that differ from the defaults, as `archviz train` flags, in declaration order."""
        default = TrainOptions()
        parts = []
        for f in fields(self):
            value = _plain(getattr(self, f.name))
            if value is None or (value == _plain(getattr(default, f.name)) and f.name != "dataset"):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag if value else flag.replace("--", "--no-", 1))
            else:
                parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return parts


def _plain(value):
    return value.value if isinstance(value, enum.Enum) else value
