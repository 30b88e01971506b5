"""Resampling: interpolation (torch.nn.functional.interpolate, nn.Upsample) and padding (F.pad, nn.ZeroPad2d and
friends)."""

from __future__ import annotations

from archviz.errors import ShapeError
from archviz.ops.base import (
    Arg, ArgKind, Example, Free, Op, OpKind, Step, Window, fmt_shape,
)
from archviz.ops.interop import Mapped, NotRepresentable, Signature, TorchCalls, is_ref, onnx_float
from archviz.ops.registry import register

# --- pad -----------------------------------------------------------------------------------------------------------

_SIDES = ("padding_left", "padding_right", "padding_top", "padding_bottom", "padding_front", "padding_back")
_PAD_MODES = ("constant", "reflect", "replicate", "circular")
_ONNX_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_TORCH_PAD_CLASSES = {"constant": "ConstantPad", "reflect": "ReflectionPad", "replicate": "ReplicationPad",
                      "circular": "CircularPad"}


def pad_list(attrs) -> list[int]:
    """The padding in torch's pad-list order (last dim first: left, right, top, bottom, front, back), trailing zero
    pairs left out (at least one pair)."""
    pads = [attrs[side] for side in _SIDES]
    while len(pads) > 2 and pads[-2:] == [0, 0]:
        pads = pads[:-2]
    return pads


def _pad_args(pad, mode, value, refs) -> Mapped | None:
    pad = list(pad)
    if len(pad) % 2 or not 2 <= len(pad) <= 6 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pad):
        return None
    args = dict(zip(_SIDES, pad))
    args["mode"] = mode
    args["value"] = 0.0 if value is None else float(value)
    return Mapped("pad", args, refs)


def _pad_module(mode: str):
    def adapt(m, refs):
        return _pad_args(m.padding, mode, getattr(m, "value", 0.0), refs)

    return adapt


def _pad_function(a, out):
    if not is_ref(a["input"]) or a["mode"] not in _PAD_MODES:
        return None
    return _pad_args(a["pad"], a["mode"], a["value"], (a["input"],))


def _read_pad(r):
    """ONNX Pad (opset 11+: pads, constant_value and axes are inputs): torch's pad of the last three dims at most."""
    if r.opset < 11:
        raise NotRepresentable(f"opset {r.opset} Pad keeps its pads in an attribute")
    rank = len(r.shape(r.activation()))
    mode = {onnx: torch for torch, onnx in _ONNX_PAD_MODES.items()}.get(r.attrs.get("mode", "constant"))
    if mode is None:
        raise NotRepresentable(f"mode {r.attrs.get('mode')!r}")
    pads = r.constant(1)
    pads = pads if isinstance(pads, list) else [pads]
    axes = r.constant(3, list(range(rank)))
    axes = [a % rank for a in (axes if isinstance(axes, list) else [axes])]
    if len(pads) != 2 * len(axes):
        raise NotRepresentable(f"pads {pads} do not fit axes {axes}")
    before, after = {a: 0 for a in range(rank)}, {a: 0 for a in range(rank)}
    for i, axis in enumerate(axes):
        before[axis], after[axis] = int(pads[i]), int(pads[len(axes) + i])
    if before[0] or after[0]:
        raise NotRepresentable("it pads the batch dim")
    if any(before[a] or after[a] for a in range(1, rank - 3)):
        raise NotRepresentable("it pads a dim before the last three")
    if any(v < 0 for v in (*before.values(), *after.values())):
        raise NotRepresentable("a negative pad crops; archviz's pad does not")
    args = {}
    for index, axis in enumerate(range(rank - 1, max(rank - 4, 0), -1)):
        args[_SIDES[2 * index]], args[_SIDES[2 * index + 1]] = before[axis], after[axis]
    value = r.constant(2, 0.0) if mode == "constant" else 0.0
    if isinstance(value, list):
        raise NotRepresentable("its constant_value is not one number")
    return r.layer("pad", {**args, "mode": mode, "value": onnx_float(value)})


