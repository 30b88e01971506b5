"""2-D convolution: torch.nn.Conv2d semantics (Dumoulin & Visin 2016, "A guide to convolution arithmetic")."""

from __future__ import annotations

from archviz.errors import ShapeError
from archviz.ops.base import (
    Arg, ArgKind, Example, Op, OpKind, SlidingAxis, Step, Weight, Window, check_window_fits, compact, fmt_int,
    fmt_shape, numel, pair, require_rank, TorchinfoMacs,
)
from archviz.ops.interop import Mapped, NotRepresentable, TorchCalls, onnx_pads, onnx_pair, onnx_symmetric
from archviz.ops.registry import register


def conv_axes(attrs, in_shape) -> list[SlidingAxis]:
    """Sliding axes for height and width; 'same' pads d*(k-1) in total, the extra pixel after (as torch does)."""
    kernel, stride, dilation = pair(attrs["kernel_size"]), pair(attrs["stride"]), pair(attrs["dilation"])
    padding = attrs["padding"]
    axes = []
    for i in range(2):
        if padding == "same":
            total = dilation[i] * (kernel[i] - 1)
            before, after = total // 2, total - total // 2
        else:
            before = after = 0 if padding == "valid" else pair(padding)[i]
        axes.append(SlidingAxis(in_shape[1 + i], kernel[i], stride[i], before, dilation[i], padding_after=after))
    return axes


def _conv_module(m, refs):
    if m.padding_mode != "zeros":
        return None
    return Mapped("conv2d", {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": m.kernel_size,
        "stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups,
        "bias": m.bias is not None}, refs)


def _read_conv(r):
    spatial = r.shape(r.activation(), 4)[2:]
    weight = r.stored_shape(1, "weight")
    if len(weight) != 4:
        raise NotRepresentable(f"a {len(weight) - 2}-d convolution (archviz has conv2d)")
    kernel = list(r.attrs.get("kernel_shape", weight[2:]))
    strides, dilations = list(r.attrs.get("strides", [1, 1])), list(r.attrs.get("dilations", [1, 1]))
    before, after = onnx_pads(r.attrs, spatial, kernel, strides, dilations)
    note = None
    totals = [d * (k - 1) for d, k in zip(dilations, kernel)]
    if before != after and strides == [1, 1] and all((b, a) == (t // 2, t - t // 2)
                                                     for b, a, t in zip(before, after, totals)):
        padding = "same"  # torch's padding="same": the odd pixel after
    else:
        padding, note = onnx_symmetric(before, after, spatial, kernel, strides, dilations)
    args = {"out_channels": weight[0], "kernel_size": onnx_pair(kernel), "stride": onnx_pair(strides),
            "padding": padding, "dilation": onnx_pair(dilations), "groups": r.attrs.get("group", 1),
            "bias": r.has_input(2)}
    return r.with_bias("conv2d", args, (1, weight[0], 1, 1), note)


@register
class Conv2d(Op):
    """2-D convolution.

    out = floor((W - d*(F-1) - 1 + 2P) / S) + 1 per spatial axis; with d = 1 this is the course's ([W-F+2P]/S)+1.
    params = F_h * F_w * (C_in / groups) * C_out + C_out (bias).
    MACs = H_out * W_out * C_out * F_h * F_w * (C_in / groups); the bias is not a MAC.
    Other ops: one bias add per output element.
    """

    name = "conv2d"
    examples = (Example({"out_channels": 4, "kernel_size": 3}, ((3, 9, 8),)),
                Example({"out_channels": 6, "kernel_size": [3, 2], "stride": 2, "padding": 1, "groups": 3, "bias": False},
                        ((3, 9, 8),)),
                Example({"out_channels": 2, "kernel_size": 3, "dilation": 2, "padding": "same"}, ((2, 9, 9),)),
                Example({"out_channels": 2, "kernel_size": 2, "padding": "same"}, ((1, 7, 6),)),
                Example({"out_channels": 2, "kernel_size": [3, 1], "padding": [1, 0], "stride": [1, 2]}, ((2, 6, 7),)))
    kind = OpKind.CONV
    aliases = ("conv",)
    torch_class = "nn.Conv2d"
    torch_calls = TorchCalls(modules={"torch.nn.Conv2d": _conv_module})
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

    def resolve(self, attrs, in_shapes):
        require_rank(self, in_shapes[0], 3, "C x H x W")
        channels = in_shapes[0][0]
        if attrs["in_channels"] is not None and attrs["in_channels"] != channels:
            raise ShapeError(f"in_channels is {attrs['in_channels']} but the input has {channels} channels")
        groups = attrs["groups"]
        for side, count in (("in_channels", channels), ("out_channels", attrs["out_channels"])):
            if count % groups:
                raise ShapeError(f"{side} {count} is not divisible by groups {groups}")
        if attrs["padding"] == "same" and pair(attrs["stride"]) != (1, 1):
            raise ShapeError(f"padding 'same' needs stride 1 (as in torch), got stride {compact(attrs['stride'])}")
        return {**attrs, "in_channels": channels}

    def infer_shape(self, attrs, in_shapes):
        axes = conv_axes(attrs, in_shapes[0])
        check_window_fits(self, axes, in_shapes[0])
        return (attrs["out_channels"], axes[0].out, axes[1].out)

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

    def other_ops(self, attrs, in_shapes, out_shape):
        return numel(out_shape) if attrs["bias"] else 0

    def window(self, attrs, in_shapes):
        axes = conv_axes(attrs, in_shapes[0])
        return Window(tuple(a.extent for a in axes), tuple(a.stride for a in axes), tuple(a.padding for a in axes))

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

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        if not attrs["bias"]:
            return Step("other ops", "no bias, nothing to add", 0)
        return Step("other ops", f"one bias add per output: {fmt_shape(out_shape)}", fmt_int(numel(out_shape)))

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
