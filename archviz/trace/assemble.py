"""Traced calls -> a frozen Graph: names from module paths, scopes from the module tree, every call mapped to a
registry op checked against the trace, every parameter counted once.

Both tracers (archviz/trace/fx.py, and hooks.py where fx cannot trace) describe what ran as a list of `Call`s; this
module alone decides names and counts:
  * a module's call is named by its path ("layer1.0.conv1"); a second call of one module gets "layer1.0.relu_1"
    and `shares` the first (its weights are counted once, there);
  * a function call is named inside the module whose forward made it ("layer1.0.add", "features.3.cat_1"), or by
    that module's path when it is the module's only call (torchvision's StochasticDepth module ->
    "features.1.0.stochastic_depth");
  * a call mapped to a registry op must give, by the op's own formulas, the shape the trace saw and the parameters
    and buffers its module holds; a difference is an archviz bug (TraceBug), never ignored: the layer becomes opaque
    (shape and params as traced) and the description says which formula disagreed, asking for a report;
  * anything else is an `opaque` node: shape as traced, the parameters and buffers it uses counted, MACs not.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from types import MappingProxyType

from archviz.errors import ArchvizError, UnsupportedOpError
from archviz.graph.ir import INPUT, Graph, Node, Origin, Scope, Shape
from archviz.graph.make import made, make_node
from archviz.ops import get_op
from archviz.ops.base import fmt_shape
from archviz.ops.interop import Const, Mapped, Ref  # noqa: F401  (Const: the tracers' name for it)
from archviz.ops.opaque import Opaque
from archviz.spec.args import MAX_TEXT

NOT_STORED = "num_batches_tracked"  # BatchNorm's one-element step counter: not counted (archviz/ops/norm.py)


class TraceBug(RuntimeError):
    """A registry op's formula disagrees with what torch computed for the same layer: a bug in archviz."""


@dataclass(frozen=True)
class Call:
    """One traced call that made a tensor from the input.

    For a module call, `path` is the module's path and `key` tells its calls apart ("layer1.0.relu@1"); for a
    function call, `path` and `key` are those of the module whose forward made it ("" at the top).
    """

    kind: str  # "module" or "function"
    path: str
    key: str
    within: tuple[str, ...]  # the keys of the module calls it ran inside, outermost first (not its own)
    base: str  # a function's short name ("add", "cat"); the module's class name for module calls
    target: str  # what ran, for an opaque node: "torch.nn.MultiheadAttention", "torch.cumsum"
    inputs: tuple[Ref, ...]
    out_shape: Shape
    mapped: Mapped | None
    owned: tuple = ()  # the model tensors it uses: all of a module's parameters and buffers, or its constants
    batch_dim: int = 0  # where the batch is in its output (out_shape leaves it out)
    fold: int = 1  # > 1: the batch is folded into that dim, whose per-sample size out_shape keeps (interop.Ref)
    # its MACs by FlopCounterMode, running it again (fx.Measured, None if it does not run again), asked only of a
    # call that becomes opaque
    measure: Callable[[], Any] = field(default=lambda: None, compare=False, repr=False)


@dataclass(frozen=True)
class Traced:
    """What a tracer hands over: the calls in the order they ran and the call whose tensor the model returns."""

    calls: tuple[Call, ...]
    output: int
    method: str  # "fx" or "eager"
    notes: tuple[str, ...] = ()
    weight_macs: int = 0  # MACs of calls on weights alone (no input), once per forward pass whatever the batch
    sized_macs: int = 0  # MACs per sample of calls on tensors made from the batch size, not the input
    held: tuple[tuple[int, int], ...] = ()  # (call, the last call it lives through): held by a local name


@dataclass
class _Weights:
    """The model's parameters and buffers by identity: name and kind, and the node that counted each."""

    names: dict[int, tuple[str, bool, int]]  # id -> (qualified name, is a parameter, elements)
    counted: dict[int, str] = field(default_factory=dict)