@register
class Pad(Free, Op):
    """Padding of the last one, two or three dims (torch.nn.functional.pad; nn.ZeroPad1d/2d/3d, ConstantPad*,
    ReflectionPad*, ReplicationPad*, CircularPad*). The sides are torch's pad list by name, last dim first:
    padding_left/right widen the last dim, padding_top/bottom the one before it, padding_front/back the third from
    last: each output size is size + before + after (torch's docs of F.pad).

    Modes as torch defines them: constant writes `value`; reflect mirrors the map without repeating its edge (each
    pad less than the size); replicate repeats the edge; circular wraps round (each pad at most the size).
    Negative pads (torch's cropping in constant mode) are refused: a crop is narrow's work, and ONNX's reference
    runtime (numpy's pad) has no negative pads.

    No params; no MACs. Other ops: 0 in every mode: padding writes a constant or copies existing values, and
    copying or filling is no arithmetic (the convention of archviz's reshapes and of pixel_shuffle).

    Window (C x H x W input): output row t is input row t - top: kernel 1, stride 1, padding = (top, left), a shift
    as narrow's crop is. That is exact for every output position over the input; the border positions read no
    input in constant mode, and in reflect, replicate and circular mode they read one interior position (mirrored,
    the nearest edge, or the opposite side) rather than the one the shift names: the receptive field's size is right,
    and its centre is right away from the border.
    """

    name = "pad"
    examples = (
        Example({"padding_left": 1, "padding_right": 2, "padding_top": 3, "padding_bottom": 0}, ((2, 4, 5),)),
        Example({"padding_left": 1, "padding_right": 1, "padding_top": 1, "padding_bottom": 1, "value": 2.5},
                ((3, 4, 4),)),
        Example({"padding_left": 2, "padding_right": 1, "padding_top": 1, "padding_bottom": 2, "mode": "reflect"},
                ((2, 5, 6),)),
        Example({"padding_left": 0, "padding_right": 3, "padding_top": 2, "padding_bottom": 1, "mode": "replicate"},
                ((2, 4, 5),)),
        Example({"padding_left": 2, "padding_right": 2, "padding_top": 1, "padding_bottom": 3, "mode": "circular"},
                ((2, 4, 5),)),
        Example({"padding_left": 1, "padding_right": 2, "padding_top": 0, "padding_bottom": 1, "padding_front": 2,
                 "padding_back": 1}, ((2, 3, 4),)),
        Example({"padding_left": 2, "padding_right": 1, "mode": "reflect"}, ((3, 6),)),
        Example({"padding_left": 1, "padding_right": 1, "padding_top": 2, "padding_bottom": 1, "padding_front": 1,
                 "padding_back": 1, "mode": "replicate"}, ((2, 3, 4, 5),)),
        Example({"padding_left": 1, "padding_right": 2}, ((3, 4, 5),)),
    )
    aliases = ("zero_pad2d",)
    kind = OpKind.RESHAPE
    keras_class = "ZeroPadding2D"
    torch_class = "nn.ConstantPad2d"
    args = (
        *(Arg(side, ArgKind.SIGNED_INT, 0, aliases=(side.removeprefix("padding_"),),
              doc=f"entries added at the {side.removeprefix('padding_')} "
                  f"({('last', 'last', 'second last', 'second last', 'third last', 'third last')[i]} dim)")
          for i, side in enumerate(_SIDES)),
        Arg("mode", ArgKind.CHOICE, "constant", choices=_PAD_MODES, doc="what the new entries hold"),
        Arg("value", ArgKind.FLOAT, 0.0, doc="the constant written in constant mode"),
    )
    torch_calls = TorchCalls(
        modules={f"torch.nn.{prefix}{n}d": adapter
                 for prefix, adapter in (("ZeroPad", _pad_module("constant")),
                                         *((cls, _pad_module(mode)) for mode, cls in _TORCH_PAD_CLASSES.items()))
                 for n in (1, 2, 3)},
        functions={"torch.nn.functional.pad": Signature(("input", "pad", "mode", "value"), _pad_function,
                                                        {"mode": "constant", "value": None})})
    onnx_reads = {"Pad": _read_pad}

    def resolve(self, attrs, in_shapes):
        shape, mode = in_shapes[0], attrs["mode"]
        pads = pad_list(attrs)
        padded = len(pads) // 2
        if any(v < 0 for v in pads):
            raise ShapeError(f"negative padding {pads} crops; use narrow (a slice) for a crop")
        if padded > len(shape):
            raise ShapeError(f"padding {pads} pads {padded} dims of a {fmt_shape(shape)} input, which has "
                             f"{len(shape)} besides the batch")
        if mode != "constant":
            if attrs["value"] != 0:
                raise ShapeError(f"mode {mode} takes no value (got {attrs['value']:g})")
            if not 1 <= len(shape) <= 4:
                raise ShapeError(f"{mode} padding pads a 1-d, 2-d or 3-d map: a {fmt_shape(shape)} input is none")
            for i, v in enumerate(pads):
                size = shape[-1 - i // 2]
                if mode == "reflect" and v >= size or mode == "circular" and v > size:
                    limit = "less than" if mode == "reflect" else "at most"
                    raise ShapeError(f"{mode} padding {v} ({_SIDES[i]}) must be {limit} the dim's size {size}")
        return attrs

    def infer_shape(self, attrs, in_shapes):
        shape = list(in_shapes[0])
        pads = pad_list(attrs)
        for i in range(len(pads) // 2):
            shape[-1 - i] += pads[2 * i] + pads[2 * i + 1]
        return tuple(shape)

    def window(self, attrs, in_shapes):
        if len(in_shapes[0]) != 3:
            return None
        return Window(kernel=(1, 1), stride=(1, 1), padding=(attrs["padding_top"], attrs["padding_left"]))

    def explain(self, attrs, in_shapes, out_shape):
        pads = pad_list(attrs)
        names = ("width (last dim)", "height (second last)", "third last dim")
        parts = [f"{names[i]} {in_shapes[0][-1 - i]} + {pads[2 * i]} + {pads[2 * i + 1]} = {out_shape[-1 - i]}"
                 for i in range(len(pads) // 2)]
        filled = f"the value {attrs['value']:g}" if attrs["mode"] == "constant" else f"{attrs['mode']} copies"
        return [Step("output shape", "; ".join(parts) + f", filled with {filled}", fmt_shape(out_shape)),
                Step("params", "padding has no weights", 0)]

    def summary(self, attrs):
        text = ",".join(str(v) for v in pad_list(attrs))
        if attrs["mode"] != "constant":
            return f"{attrs['mode']} {text}"
        return text + (f" value {attrs['value']:g}" if attrs["value"] else "")

    def _torch_pads(self, attrs, in_shapes) -> list[int]:
        """The pad list torch's module takes: for reflect, replicate and circular, as many pairs as the input has
        spatial dims (torch picks the 1-d, 2-d or 3-d kernel by the pad list's length and the input's rank)."""
        pads = pad_list(attrs)
        if attrs["mode"] != "constant":
            pads = [attrs[side] for side in _SIDES][:2 * max(len(pads) // 2, len(in_shapes[0]) - 1, 1)]
        return pads

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        pads = self._torch_pads(attrs, in_shapes)
        name = f"{_TORCH_PAD_CLASSES[attrs['mode']]}{len(pads) // 2}d"
        if attrs["mode"] == "constant":
            return getattr(nn, name)(tuple(pads), attrs["value"])
        return getattr(nn, name)(tuple(pads))

    def write_onnx(self, e, node, x):
        """ONNX Pad: pads for every axis, the batch's 0, all begins then all ends; mode edge is replicate, wrap is
        circular."""
        a = node.attrs
        rank = len(node.in_shapes[0]) + 1
        before, after = [0] * rank, [0] * rank
        pads = pad_list(a)
        for i in range(len(pads) // 2):
            before[rank - 1 - i], after[rank - 1 - i] = pads[2 * i], pads[2 * i + 1]
        inputs = [x[0], e.constant(f"{node.name}/pads", before + after, "int64")]
        if a["mode"] == "constant" and a["value"] != 0:
            inputs.append(e.constant(f"{node.name}/value", a["value"]))
        e.add("Pad", inputs, node.name, node.name, mode=_ONNX_PAD_MODES[a["mode"]])
