"""analyze(): every figure of every layer of a Graph, by formula, and the totals. Pure Python, no torch.

The conventions (what a MAC is, FLOPs = 2 x MACs, "other ops") are stated once in archviz/ops/base.py.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

from archviz.analysis.checkpointing import segments
from archviz.analysis.memory import peak_activation_bytes
from archviz.analysis.training import CUDA_BLOCK_BYTES, TrainingMemory, saved_bytes_per_layer, training_memory
from archviz.analysis.receptive import SpatialField, last_spatial_field, receptive_fields
from archviz.errors import SpecError, closest
from archviz.graph.ir import INPUT, Graph, Shape
from archviz.ops import OpKind, get_op
from archviz.ops.base import numel

CONVENTIONS = (
    "MAC = one multiply-accumulate of a conv/linear/matmul, bias excluded; FLOPs = 2 x MACs (torch FlopCounterMode); "
    "bias adds, activations, pooling, normalisation and residual adds are 'other ops'; shapes are C x H x W without "
    "the batch; costs are per batch."
)


class DType(enum.StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT64 = "float64"
    INT8 = "int8"

    @property
    def bytes(self) -> int:
        return {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1}[self.value]


@dataclass(frozen=True)
class LayerStats:
    """One layer's figures. Costs (macs, flops, other_ops, activation_*) are for the whole batch."""

    name: str
    op: str
    kind: str
    summary: str
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    params: int
    buffers: int
    macs: int
    flops: int
    other_ops: int
    activation_elements: int
    activation_bytes: int
    receptive_field: tuple[int, int] | None  # None: the input is not a C x H x W image, so no field in pixels
    jump: tuple[int, int] | None
    start: tuple[float, float] | None
    scope: str
    line: int | None
    counted: bool = True  # False for an op without a formula (opaque): its MACs and other ops are unknown, not zero
    measured: bool = False  # an opaque layer whose MACs torch's FlopCounterMode measured: its other ops are unknown
    shares: str | None = None  # the layer whose weights this one reuses; its params are counted there
    saved_bytes: int | None = None  # training (analyze with an optimizer): what autograd keeps of it for backward
    field_via: str | None = None  # the input whose field receptive_field extends: the path it follows (receptive.py)

    @property
    def depth(self) -> int:
        return self.name.count(".")


@dataclass(frozen=True)
class Totals:
    params: int
    trainable_params: int
    non_trainable_params: int
    buffers: int
    param_bytes: int  # parameters and buffers at the chosen dtype
    macs: int  # whole batch: every layer's, sized_macs per image, and weight_macs once
    flops: int  # whole batch
    other_ops: int  # whole batch
    macs_per_image: int  # the layers' and sized_macs for one image (weight_macs aside)
    flops_per_image: int
    activation_bytes: int  # every layer's output for the batch: what training keeps for the backward pass
    peak_activation_bytes: int  # most bytes alive at once in an inference forward pass
    peak_at: str
    depth: int  # conv and linear layers on the longest path (VGG16 -> 16, ResNet-50 -> 50)
    layers: int
    uncounted: tuple[str, ...] = ()  # layers without a formula whose MACs were not measured either: left out
    measured: tuple[str, ...] = ()  # layers without a formula whose MACs were measured: in the MACs, not other ops
    weight_macs: int = 0  # MACs on weights alone (a position-bias MLP), once per pass whatever the batch: measured
    sized_macs: int = 0  # whole batch: MACs on tensors made from the batch size, not the input: measured
    training_memory: TrainingMemory | None = None  # analyze(..., optimizer=...): one training step, predicted
    last_spatial_field: SpatialField | None = None  # the headline receptive field; None where fields are not tracked


