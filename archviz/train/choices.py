"""The closed sets of choices of `archviz train`, apart so that the CLI can name them without loading anything else."""

from __future__ import annotations

import enum


class Optimizer(enum.StrEnum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class Schedule(enum.StrEnum):
    COSINE = "cosine"  # linear warm-up over the first epoch, then half a cosine down to 0
    STEP = "step"  # the same warm-up, then x0.1 at half and at three quarters of the epochs
    NONE = "none"  # the same learning rate throughout, no warm-up


class Adapt(enum.StrEnum):
    INPUT = "input"  # the images are resized and their channels converted to the model's input
    MODEL = "model"  # the model takes the images' shape as its input


class Device(enum.StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