def assemble(model, traced: Traced, *, name: str, description: str, input_shape: Shape, origin: Origin,
             torchvision: str | None = None) -> Graph:
    """The Graph of a traced model (see the module docstring for the rules)."""
    modules = dict(model.named_modules())
    weights = _Weights(_weight_names(model))
    namer = _Namer(modules, traced.calls)
    nodes: list[Node] = []
    notes = list(traced.notes)
    once: list[int] = []  # MACs on weights alone inside opaque calls (fx.Measured.once)
    for index, call in enumerate(traced.calls):
        node_name, shares = namer.name(index, call)
        nodes.append(_node(call, node_name, shares, [node.name for node in nodes], weights, notes, once))
    weight_macs = traced.weight_macs + sum(once)
    uncalled = _uncalled(weights)
    if uncalled:
        listed = ", ".join(f"{path or '(top)'} ({count:,})" for path, count in uncalled[:5])
        more = f" and {len(uncalled) - 5} more" if len(uncalled) > 5 else ""
        notes.append(f"not in the totals: {sum(c for _, c in uncalled):,} parameters of modules that never ran in the "
                     f"traced forward pass: {listed}{more}")
    if weight_macs:
        notes.append(f"{weight_macs:,} MACs computed from weights alone once per forward pass, whatever the "
                     "batch (such as a position-bias MLP), are in the totals beside the layers' MACs")
    if traced.sized_macs:
        notes.append(f"{traced.sized_macs:,} MACs per image computed from the batch size, not the image (such as a "
                     "position encoding), are in the totals beside the layers' MACs")
    text = description + "".join(f" Note: {note}." for note in notes)
    return Graph(
        name=name, description=text, input_shape=tuple(input_shape), nodes=tuple(nodes),
        scopes=_scopes(nodes, modules), output=nodes[traced.output].name,
        params=MappingProxyType(dict(origin.kwargs)), source=origin.source, torchvision=torchvision,
        origin=Origin(origin.source, origin.kwargs, origin.module, traced.method, tuple(uncalled), weight_macs,
                      traced.sized_macs, tuple((nodes[call].name, nodes[until].name) for call, until in traced.held)),
    )


def _weight_names(model) -> dict[int, tuple[str, bool, int]]:
    names = {}
    for qualified, tensor in model.named_parameters():
        names.setdefault(id(tensor), (qualified, True, tensor.numel()))
    for qualified, tensor in model.named_buffers():
        names.setdefault(id(tensor), (qualified, False, tensor.numel()))
    return names


def _counts(tensors, weights: _Weights) -> tuple[int, int]:
    """(parameters, buffers) among `tensors`, each counted once; BatchNorm's step counter is not a buffer here."""
    params = buffers = 0
    for tensor_id in dict.fromkeys(id(t) for t in tensors):
        if tensor_id not in weights.names:
            continue
        qualified, is_param, count = weights.names[tensor_id]
        if is_param:
            params += count
        elif not qualified.endswith(NOT_STORED):
            buffers += count
    return params, buffers


def _node(call: Call, name: str, shares: str | None, earlier: list[str], weights: _Weights, notes: list,
          once: list) -> Node:
    owned = [t for t in call.owned if id(t) in weights.names]
    done = [t for t in owned if id(t) in weights.counted]
    if shares is None and owned and len(done) == len(owned):
        shares = weights.counted[id(done[0])]  # tied weights: another layer already holds all of them
    fresh = [t for t in owned if id(t) not in weights.counted]
    reused = _counts(done, weights)[0] if shares is None else 0  # one tied weight: its params counted where it was
    node = None
    if call.mapped is not None:
        inputs = tuple(INPUT if ref.call is None else earlier[ref.call] for ref in call.mapped.inputs)
        try:
            node = _mapped_node(call, call.mapped, name, shares, inputs, _counts(owned, weights), reused)
        except TraceBug as bug:
            notes.append(f"{bug}: an archviz bug, please report it; the layer is shown without a formula")
    if node is None:
        inputs = tuple(INPUT if ref.call is None else earlier[ref.call] for ref in call.inputs)
        params, buffers = _counts(owned if shares is not None else fresh, weights)
        node = _opaque_node(call, name, shares, inputs, params, buffers, once)
    for tensor in fresh:
        weights.counted[id(tensor)] = name
    return node


