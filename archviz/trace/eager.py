"""Where torch.fx cannot trace (an `if` on a traced size, Python it cannot follow): an eager forward pass on the meta
device (at two batch sizes: see below), every call recorded, written down as the fx graph symbolic tracing would
have made, and walked by fx.py's walker, so both tracers map, name and count calls the same way.

A `TorchFunctionMode` sees every torch function and tensor method the model calls outside its leaf modules (a
matmul, a reshape, `x + y`); forward hooks see the leaf modules (torch's layers, as fx's tracer chooses them) and
the module each call ran in. A value is wired to the call that returned that very tensor; a tensor no recorded call
made is a constant of the trace (a parameter or buffer by identity, else something made from sizes alone). As with
fx, a value's batch dim is found at BATCH alone where its shape can say, else from the pass at SECOND_BATCH, which
always runs here: it also shows a model that caches what it computes from weights on its first pass (the calls on
the input still pair up). Where the passes call different things on the input (control flow on the batch size), a
value whose shape at BATCH cannot say must keep its batch first. The hooks and the mode
are put on archviz's own meta copy of the model and removed after the pass.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import sys
from dataclasses import dataclass, field

import torch
from torch import fx
from torch.overrides import TorchFunctionMode

from archviz.trace.assemble import Traced
from archviz.trace.frames import FrameRecorder
from archviz.trace.fx import BATCH, SECOND_BATCH, ModelGraph, _Tracer, keeps_shape, no_grad_parameters, walk

NOTE = ("torch.fx could not trace this model ({reason}), so its calls were recorded from eager forward passes: where "
        "the model branches, the graph is the branch this input takes")

# x + y reaches the mode as Tensor.__add__(x, y), 2 - x as Tensor.__rsub__(x, 2): the operator fx would record
_OPERATORS = {
    "__add__": operator.add, "__iadd__": operator.iadd, "__sub__": operator.sub, "__isub__": operator.isub,
    "__mul__": operator.mul, "__imul__": operator.imul, "__truediv__": operator.truediv,
    "__itruediv__": operator.itruediv, "__floordiv__": operator.floordiv, "__matmul__": operator.matmul,
    "__pow__": operator.pow, "__neg__": operator.neg, "__getitem__": operator.getitem, "__abs__": operator.abs,
}
_REFLECTED = {"__radd__": operator.add, "__rsub__": operator.sub, "__rmul__": operator.mul,
              "__rtruediv__": operator.truediv, "__rmatmul__": operator.matmul, "__rpow__": operator.pow}
_MUTATING = frozenset({"__setitem__"})  # returns None, changes its first argument: later uses read the new value
_IGNORED = frozenset({"__set__", "__torch_function__", "__repr__", "__format__"})  # a tensor's own machinery


@dataclass
class _Pass:
    """One eager pass written as an fx graph: its nodes, their values, and which node made each tensor."""

    model: object
    graph: fx.Graph = field(default_factory=fx.Graph)
    values: dict = field(default_factory=dict)
    made: dict = field(default_factory=dict)  # id(tensor) -> node
    keep: list = field(default_factory=list)  # every tensor seen stays alive, so no id is reused during the pass
    stack: list = field(default_factory=list)  # (key, path) of the module calls running, outermost first
    inside_leaf: int = 0
    entered: list = field(default_factory=list)  # per module call running: (recorded, a leaf)
    calls: dict = field(default_factory=dict)  # module path -> times called
    weights: dict = field(default_factory=dict)  # id(tensor) -> qualified name, for the model's own tensors
    signature: list = field(default_factory=list)  # what ran, in order: both passes must agree
    live: list = field(default_factory=list)  # the nodes that depend on the input, in order
    live_set: set = field(default_factory=set)
    cached: dict = field(default_factory=dict)  # id(tensor) -> the weights an earlier pass computed it from
    frames: FrameRecorder | None = None  # each call notes the model's frames it was made in

    def __post_init__(self):
        for name, tensor in (*self.model.named_parameters(), *self.model.named_buffers()):
            self.weights.setdefault(id(tensor), name)

    def node(self, op: str, target, args, kwargs, value) -> fx.Node:
        node = self.graph.create_node(op, target, self._args(args), self._args(kwargs))
        node.meta["nn_module_stack"] = {key: (path, None) for key, path in self.stack}
        if self.frames is not None:
            node.meta["frames"] = self.frames.stack()
        self.values[node] = value
        self.signature.append((op, target if isinstance(target, str) else getattr(target, "__name__", "")))
        self._mark_live(node)
        self._made_by(node, value)
        return node

    def _mark_live(self, node: fx.Node) -> None:
        if any(source in self.live_set for source in node.all_input_nodes):
            self.live.append(node)
            self.live_set.add(node)

    def computed_from_weights(self) -> dict:
        """id(tensor) -> the model's weights it was computed from, for every tensor this pass made without the input
        (what a model caches: EfficientViT's attention biases)."""
        sources: dict = {}
        for node in self.graph.nodes:
            if node.op == "get_attr":
                value = self.values[node]
                sources[node] = (value,) if id(value) in self.weights else tuple(node.meta.get("weights", ()))
            elif node.op != "placeholder" and node not in self.live_set:
                sources[node] = tuple({id(t): t for n in node.all_input_nodes for t in sources.get(n, ())}.values())
        return {id(self.values[node]): found for node, found in sources.items()
                if found and isinstance(self.values.get(node), torch.Tensor)}

    @property
    def live_signature(self) -> list:
        return [(node.op, str(node.target)) for node in self.live]

    def _made_by(self, node: fx.Node, value) -> None:
        if isinstance(value, torch.Tensor):
            self.keep.append(value)
            self.made[id(value)] = node
        elif isinstance(value, (tuple, list)):
            for index, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    self.keep.append(item)
                    self.made[id(item)] = _Item(node, index)

    def _args(self, value):
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if isinstance(value, tuple):
            return tuple(self._args(v) for v in value)
        if isinstance(value, list):
            return [self._args(v) for v in value]
        if isinstance(value, dict):
            return {k: self._args(v) for k, v in value.items()}
        return value

    def _tensor(self, tensor) -> fx.Node:
        found = self.made.get(id(tensor))
        if isinstance(found, _Item):  # an item of a tuple (chunk's pieces): fx's getitem, made on first use
            found = self._item(found, tensor)
        if found is None:  # a parameter, a buffer, a tensor an earlier pass made from them, or made from sizes alone
            name = self.weights.get(id(tensor), f"_constant{len(self.values)}")
            found = self.graph.create_node("get_attr", name)
            found.meta["weights"] = self.cached.get(id(tensor), ())
            self.values[found] = tensor
            self.keep.append(tensor)
            self.made[id(tensor)] = found
        return found

    def _item(self, item: _Item, tensor) -> fx.Node:
        """The getitem node of a tuple's item; on the first use of any item, every item gets one, in order, as fx
        records `q, k, v = x.unbind(0)`."""
        for index, value in enumerate(self.values[item.node]):
            if isinstance(value, torch.Tensor) and isinstance(self.made.get(id(value)), _Item):
                node = self.graph.create_node("call_function", operator.getitem, (item.node, index))
                node.meta["nn_module_stack"] = item.node.meta.get("nn_module_stack", {})
                self.values[node] = value
                self.made[id(value)] = node
                self._mark_live(node)
        return self.made[id(tensor)]


@dataclass(frozen=True)
class _Item:
    node: fx.Node
    index: int


class _Calls(TorchFunctionMode):
    """Records each torch function and tensor method called outside a leaf module."""

    def __init__(self, recording: _Pass):
        super().__init__()
        self.recording = recording

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if keeps_shape(func):
            result = torch.empty_like(args[0] if args else kwargs["input"])
        else:
            result = func(*args, **kwargs)
        recording = self.recording
        name = getattr(func, "__name__", "")
        if recording.inside_leaf or name in _IGNORED or not _holds_tensor((args, kwargs)):
            return result
        if name in _MUTATING and args and isinstance(args[0], torch.Tensor):
            recording.node("call_function", getattr(operator, name.strip("_")), args, kwargs, args[0])
            return result
        if not _holds_tensor(result):
            return result
        if name in _REFLECTED:
            recording.node("call_function", _REFLECTED[name], (args[1], args[0], *args[2:]), kwargs, result)
        elif name in _OPERATORS:
            recording.node("call_function", _OPERATORS[name], args, kwargs, result)
        elif getattr(torch.Tensor, name, None) is func:
            recording.node("call_method", name, args, kwargs, result)
        elif name == "__get__" and hasattr(func, "__self__"):  # a property: x.T, x.mT, x.data
            recording.node("call_function", _property(func.__self__.__name__), args, kwargs, result)
        else:
            recording.node("call_function", func, args, kwargs, result)
        return result


@functools.cache
def _property(name: str):
    """A tensor property (x.mT) as the function a graph node calls, named as torch names it."""
    def read(tensor):
        return getattr(tensor, name)

    read.__name__, read.__qualname__, read.__module__ = name, f"Tensor.{name}", "torch"
    return read


def _holds_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


def _record(model, input_shape: tuple[int, ...], batch: int, cached: dict | None = None) -> _Pass:
    recording = _Pass(model, cached=cached or {}, frames=FrameRecorder(boundary=sys._getframe()))
    image = torch.empty((batch, *input_shape), device="meta")
    placeholder = recording.graph.create_node("placeholder", "x")
    recording.values[placeholder] = image
    recording.live_set.add(placeholder)
    recording.made[id(image)] = placeholder
    recording.keep.append(image)
    leaf = _Tracer()
    handles = []
    for path, module in model.named_modules():
        if not path:
            continue
        is_leaf = leaf.is_leaf_module(module, path)
        handles.append(module.register_forward_pre_hook(_enter(recording, path, is_leaf)))
        handles.append(module.register_forward_hook(_leave(recording, path, is_leaf), with_kwargs=True))
    try:
        with _Calls(recording):
            result = model(image)
    finally:
        recording.frames.close()
        for handle in handles:
            handle.remove()
    output = recording.graph.create_node("output", "output", (recording._args(result),))
    recording.values[output] = result
    return recording


def _enter(recording: _Pass, path: str, is_leaf: bool):
    def hook(module, args):
        recorded = not recording.inside_leaf  # a module inside a leaf is part of that leaf's call
        recording.entered.append(recorded)
        if not recorded:
            return
        count = recording.calls.get(path, 0)
        recording.calls[path] = count + 1
        recording.stack.append((path if count == 0 else f"{path}@{count}", path))
        recording.inside_leaf += is_leaf

    return hook


def _leave(recording: _Pass, path: str, is_leaf: bool):
    def hook(module, args, kwargs, output):
        if not recording.entered.pop():
            return
        recording.inside_leaf -= is_leaf
        if is_leaf and _holds_tensor(output):
            recording.node("call_module", path, args, kwargs, output)
        recording.stack.pop()

    return hook


def _same_calls(one: _Pass, other: _Pass) -> bool:
    return one.signature == other.signature and len(one.graph.nodes) == len(other.graph.nodes)


def trace_eager(model, input_shape: tuple[int, ...], *, reason: str) -> Traced:
    """The calls of `model` in one eager pass on the meta device, as trace_fx describes them."""
    no_grad_parameters(model)
    first = _record(model, input_shape, BATCH)
    second = _record(model, input_shape, SECOND_BATCH)
    if not _same_calls(first, second):  # the first pass filled a cache (ConViT's position indices, EfficientViT's
        # attention biases): a third pass reads it as the second did, each cached tensor counted as the weights
        # the first pass computed it from
        first = _record(model, input_shape, BATCH, cached=first.computed_from_weights())
    twins = {}
    if _same_calls(first, second):  # the same calls in the same order: the values pair up
        twins = {node: second.values[twin] for node, twin in zip(first.graph.nodes, second.graph.nodes)}
    traced = walk(ModelGraph(model, first.graph), model, first.values, twins)
    return dataclasses.replace(traced, method="eager", notes=(NOTE.format(reason=reason),))
