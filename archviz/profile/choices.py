"""The closed sets of choices of `archviz profile` (and of a training-memory prediction), apart from torch so that
the CLI and the formula path can name them without loading it."""

from __future__ import annotations

import enum


class Optimizer(enum.StrEnum):
    SGD = "sgd"  # no state
    MOMENTUM = "momentum"  # SGD with momentum 0.9: one buffer per parameter
    ADAM = "adam"  # two buffers per parameter, and a one-element step count per parameter tensor
    ADAMW = "adamw"  # as Adam


class Amp(enum.StrEnum):
    BF16 = "bf16"  # torch.autocast to bfloat16
    FP16 = "fp16"  # torch.autocast to float16, with a GradScaler on CUDA


class MemoryMethod(enum.StrEnum):
    CUDA = "cuda max_memory_allocated"
    TRACKER = "live tensor storages (TorchDispatchMode)"
