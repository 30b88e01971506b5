"""How one output value of one layer is computed, number by number, beside the value torch computed there.

For one position of a layer's output and one input (an image file or a dataset sample):
- a 2-d convolution: the input patch its kernel covers (every input channel of its group, zeros where the window hangs
  over the padding), the kernel, their element-wise products, the sum, the bias and the result;
- max or average pooling (sliding or adaptive): the window, which element wins or the sum and its divisor (torch's
  avg_pool2d divisor: the window clipped to the padded input, or to the input itself without count_include_pad);
- a linear layer: the flattened input, the unit's weight row, the products and the dot product plus the bias;
- batch norm: (x - mean) / sqrt(variance + eps) * scale + shift, with the running statistics (or, without them, the
  statistics of this one image, as torch uses in eval mode).
With each: the course's output-size formula ([W-F+2P]/S)+1 with the layer's numbers (archviz.ops.base.SlidingAxis),
the receptive field of the position traced back to the input (archviz/analysis/receptive.py: the field's size, jump
and start give the input rows and columns the position sees), and, when the next layer is a pointwise activation,
that activation applied to the value. The layer's input and output, and the activation's output, are copied by
forward hooks (capture.py) in one pass: the value archviz computes (in float64) is printed beside torch's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from archviz.errors import ArchvizError
from archviz.graph.ir import Graph, Node
from archviz.inside.images import Input
from archviz.inside.layers import find_layer
from archviz.inside.trained import Trained
from archviz.ops import OpKind, get_op
from archviz.ops.base import Reduction, SlidingAxis, pair

AXES = ("height", "width")
TOP = 10  # a linear layer's largest contributions listed


class UnexplainedLayerError(ArchvizError):
    """A layer whose arithmetic the walkthrough does not spell out."""


@dataclass(frozen=True)
class AxisSize:
    """The course's output size formula on one axis, with the layer's numbers."""

    axis: str
    size: int  # W: the input's extent
    extent: int  # F: the window's extent, dilation applied
    padding: int  # P, before; the padding after differs only for 'same' with an even window
    stride: int  # S
    out: int
    arithmetic: str  # ([W-F+2P]/S)+1 with the numbers, as archviz explain writes it


@dataclass(frozen=True)
class InputWindow:
    """The input pixels one output position sees: its receptive field, clipped to the image."""

    size: tuple[int, int]  # the field's height and width in input pixels (before clipping)
    jump: tuple[int, int]  # input pixels between neighbouring output positions
    rows: tuple[int, int]  # first and last input row seen
    cols: tuple[int, int]
    whole: bool  # every input pixel: the layer sees the whole image (after flatten or global pooling)


@dataclass(frozen=True)
class ConvStep:
    group: int  # the filter's group (groups > 1: depthwise and grouped convolutions read their group's channels)
    groups: int
    channels: tuple[int, ...]  # the input channels read
    rows: tuple[int, ...]  # the input row of each kernel row; outside 0..H-1: padding (zero)
    cols: tuple[int, ...]
    patch: tuple  # (channels, kh, kw) input values, 0.0 on padding
    kernel: tuple  # (channels, kh, kw) the filter's weights
    products: tuple  # patch * kernel
    total: float  # the sum of the products
    bias: float | None


@dataclass(frozen=True)
class PoolStep:
    reduction: Reduction
    channel: int
    rows: tuple[int, ...]  # the input rows of the window; outside 0..H-1: padding
    cols: tuple[int, ...]
    window: tuple  # (rows, cols) input values, None on padding
    winner: tuple[int, int] | None  # max: the (row, col) of the input that wins (the first of equals)
    total: float  # mean: the sum of the window
    divisor: int  # mean: what torch divides the sum by (0 for max)


@dataclass(frozen=True)
class LinearStep:
    unit: int  # the output feature, the weight row
    inputs: tuple[float, ...]  # the flattened input
    weights: tuple[float, ...]
    products: tuple[float, ...]
    top: tuple[int, ...]  # indices of the largest |products|, largest first
    total: float
    bias: float | None


@dataclass(frozen=True)
class NormStep:
    channel: int
    x: float
    mean: float
    variance: float
    eps: float
    scale: float  # gamma (1 without affine)
    shift: float  # beta (0 without affine)
    running: bool  # the running statistics; False: this image's own (a batch norm without them)

    @property
    def normalised(self) -> float:
        return (self.x - self.mean) / math.sqrt(self.variance + self.eps)


@dataclass(frozen=True)
class ActivationStep:
    layer: str
    op: str
    before: float  # the walkthrough's value of the layer
    value: float  # the activation of it
    torch_value: float  # the activation's output at the position, captured


@dataclass(frozen=True)
class Walkthrough:
    layer: str
    op: str
    kind: OpKind
    source: str  # the layer that feeds it, or "input"
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    position: tuple[int, ...]  # in the output, (C, Y, X) or (F,)
    step: ConvStep | PoolStep | LinearStep | NormStep
    value: float  # archviz's arithmetic, float64
    torch_value: float  # what torch computed there, captured with a hook
    sizes: tuple[AxisSize, ...]  # for windowed layers
    field: InputWindow
    input_shape: tuple[int, ...]
    activation: ActivationStep | None
    image: str  # where the input came from
    weights: str  # where the weights came from

    @property
    def difference(self) -> float:
        return abs(self.value - self.torch_value)


def walkthrough(trained: Trained, image: Input, *, layer: str, at: tuple[int, ...] | None = None) -> Walkthrough:
    """How `layer`'s output at `at` (default: the centre of channel 0) comes from its input.

    >>> from archviz.inside.trained import load_trained  # doctest: +SKIP
    >>> walk = walkthrough(net, image, layer="conv1", at=(0, 14, 14))  # doctest: +SKIP
    >>> abs(walk.value - walk.torch_value) < 1e-5  # doctest: +SKIP
    True
    """
    node = find_layer(trained.graph, layer)
    explain = _explainer(trained, node)
    position = checked_position(node, at)
    after = _next_activation(trained.graph, node)
    x, y, activated = _capture(trained.net, node.name, after and after.name, image.tensor)
    step, value = explain(trained, node, x, position)
    return Walkthrough(
        layer=node.name, op=node.op, kind=get_op(node.op).kind, source=node.inputs[0],
        in_shape=tuple(node.in_shapes[0]), out_shape=tuple(node.out_shape), position=position, step=step,
        value=value, torch_value=float(y[position]), sizes=_sizes(node), field=input_window(trained.graph, node,
                                                                                               position),
        input_shape=tuple(trained.graph.input_shape),
        activation=after and _activation(trained.net, after, y, position, value, activated),
        image=image.source, weights=trained.weights)


def parse_position(text: str) -> tuple[int, ...]:
    """'0,5,7' -> (0, 5, 7)."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.lstrip("-").isdigit() for part in parts):
        raise ArchvizError(f"--at {text!r}: expected whole numbers C,Y,X (or F for a vector output), e.g. 0,5,7")
    return tuple(int(part) for part in parts)


