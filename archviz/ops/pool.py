"""Pooling: max and average over 1, 2 and 3 spatial axes, adaptive and global average (torch.nn.MaxPool1d/2d/3d,
AvgPool1d/2d/3d, AdaptiveAvgPool2d)."""

from __future__ import annotations

import abc
import math

from archviz.errors import ShapeError
from archviz.ops.base import (
    ON_CPU, ON_CUDA,
    AXES, INPUT_SAVED, NOTHING_SAVED, Arg, ArgKind, Example, Kept, NoMacs, Op, OpKind, Reduction, Saved, SavesInput,
    SavesNothing, SlidingAxis, Step, Window, check_window_fits, compact, fmt_int, fmt_shape, numel, pair,
    require_rank,
)
from archviz.ops.base import lazy_torch_classes
from archviz.ops.interop import (
    Mapped, NotRepresentable, Signature, TorchCalls, batch_dim, is_ref, onnx_pads, onnx_pair, onnx_symmetric,
    window_matrix,
)
from archviz.ops.registry import register


def _pool_stride(m):
    return m.stride if m.stride not in (None, ()) else m.kernel_size


def _maxpool_module_as(op: str):
    def adapt(m, refs):
        if m.return_indices:
            return None
        return Mapped(op, {"kernel_size": m.kernel_size, "stride": _pool_stride(m), "padding": m.padding,
                           "dilation": m.dilation, "ceil_mode": m.ceil_mode}, refs)

    return adapt


def _avgpool_module_as(op: str):
    def adapt(m, refs):
        if getattr(m, "divisor_override", None) is not None:  # AvgPool1d has none
            return None
        return Mapped(op, {"kernel_size": m.kernel_size, "stride": _pool_stride(m), "padding": m.padding,
                           "ceil_mode": m.ceil_mode, "count_include_pad": m.count_include_pad}, refs)

    return adapt


_maxpool_module, _avgpool_module = _maxpool_module_as("maxpool2d"), _avgpool_module_as("avgpool2d")


def _pool_function(op: str, names: tuple[str, ...]):
    def build(a, out):
        if not is_ref(a["input"]) or a.get("return_indices") or a.get("divisor_override") is not None:
            return None
        attrs = {name: a[name] for name in names}
        if attrs["stride"] in (None, [], ()):
            attrs["stride"] = attrs["kernel_size"]
        return Mapped(op, attrs, (a["input"],))

    return build


