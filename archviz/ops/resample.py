"""Resampling: interpolation (torch.nn.functional.interpolate, nn.Upsample) and padding (F.pad, nn.ZeroPad2d and
friends)."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

from archviz.errors import ShapeError
from archviz.ops.base import (
    ON_CUDA,
    INPUT_SAVED, NOTHING_SAVED, Arg, ArgKind, Example, Free, NoMacs, Op, OpKind, SavesNothing, Step, Window, fmt_int,
    fmt_shape, numel,
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
    if mode == "constant" and value == 0 and not before[1] and not after[1]:
        merged = r.merged_into_next("Conv", _conv_padded(before, after, rank))
        if merged is not None:  # zeros before a conv are the conv's own padding (timm's Conv2dSame, StdConv2dSame)
            return merged
    return r.layer("pad", {**args, "mode": mode, "value": onnx_float(value)})


def _conv_padded(before: dict[int, int], after: dict[int, int], rank: int):
    """A Conv's attributes with a Pad's spatial pads added to its own."""
    n = rank - 2

    def padded(attrs):
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
            raise NotRepresentable("the conv pads itself (auto_pad)")
        own = list(attrs.get("pads", [0] * 2 * n))
        pads = [own[i] + before[2 + i] for i in range(n)] + [own[n + i] + after[2 + i] for i in range(n)]
        return {**attrs, "pads": pads}

    return padded


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

    def widens_under_autocast(self, attrs, device="cpu"):
        """Reflection and replication padding are in torch's CPU autocast float32 list, not CUDA's."""
        return device == "cpu" and attrs["mode"] in ("reflect", "replicate")

    def saved(self, attrs, in_shapes, out_shape):
        """Reflect and replicate padding keep the input (their gradient folds back onto it); constant and circular
        padding keep nothing."""
        return INPUT_SAVED if attrs["mode"] in ("reflect", "replicate") else NOTHING_SAVED

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


# --- interpolate ---------------------------------------------------------------------------------------------------

_MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear")
_LINEAR = ("linear", "bilinear", "trilinear")
_MODE_RANK = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}  # the spatial axes torch's kernel takes
# other ops per output element (Interpolate's docstring): a weighted sum of 2^d (linear) or 4^2 (cubic) neighbours
_PER_OUTPUT = {"nearest": 0, "linear": 3, "bilinear": 7, "bicubic": 31, "trilinear": 15}
_PER_OUTPUT_TEXT = {"nearest": "a copy: 0", "linear": "2 multiplies + 1 add = 3", "bilinear": "4 multiplies + 3 adds = 7",
                    "bicubic": "16 multiplies + 15 adds = 31", "trilinear": "8 multiplies + 7 adds = 15"}
_READS = {"nearest": 1, "linear": 2, "bilinear": 2, "bicubic": 4, "trilinear": 2}  # input positions read per axis
_ONNX_MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "bicubic": "cubic",
               "trilinear": "linear"}


def _f32(value: float) -> float:
    """value rounded to a float32, as torch's CPU kernels hold their coordinates."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _scale_factors(attrs) -> float | None:
    return attrs["scale_factor"]


def _sizes(value, axes: int) -> tuple[int, ...]:
    return (value,) * axes if isinstance(value, int) else tuple(value)


def _out_sizes(attrs, in_shape) -> tuple[int, ...]:
    """torch's F.interpolate: the size given, else floor(in * scale_factor) in double precision."""
    if attrs["size"] is not None:
        return _sizes(attrs["size"], len(in_shape) - 1)
    return tuple(math.floor(float(n) * attrs["scale_factor"]) for n in in_shape[1:])


def _axis_scale(attrs, size: int, out: int) -> float:
    """The scale torch's kernel maps output to input coordinates with (ATen UpSample.h, area_pixel_compute_scale and
    compute_scales_value): (in-1)/(out-1) with align_corners, else 1/scale_factor when one was given (and not
    recomputed), else in/out; a float32."""
    if attrs["align_corners"]:
        return _f32((size - 1) / (out - 1)) if out > 1 else 0.0
    if attrs["scale_factor"] is not None:
        return _f32(1.0 / attrs["scale_factor"])
    return _f32(size / out)


def _exact_scale(attrs, size: int, out: int) -> Fraction:
    """The kernel's scale as a ratio: (in-1)/(out-1) with align_corners, 1/scale_factor, or in/out."""
    if attrs["align_corners"]:
        return Fraction(size - 1, out - 1) if out > 1 else Fraction(0)
    if attrs["scale_factor"] is not None:
        return 1 / Fraction(attrs["scale_factor"]).limit_denominator(1000)
    return Fraction(size, out)


