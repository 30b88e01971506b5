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


class Augment(enum.StrEnum):
    """Augmentation presets (batches.AUGMENTATIONS says what each does); a preset is true when it augments."""

    NONE = "none"
    LIGHT = "light"  # the small affine of runs before the presets (augment: true)
    STANDARD = "standard"
    STRONG = "strong"

    def __bool__(self) -> bool:
        return self is not Augment.NONE

    @classmethod
    def of(cls, value) -> Augment:
        """A preset from an option, a setting or an older run's true/false (true was light)."""
        if isinstance(value, bool):
            return cls.LIGHT if value else cls.NONE
        return cls(value)


class Normalize(enum.StrEnum):
    DATASET = "dataset"  # each channel's mean and std over the training images
    IMAGENET = "imagenet"  # torchvision's ImageNet statistics: for weights trained on them (--init torchvision)
    NONE = "none"  # the pixels on a 0..1 scale


class Log(enum.StrEnum):
    CSV = "csv"  # metrics.csv and metrics.json only (always written)
    TENSORBOARD = "tensorboard"  # and TensorBoard event files in RUN/tensorboard


class Device(enum.StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