@dataclass(frozen=True, repr=False)
class Report:
    model: str
    description: str
    input: Shape
    batch: int
    dtype: DType
    layers: tuple[LayerStats, ...]
    totals: Totals
    graph: Graph = field(repr=False, compare=False)
    crosscheck: Any = None  # archviz.crosscheck.CrossCheck, filled by inspect(..., crosscheck=True)
    latency: Any = None  # archviz.analysis.latency.ModelLatency, filled by inspect(..., device=...)

    def __repr__(self) -> str:
        """The totals and the layer table, folded to its top-level groups, as text (a terminal REPL shows this)."""
        from archviz.render.notebook import report_text

        return report_text(self)

    def _repr_html_(self) -> str:
        """The totals, the layer table (each group a fold) and the diagram, as Jupyter shows them."""
        from archviz.render.notebook import report_html

        return report_html(self)

    def layer(self, name: str) -> LayerStats:
        for stats in self.layers:
            if stats.name == name:
                return stats
        raise SpecError(f"no layer {name!r} in {self.model}{closest(name, [s.name for s in self.layers])}")


def analyze(graph: Graph, *, batch: int = 1, dtype: DType | str = DType.FLOAT32, optimizer: str | None = None,
            fit_bytes: int | None = None, amp: str | None = None, on_gpu: bool = False,
            checkpointing: int | None = None) -> Report:
    """Per-layer figures and totals of a validated graph; with an optimizer (sgd, momentum, adam, adamw), one
    training step's memory too (analysis/training.py; on_gpu: with CUDA's defaults; checkpointing: in that many
    segments, analysis/checkpointing.py), and with fit_bytes the largest batch that fits in it.

    >>> from archviz import load
    >>> analyze(load("vgg16")).totals.params
    138357544
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise SpecError(f"batch must be a positive integer, got {batch!r}")
    dtype = DType(dtype)
    fields = receptive_fields(graph) if tracks_fields(graph) else {}
    cache: dict = {}
    layers = tuple(_layer_stats(node, fields.get(node.name), batch, dtype, cache) for node in graph.nodes)
    totals = _totals(graph, layers, batch, dtype)
    if fields:
        totals = dataclasses.replace(totals, last_spatial_field=last_spatial_field(graph, fields))
    if optimizer is not None:
        layers, totals = _with_training(graph, layers, totals, batch, dtype, optimizer, fit_bytes, amp, on_gpu,
                                        checkpointing)
    return Report(
        model=graph.name, description=graph.description, input=graph.input_shape, batch=batch, dtype=dtype,
        layers=layers, totals=totals, graph=graph,
    )


def _with_training(graph, layers, totals, batch, dtype, optimizer, fit_bytes, amp, on_gpu, checkpointing):
    autocast_device = "cuda" if on_gpu else "cpu"
    cut = None if checkpointing is None else segments(graph, checkpointing)
    memory = training_memory(graph, batch=batch, dtype_bytes=dtype.bytes, optimizer=optimizer, params=totals.params,
                             buffers=totals.buffers, fit_bytes=fit_bytes, amp=amp, foreach=on_gpu,
                             block_bytes=CUDA_BLOCK_BYTES if on_gpu else 1, autocast_device=autocast_device,
                             segments=cut)
    saved = saved_bytes_per_layer(graph, batch=batch, dtype_bytes=dtype.bytes, amp=amp,
                                  block_bytes=CUDA_BLOCK_BYTES if on_gpu else 1, autocast_device=autocast_device,
                                  segments=cut)
    layers = tuple(dataclasses.replace(s, saved_bytes=saved.get(s.name, 0)) for s in layers)
    return layers, dataclasses.replace(totals, training_memory=memory)


@dataclass(frozen=True)
class _OpFigures:
    """What an op computes from its attributes and shapes alone; the same for every copy of a repeated layer."""

    kind: str
    summary: str
    params: int
    buffers: int
    macs: int
    other_ops: int
    counted: bool
    measured: bool


def _op_figures(node, cache: dict) -> _OpFigures:
    try:
        key = (node.op, tuple(node.attrs.items()), node.in_shapes, node.out_shape)
        return cache[key]
    except TypeError:  # an unhashable attribute value: compute without the cache
        key = None
    except KeyError:
        pass
    op = get_op(node.op)
    in_shapes = list(node.in_shapes)
    figures = _OpFigures(
        kind=op.kind.value, summary=op.summary(node.attrs), params=op.params(node.attrs, in_shapes),
        buffers=op.buffers(node.attrs, in_shapes), macs=op.macs(node.attrs, in_shapes, node.out_shape),
        other_ops=op.other_ops(node.attrs, in_shapes, node.out_shape), counted=op.kind != OpKind.OPAQUE,
        measured=op.kind == OpKind.OPAQUE and node.attrs.get("measured_macs") is not None,
    )
    if key is not None:
        cache[key] = figures
    return figures


def _layer_stats(node, field_, batch: int, dtype: DType, cache: dict) -> LayerStats:
    op = _op_figures(node, cache)
    macs = op.macs * batch
    elements = numel(node.out_shape) * batch
    owns_weights = node.shares is None
    return LayerStats(
        name=node.name, op=node.op, kind=op.kind, summary=op.summary, in_shapes=node.in_shapes,
        out_shape=node.out_shape, params=op.params - node.reused if owns_weights else 0,
        buffers=op.buffers if owns_weights else 0,
        macs=macs, flops=2 * macs, other_ops=op.other_ops * batch,
        activation_elements=elements, activation_bytes=elements * dtype.bytes,
        receptive_field=None if field_ is None else _whole(field_.size),
        jump=None if field_ is None else _plain(field_.jump), start=None if field_ is None else field_.start,
        field_via=None if field_ is None else field_.via,
        scope=node.scope, line=node.line, counted=op.counted, measured=op.measured, shares=node.shares,
    )


def _totals(graph: Graph, layers: tuple[LayerStats, ...], batch: int, dtype: DType) -> Totals:
    params = sum(s.params for s in layers)
    buffers = sum(s.buffers for s in layers)
    layer_macs = sum(s.macs for s in layers)
    weight_macs = graph.origin.weight_macs if graph.origin is not None else 0
    sized_macs = graph.origin.sized_macs * batch if graph.origin is not None else 0
    macs = layer_macs + sized_macs + weight_macs
    peak_bytes, peak_at = peak_activation_bytes(graph, batch=batch, dtype_bytes=dtype.bytes)
    unformulated = [s for s in layers if not s.counted]
    return Totals(
        params=params, trainable_params=params, non_trainable_params=0, buffers=buffers,
        param_bytes=(params + buffers) * dtype.bytes, macs=macs, flops=2 * macs,
        other_ops=sum(s.other_ops for s in layers), macs_per_image=(layer_macs + sized_macs) // batch,
        flops_per_image=2 * (layer_macs + sized_macs) // batch,
        activation_bytes=sum(s.activation_bytes for s in layers),
        peak_activation_bytes=peak_bytes, peak_at=peak_at, depth=weight_depth(graph),
        layers=len(layers), uncounted=tuple(s.name for s in unformulated if not s.measured),
        measured=tuple(s.name for s in unformulated if s.measured), weight_macs=weight_macs, sized_macs=sized_macs,
    )


def weight_depth(graph: Graph) -> int:
    """The most conv and linear layers on any path from the input to the output."""
    longest = {INPUT: 0}
    for node in graph.nodes:
        counts = 1 if get_op(node.op).kind in (OpKind.CONV, OpKind.LINEAR) else 0
        longest[node.name] = max(longest[name] for name in node.inputs) + counts
    return longest[graph.output]


def tracks_fields(graph: Graph) -> bool:
    """Receptive fields are in pixels of an image: tracked where the input is C x H x W, not for tokens or
    sequences (a (N, C) or (C, L) input), where a "field of 4x8 pixels" would mean nothing."""
    return len(graph.input_shape) == 3


def _whole(sizes: tuple) -> tuple[int, ...]:
    """A field's size in whole pixels: after an upsampling op it may be a fraction, and a unit reaches at most its
    ceiling."""
    height, width = sizes
    return sizes if type(height) is int and type(width) is int else (math.ceil(height), math.ceil(width))


def _plain(jumps: tuple) -> tuple:
    """Ints where whole (a jump of 2), else floats (a jump of 1/2 after a pixel shuffle), as JSON holds them."""
    height, width = jumps
    if type(height) is int and type(width) is int:
        return jumps
    return tuple(int(jump) if jump == int(jump) else float(jump) for jump in jumps)