def checked_position(node: Node, at: tuple[int, ...] | None) -> tuple[int, ...]:
    """The position, in range of the layer's output; the default is the centre of channel 0."""
    shape = tuple(node.out_shape)
    if at is None:
        return (0, *(size // 2 for size in shape[1:]))
    names = ("C", "Y", "X") if len(shape) == 3 else ("F",) if len(shape) == 1 else tuple(f"d{i}" for i in shape)
    dims = "x".join(map(str, shape))
    text = ",".join(map(str, at))
    if len(at) != len(shape):
        raise ArchvizError(f"--at {text}: {node.name}'s output is {dims}, so give {','.join(names)}")
    for name, index, size in zip(names, at, shape):
        if not 0 <= index < size:
            raise ArchvizError(f"--at {text}: {name} is {index}, but {node.name}'s output is {dims} ({name} from 0 "
                               f"to {size - 1})")
    return tuple(at)


# --- which layers are explained -------------------------------------------------------------------------------

def _explainer(trained: Trained, node: Node):
    """The function that spells out the node's arithmetic, chosen by the op's registry facts."""
    op = get_op(node.op)
    in_shape = tuple(node.in_shapes[0])
    if op.kind == OpKind.CONV and op.draws_kernels:
        return _conv
    if op.kind == OpKind.POOL and op.reduction in (Reduction.MAX, Reduction.MEAN) and len(in_shape) == 3 \
            and node.out_shape[0] == in_shape[0] and len(node.out_shape) in (1, 3):
        return _pool
    if op.kind == OpKind.LINEAR and _is_dot_product(op, node):
        return _linear
    if op.kind == OpKind.NORM and _is_batch_norm(trained.net.get_submodule(node.name)):
        return _batch_norm
    raise UnexplainedLayerError(
        f"{node.name} is a {node.op} layer; walkthrough spells out 2-d convolutions, max and average pooling, linear "
        "layers and batch norm", layer=node.name)


def _is_dot_product(op, node: Node) -> bool:
    """A linear layer: each output is the dot product of the input's last axis with a weight row, plus a bias. The
    registry says so by an (out, in) weight and autocasting as torch's linear does (not LeNet's RBF units, whose
    output is a distance, nor an embedding's lookup)."""
    weights = {w.name: w.shape for w in op.weights(node.attrs, list(node.in_shapes))}
    return op.autocasts and weights.get("weight") == (node.out_shape[-1], node.in_shapes[0][-1])


def _is_batch_norm(module) -> bool:
    """torch's batch norm module (built by the op's build_torch): normalises each channel by statistics over the
    batch and positions, running ones in eval mode. Layer, group and instance norm normalise otherwise."""
    from torch.nn.modules.batchnorm import _BatchNorm

    return isinstance(module, _BatchNorm)


def _next_activation(graph: Graph, node: Node) -> Node | None:
    """The layer after this one when it is its only reader and a pointwise activation (relu, tanh, ...)."""
    readers = [other for other in graph.nodes if node.name in other.inputs]
    if len(readers) != 1 or len(readers[0].inputs) != 1:
        return None
    op = get_op(readers[0].op)
    return readers[0] if op.kind == OpKind.ACTIVATION and op.pointwise else None


def _capture(net, layer: str, after: str | None, x):
    """(the layer's input, its output, the activation's output or None) for one image, float64 numpy, batch dropped."""
    import torch

    from archviz.inside.capture import forward_hooks

    kept: dict[str, Any] = {}

    def keep_layer(module, inputs, output):
        kept["input"], kept["output"] = inputs[0].detach().clone(), output.detach().clone()

    def keep_after(module, inputs, output):
        kept["after"] = output.detach().clone()

    hooks = {layer: keep_layer, **({after: keep_after} if after else {})}
    with forward_hooks(net, hooks), torch.no_grad():
        net(x)
    plain = {name: value[0].double().numpy() for name, value in kept.items()}
    return plain["input"], plain["output"], plain.get("after")


# --- the arithmetic of each kind ----------------------------------------------------------------------------------

def _conv(trained: Trained, node: Node, x, position) -> tuple[ConvStep, float]:
    import numpy as np

    module = trained.net.get_submodule(node.name)
    weight = module.weight.detach().double().numpy()  # (out, in/groups, kh, kw)
    channel, y, x_out = position
    groups = node.attrs["groups"]
    group = channel // (weight.shape[0] // groups)
    channels = tuple(range(group * weight.shape[1], (group + 1) * weight.shape[1]))
    height, width = _axes(node)
    rows, cols = _taps(height, y), _taps(width, x_out)
    patch = _gather(x, channels, rows, cols)
    products = patch * weight[channel]
    bias = None if module.bias is None else float(module.bias.detach()[channel])
    total = float(products.sum())
    step = ConvStep(group, groups, channels, rows, cols, _nested(patch), _nested(weight[channel]),
                    _nested(products), total, bias)
    return step, total + (bias or 0.0)


def _taps(axis: SlidingAxis, out: int) -> tuple[int, ...]:
    """The input positions of a window's taps along one axis: out * S - P + i * d."""
    return tuple(out * axis.stride - axis.padding + i * axis.dilation for i in range(axis.kernel))


def _gather(x, channels, rows, cols, fill: float = 0.0):
    """x[channels, rows, cols], `fill` where a row or column is outside the input (padding)."""
    import numpy as np

    _, height, width = x.shape
    patch = np.full((len(channels), len(rows), len(cols)), fill, dtype=np.float64)
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            if 0 <= row < height and 0 <= col < width:
                patch[:, i, j] = x[list(channels), row, col]
    return patch


def _pool(trained: Trained, node: Node, x, position) -> tuple[PoolStep, float]:
    op = get_op(node.op)
    channel = position[0]
    spatial = position[1:] if len(position) == 3 else (0, 0)
    if "kernel_size" in node.attrs:
        windows = [_sliding_window(axis, out, op.reduction, node.attrs) for axis, out in zip(_axes(node), spatial)]
    else:
        out_hw = node.out_shape[1:] if len(node.out_shape) == 3 else (1, 1)
        windows = [_adaptive_window(size, outs, out) for size, outs, out in zip(x.shape[1:], out_hw, spatial)]
    (rows, row_count), (cols, col_count) = windows
    import numpy as np

    patch = _gather(x, (channel,), rows, cols, fill=np.nan)[0]
    window = tuple(tuple(None if math.isnan(v) else float(v) for v in row) for row in patch)
    if op.reduction == Reduction.MAX:
        flat = int(np.nanargmax(patch))
        winner = (rows[flat // len(cols)], cols[flat % len(cols)])
        return PoolStep(Reduction.MAX, channel, rows, cols, window, winner, 0.0, 0), float(np.nanmax(patch))
    total = float(np.nansum(patch))
    divisor = row_count * col_count
    return PoolStep(Reduction.MEAN, channel, rows, cols, window, None, total, divisor), total / divisor


def _sliding_window(axis: SlidingAxis, out: int, reduction: Reduction, attrs) -> tuple[tuple[int, ...], int]:
    """(the input positions of the window, the divisor's factor on this axis). A mean's window is cut where it
    passes the padded input (ceil_mode), and torch divides by its size there, or, without count_include_pad, by the
    part inside the input (ATen's avg_pool2d)."""
    if reduction == Reduction.MAX:
        return _taps(axis, out), 0
    start = out * axis.stride - axis.padding
    end = min(start + axis.kernel, axis.size + axis.padding)
    positions = tuple(range(start, end))
    inside = min(end, axis.size) - max(start, 0)
    return positions, len(positions) if attrs.get("count_include_pad", True) else inside


def _adaptive_window(size: int, outs: int, out: int) -> tuple[tuple[int, ...], int]:
    """An adaptive pool's window: floor(o * size / outs) to ceil((o + 1) * size / outs) (ATen's start_index and
    end_index); global pooling is the case outs = 1."""
    start, end = (out * size) // outs, -(-((out + 1) * size) // outs)
    return tuple(range(start, end)), end - start


def _linear(trained: Trained, node: Node, x, position) -> tuple[LinearStep, float]:
    import numpy as np

    module = trained.net.get_submodule(node.name)
    unit = position[-1]
    inputs = x[position[:-1]].reshape(-1) if len(position) > 1 else x.reshape(-1)
    weights = module.weight.detach().double().numpy()[unit]
    products = inputs * weights
    top = tuple(int(i) for i in np.argsort(-np.abs(products), kind="stable")[:TOP])
    bias = None if module.bias is None else float(module.bias.detach()[unit])
    total = float(products.sum())
    step = LinearStep(unit, _nested(inputs), _nested(weights), _nested(products), top, total, bias)
    return step, total + (bias or 0.0)


def _batch_norm(trained: Trained, node: Node, x, position) -> tuple[NormStep, float]:
    module = trained.net.get_submodule(node.name)
    channel = position[0]
    running = module.running_mean is not None
    if running:
        mean, variance = float(module.running_mean[channel]), float(module.running_var[channel])
    else:  # eval mode without running statistics: the batch's own, here one image's, variance without Bessel
        mean, variance = float(x[channel].mean()), float(x[channel].var())
    scale = float(module.weight.detach()[channel]) if module.weight is not None else 1.0
    shift = float(module.bias.detach()[channel]) if module.bias is not None else 0.0
    step = NormStep(channel, float(x[position]), mean, variance, float(module.eps), scale, shift, running)
    return step, step.normalised * scale + shift


def _activation(net, node: Node, output, position, value: float, activated) -> ActivationStep:
    """The activation module applied to the layer's output with the walkthrough's value at the position."""
    import copy

    import torch

    tensor = torch.tensor(output, dtype=torch.float64)
    tensor[position] = value
    module = copy.deepcopy(net.get_submodule(node.name)).double()  # a copy: the model itself stays float32
    with torch.no_grad():
        result = module(tensor[None])[0]
    return ActivationStep(node.name, node.op, value, float(result[position]), float(activated[position]))


# --- sizes and fields ---------------------------------------------------------------------------------------------

def _axes(node: Node) -> list[SlidingAxis]:
    """The (height, width) sliding axes of a windowed layer: the op's window (dilation applied), undone to kernel and
    dilation, with the padding after the input as torch pads ('same' with an even window pads one more after)."""
    op = get_op(node.op)
    in_shape = tuple(node.in_shapes[0])
    window = op.window(node.attrs, list(node.in_shapes))
    dilation = pair(node.attrs.get("dilation", 1))
    ceil = bool(node.attrs.get("ceil_mode", False))
    axes = []
    for size, extent, stride, before, d, out in zip(in_shape[1:], window.kernel, window.stride, window.padding,
                                                    dilation, node.out_shape[1:]):
        kernel = (extent - 1) // d + 1
        after = extent - 1 - before if node.attrs.get("padding") == "same" else before
        axes.append(SlidingAxis(size, kernel, stride, before, d, ceil, padding_after=after))
    return axes


def _sizes(node: Node) -> tuple[AxisSize, ...]:
    op = get_op(node.op)
    if len(node.in_shapes[0]) != 3 or "kernel_size" not in node.attrs or op.window(node.attrs, list(node.in_shapes)) \
            is None:
        return ()
    return tuple(AxisSize(name, axis.size, axis.extent, axis.padding, axis.stride, axis.out, axis.arithmetic())
                 for name, axis in zip(AXES, _axes(node)))


def input_window(graph: Graph, node: Node, position: tuple[int, ...]) -> InputWindow:
    """The input rows and columns the position sees: centre = start + index * jump, +- size / 2, clipped to the
    input (archviz/analysis/receptive.py); the whole input once positions were merged (flatten, global pooling)."""
    from archviz.analysis.receptive import receptive_fields

    field = receptive_fields(graph)[node.name]
    height, width = graph.input_shape[1:] if len(graph.input_shape) == 3 else (1, 1)
    size = tuple(math.ceil(s) for s in field.size)
    if len(node.out_shape) != 3:
        return InputWindow(size, tuple(field.jump), (0, height - 1), (0, width - 1), whole=True)
    spans = []
    for index, start, jump, extent, limit in zip(position[1:], field.start, field.jump, field.size, (height, width)):
        centre = start + index * jump
        spans.append((max(0, math.floor(centre - extent / 2)), min(limit, math.ceil(centre + extent / 2)) - 1))
    rows, cols = spans
    whole = rows == (0, height - 1) and cols == (0, width - 1)
    return InputWindow(size, tuple(field.jump), rows, cols, whole)


def _nested(array) -> tuple:
    """A numpy array as nested tuples of Python floats."""
    if array.ndim == 1:
        return tuple(float(v) for v in array)
    return tuple(_nested(row) for row in array)


# --- every position of a convolution at once, for the report's interactive section -------------------------------

REPORT_LAYERS = 2  # the first convolutions: their patches are small enough to read in a page
SIGNIFICANT_DIGITS = 7  # float32's precision: values rounded for the page lose nothing torch computed


@dataclass(frozen=True)
class ConvArithmetic:
    """What a page needs to redo any output position of a 2-d convolution: the layer's input and weights, its
    geometry, and torch's output to set beside each sum. Arrays are flat lists in C order (shapes beside them)."""

    layer: str
    source: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]  # before; taps outside the input read zero
    dilation: tuple[int, int]
    groups: int
    sizes: tuple[AxisSize, ...]
    field_size: tuple[int, int]  # the receptive field: centre of output (y, x) at start + (y, x) * jump
    field_jump: tuple[int, int]
    field_start: tuple[float, float]
    inputs: tuple[float, ...]  # (C_in, H, W)
    weights: tuple[float, ...]  # (C_out, C_in / groups, kh, kw)
    bias: tuple[float, ...]  # (C_out,), empty without a bias
    outputs: tuple[float, ...]  # (C_out, H_out, W_out): torch's, captured with a hook


def conv_arithmetic(trained: Trained, image: Input, *, count: int = REPORT_LAYERS) -> tuple[ConvArithmetic, ...]:
    """The first `count` 2-d convolutions' arithmetic for one image (one forward pass, hooks on each)."""
    from archviz.analysis.receptive import receptive_fields
    from archviz.inside.layers import kernel_layers

    nodes = kernel_layers(trained.graph)[:count]
    captured = _capture_many(trained.net, [node.name for node in nodes], image.tensor)
    fields = receptive_fields(trained.graph)
    return tuple(_conv_record(trained, node, *captured[node.name], fields[node.name]) for node in nodes)


def _conv_record(trained: Trained, node: Node, x, y, field) -> ConvArithmetic:
    module = trained.net.get_submodule(node.name)
    axes = _axes(node)
    bias = () if module.bias is None else _rounded(module.bias.detach().double().numpy())
    return ConvArithmetic(
        layer=node.name, source=node.inputs[0], in_shape=tuple(x.shape), out_shape=tuple(y.shape),
        kernel=tuple(a.kernel for a in axes), stride=tuple(a.stride for a in axes),
        padding=tuple(a.padding for a in axes), dilation=tuple(a.dilation for a in axes),
        groups=node.attrs["groups"], sizes=_sizes(node), field_size=tuple(math.ceil(s) for s in field.size),
        field_jump=tuple(field.jump), field_start=tuple(float(s) for s in field.start), inputs=_rounded(x),
        weights=_rounded(module.weight.detach().double().numpy()), bias=bias, outputs=_rounded(y))


def _capture_many(net, names: list[str], x) -> dict[str, tuple[Any, Any]]:
    """{layer: (its input, its output)} for one image, float64 numpy, the batch dropped."""
    import torch

    from archviz.inside.capture import forward_hooks

    kept: dict[str, tuple[Any, Any]] = {}

    def keeper(name: str):
        def keep(module, inputs, output):
            kept[name] = (inputs[0][0].detach().double().numpy().copy(), output[0].detach().double().numpy().copy())

        return keep

    with forward_hooks(net, {name: keeper(name) for name in names}), torch.no_grad():
        net(x)
    return kept


def _rounded(array) -> tuple[float, ...]:
    return tuple(float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in array.reshape(-1).tolist())
