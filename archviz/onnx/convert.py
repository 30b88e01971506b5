"""convert(): the nodes of a shape-inferred ONNX graph as registry ops, frozen into a Graph.

Each ONNX node computing on the image becomes one layer; nodes computing only on stored tensors (shape arithmetic,
a weight's Transpose) are not layers. Two patterns fold into one layer: a Conv, Gemm or MatMul followed by an Add of
a stored bias (conv2d or linear with bias), and x * Sigmoid(x) (silu; x * HardSigmoid(x) is hardswish). A node
archviz has no formula for, or whose attributes no registry op represents, becomes an `opaque` layer: its output
shape from ONNX shape inference, its params the elements of the stored tensors it reads (each counted once), its
MACs listed as not counted in Totals.uncounted, and a note saying why. The handlers are keyed by ONNX op type; the
op semantics are those of onnx.ai/onnx/operators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from archviz.errors import ArchvizError, SpecError
from archviz.graph.build import MAX_NODES
from archviz.graph.ir import INPUT, Graph, Node, Scope
from archviz.graph.make import made
from archviz.ops import canonical_name, get_op, has_formula
from archviz.ops.base import SlidingAxis, fmt_shape, numel
from archviz.onnx.model import DEFAULT_DOMAINS, ModelView, attributes
from archviz.onnx.names import NameHint, layer_paths
from archviz.spec.args import normalize_args

if TYPE_CHECKING:
    import onnx

ARCHVIZ_DOMAIN = "archviz"  # the domain of the ONNX functions `archviz export` writes (adaptive average pooling)


class NotRepresentable(Exception):
    """This node is not any registry op as it stands; the message says why, and it becomes an opaque layer."""


@dataclass(frozen=True)
class Layer:
    """What one ONNX node, with the nodes folded into it, becomes."""

    op: str
    args: Mapping[str, Any]
    inputs: tuple[str, ...]  # the ONNX activation tensors it reads
    output: str  # the ONNX tensor it produces
    absorbed: tuple[int, ...] = ()  # indices of later nodes folded into it (a bias Add, the Mul of x * sigmoid(x))
    weight: str | None = None  # the stored tensor of a conv/linear weight: the key for weights used twice
    stored: tuple[str, ...] = ()  # the stored tensors it reads (names for the path, params for an opaque layer)
    note: str | None = None


@dataclass(frozen=True)
class _Plan:
    node: onnx.NodeProto
    layer: Layer


def convert(view: ModelView, *, name: str, file: str, input_shape: tuple[int, ...], description: str) -> Graph:
    """The Graph of the viewed model: its layers planned, named (archviz/onnx/names.py), then shaped in order."""
    plans = _plan(view)
    if len(plans) > MAX_NODES:
        raise SpecError(f"{len(plans):,} layers, more than {MAX_NODES:,}; archviz stops here", file=file)
    seen_weights: set[str] = set()
    hints = []
    for plan in plans:
        own = tuple(w for w in plan.layer.stored if w not in seen_weights) if has_formula(plan.layer.op) else ()
        seen_weights.update(plan.layer.stored)
        hints.append(NameHint(plan.node.name, plan.node.op_type, own))
    paths = layer_paths(hints)
    nodes = _build(view, plans, paths, input_shape, file)
    output = _output(view, nodes, plans, paths, file)
    return Graph(
        name=name, description=description, input_shape=input_shape, nodes=tuple(nodes),
        scopes=_scopes(paths, file), output=output, params=MappingProxyType({}), source=file,
    )


def _plan(view: ModelView) -> list[_Plan]:
    plans: list[_Plan] = []
    absorbed: set[int] = set()
    for index, node in enumerate(view.graph.node):
        if index in absorbed or all(name in view.static for name in node.output if name):
            continue
        handler = _HANDLERS.get(node.op_type) if node.domain in DEFAULT_DOMAINS else _DOMAIN_HANDLERS.get(
            (node.domain, node.op_type))
        try:
            if handler is None:
                raise NotRepresentable("")
            _check_only_first_output(node, view)
            layer = handler(node, view)
        except NotRepresentable as reason:
            plans.extend(_opaque_plans(node, view, str(reason)))
            continue
        absorbed.update(layer.absorbed)
        plans.append(_Plan(node, layer))
    return plans


def _build(view: ModelView, plans: list[_Plan], paths: list[str], input_shape, file: str) -> list[Node]:
    owner = {view.image: INPUT}
    shapes = {view.image: tuple(input_shape)}
    first_user: dict[str, str] = {}
    counted: set[str] = set()
    nodes = []
    for plan, path in zip(plans, paths):
        layer, where = plan.layer, _where(plan.node)
        missing = [t for t in layer.inputs if t not in owner]
        if missing:
            raise SpecError(f"node {where} reads {missing[0]!r}, which no earlier node computes (are the nodes "
                            "sorted?)", file=file)
        in_shapes = [shapes[t] for t in layer.inputs]
        try:
            attrs, out_shape = _shaped(layer, in_shapes, view)
        except (ArchvizError, NotRepresentable) as error:
            fallback = _opaque(plan.node, view, f"read as {layer.op}, but {error}", output=layer.output)
            layer = Layer(fallback.op, fallback.args, layer.inputs, layer.output,
                          stored=layer.stored or fallback.stored, note=fallback.note)
        if not has_formula(layer.op):
            attrs, out_shape = _opaque_attrs(layer, view, counted, where, file)
        shares = None
        if layer.weight is not None and has_formula(layer.op):
            shares = first_user.setdefault(layer.weight, path)
            shares = None if shares == path else shares
        counted.update(layer.stored)
        nodes.append(Node(
            name=path, op=layer.op, attrs=MappingProxyType(attrs), inputs=tuple(owner[t] for t in layer.inputs),
            in_shapes=tuple(in_shapes), out_shape=out_shape, scope=path.rpartition(".")[0], file=file,
            note=layer.note, shares=shares,
        ))
        owner[layer.output] = path
        shapes[layer.output] = out_shape
    return nodes


def _shaped(layer: Layer, in_shapes, view: ModelView):
    """The layer's normalised attributes and output shape, checked against ONNX's shape for it."""
    if not has_formula(layer.op):
        return None, None
    shaped = made(layer.op, layer.args, in_shapes)
    attrs, out_shape = dict(shaped.attrs), shaped.out_shape
    expected = _without_batch(view.shape(layer.output))
    if expected is not None and expected != out_shape:
        raise NotRepresentable(f"its formula gives {fmt_shape(out_shape)} where the file's shapes say "
                               f"{fmt_shape(expected)}")
    return attrs, out_shape


def _opaque_attrs(layer: Layer, view: ModelView, counted: set[str], where: str, file: str):
    """An opaque layer's attributes: ONNX's output shape, and as params the stored tensors not counted before."""
    shape = view.shape(layer.output)
    if shape is None:
        raise SpecError(f"node {where}: ONNX shape inference gives no static shape for its output {layer.output!r}, "
                        "and archviz has no formula for it; simplify the model with onnxsim (it folds shape "
                        "arithmetic), or pass --input CxHxW where the input's size is dynamic", file=file)
    out_shape = _without_batch(shape) or (1,)  # a scalar per image (or overall) is shown as one value
    params = sum(numel(view.stored[name]) for name in dict.fromkeys(layer.stored) if name not in counted)
    op = get_op("opaque")
    raw = {"target": layer.args["target"], "out_shape": list(out_shape), "params": params}
    try:
        attrs = normalize_args(op, raw, {})
    except ArchvizError as error:
        raise error.located(file=file, layer=where)
    return attrs, tuple(attrs["out_shape"])


def _output(view: ModelView, nodes: list[Node], plans: list[_Plan], paths: list[str], file: str) -> str:
    if not view.outputs:
        raise SpecError("the model has no outputs", file=file)
    produced = {plan.layer.output: path for plan, path in zip(plans, paths)}
    first = view.outputs[0]
    if first not in produced:
        what = "is the input itself" if first == view.image else "does not depend on the input"
        raise SpecError(f"the model's output {first!r} {what}", file=file)
    if not nodes:
        raise SpecError("the model computes nothing on its input", file=file)
    return produced[first]


def _scopes(paths: list[str], file: str) -> tuple[Scope, ...]:
    groups: dict[str, None] = {}
    for path in paths:
        parts = path.split(".")
        for i in range(1, len(parts)):
            groups.setdefault(".".join(parts[:i]))
    return tuple(Scope(group, "sequential", file=file) for group in groups)


# --- opaque layers ---------------------------------------------------------------------------------------------------

def _opaque(node: onnx.NodeProto, view: ModelView, note: str, *, output: str | None = None) -> Layer:
    domain = "onnx" if node.domain in DEFAULT_DOMAINS else node.domain
    inputs = tuple(t for t in node.input if view.is_activation(t))
    text = f"no formula for ONNX {node.op_type}" + (f": {note}" if note else "")
    return Layer("opaque", {"target": f"{domain}::{node.op_type}"}, inputs, output or node.output[0],
                 stored=_stored(view, node), note=text)


def _opaque_plans(node: onnx.NodeProto, view: ModelView, note: str) -> list[_Plan]:
    """One opaque layer for the node, and one more for each further output that something reads."""
    plans = [_Plan(node, _opaque(node, view, note))]
    for k, output in enumerate(node.output[1:], start=1):
        if output and (view.consumers.get(output) or output in view.outputs):
            extra = _opaque(node, view, f"output {k} of {node.op_type}", output=output)
            plans.append(_Plan(node, Layer(extra.op, extra.args, extra.inputs, output, note=extra.note)))
    return plans


# --- helpers for the handlers ----------------------------------------------------------------------------------------

def _where(node: onnx.NodeProto) -> str:
    return f"{node.name!r} ({node.op_type})" if node.name else node.op_type


def _without_batch(shape):
    return None if shape is None or len(shape) < 2 else tuple(shape[1:])


def _check_only_first_output(node: onnx.NodeProto, view: ModelView) -> None:
    for k, output in enumerate(node.output[1:], start=1):
        if output and (view.consumers.get(output) or output in view.outputs):
            raise NotRepresentable(f"its output {k} ({output!r}) is used")


def _activation(node: onnx.NodeProto, view: ModelView, position: int = 0) -> str:
    name = node.input[position] if len(node.input) > position else ""
    if not view.is_activation(name):
        raise NotRepresentable(f"input {position} is a stored tensor, not computed from the image")
    return name


def _activation_shape(view: ModelView, name: str, rank: int | None = None) -> tuple[int, ...]:
    shape = view.shape(name)
    if shape is None:
        raise NotRepresentable("the shape of its input is not known")
    if rank is not None and len(shape) != rank:
        raise NotRepresentable(f"its input has rank {len(shape)} (batch included), not {rank}")
    return shape


def _stored_shape(view: ModelView, name: str, what: str) -> tuple[int, ...]:
    if not name or name not in view.static:
        raise NotRepresentable(f"its {what} is computed from the image, not stored")
    shape = view.shape(name)
    if shape is None:
        raise NotRepresentable(f"the shape of its {what} is not known")
    return shape


def _stored(view: ModelView, node: onnx.NodeProto) -> tuple[str, ...]:
    return tuple(dict.fromkeys(view.weight(t) for t in node.input if t and view.weight(t) is not None))


def _float(value) -> float:
    """An ONNX float attribute (float32) as the decimal it was written as: 0.9 rather than 0.8999999761581421."""
    return float(f"{value:.7g}")


def _pair(values) -> int | list[int]:
    values = [int(v) for v in values]
    return values[0] if len(values) == 2 and values[0] == values[1] else values


def _constant(view: ModelView, node: onnx.NodeProto, position: int, default=None):
    """The value of an optional constant input, as a Python number or list; default when absent."""
    if len(node.input) <= position or not node.input[position]:
        return default
    value = view.value(node.input[position])
    if value is None:
        raise NotRepresentable(f"input {position} is not a constant stored in the file")
    return value.item() if value.size == 1 and value.ndim <= 1 else value.tolist()


def _pads(attrs, spatial, kernel, strides, dilations) -> tuple[list[int], list[int]]:
    """(before, after) padding per spatial axis, from `pads` or `auto_pad`."""
    mode = attrs.get("auto_pad", "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        before, after = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            first = total // 2 if mode == "SAME_UPPER" else total - total // 2
            before.append(first)
            after.append(total - first)
        return before, after
    if mode == "VALID":
        return [0, 0], [0, 0]
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4:
        raise NotRepresentable(f"pads {pads} are not those of a 2-d window")
    return pads[:2], pads[2:]


def _symmetric(before, after, spatial, kernel, strides, dilations, ceil_mode=False):
    """A symmetric padding giving the same output size as ONNX's (before, after), and a note when it differs."""
    if before == after:
        return _pair(before), None
    chosen = []
    for axis, (b, a, size, k, s, d) in enumerate(zip(before, after, spatial, kernel, strides, dilations)):
        target = SlidingAxis(size, k, s, b, d, ceil_mode, padding_after=a).out
        for p in sorted({b, a, (b + a) // 2, (b + a + 1) // 2}):
            if SlidingAxis(size, k, s, p, d, ceil_mode).out == target:
                chosen.append(p)
                break
        else:
            raise NotRepresentable(f"its asymmetric pads {b} before and {a} after along the "
                                   f"{('height', 'width')[axis]} give a size no symmetric padding gives")
    note = (f"ONNX pads {before[0]},{before[1]} before and {after[0]},{after[1]} after (asymmetric) are shown as "
            f"{chosen[0]},{chosen[1]} on both sides: the same output size, params and MACs; the windows sit up to a "
            "pixel apart, so receptive-field offsets may differ by one")
    return _pair(chosen), note


def _fold_bias(view: ModelView, tensor: str, expected: tuple[int, ...]):
    """(index of an Add of a stored bias to tensor, its output, the bias's stored names), or None.

    expected is the bias's shape broadcast to the output's rank: (1, C, 1, 1) after a conv, (1, F) after a Gemm.
    """
    index = view.sole_consumer(tensor)
    if index is None:
        return None
    add = view.graph.node[index]
    if add.op_type != "Add" or add.domain not in DEFAULT_DOMAINS or len(add.input) != 2:
        return None
    other = add.input[1] if add.input[0] == tensor else add.input[0]
    shape = view.shape(other)
    if other == tensor or other not in view.static or shape is None or len(shape) > len(expected):
        return None
    if (1,) * (len(expected) - len(shape)) + tuple(shape) != expected:
        return None
    return index, add.output[0], _stored(view, add)


# --- handlers: ONNX op type -> Layer ---------------------------------------------------------------------------------

Handler = Callable[["onnx.NodeProto", ModelView], Layer]


def _conv(node, view):
    x = _activation(node, view)
    spatial = _activation_shape(view, x, 4)[2:]
    weight = _stored_shape(view, node.input[1], "weight")
    if len(weight) != 4:
        raise NotRepresentable(f"a {len(weight) - 2}-d convolution (archviz has conv2d)")
    attrs = attributes(node)
    kernel = list(attrs.get("kernel_shape", weight[2:]))
    strides, dilations = list(attrs.get("strides", [1, 1])), list(attrs.get("dilations", [1, 1]))
    before, after = _pads(attrs, spatial, kernel, strides, dilations)
    note = None
    totals = [d * (k - 1) for d, k in zip(dilations, kernel)]
    if before != after and strides == [1, 1] and all((b, a) == (t // 2, t - t // 2)
                                                     for b, a, t in zip(before, after, totals)):
        padding = "same"  # torch's padding="same": the odd pixel after
    else:
        padding, note = _symmetric(before, after, spatial, kernel, strides, dilations)
    bias = len(node.input) > 2 and bool(node.input[2])
    args = {"out_channels": weight[0], "kernel_size": _pair(kernel), "stride": _pair(strides), "padding": padding,
            "dilation": _pair(dilations), "groups": attrs.get("group", 1), "bias": bias}
    return _with_bias(node, view, "conv2d", args, x, (1, weight[0], 1, 1), note)


def _with_bias(node, view, op, args, x, bias_shape, note=None) -> Layer:
    """The layer, with a following Add of a stored bias of bias_shape folded in where it has none of its own."""
    stored, output, absorbed = _stored(view, node), node.output[0], ()
    if not args["bias"]:
        fold = _fold_bias(view, output, bias_shape)
        if fold is not None:
            index, output, bias = fold
            args, absorbed, stored = {**args, "bias": True}, (index,), stored + bias
    return Layer(op, args, (x,), output, absorbed, weight=view.weight(node.input[1]), stored=stored, note=note)


def _gemm(node, view):
    attrs = attributes(node)
    if attrs.get("transA", 0):
        raise NotRepresentable("transA is set")
    x = _activation(node, view)
    weight = _stored_shape(view, node.input[1], "weight")
    if len(weight) != 2:
        raise NotRepresentable(f"its weight has rank {len(weight)}")
    out_features, in_features = (weight[0], weight[1]) if attrs.get("transB", 0) else (weight[1], weight[0])
    scale = [f"{k}={_float(attrs[k]):g}" for k in ("alpha", "beta") if k in attrs and _float(attrs[k]) != 1.0]
    note = f"Gemm with {' and '.join(scale)}: scaled weights, the same counts" if scale else None
    bias = len(node.input) > 2 and bool(node.input[2])
    args = {"out_features": out_features, "in_features": in_features, "bias": bias}
    return _with_bias(node, view, "linear", args, x, (1, out_features), note)


def _matmul(node, view):
    x = _activation(node, view)
    if view.is_activation(node.input[1]):
        raise NotRepresentable("a product of two computed tensors (no weights)")
    weight = _stored_shape(view, node.input[1], "weight")
    if len(weight) != 2:
        raise NotRepresentable(f"its stored operand has rank {len(weight)}, not 2")
    rank = len(_activation_shape(view, x))
    args = {"out_features": weight[1], "in_features": weight[0], "bias": False}
    return _with_bias(node, view, "linear", args, x, (1,) * (rank - 1) + (weight[1],))


def _batchnorm(node, view):
    x = _activation(node, view)
    rank = len(_activation_shape(view, x))
    if rank != 4:
        raise NotRepresentable(f"batch norm over a rank-{rank} tensor (archviz has batchnorm2d)")
    attrs = attributes(node)
    if attrs.get("spatial", 1) != 1:
        raise NotRepresentable("spatial=0 (statistics per position)")
    args = {"eps": _float(attrs.get("epsilon", 1e-5)), "momentum": _float(1 - attrs.get("momentum", 0.9)),
            "affine": view.weight(node.input[1]) is not None,
            "track_running_stats": view.weight(node.input[3]) is not None}
    return Layer("batchnorm2d", args, (x,), node.output[0], stored=_stored(view, node))


def _lrn(node, view):
    attrs = attributes(node)
    args = {"size": attrs["size"], "alpha": _float(attrs.get("alpha", 1e-4)), "beta": _float(attrs.get("beta", 0.75)),
            "k": _float(attrs.get("bias", 1.0))}
    return Layer("local_response_norm", args, (_activation(node, view),), node.output[0])


def _pool(op: str) -> Handler:
    def handler(node, view):
        x = _activation(node, view)
        spatial = _activation_shape(view, x, 4)[2:]
        attrs = attributes(node)
        kernel = list(attrs["kernel_shape"])
        if len(kernel) != 2:
            raise NotRepresentable(f"a {len(kernel)}-d window (archviz pools in 2-d)")
        strides, dilations = list(attrs.get("strides", [1, 1])), list(attrs.get("dilations", [1, 1]))
        ceil_mode = bool(attrs.get("ceil_mode", 0))
        before, after = _pads(attrs, spatial, kernel, strides, dilations)
        padding, note = _symmetric(before, after, spatial, kernel, strides, dilations, ceil_mode)
        args = {"kernel_size": _pair(kernel), "stride": _pair(strides), "padding": padding, "ceil_mode": ceil_mode}
        if op == "maxpool2d":
            args["dilation"] = _pair(dilations)
        elif dilations != [1, 1]:
            raise NotRepresentable(f"dilations {dilations} (archviz's avgpool2d has none)")
        else:
            args["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
        return Layer(op, args, (x,), node.output[0], note=note)

    return handler


def _global_avgpool(node, view):
    x = _activation(node, view)
    _activation_shape(view, x, 4)
    return Layer("global_avgpool2d", {}, (x,), node.output[0])


def _reduce_mean(node, view):
    x = _activation(node, view)
    rank = len(_activation_shape(view, x))
    attrs = attributes(node)
    axes = attrs.get("axes") if view.opset < 18 else _constant(view, node, 1)
    axes = [axes] if isinstance(axes, int) else axes
    keepdims = bool(attrs.get("keepdims", 1))
    if rank != 4 or axes is None or sorted(a % 4 for a in axes) != [2, 3]:
        raise NotRepresentable(f"a mean over axes {axes} (archviz's is over height and width)")
    if keepdims:
        return Layer("global_avgpool2d", {}, (x,), node.output[0])
    if not any(arg.name == "keepdim" for arg in get_op("global_avgpool2d").args):
        raise NotRepresentable("keepdims=0")
    return Layer("global_avgpool2d", {"keepdim": False}, (x,), node.output[0])


def _adaptive_avgpool(node, view):
    x = _activation(node, view)
    out = _activation_shape(view, node.output[0], 4)
    return Layer("adaptive_avgpool2d", {"output_size": _pair(out[2:])}, (x,), node.output[0])


def _unary(op: str, args: Mapping[str, Any] | None = None) -> Handler:
    def handler(node, view):
        return Layer(op, dict(args or {}), (_activation(node, view),), node.output[0])

    return handler


def _registered(op: str, handler: Handler) -> Handler:
    """handler where the registry has op (ops other parts of archviz add), else an opaque layer."""

    def guarded(node, view):
        if canonical_name(op) is None:
            raise NotRepresentable("")
        return handler(node, view)

    return guarded


def _gated(node, view, op: str, gated_op: str) -> Layer:
    """op(x), or gated_op when the output only multiplies x: x * sigmoid(x) is silu, x * hardsigmoid(x) hardswish."""
    x = _activation(node, view)
    index = view.sole_consumer(node.output[0])
    if index is not None and canonical_name(gated_op) is not None:
        mul = view.graph.node[index]
        if mul.op_type == "Mul" and mul.domain in DEFAULT_DOMAINS and sorted(mul.input) == sorted([x, node.output[0]]):
            return Layer(gated_op, {}, (x,), mul.output[0], absorbed=(index,))
    if canonical_name(op) is None:
        raise NotRepresentable("")
    return Layer(op, {}, (x,), node.output[0])


def _sigmoid(node, view):
    return _gated(node, view, "sigmoid", "silu")


def _hard_sigmoid(node, view):
    attrs = attributes(node)
    if not (math.isclose(attrs.get("alpha", 0.2), 1 / 6, rel_tol=1e-6) and math.isclose(attrs.get("beta", 0.5), 0.5)):
        raise NotRepresentable("alpha and beta are not torch's 1/6 and 1/2")
    return _gated(node, view, "hardsigmoid", "hardswish")


def _swish(node, view):
    if _float(attributes(node).get("alpha", 1.0)) != 1.0:
        raise NotRepresentable("alpha is not 1")
    return Layer("silu", {}, (_activation(node, view),), node.output[0])


def _leaky_relu(node, view):
    slope = _float(attributes(node).get("alpha", 0.01))
    return Layer("leaky_relu", {"negative_slope": slope}, (_activation(node, view),), node.output[0])


def _gelu(node, view):
    approximate = attributes(node).get("approximate", "none")
    return Layer("gelu", {"approximate": approximate}, (_activation(node, view),), node.output[0])


def _clip(node, view):
    attrs = attributes(node)
    if view.opset < 11:
        low, high = attrs.get("min"), attrs.get("max")
    else:
        low, high = _constant(view, node, 1), _constant(view, node, 2)
    x = _activation(node, view)
    if low == 0 and high == 6:
        return Layer("relu6", {}, (x,), node.output[0])
    if low == 0 and (high is None or math.isinf(high)):
        return Layer("relu", {}, (x,), node.output[0])
    raise NotRepresentable(f"Clip to [{low}, {high}] (archviz has relu and relu6)")


def _softmax(node, view):
    x = _activation(node, view)
    rank = len(_activation_shape(view, x))
    axis = attributes(node).get("axis", -1 if view.opset >= 13 else 1)
    if view.opset < 13 and axis % rank != rank - 1:
        raise NotRepresentable(f"opset {view.opset} softmax over axes {axis}.. flattened together")
    return Layer("softmax", {"dim": axis}, (x,), node.output[0])


def _dropout(node, view):
    ratio = attributes(node).get("ratio", 0.5) if view.opset < 12 else _constant(view, node, 1, 0.5)
    return Layer("dropout", {"p": _float(ratio)}, (_activation(node, view),), node.output[0])


def _flatten(node, view):
    x = _activation(node, view)
    rank = len(_activation_shape(view, x))
    axis = attributes(node).get("axis", 1)
    if axis % rank != 1:
        raise NotRepresentable(f"axis {axis} folds the batch into the features")
    return Layer("flatten", {"start_dim": 1, "end_dim": -1}, (x,), node.output[0])


def _reshape(node, view):
    """Reshape, Squeeze, Unsqueeze: the same shape (identity), dims merged (flatten), else reshape."""
    x = _activation(node, view)
    before, after = _activation_shape(view, x), view.shape(node.output[0])
    if after is None or after[:1] != before[:1]:
        raise NotRepresentable("the batch dim does not stay first" if after else "its output shape is not known")
    old, new = before[1:], after[1:]
    if old == new:
        return Layer("identity", {}, (x,), node.output[0])
    for start in range(len(old)):
        for stop in range(start + 2, len(old) + 1):
            if new == (*old[:start], numel(old[start:stop]), *old[stop:]):
                return Layer("flatten", {"start_dim": start + 1, "end_dim": stop}, (x,), node.output[0])
    if canonical_name("reshape") is None or not new:
        raise NotRepresentable(f"{fmt_shape(old)} -> {fmt_shape(new)} is not a flatten")
    return Layer("reshape", {"shape": list(new)}, (x,), node.output[0])


def _transpose(node, view):
    x = _activation(node, view)
    rank = len(_activation_shape(view, x))
    perm = list(attributes(node).get("perm", range(rank - 1, -1, -1)))
    if perm[:1] != [0]:
        raise NotRepresentable("the batch dim does not stay first")
    return Layer("permute", {"dims": perm[1:]}, (x,), node.output[0])


def _slice(node, view):
    """One axis, step 1, the batch kept: narrow."""
    x = _activation(node, view)
    shape = _activation_shape(view, x)
    if view.opset < 10:
        raise NotRepresentable(f"opset {view.opset} Slice")
    starts, ends = _constant(view, node, 1), _constant(view, node, 2)
    axes, steps = _constant(view, node, 3, list(range(len(shape)))), _constant(view, node, 4, 1)
    values = [v if isinstance(v, list) else [v] for v in (starts, ends, axes, steps)]
    if any(len(v) != 1 for v in values) or values[3] != [1]:
        raise NotRepresentable("it slices several axes, or with a step")
    (start,), (end,), (axis,) = values[:3]
    axis %= len(shape)
    size = shape[axis]
    start, end = (max(0, min(v + size if v < 0 else v, size)) for v in (start, end))
    if axis == 0 or end <= start:
        raise NotRepresentable("it slices the batch, or nothing")
    return Layer("narrow", {"dim": axis, "start": start, "length": end - start}, (x,), node.output[0])


def _join(op: str, args_of: Callable[[onnx.NodeProto], dict] = lambda node: {}) -> Handler:
    def handler(node, view):
        inputs = tuple(t for t in node.input if t)
        if any(not view.is_activation(t) for t in inputs):
            return _with_parameter(node, view, inputs)
        if len(inputs) < 2:
            return Layer("identity", {}, inputs, node.output[0])
        if canonical_name(op) is None:
            raise NotRepresentable("")
        return Layer(op, args_of(node), inputs, node.output[0])

    return handler


def _with_parameter(node, view, inputs) -> Layer:
    """x + W or x * W of a stored W (a position embedding, a layer scale): add_param or mul_param."""
    op = {"Add": "add_param", "Mul": "mul_param"}.get(node.op_type)
    activations = [t for t in inputs if view.is_activation(t)]
    stored = [t for t in inputs if not view.is_activation(t)]
    if op is None or canonical_name(op) is None or len(inputs) != 2 or len(activations) != 1:
        raise NotRepresentable("an operand is a stored tensor")
    if view.weight(stored[0]) is None:
        raise NotRepresentable("an operand is a constant, not a stored weight")
    shape = _stored_shape(view, stored[0], "operand")
    return Layer(op, {"shape": list(shape) or [1]}, (activations[0],), node.output[0], stored=_stored(view, node))


def _layer_norm(node, view):
    x = _activation(node, view)
    shape = _activation_shape(view, x)
    axis = attributes(node).get("axis", -1) % len(shape)
    if axis == 0:
        raise NotRepresentable("it normalises over the batch too")
    bias = len(node.input) > 2 and view.weight(node.input[2]) is not None
    args = {"normalized_shape": list(shape[axis:]), "eps": _float(attributes(node).get("epsilon", 1e-5)),
            "elementwise_affine": view.weight(node.input[1]) is not None, "bias": bias}
    return Layer("layer_norm", args, (x,), node.output[0], stored=_stored(view, node))


_HANDLERS: dict[str, Handler] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "BatchNormalization": _batchnorm, "LRN": _lrn,
    "MaxPool": _pool("maxpool2d"), "AveragePool": _pool("avgpool2d"), "GlobalAveragePool": _global_avgpool,
    "ReduceMean": _reduce_mean,
    "Relu": _unary("relu"), "Tanh": _unary("tanh"), "Sigmoid": _sigmoid, "LeakyRelu": _leaky_relu, "Gelu": _gelu,
    "Clip": _clip, "Softmax": _softmax, "Swish": _swish,
    "HardSigmoid": _hard_sigmoid, "HardSwish": _registered("hardswish", _unary("hardswish")),
    "Dropout": _dropout, "Identity": _unary("identity"), "Flatten": _flatten,
    "Reshape": _reshape, "Squeeze": _reshape, "Unsqueeze": _reshape,
    "Transpose": _registered("permute", _transpose), "Slice": _registered("narrow", _slice),
    "Add": _join("add"), "Sum": _join("add"), "Concat": _join("concat", lambda node: {"dim": attributes(node)["axis"]}),
    "Mul": _join("mul"), "LayerNormalization": _registered("layer_norm", _layer_norm),
}
_DOMAIN_HANDLERS: dict[tuple[str, str], Handler] = {
    (ARCHVIZ_DOMAIN, "AdaptiveAvgPool2d"): _adaptive_avgpool,
}
