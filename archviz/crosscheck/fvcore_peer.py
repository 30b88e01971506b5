"""fvcore: FlopCountAnalysis's own trace and op handles, without a forward pass at the user's size.

fvcore traces the model with torch.jit and applies a handle per aten op (fvcore/nn/jit_handles.py, the
_DEFAULT_SUPPORTED_OPS table in fvcore/nn/flop_count.py). Its tracer cannot run on meta tensors (the meta kernels'
shape checks receive traced tensors and fail), and a CPU forward pass at a large input and batch costs minutes and
gigabytes. fvcore's handles read nothing but tensor shapes (and constant flags), so:
  1. a meta-device forward pass at the user's batch and input records every layer's input and output shapes;
  2. fvcore traces the model on CPU at batch 1 and a small input (the smallest of a few sizes at which the same
     layers run in the same order; else the user's input), with every weight a zero-stride view of one zero;
  3. each handle fvcore calls gets the layer's activation shapes from step 1 in place of the traced ones (weights
     keep their shapes; every replaced shape is first checked against the shape that layer had in the trace).
fvcore aggregates per module, skips and lists unsupported ops exactly as it does for a plain FlopCountAnalysis.
One op is added to fvcore's table: aten::_convolution_mode, a convolution with padding 'same' or 'valid', for which
fvcore 0.1.5 has no handle; it is counted with fvcore's own conv_flop_count (as its conv_flop_jit does).

fvcore's convention: one fused multiply-add is one flop, so its conv and linear counts are our MACs as they are. Its
batch_norm (2 per element at inference with affine, 1 without) and adaptive_avg_pool2d (1 per input element) counts
are no MACs: they are taken out of the MAC comparison and shown beside our other ops.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from types import MappingProxyType

import torch

from archviz.analysis.report import LayerStats, Report
from archviz.crosscheck.common import (
    LayerShapes, batch_shape, meta_model, module_groups, not_counted_reason, real_batch_norm, record_shapes,
    unreturned_layers, version,
)
from archviz.crosscheck.result import TOTAL, Figure, PeerResult, Quantity, compare
from archviz.ops import OpKind, get_op

PEER = "fvcore"
MAC_OPS = frozenset({"conv", "linear", "addmm", "matmul", "mm", "bmm", "einsum"})  # fvcore's names for its handles
TRACE_SIDES = (32, 64, 96, 128, 192, 256)  # the longer side of the small inputs tried for the trace
FULL_TRACE_MACS = 20 * 10**9  # a CPU forward pass above this takes tens of seconds on a laptop: only when asked
OTHER_OP_REASONS = MappingProxyType({
    "batch_norm": "fvcore's batchnorm_flop_jit counts batch norm at inference as 2 flops per element with affine, "
                  "1 without",
    "adaptive_avg_pool2d": "fvcore counts one flop per input element of adaptive_avg_pool2d "
                           "(elementwise_flop_counter(1, 0))",
    "upsample_nearest2d": "fvcore counts one flop per output of a nearest upsampling (elementwise_flop_counter(0, 1)); "
                          "archviz counts a copy as no op",
    "upsample_bilinear2d": "fvcore counts 4 flops per output of a bilinear upsampling (elementwise_flop_counter(0, 4)); "
                           "archviz counts its 4 multiplies and 3 adds, 7",
})


class _SizedType:
    def __init__(self, sizes):
        self._sizes = list(sizes)

    def sizes(self):
        return self._sizes


class _Sized:
    """A traced jit value that reports other tensor sizes; fvcore's handles read only isCompleteTensor and sizes."""

    def __init__(self, value, sizes):
        self._value = value
        self._type = _SizedType(sizes)

    def isCompleteTensor(self):  # noqa: N802  (the torch._C.Value method name)
        return True

    def type(self):
        return self._type

    def __getattr__(self, name):
        return getattr(self._value, name)


class _Resizer:
    """Wraps fvcore's handles so each sees the shapes of the full-size pass; records what could not be mapped."""

    def __init__(self, traced: dict[str, LayerShapes], full: dict[str, LayerShapes]):
        self.traced, self.full = traced, full
        self.problems: list[str] = []

    def wrap(self, op: str, handle):
        def resized(inputs, outputs):
            layer = outputs[0].node().scopeName().split("/")[-1]
            try:
                inputs = [self._value(layer, v, is_output=False) for v in inputs]
                outputs = [self._value(layer, outputs[0], is_output=True), *outputs[1:]]
            except LookupError as problem:
                self.problems.append(f"{op} in {layer or 'the model itself'}: {problem}")
            return handle(inputs, outputs)

        return resized

    def _value(self, layer: str, value, *, is_output: bool):
        if not value.isCompleteTensor():
            return value
        if not is_output and value.node().kind() == "prim::Param" and value.offset() > 0:
            return value  # a weight or buffer: the graph's inputs after the model's input
        if layer not in self.full:
            raise LookupError("not inside one of the layers")
        sizes = tuple(value.type().sizes())
        traced, full = self.traced[layer], self.full[layer]
        if is_output and sizes == traced.output:
            return _Sized(value, full.output)
        if not is_output and sizes in traced.inputs:
            return _Sized(value, full.inputs[traced.inputs.index(sizes)])
        raise LookupError(f"a tensor of shape {list(sizes)} is neither the layer's input nor its output")


