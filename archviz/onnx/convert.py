"""convert(): the nodes of a shape-inferred ONNX graph as registry ops, frozen into a Graph.

Each ONNX node computing on the image becomes one layer, shaped per sample (ModelView.per_sample: a batch folded
into the first dim, as window attention writes it, keeps that dim, and only ops that treat leading dims alike read
it); nodes computing only on stored tensors (shape arithmetic, a weight's Transpose) are not layers. Two patterns
fold into one layer: a Conv, Gemm or MatMul followed by an Add of a stored bias (conv2d or linear with bias), and
x * Sigmoid(x) (silu; x * HardSigmoid(x) is hardswish); the chains torch writes for a layer norm below opset 17 and
for the erf GELU are one layer each (archviz/onnx/patterns.py), and a zero Pad before a Conv is its padding. A node
archviz has no formula for, or whose attributes no registry op represents, becomes an `opaque` layer: its output
shape from ONNX shape inference, its params the elements of the stored tensors it reads (each counted once), its
MACs listed as not counted in Totals.uncounted, and a note saying why. Each op declares the ONNX op types it reads
beside its formulas (`onnx_reads`, archviz/ops/interop.py), through the NodeReader here; the op semantics are those
of onnx.ai/onnx/operators.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from archviz.errors import ArchvizError, SpecError
from archviz.graph.build import MAX_NODES
from archviz.graph.ir import INPUT, Graph, Node, Scope
from archviz.graph.make import made
from archviz.ops import all_ops, get_op, has_formula
from archviz.ops.base import fmt_shape, numel
from archviz.ops.interop import NotRepresentable, OnnxLayer
from archviz.ops.opaque import Opaque
from archviz.onnx.model import DEFAULT_DOMAINS, ModelView, attributes
from archviz.onnx.names import NameHint, layer_paths
from archviz.onnx.notes import file_notes
from archviz.spec.args import normalize_args

if TYPE_CHECKING:
    import onnx

BUFFER_POSITIONS = {"BatchNormalization": (3, 4)}  # inputs that are state, not trained: the running statistics
ARCHVIZ_DOMAIN = "archviz"  # the domain of the ONNX functions `archviz export` writes (adaptive average pooling)


@dataclass(frozen=True)
class _Plan:
    node: onnx.NodeProto
    layer: OnnxLayer


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
    notes = file_notes(view, [(plan.node, plan.layer) for plan in plans])
    return Graph(
        name=name, description="; ".join((description, *notes)), input_shape=input_shape, nodes=tuple(nodes),
        scopes=_scopes(paths, file), output=output, params=MappingProxyType({}), source=file,
    )


def _plan(view: ModelView) -> list[_Plan]:
    plans: list[_Plan] = []
    absorbed: set[int] = set()
    for index, node in enumerate(view.graph.node):
        if index in absorbed or all(name in view.static for name in node.output if name):
            continue
        key = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"
        reader = readers().get(key)
        try:
            if reader is None:
                raise NotRepresentable("")
            node_reader = NodeReader(node, view)
            read = reader(node_reader)
            layers = read if isinstance(read, tuple) else (read,)  # a Split: one layer per output read
            if not isinstance(read, tuple):
                _check_only_first_output(node, view)
            for layer in layers:
                if node_reader.folded and has_formula(layer.op) and not get_op(layer.op).takes_folded_batch:
                    raise NotRepresentable(f"the batch is folded into a first dim, and {layer.op} reads it first only")
        except NotRepresentable as reason:
            plans.extend(_opaque_plans(node, view, str(reason)))
            continue
        for layer in layers:
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
            layer = OnnxLayer(fallback.op, fallback.args, layer.inputs, layer.output,
                          stored=layer.stored or fallback.stored, note=fallback.note)
        if not has_formula(layer.op):
            attrs, out_shape = _opaque_attrs(layer, plan.node, view, counted, where, file)
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


def _shaped(layer: OnnxLayer, in_shapes, view: ModelView):
    """The layer's normalised attributes and output shape, checked against ONNX's shape for it."""
    if not has_formula(layer.op):
        return None, None
    shaped = made(layer.op, layer.args, in_shapes)
    attrs, out_shape = dict(shaped.attrs), shaped.out_shape
    expected = view.per_sample(layer.output)
    if expected is not None and expected != out_shape:
        raise NotRepresentable(f"its formula gives {fmt_shape(out_shape)} where the file's shapes say "
                               f"{fmt_shape(expected)}")
    return attrs, out_shape


def _opaque_attrs(layer: OnnxLayer, node: onnx.NodeProto, view: ModelView, counted: set[str], where: str,
                  file: str):
    """An opaque layer's attributes: ONNX's output shape, and as params the stored tensors not counted before (as
    buffers those the op keeps as state: a BatchNormalization's running mean and variance)."""
    shape = view.shape(layer.output)
    if shape is None:
        raise SpecError(f"node {where}: ONNX shape inference gives no static shape for its output {layer.output!r}, "
                        "even with the shape arithmetic folded, and archviz has no formula for it; pass --input "
                        "CxHxW where the input's size is dynamic", file=file)
    out_shape = view.per_sample(layer.output) or (1,)  # a scalar per image (or overall) is shown as one value
    state = {view.weight(node.input[i]) for i in BUFFER_POSITIONS.get(node.op_type, ()) if i < len(node.input)}
    new = [name for name in dict.fromkeys(layer.stored) if name not in counted]
    params = sum(numel(view.stored[name]) for name in new if name not in state)
    buffers = sum(numel(view.stored[name]) for name in new if name in state)
    op = get_op(Opaque.name)
    raw = {"target": layer.args["target"], "out_shape": list(out_shape), "params": params, "buffers": buffers}
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

def _opaque(node: onnx.NodeProto, view: ModelView, note: str, *, output: str | None = None) -> OnnxLayer:
    domain = "onnx" if node.domain in DEFAULT_DOMAINS else node.domain
    inputs = tuple(t for t in node.input if view.is_activation(t))
    text = f"no formula for ONNX {node.op_type}" + (f": {note}" if note else "")
    return OnnxLayer(Opaque.name, {"target": f"{domain}::{node.op_type}"}, inputs, output or node.output[0],
                 stored=_stored(view, node), note=text)


def _opaque_plans(node: onnx.NodeProto, view: ModelView, note: str) -> list[_Plan]:
    """One opaque layer for the node, and one more for each further output that something reads."""
    plans = [_Plan(node, _opaque(node, view, note))]
    for k, output in enumerate(node.output[1:], start=1):
        if output and (view.consumers.get(output) or output in view.outputs):
            extra = _opaque(node, view, f"output {k} of {node.op_type}", output=output)
            plans.append(_Plan(node, OnnxLayer(extra.op, extra.args, extra.inputs, output, note=extra.note)))
    return plans


# --- the node view the ops' readers use ------------------------------------------------------------------------------

class NodeReader:
    """One ONNX node as an op's reader sees it (archviz/ops/interop.py): its attributes and inputs, the shapes ONNX
    inferred, the stored tensors, and the folds of a following node. Every question that has no answer raises
    NotRepresentable, which makes the node an opaque layer."""

    def __init__(self, node: onnx.NodeProto, view: ModelView):
        self.node, self.view = node, view
        self.op_type, self.opset, self.output = node.op_type, view.opset, node.output[0]
        touched = [*self.activations(), self.output]
        self.folded = any(view.folded(name) for name in touched)  # a tensor's first dim is not the batch
        self.lifted = bool(node.input) and view.folded(node.input[0])  # its axes count one more (see shape())
        if self.folded:
            _check_foldable(node, view, self.activations())
        self.attrs = _lifted_axes(attributes(node)) if self.lifted else attributes(node)

    def activation(self, position: int = 0) -> str:
        """The name of input `position`, which must be computed from the image."""
        name = self.node.input[position] if len(self.node.input) > position else ""
        if not self.view.is_activation(name):
            raise NotRepresentable(f"input {position} is a stored tensor, not computed from the image")
        return name

    def computed(self, position: int) -> bool:
        """Whether input `position` is computed from the image (not stored, not absent)."""
        return self.has_input(position) and self.view.is_activation(self.node.input[position])

    def activations(self) -> tuple[str, ...]:
        return tuple(t for t in self.node.input if t and self.view.is_activation(t))

    def inputs(self) -> tuple[str, ...]:
        return tuple(t for t in self.node.input if t)

    def shape(self, name: str, rank: int | None = None) -> tuple[int, ...]:
        """A tensor's shape with the batch first, `rank` dims when given: where the batch is folded into its first
        dim (B * windows), (B, windows, ...), as the Graph reads it, and the node's axes count one more."""
        shape = self._lifted_shape(name)
        if shape is None:
            raise NotRepresentable(f"the shape of {name!r} is not known")
        if rank is not None and len(shape) != rank:
            raise NotRepresentable(f"its input has rank {len(shape)} (batch included), not {rank}")
        return shape

    def output_shape(self) -> tuple[int, ...] | None:
        return self._lifted_shape(self.output)

    def _lifted_shape(self, name: str) -> tuple[int, ...] | None:
        if not self.view.folded(name):
            return self.view.shape(name)
        per_sample = self.view.per_sample(name)
        return None if per_sample is None else (self.view.batch, *per_sample)

    def has_input(self, position: int) -> bool:
        return len(self.node.input) > position and bool(self.node.input[position])

    def stored_shape(self, position: int, what: str) -> tuple[int, ...]:
        """The shape of input `position`, which must be a tensor stored in the file."""
        name = self.node.input[position] if len(self.node.input) > position else ""
        if not name or name not in self.view.static:
            raise NotRepresentable(f"its {what} is computed from the image, not stored")
        shape = self.view.shape(name)
        if shape is None:
            raise NotRepresentable(f"the shape of its {what} is not known")
        origin = self.view.weight(name)
        if origin is not None and numel(shape) != numel(self.view.stored[origin]):
            raise NotRepresentable(f"its {what} is computed from the stored {origin!r} (a gather of a table, not "
                                   "the table)")
        return shape

    def weight(self, position: int) -> str | None:
        """The stored weight input `position` reads (its name as a layer's weight), or None."""
        return self.view.weight(self.node.input[position]) if len(self.node.input) > position else None

    def weight_of(self, name: str) -> str | None:
        return self.view.weight(name)

    def constant(self, position: int, default=None):
        """The value of an optional constant input, as a Python number or list; default when absent."""
        if not self.has_input(position):
            return default
        value = self.view.value(self.node.input[position])
        if value is None:
            raise NotRepresentable(f"input {position} is not a constant stored in the file")
        if self.lifted and AXES_INPUTS.get(self.op_type) == position:
            value = value + (value >= 0)
        return value.item() if value.size == 1 and value.ndim <= 1 else value.tolist()

    def stored(self) -> tuple[str, ...]:
        return _stored(self.view, self.node)

    def layer(self, op: str, args: Mapping[str, Any] | None = None, inputs: tuple[str, ...] | None = None,
              output: str | None = None, **details) -> OnnxLayer:
        """This node as one layer of `op`, reading its first input (or `inputs`), writing its first output (or
        `output`)."""
        return OnnxLayer(op, dict(args or {}), inputs if inputs is not None else (self.activation(),),
                         output or self.output, **details)

    def used_outputs(self) -> list[tuple[int, str]]:
        """(position, name) of the node's outputs that a later node or the graph's outputs read."""
        return [(k, name) for k, name in enumerate(self.node.output)
                if name and (self.view.consumers.get(name) or name in self.view.outputs)]

    def output_shape_of(self, name: str) -> tuple[int, ...] | None:
        return self._lifted_shape(name)

    def with_bias(self, op: str, args: dict, bias_shape: tuple[int, ...], note: str | None = None) -> OnnxLayer:
        """The layer, with a following Add of a stored bias of bias_shape (the bias broadcast to the output's rank:
        (1, C, 1, 1) after a conv, (1, F) after a Gemm) folded in where it has none of its own."""
        stored, output, absorbed = self.stored(), self.output, ()
        if not args["bias"]:
            fold = _fold_bias(self.view, output, bias_shape)
            if fold is not None:
                index, output, bias = fold
                args, absorbed, stored = {**args, "bias": True}, (index,), stored + bias
        return OnnxLayer(op, args, (self.activation(),), output, absorbed, weight=self.weight(1), stored=stored,
                         note=note)

    def decomposed_layer_norm(self, op: str) -> OnnxLayer | None:
        """The layer norm torch writes below opset 17, starting at this ReduceMean, as one layer of `op`; None where
        the nodes differ (archviz/onnx/patterns.py)."""
        from archviz.onnx import patterns

        return patterns.layer_norm(self, op)

    def erf_gelu(self, op: str) -> OnnxLayer | None:
        """The erf GELU torch writes, starting at this Div, as one layer of `op`; None where the nodes differ."""
        from archviz.onnx import patterns

        return patterns.gelu(self, op)

    def merged_into_next(self, op_type: str, attrs: Callable[[dict], dict]) -> OnnxLayer | None:
        """The one node reading this node's output, where it is of op_type, read as if it read this node's input
        with its attributes changed by `attrs` (a zero Pad merged into the Conv after it as that conv's padding);
        None where there is no such node or the merged node reads as nothing exact."""
        from onnx import helper

        index = self.view.sole_consumer(self.output)
        node = self.view.graph.node[index] if index is not None else None
        if node is None or node.op_type != op_type or node.domain not in DEFAULT_DOMAINS or node.input[0] != self.output:
            return None
        merged = type(node)()
        merged.CopyFrom(node)
        merged.input[0] = self.node.input[0]
        try:
            changed = attrs(attributes(node))
            del merged.attribute[:]
            merged.attribute.extend(helper.make_attribute(key, value) for key, value in changed.items())
            layer = readers()[op_type](NodeReader(merged, self.view))
        except NotRepresentable:
            return None
        return replace(layer, absorbed=(index, *layer.absorbed))

    def gated(self, op: str, gated_op: str) -> OnnxLayer:
        """op(x), or gated_op when the output only multiplies x: x * sigmoid(x) is silu, x * hardsigmoid(x)."""
        x, view = self.activation(), self.view
        index = view.sole_consumer(self.output)
        if index is not None:
            mul = view.graph.node[index]
            if mul.op_type == "Mul" and mul.domain in DEFAULT_DOMAINS and sorted(mul.input) == sorted([x, self.output]):
                return OnnxLayer(gated_op, {}, (x,), mul.output[0], absorbed=(index,))
        return self.layer(op)


AXES_INPUTS = {"Slice": 3, "ReduceMean": 1, "ReduceSum": 1, "ReduceMax": 1, "Squeeze": 1, "Unsqueeze": 1}
AXES_ATTRIBUTES = ("axis", "axes")
# ONNX ops whose attributes or inputs list every dim (pads, repeats) or count dims otherwise (Flatten's 2-d result):
# not read where the batch is folded into the first dim
WHOLE_SHAPE_OPS = ("Flatten", "Pad", "Tile", "Expand", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth")


def _check_foldable(node: onnx.NodeProto, view: ModelView, inputs: tuple[str, ...]) -> None:
    """Refuse a node on a tensor whose batch is not first where its axes cannot simply count one more."""
    if view.batch != 1:
        raise NotRepresentable(f"the file's batch is {view.batch} and is not the first dim of every tensor here")
    if node.op_type in WHOLE_SHAPE_OPS:
        raise NotRepresentable("the batch is folded into its first dim")
    if len({view.folded(name) for name in inputs}) > 1 and any(a.name in AXES_ATTRIBUTES + ("perm",)
                                                                     for a in node.attribute):
        raise NotRepresentable("some inputs have the batch first, others folded into their first dim")


def _lifted_axes(attrs: dict) -> dict:
    """The node's axes where its input gets a batch dim in front: non-negative axes count one more; a
    permutation keeps the batch first."""
    lifted = dict(attrs)
    for key in AXES_ATTRIBUTES:
        value = attrs.get(key)
        if isinstance(value, int):
            lifted[key] = value + 1 if value >= 0 else value
        elif isinstance(value, list):
            lifted[key] = [v + 1 if v >= 0 else v for v in value]
    if "perm" in attrs:
        lifted["perm"] = [0, *(p + 1 for p in attrs["perm"])]
    return lifted


def _where(node: onnx.NodeProto) -> str:
    return f"{node.name!r} ({node.op_type})" if node.name else node.op_type


def _check_only_first_output(node: onnx.NodeProto, view: ModelView) -> None:
    for k, output in enumerate(node.output[1:], start=1):
        if output and (view.consumers.get(output) or output in view.outputs):
            raise NotRepresentable(f"its output {k} ({output!r}) is used")


def _stored(view: ModelView, node: onnx.NodeProto) -> tuple[str, ...]:
    return tuple(dict.fromkeys(view.weight(t) for t in node.input if t and view.weight(t) is not None))


def _fold_bias(view: ModelView, tensor: str, expected: tuple[int, ...]):
    """(index of an Add of a stored bias to tensor, its output, the bias's stored names), or None."""
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


Reader = Callable[[NodeReader], "OnnxLayer | tuple[OnnxLayer, ...]"]  # a tuple: one layer per output read


@cache
def readers() -> dict[str, Reader]:
    """ONNX op type ("Conv", or "archviz::AdaptiveAvgPool2d" in another domain) -> the reader an op declares."""
    table: dict[str, Reader] = {}
    owners: dict[str, str] = {}
    for op in all_ops():
        for op_type, reader in op.onnx_reads.items():
            if op_type in table:
                raise ValueError(f"ONNX {op_type} is read by two ops: {owners[op_type]} and {op.name}")
            table[op_type], owners[op_type] = reader, op.name
    return table
