"""Ops that traced PyTorch models use between their layers: element-wise product, stochastic depth, and the
cost-free moves reshape, permute and narrow.

Dims are counted as torch counts them, with the batch as dim 0 (as flatten and concat do); the batch always stays
first. The torch modules that rebuild these ops are in archviz/ops/modules.py.
"""

from __future__ import annotations

import math
from fractions import Fraction

from archviz.errors import ShapeError
from archviz.ops.base import (
    EVERYWHERE,
    INPUT_SAVED, NOTHING_SAVED, Arg, ArgKind, Example, Fill, Free, Kept, NoMacs, NoWindow, Op, OpKind, SameShape,
    Saved, SavesNothing, Shape, Step, Weight, Window, fmt_int, fmt_shape, numel, require_rank,
)
from archviz.ops.base import TorchinfoMacs, lazy_torch_classes
from archviz.ops.interop import (
    Mapped, NotRepresentable, Ref, Signature, TorchCalls, batch_dim, is_ref, join, module_args, onnx_as, onnx_join,
    onnx_reshape,
)
from archviz.ops.elementwise import reads_number, with_number
from archviz.ops.linear import read_embedding
from archviz.ops.registry import register


def broadcast(shapes) -> tuple[int, ...]:
    """torch's broadcast of shapes of one rank: each dim equal, or 1 on all but one side."""
    first = shapes[0]
    out = list(first)
    for other in shapes[1:]:
        if len(other) != len(first):
            raise ShapeError(f"shapes {fmt_shape(first)} and {fmt_shape(other)} have different ranks")
        for i, (a, b) in enumerate(zip(out, other)):
            if a != b and 1 not in (a, b):
                raise ShapeError(f"shapes {fmt_shape(first)} and {fmt_shape(other)} do not broadcast (dim {i + 1})")
            out[i] = max(a, b)
    return tuple(out)


@register
class Mul(NoWindow, NoMacs, Op):
    """Element-wise product of two or more tensors of one rank, broadcast as torch does (a squeeze-and-excitation
    block scales C x H x W by C x 1 x 1).

    Other ops: (inputs - 1) multiplies per output element. No params.
    """

    def saved(self, attrs, in_shapes, out_shape):
        """Every factor (each one's gradient is the product of the others); three or more multiply in turn, and each
        running product but the last is kept too."""
        running = tuple(Kept(numel(broadcast(in_shapes[:k]))) for k in range(2, len(in_shapes)))
        return Saved(inputs=tuple(range(len(in_shapes))), made=running)

    name = "mul"
    takes_folded_batch = True
    examples = (Example({}, ((3, 4, 5), (3, 4, 5))), Example({}, ((3, 4, 5), (3, 1, 1))))
    aliases = ("multiply",)
    kind = OpKind.JOIN
    keras_class = "Multiply"
    torch_class = "archviz Mul"
    torch_calls = TorchCalls(functions={
        name: Signature(("input", "other"), with_number(join("mul", "mul_param"), "mul"))
        for name in ("operator.mul", "operator.imul", "torch.mul", "Tensor.mul", "Tensor.mul_", "Tensor.__mul__",
                     "Tensor.__rmul__")})

    def write_onnx(self, e, node, x):
        product = x[0]
        for index, operand in enumerate(x[1:], start=1):
            last = index == len(x) - 1
            product = e.add("Mul", [product, operand], node.name if last else f"{node.name}/mul{index}",
                            node.name if index == 1 else f"{node.name}/Mul{index}")

    onnx_reads = {"Mul": reads_number(onnx_join("mul", "mul_param"), "mul")}
    min_inputs, max_inputs = 2, 64

    def infer_shape(self, attrs, in_shapes):
        return broadcast(in_shapes)

    def other_ops(self, attrs, in_shapes, out_shape):
        return (len(in_shapes) - 1) * numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        shapes = " * ".join(fmt_shape(s) for s in in_shapes)
        return [Step("output shape", f"{shapes} (element-wise, broadcast)", fmt_shape(out_shape))]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        value = self.other_ops(attrs, in_shapes, out_shape)
        return Step("other ops", f"({len(in_shapes)} inputs - 1) multiplies x {fmt_shape(out_shape)}", fmt_int(value))

    def build_torch(self, attrs, in_shapes):
        from archviz.ops.modules import Mul

        return Mul()


@register
class StochasticDepth(SameShape, Free, Op):
    """Stochastic depth (Huang et al. 2016; torchvision.ops.StochasticDepth): while training, drops a residual
    branch at random with probability p; at inference the identity. No cost counted, as for dropout.
    """

    def saved(self, attrs, in_shapes, out_shape):
        """Its keep-or-drop factor: one per sample (row mode) or one for the batch; with p = 0 nothing: torchvision
        hands the input back."""
        if not attrs["p"]:
            return NOTHING_SAVED
        return Saved(made=(Kept(1, per_sample=attrs["mode"] == "row"),))

    def output_is_input(self, attrs):
        return attrs["p"] == 0

    name = "stochastic_depth"
    takes_folded_batch = True
    examples = (Example({"p": 0.2}, ((3, 4, 5),)), Example({"p": 0.1, "mode": "batch"}, ((6,),)),
                Example({"p": 0.0}, ((3, 4, 5),)))
    aliases = ("drop_path",)
    kind = OpKind.REGULARIZATION
    torch_class = "torchvision.ops.StochasticDepth"
    torch_calls = TorchCalls(
        modules={"torchvision.ops.StochasticDepth": module_args("stochastic_depth", "p", "mode")},
        functions={"torchvision.ops.stochastic_depth.stochastic_depth": Signature(
            ("input", "p", "mode", "training"),
            lambda a, out: Mapped("stochastic_depth", {"p": a["p"], "mode": a["mode"]}, (a["input"],))
            if is_ref(a["input"]) else None, {"training": True})})
    write_onnx = onnx_as("Identity")  # the identity at inference
    keras_class = "StochasticDepth"
    args = (
        Arg("p", ArgKind.FLOAT, 0.0, doc="probability of dropping the branch while training"),
        Arg("mode", ArgKind.CHOICE, "row", choices=("row", "batch"), doc="per sample (row) or per batch"),
    )

    def summary(self, attrs):
        return f"p={attrs['p']:g}"

    def build_torch(self, attrs, in_shapes):
        from torchvision.ops import StochasticDepth

        return StochasticDepth(attrs["p"], attrs["mode"])


def reshape_to(x: Ref, out: Shape) -> Mapped:
    """A view of x as `out`: flatten where it merges one span of dims (x.view(n, -1)), else reshape."""
    shape = x.shape
    for start in range(len(shape)):
        for end in range(len(shape) - 1, start, -1):  # the widest span first: x.view(n, -1) is flatten(1, -1)
            if (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:]) == tuple(out):
                return Mapped("flatten", {"start_dim": start + 1, "end_dim": -1 if end == len(shape) - 1 else end + 1},
                              (x,))
    return Mapped("reshape", {"shape": list(out)}, (x,))


def _read_reshape(r):
    """Reshape, Squeeze, Unsqueeze: the same shape (identity), dims merged (flatten), else reshape."""
    before, after = r.shape(r.activation()), r.output_shape()
    if after is None or after[:1] != before[:1]:
        raise NotRepresentable("the batch dim does not stay first" if after else "its output shape is not known")
    old, new = before[1:], after[1:]
    if old == new:
        return r.layer("identity")
    for start in range(len(old)):
        for stop in range(start + 2, len(old) + 1):
            if new == (*old[:start], numel(old[start:stop]), *old[stop:]):
                return r.layer("flatten", {"start_dim": start + 1, "end_dim": stop})
    if not new:
        raise NotRepresentable(f"{fmt_shape(old)} -> {fmt_shape(new)} is not a flatten")
    return r.layer("reshape", {"shape": list(new)})