def _mapped_node(call: Call, mapped: Mapped, name, shares, inputs, owned: tuple[int, int], reused: int) -> Node | None:
    """The node of a call mapped to a registry op, or None where the op does not accept the arguments (opaque)."""
    op = get_op(mapped.op)
    in_shapes = [ref.shape for ref in mapped.inputs]
    try:
        layer = made(op, mapped.attrs, in_shapes)
    except ArchvizError:
        return None
    attrs, shape = layer.attrs, layer.out_shape
    if shape != call.out_shape:
        raise TraceBug(f"layer {name}: {op.name}'s formula gives {fmt_shape(shape)} for "
                       f"{', '.join(fmt_shape(s) for s in in_shapes)} but torch computed {fmt_shape(call.out_shape)} "
                       f"({call.target})")
    formula = (op.params(attrs, in_shapes), op.buffers(attrs, in_shapes))
    if formula != owned:
        raise TraceBug(f"layer {name}: {op.name}'s formulas give {formula[0]:,} parameters and "
                       f"{formula[1]:,} buffers but {call.target} holds {owned[0]:,} and {owned[1]:,}")
    return make_node(name, layer, inputs, scope=name.rpartition(".")[0], shares=shares, reused=reused)


def _opaque_node(call: Call, name, shares, inputs, params: int, buffers: int, once: list) -> Node:
    op = get_op(Opaque.name)
    in_shapes = [ref.shape for ref in call.inputs]
    measured = call.measure()
    if measured is not None:
        once.append(measured.once)
    raw = {"target": call.target[:MAX_TEXT], "out_shape": list(call.out_shape), "params": params, "buffers": buffers,
           "measured_macs": None if measured is None else measured.per_sample}
    try:
        layer = made(op, raw, in_shapes)
    except ArchvizError as error:
        raise UnsupportedOpError(f"{call.target} gives a tensor of shape {fmt_shape(call.out_shape)} (batch "
                                 f"left out), which archviz cannot hold: {error.message}", layer=name) from None
    return make_node(name, layer, inputs, scope=name.rpartition(".")[0], shares=shares)


def _uncalled(weights: _Weights) -> list[tuple[str, int]]:
    """(module path, parameters) of the parameters no node counted, in the model's order."""
    grouped: dict[str, int] = {}
    for tensor_id, (qualified, is_param, count) in weights.names.items():
        if is_param and tensor_id not in weights.counted:
            path = qualified.rpartition(".")[0]
            grouped[path] = grouped.get(path, 0) + count
    return list(grouped.items())


class _Namer:
    """Node names: module paths, function calls inside their module, each name once (see the module docstring)."""

    def __init__(self, modules: dict, calls: tuple[Call, ...]):
        self.taken = {path for path in modules if path} | {INPUT}  # module paths are their calls' alone
        self.first: dict[str, str] = {}  # module path -> its first call's node name
        self.suffix: Counter = Counter()
        # calls made inside each module call, at any depth: a function that is its module's only call takes its path
        self.children = Counter(key for call in calls for key in call.within)

    def name(self, index: int, call: Call) -> tuple[str, str | None]:
        if call.kind == "module":
            if call.path not in self.first:
                self.first[call.path] = call.path
                return call.path, None
            return self.free(call.path), self.first[call.path]
        if call.path and self.children[call.key] == 1 and call.path not in self.first:
            self.first[call.path] = call.path
            return call.path, None
        base = re.sub(r"\W+", "_", call.base).strip("_") or "op"
        return self.free(f"{call.path}.{base}" if call.path else base), None

    def free(self, base: str) -> str:
        while True:
            count = self.suffix[base]
            self.suffix[base] += 1
            candidate = base if count == 0 else f"{base}_{count}"
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate


def _scopes(nodes: list[Node], modules: dict) -> tuple[Scope, ...]:
    """A scope for every module path that holds nodes below it, outermost first, in the order they are met."""
    from torch import nn

    names = {node.name for node in nodes}
    seen: dict[str, Scope] = {}
    for node in nodes:
        parts = node.name.split(".")
        for depth in range(1, len(parts)):
            path = ".".join(parts[:depth])
            if path in seen or path not in modules or path in names:
                continue
            module = modules[path]
            plain = type(module) in (nn.Sequential, nn.ModuleList, nn.ModuleDict)
            kind = "sequential" if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) else "block"
            seen[path] = Scope(path, kind, None if plain else type(module).__name__)
    return tuple(seen.values())