def _first_reads(attrs, size: int, out: int) -> list[int | None]:
    """For each output position along one axis: the first input position torch's kernel reads, or None where the
    kernel clamps it to the map (nearest past the end, bilinear before the start: a window clips there too).

    Nearest copies input floorf(t * scale) in float32 (ATen's nearest_idx), so its float rounding is followed
    exactly. Linear and cubic weights are taken at the exact source coordinate: where float32 rounding moves a
    source that falls on an input position a hair below it, torch gives the position before a weight near 1e-7,
    which is not counted as reading it."""
    mode = attrs["mode"]
    reads = []
    if mode == "nearest":
        scale = _axis_scale(attrs, size, out)
        for t in range(out):
            if _copies(attrs, size, out):
                src = t if out == size else t >> 1
            else:
                src = math.floor(_f32(_f32(float(t)) * scale))
            reads.append(src if src <= size - 1 else None)
        return reads
    scale = _exact_scale(attrs, size, out)
    cubic = _axis_kernel(attrs, size, out) == 4  # a window of 4 starts before the source
    for t in range(out):
        real = scale * t if attrs["align_corners"] else scale * (t + Fraction(1, 2)) - Fraction(1, 2)
        if mode in _LINEAR and real < 0:
            reads.append(None)
            continue
        reads.append(math.floor(real) - (1 if cubic else 0))
    return reads


def _axis_kernel(attrs, size: int, out: int) -> int:
    """The positions an output position reads along one axis: 1 for nearest, for an axis torch copies, and where
    every source falls on an input position (a linear or cubic weight is then 1 there and 0 elsewhere); else 2 for
    linear, 4 for cubic."""
    if attrs["mode"] == "nearest" or _copies(attrs, size, out):
        return 1
    scale = _exact_scale(attrs, size, out)
    sources = [scale * t if attrs["align_corners"] else scale * (t + Fraction(1, 2)) - Fraction(1, 2)
               for t in range(out)]
    return _READS[attrs["mode"]] if any(src.denominator != 1 for src in sources) else 1


def _axis_window(attrs, size: int, out: int) -> tuple[Fraction, Fraction] | None:
    """(stride, padding) of one axis such that round(t * stride - padding) is the first position read for every
    output position t, or None when no one offset gives them all. The stride is the kernel's scale as a ratio."""
    stride = _exact_scale(attrs, size, out)
    if attrs["mode"] in _LINEAR and out == size:
        return Fraction(1), Fraction(0)  # copied (align_corners maps it onto itself too)
    # round(t*s - p) == first  <=>  first - 1/2 < t*s - p < first + 1/2 (ties left out)
    offsets = [t * stride - first for t, first in enumerate(_first_reads(attrs, size, out)) if first is not None]
    if not offsets:
        return stride, Fraction(0)
    low, high = max(offsets) - Fraction(1, 2), min(offsets) + Fraction(1, 2)
    if not low < high:
        return None
    # the centre of output position t sits at (t + 1/2) * stride - 1/2 in input positions (half-pixel geometry)
    geometric = (1 - stride) / 2 + Fraction(_axis_kernel(attrs, size, out) - 1, 2)
    return stride, geometric if low < geometric < high else (low + high) / 2


def _copies(attrs, size: int, out: int) -> bool:
    """Whether torch's CPU kernel copies this axis whatever the scale: 2-d nearest where the size stays or doubles
    (ATen's nearest_idx; 1-d and 3-d nearest scale it), linear modes where it stays (the separable kernel skips the
    axis). `_axes` is the map's number of spatial axes, set where the shape is known (measured on torch 2.14's
    CPU kernels)."""
    if attrs["mode"] == "nearest":
        return attrs["_axes"] == 2 and out in (size, 2 * size)
    return attrs["mode"] in _LINEAR and out == size


def _next_f32(value: float, up: bool) -> float:
    bits = struct.unpack("i", struct.pack("f", value))[0]  # positive floats order as their bits
    return struct.unpack("f", struct.pack("i", bits + (1 if up else -1)))[0]


