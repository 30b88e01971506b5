"""Latency predicted by a roofline per layer: how long each layer takes on a device, from its FLOPs and bytes alone.

The roofline model (S. Williams, A. Waterman, D. Patterson, "Roofline: an insightful visual performance model for
multicore architectures", Communications of the ACM 52(4), 2009): a kernel doing F FLOPs over B bytes of memory
traffic has arithmetic intensity I = F / B and can reach at most

    attainable FLOP/s = min(peak FLOP/s, I x memory bandwidth)

so it takes at least max(F / peak, B / bandwidth) seconds: compute-bound right of the ridge point (peak / bandwidth),
memory-bound left of it. Each layer here is one kernel launch, so a fixed per-launch overhead is added:

    predicted seconds = max(F / peak, B / bandwidth) + launch overhead

F is the layer's FLOPs (2 x MACs, archviz/ops/base.py). B counts each tensor once, at the report's dtype: the inputs,
the weights (params and buffers) and the output; caches, re-reads of an input by overlapping windows and any fusion
with the next layer are left out, which is the roofline's own simplification. A layer without MACs (activation,
normalisation, pooling, add) does a few operations per element, far left of any device's ridge point: it is
memory-bound by definition and costs its traffic. A layer that only renames its input's elements (flatten, reshape,
identity, an inference dropout) is a view and moves nothing: it costs the overhead alone. A layer without a formula
(opaque, MACs not measured) is not predicted, and the model's total then leaves it out and says so. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from archviz.analysis.devices import Device, Precision
from archviz.analysis.report import DType, LayerStats, Report
from archviz.errors import ArchvizError
from archviz.ops import OpKind
from archviz.ops.base import numel

_PRECISION = {DType.FLOAT32: Precision.FP32, DType.FLOAT16: Precision.FP16, DType.BFLOAT16: Precision.BF16}
_VIEW_KINDS = (OpKind.RESHAPE, OpKind.REGULARIZATION)  # free ops of these kinds keep the elements they are given


@dataclass(frozen=True)
class LayerLatency:
    """One layer's roofline. seconds is None where the layer has no formula: not predicted, not zero."""

    name: str
    flops: int
    bytes_moved: int
    intensity: float | None  # FLOPs per byte; None for a view, which moves nothing
    attainable_flops: float  # min(peak, intensity x bandwidth), FLOP/s; 0 for a layer without MACs
    compute_s: float
    memory_s: float
    overhead_s: float
    seconds: float | None
    memory_bound: bool
    precision: Precision

    @property
    def predicted(self) -> bool:
        return self.seconds is not None


@dataclass(frozen=True)
class ModelLatency:
    """The model's forward pass on one device: the sum of its layers' predicted seconds, for the whole batch."""

    model: str
    device: Device
    batch: int
    dtype: DType
    layers: tuple[LayerLatency, ...]
    seconds: float  # the predicted layers' sum: a lower bound when not_predicted is not empty
    not_predicted: tuple[str, ...]

    @property
    def images_per_second(self) -> float:
        return self.batch / self.seconds if self.seconds > 0 else float("inf")

    @property
    def memory_bound_seconds(self) -> float:
        return sum(layer.seconds for layer in self.layers if layer.predicted and layer.memory_bound)


def predict_latency(report: Report, device: Device, *, tf32_convs: bool = True) -> ModelLatency:
    """Every layer's roofline time on `device`, at the report's batch and dtype.

    tf32_convs: float32 convolutions run at the device's TF32 tensor-core peak where it has one, as PyTorch does by
    default (torch.backends.cudnn.allow_tf32 is True; matmuls default to full FP32, so linear layers stay at FP32).

    >>> from archviz import inspect
    >>> from archviz.analysis.devices import get_device
    >>> latency = predict_latency(inspect("lenet", crosscheck=False), get_device("a100"))
    >>> latency.not_predicted, latency.seconds > 0
    ((), True)
    """
    precision = _precision(report.dtype, device)
    conv_precision = Precision.TF32 if tf32_convs and precision == Precision.FP32 and device.peak(Precision.TF32) \
        else precision
    layers = tuple(
        layer_latency(stats, device, batch=report.batch, dtype_bytes=report.dtype.bytes,
                      precision=conv_precision if stats.kind == OpKind.CONV else precision)
        for stats in report.layers
    )
    return ModelLatency(
        model=report.model, device=device, batch=report.batch, dtype=report.dtype, layers=layers,
        seconds=sum(layer.seconds for layer in layers if layer.predicted),
        not_predicted=tuple(layer.name for layer in layers if not layer.predicted),
    )


def layer_latency(stats: LayerStats, device: Device, *, batch: int, dtype_bytes: int,
                  precision: Precision) -> LayerLatency:
    """One layer's roofline (the module docstring has the formulas).

    >>> from archviz import inspect
    >>> from archviz.analysis.devices import get_device
    >>> conv = inspect("vgg16", crosscheck=False).layer("features.0")
    >>> latency = layer_latency(conv, get_device("a100"), batch=1, dtype_bytes=4, precision=Precision.FP32)
    >>> round(latency.intensity, 1), latency.memory_bound  # right of the A100's FP32 ridge, 19.5 T / 2.039 T = 9.6
    (12.9, False)
    """
    bytes_moved = layer_bytes(stats, batch=batch, dtype_bytes=dtype_bytes)
    peak = device.peak(precision)
    memory_s = bytes_moved / device.memory_bandwidth
    intensity = stats.flops / bytes_moved if bytes_moved else None
    if stats.macs:
        attainable = min(peak, intensity * device.memory_bandwidth) if intensity is not None else peak
        compute_s = stats.flops / peak
    else:
        attainable, compute_s = 0.0, 0.0
    predicted = stats.counted or stats.measured
    return LayerLatency(
        name=stats.name, flops=stats.flops, bytes_moved=bytes_moved, intensity=intensity,
        attainable_flops=attainable, compute_s=compute_s, memory_s=memory_s, overhead_s=device.launch_overhead_s,
        seconds=max(compute_s, memory_s) + device.launch_overhead_s if predicted else None,
        memory_bound=memory_s >= compute_s, precision=precision,
    )


def layer_bytes(stats: LayerStats, *, batch: int, dtype_bytes: int) -> int:
    """Bytes a layer reads and writes once each: its inputs, its weights and its output, for the whole batch.
    A view (a free reshape-like op keeping every element) moves nothing."""
    inputs = sum(numel(shape) for shape in stats.in_shapes)
    if _is_view(stats, inputs):
        return 0
    elements = batch * (inputs + numel(stats.out_shape)) + stats.params + stats.buffers
    return elements * dtype_bytes


def _is_view(stats: LayerStats, input_elements: int) -> bool:
    free = stats.counted and stats.macs == 0 and stats.other_ops == 0
    return free and stats.kind in _VIEW_KINDS and input_elements == numel(stats.out_shape)


def _precision(dtype: DType, device: Device) -> Precision:
    if dtype not in _PRECISION:
        raise ArchvizError(f"no latency prediction at dtype {dtype.value!r}: devices list peaks for "
                           f"{', '.join(d.value for d in _PRECISION)}")
    precision = _PRECISION[dtype]
    if device.peak(precision) is None:
        raise ArchvizError(f"{device.name} has no {precision.value} peak (no such math units); use another --dtype")
    return precision
