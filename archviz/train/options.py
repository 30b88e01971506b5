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
    augment: bool | None = None
    adapt: str | None = None
    device: str = "auto"
    seed: int | None = None
    threads: int | None = None
    compile: bool = False
    time_budget: float | None = None

    def train_kwargs(self) -> dict:
        """The keyword arguments of loop.train() (enums as their values)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

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