def _onnx_scale(attrs, size: int, out: int) -> float:
    """The float32 scale ONNX Resize needs for one axis to give torch's output size and coordinates: the
    scale_factor, nudged by a float32 step or two where floor(in * float32(scale)) falls below torch's floor in
    double (10 * 1.3); for nearest, 1 or 2 where torch copies an axis whose size stays or doubles (ATen's
    nearest_idx does so whatever the scale)."""
    if _copies(attrs, size, out):
        return float(out // size)
    scale = _f32(attrs["scale_factor"])
    for _ in range(8):
        if math.floor(size * scale) == out:
            break
        scale = _next_f32(scale, math.floor(size * scale) < out)
    return scale


def _interpolate_args(size, scale_factor, mode, align_corners, recompute, refs) -> Mapped | None:
    if isinstance(scale_factor, (tuple, list)):
        if len(set(scale_factor)) != 1:
            return None
        scale_factor = scale_factor[0]
    if isinstance(size, (tuple, list)):
        size = tuple(size) if len(set(size)) > 1 else size[0]
    if mode not in _MODES:
        return None
    return Mapped("interpolate", {"size": size, "scale_factor": None if scale_factor is None else float(scale_factor),
                                  "mode": mode, "align_corners": align_corners,
                                  "recompute_scale_factor": recompute}, refs)


def _upsample_module(m, refs):
    return _interpolate_args(m.size, m.scale_factor, m.mode, m.align_corners, m.recompute_scale_factor, refs)


def _interpolate_function(a, out):
    if not is_ref(a["input"]) or a["antialias"]:
        return None
    return _interpolate_args(a["size"], a["scale_factor"], a["mode"], a["align_corners"],
                             a["recompute_scale_factor"], (a["input"],))


def _read_resize(r):
    """ONNX Resize of a map's spatial axes (1 to 3), as torch exports F.interpolate: nearest with asymmetric
    coordinates and floor; linear or cubic (a = -0.75, 2 axes) with half_pixel (pytorch_half_pixel where no output
    side is 1) or align_corners coordinates."""
    shape = r.shape(r.activation())
    rank = len(shape)
    if not 3 <= rank <= 5:
        raise NotRepresentable(f"its input has rank {rank} (batch included), not 3 to 5")
    spatial = tuple(range(2, rank))
    linear = {1: "linear", 2: "bilinear", 3: "trilinear"}[rank - 2]
    attrs = r.attrs
    mode = attrs.get("mode", "nearest")
    coordinates = attrs.get("coordinate_transformation_mode", "half_pixel")
    if attrs.get("antialias", 0) or attrs.get("exclude_outside", 0):
        raise NotRepresentable("antialias or exclude_outside")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise NotRepresentable("a keep_aspect_ratio_policy")
    if r.has_input(1) and r.constant(1, []) not in ([], None):
        raise NotRepresentable("a region of interest")
    axes = [a % rank for a in attrs.get("axes", range(rank))]
    scales = r.constant(2, []) if r.has_input(2) else []
    sizes = r.constant(3, []) if r.has_input(3) else []
    args = {"size": None, "scale_factor": None, "recompute_scale_factor": None}
    if scales not in ([], None):
        scales = scales if isinstance(scales, list) else [scales]
        by_axis = dict(zip(axes, scales))
        if by_axis.get(0, 1) != 1 or by_axis.get(1, 1) != 1:
            raise NotRepresentable(f"scales {scales} resize the batch or the channels")
        out = [math.floor(float(n) * by_axis.get(a, 1)) for n, a in zip(shape[2:], spatial)]
        written = [onnx_float(by_axis.get(a, 1)) for a in spatial]
        for factor in dict.fromkeys(written):  # the factor torch was given: one written on every axis, or on some
            trial = {"scale_factor": factor, "mode": {"linear": linear, "cubic": "bicubic"}.get(mode, mode),
                     "_axes": rank - 2}
            if [math.floor(float(n) * factor) for n in shape[2:]] == out and [
                    onnx_float(_onnx_scale(trial, n, o)) for n, o in zip(shape[2:], out)] == written:
                args["scale_factor"] = factor
                break
        else:
            raise NotRepresentable(f"scales {scales} are not one factor of the height and width")
    elif sizes not in ([], None):
        sizes = sizes if isinstance(sizes, list) else [sizes]
        by_axis = dict(zip(axes, sizes))
        if any(by_axis.get(a, shape[a]) != shape[a] for a in (0, 1)):
            raise NotRepresentable("it resizes the batch or the channels")
        out = [by_axis.get(a, shape[a]) for a in spatial]
        args["size"] = out[0] if len(set(out)) == 1 else out
    else:
        raise NotRepresentable("neither scales nor sizes")
    if mode == "nearest":
        if coordinates != "asymmetric" or attrs.get("nearest_mode", "round_prefer_floor") != "floor":
            raise NotRepresentable("nearest other than torch's (asymmetric coordinates, floor)")
        return r.layer("interpolate", {**args, "mode": "nearest", "align_corners": None})
    if mode not in ("linear", "cubic"):
        raise NotRepresentable(f"mode {mode!r}")
    if mode == "cubic" and not math.isclose(attrs.get("cubic_coeff_a", -0.75), -0.75, rel_tol=1e-6):
        raise NotRepresentable(f"cubic_coeff_a {attrs.get('cubic_coeff_a')} is not torch's -0.75")
    if coordinates == "pytorch_half_pixel" and min(out) > 1:
        coordinates = "half_pixel"
    if coordinates not in ("half_pixel", "align_corners"):
        raise NotRepresentable(f"coordinate_transformation_mode {coordinates!r}")
    if mode == "cubic" and rank != 4:
        raise NotRepresentable("cubic of other than two axes (torch's bicubic takes two)")
    return r.layer("interpolate", {**args, "mode": linear if mode == "linear" else "bicubic",
                                   "align_corners": coordinates == "align_corners"})


@register
class Interpolate(SavesNothing, NoMacs, Op):
    """Resizing of a map's spatial axes (torch.nn.functional.interpolate; nn.Upsample, nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d): nearest on 1, 2 or 3 axes (C x L, C x H x W, C x D x H x W), linear on 1, bilinear
    and bicubic on 2, trilinear on 3, as torch pairs modes with ranks.

    Output size (torch's docs and F.interpolate): `size` as given, else floor(in * scale_factor) per axis. The
    kernel maps output position t to input coordinates with the scale of ATen's UpSample.h: 1/scale_factor when a
    scale was given, in/out when a size was, (in-1)/(out-1) with align_corners. A scale that the kernel does not
    use is held as the size it gives: with recompute_scale_factor=True, with align_corners where in * scale is not
    whole (ONNX's align_corners would divide by in * scale - 1), and where torch copies every axis (below).
    Nearest reads input floor(t * scale) (clamped); the linear modes the two neighbours per axis of
    scale * (t + 1/2) - 1/2 (clamped at 0), or of scale * t with align_corners; bicubic the four round it (Keys
    1981, a = -0.75, as torch).

    No params; no MACs (nothing is a learned weight). Other ops per output element (per channel): nearest 0 (a
    copy); a weighted sum of the neighbours otherwise, one multiply per neighbour and one add fewer: linear 3
    (2 + 1), bilinear 7 (4 + 3), trilinear 15 (8 + 7), bicubic 31 (16 + 15). The interpolation weights depend only
    on the output row or column and are computed once per row and column, not counted. fvcore 0.1.5 counts a
    fixed number per output element too, 1 for nearest and 4 for bilinear (elementwise_flop_counter(0, 1) and
    (0, 4) in its flop_count.py table), none for the others; archviz counts the arithmetic, and a copy as none.

    Window (height and width; a 3-d map's too, as conv3d's; none for a 1-d map, as conv1d), per axis: a kernel of
    the positions read (1 for nearest, 2 linear, 4 cubic; 1 where every source falls on an input position) at a
    stride of the kernel's scale (a fraction when upsampling: the jump shrinks as through pixel_shuffle), with the
    padding for which round(t * stride - padding) is the first position read for every output position t, checked
    against torch's index arithmetic for this size (float32 for nearest); the map's edge clamps as a window clips.
    torch's CPU kernels (2.14, measured) copy an axis whose size stays (linear modes, 2-d nearest) or doubles (2-d
    nearest) whatever the scale_factor says; archviz's window and ONNX file follow them. Where a linear or cubic
    weight is 0 at some positions only (the source falls on an input position: align_corners, odd factors), those
    read fewer positions than the kernel says: the field is the largest a unit reaches. Where no one padding gives
    every position read, there is no window (not met on sizes up to 11 x 24).
    """

    name = "interpolate"
    widens = ON_CUDA  # in torch's CUDA autocast float32 list, not the CPU's
    examples = (
        Example({"scale_factor": 2.0}, ((3, 4, 5),)),
        Example({"size": [8, 15]}, ((2, 4, 5),)),
        Example({"scale_factor": 1.5}, ((2, 5, 6),)),
        Example({"scale_factor": 0.5}, ((2, 8, 6),)),
        Example({"size": 7, "mode": "nearest"}, ((2, 5, 3),)),
        Example({"scale_factor": 2.5, "recompute_scale_factor": True}, ((2, 3, 4),)),
        Example({"scale_factor": 2.0, "mode": "bilinear"}, ((3, 4, 5),)),
        Example({"scale_factor": 2.0, "mode": "bilinear", "align_corners": True}, ((2, 4, 5),)),
        Example({"size": [9, 8], "mode": "bilinear"}, ((2, 4, 5),)),
        Example({"scale_factor": 0.5, "mode": "bilinear"}, ((2, 8, 6),)),
        Example({"scale_factor": 2.0, "mode": "bicubic"}, ((2, 4, 5),)),
        Example({"size": [7, 8], "mode": "bicubic", "align_corners": True}, ((2, 4, 5),)),
        Example({"scale_factor": 1.3, "mode": "nearest"}, ((2, 3, 8),)),
        Example({"scale_factor": 1.3, "mode": "bilinear"}, ((2, 3, 8),)),
        Example({"scale_factor": 1.5, "mode": "bilinear", "align_corners": True}, ((2, 6, 7),)),
        Example({"size": [6, 6], "mode": "bilinear"}, ((2, 4, 3),)),
        Example({"scale_factor": 2.0, "mode": "linear"}, ((3, 5),)),
        Example({"size": 9, "mode": "linear", "align_corners": True}, ((3, 5),)),
        Example({"scale_factor": 1.5}, ((3, 5),)),
        Example({"scale_factor": 2.0, "mode": "trilinear"}, ((2, 3, 4, 5),)),
        Example({"size": [4, 6, 7], "mode": "trilinear", "align_corners": True}, ((2, 3, 4, 5),)),
        Example({"size": [6, 8, 10]}, ((2, 3, 4, 5),)),
    )
    aliases = ("upsample", "resize")
    kind = OpKind.RESHAPE
    keras_class = "UpSampling2D"
    torch_class = "nn.Upsample"
    args = (
        Arg("size", ArgKind.SIZES, None, doc="the output's size: an int, or one per spatial axis ([height, width]); "
                                             "or scale_factor"),
        Arg("scale_factor", ArgKind.FLOAT, None, aliases=("scale",), doc="each side times this, rounded down"),
        Arg("mode", ArgKind.CHOICE, "nearest", choices=_MODES),
        Arg("align_corners", ArgKind.BOOL, None, doc="linear modes and bicubic: corner pixels' centres map onto "
                                                     "each other"),
        Arg("recompute_scale_factor", ArgKind.BOOL, None,
            doc="with scale_factor: the kernel uses in/out (the same as giving the size it gives)"),
    )
    torch_calls = TorchCalls(
        modules={f"torch.nn.{cls}": _upsample_module
                 for cls in ("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d")},
        functions={"torch.nn.functional.interpolate": Signature(
            ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"),
            _interpolate_function, {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
                                    "recompute_scale_factor": None, "antialias": False})})
    onnx_reads = {"Resize": _read_resize}

    def resolve(self, attrs, in_shapes):
        size, scale, mode = attrs["size"], attrs["scale_factor"], attrs["mode"]
        axes = len(in_shapes[0]) - 1
        if not 1 <= axes <= 3:
            raise ShapeError(f"interpolate resizes a map of 1 to 3 spatial axes after the channels; "
                             f"{fmt_shape(in_shapes[0])} is none")
        if _MODE_RANK.get(mode, axes) != axes:
            raise ShapeError(f"mode {mode} resizes {_MODE_RANK[mode]} spatial axes, not the {axes} of "
                             f"{fmt_shape(in_shapes[0])}")
        if size is not None and not isinstance(size, int) and len(size) != axes:
            raise ShapeError(f"size {list(size)} does not give one size per spatial axis of {fmt_shape(in_shapes[0])}")
        if (size is None) == (scale is None):
            raise ShapeError("give either size or scale_factor, not both or neither")
        if scale is not None and not scale > 0:
            raise ShapeError(f"scale_factor must be positive, got {scale:g}")
        if size is not None and attrs["recompute_scale_factor"]:
            raise ShapeError("recompute_scale_factor goes with scale_factor, not with size")
        if mode == "nearest" and attrs["align_corners"] is not None:
            raise ShapeError("align_corners goes with the linear modes and bicubic, not nearest")
        if size is not None and not isinstance(size, int) and len(set(size)) == 1:
            size = size[0]  # one size for every axis, as an int: the form torch's modules and ONNX give back
        attrs = {**attrs, "size": size,
                 "align_corners": None if mode == "nearest" else bool(attrs["align_corners"])}
        out = _out_sizes(attrs, in_shapes[0])
        if min(out) < 1:
            raise ShapeError(f"scale_factor {scale:g} shrinks the {fmt_shape(in_shapes[0][1:])} map to nothing")
        whole = scale is not None and all(_f32(scale) * n == o for n, o in zip(in_shapes[0][1:], out))
        copied = all(_copies({**attrs, "_axes": axes}, n, o) for n, o in zip(in_shapes[0][1:], out))
        if scale is not None and (attrs["recompute_scale_factor"] or attrs["align_corners"] and not whole or copied):
            attrs = {**attrs, "size": out if len(set(out)) > 1 else out[0], "scale_factor": None}
        return {**attrs, "recompute_scale_factor": None}

    def infer_shape(self, attrs, in_shapes):
        return (in_shapes[0][0], *_out_sizes(attrs, in_shapes[0]))

    def other_ops(self, attrs, in_shapes, out_shape):
        return _PER_OUTPUT[attrs["mode"]] * numel(out_shape)

    def window(self, attrs, in_shapes):
        """The height and width window (of a 3-d map too, as conv3d's); none for a 1-d map, whose length-only field
        archviz does not track (as conv1d)."""
        if len(in_shapes[0]) < 3:
            return None
        sizes = list(zip(in_shapes[0][-2:], _out_sizes(attrs, in_shapes[0])[-2:]))
        attrs = {**attrs, "_axes": len(in_shapes[0]) - 1}
        axes = [_axis_window(attrs, size, out) for size, out in sizes]
        if None in axes:
            return None
        kernel = tuple(_axis_kernel(attrs, n, out) for n, out in sizes)
        return Window(kernel=kernel, stride=tuple(s for s, _ in axes), padding=tuple(p for _, p in axes))

    def explain(self, attrs, in_shapes, out_shape):
        c, *spatial = in_shapes[0]
        if attrs["size"] is not None:
            how = "size " + " x ".join(str(n) for n in _sizes(attrs["size"], len(spatial)))
        else:
            how = " x ".join(f"floor({n} * {attrs['scale_factor']:g})" for n in spatial)
        return [Step("output shape", f"{c} channels x {how} ({attrs['mode']})", fmt_shape(out_shape)),
                Step("params", "resampling has no weights", 0)]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        per = _PER_OUTPUT[attrs["mode"]]
        what = _PER_OUTPUT_TEXT[attrs["mode"]]
        return Step("other ops", f"{what} per output element x {fmt_shape(out_shape)}",
                    fmt_int(per * numel(out_shape)))

    def summary(self, attrs):
        size = attrs["size"]
        shown = size if isinstance(size, int) else "x".join(map(str, size)) if size is not None else ""
        how = f"x{attrs['scale_factor']:g}" if attrs["scale_factor"] is not None else f"-> {shown}"
        corners = " align_corners" if attrs["align_corners"] else ""
        return f"{attrs['mode']} {how}{corners}"

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        size = attrs["size"]
        return nn.Upsample(size=tuple(size) if isinstance(size, (tuple, list)) else size,
                           scale_factor=attrs["scale_factor"], mode=attrs["mode"],
                           align_corners=attrs["align_corners"])

    def write_onnx(self, e, node, x):
        """ONNX Resize of the spatial axes (2, 3, ...): scales when a scale_factor was given (ONNX's size is floor(in * scale) and
        its coordinates x / scale, as torch's), else sizes (coordinates x * in/out). Nearest: asymmetric
        coordinates, floor; bilinear (linear) and bicubic (cubic, a = -0.75): half_pixel, or align_corners."""
        a = node.attrs
        if a["scale_factor"] is not None:
            spatial = {**a, "_axes": len(node.in_shapes[0]) - 1}
            scales = [_onnx_scale(spatial, n, out) for n, out in zip(node.in_shapes[0][1:], node.out_shape[1:])]
            inputs = [x[0], "", e.constant(f"{node.name}/scales", scales)]
        else:
            inputs = [x[0], "", "", e.constant(f"{node.name}/sizes", list(node.out_shape[1:]), "int64")]
        options = {"mode": _ONNX_MODES[a["mode"]], "axes": list(range(2, len(node.in_shapes[0]) + 1))}
        if a["mode"] == "nearest":
            options.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            options["coordinate_transformation_mode"] = "align_corners" if a["align_corners"] else "half_pixel"
        if a["mode"] == "bicubic":
            options["cubic_coeff_a"] = -0.75
        e.add("Resize", inputs, node.name, node.name, **options)
