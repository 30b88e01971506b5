"""The closed sets of choices of `archviz pretrain` and `archviz probe`, apart so that the CLI can name them without
loading anything else."""

from __future__ import annotations

import enum


class Task(enum.StrEnum):
    ROTATION = "rotation"
    JIGSAW = "jigsaw"
    CONTEXT = "context"
    COLORIZATION = "colorization"
    DEEPCLUSTER = "deepcluster"
    INSTDISC = "instdisc"
    SIMCLR = "simclr"


class ProbeKind(enum.StrEnum):
    LINEAR = "linear"
    KNN = "knn"