def _maxpool_signature(op: str) -> Signature:
    return Signature(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                     _pool_function(op, ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
                     {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False})


def _avgpool_signature(op: str, divisor_override: bool = True) -> Signature:
    names = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
    return Signature(names + (("divisor_override",) if divisor_override else ()),
                     _pool_function(op, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")),
                     {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                      "divisor_override": None})


_MAXPOOL, _AVGPOOL = _maxpool_signature("maxpool2d"), _avgpool_signature("avgpool2d")


def _adaptive(output_size, refs):
    sides = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    if sides == (1, 1):
        return Mapped("global_avgpool2d", {}, refs)
    return Mapped("adaptive_avgpool2d", {"output_size": list(sides)}, refs)


def _adaptive_function(a, out):
    return _adaptive(a["output_size"], (a["input"],)) if is_ref(a["input"]) else None


def _reduced_dims(x, dims) -> tuple[int, ...] | None:
    """The dims a reduction of the traced tensor x runs over, torch counting (batch 0), sorted; None where it runs
    over the batch or over every dim (dim None or empty), or a dim is not one of x's."""
    if not is_ref(x) or dims is None:
        return None
    dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
    rank = len(x.shape) + 1
    normal = [batch_dim(d, rank) for d in dims]
    if not normal or any(d is None or d == 0 for d in normal) or len(set(normal)) != len(normal):
        return None
    return tuple(sorted(normal))


def _mean(a, out):
    """x.mean((2, 3)) or x.mean((-2, -1), keepdim=True) of a C x H x W tensor: global average pooling; a mean over
    other non-batch dims: reduce_mean."""
    x, dims = a["input"], _reduced_dims(a["input"], a["dim"])
    if dims is None or a.get("dtype") is not None:
        return None
    if len(x.shape) == 3 and dims == (2, 3):
        return Mapped("global_avgpool2d", {"keepdim": bool(a["keepdim"])}, (x,))
    return Mapped("reduce_mean", {"dim": list(dims), "keepdim": bool(a["keepdim"])}, (x,))


_MEAN = Signature(("input", "dim", "keepdim", "dtype"), _mean, {"dim": None, "keepdim": False, "dtype": None})


_POOL_BY_RANK = {"MaxPool": {1: "maxpool1d", 2: "maxpool2d", 3: "maxpool3d"},
                 "AveragePool": {1: "avgpool1d", 2: "avgpool2d", 3: "avgpool3d"}}


def _read_pool(op_type: str):
    """ONNX MaxPool or AveragePool as the pool of its window's rank (1-d, 2-d or 3-d)."""
    def read(r):
        kernel = list(r.attrs["kernel_shape"])
        n = len(kernel)
        if n not in _POOL_BY_RANK[op_type]:
            raise NotRepresentable(f"a {n}-d window (archviz pools in 1-d, 2-d and 3-d)")
        op = _POOL_BY_RANK[op_type][n]
        spatial = r.shape(r.activation(), n + 2)[2:]
        strides, dilations = list(r.attrs.get("strides", [1] * n)), list(r.attrs.get("dilations", [1] * n))
        ceil_mode = bool(r.attrs.get("ceil_mode", 0))
        before, after = onnx_pads(r.attrs, spatial, kernel, strides, dilations)
        if n == 2:
            padding, note = onnx_symmetric(before, after, spatial, kernel, strides, dilations, ceil_mode)
        elif before != after:
            raise NotRepresentable(f"asymmetric pads {before} before and {after} after a {n}-d window")
        else:
            padding, note = _sides_arg(before), None
        side = onnx_pair if n == 2 else _sides_arg
        args = {"kernel_size": side(kernel), "stride": side(strides), "padding": padding, "ceil_mode": ceil_mode}
        if op_type == "MaxPool":
            args["dilation"] = side(dilations)
        elif dilations != [1] * n:
            raise NotRepresentable(f"dilations {dilations} (archviz's average pools have none)")
        else:
            args["count_include_pad"] = bool(r.attrs.get("count_include_pad", 0))
        return r.layer(op, args, note=note)

    return read


def _sides_arg(values) -> int | tuple[int, ...]:
    """One int for equal sides, else the tuple (a SIZES argument in the form a spec writes)."""
    values = tuple(int(v) for v in values)
    return values[0] if len(set(values)) == 1 else values


def _sides(value, n: int) -> tuple[int, ...]:
    """An int or one value per spatial axis, as one per axis."""
    return (value,) * n if isinstance(value, int) else tuple(value)




def _compact(value) -> str:
    """'3' for 3 or (3, 3, 3), '1x3x3' otherwise."""
    if isinstance(value, int):
        return str(value)
    return str(value[0]) if len(set(value)) == 1 else "x".join(map(str, value))


def _read_global_avgpool(r):
    r.shape(r.activation(), 4)
    return r.layer("global_avgpool2d")


def _onnx_axes(r) -> tuple[int, tuple[int, ...]]:
    """(rank with the batch, sorted non-negative axes) of an ONNX Reduce*; NotRepresentable for the batch or all."""
    rank = len(r.shape(r.activation()))
    axes = r.attrs.get("axes") if r.opset < 18 else r.constant(1)
    axes = [axes] if isinstance(axes, int) else axes
    if not axes:
        raise NotRepresentable("a reduction over every axis, the batch included")
    axes = tuple(sorted(a % rank for a in axes))
    if 0 in axes:
        raise NotRepresentable(f"a reduction over axes {list(axes)}, the batch included")
    return rank, axes


def _read_reduce_mean(r):
    """ReduceMean: global average pooling, a mean, or the first node of the layer norm torch writes below opset 17."""
    folded = r.decomposed_layer_norm("layer_norm")
    if folded is not None:
        return folded
    rank, axes = _onnx_axes(r)
    keepdim = bool(r.attrs.get("keepdims", 1))
    if rank == 4 and axes == (2, 3):
        return r.layer("global_avgpool2d", {} if keepdim else {"keepdim": False})
    return r.layer("reduce_mean", {"dim": list(axes), "keepdim": keepdim})


def _read_reduce(op: str):
    def read(r):
        _, axes = _onnx_axes(r)
        return r.layer(op, {"dim": list(axes), "keepdim": bool(r.attrs.get("keepdims", 1))})

    return read


def _reduction(op: str):
    """The adapter of torch.sum / torch.amax and their tensor methods over non-batch dims."""
    def build(a, out):
        dims = _reduced_dims(a["input"], a["dim"])
        if dims is None or a.get("dtype") is not None:
            return None
        return Mapped(op, {"dim": list(dims), "keepdim": bool(a["keepdim"])}, (a["input"],))

    return build


def _read_adaptive_avgpool(r):
    out = r.shape(r.output, 4)
    return r.layer("adaptive_avgpool2d", {"output_size": onnx_pair(out[2:])})


INDEX_BYTES = 8  # a max pool keeps the argmax of each output as an int64 index


def max_pool_indices(out_shape) -> tuple[Kept, ...]:
    return (Kept(numel(out_shape), itemsize=INDEX_BYTES),)


def max_pool_saved(out_shape) -> Saved:
    return Saved(inputs=(0,), made=max_pool_indices(out_shape))


class _SlidingPool(NoMacs, Op):
    kind = OpKind.POOL
    spatial = 2  # spatial axes: 1 (C x L), 2 (C x H x W), 3 (C x D x H x W)
    args = (
        Arg("kernel_size", ArgKind.PAIR, aliases=("kernel", "k", "pool_size")),
        Arg("stride", ArgKind.PAIR, None, aliases=("s", "strides"), doc="defaults to kernel_size"),
        Arg("padding", ArgKind.NONNEG_PAIR, 0, aliases=("p", "pad")),
        Arg("ceil_mode", ArgKind.BOOL, False),
    )

    def resolve(self, attrs, in_shapes):
        n = self.spatial
        require_rank(self, in_shapes[0], n + 1, " x ".join(("C", *(a[0].upper() for a in AXES[n]))))
        attrs = {**attrs, "stride": attrs["stride"] if attrs["stride"] is not None else attrs["kernel_size"]}
        for name in ("kernel_size", "stride", "padding", "dilation"):
            if name in attrs and len(_sides(attrs[name], n)) != n:
                raise ShapeError(f"{name} {list(attrs[name])} needs one value per spatial axis ({n})")
        kernel, padding = _sides(attrs["kernel_size"], n), _sides(attrs["padding"], n)
        if any(p > k // 2 for p, k in zip(padding, kernel)):
            raise ShapeError(f"padding {_compact(attrs['padding'])} is more than half the kernel {_compact(kernel)}")
        if n != 2:  # one form for each value, however torch or the spec gave it: 3 for (3, 3, 3), else the tuple
            attrs.update({name: _sides_arg(_sides(attrs[name], n)) for name in ("kernel_size", "stride", "padding",
                                                                                "dilation") if name in attrs})
        return attrs

    def write_onnx(self, e, node, x):
        a, n = node.attrs, self.spatial
        options = {"kernel_shape": list(_sides(a["kernel_size"], n)), "strides": list(_sides(a["stride"], n)),
                   "pads": list(_sides(a["padding"], n)) * 2, "ceil_mode": int(a["ceil_mode"])}
        if "dilation" in a:
            e.add("MaxPool", x[:1], node.name, node.name, dilations=list(_sides(a["dilation"], n)), **options)
        else:
            e.add("AveragePool", x[:1], node.name, node.name, count_include_pad=int(a["count_include_pad"]),
                  **options)

    def axes(self, attrs, in_shape) -> list[SlidingAxis]:
        n = self.spatial
        kernel, stride, padding = (_sides(attrs[k], n) for k in ("kernel_size", "stride", "padding"))
        dilation = _sides(attrs.get("dilation", 1), n)
        return [
            SlidingAxis(in_shape[1 + i], kernel[i], stride[i], padding[i], dilation[i], attrs["ceil_mode"])
            for i in range(n)
        ]

    def kernel_elements(self, attrs) -> int:
        return math.prod(_sides(attrs["kernel_size"], self.spatial))

    def infer_shape(self, attrs, in_shapes):
        axes = self.axes(attrs, in_shapes[0])
        check_window_fits(self, axes, in_shapes[0])
        return (in_shapes[0][0], *(axis.out for axis in axes))

    def window(self, attrs, in_shapes):
        """The (height, width) window: a 3-d pool's last two axes (its depth is not tracked); none for a 1-d pool,
        since the receptive field is tracked over (height, width) and a (C, L) sequence has neither."""
        if self.spatial == 1:
            return None
        axes = self.axes(attrs, in_shapes[0])[-2:]
        return Window(tuple(a.extent for a in axes), tuple(a.stride for a in axes), tuple(a.padding for a in axes))

    def explain(self, attrs, in_shapes, out_shape):
        axes = self.axes(attrs, in_shapes[0])
        sizes = " x ".join(str(axis.out) for axis in axes)
        return [
            *(Step(f"output {name}", axis.arithmetic(), axis.out) for name, axis in zip(AXES[self.spatial], axes)),
            Step("output shape", f"channels kept: {out_shape[0]} x {sizes}", fmt_shape(out_shape)),
            Step("params", "pooling has no weights", 0),
        ]

    def summary(self, attrs):
        n = self.spatial
        text = f"{_compact(attrs['kernel_size'])}"
        if _sides(attrs["stride"], n) != _sides(attrs["kernel_size"], n):
            text += f" s{_compact(attrs['stride'])}"
        if any(_sides(attrs["padding"], n)):
            text += f" p{_compact(attrs['padding'])}"
        return text + (" ceil" if attrs["ceil_mode"] else "")


_ND_ARGS = (
    Arg("kernel_size", ArgKind.SIZES, aliases=("kernel", "k", "pool_size")),
    Arg("stride", ArgKind.SIZES, None, aliases=("s", "strides"), doc="defaults to kernel_size"),
    Arg("padding", ArgKind.NONNEG_SIZES, 0, aliases=("p", "pad")),
    Arg("ceil_mode", ArgKind.BOOL, False),
)


@register
class MaxPool2d(_SlidingPool):
    """Max pooling. Output size as for a convolution, with floor or ceil (ceil_mode).

    Other ops: k_h*k_w - 1 comparisons per output element.
    """

    reduction = Reduction.MAX

    def scratch(self, attrs, in_shapes, out_shape):
        """torch on the CPU makes the int64 argmax of each output even when no gradient will read it."""
        return max_pool_indices(out_shape)

    def saved(self, attrs, in_shapes, out_shape):
        """The input and, for each output, the int64 index of the input it took (its gradient goes there)."""
        return max_pool_saved(out_shape)

    name = "maxpool2d"
    examples = (Example({"kernel_size": 2}, ((3, 8, 7),)),
                Example({"kernel_size": 3, "stride": 2, "padding": 1}, ((2, 9, 9),)),
                Example({"kernel_size": 3, "stride": 2, "ceil_mode": True}, ((2, 8, 8),)),
                Example({"kernel_size": 2, "stride": 1, "dilation": 2}, ((1, 7, 7),)))
    aliases = ("maxpool", "max_pool", "max_pool2d")
    torch_class = "nn.MaxPool2d"
    torch_calls = TorchCalls(modules={"torch.nn.MaxPool2d": _maxpool_module},
                             functions={"torch.nn.functional.max_pool2d": _MAXPOOL, "torch.max_pool2d": _MAXPOOL})
    onnx_reads = {"MaxPool": _read_pool("MaxPool")}  # by the window's rank: maxpool1d, 2d or 3d
    keras_class = "MaxPooling2D"
    args = (*_SlidingPool.args, Arg("dilation", ArgKind.PAIR, 1, aliases=("d",)))

    def other_ops(self, attrs, in_shapes, out_shape):
        kh, kw = pair(attrs["kernel_size"])
        return numel(out_shape) * (kh * kw - 1)

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        kh, kw = pair(attrs["kernel_size"])
        value = self.other_ops(attrs, in_shapes, out_shape)
        return Step("other ops", f"{fmt_shape(out_shape)} outputs x ({kh}*{kw} - 1) comparisons", fmt_int(value))

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.MaxPool2d(
            pair(attrs["kernel_size"]), stride=pair(attrs["stride"]), padding=pair(attrs["padding"]),
            dilation=pair(attrs["dilation"]), ceil_mode=attrs["ceil_mode"],
        )


@register
class AvgPool2d(SavesInput, _SlidingPool):
    """Average pooling.

    Other ops: k_h*k_w per output element (k_h*k_w - 1 adds and one divide; border windows are
    counted at full size even when count_include_pad is false).
    """

    reduction = Reduction.MEAN

    name = "avgpool2d"
    examples = (Example({"kernel_size": 2}, ((3, 8, 7),)),
                Example({"kernel_size": 3, "stride": 2, "padding": 1}, ((2, 9, 9),)),
                Example({"kernel_size": 3, "stride": 2, "ceil_mode": True, "count_include_pad": False}, ((2, 8, 8),)))
    aliases = ("avgpool", "avg_pool", "avg_pool2d", "average_pooling2d")
    torch_class = "nn.AvgPool2d"
    torch_calls = TorchCalls(modules={"torch.nn.AvgPool2d": _avgpool_module},
                             functions={"torch.nn.functional.avg_pool2d": _AVGPOOL})
    onnx_reads = {"AveragePool": _read_pool("AveragePool")}  # by the window's rank: avgpool1d, 2d or 3d
    keras_class = "AveragePooling2D"
    args = (*_SlidingPool.args, Arg("count_include_pad", ArgKind.BOOL, True))

    def other_ops(self, attrs, in_shapes, out_shape):
        kh, kw = pair(attrs["kernel_size"])
        return numel(out_shape) * kh * kw

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        kh, kw = pair(attrs["kernel_size"])
        value = self.other_ops(attrs, in_shapes, out_shape)
        return Step("other ops", f"{fmt_shape(out_shape)} outputs x {kh}*{kw} (adds and one divide)", fmt_int(value))

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.AvgPool2d(
            pair(attrs["kernel_size"]), stride=pair(attrs["stride"]), padding=pair(attrs["padding"]),
            ceil_mode=attrs["ceil_mode"], count_include_pad=attrs["count_include_pad"],
        )


class _MaxPoolNd(_SlidingPool):
    """Max pooling over 1 or 3 spatial axes: the formulas of maxpool2d with one size per axis."""

    reduction = Reduction.MAX

    def scratch(self, attrs, in_shapes, out_shape):
        """torch on the CPU makes the int64 argmax of each output even when no gradient will read it."""
        return max_pool_indices(out_shape)

    def saved(self, attrs, in_shapes, out_shape):
        """The input and, for each output, the int64 index of the input it took (its gradient goes there)."""
        return max_pool_saved(out_shape)

    args = (*_ND_ARGS, Arg("dilation", ArgKind.SIZES, 1, aliases=("d",)))

    def other_ops(self, attrs, in_shapes, out_shape):
        return numel(out_shape) * (self.kernel_elements(attrs) - 1)

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        kernel = "*".join(map(str, _sides(attrs["kernel_size"], self.spatial)))
        value = self.other_ops(attrs, in_shapes, out_shape)
        return Step("other ops", f"{fmt_shape(out_shape)} outputs x ({kernel} - 1) comparisons", fmt_int(value))

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        n = self.spatial
        return getattr(nn, self.torch_class.removeprefix("nn."))(
            _sides(attrs["kernel_size"], n), stride=_sides(attrs["stride"], n), padding=_sides(attrs["padding"], n),
            dilation=_sides(attrs["dilation"], n), ceil_mode=attrs["ceil_mode"],
        )


class _AvgPoolNd(SavesInput, _SlidingPool):
    """Average pooling over 1 or 3 spatial axes: the formulas of avgpool2d with one size per axis."""

    reduction = Reduction.MEAN

    args = (*_ND_ARGS, Arg("count_include_pad", ArgKind.BOOL, True))

    def other_ops(self, attrs, in_shapes, out_shape):
        return numel(out_shape) * self.kernel_elements(attrs)

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        kernel = "*".join(map(str, _sides(attrs["kernel_size"], self.spatial)))
        value = self.other_ops(attrs, in_shapes, out_shape)
        return Step("other ops", f"{fmt_shape(out_shape)} outputs x {kernel} (adds and one divide)", fmt_int(value))

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        n = self.spatial
        return getattr(nn, self.torch_class.removeprefix("nn."))(
            _sides(attrs["kernel_size"], n), stride=_sides(attrs["stride"], n), padding=_sides(attrs["padding"], n),
            ceil_mode=attrs["ceil_mode"], count_include_pad=attrs["count_include_pad"],
        )


@register
class MaxPool1d(_MaxPoolNd):
    """Max pooling along a sequence (C x L; torch.nn.MaxPool1d). Output length as for a convolution, with floor or
    ceil (ceil_mode). Other ops: k - 1 comparisons per output element. No window: the receptive field is tracked
    over (height, width), and a sequence has neither."""

    name = "maxpool1d"
    spatial = 1
    examples = (Example({"kernel_size": 2}, ((3, 9),)),
                Example({"kernel_size": 3, "stride": 2, "padding": 1}, ((2, 10),)),
                Example({"kernel_size": 3, "stride": 2, "ceil_mode": True, "dilation": 2}, ((2, 12),)))
    aliases = ("max_pool1d",)
    torch_class = "nn.MaxPool1d"
    torch_calls = TorchCalls(modules={"torch.nn.MaxPool1d": _maxpool_module_as("maxpool1d")},
                             functions={"torch.nn.functional.max_pool1d": _maxpool_signature("maxpool1d"),
                                        "torch.max_pool1d": _maxpool_signature("maxpool1d")})
    keras_class = "MaxPooling1D"


@register
class MaxPool3d(_MaxPoolNd):
    """Max pooling over a volume (C x D x H x W; torch.nn.MaxPool3d). Output size per axis as for a convolution,
    with floor or ceil (ceil_mode). Other ops: k_d*k_h*k_w - 1 comparisons per output element. Window: its height
    and width axes (the depth is not tracked)."""

    name = "maxpool3d"
    widens = ON_CPU  # in torch's CPU autocast float32 list, not CUDA's
    spatial = 3
    examples = (Example({"kernel_size": 2}, ((2, 4, 6, 5),)),
                Example({"kernel_size": [1, 3, 3], "stride": [1, 2, 2], "padding": [0, 1, 1]}, ((2, 3, 7, 7),)),
                Example({"kernel_size": 2, "stride": 1, "dilation": [1, 2, 2], "ceil_mode": True}, ((1, 3, 6, 6),)))
    aliases = ("max_pool3d",)
    torch_class = "nn.MaxPool3d"
    torch_calls = TorchCalls(modules={"torch.nn.MaxPool3d": _maxpool_module_as("maxpool3d")},
                             functions={"torch.nn.functional.max_pool3d": _maxpool_signature("maxpool3d"),
                                        "torch.max_pool3d": _maxpool_signature("maxpool3d")})
    keras_class = "MaxPooling3D"


@register
class AvgPool1d(_AvgPoolNd):
    """Average pooling along a sequence (C x L; torch.nn.AvgPool1d). Other ops: k per output element (k - 1 adds
    and one divide; border windows counted at full size even when count_include_pad is false). No window: the
    receptive field is tracked over (height, width), and a sequence has neither."""

    name = "avgpool1d"
    spatial = 1
    examples = (Example({"kernel_size": 2}, ((3, 9),)),
                Example({"kernel_size": 3, "stride": 2, "padding": 1}, ((2, 10),)),
                Example({"kernel_size": 3, "stride": 2, "ceil_mode": True, "count_include_pad": False}, ((2, 8),)))
    aliases = ("avg_pool1d",)
    torch_class = "nn.AvgPool1d"
    torch_calls = TorchCalls(modules={"torch.nn.AvgPool1d": _avgpool_module_as("avgpool1d")},
                             functions={"torch.nn.functional.avg_pool1d": _avgpool_signature("avgpool1d", False)})
    keras_class = "AveragePooling1D"


@register
class AvgPool3d(_AvgPoolNd):
    """Average pooling over a volume (C x D x H x W; torch.nn.AvgPool3d). Other ops: k_d*k_h*k_w per output
    element (adds and one divide; border windows counted at full size). Window: its height and width axes."""

    name = "avgpool3d"
    widens = ON_CPU  # in torch's CPU autocast float32 list, not CUDA's
    spatial = 3
    examples = (Example({"kernel_size": 2}, ((2, 4, 6, 5),)),
                Example({"kernel_size": [1, 3, 3], "stride": [1, 2, 2], "padding": [0, 1, 1]}, ((2, 3, 7, 7),)),
                Example({"kernel_size": 3, "stride": 2, "ceil_mode": True, "count_include_pad": False},
                        ((1, 5, 6, 6),)))
    aliases = ("avg_pool3d",)
    torch_class = "nn.AvgPool3d"
    torch_calls = TorchCalls(modules={"torch.nn.AvgPool3d": _avgpool_module_as("avgpool3d")},
                             functions={"torch.nn.functional.avg_pool3d": _avgpool_signature("avgpool3d")})
    keras_class = "AveragePooling3D"


def adaptive_windows(size: int, out: int) -> tuple[int, int]:
    """(longest window, sum of the window lengths) of torch's adaptive windows along one axis, without a loop over
    the outputs (an output of 10**9 would take minutes).

    Window i is [floor(i*s/o), ceil((i+1)*s/o)); with f = frac(i*s/o) its length is ceil(f + s/o), and i*s mod o
    takes every multiple of g = gcd(s, o) below o, so the longest is ceil((s + o - g)/o). The ceilings exceed the
    floors by one except at the g outputs where o/g divides i, so the lengths sum to s + o - g.
    """
    g = math.gcd(size, out)
    return -(-(size + out - g) // out), size + out - g


class _AdaptiveAvg(NoMacs, Op):
    reduction = Reduction.MEAN
    kind = OpKind.POOL
    torch_class = "nn.AdaptiveAvgPool2d"

    @abc.abstractmethod
    def target(self, attrs, in_shape) -> tuple[int, int]:
        """The output's (height, width)."""

    def infer_shape(self, attrs, in_shapes):
        require_rank(self, in_shapes[0], 3, "C x H x W")
        return (in_shapes[0][0], *self.target(attrs, in_shapes[0]))

    def window_sums(self, in_shape, out_hw) -> tuple[int, int]:
        return tuple(adaptive_windows(size, out)[1] for size, out in zip(in_shape[1:], out_hw))

    def other_ops(self, attrs, in_shapes, out_shape):
        """Every input in each window is added once (windows overlap when sizes do not divide); one divide per
        output."""
        sum_h, sum_w = self.window_sums(in_shapes[0], self.target(attrs, in_shapes[0]))
        return in_shapes[0][0] * sum_h * sum_w + numel(out_shape)

    def window(self, attrs, in_shapes):
        kernel, stride = [], []
        for size, out in zip(in_shapes[0][1:], self.target(attrs, in_shapes[0])):
            kernel.append(adaptive_windows(size, out)[0])
            stride.append(max(1, size // out))
        return Window(tuple(kernel), tuple(stride), (0, 0))

    def explain(self, attrs, in_shapes, out_shape):
        (h, w), (oh, ow) = in_shapes[0][1:], self.target(attrs, in_shapes[0])
        window = self.window(attrs, in_shapes)
        how = "exact windows" if h % oh == 0 and w % ow == 0 else "windows overlap since the sizes do not divide"
        return [
            Step(
                "output shape",
                f"{h}x{w} averaged into {oh}x{ow} windows of up to {window.kernel[0]}x{window.kernel[1]} ({how})",
                fmt_shape(out_shape),
            ),
            Step("params", "pooling has no weights", 0),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        sum_h, sum_w = self.window_sums(in_shapes[0], self.target(attrs, in_shapes[0]))
        value = self.other_ops(attrs, in_shapes, out_shape)
        return Step(
            "other ops",
            f"{in_shapes[0][0]} channels x {sum_h}*{sum_w} window inputs added + {numel(out_shape):,} divides",
            fmt_int(value),
        )

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.AdaptiveAvgPool2d(self.target(attrs, in_shapes[0]))


@register
class AdaptiveAvgPool2d(_AdaptiveAvg):
    """Adaptive average pooling to a fixed output size (torch's windows). Other ops: one add per window input,
    one divide per output."""

    def saved(self, attrs, in_shapes, out_shape):
        """The input; to one value per channel torch takes the mean, which keeps nothing."""
        return NOTHING_SAVED if all(side == 1 for side in out_shape[1:]) else INPUT_SAVED

    name = "adaptive_avgpool2d"
    examples = (Example({"output_size": 3}, ((2, 7, 8),)), Example({"output_size": [2, 4]}, ((3, 8, 8),)),
                Example({"output_size": [None, 2]}, ((2, 5, 6),)))
    aliases = ("adaptive_avg_pool2d", "adaptive_avgpool")
    keras_class = "AdaptiveAveragePooling2D"
    torch_calls = TorchCalls(  # output size 1x1 is global_avgpool2d
        modules={"torch.nn.AdaptiveAvgPool2d": lambda m, refs: _adaptive(m.output_size, refs)},
        functions={"torch.nn.functional.adaptive_avg_pool2d": Signature(("input", "output_size"), _adaptive_function)})
    onnx_reads = {"archviz::AdaptiveAvgPool2d": _read_adaptive_avgpool}  # the function archviz writes
    args = (Arg("output_size", ArgKind.OPTIONAL_PAIR, doc="int or [h, w]; null keeps that side"),)

    def target(self, attrs, in_shape):
        return tuple(in_shape[1 + i] if o is None else o for i, o in enumerate(pair(attrs["output_size"])))

    def write_onnx(self, e, node, x):
        """torch's adaptive windows as matrices: Y = rows @ X @ cols, rows (out_h x H) and cols (W x out_w) holding
        1/window-length entries, in the model-local function archviz.AdaptiveAvgPool2d."""
        (height, width), target = node.in_shapes[0][1:], self.target(node.attrs, node.in_shapes[0])
        rows = window_matrix(height, target[0])
        cols = [list(column) for column in zip(*window_matrix(width, target[1]))]
        e.function("AdaptiveAvgPool2d", ["X", "rows", "cols"], ["Y"], [("MatMul", ["rows", "X"], ["T"]),
                                                                        ("MatMul", ["T", "cols"], ["Y"])],
                   doc="torch.nn.AdaptiveAvgPool2d: Y = rows @ X @ cols, each row of `rows` (column of `cols`) "
                       "averaging one of torch's windows along the height (width)")
        e.add("AdaptiveAvgPool2d", [x[0], e.constant(f"{node.name}/rows", rows), e.constant(f"{node.name}/cols", cols)],
              node.name, node.name, domain=e.domain)

    def summary(self, attrs):
        sides = pair(attrs["output_size"])
        if None in sides:  # a null side keeps the input's size
            return "-> " + "x".join("same" if side is None else str(side) for side in sides)
        return f"-> {compact(sides)}"


@register
class GlobalAvgPool2d(SavesNothing, _AdaptiveAvg):
    """Global average pooling: each channel averaged to one value, shape C x 1 x 1 (torch AdaptiveAvgPool2d(1)),
    or C with keepdim false (torch's x.mean((2, 3))).

    Other ops: H*W adds and one divide per channel.
    """

    name = "global_avgpool2d"
    examples = (Example({}, ((4, 5, 6),)), Example({"keepdim": False}, ((3, 4, 4),)))
    aliases = ("global_avg_pool", "global_avgpool", "global_average_pooling2d", "gap")
    keras_class = "GlobalAveragePooling2D"
    torch_calls = TorchCalls(functions={"torch.mean": _MEAN, "Tensor.mean": _MEAN})  # and AdaptiveAvgPool2d(1)
    onnx_reads = {"GlobalAveragePool": _read_global_avgpool, "ReduceMean": _read_reduce_mean}
    args = (Arg("keepdim", ArgKind.BOOL, True, doc="false: the C x 1 x 1 result is flattened to C, as x.mean((2, 3))"),)

    def target(self, attrs, in_shape):
        return (1, 1)

    def infer_shape(self, attrs, in_shapes):
        shape = super().infer_shape(attrs, in_shapes)
        return shape if attrs.get("keepdim", True) else shape[:1]

    def summary(self, attrs):
        return "global" if attrs.get("keepdim", True) else "global, flattened"

    def write_onnx(self, e, node, x):
        if node.attrs.get("keepdim", True):
            e.add("GlobalAveragePool", x[:1], node.name, node.name)
            return
        axes = e.constant(f"{node.name}/axes", [2, 3], "int64")
        e.add("ReduceMean", [x[0], axes], node.name, node.name, keepdims=0)

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        if attrs.get("keepdim", True):
            return nn.AdaptiveAvgPool2d((1, 1))
        from archviz.ops.modules import SpatialMean

        return SpatialMean()


def _adaptive_max(output_size, refs, return_indices=False):
    if return_indices:
        return None  # the indices are a second output no layer stands for
    sides = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    return Mapped("adaptive_maxpool2d", {"output_size": list(sides)}, refs)


def _window_mask(size: int, out: int) -> list[list[float]]:
    """Row i is 0 over torch's adaptive window i, [floor(i*size/out), ceil((i+1)*size/out)), and -inf elsewhere."""
    return [[0.0 if weight else -math.inf for weight in row] for row in window_matrix(size, out)]


def _read_adaptive_maxpool(r):
    out = r.shape(r.output, 4)
    return r.layer("adaptive_maxpool2d", {"output_size": onnx_pair(out[2:])})


@register
class AdaptiveMaxPool2d(_AdaptiveAvg):
    """Adaptive max pooling to a fixed output size (torch.nn.AdaptiveMaxPool2d): the maximum of each of torch's
    adaptive windows, [floor(i*H/oh), ceil((i+1)*H/oh)) by [floor(j*W/ow), ceil((j+1)*W/ow)), the windows and the
    receptive-field window of adaptive_avgpool2d.

    Other ops: (window elements - 1) comparisons per output: C * (sum of the row windows' lengths * sum of the column
    windows' lengths - oh*ow).
    """

    reduction = Reduction.MAX

    def scratch(self, attrs, in_shapes, out_shape):
        """torch on the CPU makes the int64 argmax of each output even when no gradient will read it."""
        return max_pool_indices(out_shape)

    def saved(self, attrs, in_shapes, out_shape):
        """The input and, for each output, the int64 index of the input it took (its gradient goes there)."""
        return max_pool_saved(out_shape)

    name = "adaptive_maxpool2d"
    examples = (Example({"output_size": 3}, ((2, 7, 8),)), Example({"output_size": [2, 4]}, ((3, 8, 8),)),
                Example({"output_size": [None, 2]}, ((2, 5, 6),)), Example({"output_size": 1}, ((3, 4, 5),)))
    aliases = ("adaptive_max_pool2d", "adaptive_maxpool")
    keras_class = "AdaptiveMaxPooling2D"
    torch_class = "nn.AdaptiveMaxPool2d"
    torch_calls = TorchCalls(
        modules={"torch.nn.AdaptiveMaxPool2d": lambda m, refs: _adaptive_max(m.output_size, refs, m.return_indices)},
        functions={"torch.nn.functional.adaptive_max_pool2d": Signature(
            ("input", "output_size", "return_indices"),
            lambda a, out: _adaptive_max(a["output_size"], (a["input"],), a["return_indices"])
            if is_ref(a["input"]) else None, {"return_indices": False})})
    onnx_reads = {"archviz::AdaptiveMaxPool2d": _read_adaptive_maxpool}  # the function archviz writes
    args = (Arg("output_size", ArgKind.OPTIONAL_PAIR, doc="int or [h, w]; null keeps that side"),)

    target = AdaptiveAvgPool2d.target
    summary = AdaptiveAvgPool2d.summary

    def other_ops(self, attrs, in_shapes, out_shape):
        sum_h, sum_w = self.window_sums(in_shapes[0], self.target(attrs, in_shapes[0]))
        return in_shapes[0][0] * sum_h * sum_w - numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        (h, w), (oh, ow) = in_shapes[0][1:], self.target(attrs, in_shapes[0])
        window = self.window(attrs, in_shapes)
        how = "exact windows" if h % oh == 0 and w % ow == 0 else "windows overlap since the sizes do not divide"
        return [
            Step("output shape", f"{h}x{w} max-pooled into {oh}x{ow} windows of up to "
                                 f"{window.kernel[0]}x{window.kernel[1]} ({how})", fmt_shape(out_shape)),
            Step("params", "pooling has no weights", 0),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        sum_h, sum_w = self.window_sums(in_shapes[0], self.target(attrs, in_shapes[0]))
        return Step("other ops", f"{in_shapes[0][0]} channels x {sum_h}*{sum_w} window inputs - {numel(out_shape):,} "
                                 "outputs (one comparison fewer than elements per window)",
                    fmt_int(self.other_ops(attrs, in_shapes, out_shape)))

    def write_onnx(self, e, node, x):
        """torch's adaptive windows as masks, 0 inside a window and -inf outside: the rows' maxima are
        ReduceMax(X[:, :, None] + rows) over the height, then the columns' the same way over the width, in the
        model-local function archviz.AdaptiveMaxPool2d (a maximum over a rectangle is the maximum of the row maxima)."""
        (height, width), target = node.in_shapes[0][1:], self.target(node.attrs, node.in_shapes[0])
        rows = [[[value] for value in row] for row in _window_mask(height, target[0])]  # (oh, H, 1)
        cols = _window_mask(width, target[1])  # (ow, W)
        e.function("AdaptiveMaxPool2d", ["X", "rows", "cols"], ["Y"], [
            ("Constant", [], ["at2"], {"value_ints": [2]}),
            ("Constant", [], ["at3"], {"value_ints": [3]}),
            ("Constant", [], ["at4"], {"value_ints": [4]}),
            ("Unsqueeze", ["X", "at2"], ["X5"]),  # (N, C, 1, H, W)
            ("Add", ["X5", "rows"], ["masked_rows"]),  # (N, C, oh, H, W)
            ("ReduceMax", ["masked_rows", "at3"], ["R"], {"keepdims": 0}),  # (N, C, oh, W)
            ("Unsqueeze", ["R", "at3"], ["R5"]),  # (N, C, oh, 1, W)
            ("Add", ["R5", "cols"], ["masked_cols"]),  # (N, C, oh, ow, W)
            ("ReduceMax", ["masked_cols", "at4"], ["Y"], {"keepdims": 0}),  # (N, C, oh, ow)
        ], doc="torch.nn.AdaptiveMaxPool2d: the maximum over each of torch's adaptive windows; `rows` (oh x H x 1) "
               "and `cols` (ow x W) are 0 inside a window and -inf outside")
        e.add("AdaptiveMaxPool2d", [x[0], e.constant(f"{node.name}/rows", rows), e.constant(f"{node.name}/cols", cols)],
              node.name, node.name, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.AdaptiveMaxPool2d(self.target(attrs, in_shapes[0]))


def _adaptive_nd(op: str, n: int):
    """nn.AdaptiveAvgPool1d/3d and F.adaptive_avg_pool1d/3d: a side of None keeps the input's size."""
    def adapt(output_size, refs):
        sides = (output_size,) * n if not isinstance(output_size, (tuple, list)) else tuple(output_size)
        if len(sides) != n or not refs:
            return None
        sides = tuple(refs[0].shape[1 + i] if side is None else side for i, side in enumerate(sides))
        return Mapped(op, {"output_size": _sides_arg(sides)}, refs)

    return adapt


def _adaptive_avg_calls(op: str, n: int) -> TorchCalls:
    """nn.AdaptiveAvgPool{n}d and F.adaptive_avg_pool{n}d as `op`."""
    adapt = _adaptive_nd(op, n)
    return TorchCalls(
        modules={f"torch.nn.AdaptiveAvgPool{n}d": lambda m, refs: adapt(m.output_size, refs)},
        functions={f"torch.nn.functional.adaptive_avg_pool{n}d": Signature(
            ("input", "output_size"), lambda a, out: adapt(a["output_size"], (a["input"],)) if is_ref(a["input"])
            else None)})


def _read_adaptive_nd(op: str, n: int):
    def read(r):
        return r.layer(op, {"output_size": _sides_arg(r.shape(r.output, n + 2)[2:])})

    return read


class _AdaptiveAvgNd(NoMacs, Op):
    """Adaptive average pooling over 1 or 3 spatial axes: adaptive_avgpool2d's windows and formulas per axis."""

    reduction = Reduction.MEAN

    kind = OpKind.POOL
    spatial = 1

    def target(self, attrs, in_shape) -> tuple[int, ...]:
        return _sides(attrs["output_size"], self.spatial)

    def resolve(self, attrs, in_shapes):
        n = self.spatial
        require_rank(self, in_shapes[0], n + 1, " x ".join(("C", *(a[0].upper() for a in AXES[n]))))
        if len(_sides(attrs["output_size"], n)) != n:
            raise ShapeError(f"output_size {list(attrs['output_size'])} needs one value per spatial axis ({n})")
        return {**attrs, "output_size": _sides_arg(_sides(attrs["output_size"], n))}

    def infer_shape(self, attrs, in_shapes):
        return (in_shapes[0][0], *self.target(attrs, in_shapes[0]))

    def window_sums(self, attrs, in_shape) -> tuple[int, ...]:
        return tuple(adaptive_windows(size, out)[1] for size, out in zip(in_shape[1:], self.target(attrs, in_shape)))

    def other_ops(self, attrs, in_shapes, out_shape):
        """Every input in each window is added once (windows overlap when sizes do not divide); one divide per
        output."""
        return in_shapes[0][0] * math.prod(self.window_sums(attrs, in_shapes[0])) + numel(out_shape)

    def window(self, attrs, in_shapes):
        """The (height, width) window of a 3-d pool, as adaptive_avgpool2d's (its depth is not tracked); none for a
        1-d pool, since a (C, L) sequence has no height and width."""
        if self.spatial == 1:
            return None
        pairs = list(zip(in_shapes[0][1:], self.target(attrs, in_shapes[0])))[-2:]
        return Window(tuple(adaptive_windows(size, out)[0] for size, out in pairs),
                      tuple(max(1, size // out) for size, out in pairs), (0, 0))

    def explain(self, attrs, in_shapes, out_shape):
        target, spatial = self.target(attrs, in_shapes[0]), in_shapes[0][1:]
        longest = [adaptive_windows(size, out)[0] for size, out in zip(spatial, target)]
        exact = all(size % out == 0 for size, out in zip(spatial, target))
        how = "exact windows" if exact else "windows overlap since the sizes do not divide"
        return [
            Step("output shape", f"{'x'.join(map(str, spatial))} averaged into {'x'.join(map(str, target))} windows "
                                 f"of up to {'x'.join(map(str, longest))} ({how})", fmt_shape(out_shape)),
            Step("params", "pooling has no weights", 0),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        sums = "*".join(map(str, self.window_sums(attrs, in_shapes[0])))
        return Step("other ops", f"{in_shapes[0][0]} channels x {sums} window inputs added + {numel(out_shape):,} "
                                 "divides", fmt_int(self.other_ops(attrs, in_shapes, out_shape)))

    def summary(self, attrs):
        return f"-> {_compact(attrs['output_size'])}"

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        target = self.target(attrs, in_shapes[0])
        return getattr(nn, self.torch_class.removeprefix("nn."))(target[0] if self.spatial == 1 else target)


def _averaging(size: int, out: int) -> list[list[float]]:
    """(size x out): column i averages torch's adaptive window i."""
    return [list(column) for column in zip(*window_matrix(size, out))]


@register
class AdaptiveAvgPool1d(_AdaptiveAvgNd):
    """Adaptive average pooling of a sequence to a fixed length (torch.nn.AdaptiveAvgPool1d; torch's windows
    [floor(i*L/o), ceil((i+1)*L/o))). Other ops: one add per window input, one divide per output. No window: a
    (C, L) sequence has no height and width."""

    def saved(self, attrs, in_shapes, out_shape):
        """The input; to one value per channel torch takes the mean, which keeps nothing."""
        return NOTHING_SAVED if all(side == 1 for side in out_shape[1:]) else INPUT_SAVED

    name = "adaptive_avgpool1d"
    spatial = 1
    examples = (Example({"output_size": 3}, ((2, 7),)), Example({"output_size": 4}, ((3, 8),)),
                Example({"output_size": 1}, ((2, 5),)))
    aliases = ("adaptive_avg_pool1d",)
    torch_class = "nn.AdaptiveAvgPool1d"
    keras_class = "AdaptiveAveragePooling1D"
    torch_calls = _adaptive_avg_calls("adaptive_avgpool1d", 1)
    onnx_reads = {"archviz::AdaptiveAvgPool1d": _read_adaptive_nd("adaptive_avgpool1d", 1)}  # archviz's function
    args = (Arg("output_size", ArgKind.SIZES, doc="the output length"),)

    def write_onnx(self, e, node, x):
        """Y = X @ cols, cols (L x out) holding 1/window-length entries, in the function archviz.AdaptiveAvgPool1d."""
        length, (out,) = node.in_shapes[0][1], self.target(node.attrs, node.in_shapes[0])
        e.function("AdaptiveAvgPool1d", ["X", "cols"], ["Y"], [("MatMul", ["X", "cols"], ["Y"])],
                   doc="torch.nn.AdaptiveAvgPool1d: Y = X @ cols, each column of `cols` averaging one of torch's "
                       "windows")
        e.add("AdaptiveAvgPool1d", [x[0], e.constant(f"{node.name}/cols", _averaging(length, out))], node.name,
              node.name, domain=e.domain)


@register
class AdaptiveAvgPool3d(_AdaptiveAvgNd):
    """Adaptive average pooling of a volume to a fixed size (torch.nn.AdaptiveAvgPool3d; torch's windows per axis).
    Other ops: one add per window input, one divide per output. Window: its height and width axes, as
    adaptive_avgpool2d's."""

    def saved(self, attrs, in_shapes, out_shape):
        """The input; to one value per channel torch takes the mean, which keeps nothing."""
        return NOTHING_SAVED if all(side == 1 for side in out_shape[1:]) else INPUT_SAVED

    name = "adaptive_avgpool3d"
    widens = ON_CPU  # in torch's CPU autocast float32 list, not CUDA's
    spatial = 3
    examples = (Example({"output_size": 2}, ((2, 4, 7, 8),)), Example({"output_size": [1, 2, 3]}, ((3, 3, 8, 8),)),
                Example({"output_size": 1}, ((2, 3, 4, 5),)))
    aliases = ("adaptive_avg_pool3d",)
    torch_class = "nn.AdaptiveAvgPool3d"
    keras_class = "AdaptiveAveragePooling3D"
    torch_calls = _adaptive_avg_calls("adaptive_avgpool3d", 3)
    onnx_reads = {"archviz::AdaptiveAvgPool3d": _read_adaptive_nd("adaptive_avgpool3d", 3)}  # archviz's function
    args = (Arg("output_size", ArgKind.SIZES, doc="int or [d, h, w]"),)

    def write_onnx(self, e, node, x):
        """Averaging matrices (size x out) per axis applied to the last axis in turn, the axes rotated between, in
        the function archviz.AdaptiveAvgPool3d."""
        spatial, target = node.in_shapes[0][1:], self.target(node.attrs, node.in_shapes[0])
        e.function("AdaptiveAvgPool3d", ["X", "depth", "height", "width"], ["Y"], [
            ("MatMul", ["X", "width"], ["T1"]),  # (N, C, D, H, ow)
            ("Transpose", ["T1"], ["T1t"], {"perm": [0, 1, 2, 4, 3]}),  # (N, C, D, ow, H)
            ("MatMul", ["T1t", "height"], ["T2"]),  # (N, C, D, ow, oh)
            ("Transpose", ["T2"], ["T2t"], {"perm": [0, 1, 4, 3, 2]}),  # (N, C, oh, ow, D)
            ("MatMul", ["T2t", "depth"], ["T3"]),  # (N, C, oh, ow, od)
            ("Transpose", ["T3"], ["Y"], {"perm": [0, 1, 4, 2, 3]}),  # (N, C, od, oh, ow)
        ], doc="torch.nn.AdaptiveAvgPool3d: each of `depth`, `height`, `width` (size x out) averages torch's windows "
               "along its axis")
        matrices = [e.constant(f"{node.name}/{axis}", _averaging(size, out))
                    for axis, size, out in zip(("depth", "height", "width"), spatial, target)]
        e.add("AdaptiveAvgPool3d", [x[0], *matrices], node.name, node.name, domain=e.domain)


def _adaptive_max_nd(op: str, n: int):
    """nn.AdaptiveMaxPool1d/3d and F.adaptive_max_pool1d/3d, without the indices."""
    def adapt(output_size, refs, return_indices=False):
        return None if return_indices else _adaptive_nd(op, n)(output_size, refs)

    return adapt


def _nested(mask: list[list[float]], trailing: int) -> list:
    """Each value of an (out x size) mask nested in `trailing` one-element lists: shape (out, size, 1, ..., 1)."""
    def wrap(value):
        for _ in range(trailing):
            value = [value]
        return value

    return [[wrap(value) for value in row] for row in mask]


class _AdaptiveMaxNd(_AdaptiveAvgNd):
    """Adaptive max pooling over 1 or 3 spatial axes: torch's windows per axis, the maximum of each."""

    reduction = Reduction.MAX

    def scratch(self, attrs, in_shapes, out_shape):
        """torch on the CPU makes the int64 argmax of each output even when no gradient will read it."""
        return max_pool_indices(out_shape)

    def saved(self, attrs, in_shapes, out_shape):
        """The input and, for each output, the int64 index of the input it took (its gradient goes there)."""
        return max_pool_saved(out_shape)

    def other_ops(self, attrs, in_shapes, out_shape):
        """(window elements - 1) comparisons per output."""
        return in_shapes[0][0] * math.prod(self.window_sums(attrs, in_shapes[0])) - numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        target, spatial = self.target(attrs, in_shapes[0]), in_shapes[0][1:]
        longest = [adaptive_windows(size, out)[0] for size, out in zip(spatial, target)]
        return [
            Step("output shape", f"{'x'.join(map(str, spatial))} max-pooled into {'x'.join(map(str, target))} "
                                 f"windows of up to {'x'.join(map(str, longest))}", fmt_shape(out_shape)),
            Step("params", "pooling has no weights", 0),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        sums = "*".join(map(str, self.window_sums(attrs, in_shapes[0])))
        return Step("other ops", f"{in_shapes[0][0]} channels x {sums} window inputs - {numel(out_shape):,} outputs "
                                 "(one comparison fewer than elements per window)",
                    fmt_int(self.other_ops(attrs, in_shapes, out_shape)))

    def write_onnx(self, e, node, x):
        """Per axis in turn, a mask (out x size x 1...) 0 inside torch's window and -inf outside, added to the tensor
        with a new axis before that one, and ReduceMax over it, in the function archviz.AdaptiveMaxPool1d/3d."""
        n, function = self.spatial, f"AdaptiveMaxPool{self.spatial}d"
        spatial, target = node.in_shapes[0][1:], self.target(node.attrs, node.in_shapes[0])
        masks = [f"mask{k}" for k in range(n)]
        body, current = [], "X"
        for k in range(n):
            body += [("Constant", [], [f"at{k}"], {"value_ints": [2 + k]}),
                     ("Constant", [], [f"over{k}"], {"value_ints": [3 + k]}),
                     ("Unsqueeze", [current, f"at{k}"], [f"wide{k}"]),
                     ("Add", [f"wide{k}", masks[k]], [f"masked{k}"]),
                     ("ReduceMax", [f"masked{k}", f"over{k}"], ["Y" if k == n - 1 else f"pooled{k}"], {"keepdims": 0})]
            current = f"pooled{k}"
        e.function(function, ["X", *masks], ["Y"], body,
                   doc=f"torch.nn.{function}: the maximum over each of torch's adaptive windows, one axis at a time; "
                       "mask k is 0 inside a window of axis k and -inf outside")
        constants = [e.constant(f"{node.name}/mask{k}", _nested(_window_mask(spatial[k], target[k]), n - 1 - k))
                     for k in range(n)]
        e.add(function, [x[0], *constants], node.name, node.name, domain=e.domain)


def _adaptive_max_calls(op: str, n: int) -> TorchCalls:
    adapt = _adaptive_max_nd(op, n)
    return TorchCalls(
        modules={f"torch.nn.AdaptiveMaxPool{n}d": lambda m, refs: adapt(m.output_size, refs, m.return_indices)},
        functions={f"torch.nn.functional.adaptive_max_pool{n}d": Signature(
            ("input", "output_size", "return_indices"),
            lambda a, out: adapt(a["output_size"], (a["input"],), a["return_indices"]) if is_ref(a["input"]) else None,
            {"return_indices": False})})


@register
class AdaptiveMaxPool1d(_AdaptiveMaxNd):
    """Adaptive max pooling of a sequence to a fixed length (torch.nn.AdaptiveMaxPool1d; torch's windows
    [floor(i*L/o), ceil((i+1)*L/o))). Other ops: (window elements - 1) comparisons per output. No window: a (C, L)
    sequence has no height and width."""

    name = "adaptive_maxpool1d"
    spatial = 1
    examples = (Example({"output_size": 3}, ((2, 7),)), Example({"output_size": 4}, ((3, 8),)),
                Example({"output_size": 1}, ((2, 5),)))
    aliases = ("adaptive_max_pool1d",)
    torch_class = "nn.AdaptiveMaxPool1d"
    keras_class = "AdaptiveMaxPooling1D"
    torch_calls = _adaptive_max_calls("adaptive_maxpool1d", 1)
    onnx_reads = {"archviz::AdaptiveMaxPool1d": _read_adaptive_nd("adaptive_maxpool1d", 1)}  # archviz's function
    args = (Arg("output_size", ArgKind.SIZES, doc="the output length"),)


@register
class AdaptiveMaxPool3d(_AdaptiveMaxNd):
    """Adaptive max pooling of a volume to a fixed size (torch.nn.AdaptiveMaxPool3d; torch's windows per axis).
    Other ops: (window elements - 1) comparisons per output. Window: its height and width axes, as
    adaptive_avgpool2d's."""

    name = "adaptive_maxpool3d"
    widens = ON_CPU  # in torch's CPU autocast float32 list, not CUDA's
    spatial = 3
    examples = (Example({"output_size": 2}, ((2, 4, 7, 8),)), Example({"output_size": [1, 2, 3]}, ((3, 3, 8, 8),)),
                Example({"output_size": 1}, ((2, 3, 4, 5),)))
    aliases = ("adaptive_max_pool3d",)
    torch_class = "nn.AdaptiveMaxPool3d"
    keras_class = "AdaptiveMaxPooling3D"
    torch_calls = _adaptive_max_calls("adaptive_maxpool3d", 3)
    onnx_reads = {"archviz::AdaptiveMaxPool3d": _read_adaptive_nd("adaptive_maxpool3d", 3)}  # archviz's function
    args = (Arg("output_size", ArgKind.SIZES, doc="int or [d, h, w]"),)


# --- reductions -------------------------------------------------------------------------------------------------------

def _reduce_module() -> dict[str, type]:
    import torch
    from torch import nn

    class Reduce(nn.Module):
        """torch.mean, torch.sum or torch.amax of x over `dim` (torch counting, the batch is dim 0)."""

        def __init__(self, mode: str, dim, keepdim: bool):
            super().__init__()
            self.mode, self.dim, self.keepdim = mode, tuple(dim), keepdim

        def forward(self, x):
            return getattr(torch, self.mode)(x, self.dim, self.keepdim)

        def extra_repr(self) -> str:
            return f"mode={self.mode}, dim={self.dim}, keepdim={self.keepdim}"

    return {"Reduce": Reduce}


__getattr__ = lazy_torch_classes(__name__, ("Reduce",), _reduce_module)  # made on first use, pickled by name


class _Reduce(NoMacs, Op):
    """What the reductions share: the dims (torch counting, the batch is dim 0, which is never reduced), keepdim,
    the shape, the window and ONNX Reduce* with axes as an input (opset 18+)."""

    kind = OpKind.POOL
    mode = ""  # torch's function: mean, sum or amax
    onnx_type = ""
    verb = ""  # what each reduced element costs after the first
    args = (
        Arg("dim", ArgKind.SHAPE, aliases=("dims", "axes", "axis"),
            doc="the dims reduced, torch counting (the batch is dim 0 and is never reduced), e.g. [2, 3]"),
        Arg("keepdim", ArgKind.BOOL, False, aliases=("keepdims",), doc="keep each reduced dim as size 1"),
    )

    def resolve(self, attrs, in_shapes):
        rank, dims = len(in_shapes[0]), tuple(attrs["dim"])
        if any(d > rank for d in dims) or len(set(dims)) != len(dims):
            raise ShapeError(f"dim {list(dims)} must be distinct dims from 1 to {rank} of a {fmt_shape(in_shapes[0])} "
                             "input (the batch is dim 0)")
        return {**attrs, "dim": tuple(sorted(dims))}

    def infer_shape(self, attrs, in_shapes):
        dims = set(attrs["dim"])
        if attrs["keepdim"]:
            return tuple(1 if i + 1 in dims else size for i, size in enumerate(in_shapes[0]))
        return tuple(size for i, size in enumerate(in_shapes[0]) if i + 1 not in dims)

    def reduced(self, attrs, in_shapes) -> int:
        """Elements reduced into each output."""
        return math.prod(in_shapes[0][d - 1] for d in attrs["dim"])

    def outputs(self, attrs, in_shapes) -> int:
        return numel(in_shapes[0]) // self.reduced(attrs, in_shapes)

    def window(self, attrs, in_shapes):
        """Over the map's (height, width), the last two dims of a C x H x W (or C x D x H x W) input: a reduced axis
        is one window as long as the axis (stride the same), a kept one a window of 1; none where neither is
        reduced (each output reads the positions it sits at) or the input has no map."""
        shape = in_shapes[0]
        if len(shape) < 3:
            return None
        axes = (len(shape) - 1, len(shape))
        if not any(a in attrs["dim"] for a in axes):
            return None
        kernel = tuple(shape[a - 1] if a in attrs["dim"] else 1 for a in axes)
        return Window(kernel, kernel, (0, 0))

    def explain(self, attrs, in_shapes, out_shape):
        dims = ", ".join(map(str, attrs["dim"]))
        how = "kept as 1" if attrs["keepdim"] else "removed"
        return [
            Step("output shape", f"{fmt_shape(in_shapes[0])} reduced over dim {dims} (batch is dim 0), {how}",
                 fmt_shape(out_shape)),
            Step("elements per output", " x ".join(str(in_shapes[0][d - 1]) for d in attrs["dim"]),
                 fmt_int(self.reduced(attrs, in_shapes))),
            Step("params", "a reduction has no weights", 0),
        ]

    def other_ops(self, attrs, in_shapes, out_shape):
        return self.outputs(attrs, in_shapes) * (self.reduced(attrs, in_shapes) - 1)

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        n, outputs = self.reduced(attrs, in_shapes), self.outputs(attrs, in_shapes)
        return Step("other ops", f"{outputs:,} outputs x ({n} - 1) {self.verb}",
                    fmt_int(self.other_ops(attrs, in_shapes, out_shape)))

    def summary(self, attrs):
        return f"dim {','.join(map(str, attrs['dim']))}" + (" keepdim" if attrs["keepdim"] else "")

    def write_onnx(self, e, node, x):
        axes = e.constant(f"{node.name}/axes", list(node.attrs["dim"]), "int64")
        e.add(self.onnx_type, [x[0], axes], node.name, node.name, keepdims=int(node.attrs["keepdim"]))

    def build_torch(self, attrs, in_shapes):
        return __getattr__("Reduce")(self.mode, attrs["dim"], attrs["keepdim"])


_SUM = Signature(("input", "dim", "keepdim", "dtype"), _reduction("reduce_sum"), {"dim": None, "keepdim": False,
                                                                                  "dtype": None})
_AMAX = Signature(("input", "dim", "keepdim"), _reduction("reduce_max"), {"dim": (), "keepdim": False})


@register
class ReduceMean(SavesNothing, _Reduce):
    """The mean over some non-batch dims (torch.mean / Tensor.mean, ONNX ReduceMean). A mean over the height and
    width of a C x H x W map is global_avgpool2d, which torch.mean and ReduceMean of those dims trace and read as.

    Other ops: (elements reduced - 1) adds and one divide per output, i.e. one per input element.
    """

    reduction = Reduction.MEAN

    name = "reduce_mean"
    takes_folded_batch = True
    mode, onnx_type, verb = "mean", "ReduceMean", "adds, + 1 divide each"
    examples = (Example({"dim": [1]}, ((4, 5, 6),)), Example({"dim": [3], "keepdim": True}, ((3, 5, 6),)),
                Example({"dim": [2, 3], "keepdim": True}, ((2, 3, 4, 5),)), Example({"dim": [2]}, ((3, 7),)),
                Example({"dim": [1, 2, 3]}, ((3, 4, 5),)))
    aliases = ("reducemean",)
    torch_class = "torch.mean"
    keras_class = "Lambda"
    # torch.mean and Tensor.mean are global_avgpool2d's entry; its adapter hands other dims to this op (one callable,
    # one op), as its ONNX ReduceMean reader does

    def other_ops(self, attrs, in_shapes, out_shape):
        return self.outputs(attrs, in_shapes) * self.reduced(attrs, in_shapes)

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        n, outputs = self.reduced(attrs, in_shapes), self.outputs(attrs, in_shapes)
        return Step("other ops", f"{outputs:,} outputs x (({n} - 1) adds + 1 divide)",
                    fmt_int(self.other_ops(attrs, in_shapes, out_shape)))


@register
class ReduceSum(SavesNothing, _Reduce):
    """The sum over some non-batch dims (torch.sum / Tensor.sum, ONNX ReduceSum).

    Other ops: elements reduced - 1 adds per output.
    """

    reduction = Reduction.SUM

    name = "reduce_sum"
    widens = ON_CUDA  # in torch's CUDA autocast float32 list, not the CPU's
    takes_folded_batch = True
    mode, onnx_type, verb = "sum", "ReduceSum", "adds"
    examples = (Example({"dim": [1]}, ((4, 5, 6),)), Example({"dim": [2, 3], "keepdim": True}, ((3, 5, 6),)),
                Example({"dim": [3]}, ((2, 3, 4, 5),)), Example({"dim": [1], "keepdim": True}, ((6,),)))
    aliases = ("reducesum",)
    torch_class = "torch.sum"
    keras_class = "Lambda"
    torch_calls = TorchCalls(functions={"torch.sum": _SUM, "Tensor.sum": _SUM})
    onnx_reads = {"ReduceSum": _read_reduce("reduce_sum")}


@register
class ReduceMax(_Reduce):
    """The maximum over some non-batch dims (torch.amax / Tensor.amax, ONNX ReduceMax); torch.max with a dim also
    returns the indices and is not matched.

    Other ops: elements reduced - 1 comparisons per output.
    """

    reduction = Reduction.MAX

    def saved(self, attrs, in_shapes, out_shape):
        """The input and the maxima (its gradient goes where the input equals them)."""
        return Saved(inputs=(0,), output=True)

    name = "reduce_max"
    takes_folded_batch = True
    mode, onnx_type, verb = "amax", "ReduceMax", "comparisons"
    examples = (Example({"dim": [1]}, ((4, 5, 6),)), Example({"dim": [2, 3], "keepdim": True}, ((3, 5, 6),)),
                Example({"dim": [2], "keepdim": True}, ((3, 5, 6),)), Example({"dim": [2, 4]}, ((2, 3, 4, 5),)))
    aliases = ("reducemax", "amax")
    torch_class = "torch.amax"
    keras_class = "Lambda"
    torch_calls = TorchCalls(functions={"torch.amax": _AMAX, "Tensor.amax": _AMAX})
    onnx_reads = {"ReduceMax": _read_reduce("reduce_max")}