class TraceTooCostly(Exception):
    """No small input runs the same layers, and the full-size CPU trace was not asked for."""


def check(report: Report, *, full_trace: bool = False) -> PeerResult:
    """fvcore's figures for the report's model; full_trace allows a CPU forward pass at the user's input size."""
    try:
        return _check(report, full_trace=full_trace)
    except TraceTooCostly as error:
        return PeerResult(peer=PEER, version=version("fvcore"), method="", skipped=True, message=str(error))


def _check(report: Report, *, full_trace: bool) -> PeerResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore's import calls the deprecated torch.jit.script
        from fvcore.nn import FlopCountAnalysis
        from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS

    start = time.perf_counter()
    model = meta_model(report)
    groups = module_groups(report, model)
    names = list(groups)
    full, order = record_shapes(model, batch_shape(report), names)
    trace_shape, traced = _trace_shape(report, model, names, order, full_trace=full_trace)
    real_batch_norm(model)
    _zero_weights(model)
    resizer = _Resizer(traced, full)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, torch.zeros(trace_shape))
        handles = {"aten::_convolution_mode": _convolution_mode_flop_jit, **_DEFAULT_SUPPORTED_OPS}
        analysis.set_op_handle(**{op: resizer.wrap(op, handle) for op, handle in handles.items()})
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        counts = analysis.by_module_and_operator()
        unsupported = {name: analysis.unsupported_ops(name) for name in names}
        unsupported_total = analysis.unsupported_ops()
        total = analysis.total()

    unreturned = unreturned_layers(report.graph)
    figures: list[Figure] = []
    for path, layers in groups.items():
        layer = layers[0]
        if len(layers) > 1:  # a module called more than once: fvcore adds up its calls
            layer = dataclasses.replace(layer, macs=sum(s.macs for s in layers), counted=all(s.counted for s in layers),
                                        other_ops=sum(s.other_ops for s in layers))
        dropped = all(s.name in unreturned for s in layers)
        figures.extend(_layer_figures(layer, counts.get(path, {}), unsupported[path], full[path], dropped=dropped))
    by_op = counts.get("", {})
    others = {op: n for op, n in by_op.items() if op not in MAC_OPS}
    macs = total - sum(others.values())
    conversion = "minus " + ", ".join(f"{op} {n:,}" for op, n in others.items()) + " (no MACs)" if others else ""
    dropped_macs = sum(stats.macs for stats in report.layers if stats.name in unreturned)
    if dropped_macs:
        macs += dropped_macs
        conversion = "; ".join(filter(None, (conversion, f"plus {dropped_macs:,} MACs of {DROPPED}")))
    uncounted = not_counted_reason(report.layers)
    totals = (
        compare(PEER, TOTAL, Quantity.MACS, report.totals.macs, total, macs, conversion=conversion, known=uncounted,
                checked=not uncounted),
        compare(PEER, TOTAL, Quantity.OTHER_OPS, report.totals.other_ops, sum(others.values()), checked=False,
                known="fvcore counts only some non-MAC ops (see each layer)"),
    )
    notes = [
        "fvcore counts one fused multiply-add as one flop: its conv and linear counts are MACs",
        "fvcore by op: " + (", ".join(f"{op} {n:,}" for op, n in by_op.items()) or "nothing"),
        "unsupported by fvcore, counted as 0: "
        + (", ".join(f"{op} x{n}" for op, n in unsupported_total.items()) or "none"),
        *(f"could not give fvcore the full-size shapes: {problem}" for problem in resizer.problems),
    ]
    size = "x".join(map(str, trace_shape))
    method = (
        f"fvcore.nn.FlopCountAnalysis: traced on CPU at {size} with zero-stride zero weights; its handles given the "
        f"activation shapes of a meta-device forward pass at {'x'.join(map(str, batch_shape(report)))} "
        f"(batch {report.batch})"
    )
    return PeerResult(
        peer=PEER, version=version("fvcore"), method=method, layers=tuple(figures), totals=totals,
        notes=tuple(notes), seconds=time.perf_counter() - start,
    )


