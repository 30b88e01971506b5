"""Activation checkpointing's segments: where a model is cut, and which layers each segment runs.

torch.utils.checkpoint.checkpoint_sequential splits a sequence of modules into segments of equal length, runs every
segment but the last without keeping what its layers save for backward (only the segment's input is kept), and
runs each again in the backward pass to make those tensors when they are needed. A graph that branches is cut only
where one tensor alone crosses (between ResNet's blocks, not inside one), so a segment is a function of one tensor
to one tensor; the cuts are the ones nearest to equal lengths. archviz's torch build (torch_build.ArchvizModel) runs
these segments, and analysis/training.py predicts their memory. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from archviz.errors import ArchvizError
from archviz.graph.ir import INPUT, Graph
from archviz.ops import get_op


@dataclass(frozen=True)
class Segments:
    """The steps (node indices) where each segment starts after the first; every segment but the last is
    checkpointed."""

    starts: tuple[int, ...]

    @property
    def checkpointed(self) -> tuple[range, ...]:
        """The node indices of each checkpointed segment, in order."""
        bounds = (0, *self.starts)
        return tuple(range(a, b) for a, b in zip(bounds, self.starts))

    @property
    def count(self) -> int:
        return len(self.starts) + 1


def single_tensor_cuts(graph: Graph) -> list[int]:
    """The steps i before which exactly one tensor made earlier (or the input) is read at step i or later, and no
    layer from i on changes it in place (the checkpoint keeps it to run the segment again)."""
    last_read = {INPUT: -1}
    changed_in_place: set[str] = set()
    for step, node in enumerate(graph.nodes):
        last_read.setdefault(node.name, step)
        for source in node.inputs:
            last_read[source] = step
        if get_op(node.op).inplace_capable and node.attrs.get("inplace"):
            changed_in_place.update(node.inputs)
    last_read[graph.output] = len(graph.nodes)
    ending: dict[int, list[str]] = {}
    for name, step in last_read.items():
        ending.setdefault(step, []).append(name)
    crossing: set[str] = set()
    cuts = []
    for step in range(len(graph.nodes)):
        made = graph.nodes[step - 1].name if step else INPUT
        if last_read[made] >= step:
            crossing.add(made)
        crossing.difference_update(ending.get(step - 1, ()))
        if step and len(crossing) == 1 and not crossing & changed_in_place:
            cuts.append(step)
    return cuts


def segments(graph: Graph, count: int) -> Segments:
    """`count` segments of as equal a number of layers as the single-tensor cuts allow (the cut nearest to each
    equal division; fewer segments where the model has fewer cuts)."""
    if count < 2:
        raise ArchvizError(f"checkpointing: {count} segment(s); expected 2 or more (1 is no checkpointing)")
    cuts = single_tensor_cuts(graph)
    if not cuts:
        raise ArchvizError(f"{graph.name}: no point where one tensor alone crosses from one layer to the rest, so "
                           "no segment to checkpoint")
    steps = len(graph.nodes)
    starts: list[int] = []
    for k in range(1, count):
        target = round(k * steps / count)
        nearest = min((c for c in cuts if not starts or c > starts[-1]), key=lambda c: abs(c - target), default=None)
        if nearest is not None:
            starts.append(nearest)
    return Segments(tuple(starts))
