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
memory-bound by definition and costs its traffic. A layer whose output is its input (its registry entry's
output_is_input: flatten, a view, identity; or a regularisation, which hands its input back at inference) moves
nothing: it costs the overhead alone; a concatenation copies and pays its bytes. A layer without a formula
(opaque, MACs not measured) is not predicted, and the model's total then leaves it out and says so.

Refinements apply where the device states what they need (the calibrated CPU does; the datasheet GPUs do not), each
a roof or a ceiling measured on the machine, none fitted to the models:
  * the cache-aware roofline (A. Ilic, F. Pratas, L. Sousa, IEEE Computer Architecture Letters 13(1), 2014): a
    layer's activations stream at the cache's bandwidth when they fit in half the last-level cache, else at
    memory's (Device.bandwidth_for); its weights, last read a whole pass ago, come from memory unless the whole
    model (weights and peak activations) fits in half the cache;
  * an in-core ceiling (Williams et al.'s "ceilings" below the peak) for SIMD lanes left empty: oneDNN computes a
    convolution's output channels in blocks of the vector width (16 fp32 lanes on AVX-512), so the peak is scaled by
    lane_fill(channels out per group), lane_fill(n) = n / (lanes x ceil(n / lanes)); a linear layer's by the fill of
    its input and output features. (The input channels are not counted: oneDNN's kernels for few input channels
    do not pad them; a 3 -> 64 11x11 conv reaches the GEMM peak.)
  * a depthwise convolution (one input channel per group) runs a direct kernel, not a GEMM: its peak is the device's
    measured Device.depthwise_flops (lane_fill(channels) where none is stated);
  * pooling ceilings: a pool sliding a window (larger than one position, smaller than its input: not a global
    pool; or local response norm's window of channels) takes at least its outputs / the rate measured for its
    reduction (the op's registry fact), a fixed part per output and a part per element of its window (Op.
    window_elements): a max pool's Device.max_pool, an average or sum pool's Device.mean_pool (torch's NCHW pooling
    kernels run far below the memory roof on a CPU, a max pool 3x slower than an average pool);
  * packed weights: on a CPU (Device.packs_gemm_weights), a linear layer multiplying more than one row copies its
    weight matrix into the BLAS's blocked layout first, so its compute time adds the weights at the memory's
    bandwidth (measured here: a 784 x 300 linear at batch 8 to 64 takes weights / bandwidth + FLOPs / peak within
    10%; at batch 1, a GEMV, it reads them as they are);
  * a transcendental ceiling: a layer computing an exp, log, tanh or erf per element (its registry entry's
    transcendental: tanh, sigmoid, GELU, SiLU, softmax) takes at least its outputs / Device.transcendental_per_s
    (measured on tanh: compute-bound on a CPU, where ReLU streams);
  * a layer whose torch build runs several kernels (its registry entry's launches: partial_conv2d runs a grouped
    convolution per run of maps seeing as many input maps, and small_launches: its gathers and concatenation) pays
    the fixed cost once per kernel, and fills its SIMD lanes per group of output channels (lane_groups);
  * a convolution's fixed cost is the one measured for the path torch takes on a CPU (onednn_conv: oneDNN, about
    40 us a call, or its native kernels, about 8 us: Device.onednn_conv_overhead_s, native_conv_overhead_s); on
    the oneDNN path, which copies an NCHW convolution's weights into its blocked layout at every call
    (Device.reorders_conv_weights), the compute time adds the weights at the memory's bandwidth, as a packed GEMM's
    does; other layers pay the launch overhead;
  * fresh memory: a layer writing a new tensor (not in place, not a view) of at least Device.fresh_memory_from_bytes
    pays Device.fresh_memory_s_per_byte for each of its bytes: the page faults of memory the allocator maps anew.
Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from archviz.analysis.devices import Device, DeviceKind, PoolCost, Precision
from archviz.analysis.report import DType, LayerStats, Report
from archviz.errors import ArchvizError
from archviz.ops import OpKind, get_op
from archviz.ops.base import Reduction, numel

_PRECISION = {DType.FLOAT32: Precision.FP32, DType.FLOAT16: Precision.FP16, DType.BFLOAT16: Precision.BF16}


@dataclass(frozen=True)
class LayerLatency:
    """One layer's roofline. seconds is None where the layer has no formula: not predicted, not zero."""

    name: str
    flops: int
    bytes_moved: int
    intensity: float | None  # FLOPs per byte; None for a view, which moves nothing
    attainable_flops: float  # min(peak x lane fill, intensity x bandwidth), FLOP/s; 0 for a layer without MACs
    lane_fill: float  # the share of SIMD lanes doing useful work (1.0 where the device does not model it)
    compute_s: float  # FLOPs at the peak (x lane fill); a pool or exp-like activation: outputs at its ceiling
    memory_s: float  # bytes at the bandwidth, plus the fresh output's page faults where the device states them
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
    model_bytes = report.totals.param_bytes + report.totals.peak_activation_bytes
    weights_in_cache = device.cache_bytes is not None and 2 * model_bytes <= device.cache_bytes
    layers = tuple(
        layer_latency(stats, device, batch=report.batch, dtype_bytes=report.dtype.bytes,
                      precision=conv_precision if stats.kind == OpKind.CONV else precision,
                      weights_in_cache=weights_in_cache, **_node_facts(report, stats))
        for stats in report.layers
    )
    return ModelLatency(
        model=report.model, device=device, batch=report.batch, dtype=report.dtype, layers=layers,
        seconds=sum(layer.seconds for layer in layers if layer.predicted),
        not_predicted=tuple(layer.name for layer in layers if not layer.predicted),
    )


@dataclass(frozen=True)
class ConvCall:
    """What torch reads of a convolution to choose its CPU path (onednn_conv)."""

    kernel: tuple[int, int]  # the weight's last two dims (a 1-d conv's (1, k): torch views it as 2-d)
    groups: int
    strided: bool
    dilated: bool
    leading: int  # the input's size(1) * size(2) * size(3) (as viewed in 4-d): channels times the first spatial dims


def onednn_conv(call: ConvCall, *, batch: int, threads: int, precision: Precision) -> bool:
    """Whether torch runs the convolution through oneDNN on a CPU, as ConvParams::use_mkldnn decides
    (aten/src/ATen/native/Convolution.cpp, torch 2.x): bf16 and fp16 always; float32 unless a 1 x 1 kernel,
    unstrided and undilated, on fewer than 16 images with one thread, or a kernel of at most 3 wide, ungrouped, on
    one image of at most 20,480 input elements ("for some case, native is faster").

    >>> call = ConvCall(kernel=(3, 3), groups=1, strided=False, dilated=False, leading=6 * 14 * 14)
    >>> onednn_conv(call, batch=1, threads=1, precision=Precision.FP32), onednn_conv(call, batch=2, threads=1,
    ...     precision=Precision.FP32)
    (False, True)
    """
    if precision != Precision.FP32:
        return True
    kh, kw = call.kernel
    one_by_one = (kh, kw) == (1, 1) and not call.strided and not call.dilated
    small = call.groups == 1 and not (kh > 3 and kw > 3) and batch == 1 and call.leading <= 20480
    return not (one_by_one and batch < 16 and threads == 1) and not small


def layer_latency(stats: LayerStats, device: Device, *, batch: int, dtype_bytes: int, precision: Precision,
                  groups: int = 1, in_place: bool = False, view: bool = False, sliding_pool: bool = False,
                  reduction: Reduction | None = None, window_elements: int = 1, conv_call: ConvCall | None = None,
                  transcendental: bool = False,
                  launches: int = 1, small_launches: int = 0, weights_in_cache: bool = False) -> LayerLatency:
    """One layer's roofline (the module docstring has the formulas).

    >>> from archviz import inspect
    >>> from archviz.analysis.devices import get_device
    >>> conv = inspect("vgg16", crosscheck=False).layer("features.0")
    >>> latency = layer_latency(conv, get_device("a100"), batch=1, dtype_bytes=4, precision=Precision.FP32)
    >>> round(latency.intensity, 1), latency.memory_bound  # right of the A100's FP32 ridge, 19.5 T / 2.039 T = 9.6
    (12.9, False)
    """
    bytes_moved = 0 if view else layer_bytes(stats, batch=batch, dtype_bytes=dtype_bytes)
    onednn = conv_call is not None and device.kind == DeviceKind.CPU and onednn_conv(
        conv_call, batch=batch, threads=device.threads or 1, precision=precision)
    fill = lane_fill(stats, groups=groups, lanes=device.vector_lanes)
    peak = device.peak(precision) * fill
    if device.depthwise_flops is not None and _is_depthwise(stats, groups):
        peak = min(peak, device.depthwise_flops)
    memory_s = _memory_seconds(stats, device, bytes_moved=bytes_moved, dtype_bytes=dtype_bytes, in_place=in_place,
                               weights_in_cache=weights_in_cache)
    bandwidth = bytes_moved / memory_s if memory_s else device.memory_bandwidth
    intensity = stats.flops / bytes_moved if bytes_moved else None
    if stats.macs:
        attainable = min(peak, intensity * bandwidth) if intensity is not None else peak
        compute_s = stats.flops / peak
        if stats.kind == OpKind.LINEAR and device.packs_gemm_weights and _rows(stats, batch) > 1:
            compute_s += (stats.params + stats.buffers) * dtype_bytes / device.memory_bandwidth
        if onednn and device.reorders_conv_weights:
            compute_s += stats.params * dtype_bytes / device.memory_bandwidth
    else:
        attainable, compute_s = 0.0, 0.0
        compute_s = _ceiling_seconds(stats, device, sliding_pool=sliding_pool, reduction=reduction,
                                     window_elements=window_elements, transcendental=transcendental)
    overhead = launches * (device.conv_overhead_s(onednn=onednn) if conv_call else device.launch_overhead_s)
    overhead += small_launches * device.launch_overhead_s
    predicted = stats.counted or stats.measured
    return LayerLatency(
        name=stats.name, flops=stats.flops, bytes_moved=bytes_moved, intensity=intensity,
        attainable_flops=attainable, lane_fill=fill, compute_s=compute_s, memory_s=memory_s,
        overhead_s=overhead, seconds=max(compute_s, memory_s) + overhead if predicted else None,
        memory_bound=memory_s >= compute_s, precision=precision,
    )


def _memory_seconds(stats: LayerStats, device: Device, *, bytes_moved: int, dtype_bytes: int, in_place: bool,
                    weights_in_cache: bool) -> float:
    """Traffic time. Where the device has a cache roof, the activations (an input the previous layer has just
    written, the output) stream at the roof their size selects, and the weights, last touched a whole pass ago, at
    memory's, unless the whole model (weights and peak activations) fits in half the cache, so that pass after pass
    keeps them there; a fresh output past the device's threshold adds its page faults."""
    if not bytes_moved:
        return 0.0
    weight_bytes = (stats.params + stats.buffers) * dtype_bytes
    activation_bytes = bytes_moved - weight_bytes
    weight_bandwidth = device.bandwidth_for(weight_bytes) if weights_in_cache else device.memory_bandwidth
    seconds = activation_bytes / device.bandwidth_for(activation_bytes) + weight_bytes / weight_bandwidth
    output_bytes = stats.activation_elements * dtype_bytes
    fresh = device.fresh_memory_s_per_byte
    if fresh is not None and not in_place and output_bytes >= (device.fresh_memory_from_bytes or 0):
        seconds += output_bytes * fresh
    return seconds


def _ceiling_seconds(stats: LayerStats, device: Device, *, sliding_pool: bool, reduction: Reduction | None,
                     window_elements: int, transcendental: bool) -> float:
    """A layer without MACs at its CPU ceilings: its outputs at the pooling rate of its reduction where it pools a
    window, plus at the transcendental rate where it computes an exp-like function (local response norm does both:
    an average of squares over channels, then a power)."""
    seconds = 0.0
    cost = _pool_cost(device, reduction) if sliding_pool else None
    if cost is not None:
        seconds += cost.seconds(stats.activation_elements, window_elements)
    if transcendental and device.transcendental_per_s is not None:
        seconds += stats.activation_elements / device.transcendental_per_s
    return seconds


def _rows(stats: LayerStats, batch: int) -> int:
    """The rows a linear layer multiplies its weight matrix by: the batch times every dim of its input but the last."""
    return batch * numel(stats.in_shapes[0][:-1]) if stats.in_shapes else batch


def _pool_cost(device: Device, reduction: Reduction | None) -> PoolCost | None:
    return device.max_pool if reduction == Reduction.MAX else device.mean_pool


def layer_bytes(stats: LayerStats, *, batch: int, dtype_bytes: int) -> int:
    """Bytes a layer reads and writes once each: its inputs, its weights and its output, for the whole batch."""
    inputs = sum(numel(shape) for shape in stats.in_shapes)
    elements = batch * (inputs + numel(stats.out_shape)) + stats.params + stats.buffers
    return elements * dtype_bytes


def lane_fill(stats: LayerStats, *, groups: int, lanes: int | None) -> float:
    """The share of SIMD lanes a conv (its output channels per group; a depthwise conv: its channels) or linear
    layer (its input and output features) keeps busy; 1.0 for other layers, for a layer without weights (a matmul of
    two activations) and where lanes is None."""
    if lanes is None or not stats.macs or not stats.params or not stats.in_shapes:
        return 1.0
    if stats.kind == OpKind.CONV:
        if _is_depthwise(stats, groups):
            return _filled(stats.out_shape[0], lanes)
        return _filled(stats.out_shape[0] // groups, lanes)
    if stats.kind == OpKind.LINEAR:
        return _filled(stats.in_shapes[0][-1], lanes) * _filled(stats.out_shape[-1], lanes)
    return 1.0


def _is_depthwise(stats: LayerStats, groups: int) -> bool:
    return stats.kind == OpKind.CONV and groups > 1 and stats.in_shapes[0][0] == groups


def _filled(count: int, lanes: int) -> float:
    return count / (lanes * -(-count // lanes)) if count > 0 else 1.0


def _node_facts(report: Report, stats: LayerStats) -> dict:
    """What the roofline needs beyond LayerStats, from the layer's node and its op's registry entry: a conv's groups
    and what torch reads of it to choose its CPU path, whether the layer writes into its input (no new memory), whether its output is its input (a
    view, or a regularisation, which hands its input back at inference: it moves nothing), and whether it is a pool
    sliding a window, and of which reduction, and whether it computes an exp-like function per element."""
    node = report.graph.node(stats.name)
    op = get_op(node.op)
    in_place = op.inplace_capable and bool(node.attrs.get("inplace")) and len(node.inputs) == 1
    view = len(node.inputs) == 1 and (op.output_is_input(node.attrs) or op.kind == OpKind.REGULARIZATION)
    window = op.window(node.attrs, list(node.in_shapes))
    pools_channels = op.reduction is not None and stats.kind != OpKind.POOL  # local response norm
    sliding = pools_channels or (stats.kind == OpKind.POOL and _slides(window, node.in_shapes))
    groups = op.lane_groups(node.attrs) if stats.kind == OpKind.CONV else None
    return {"groups": groups or 1, "in_place": in_place, "view": view,
            "sliding_pool": sliding, "reduction": op.reduction, "transcendental": op.transcendental,
            "window_elements": op.window_elements(node.attrs, list(node.in_shapes)),
            "conv_call": _conv_call(node.attrs, node.in_shapes[0], groups) if groups else None,
            "launches": op.launches(node.attrs), "small_launches": op.small_launches(node.attrs)}


def _conv_call(attrs, in_shape: tuple[int, ...], groups: int) -> ConvCall:
    """A conv layer's attributes as torch's convolution sees them: a 1-d one viewed as 2-d, a 3-d one's last two
    kernel dims and its input's channels, depth and height."""
    rank = len(in_shape) - 1

    def per_axis(value) -> tuple[int, ...]:
        value = 1 if value is None or isinstance(value, str) else value
        return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * rank

    kernel = per_axis(attrs.get("kernel_size"))
    viewed = (1, *in_shape) if rank == 1 else in_shape  # (C, L) -> (C, 1, L)
    return ConvCall(kernel=((1, *kernel) if rank == 1 else kernel)[-2:], groups=groups,
                    strided=any(s != 1 for s in per_axis(attrs.get("stride"))),
                    dilated=any(d != 1 for d in per_axis(attrs.get("dilation"))), leading=numel(viewed[:3]))


def _slides(window, in_shapes) -> bool:
    """A window larger than one position and smaller than the input: not a global pool, not an adaptive pool
    that keeps the input's size."""
    if window is None or len(in_shapes[0]) != 3:
        return False
    spatial = in_shapes[0][1:]
    return any(k > 1 for k in window.kernel) and any(k < size for k, size in zip(window.kernel, spatial))


def _precision(dtype: DType, device: Device) -> Precision:
    if dtype not in _PRECISION:
        raise ArchvizError(f"no latency prediction at dtype {dtype.value!r}: devices list peaks for "
                           f"{', '.join(d.value for d in _PRECISION)}")
    precision = _PRECISION[dtype]
    if device.peak(precision) is None:
        raise ArchvizError(f"{device.name} has no {precision.value} peak (no such math units); use another --dtype")
    return precision