def _trace_shape(report: Report, model, names, order, *, full_trace: bool) -> tuple[tuple[int, ...], dict[str, LayerShapes]]:
    """The smallest input (batch 1) at which the same layers run in the same order, and their shapes there."""
    spatial = report.input[1:]
    if len(report.input) == 3:
        longest = max(spatial)
        for side in TRACE_SIDES:
            if side >= longest:
                break
            small = tuple(max(1, round(d * side / longest)) for d in spatial)
            shape = batch_shape(report, batch=1, spatial=small)
            try:
                traced, traced_order = record_shapes(model, shape, names)
            except (RuntimeError, ValueError, IndexError, AssertionError):  # too small for some layer (or asserted)
                continue
            if traced_order == order:
                return shape, traced
    shape = batch_shape(report, batch=1)
    macs = report.totals.macs_per_image
    if macs > FULL_TRACE_MACS and not full_trace:
        raise TraceTooCostly(
            f"fvcore not run: no smaller input runs the same layers, and its trace at {'x'.join(map(str, shape))} "
            f"would be a CPU forward pass of {macs / 1e9:,.0f} GMACs; --fvcore-full runs it (batch 1 is enough: "
            "its counts grow linearly with the batch)")
    return shape, record_shapes(model, shape, names)[0]


def _convolution_mode_flop_jit(inputs, outputs):
    """fvcore's count of aten::_convolution_mode (input, weight, bias, stride, padding as a string, dilation, groups).

    torch calls it for a conv whose padding is 'same' or 'valid'; fvcore has no handle for it (it would count 0).
    """
    from collections import Counter

    from fvcore.nn.jit_handles import conv_flop_count, get_shape

    return Counter({"conv": conv_flop_count(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0]))})


def _zero_weights(model) -> None:
    """Every parameter and buffer becomes a zero-stride view of one zero on CPU: right shapes, no memory."""
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None:
                zero = torch.zeros((), dtype=param.dtype).expand(param.shape)
                module._parameters[name] = torch.nn.Parameter(zero, requires_grad=False)
        for name, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[name] = torch.zeros((), dtype=buffer.dtype).expand(buffer.shape)


DROPPED = ("layers whose output the model does not return (an auxiliary head at inference): torch.jit's trace, "
           "which fvcore counts, leaves them out")


def _layer_figures(layer: LayerStats, ops, unsupported, shapes: LayerShapes, *, dropped: bool = False) -> list[Figure]:
    reported = sum(ops.values())
    macs = sum(n for op, n in ops.items() if op in MAC_OPS)
    others = {op: n for op, n in ops.items() if op not in MAC_OPS}
    conversion = "minus fvcore's " + ", ".join(f"{op} {n:,}" for op, n in others.items()) + " (no MACs)"
    missing = ", ".join(f"{op} x{n}" for op, n in unsupported.items())
    opaque = not_counted_reason([layer])
    unhandled = f"fvcore has no handle for {missing} and counts it as 0" if missing else ""
    known = "; ".join(filter(None, (opaque, unhandled, DROPPED.capitalize() if dropped and not reported else "")))
    figures = [compare(PEER, layer.name, Quantity.MACS, layer.macs, reported, macs,
                       conversion=conversion if others else "", known=known, checked=not (opaque or dropped))]
    other = sum(others.values())
    unknown = [op for op in others if op not in OTHER_OP_REASONS]
    figures.append(compare(
        PEER, layer.name, Quantity.OTHER_OPS, layer.other_ops, other, checked=False,
        known=opaque or ("" if unknown else _other_ops_reason(layer, others, missing, shapes)),
    ))
    return figures


def _other_ops_reason(layer: LayerStats, others: dict, missing: str, shapes: LayerShapes) -> str:
    """Why fvcore's non-MAC count for this layer is not our other ops."""
    reasons = [OTHER_OP_REASONS[op] for op in others]
    if "adaptive_avg_pool2d" in others:
        outputs = math.prod(shapes.output)
        reasons.append(f"archviz also counts one divide per output ({outputs:,}) and counts an input again for "
                       "each overlapping window")
    if missing:
        reasons.append(f"fvcore has no handle for {missing} and counts it as 0")
    if get_op(layer.op).kind in (OpKind.CONV, OpKind.LINEAR) and layer.other_ops:
        reasons.append("fvcore's conv and linear handles leave out the bias adds")
    if not reasons:
        reasons.append("fvcore counts no flops for this layer's ops (activations, dropout, flatten and cat are free "
                       "in its _IGNORED_OPS)")
    return "; ".join(reasons)
