"""archviz pretrain: self-supervised pretext tasks, whose backbone a linear probe then measures.

Modules, in the order a run uses them: choices (Task, ProbeKind), backbone (the model without its classifier; the
probe blocks), tasks (inputs and labels of rotation, jigsaw, context and colorization), contrastive (SimCLR's views
and loss, instance discrimination's memory bank, DeepCluster's k-means), objectives, clustering and colorization
(each task as the training loop's objective), net (the backbone and the task's head), loop (`archviz pretrain`),
probe (`archviz probe`), view (what `archviz report --run` shows of a pretext run).
"""

from __future__ import annotations

import importlib

_TASKS = ("Task", "rotations", "rotate_back", "jigsaw_permutations", "jigsaw_tiles", "unshuffle",
          "CONTEXT_POSITIONS", "ContextPairs", "context_pairs", "require_colour", "rgb_to_lab", "ab_bins",
          "colour_targets", "lightness_input", "colorization_batch")
_CONTRASTIVE = ("simclr_views", "nt_xent", "MemoryBank", "kmeans", "balanced_sampling_weights")
_LAZY = {**dict.fromkeys(_TASKS, "archviz.pretrain.tasks"),
         **dict.fromkeys(_CONTRASTIVE, "archviz.pretrain.contrastive")}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archviz.pretrain' has no attribute {name!r}")


__all__ = list(_LAZY)