def _read_transpose(r):
    rank = len(r.shape(r.activation()))
    perm = list(r.attrs.get("perm", range(rank - 1, -1, -1)))
    if perm[:1] != [0]:
        raise NotRepresentable("the batch dim does not stay first")
    return r.layer("permute", {"dims": perm[1:]})


def _read_split(r):
    """ONNX Split: each output read is a narrow of the input (a select where one entry of a batch moved inward is
    taken and the dim dropped from the per-sample shape: attention's q, k, v out of (3, B, ...))."""
    shape = r.shape(r.activation())
    axis = r.attrs.get("axis", 0) % len(shape)
    if axis == 0:
        raise NotRepresentable("it splits the batch")
    sizes = r.attrs.get("split") if r.opset < 13 else r.constant(1, None)
    count = len(r.node.output)
    if sizes is None:
        sizes = [-(-shape[axis] // count)] * count
        sizes[-1] = shape[axis] - sum(sizes[:-1])
    sizes = sizes if isinstance(sizes, list) else [sizes]
    if len(sizes) != count or sum(sizes) != shape[axis] or min(sizes) < 1:
        raise NotRepresentable(f"sizes {sizes} do not split {shape[axis]}")
    layers = []
    for k, name in r.used_outputs():
        start, after = sum(sizes[:k]), r.output_shape_of(name)
        if sizes[k] == 1 and after is not None and len(after) == len(shape) - 1:
            layers.append(r.layer("select", {"dim": axis, "index": start}, output=name))
        else:
            layers.append(r.layer("narrow", {"dim": axis, "start": start, "length": sizes[k]}, output=name))
    return tuple(layers)


def _read_slice(r):
    """One axis, the batch kept: narrow with step 1, strided_slice with a larger step."""
    shape = r.shape(r.activation())
    if r.opset < 10:
        raise NotRepresentable(f"opset {r.opset} Slice")
    starts, ends = r.constant(1), r.constant(2)
    axes, steps = r.constant(3, list(range(len(shape)))), r.constant(4, 1)
    values = [v if isinstance(v, list) else [v] for v in (starts, ends, axes, steps)]
    if any(len(v) != 1 for v in values) or values[3][0] < 1:
        raise NotRepresentable("it slices several axes, or backwards")
    (start,), (end,), (axis,), (step,) = values
    axis %= len(shape)
    size = shape[axis]
    start, end = (max(0, min(v + size if v < 0 else v, size)) for v in (start, end))
    if axis == 0 or end <= start:
        raise NotRepresentable("it slices the batch, or nothing")
    if step > 1:
        count = len(range(start, end, step))
        return r.layer("strided_slice", {"dim": axis, "start": start, "stop": start + (count - 1) * step + 1,
                                         "step": step})
    return r.layer("narrow", {"dim": axis, "start": start, "length": end - start})


def _sizes(values) -> bool:
    """Whether a view's arguments are sizes (x.view(n, -1), x.view((n, -1))), not a dtype (x.view(torch.half))."""
    return all(isinstance(v, int) and not isinstance(v, bool) or isinstance(v, (tuple, list)) and _sizes(v)
               for v in values)


def _view(a, out):
    shape = a["shape"]
    if not is_ref(a["input"]) or not _sizes(shape if isinstance(shape, (tuple, list)) else (shape,)):
        return None
    return reshape_to(a["input"], out)


def _unflatten(a, out):
    """torch.unflatten / x.unflatten(dim, sizes): one non-batch dim split into `sizes`, a reshape to the output."""
    x = a["input"]
    if not is_ref(x) or not batch_dim(a["dim"], len(x.shape) + 1):
        return None
    return Mapped("reshape", {"shape": list(out)}, (x,))


def _unflatten_module(m, refs):
    """nn.Unflatten(dim, unflattened_size): the output shape from the input's (a -1 in the sizes takes the rest)."""
    (x,) = refs
    dim = batch_dim(m.dim, len(x.shape) + 1) if isinstance(m.dim, int) else None
    sizes = list(m.unflattened_size)
    if not dim or not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes):
        return None
    size = x.shape[dim - 1]
    known = math.prod(v for v in sizes if v != -1)
    if sizes.count(-1) > 1 or known <= 0 or size % known:
        return None
    sizes = [size // known if v == -1 else v for v in sizes]
    if math.prod(sizes) != size:
        return None
    return Mapped("reshape", {"shape": [*x.shape[:dim - 1], *sizes, *x.shape[dim:]]}, (x,))


def _squeeze(a, out):
    """torch.squeeze / x.squeeze(dim): only with a dim (or dims) that is not the batch; x.squeeze() could drop a
    batch of one, so it stays opaque."""
    x, dims = a["input"], a["dim"]
    if not is_ref(x):
        return None
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    rank = len(x.shape) + 1
    if not dims or not all(batch_dim(d, rank) for d in dims):
        return None
    return reshape_to(x, out)


def _unsqueeze(a, out):
    """torch.unsqueeze / x.unsqueeze(dim): a new dim of size 1 after the batch (dim 0, before it, is refused)."""
    x = a["input"]
    if not is_ref(x) or not batch_dim(a["dim"], len(x.shape) + 2):
        return None
    return Mapped("reshape", {"shape": list(out)}, (x,))


_VIEW = Signature(("input", "*shape"), _view)
_UNFLATTEN = Signature(("input", "dim", "sizes"), _unflatten)
_SQUEEZE = Signature(("input", "dim"), _squeeze)  # x.squeeze() binds no dim: opaque
_UNSQUEEZE = Signature(("input", "dim"), _unsqueeze)


@register
class Reshape(SavesNothing, NoWindow, Free, Op):
    """A view of the same elements in another shape (torch's view/reshape, the batch kept). No cost.

    Traced from view/reshape, and from the moves that are views of the same elements in another shape (torch docs):
    unflatten (nn.Unflatten, torch.unflatten, Tensor.unflatten) and squeeze/unsqueeze with a dim that is not the
    batch; one that merges a span of dims reads as flatten.
    """

    name = "reshape"
    returns_view = True
    takes_folded_batch = True
    examples = (Example({"shape": [12, 5]}, ((3, 4, 5),)), Example({"shape": [60]}, ((3, 4, 5),)))
    aliases = ("view",)
    kind = OpKind.RESHAPE
    keras_class = "Reshape"
    torch_class = "archviz Reshape"
    torch_calls = TorchCalls(
        modules={"torch.nn.Unflatten": _unflatten_module},
        functions={"torch.reshape": Signature(("input", "shape"), _view), "Tensor.view": _VIEW,
                   "Tensor.reshape": _VIEW, "torch.unflatten": _UNFLATTEN, "Tensor.unflatten": _UNFLATTEN,
                   "torch.squeeze": _SQUEEZE, "Tensor.squeeze": _SQUEEZE, "torch.unsqueeze": _UNSQUEEZE,
                   "Tensor.unsqueeze": _UNSQUEEZE})

    def write_onnx(self, e, node, x):
        onnx_reshape(e, node, x, node.attrs["shape"])

    onnx_reads = {"Reshape": _read_reshape, "Squeeze": _read_reshape, "Unsqueeze": _read_reshape}
    args = (Arg("shape", ArgKind.SHAPE, doc="the new shape without the batch, e.g. [2, 58, 28, 28]"),)

    def resolve(self, attrs, in_shapes):
        shape = tuple(attrs["shape"])
        if numel(shape) != numel(in_shapes[0]):
            raise ShapeError(f"cannot view {fmt_shape(in_shapes[0])} ({numel(in_shapes[0]):,} elements) as "
                             f"{fmt_shape(shape)} ({numel(shape):,} elements)")
        return {**attrs, "shape": shape}

    def infer_shape(self, attrs, in_shapes):
        return tuple(attrs["shape"])

    def explain(self, attrs, in_shapes, out_shape):
        return [Step("output shape", f"the {fmt_int(numel(out_shape))} elements of {fmt_shape(in_shapes[0])}, "
                                     "viewed", fmt_shape(out_shape))]

    def summary(self, attrs):
        return f"-> {fmt_shape(attrs['shape'])}"

    def build_torch(self, attrs, in_shapes):
        from archviz.ops.modules import Reshape

        return Reshape(attrs["shape"])


def _permute(a, out):
    x, dims = a["input"], a["dims"]
    if not is_ref(x):
        return None
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = tuple(dims[0])
    rank = len(x.shape) + 1
    normal = [batch_dim(d, rank) for d in dims]
    if None in normal or len(normal) != rank or normal[0] != 0:
        return None
    return Mapped("permute", {"dims": normal[1:]}, (x,))


def _transpose(a, out):
    x = a["input"]
    if not is_ref(x):
        return None
    rank = len(x.shape) + 1
    d0, d1 = batch_dim(a["dim0"], rank), batch_dim(a["dim1"], rank)
    if not d0 or not d1:
        return None
    dims = list(range(1, rank))
    dims[d0 - 1], dims[d1 - 1] = dims[d1 - 1], dims[d0 - 1]
    return Mapped("permute", {"dims": dims}, (x,))


_TRANSPOSE = Signature(("input", "dim0", "dim1"), _transpose)
_SWAPAXES = Signature(("input", "axis0", "axis1"), lambda a, out: _transpose(
    {"input": a["input"], "dim0": a["axis0"], "dim1": a["axis1"]}, out))


def _read_depth_to_space(r):
    if r.attrs.get("mode", "DCR") != "CRD":
        raise NotRepresentable("mode DCR orders the channels depth first; torch's pixel_shuffle is CRD")
    r.shape(r.activation(), 4)
    return r.layer("pixel_shuffle", {"upscale_factor": r.attrs["blocksize"]})


@register
class PixelShuffle(SavesNothing, Free, Op):
    """Depth to space (Shi et al. 2016, "Real-time single image and video super-resolution using an efficient
    sub-pixel convolutional neural network"; torch.nn.PixelShuffle): C*r^2 x H x W becomes C x H*r x W*r, output
    (c, h*r + i, w*r + j) taken from input (c*r^2 + i*r + j, h, w). No params; moves data, so no MACs or other ops.

    Window: each output position comes from one input position, floor(h / r): kernel 1 at stride 1/r, padding
    (r - 1) / 2r, so a unit's centre sits at (h + 1/2) / r - 1/2 input pixels and the jump shrinks by r
    (the receptive-field recursion of Araujo et al. 2019 with a fractional stride).
    """

    name = "pixel_shuffle"
    examples = (Example({"upscale_factor": 2}, ((8, 3, 4),)), Example({"upscale_factor": 3}, ((9, 2, 2),)))
    aliases = ("depth_to_space",)
    kind = OpKind.RESHAPE
    keras_class = "DepthToSpace"
    torch_class = "nn.PixelShuffle"
    args = (Arg("upscale_factor", ArgKind.INT, aliases=("r", "block_size"), doc="r: each side grows r times"),)
    torch_calls = TorchCalls(
        modules={"torch.nn.PixelShuffle": module_args("pixel_shuffle", "upscale_factor")},
        functions={path: Signature(("input", "upscale_factor"), lambda a, out: Mapped(
            "pixel_shuffle", {"upscale_factor": a["upscale_factor"]}, (a["input"],)) if is_ref(a["input"]) else None)
            for path in ("torch.nn.functional.pixel_shuffle", "torch.pixel_shuffle")})
    onnx_reads = {"DepthToSpace": _read_depth_to_space}
    write_onnx = onnx_as("DepthToSpace", lambda a: {"blocksize": a["upscale_factor"], "mode": "CRD"})

    def resolve(self, attrs, in_shapes):
        require_rank(self, in_shapes[0], 3, "C x H x W")
        r = attrs["upscale_factor"]
        if in_shapes[0][0] % (r * r):
            raise ShapeError(f"{in_shapes[0][0]} channels are not divisible by upscale_factor^2 = {r * r}")
        return attrs

    def infer_shape(self, attrs, in_shapes):
        (c, h, w), r = in_shapes[0], attrs["upscale_factor"]
        return (c // (r * r), h * r, w * r)

    def window(self, attrs, in_shapes):
        r = attrs["upscale_factor"]
        return Window(kernel=(1, 1), stride=(Fraction(1, r),) * 2, padding=(Fraction(r - 1, 2 * r),) * 2)

    def explain(self, attrs, in_shapes, out_shape):
        (c, h, w), r = in_shapes[0], attrs["upscale_factor"]
        return [Step("output shape", f"{c}/{r}^2 channels x {h}*{r} x {w}*{r}", fmt_shape(out_shape)),
                Step("params", "a rearrangement has no weights", 0)]

    def summary(self, attrs):
        return f"x{attrs['upscale_factor']}"

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.PixelShuffle(attrs["upscale_factor"])


def _read_pixel_unshuffle(r):
    """The function archviz writes: the factor is the ratio of the input's height to the output's."""
    (_, _, height, _), (_, _, out_height, _) = r.shape(r.activation(), 4), r.shape(r.output, 4)
    return r.layer("pixel_unshuffle", {"downscale_factor": height // out_height})


@register
class PixelUnshuffle(SavesNothing, Free, Op):
    """Space to depth, the inverse of pixel_shuffle (torch.nn.PixelUnshuffle): C x H*r x W*r becomes C*r^2 x H x W,
    output (c*r^2 + i*r + j, h, w) taken from input (c, h*r + i, w*r + j). No params; moves data, so no MACs or
    other ops.

    Window: each output position gathers an r x r block of the input: kernel r, stride r, no padding, as a
    non-overlapping r x r pool would.
    """

    name = "pixel_unshuffle"
    examples = (Example({"downscale_factor": 2}, ((2, 6, 8),)), Example({"downscale_factor": 3}, ((1, 9, 6),)))
    aliases = ("space_to_depth",)
    kind = OpKind.RESHAPE
    keras_class = "SpaceToDepth"
    torch_class = "nn.PixelUnshuffle"
    args = (Arg("downscale_factor", ArgKind.INT, aliases=("r", "block_size"), doc="r: each side shrinks r times"),)
    torch_calls = TorchCalls(
        modules={"torch.nn.PixelUnshuffle": module_args("pixel_unshuffle", "downscale_factor")},
        functions={path: Signature(("input", "downscale_factor"), lambda a, out: Mapped(
            "pixel_unshuffle", {"downscale_factor": a["downscale_factor"]}, (a["input"],))
            if is_ref(a["input"]) else None)
            for path in ("torch.nn.functional.pixel_unshuffle", "torch.pixel_unshuffle")})
    onnx_reads = {"archviz::PixelUnshuffle": _read_pixel_unshuffle}  # ONNX's SpaceToDepth orders channels otherwise

    def resolve(self, attrs, in_shapes):
        require_rank(self, in_shapes[0], 3, "C x H x W")
        r = attrs["downscale_factor"]
        if in_shapes[0][1] % r or in_shapes[0][2] % r:
            raise ShapeError(f"a {fmt_shape(in_shapes[0][1:])} map does not divide into {r}x{r} blocks")
        return attrs

    def infer_shape(self, attrs, in_shapes):
        (c, h, w), r = in_shapes[0], attrs["downscale_factor"]
        return (c * r * r, h // r, w // r)

    def window(self, attrs, in_shapes):
        r = attrs["downscale_factor"]
        return Window(kernel=(r, r), stride=(r, r), padding=(0, 0))

    def explain(self, attrs, in_shapes, out_shape):
        (c, h, w), r = in_shapes[0], attrs["downscale_factor"]
        return [Step("output shape", f"{c}*{r}^2 channels x {h}/{r} x {w}/{r}", fmt_shape(out_shape)),
                Step("params", "a rearrangement has no weights", 0)]

    def summary(self, attrs):
        return f"/{attrs['downscale_factor']}"

    def write_onnx(self, e, node, x):
        """Reshape to (N, C, H, r, W, r), move both r in front of H and W, merge them into the channels: the
        model-local function archviz.PixelUnshuffle (ONNX's SpaceToDepth puts the block offset before the channel)."""
        (c, h, w), r = node.in_shapes[0], node.attrs["downscale_factor"]
        e.function("PixelUnshuffle", ["X", "blocks", "merged"], ["Y"], [
            ("Reshape", ["X", "blocks"], ["B"]), ("Transpose", ["B"], ["T"], {"perm": [0, 1, 3, 5, 2, 4]}),
            ("Reshape", ["T", "merged"], ["Y"])], doc="torch.nn.PixelUnshuffle: space to depth, channel-major")
        blocks = e.constant(f"{node.name}/blocks", [0, c, h // r, r, w // r, r], "int64")
        merged = e.constant(f"{node.name}/merged", [0, c * r * r, h // r, w // r], "int64")
        e.add("PixelUnshuffle", [x[0], blocks, merged], node.name, node.name, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.PixelUnshuffle(attrs["downscale_factor"])


@register
class Permute(SavesNothing, NoWindow, Free, Op):
    """The dims in another order (torch's permute and transpose, the batch kept first). No cost.

    dims lists every non-batch dim in torch counting: [2, 3, 1] turns N x C x H x W into N x H x W x C.
    """

    name = "permute"
    returns_view = True
    takes_folded_batch = True
    examples = (Example({"dims": [2, 3, 1]}, ((3, 4, 5),)), Example({"dims": [1, 3, 2]}, ((3, 4, 5),)))
    kind = OpKind.RESHAPE
    keras_class = "Permute"
    torch_class = "archviz Permute"
    torch_calls = TorchCalls(functions={
        "torch.permute": Signature(("input", "dims"), lambda a, out: _permute({**a, "dims": (a["dims"],)}, out)),
        "Tensor.permute": Signature(("input", "*dims"), _permute),
        "torch.transpose": _TRANSPOSE, "torch.swapaxes": _SWAPAXES, "Tensor.transpose": _TRANSPOSE,
        "Tensor.swapaxes": _SWAPAXES})
    write_onnx = onnx_as("Transpose", lambda a: {"perm": [0, *a["dims"]]})
    onnx_reads = {"Transpose": _read_transpose}
    args = (Arg("dims", ArgKind.SHAPE, doc="the order of the non-batch dims, torch counting (batch = 0)"),)

    def resolve(self, attrs, in_shapes):
        dims = tuple(attrs["dims"])
        if sorted(dims) != list(range(1, len(in_shapes[0]) + 1)):
            raise ShapeError(f"dims {list(dims)} is not an order of the dims 1..{len(in_shapes[0])} of a "
                             f"{fmt_shape(in_shapes[0])} input (the batch, dim 0, stays first)")
        return {**attrs, "dims": dims}

    def infer_shape(self, attrs, in_shapes):
        return tuple(in_shapes[0][d - 1] for d in attrs["dims"])

    def explain(self, attrs, in_shapes, out_shape):
        order = ", ".join(str(d) for d in attrs["dims"])
        return [Step("output shape", f"dims of {fmt_shape(in_shapes[0])} in the order 0, {order}",
                     fmt_shape(out_shape))]

    def summary(self, attrs):
        return "0," + ",".join(str(d) for d in attrs["dims"])

    def build_torch(self, attrs, in_shapes):
        from archviz.ops.modules import Permute

        return Permute(attrs["dims"])


def _narrow(a, out):
    """x.narrow(dim, start, length) or torch.narrow: a slice of a non-batch dim (a negative start counts from the end)."""
    x, start, length = a["input"], a["start"], a["length"]
    if not is_ref(x) or not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, length)):
        return None
    rank = len(x.shape) + 1
    dim = batch_dim(a["dim"], rank)
    if not dim:
        return None
    size = x.shape[dim - 1]
    return Mapped("narrow", {"dim": dim, "start": start % size if start < 0 else start, "length": length}, (x,))


_NARROW = Signature(("input", "dim", "start", "length"), _narrow)


def _piece(source: Ref, dim, pieces: list[Shape], index: int) -> Mapped | None:
    """Piece `index` of a chunk or split of `source` along `dim` (torch counting) as a narrow."""
    dim = batch_dim(dim, len(source.shape) + 1) if dim is not None else None
    if not dim:
        return None
    start = sum(shape[dim - 1] for shape in pieces[:index])
    return Mapped("narrow", {"dim": dim, "start": start, "length": pieces[index][dim - 1]}, (source,))


@register
class Narrow(SavesNothing, Free, Op):
    """`length` consecutive entries of one dim from `start` (torch's narrow; each piece of chunk or split). No cost."""

    name = "narrow"
    returns_view = True
    takes_folded_batch = True
    examples = (Example({"dim": 1, "start": 1, "length": 2}, ((3, 4, 5),)), Example({"dim": 3, "length": 3}, ((3, 4, 5),)),
                Example({"dim": 2, "start": 1, "length": 2}, ((2, 5, 4),)), Example({"dim": 2, "length": 4}, ((6, 5),)))
    aliases = ("slice",)
    kind = OpKind.RESHAPE
    keras_class = "Cropping"
    torch_class = "archviz Narrow"
    torch_calls = TorchCalls(functions={"torch.narrow": _NARROW, "Tensor.narrow": _NARROW},
                             pieces={name: _piece for name in ("torch.chunk", "torch.split", "torch.tensor_split",
                                                               "Tensor.chunk", "Tensor.split", "Tensor.tensor_split")})

    def write_onnx(self, e, node, x):
        a = node.attrs
        bounds = [e.constant(f"{node.name}/{name}", [value], "int64") for name, value in
                  (("starts", a["start"]), ("ends", a["start"] + a["length"]), ("axes", a["dim"]))]
        e.add("Slice", [x[0], *bounds], node.name, node.name)

    onnx_reads = {"Slice": _read_slice, "Split": _read_split}
    args = (
        Arg("dim", ArgKind.INT, doc="torch counting: the batch is dim 0 and cannot be narrowed"),
        Arg("start", ArgKind.NONNEG_INT, 0),
        Arg("length", ArgKind.INT),
    )

    def resolve(self, attrs, in_shapes):
        shape = in_shapes[0]
        if not 1 <= attrs["dim"] <= len(shape):
            raise ShapeError(f"dim {attrs['dim']} is not a non-batch dim of a {fmt_shape(shape)} input")
        size = shape[attrs["dim"] - 1]
        if attrs["start"] + attrs["length"] > size:
            raise ShapeError(f"start {attrs['start']} + length {attrs['length']} passes the end of dim "
                             f"{attrs['dim']} (size {size})")
        return attrs

    def infer_shape(self, attrs, in_shapes):
        shape = list(in_shapes[0])
        shape[attrs["dim"] - 1] = attrs["length"]
        return tuple(shape)

    def window(self, attrs, in_shapes):
        """A crop of a map's height or width: output position t is input position t + start, a window of one with
        the start as negative padding (the field's centre moves by start, Araujo et al. eq. 3)."""
        if len(in_shapes[0]) != 3 or attrs["dim"] == 1:
            return None
        shift = [0, 0]
        shift[attrs["dim"] - 2] = -attrs["start"]
        return Window(kernel=(1, 1), stride=(1, 1), padding=tuple(shift))

    def explain(self, attrs, in_shapes, out_shape):
        start, length = attrs["start"], attrs["length"]
        return [Step("output shape", f"entries {start}..{start + length - 1} of dim {attrs['dim']} of "
                                     f"{fmt_shape(in_shapes[0])}", fmt_shape(out_shape))]

    def summary(self, attrs):
        return f"dim {attrs['dim']} [{attrs['start']}:{attrs['start'] + attrs['length']}]"

    def build_torch(self, attrs, in_shapes):
        from archviz.ops.modules import Narrow

        return Narrow(attrs["dim"], attrs["start"], attrs["length"])


def _index(a, out):
    """x[...] of a traced tensor: slices, ints and an Ellipsis, the batch's `:` kept. One dim indexed becomes one op:
    a slice of step 1 narrow, a larger step strided_slice, an int select (the dim dropped); none indexed the identity.
    Several dims at once, None (a new axis), a negative step, tensors as indices, or an empty result: opaque."""
    x, index = a["input"], a["index"]
    if not is_ref(x):
        return None
    items = list(index) if isinstance(index, tuple) else [index]
    rank = len(x.shape) + 1
    if items.count(Ellipsis) > 1:
        return None
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (rank - len(items) + 1)
    if len(items) > rank or not all(isinstance(i, slice) or isinstance(i, int) and not isinstance(i, bool)
                                    for i in items):
        return None
    items += [slice(None)] * (rank - len(items))
    full = slice(None)
    if items[0] != full:
        return None  # the batch is never indexed
    if any(isinstance(i, slice) and not all(v is None or isinstance(v, int) and not isinstance(v, bool)
                                            for v in (i.start, i.stop, i.step)) for i in items):
        return None
    whole = lambda d, i: isinstance(i, slice) and range(*i.indices(x.shape[d - 1])) == range(x.shape[d - 1])  # noqa
    chosen = [(d, i) for d, i in enumerate(items) if d and not whole(d, i)]
    if not chosen:
        return Mapped("identity", {}, (x,))
    if len(chosen) != 1:
        return None
    (dim, item), size = chosen[0], x.shape[chosen[0][0] - 1]
    if isinstance(item, int):
        return Mapped("select", {"dim": dim, "index": item % size}, (x,)) if -size <= item < size else None
    picked = range(*item.indices(size))
    if picked.step < 1 or not picked:
        return None
    if picked.step == 1:
        return Mapped("narrow", {"dim": dim, "start": picked.start, "length": len(picked)}, (x,))
    return Mapped("strided_slice", {"dim": dim, "start": picked.start, "stop": picked[-1] + 1, "step": picked.step},
                  (x,))


@register
class StridedSlice(SavesNothing, Free, Op):
    """Every `step`-th entry of one dim from `start` up to `stop` (x[:, :, start:stop:step], torch's basic indexing;
    a step of 1 is narrow). No cost: a view.

    Output length along `dim`: ceil((stop - start) / step), Python's len(range(start, stop, step)); stop is kept as
    one past the last entry taken, start + (length - 1) * step + 1.

    Window, along a map's height or width: output position t is input position start + t * step, a window of one at
    stride `step` with the start as negative padding (Araujo et al. 2019, eq. 1-3).
    """

    name = "strided_slice"
    returns_view = True
    takes_folded_batch = True
    examples = (Example({"dim": 3, "start": 0, "stop": 5, "step": 2}, ((3, 4, 5),)),
                Example({"dim": 2, "start": 1, "stop": 6, "step": 3}, ((2, 7, 4),)),
                Example({"dim": 1, "start": 1, "stop": 4, "step": 2}, ((5, 3, 3),)),
                Example({"dim": 2, "start": 0, "stop": 9, "step": 4}, ((2, 10),)))
    kind = OpKind.RESHAPE
    torch_class = "archviz StridedSlice"
    torch_calls = TorchCalls(functions={"operator.getitem": Signature(("input", "index"), _index)})
    args = (
        Arg("dim", ArgKind.INT, doc="torch counting: the batch is dim 0 and cannot be sliced"),
        Arg("start", ArgKind.NONNEG_INT, 0),
        Arg("stop", ArgKind.INT, doc="one past the last entry (at most the dim's size)"),
        Arg("step", ArgKind.INT, 1),
    )

    def write_onnx(self, e, node, x):
        a = node.attrs
        bounds = [e.constant(f"{node.name}/{name}", [value], "int64") for name, value in
                  (("starts", a["start"]), ("ends", a["stop"]), ("axes", a["dim"]), ("steps", a["step"]))]
        e.add("Slice", [x[0], *bounds], node.name, node.name)

    def resolve(self, attrs, in_shapes):
        shape = in_shapes[0]
        if not 1 <= attrs["dim"] <= len(shape):
            raise ShapeError(f"dim {attrs['dim']} is not a non-batch dim of a {fmt_shape(shape)} input")
        size, start, stop, step = shape[attrs["dim"] - 1], attrs["start"], attrs["stop"], attrs["step"]
        if not start < stop <= size:
            raise ShapeError(f"{start}:{stop} is not a non-empty range of dim {attrs['dim']} (size {size})")
        count = len(range(start, stop, step))
        return {**attrs, "stop": start + (count - 1) * step + 1}

    def length(self, attrs) -> int:
        return len(range(attrs["start"], attrs["stop"], attrs["step"]))

    def infer_shape(self, attrs, in_shapes):
        shape = list(in_shapes[0])
        shape[attrs["dim"] - 1] = self.length(attrs)
        return tuple(shape)

    def window(self, attrs, in_shapes):
        if len(in_shapes[0]) != 3 or attrs["dim"] == 1:
            return None
        stride, shift = [1, 1], [0, 0]
        stride[attrs["dim"] - 2], shift[attrs["dim"] - 2] = attrs["step"], -attrs["start"]
        return Window(kernel=(1, 1), stride=tuple(stride), padding=tuple(shift))

    def explain(self, attrs, in_shapes, out_shape):
        start, stop, step = attrs["start"], attrs["stop"], attrs["step"]
        return [Step("output shape", f"entries {start}, {start + step}, ... up to {stop - 1} of dim {attrs['dim']} of "
                                     f"{fmt_shape(in_shapes[0])}: ceil(({stop} - {start}) / {step}) = "
                                     f"{self.length(attrs)}", fmt_shape(out_shape))]

    def summary(self, attrs):
        return f"dim {attrs['dim']} [{attrs['start']}:{attrs['stop']}:{attrs['step']}]"

    def build_torch(self, attrs, in_shapes):
        return __getattr__("StridedSliceModule")(attrs["dim"], attrs["start"], attrs["stop"], attrs["step"])


def _select(a, out):
    """torch.select / x.select(dim, index): one entry of a non-batch dim, the dim dropped."""
    x, index = a["input"], a["index"]
    if not is_ref(x) or isinstance(index, bool) or not isinstance(index, int):
        return None
    dim = batch_dim(a["dim"], len(x.shape) + 1)
    if not dim or not -x.shape[dim - 1] <= index < x.shape[dim - 1]:
        return None
    return Mapped("select", {"dim": dim, "index": index % x.shape[dim - 1]}, (x,))


def _unbound(source: Ref, dim, pieces: list[Shape], index: int) -> Mapped | None:
    """Item `index` of torch.unbind / x.unbind(dim): select(dim, index). The dim is read from the pieces' shapes (the
    tracer reads a split's dim from its third argument, unbind's is its second); where two dims would give the same
    pieces, the one the call names must be among them."""
    shape = source.shape
    fits = [d for d in range(1, len(shape) + 1)
            if shape[d - 1] == len(pieces) and all(tuple(p) == shape[:d - 1] + shape[d:] for p in pieces)]
    named = batch_dim(dim, len(shape) + 1) if dim is not None else None
    chosen = named if named in fits else (fits[0] if len(fits) == 1 else None)
    return None if not chosen else Mapped("select", {"dim": chosen, "index": index}, (source,))


def _read_gather(r):
    """ONNX Gather of one constant index (a scalar) along a non-batch axis: select; of rows of a stored table by
    computed indices: embedding (archviz/ops/linear.py)."""
    if r.computed(1) and not r.computed(0):
        return read_embedding(r)
    shape = r.shape(r.activation())
    index = r.constant(1)
    axis = r.attrs.get("axis", 0) % len(shape)
    after = r.output_shape()
    if not isinstance(index, int) or axis == 0 or after is None or len(after) != len(shape) - 1:
        raise NotRepresentable("it gathers several entries, or along the batch")
    return r.layer("select", {"dim": axis, "index": index % shape[axis]})


_SELECT = Signature(("input", "dim", "index"), _select)


@register
class Select(SavesNothing, NoWindow, Free, Op):
    """One entry of a non-batch dim, the dim dropped (torch.select, x[:, i]; each item of torch.unbind). No cost:
    a view. The output keeps no map's position: a C x H x W input indexed along its height gives C x W, so no window.
    """

    name = "select"
    returns_view = True
    takes_folded_batch = True
    examples = (Example({"dim": 1, "index": 2}, ((3, 4, 5),)), Example({"dim": 3, "index": 0}, ((3, 4, 5),)),
                Example({"dim": 2, "index": 3}, ((6, 5),)), Example({"dim": 2, "index": 1}, ((2, 3, 4, 5),)))
    kind = OpKind.RESHAPE
    torch_class = "archviz Select"
    torch_calls = TorchCalls(functions={"torch.select": _SELECT, "Tensor.select": _SELECT},
                             pieces={"torch.unbind": _unbound, "Tensor.unbind": _unbound})
    onnx_reads = {"Gather": _read_gather}
    args = (
        Arg("dim", ArgKind.INT, doc="torch counting: the batch is dim 0 and cannot be indexed"),
        Arg("index", ArgKind.NONNEG_INT, doc="the entry kept, counted from 0"),
    )

    def write_onnx(self, e, node, x):
        index = e.constant(f"{node.name}/index", node.attrs["index"], "int64")  # a scalar: the axis is dropped
        e.add("Gather", [x[0], index], node.name, node.name, axis=node.attrs["dim"])

    def resolve(self, attrs, in_shapes):
        shape = in_shapes[0]
        if not 1 <= attrs["dim"] <= len(shape):
            raise ShapeError(f"dim {attrs['dim']} is not a non-batch dim of a {fmt_shape(shape)} input")
        if attrs["index"] >= shape[attrs["dim"] - 1]:
            raise ShapeError(f"index {attrs['index']} is past the end of dim {attrs['dim']} "
                             f"(size {shape[attrs['dim'] - 1]})")
        return attrs

    def infer_shape(self, attrs, in_shapes):
        shape = in_shapes[0]
        return (*shape[:attrs["dim"] - 1], *shape[attrs["dim"]:])

    def explain(self, attrs, in_shapes, out_shape):
        return [Step("output shape", f"entry {attrs['index']} of dim {attrs['dim']} of {fmt_shape(in_shapes[0])}, "
                                     "that dim dropped", fmt_shape(out_shape))]

    def summary(self, attrs):
        return f"dim {attrs['dim']} [{attrs['index']}]"

    def build_torch(self, attrs, in_shapes):
        return __getattr__("SelectModule")(attrs["dim"], attrs["index"])


def _roll(a, out):
    """torch.roll / x.roll(shifts, dims) over non-batch dims: the shifts of each dim summed and taken modulo its size
    (torch rolls dim by dim); no dims (the flattened tensor, batch included) is refused."""
    x, shifts, dims = a["input"], a["shifts"], a["dims"]
    if not is_ref(x) or dims is None or dims == ():
        return None
    shifts = list(shifts) if isinstance(shifts, (tuple, list)) else [shifts]
    dims = list(dims) if isinstance(dims, (tuple, list)) else [dims]
    if len(shifts) != len(dims) or not all(isinstance(v, int) and not isinstance(v, bool) for v in shifts):
        return None
    rank, total = len(x.shape) + 1, {}
    for shift, dim in zip(shifts, dims):
        dim = batch_dim(dim, rank)
        if not dim:
            return None
        total[dim] = (total.get(dim, 0) + shift) % x.shape[dim - 1]
    kept = sorted(d for d in total if total[d])
    if not kept:
        return Mapped("identity", {}, (x,))
    return Mapped("roll", {"shifts": [total[d] for d in kept], "dims": kept}, (x,))


def _read_roll(r):
    """The function archviz writes: per rolled dim the reshape to N x A x size x B (which names the dim: the one whose
    size is `size` after dims multiplying to A) and the cut at size - shift."""
    shape = r.shape(r.activation())[1:]
    count = (len(r.inputs()) - 4) // 3
    shifts, dims = [], []
    for step in range(count):
        _, before, size, _ = r.constant(4 + 3 * step)
        cut = r.constant(5 + 3 * step)
        cut = cut[0] if isinstance(cut, list) else cut
        dim = next((d for d in range(1, len(shape) + 1) if numel(shape[:d - 1]) == before and shape[d - 1] == size),
                   None)
        if dim is None:
            raise NotRepresentable("its reshape does not name one dim of its input")
        dims.append(dim)
        shifts.append(size - cut)
    return r.layer("roll", {"shifts": shifts, "dims": dims})


_ROLL = Signature(("input", "shifts", "dims"), _roll, {"dims": None})


@register
class Roll(SavesNothing, SameShape, Free, Op):
    """Entries moved circularly along non-batch dims (torch.roll): output index i along `dim` takes input index
    (i - shift) mod size (torch docs). No cost: data is moved, not computed.

    shifts are kept in 1..size-1 (a negative shift s is size + s; a whole turn is no roll), the dims in increasing
    order. A C x H x W map is rolled along its channels only: along its height or width, positions near the edge
    wrap around to the far side, which no sliding window (the receptive-field recursion) describes, so that roll is
    refused (a traced one stays opaque).

    ONNX has no roll: written as the model-local function archviz.Roll<k> for k rolled dims, each a reshape to
    N x A x size x B, the two slices [size - shift, size) and [0, size - shift) concatenated, and a reshape back.
    """

    name = "roll"
    takes_folded_batch = True
    examples = (Example({"shifts": [1], "dims": [1]}, ((3, 4, 5),)),
                Example({"shifts": [2, 1], "dims": [1, 2]}, ((6, 5),)),
                Example({"shifts": [3], "dims": [3]}, ((2, 1, 4, 5),)), Example({"shifts": [4], "dims": [1]}, ((7,),)))
    kind = OpKind.RESHAPE
    torch_class = "archviz Roll"
    torch_calls = TorchCalls(functions={"torch.roll": _ROLL, "Tensor.roll": _ROLL})
    onnx_reads = {f"archviz::Roll{k}": _read_roll for k in range(1, 9)}
    args = (
        Arg("shifts", ArgKind.SHAPE, doc="how far each dim rolls, 1..size-1 (torch's negative shift s is size + s)"),
        Arg("dims", ArgKind.SHAPE, doc="the dims rolled, torch counting (the batch is dim 0 and never rolls)"),
    )

    def resolve(self, attrs, in_shapes):
        shape, shifts, dims = in_shapes[0], tuple(attrs["shifts"]), tuple(attrs["dims"])
        if len(shifts) != len(dims):
            raise ShapeError(f"{len(shifts)} shifts for {len(dims)} dims")
        if list(dims) != sorted(set(dims)) or not all(1 <= d <= len(shape) for d in dims):
            raise ShapeError(f"dims {list(dims)} are not distinct non-batch dims of a {fmt_shape(shape)} input, in "
                             "increasing order")
        for shift, dim in zip(shifts, dims):
            if shift >= shape[dim - 1]:
                raise ShapeError(f"shift {shift} of dim {dim} is not less than its size {shape[dim - 1]}")
        if len(shape) == 3 and any(d > 1 for d in dims):
            raise ShapeError(f"rolling a {fmt_shape(shape)} map along its height or width wraps positions around: "
                             "no window describes it")
        return {**attrs, "shifts": shifts, "dims": dims}

    def explain(self, attrs, in_shapes, out_shape):
        moves = ", ".join(f"dim {d} by {s}" for s, d in zip(attrs["shifts"], attrs["dims"]))
        return [Step("output shape", f"{fmt_shape(in_shapes[0])} rolled ({moves}; the shape is kept)",
                     fmt_shape(out_shape)),
                Step("params", "a rearrangement has no weights", 0)]

    def summary(self, attrs):
        return ", ".join(f"dim {d} +{s}" for s, d in zip(attrs["shifts"], attrs["dims"]))

    def write_onnx(self, e, node, x):
        shape, k = node.in_shapes[0], len(node.attrs["dims"])
        names, body, current = ["X", "axes", "zero", "back"], [], "X"
        for j in range(k):
            names += [f"parts{j}", f"cut{j}", f"size{j}"]
            body += [("Reshape", [current, f"parts{j}"], [f"R{j}"]),
                     ("Slice", [f"R{j}", f"cut{j}", f"size{j}", "axes"], [f"T{j}"]),
                     ("Slice", [f"R{j}", "zero", f"cut{j}", "axes"], [f"H{j}"]),
                     ("Concat", [f"T{j}", f"H{j}"], [f"C{j}"], {"axis": 2}),
                     ("Reshape", [f"C{j}", "back"], ["Y" if j == k - 1 else f"Y{j}"])]
            current = f"Y{j}"
        e.function(f"Roll{k}", names, ["Y"], body, doc=f"torch.roll over {k} dims, each as two slices swapped")
        inputs = [x[0], e.constant(f"{node.name}/axes", [2], "int64"), e.constant(f"{node.name}/zero", [0], "int64"),
                  e.constant(f"{node.name}/back", [0, *shape], "int64")]
        for j, (shift, dim) in enumerate(zip(node.attrs["shifts"], node.attrs["dims"])):
            size = shape[dim - 1]
            parts = [0, numel(shape[:dim - 1]), size, numel(shape[dim:])]
            inputs += [e.constant(f"{node.name}/parts{j}", parts, "int64"),
                       e.constant(f"{node.name}/cut{j}", [size - shift], "int64"),
                       e.constant(f"{node.name}/size{j}", [size], "int64")]
        e.add(f"Roll{k}", inputs, node.name, node.name, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        return __getattr__("RollModule")(attrs["shifts"], attrs["dims"])


class _WithParameter(SameShape, NoMacs, Op):
    """x combined element-wise with one learned tensor of `shape`, broadcast as torch does (from the right, the
    batch included) without changing x's shape."""

    kind = OpKind.JOIN
    sign = ""
    widens = EVERYWHERE  # its float32 tensor promotes a 2-byte input
    args = (Arg("shape", ArgKind.SHAPE, doc="the learned tensor's shape as torch holds it, e.g. [1, 197, 768]"),)

    def resolve(self, attrs, in_shapes):
        shape, full = tuple(attrs["shape"]), (None, *in_shapes[0])  # None: the batch
        fits = len(shape) <= len(full) and all(
            p == 1 or p == x for p, x in zip(reversed(shape), reversed(full)))
        if not fits:
            raise ShapeError(f"a learned tensor of shape {fmt_shape(shape)} does not broadcast to the input "
                             f"N x {fmt_shape(in_shapes[0])} without changing it")
        return {**attrs, "shape": shape}

    onnx_type: str

    def write_onnx(self, e, node, x):
        e.add(self.onnx_type, [x[0], e.weight(node, "weight")], node.name, node.name)

    def weights(self, attrs, in_shapes):  # the identity until trained: zeros to add, ones to multiply
        return (Weight("weight", tuple(attrs["shape"]), fill=self.identity),)

    def params(self, attrs, in_shapes):  # the formula, kept apart from weights(): analysis calls it for every layer
        return numel(attrs["shape"])

    def other_ops(self, attrs, in_shapes, out_shape):
        return numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        return [
            Step("output shape", f"{fmt_shape(in_shapes[0])} {self.sign} a learned {fmt_shape(attrs['shape'])} "
                                 "(broadcast)", fmt_shape(out_shape)),
            Step("params", f"the learned tensor: {fmt_shape(attrs['shape'])}", fmt_int(self.params(attrs, in_shapes))),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        return Step("other ops", f"one per element: {fmt_shape(out_shape)}", fmt_int(numel(out_shape)))

    def summary(self, attrs):
        return f"{self.sign} learned {fmt_shape(attrs['shape'])}"


@register
class AddParameter(_WithParameter):
    """x plus a learned tensor (ViT's position embedding). params = its elements; other ops: one add per element."""

    def saved(self, attrs, in_shapes, out_shape):
        return NOTHING_SAVED

    name = "add_param"
    torchinfo_macs = TorchinfoMacs.NO_MACS
    takes_folded_batch = True
    examples = (Example({"shape": [3, 4, 5]}, ((3, 4, 5),)), Example({"shape": [3, 1, 1]}, ((3, 4, 5),)))
    aliases = ("position_embedding",)
    keras_class = "Add"
    torch_class = "archviz AddParameter"
    onnx_type = "Add"
    sign = "+"
    identity = Fill.ZEROS

    def build_torch(self, attrs, in_shapes):
        from archviz.ops.modules import AddParameter

        return AddParameter(attrs["shape"])


@register
class MulParameter(_WithParameter):
    """x times a learned tensor (ConvNeXt's layer scale). params = its elements; other ops: one multiply per
    element."""

    def saved(self, attrs, in_shapes, out_shape):
        """The input, which the parameter's gradient reads."""
        return INPUT_SAVED

    name = "mul_param"
    torchinfo_macs = TorchinfoMacs.NO_MACS
    takes_folded_batch = True
    examples = (Example({"shape": [3, 1, 1]}, ((3, 4, 5),)),)
    aliases = ("layer_scale",)
    keras_class = "Multiply"
    torch_class = "archviz MulParameter"
    onnx_type = "Mul"
    sign = "*"
    identity = Fill.ONES

    def build_torch(self, attrs, in_shapes):
        from archviz.ops.modules import MulParameter

        return MulParameter(attrs["shape"])


def _expand(a, out):
    """x.expand(*sizes) (or one tuple of sizes) with one size per dim, the batch's kept: a -1 keeps a dim."""
    x, sizes = a["input"], a["sizes"]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if not is_ref(x) or len(sizes) != len(x.shape) + 1 or not _sizes(sizes) or len(out) != len(x.shape):
        return None
    return Mapped("expand", {"shape": list(out)}, (x,))


def _expand_as(a, out):
    x, other = a["input"], a["other"]
    if not is_ref(x) or len(out) != len(x.shape):
        return None
    return Mapped("expand", {"shape": list(out)}, (x,))


def _read_expand(r):
    """ONNX Expand to the same rank, the batch kept: expand to the output's shape."""
    before, after = r.shape(r.activation()), r.output_shape()
    if after is None or len(after) != len(before) or after[:1] != before[:1]:
        raise NotRepresentable("it changes the rank or the batch, or its output shape is not known")
    return r.layer("expand", {"shape": list(after[1:])})


@register
class Expand(SavesNothing, NoWindow, Free, Op):
    """Dims of size 1 repeated to `shape` without copying (torch's Tensor.expand / expand_as: a view whose stride is 0
    along each expanded dim, torch docs). No params, no MACs and no other ops: nothing is computed.

    A C x H x W map's height and width are not expanded: every output row would come from one input row (a window of
    stride 0), which the receptive-field recursion does not describe; a shape doing so is refused.
    """

    name = "expand"
    returns_view = True
    takes_folded_batch = True
    examples = (Example({"shape": [3, 4, 5]}, ((1, 4, 5),)), Example({"shape": [4, 6]}, ((4, 1),)),
                Example({"shape": [2, 5, 3]}, ((1, 5, 3),)), Example({"shape": [3, 4]}, ((3, 4),)))
    kind = OpKind.RESHAPE
    keras_class = "RepeatVector"
    torch_class = "archviz Expand"
    torch_calls = TorchCalls(functions={"Tensor.expand": Signature(("input", "*sizes"), _expand),
                                        "Tensor.expand_as": Signature(("input", "other"), _expand_as)})
    onnx_reads = {"Expand": _read_expand}
    args = (Arg("shape", ArgKind.SHAPE, doc="the output shape without the batch; each dim the input's, or from 1"),)

    def write_onnx(self, e, node, x):
        target = e.constant(f"{node.name}/shape", [1, *node.attrs["shape"]], "int64")  # 1: the batch is kept
        e.add("Expand", [x[0], target], node.name, node.name)

    def resolve(self, attrs, in_shapes):
        shape, given = tuple(attrs["shape"]), in_shapes[0]
        if len(shape) != len(given) or any(a != b and a != 1 for a, b in zip(given, shape)):
            raise ShapeError(f"cannot expand {fmt_shape(given)} to {fmt_shape(shape)}: each dim must be the input's, "
                             "or grow from 1 (the rank stays)")
        if len(given) == 3 and given[1:] != shape[1:]:
            raise ShapeError(f"expanding a {fmt_shape(given)} map's height or width to {fmt_shape(shape[1:])} has "
                             "no window (every output row would read one input row)")
        return {**attrs, "shape": shape}

    def infer_shape(self, attrs, in_shapes):
        return tuple(attrs["shape"])

    def explain(self, attrs, in_shapes, out_shape):
        grown = [str(i + 1) for i, (a, b) in enumerate(zip(in_shapes[0], out_shape)) if a != b]
        how = f"dims {', '.join(grown)} repeated from 1" if grown else "nothing repeated"
        return [Step("output shape", f"{fmt_shape(in_shapes[0])} expanded ({how}, no copy)", fmt_shape(out_shape)),
                Step("params", "a view has no weights", 0)]

    def summary(self, attrs):
        return f"-> {fmt_shape(attrs['shape'])}"

    def build_torch(self, attrs, in_shapes):
        return __getattr__("ExpandModule")(attrs["shape"])


# --- the torch modules that rebuild the ops above (made on first use: importing the registry never imports torch;
# they are attributes of this module, read through __getattr__, so models holding them pickle) ---------------------

# the torch modules' names, which differ from the ops' (pickle finds a class by its module and name)
_MODULE_NAMES = ("ExpandModule", "StridedSliceModule", "SelectModule", "RollModule")


def _torch_modules():
    from archviz.torch_build import import_torch

    nn = import_torch().nn

    class Expand(nn.Module):
        """x.expand(-1, *shape): size-1 dims repeated without copying, the batch kept."""

        def __init__(self, shape):
            super().__init__()
            self.shape = tuple(shape)

        def forward(self, x):
            return x.expand(-1, *self.shape)

        def extra_repr(self) -> str:
            return f"shape={self.shape}"

    class StridedSlice(nn.Module):
        """x[:, ..., start:stop:step] along `dim` (torch counting)."""

        def __init__(self, dim: int, start: int, stop: int, step: int):
            super().__init__()
            self.dim, self.start, self.stop, self.step = dim, start, stop, step

        def forward(self, x):
            return x[(slice(None),) * self.dim + (slice(self.start, self.stop, self.step),)]

        def extra_repr(self) -> str:
            return f"dim={self.dim}, start={self.start}, stop={self.stop}, step={self.step}"

    class Select(nn.Module):
        """x.select(dim, index)."""

        def __init__(self, dim: int, index: int):
            super().__init__()
            self.dim, self.index = dim, index

        def forward(self, x):
            return x.select(self.dim, self.index)

        def extra_repr(self) -> str:
            return f"dim={self.dim}, index={self.index}"

    class Roll(nn.Module):
        """x.roll(shifts, dims) (torch counting: the batch is dim 0 and never rolls)."""

        def __init__(self, shifts, dims):
            super().__init__()
            self.shifts, self.dims = tuple(shifts), tuple(dims)

        def forward(self, x):
            return x.roll(self.shifts, self.dims)

        def extra_repr(self) -> str:
            return f"shifts={self.shifts}, dims={self.dims}"

    return {"ExpandModule": Expand, "StridedSliceModule": StridedSlice, "SelectModule": Select, "RollModule": Roll}


__getattr__ = lazy_torch_classes(__name__, _MODULE_NAMES, _torch_modules)
