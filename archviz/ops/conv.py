"""Convolutions: torch.nn.Conv1d/2d/3d and ConvTranspose1d/2d/3d semantics (Dumoulin & Visin 2016, "A guide to
convolution arithmetic")."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import ClassVar

from archviz.errors import ShapeError
from archviz.ops.base import (
    AXES, INPUT_SAVED, Arg, ArgKind, Example, Kept, Op, OpKind, Saved, SavesInput, SlidingAxis, Step, Weight, Window,
    check_window_fits, compact, fmt_int, fmt_shape, numel, pair, require_rank, TorchinfoMacs,
)
from archviz.ops.interop import (
    Const, Mapped, NotRepresentable, Signature, TorchCalls, is_ref, onnx_pads, onnx_pair, onnx_symmetric,
)
from archviz.ops.registry import register

LAYOUTS = {1: "C x L", 2: "C x H x W", 3: "C x D x H x W"}


def sizes(value, n: int) -> tuple[int, ...]:
    """An int or a per-axis list as one value per spatial axis: 3 -> (3, 3, 3) for n = 3."""
    return (value,) * n if isinstance(value, int) else tuple(value)


def compact_sizes(values):
    """One int where every axis has the same value ((3, 3, 3) -> 3), else the tuple: the form a spec writes."""
    values = tuple(int(v) for v in values)
    return values[0] if len(set(values)) == 1 else values


def sizes_text(value) -> str:
    """'3' for 3 or (3, 3, 3), '3x1x1' for (3, 1, 1)."""
    if isinstance(value, str):
        return value
    value = compact_sizes(sizes(value, 1))
    return str(value) if isinstance(value, int) else "x".join(map(str, value))


def conv_axes(attrs, in_shape) -> list[SlidingAxis]:
    """Sliding axes for every spatial dim of a (C, *spatial) input (height and width for conv2d); 'same' pads
    d*(k-1) in total, the extra pixel after (as torch does)."""
    n = len(in_shape) - 1
    kernel, stride, dilation = sizes(attrs["kernel_size"], n), sizes(attrs["stride"], n), sizes(attrs["dilation"], n)
    padding = attrs["padding"]
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return [SlidingAxis(in_shape[1 + i], kernel[i], stride[i], totals[i] // 2, dilation[i],
                            padding_after=totals[i] - totals[i] // 2) for i in range(n)]
    pads = (0,) * n if padding == "valid" else sizes(padding, n)
    return [SlidingAxis(in_shape[1 + i], kernel[i], stride[i], pads[i], dilation[i], padding_after=pads[i])
            for i in range(n)]


def conv_scratch(attrs, in_shape) -> tuple[Kept, ...]:
    """The input padded by the odd pixel of 'same' padding with an even kernel (see conv_saved), held while the
    convolution runs."""
    return conv_saved(attrs, in_shape).made


def conv_saved(attrs, in_shape) -> Saved:
    """A convolution keeps its input for the weight gradient; with 'same' padding uneven on some axis (an even
    kernel), torch pads the input by the odd pixel first and keeps that padded copy instead (the even part stays
    the convolution's own padding)."""
    axes = conv_axes(attrs, in_shape)
    if all(axis.padding == axis.padding_after for axis in axes):
        return INPUT_SAVED
    padded = [axis.size + axis.padding_after - axis.padding for axis in axes]
    return Saved(made=(Kept(in_shape[0] * numel(padded)),))


def checked_channels(op: Op, attrs, in_shape, n: int) -> int:
    """The input's channels, checked: the input has n spatial axes, in_channels (when given) matches, and both
    channel counts divide into the groups."""
    require_rank(op, in_shape, n + 1, LAYOUTS[n])
    channels = in_shape[0]
    if attrs["in_channels"] is not None and attrs["in_channels"] != channels:
        raise ShapeError(f"in_channels is {attrs['in_channels']} but the input has {channels} channels")
    for side, count in (("in_channels", channels), ("out_channels", attrs["out_channels"])):
        if count % attrs["groups"]:
            raise ShapeError(f"{side} {count} is not divisible by groups {attrs['groups']}")
    return channels


def _conv_module(m, refs):
    if m.padding_mode != "zeros":
        return None
    return Mapped("conv2d", {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": m.kernel_size,
        "stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups,
        "bias": m.bias is not None}, refs)


def _read_conv(r):
    """An ONNX Conv as conv1d, conv2d or conv3d, by the rank of its weight (out, in/groups, *kernel)."""
    weight = r.stored_shape(1, "weight")
    n = len(weight) - 2
    if n not in AXES:
        raise NotRepresentable(f"a {n}-d convolution (archviz has conv1d, conv2d and conv3d)")
    spatial = r.shape(r.activation(), n + 2)[2:]
    kernel = list(r.attrs.get("kernel_shape", weight[2:]))
    strides, dilations = list(r.attrs.get("strides", [1] * n)), list(r.attrs.get("dilations", [1] * n))
    before, after = onnx_pads(r.attrs, spatial, kernel, strides, dilations)
    note = None
    totals = [d * (k - 1) for d, k in zip(dilations, kernel)]
    if before != after and strides == [1] * n and all((b, a) == (t // 2, t - t // 2)
                                                     for b, a, t in zip(before, after, totals)):
        padding = "same"  # torch's padding="same": the odd pixel after
    elif n == 2:
        padding, note = onnx_symmetric(before, after, spatial, kernel, strides, dilations)
    elif before == after:
        padding = compact_sizes(before)
    else:
        raise NotRepresentable(f"its asymmetric pads {before} before and {after} after (torch's Conv{n}d pads both "
                               "sides alike)")
    form = onnx_pair if n == 2 else compact_sizes
    args = {"out_channels": weight[0], "kernel_size": form(kernel), "stride": form(strides),
            "padding": padding, "dilation": form(dilations), "groups": r.attrs.get("group", 1),
            "bias": r.has_input(2)}
    return r.with_bias(f"conv{n}d", args, (1, weight[0]) + (1,) * n, note)


# --- functional forms: F.conv2d(x, weight, bias, ...) with the weight (and bias) the model's own ---------------------

def _stored(value, shape) -> tuple | None:
    """The model parameters a function's weight or bias is (or is computed from, as weight standardisation computes
    F.conv2d's weight from self.weight), where that tensor has `shape` and is made from parameters of exactly its
    size: the op's params then count them. None otherwise (a buffer, a constant made in forward, a different size)."""
    from torch import nn

    if not isinstance(value, Const) or value.value is None or tuple(value.value.shape) != tuple(shape):
        return None
    tensors = tuple({id(t): t for t in value.tensors}.values())
    if not tensors or not all(isinstance(t, nn.Parameter) for t in tensors):
        return None
    return tensors if sum(t.numel() for t in tensors) == numel(shape) else None


def _spatial(value, n: int):
    """A function's stride/padding/dilation as the op holds it: 'same', one int, or one per axis."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        return None
    values = sizes(value, n) if isinstance(value, int) else tuple(value)
    if len(values) == 1:
        values *= n
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    return values if n == 2 else compact_sizes(values)


def _weighted(a, n: int, out_of) -> tuple | None:
    """(the weight's shape, the parameters claimed) of a functional convolution call, or None where it is not one:
    the input traced, the weight (and bias) the model's parameters, the weight of rank n + 2."""
    x, weight, bias = a["input"], a["weight"], a["bias"]
    if not is_ref(x) or len(x.shape) != n + 1 or not isinstance(weight, Const) or weight.value is None:
        return None
    shape = tuple(weight.value.shape)
    if len(shape) != n + 2:
        return None
    claims = _stored(weight, shape)
    if bias is not None:
        bias_claims = _stored(bias, (out_of(shape),))
        claims = None if claims is None or bias_claims is None else claims + bias_claims
    return None if claims is None else (shape, claims)


def _conv_function(n: int):
    def build(a, out):
        found = _weighted(a, n, lambda shape: shape[0])
        groups = a["groups"]
        if found is None or not isinstance(groups, int) or found[0][1] * groups != a["input"].shape[0]:
            return None
        (shape, claims), form = found, (tuple if n == 2 else compact_sizes)
        attrs = {"out_channels": shape[0], "kernel_size": form(shape[2:]), "groups": groups,
                 "bias": a["bias"] is not None,
                 **{name: _spatial(a[name], n) for name in ("stride", "padding", "dilation")}}
        if any(attrs[name] is None for name in ("stride", "padding", "dilation")):
            return None
        return Mapped(f"conv{n}d", attrs, (a["input"],), claims)

    signature = Signature(("input", "weight", "bias", "stride", "padding", "dilation", "groups"), build,
                          {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    return {f"torch.nn.functional.conv{n}d": signature, f"torch.conv{n}d": signature}


def _conv_transpose_function(n: int):
    names = ("stride", "padding", "output_padding", "dilation")

    def build(a, out):
        groups = a["groups"]
        if not isinstance(groups, int):
            return None
        found = _weighted(a, n, lambda shape: shape[1] * groups)
        if found is None or found[0][0] != a["input"].shape[0]:
            return None
        (shape, claims), form = found, (tuple if n == 2 else compact_sizes)
        attrs = {"out_channels": shape[1] * groups, "kernel_size": form(shape[2:]), "groups": groups,
                 "bias": a["bias"] is not None, **{name: _spatial(a[name], n) for name in names}}
        if any(attrs[name] is None or isinstance(attrs[name], str) for name in names):
            return None
        return Mapped(f"conv_transpose{n}d", attrs, (a["input"],), claims)

    signature = Signature(("input", "weight", "bias", *names[:3], "groups", "dilation"), build,
                          {"bias": None, "stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "dilation": 1})
    return {f"torch.nn.functional.conv_transpose{n}d": signature, f"torch.conv_transpose{n}d": signature}


class _BiasAdds:
    """A convolution's other ops: one bias add per output element where it has a bias, none without."""

    def other_ops(self, attrs, in_shapes, out_shape):
        return numel(out_shape) if attrs["bias"] else 0

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        if not attrs["bias"]:
            return Step("other ops", "no bias, nothing to add", 0)
        return Step("other ops", f"one bias add per output: {fmt_shape(out_shape)}", fmt_int(numel(out_shape)))


@register
class Conv2d(_BiasAdds, Op):
    """2-D convolution.

    out = floor((W - d*(F-1) - 1 + 2P) / S) + 1 per spatial axis; with d = 1 this is the course's ([W-F+2P]/S)+1.
    params = F_h * F_w * (C_in / groups) * C_out + C_out (bias).
    MACs = H_out * W_out * C_out * F_h * F_w * (C_in / groups); the bias is not a MAC.
    Other ops: one bias add per output element.
    """

    autocasts = True

    def scratch(self, attrs, in_shapes, out_shape):
        return conv_scratch(attrs, in_shapes[0])

    name = "conv2d"
    examples = (Example({"out_channels": 4, "kernel_size": 3}, ((3, 9, 8),)),
                Example({"out_channels": 6, "kernel_size": [3, 2], "stride": 2, "padding": 1, "groups": 3,
                         "bias": False},
                        ((3, 9, 8),)),
                Example({"out_channels": 2, "kernel_size": 3, "dilation": 2, "padding": "same"}, ((2, 9, 9),)),
                Example({"out_channels": 2, "kernel_size": 2, "padding": "same"}, ((1, 7, 6),)),
                Example({"out_channels": 2, "kernel_size": [3, 1], "padding": [1, 0], "stride": [1, 2]}, ((2, 6, 7),)))
    kind = OpKind.CONV
    aliases = ("conv",)
    torch_class = "nn.Conv2d"
    torch_calls = TorchCalls(modules={"torch.nn.Conv2d": _conv_module}, functions=_conv_function(2))
    onnx_reads = {"Conv": _read_conv}  # and a following Add of a stored bias
    keras_class = "Conv2D"
    draws_kernels = True
    torchinfo_macs = TorchinfoMacs.CONV
    args = (
        Arg("out_channels", ArgKind.INT, aliases=("filters", "out"), doc="number of filters"),
        Arg("kernel_size", ArgKind.PAIR, aliases=("kernel", "k"), doc="filter size: int or [h, w]"),
        Arg("stride", ArgKind.PAIR, 1, aliases=("s",)),
        Arg("padding", ArgKind.PADDING, 0, aliases=("p", "pad"), doc="int, [h, w], 'same' or 'valid'"),
        Arg("dilation", ArgKind.PAIR, 1, aliases=("d",)),
        Arg("groups", ArgKind.INT, 1, aliases=("g",)),
        Arg("bias", ArgKind.BOOL, True),
        Arg("in_channels", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )

    def saved(self, attrs, in_shapes, out_shape):
        return conv_saved(attrs, in_shapes[0])

    def resolve(self, attrs, in_shapes):
        channels = checked_channels(self, attrs, in_shapes[0], 2)
        if attrs["padding"] == "same" and pair(attrs["stride"]) != (1, 1):
            raise ShapeError(f"padding 'same' needs stride 1 (as in torch), got stride {compact(attrs['stride'])}")
        return {**attrs, "in_channels": channels}

    def infer_shape(self, attrs, in_shapes):
        """floor((W + pads - extent) / S) + 1 per axis, as conv_axes' SlidingAxis.out computes it (directly here:
        every source validates every layer); conv_axes says which side does not fit."""
        window = self.window(attrs, in_shapes)
        sides = []
        for size, extent, stride, before in zip(in_shapes[0][1:], window.kernel, window.stride, window.padding):
            after = extent - 1 - before if attrs["padding"] == "same" else before
            span = size + before + after - extent
            sides.append(span // stride + 1 if span >= 0 else 0)
        if min(sides) <= 0:
            check_window_fits(self, conv_axes(attrs, in_shapes[0]), in_shapes[0])
        return (attrs["out_channels"], *sides)

    def weight_count(self, attrs) -> int:
        kh, kw = pair(attrs["kernel_size"])
        return kh * kw * (attrs["in_channels"] // attrs["groups"]) * attrs["out_channels"]

    def weights(self, attrs, in_shapes):
        kh, kw = pair(attrs["kernel_size"])
        per_group, out = attrs["in_channels"] // attrs["groups"], attrs["out_channels"]
        kernel = Weight("weight", (out, per_group, kh, kw), fan_in=per_group * kh * kw)
        return (kernel, Weight("bias", (out,), fan_in=kernel.fan_in)) if attrs["bias"] else (kernel,)

    def params(self, attrs, in_shapes):  # the formula, kept apart from weights(): analysis calls it for every layer
        return self.weight_count(attrs) + (attrs["out_channels"] if attrs["bias"] else 0)

    def macs(self, attrs, in_shapes, out_shape):
        kh, kw = pair(attrs["kernel_size"])
        return numel(out_shape) * kh * kw * (attrs["in_channels"] // attrs["groups"])

    def window(self, attrs, in_shapes):
        """conv_axes' extents, strides and leading pads, computed directly: analysis asks for every layer."""
        (kh, kw), (dh, dw) = pair(attrs["kernel_size"]), pair(attrs["dilation"])
        extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        padding = attrs["padding"]
        if padding == "same":  # d*(k-1) in total, the odd pixel after
            pads = ((extent[0] - 1) // 2, (extent[1] - 1) // 2)
        else:
            pads = (0, 0) if padding == "valid" else pair(padding)
        return Window(extent, pair(attrs["stride"]), pads)

    def explain(self, attrs, in_shapes, out_shape):
        axes = conv_axes(attrs, in_shapes[0])
        kh, kw = pair(attrs["kernel_size"])
        c_in, c_out, groups = attrs["in_channels"], attrs["out_channels"], attrs["groups"]
        per_group = f"{c_in}/{groups}" if groups > 1 else f"{c_in}"
        bias = " + 1" if attrs["bias"] else ""
        steps = [
            Step("output height", axes[0].arithmetic(), axes[0].out),
            Step("output width", axes[1].arithmetic(), axes[1].out),
            Step("output shape", f"{c_out} filters x {axes[0].out} x {axes[1].out}", fmt_shape(out_shape)),
            Step("params", f"({kh}*{kw}*{per_group}{bias})*{c_out}", fmt_int(self.params(attrs, in_shapes))),
            Step(
                "MACs",
                f"{out_shape[1]}*{out_shape[2]}*{c_out} outputs x {kh}*{kw}*{per_group} each",
                fmt_int(self.macs(attrs, in_shapes, out_shape)),
            ),
        ]
        return steps

    def summary(self, attrs):
        kh, kw = pair(attrs["kernel_size"])
        text = f"{attrs['out_channels']} {kh}x{kw}"
        if pair(attrs["stride"]) != (1, 1):
            text += f" s{compact(attrs['stride'])}"
        if attrs["padding"] not in (0, (0, 0), "valid"):
            text += f" p{compact(attrs['padding'])}"
        if pair(attrs["dilation"]) != (1, 1):
            text += f" d{compact(attrs['dilation'])}"
        if attrs["groups"] != 1:
            text += f" g{attrs['groups']}"
        return text

    def write_onnx(self, e, node, x):
        a = node.attrs
        axes = conv_axes(a, node.in_shapes[0])
        after = [ax.padding if ax.padding_after is None else ax.padding_after for ax in axes]
        inputs = [x[0], e.weight(node, "weight")] + ([e.weight(node, "bias")] if a["bias"] else [])
        e.add("Conv", inputs, node.name, node.name, kernel_shape=list(pair(a["kernel_size"])),
              strides=list(pair(a["stride"])), dilations=list(pair(a["dilation"])), group=a["groups"],
              pads=[axes[0].padding, axes[1].padding, *after])

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.Conv2d(
            attrs["in_channels"], attrs["out_channels"], pair(attrs["kernel_size"]), stride=pair(attrs["stride"]),
            padding=attrs["padding"] if isinstance(attrs["padding"], str) else pair(attrs["padding"]),
            dilation=pair(attrs["dilation"]), groups=attrs["groups"], bias=attrs["bias"],
        )


# --- 1-d and 3-d convolutions -----------------------------------------------------------------------------------

def _conv_module_nd(m, refs):
    """nn.Conv1d / nn.Conv3d as conv1d / conv3d, each per-axis tuple in the spec's form (one int where all agree)."""
    if m.padding_mode != "zeros":
        return None
    n = len(m.kernel_size)
    padding = m.padding if isinstance(m.padding, str) else compact_sizes(m.padding)
    return Mapped(f"conv{n}d", {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": compact_sizes(m.kernel_size),
        "stride": compact_sizes(m.stride), "padding": padding, "dilation": compact_sizes(m.dilation),
        "groups": m.groups, "bias": m.bias is not None}, refs)


def _per_axis(op: Op, attrs, name: str, n: int) -> None:
    value = attrs[name]
    if isinstance(value, tuple) and len(value) != n:
        raise ShapeError(f"{name} {list(value)} has {len(value)} values, not one per spatial axis of a "
                         f"{LAYOUTS[n]} input ({n}: {', '.join(AXES[n])})")


class _ConvNd(_BiasAdds, Op):
    """What conv1d and conv3d share: torch's ConvNd arguments, one value per spatial axis or one for all."""

    autocasts = True

    def scratch(self, attrs, in_shapes, out_shape):
        return conv_scratch(attrs, in_shapes[0])

    dims: ClassVar[int]
    kind = OpKind.CONV
    torchinfo_macs = TorchinfoMacs.CONV
    args = (
        Arg("out_channels", ArgKind.INT, aliases=("filters", "out"), doc="number of filters"),
        Arg("kernel_size", ArgKind.SIZES, aliases=("kernel", "k"), doc="filter size: int or one per spatial axis"),
        Arg("stride", ArgKind.SIZES, 1, aliases=("s",)),
        Arg("padding", ArgKind.PADDING_SIZES, 0, aliases=("p", "pad"),
            doc="int, one per spatial axis, 'same' or 'valid'"),
        Arg("dilation", ArgKind.SIZES, 1, aliases=("d",)),
        Arg("groups", ArgKind.INT, 1, aliases=("g",)),
        Arg("bias", ArgKind.BOOL, True),
        Arg("in_channels", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )

    def saved(self, attrs, in_shapes, out_shape):
        return conv_saved(attrs, in_shapes[0])

    def resolve(self, attrs, in_shapes):
        n = self.dims
        channels = checked_channels(self, attrs, in_shapes[0], n)
        for name in ("kernel_size", "stride", "dilation", "padding"):
            _per_axis(self, attrs, name, n)
        if attrs["padding"] == "same" and sizes(attrs["stride"], n) != (1,) * n:
            raise ShapeError(f"padding 'same' needs stride 1 (as in torch), got stride {sizes_text(attrs['stride'])}")
        resolved = {**attrs, "in_channels": channels,
                    **{name: compact_sizes(sizes(attrs[name], n)) for name in ("kernel_size", "stride", "dilation")}}
        # the padding in one form: 'valid' is 0, and 'same' the padding it gives where that is alike on both sides
        axes = conv_axes(resolved, in_shapes[0])
        if attrs["padding"] != "same" or all(a.padding_after == a.padding for a in axes):
            resolved["padding"] = compact_sizes(a.padding for a in axes)
        return resolved

    def infer_shape(self, attrs, in_shapes):
        axes = conv_axes(attrs, in_shapes[0])
        check_window_fits(self, axes, in_shapes[0])
        return (attrs["out_channels"], *(a.out for a in axes))

    def kernel(self, attrs) -> tuple[int, ...]:
        return sizes(attrs["kernel_size"], self.dims)

    def weights(self, attrs, in_shapes):
        kernel = self.kernel(attrs)
        per_group, out = attrs["in_channels"] // attrs["groups"], attrs["out_channels"]
        weight = Weight("weight", (out, per_group, *kernel), fan_in=per_group * math.prod(kernel))
        return (weight, Weight("bias", (out,), fan_in=weight.fan_in)) if attrs["bias"] else (weight,)

    def params(self, attrs, in_shapes):
        weights = math.prod(self.kernel(attrs)) * (attrs["in_channels"] // attrs["groups"]) * attrs["out_channels"]
        return weights + (attrs["out_channels"] if attrs["bias"] else 0)

    def macs(self, attrs, in_shapes, out_shape):
        return numel(out_shape) * math.prod(self.kernel(attrs)) * (attrs["in_channels"] // attrs["groups"])

    def explain(self, attrs, in_shapes, out_shape):
        axes = conv_axes(attrs, in_shapes[0])
        kernel = "*".join(map(str, self.kernel(attrs)))
        c_in, c_out, groups = attrs["in_channels"], attrs["out_channels"], attrs["groups"]
        per_group = f"{c_in}/{groups}" if groups > 1 else f"{c_in}"
        bias = " + 1" if attrs["bias"] else ""
        steps = [Step(f"output {name}", axis.arithmetic(), axis.out) for name, axis in zip(AXES[self.dims], axes)]
        return steps + [
            Step("output shape", f"{c_out} filters x {' x '.join(str(a.out) for a in axes)}", fmt_shape(out_shape)),
            Step("params", f"({kernel}*{per_group}{bias})*{c_out}", fmt_int(self.params(attrs, in_shapes))),
            Step("MACs", f"{'*'.join(map(str, out_shape[1:]))}*{c_out} outputs x {kernel}*{per_group} each",
                 fmt_int(self.macs(attrs, in_shapes, out_shape))),
        ]

    def summary(self, attrs):
        text = f"{attrs['out_channels']} {'x'.join(map(str, self.kernel(attrs)))}"
        n = self.dims
        if sizes(attrs["stride"], n) != (1,) * n:
            text += f" s{sizes_text(attrs['stride'])}"
        if attrs["padding"] == "same" or sizes(attrs["padding"], n) != (0,) * n:
            text += f" p{sizes_text(attrs['padding'])}"
        if sizes(attrs["dilation"], n) != (1,) * n:
            text += f" d{sizes_text(attrs['dilation'])}"
        if attrs["groups"] != 1:
            text += f" g{attrs['groups']}"
        return text

    def write_onnx(self, e, node, x):
        a, n = node.attrs, self.dims
        axes = conv_axes(a, node.in_shapes[0])
        inputs = [x[0], e.weight(node, "weight")] + ([e.weight(node, "bias")] if a["bias"] else [])
        e.add("Conv", inputs, node.name, node.name, kernel_shape=list(self.kernel(a)),
              strides=list(sizes(a["stride"], n)), dilations=list(sizes(a["dilation"], n)), group=a["groups"],
              pads=[ax.padding for ax in axes] + [ax.padding_after for ax in axes])

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        n = self.dims
        padding = attrs["padding"] if isinstance(attrs["padding"], str) else sizes(attrs["padding"], n)
        return getattr(nn, f"Conv{n}d")(
            attrs["in_channels"], attrs["out_channels"], self.kernel(attrs), stride=sizes(attrs["stride"], n),
            padding=padding, dilation=sizes(attrs["dilation"], n), groups=attrs["groups"], bias=attrs["bias"],
        )


@register
class Conv1d(_ConvNd):
    """1-D convolution over a (C, L) sequence (torch.nn.Conv1d).

    L_out = floor((L - d*(F-1) - 1 + 2P) / S) + 1, as each axis of conv2d.
    params = F * (C_in / groups) * C_out + C_out (bias).
    MACs = L_out * C_out * F * (C_in / groups); the bias is not a MAC.
    Other ops: one bias add per output element.
    Window: none declared: archviz's receptive field works on (height, width); a length-only field is not tracked.
    """

    name = "conv1d"
    dims = 1
    torch_class = "nn.Conv1d"
    keras_class = "Conv1D"
    torch_calls = TorchCalls(modules={"torch.nn.Conv1d": _conv_module_nd}, functions=_conv_function(1))
    examples = (Example({"out_channels": 4, "kernel_size": 3}, ((3, 10),)),
                Example({"out_channels": 6, "kernel_size": [4], "stride": 2, "padding": 1, "groups": 3,
                         "bias": False}, ((3, 11),)),
                Example({"out_channels": 2, "kernel_size": 3, "dilation": 2, "padding": "same"}, ((2, 9),)),
                Example({"out_channels": 2, "kernel_size": 2, "padding": "same"}, ((1, 7),)),
                Example({"out_channels": 2, "kernel_size": 3, "padding": "valid", "stride": 3}, ((2, 10),)))

    def window(self, attrs, in_shapes):
        """None: the receptive field is tracked over (height, width), and a (C, L) sequence has neither."""
        return None


@register
class Conv3d(_ConvNd):
    """3-D convolution over a (C, D, H, W) volume or clip (torch.nn.Conv3d).

    out = floor((W - d*(F-1) - 1 + 2P) / S) + 1 per spatial axis (depth, height, width), as each axis of conv2d.
    params = F_d * F_h * F_w * (C_in / groups) * C_out + C_out (bias).
    MACs = D_out * H_out * W_out * C_out * F_d * F_h * F_w * (C_in / groups); the bias is not a MAC.
    Other ops: one bias add per output element.
    Window: the height and width axes' (extent d*(F-1)+1, stride, padding), exactly as conv2d's; the receptive field
    is tracked over (height, width), so the depth's is not.
    """

    name = "conv3d"
    dims = 3
    torch_class = "nn.Conv3d"
    keras_class = "Conv3D"
    torch_calls = TorchCalls(modules={"torch.nn.Conv3d": _conv_module_nd}, functions=_conv_function(3))
    examples = (Example({"out_channels": 4, "kernel_size": 3}, ((3, 5, 6, 7),)),
                Example({"out_channels": 6, "kernel_size": [3, 2, 1], "stride": [1, 2, 2], "padding": [1, 0, 1],
                         "groups": 3, "bias": False}, ((3, 4, 9, 8),)),
                Example({"out_channels": 2, "kernel_size": 3, "dilation": [1, 2, 1], "padding": "same"},
                        ((2, 5, 9, 9),)),
                Example({"out_channels": 2, "kernel_size": [2, 3, 2], "padding": "same"}, ((1, 4, 7, 6),)))

    def window(self, attrs, in_shapes):
        axes = conv_axes(attrs, in_shapes[0])[1:]
        return Window(tuple(a.extent for a in axes), tuple(a.stride for a in axes), tuple(a.padding for a in axes))


# --- transposed convolutions ----------------------------------------------------------------------------------------

def _transpose_module(m, refs):
    """nn.ConvTranspose{1,2,3}d as conv_transpose{1,2,3}d (an output_size given at the call is another matter: the
    traced call then passes it, and the output shape the tracer saw is checked against the formula)."""
    if m.padding_mode != "zeros":
        return None
    return Mapped(f"conv_transpose{len(m.kernel_size)}d", {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": compact_sizes(m.kernel_size),
        "stride": compact_sizes(m.stride), "padding": compact_sizes(m.padding),
        "output_padding": compact_sizes(m.output_padding), "dilation": compact_sizes(m.dilation),
        "groups": m.groups, "bias": m.bias is not None}, refs)


def _read_conv_transpose(r):
    """An ONNX ConvTranspose as conv_transpose1d/2d/3d, by the rank of its weight (in, out/groups, *kernel)."""
    weight = r.stored_shape(1, "weight")
    n = len(weight) - 2
    if n not in AXES:
        raise NotRepresentable(f"a {n}-d transposed convolution (archviz has 1-d, 2-d and 3-d)")
    r.shape(r.activation(), n + 2)
    if "output_shape" in r.attrs:
        raise NotRepresentable("its output_shape attribute (torch's ConvTranspose has padding and output_padding)")
    if r.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise NotRepresentable(f"its auto_pad {r.attrs['auto_pad']} (torch's ConvTranspose pads both sides alike)")
    groups = r.attrs.get("group", 1)
    kernel = list(r.attrs.get("kernel_shape", weight[2:]))
    pads = list(r.attrs.get("pads", [0] * 2 * n)) if r.attrs.get("auto_pad", "NOTSET") == "NOTSET" else [0] * 2 * n
    if len(pads) != 2 * n or pads[:n] != pads[n:]:
        raise NotRepresentable(f"its pads {pads} (torch's ConvTranspose crops both sides alike)")
    form = onnx_pair if n == 2 else compact_sizes
    args = {"out_channels": weight[1] * groups, "kernel_size": form(kernel),
            "stride": form(r.attrs.get("strides", [1] * n)), "padding": form(pads[:n]),
            "output_padding": form(r.attrs.get("output_padding", [0] * n)),
            "dilation": form(r.attrs.get("dilations", [1] * n)), "groups": groups, "bias": r.has_input(2)}
    return r.with_bias(f"conv_transpose{n}d", args, (1, weight[1] * groups) + (1,) * n)


def _transpose_args(size: ArgKind, nonneg: ArgKind, per_axis: str) -> tuple[Arg, ...]:
    return (
        Arg("out_channels", ArgKind.INT, aliases=("filters", "out"), doc="number of output channels"),
        Arg("kernel_size", size, aliases=("kernel", "k"), doc=f"filter size: int or {per_axis}"),
        Arg("stride", size, 1, aliases=("s",), doc="the upsampling factor"),
        Arg("padding", nonneg, 0, aliases=("p", "pad"), doc="d*(k-1)-padding zeros pad each side (crops the output)"),
        Arg("output_padding", nonneg, 0, doc="extra rows/columns at the end of the output, below stride or dilation"),
        Arg("groups", ArgKind.INT, 1, aliases=("g",)),
        Arg("bias", ArgKind.BOOL, True),
        Arg("dilation", size, 1, aliases=("d",)),
        Arg("in_channels", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )


class _ConvTransposeNd(SavesInput, _BiasAdds, Op):
    """What the transposed convolutions share (torch.nn.ConvTranspose1d/2d/3d): arguments, formulas, ONNX."""

    autocasts = True

    dims: ClassVar[int]
    kind = OpKind.CONV
    torchinfo_macs = TorchinfoMacs.TRANSPOSED_CONV

    def resolve(self, attrs, in_shapes):
        n = self.dims
        channels = checked_channels(self, attrs, in_shapes[0], n)
        names = ("kernel_size", "stride", "padding", "output_padding", "dilation")
        for name in names:
            _per_axis(self, attrs, name, n)
        resolved = {**attrs, "in_channels": channels, **{name: compact_sizes(sizes(attrs[name], n)) for name in names}}
        for axis, o, s, d in zip(AXES[n], *(self.per_axis(resolved, k) for k in ("output_padding", "stride",
                                                                                   "dilation"))):
            if o >= s and o >= d:
                raise ShapeError(f"output_padding {o} along the {axis} must be smaller than the stride {s} or the "
                                 f"dilation {d} (as in torch)")
        return resolved

    def per_axis(self, attrs, name: str) -> tuple[int, ...]:
        return sizes(attrs[name], self.dims)

    def out_sizes(self, attrs, in_shape) -> tuple[int, ...]:
        """(in - 1)*s - 2p + d*(k - 1) + output_padding + 1 per spatial axis (torch.nn.ConvTranspose2d's docs)."""
        k, s, p, o, d = (self.per_axis(attrs, name) for name in
                         ("kernel_size", "stride", "padding", "output_padding", "dilation"))
        return tuple((i - 1) * s_ - 2 * p_ + d_ * (k_ - 1) + o_ + 1
                     for i, k_, s_, p_, o_, d_ in zip(in_shape[1:], k, s, p, o, d))

    def infer_shape(self, attrs, in_shapes):
        out = self.out_sizes(attrs, in_shapes[0])
        for axis, size in zip(AXES[self.dims], out):
            if size <= 0:
                raise ShapeError(f"padding {sizes_text(attrs['padding'])} crops the whole {axis}: the output would "
                                 f"be {fmt_shape(out)}")
        return (attrs["out_channels"], *out)

    def weights(self, attrs, in_shapes):
        kernel = self.per_axis(attrs, "kernel_size")
        per_group = attrs["out_channels"] // attrs["groups"]
        fan_in = per_group * math.prod(kernel)  # torch's fan_in of a (in, out/groups, *k) weight: dim 1 x the kernel
        weight = Weight("weight", (attrs["in_channels"], per_group, *kernel), fan_in=fan_in)
        return (weight, Weight("bias", (attrs["out_channels"],), fan_in=fan_in)) if attrs["bias"] else (weight,)

    def params(self, attrs, in_shapes):
        weights = attrs["in_channels"] * (attrs["out_channels"] // attrs["groups"]) * math.prod(
            self.per_axis(attrs, "kernel_size"))
        return weights + (attrs["out_channels"] if attrs["bias"] else 0)

    def macs(self, attrs, in_shapes, out_shape):
        return numel(in_shapes[0]) * (attrs["out_channels"] // attrs["groups"]) * math.prod(
            self.per_axis(attrs, "kernel_size"))

    def axis_window(self, attrs, axes: range) -> Window:
        """Output position t of one axis takes input i where i*s = t + p - d*j for a kernel tap j: the inputs from
        ceil((t + p - d*(k-1))/s) to floor((t + p)/s). As a window (Araujo et al.'s composition of an s-fold
        zero-insertion, stride 1/s, and a stride-1 convolution of extent K = d*(k-1)+1 padded K-1-p): kernel K/s,
        stride 1/s, padding (2K - 2p - s - 1)/(2s), the first input round(t/s - padding) exactly; where s divides K
        every output reaches K/s inputs, else floor(K/s) or ceil(K/s) of them by the output's phase, and the
        receptive field is the fraction, as after pixel_shuffle."""
        k, s, p, d = (self.per_axis(attrs, name) for name in ("kernel_size", "stride", "padding", "dilation"))
        kernels, strides, paddings = [], [], []
        for i in axes:
            extent = d[i] * (k[i] - 1) + 1
            kernels.append(_exact(Fraction(extent, s[i])))
            strides.append(_exact(Fraction(1, s[i])))
            paddings.append(_exact(Fraction(2 * extent - 2 * p[i] - s[i] - 1, 2 * s[i])))
        return Window(tuple(kernels), tuple(strides), tuple(paddings))

    def explain(self, attrs, in_shapes, out_shape):
        k, s, p, o, d = (self.per_axis(attrs, name) for name in
                         ("kernel_size", "stride", "padding", "output_padding", "dilation"))
        steps = []
        for axis, i, k_, s_, p_, o_, d_, size in zip(AXES[self.dims], in_shapes[0][1:], k, s, p, o, d, out_shape[1:]):
            spread = f"{k_ - 1}" if d_ == 1 else f"{d_}*({k_}-1)"
            steps.append(Step(f"output {axis}", f"({i}-1)*{s_} - 2*{p_} + {spread} + {o_} + 1 = {size}", size))
        kernel = "*".join(map(str, k))
        c_in, c_out, groups = attrs["in_channels"], attrs["out_channels"], attrs["groups"]
        per_group = f"{c_out}/{groups}" if groups > 1 else f"{c_out}"
        bias = f" + {c_out}" if attrs["bias"] else ""
        return steps + [
            Step("output shape", f"{c_out} channels x {' x '.join(map(str, out_shape[1:]))}", fmt_shape(out_shape)),
            Step("params", f"{c_in}*{per_group}*{kernel}{bias}", fmt_int(self.params(attrs, in_shapes))),
            Step("MACs", f"{fmt_shape(in_shapes[0])} input elements x {per_group}*{kernel} weights each",
                 fmt_int(self.macs(attrs, in_shapes, out_shape))),
        ]

    def summary(self, attrs):
        n = self.dims
        text = f"{attrs['out_channels']} {'x'.join(map(str, self.per_axis(attrs, 'kernel_size')))}"
        for short, name, neutral in (("s", "stride", 1), ("p", "padding", 0), ("op", "output_padding", 0),
                                     ("d", "dilation", 1)):
            if self.per_axis(attrs, name) != (neutral,) * n:
                text += f" {short}{sizes_text(attrs[name])}"
        if attrs["groups"] != 1:
            text += f" g{attrs['groups']}"
        return text

    def write_onnx(self, e, node, x):
        a = node.attrs
        inputs = [x[0], e.weight(node, "weight")] + ([e.weight(node, "bias")] if a["bias"] else [])
        e.add("ConvTranspose", inputs, node.name, node.name, kernel_shape=list(self.per_axis(a, "kernel_size")),
              strides=list(self.per_axis(a, "stride")), dilations=list(self.per_axis(a, "dilation")),
              group=a["groups"], pads=list(self.per_axis(a, "padding")) * 2,
              output_padding=list(self.per_axis(a, "output_padding")))

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        n = self.dims
        return getattr(nn, f"ConvTranspose{n}d")(
            attrs["in_channels"], attrs["out_channels"], self.per_axis(attrs, "kernel_size"),
            stride=self.per_axis(attrs, "stride"), padding=self.per_axis(attrs, "padding"),
            output_padding=self.per_axis(attrs, "output_padding"), groups=attrs["groups"], bias=attrs["bias"],
            dilation=self.per_axis(attrs, "dilation"),
        )


def _exact(value: Fraction) -> int | Fraction:
    return int(value) if value.denominator == 1 else value


@register
class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution, the gradient of conv2d with respect to its input (torch.nn.ConvTranspose2d;
    Dumoulin & Visin 2016, ch. 4): it upsamples by the stride.

    out = (in - 1)*S - 2P + d*(F - 1) + output_padding + 1 per spatial axis (torch's ConvTranspose2d docs).
    params = C_in * (C_out / groups) * F_h * F_w + C_out (bias): the weight is (C_in, C_out/groups, F_h, F_w).
    MACs = C_in * H_in * W_in * (C_out / groups) * F_h * F_w: each input element times each kernel weight of its
    group (torch.utils.flop_counter's transposed conv_flop_count); the bias is not a MAC.
    Other ops: one bias add per output element.
    Window: kernel K/S, stride 1/S, padding (2K - 2P - S - 1)/(2S) per axis, K = d*(F-1)+1 (see axis_window).
    """

    name = "conv_transpose2d"
    dims = 2
    aliases = ("deconv", "conv_transpose")
    torch_class = "nn.ConvTranspose2d"
    keras_class = "Conv2DTranspose"
    torch_calls = TorchCalls(modules={"torch.nn.ConvTranspose2d": _transpose_module},
                             functions=_conv_transpose_function(2))
    onnx_reads = {"ConvTranspose": _read_conv_transpose}
    args = _transpose_args(ArgKind.PAIR, ArgKind.NONNEG_PAIR, "[h, w]")
    examples = (Example({"out_channels": 4, "kernel_size": 4, "stride": 2, "padding": 1}, ((3, 5, 6),)),
                # depthwise: onnx 1.23's reference ConvTranspose runs groups only where each has one input and one
                # output channel and no bias (it slices the weight by output channels); torch checks other groupings
                Example({"out_channels": 3, "kernel_size": [2, 4], "stride": 2, "groups": 3, "bias": False,
                         "output_padding": 1}, ((3, 4, 5),)),
                Example({"out_channels": 2, "kernel_size": 3, "padding": [1, 0], "dilation": 2}, ((2, 6, 5),)),
                Example({"out_channels": 2, "kernel_size": [3, 4], "stride": [3, 1], "padding": [2, 1],
                         "output_padding": [2, 0]}, ((1, 4, 5),)))

    def window(self, attrs, in_shapes):
        return self.axis_window(attrs, range(2))


@register
class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution over a (C, L) sequence (torch.nn.ConvTranspose1d): it upsamples by the stride.

    L_out = (L - 1)*S - 2P + d*(F - 1) + output_padding + 1 (torch's ConvTranspose1d docs).
    params = C_in * (C_out / groups) * F + C_out (bias): the weight is (C_in, C_out/groups, F).
    MACs = C_in * L * (C_out / groups) * F: each input element times each kernel weight of its group
    (torch.utils.flop_counter's transposed conv_flop_count); the bias is not a MAC.
    Other ops: one bias add per output element.
    Window: none declared: archviz's receptive field works on (height, width); a length-only field is not tracked.
    """

    name = "conv_transpose1d"
    dims = 1
    torch_class = "nn.ConvTranspose1d"
    keras_class = "Conv1DTranspose"
    torch_calls = TorchCalls(modules={"torch.nn.ConvTranspose1d": _transpose_module},
                             functions=_conv_transpose_function(1))
    args = _transpose_args(ArgKind.SIZES, ArgKind.NONNEG_SIZES, "[length]")
    examples = (Example({"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
                        ((3, 7),)),
                Example({"out_channels": 3, "kernel_size": [4], "stride": 3, "groups": 3, "bias": False},
                        ((3, 5),)),
                Example({"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 2, "dilation": 2,
                         "output_padding": 1}, ((2, 6),)))

    def window(self, attrs, in_shapes):
        """None: the receptive field is tracked over (height, width), and a (C, L) sequence has neither."""
        return None


@register
class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution over a (C, D, H, W) volume or clip (torch.nn.ConvTranspose3d): it upsamples by
    the stride.

    out = (in - 1)*S - 2P + d*(F - 1) + output_padding + 1 per spatial axis (torch's ConvTranspose3d docs).
    params = C_in * (C_out / groups) * F_d * F_h * F_w + C_out (bias): the weight is (C_in, C_out/groups, *F).
    MACs = C_in * D_in * H_in * W_in * (C_out / groups) * F_d * F_h * F_w: each input element times each kernel
    weight of its group (torch.utils.flop_counter's transposed conv_flop_count); the bias is not a MAC.
    Other ops: one bias add per output element.
    Window: the height and width axes' window of conv_transpose2d (kernel K/S, stride 1/S, padding
    (2K - 2P - S - 1)/(2S), K = d*(F-1)+1); the receptive field is tracked over (height, width), so the depth's is not.
    """

    name = "conv_transpose3d"
    dims = 3
    torch_class = "nn.ConvTranspose3d"
    keras_class = "Conv3DTranspose"
    torch_calls = TorchCalls(modules={"torch.nn.ConvTranspose3d": _transpose_module},
                             functions=_conv_transpose_function(3))
    args = _transpose_args(ArgKind.SIZES, ArgKind.NONNEG_SIZES, "[depth, height, width]")
    examples = (Example({"out_channels": 4, "kernel_size": 4, "stride": 2, "padding": 1}, ((3, 3, 4, 5),)),
                Example({"out_channels": 2, "kernel_size": [3, 2, 3], "stride": [1, 2, 2], "padding": [1, 0, 1],
                         "output_padding": [0, 1, 1], "dilation": [2, 1, 1]}, ((2, 3, 4, 3),)),
                Example({"out_channels": 2, "kernel_size": 2, "stride": 2, "groups": 2, "bias": False},
                        ((2, 2, 3, 3),)))

    def window(self, attrs, in_shapes):
        return self.axis_window(attrs, range(1, 3))
