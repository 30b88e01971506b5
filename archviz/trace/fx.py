"""torch.fx: trace a module symbolically, run the trace on meta tensors, and describe every call as an archviz Call.

torch.fx.symbolic_trace records each module call, function and tensor method with the module stack it ran in
(node.meta["nn_module_stack"]); an fx Interpreter then runs that graph on a meta tensor (no data, no weights) and
records every value, so each call's shapes are torch's own. Tensors are sorted three ways:
  * a `Ref` depends on the input and becomes a node (or, for a tuple such as chunk's, one node per piece used);
  * a `Const` does not (a parameter, a buffer, or something computed from them only): it is no node, and the
    parameters it holds are counted at the call that uses it (ViT's pos_embedding at its add);
  * anything else (x.size(), x.dim()) is a plain value the calls receive as arguments.
The trace runs at a batch of BATCH, a prime no model's own dim is likely to be a multiple of: the batch dim of a value
is the one dim whose size is a multiple of BATCH, wherever the model moved it (attention code permutes q, k and v to
(3, B, heads, N, d)). Where no single dim is, a second run at SECOND_BATCH, made only then, says which dim follows
the batch; a call with no formula whose FLOPs are not zero runs again at both sizes too, to tell its cost per sample
from its cost once per pass. Shapes are per sample, the batch dim left out. A dim of size B x m (window attention's
B * windows) holds a folded batch: the per-sample shape keeps it with its size m, and an op reads the tensor as
(B, m, ...), its dim arguments moved one on (interop.unfolded_arguments); only ops that treat leading dims alike
(`takes_folded_batch`: linear, matmul, softmax, layer norm, elementwise, views) take such a tensor. A call that
reads or makes a tensor whose batch is not dim 0 is no registry op (their formulas count dims after the batch): it is
an opaque layer with its per-sample shape.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import operator
import sys
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import fx
from torch.utils.flop_counter import FlopCounterMode

from archviz.errors import UnsupportedOpError
from archviz.ops import get_op
from archviz.ops.base import fmt_shape
from archviz.ops.interop import unfolded_dim
from archviz.trace.assemble import Call, Const, Ref, Traced
from archviz.trace.frames import FrameRecorder, held_locals
from archviz.trace.mapping import (
    map_function, map_method, map_module, mapped_class, piece_adapter, qualified_name, split_dim, wrapped_functions,
)

# a prime no model's own dim is likely to be a multiple of (ConvNets' widths are multiples of 8, ViTs' of 64, their
# grids 7 x 7 to 24 x 24), small enough that a tensor a model makes on the CPU at this batch costs little
BATCH = 31
SECOND_BATCH = 3  # the second run, where one is needed: the batch dim is the one that changes between the runs
# keyword arguments that change only the later items of what a module returns (nn.MultiheadAttention's weights): its
# first item may still be a registry op's output
LATER_ITEMS_ONLY = frozenset({"need_weights", "average_attn_weights"})


class Untraceable(Exception):
    """torch.fx cannot trace the model (data-dependent control flow, unsupported Python); hooks take over."""


class _Tracer(fx.Tracer):
    """torch's leaf modules, and any subclass of a mapped torch class that keeps its forward (a user's Conv2d).
    Buffers read in forward are proxied, as parameters are: else fx computes with them while tracing and bakes the
    result in as a constant of its own (Swin's relative_position_index.view(-1), its attention mask), and the
    buffer is counted nowhere."""

    proxy_buffer_attributes = True
    frames: FrameRecorder | None = None  # set by trace_fx: each node notes the model's frames it was made in

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        if self.frames is not None:
            node.meta["frames"] = self.frames.stack()
        return node

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        """A parameter's or buffer's proxy, found by identity in a table made once: torch's own getattr searches
        every named parameter and buffer of the model at each access (a minute for a 1,000-layer model)."""
        if not isinstance(attr_val, torch.Tensor):
            return attr_val
        if getattr(self, "_weight_names", None) is None or self._weight_names[0] is not self.root:
            buffers = self.root.named_buffers() if self.proxy_buffer_attributes else ()
            table = {id(t): n for n, t in (*self.root.named_parameters(), *buffers)}
            self._weight_names = (self.root, table)
        name = self._weight_names[1].get(id(attr_val))
        if name is None:
            return attr_val
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]

    def is_leaf_module(self, module, qualified_name: str) -> bool:
        return mapped_class(type(module)) is not None or super().is_leaf_module(module, qualified_name)


class ModelGraph:
    """What the walker asks of a traced model: its graph, and its submodules by name. Unlike fx.GraphModule, it
    generates no Python code for the graph (a tenth of a trace's time), which nothing here runs."""

    def __init__(self, model, graph: fx.Graph):
        self.model = model
        self.graph = graph
        self.get_submodule = model.get_submodule


class _Recorder(fx.Interpreter):
    """Runs the traced graph and keeps every node's value."""

    def __init__(self, traced: ModelGraph):
        super().__init__(traced.model, garbage_collect_values=False, graph=traced.graph)
        self.values: dict[fx.Node, object] = {}

    def run_node(self, node):
        target = node.target if node.op != "call_module" else self.module.get_submodule(node.target)
        result = None
        if node.op in ("call_module", "call_function") and _made_by_shape(target):
            args, kwargs = self.fetch_args_kwargs_from_env(node)
            result = _value_by_shape(target, args, kwargs)
        if result is None:
            result = super().run_node(node)
        self.values[node] = result
        return result


def keeps_shape(target) -> bool:
    """Normalisations, activations and dropout, as functions (normalisations only) or torch modules: on meta
    tensors torch runs their Python decompositions (~3 ms a normalisation) to make a tensor of the input's shape and
    dtype, all the trace needs. FlopCounterMode counts none of them."""
    if isinstance(target, torch.nn.Module):
        base = next((cls for cls in _SHAPE_KEEPING_MODULES if isinstance(target, cls)), None)
        return base is not None and type(target).forward is base.forward
    try:
        return target in _shape_keeping_functions()
    except TypeError:  # an unhashable callable
        return False


def _made_by_shape(target) -> bool:
    if isinstance(target, torch.nn.Module):
        return keeps_shape(target) or isinstance(target, (torch.nn.Identity, torch.nn.Linear))
    try:
        return keeps_shape(target) or target in _shaped_calls()
    except TypeError:  # an unhashable callable
        return False


def _value_by_shape(target, args, kwargs):
    """What a call whose output shape is plain returns, made without running it (on meta tensors torch runs Python
    decompositions of linear and attention, a millisecond a call); None where the call must run (arguments torch
    would refuse, or that change the shape)."""
    if isinstance(target, torch.nn.Identity):
        return args[0] if args and type(target).forward is torch.nn.Identity.forward else None
    if isinstance(target, torch.nn.Linear):
        return _linear_value(target, *args, **kwargs)
    if not isinstance(target, torch.nn.Module) and not keeps_shape(target):
        return _attention_value(*args, **kwargs)
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor):
        return None
    return x if getattr(target, "inplace", False) else torch.empty_like(x)


def _linear_value(layer, x=None, **kwargs):
    if type(layer).forward is not torch.nn.Linear.forward or kwargs or not isinstance(x, torch.Tensor) or not x.dim() \
            or x.shape[-1] != layer.in_features or x.dtype != layer.weight.dtype:
        return None
    return x.new_empty((*x.shape[:-1], layer.out_features))


def _attention_value(query=None, key=None, value=None, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                     enable_gqa=False):
    """scaled_dot_product_attention's (..., L, Ev) output for q (..., L, E), k (..., S, E), v (..., S, Ev), where
    nothing broadcasts and no mask is given."""
    tensors = (query, key, value)
    if attn_mask is not None or enable_gqa or not all(isinstance(t, torch.Tensor) for t in tensors):
        return None
    if not query.dim() == key.dim() == value.dim() >= 2 or not query.dtype == key.dtype == value.dtype:
        return None
    if query.shape[:-2] != key.shape[:-2] or key.shape[:-1] != value.shape[:-1] or query.shape[-1] != key.shape[-1]:
        return None
    return query.new_empty((*query.shape[:-1], value.shape[-1]))


@functools.cache
def _shaped_calls() -> frozenset:
    return frozenset({torch.nn.functional.scaled_dot_product_attention})


_SHAPE_KEEPING_MODULES = (
    torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.Dropout,
    torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.ReLU, torch.nn.ReLU6, torch.nn.GELU,
    torch.nn.SiLU, torch.nn.Sigmoid, torch.nn.Tanh, torch.nn.Hardswish, torch.nn.Hardsigmoid, torch.nn.Mish,
    torch.nn.LeakyReLU, torch.nn.ELU,
)


@functools.cache
def _shape_keeping_functions() -> frozenset:
    F = torch.nn.functional
    return frozenset({F.batch_norm, torch.batch_norm, F.layer_norm, torch.layer_norm, F.group_norm, torch.group_norm})


@dataclass
class _TupleRef:
    """A call that returned several tensors (chunk, split, a module returning a tuple); pieces become nodes on use."""

    node: fx.Node
    values: tuple
    second_values: Callable[[], tuple]  # the values at the second batch size (a second run, on demand)
    module: object = None  # the module, for a module call
    pieces: dict[int, Ref] = field(default_factory=dict)

    def twin(self, index: int):
        """Piece `index`'s value at the second batch size, or None where that is not known."""
        twins = self.second_values()
        return twins[index] if index < len(twins) else None


@dataclass(frozen=True)
class _Where:
    """A value's per-sample shape, the dim its batch is in, and the per-sample size of that dim if folded (else 1)."""

    shape: tuple[int, ...]
    batch_dim: int = 0
    fold: int = 1


def _batch_first(refs, where: _Where) -> bool:
    """Whether a call's inputs and output keep the batch first (folded or not), as every registry op's formulas
    assume."""
    return where.batch_dim == 0 and all(ref.batch_dim == 0 for ref in refs)


def _takes(mapped, refs, where: _Where):
    """The mapping, where its op can read the call's tensors: a folded batch only by ops that take one."""
    folded = where.fold > 1 or any(ref.fold > 1 for ref in refs)
    if mapped is None or not folded or get_op(mapped.op).takes_folded_batch:
        return mapped
    return None


def _moved(target: str, refs, where: _Where) -> str:
    """What ran, saying where the batch was when it was not first or was folded (an opaque layer's target)."""
    def place(dim: int, fold: int) -> str:
        return f"batch at dim {dim}" if fold == 1 else f"batch folded into dim {dim} x {fold}"

    inputs = sorted({(r.batch_dim, r.fold) for r in refs if r.batch_dim or r.fold > 1})
    said = [f"input: {', '.join(place(*p) for p in inputs)}"] if inputs else []
    if where.batch_dim or where.fold > 1:
        said.append(f"output: {place(where.batch_dim, where.fold)}")
    return target if not said else f"{target} ({'; '.join(said)})"


def batch_free(tensor, what: str) -> tuple[int, ...]:
    """The tensor's shape without the batch; an error where its first dim is not the batch."""
    shape = tuple(tensor.shape)
    if not shape or shape[0] != BATCH:
        raise UnsupportedOpError(
            f"{what} gives a tensor of shape {fmt_shape(shape) if shape else 'a scalar'} whose first dim is not "
            f"the batch (traced with a batch of {BATCH}); archviz analyses models whose tensors keep the batch first")
    return shape[1:]


def no_grad_parameters(model) -> None:
    """Nothing here takes a gradient, and FlopCounterMode's module tracker fails ("Expected gradient function to be
    set") where a parameter that requires grad is passed to a module as its input (PiT's and CaiT's class tokens)."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)


class Measured(NamedTuple):
    """What FlopCounterMode counted for one call: MACs per sample, and MACs once per pass (on weights alone)."""

    per_sample: int
    once: int = 0


# tensor methods that read a tensor argument for its dtype and device only: x.new_zeros(n), scale.type_as(x)
_TEMPLATE_METHODS = frozenset({"new_tensor", "new_zeros", "new_ones", "new_full", "new_empty"})


def _data_arguments(node: fx.Node):
    """The arguments whose values a call's result is computed from: all but a dtype-and-device template's."""
    if node.op == "call_method" and node.target in _TEMPLATE_METHODS:
        return (node.args[1:], node.kwargs)
    if node.op == "call_method" and node.target == "type_as":
        return (node.args[:1], node.kwargs)
    return (node.args, node.kwargs)


def _nothing() -> Measured:
    return Measured(0)



def _flops(function, node: fx.Node, values: dict) -> int | None:
    """FLOPs FlopCounterMode counts for one call of `node`, its arguments taken from `values`; None if it fails."""
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            _run_again(function, node, values)
    except Exception:  # a call that will not run again out of its context: its MACs stay uncounted, and say so
        return None
    return counter.get_total_flops()


def _run_again(function, node: fx.Node, values) -> None:
    """`function` called as `node` was, its arguments' values taken from `values` (one batch size's)."""
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: values[n])
    function(*args, **kwargs)


def _flops_of(nodes, callable_of, values) -> int:
    """FLOPs FlopCounterMode counts for the calls of `nodes` together (one that will not run again counts none)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        for node in nodes:
            try:
                _run_again(callable_of(node), node, values)
            except Exception:  # out of its context (see _flops)
                continue
    return counter.get_total_flops()


def _with_call_arguments(mapping, kwargs):
    """The mapping with the arguments its op takes from the module's call (Op.call_arguments) set as that call
    gave them: attention(x, x, x, need_weights=False) is the op with need_weights false."""
    if mapping is None:
        return None
    given = {name: kwargs[name] for name in get_op(mapping.op).call_arguments if name in kwargs}
    if any(not isinstance(value, (bool, int, float, str)) for value in given.values()):
        return None  # a traced value, not a constant: the call stays opaque
    return dataclasses.replace(mapping, attrs={**mapping.attrs, **given}) if given else mapping


def _folded_input(refs) -> bool:
    """Whether a call's first tensor holds a folded batch: its dim arguments count that tensor's dims."""
    return bool(refs) and refs[0].fold > 1


def trace_fx(model, input_shape: tuple[int, ...]) -> Traced:
    """The calls of `model` (on the meta device, eval mode) for one input of `input_shape` (batch left out).
    `model` is archviz's own copy: its parameters stop requiring grad (see no_grad_parameters)."""
    no_grad_parameters(model)
    tracer = _Tracer(autowrap_functions=wrapped_functions())
    tracer.frames = FrameRecorder(boundary=sys._getframe())
    try:
        graph = tracer.trace(model)
    except Exception as error:  # fx raises many kinds (TraceError, TypeError, NotImplementedError, ...)
        raise Untraceable(f"{type(error).__name__}: {error}") from None
    finally:
        tracer.frames.close()
    module = ModelGraph(tracer.root, graph)  # the model's own submodules and tensors (identity matters)
    recorder = _Recorder(module)
    try:
        recorder.run(torch.empty((BATCH, *input_shape), device="meta"))
    except Exception as error:
        raise Untraceable(f"the traced graph does not run: {type(error).__name__}: {error}") from None
    return walk(module, model, recorder.values, _SecondRun(module, input_shape))


class _SecondRun(Mapping):
    """Every node's value at SECOND_BATCH, from a run of the graph made when first asked for (most traces never ask);
    empty where the graph does not run at that batch."""

    def __init__(self, traced: ModelGraph, input_shape: tuple[int, ...]):
        self._traced, self._input_shape = traced, input_shape
        self._values: dict | None = None

    def _run(self) -> dict:
        if self._values is None:
            from archviz.crosscheck.common import without_dynamo_import

            recorder = _Recorder(self._traced)
            try:
                with without_dynamo_import(), torch.no_grad():
                    recorder.run(torch.empty((SECOND_BATCH, *self._input_shape), device="meta"))
                self._values = recorder.values
            except Exception:  # the values at BATCH stand alone, and where they cannot, say so (located)
                self._values = {}
        return self._values

    def __getitem__(self, node):
        return self._run()[node]

    def __iter__(self):
        return iter(self._run())

    def __len__(self) -> int:
        return len(self._run())


def located(tensor, twin: Callable[[], object], what: str) -> _Where:
    """Where a value's batch is: found at BATCH alone where it can be, else from the same value at the second batch
    size (`twin()`, None where not known)."""
    return located_at_batch(tensor, what) or located_by_twin(tensor, twin(), what)


def located_at_batch(tensor, what: str) -> _Where | None:
    """Where a value's batch is, from its shape at BATCH alone: the one dim whose size is a multiple of BATCH
    (BATCH x m, m not itself one: m samples folded in). None where two dims are; an error where none is."""
    shape = tuple(tensor.shape)
    holding = [i for i, size in enumerate(shape) if size and not size % BATCH]
    if not holding:
        return _Where(batch_free(tensor, what))
    if len(holding) == 1 and shape[holding[0]] // BATCH % BATCH:
        return _folded_at(shape, holding[0])
    return None


def located_by_twin(tensor, twin, what: str) -> _Where:
    """Where a value's batch is, given the same value at the second batch size: the dim of size BATCH x m then
    SECOND_BATCH x m. Without a twin, or where no single dim follows the batch, the batch must be dim 0."""
    shape, other = tuple(tensor.shape), tuple(twin.shape) if twin is not None else None
    if other is None or len(other) != len(shape):
        return _Where(batch_free(tensor, what))
    moved = [i for i, (a, b) in enumerate(zip(shape, other)) if a != b]
    if len(moved) == 1:
        dim = moved[0]
        fold, rest = divmod(shape[dim], BATCH)
        if not rest and other[dim] == fold * SECOND_BATCH:
            return _folded_at(shape, dim)
    return _Where(batch_free(tensor, what))


def _folded_at(shape: tuple[int, ...], dim: int) -> _Where:
    """The value's batch in `dim`, whose size is BATCH x m: m samples folded in (1: the batch alone)."""
    fold = shape[dim] // BATCH
    kept = () if fold == 1 else (fold,)
    return _Where(shape[:dim] + kept + shape[dim + 1:], dim, fold)


def walk(module, model, values: dict, twins: Mapping) -> Traced:
    """The Calls of a traced graph (`module.graph`, its submodules by `module.get_submodule`), given every node's
    value at BATCH and, where known, at SECOND_BATCH (read only where needed: see _SecondRun); `model`'s parameters
    and buffers are its weights."""
    return _Walker(module, model, values, twins).walk()


class _Walker:
    def __init__(self, module, model, values, twins):
        self.module = module
        self.values = values
        self.twins = twins  # the same values at the second batch size
        # a call's arguments at the second batch size: a value without a twin is the same at both (a weight's)
        self._second = collections.ChainMap(twins, values)
        self.resolved: dict[fx.Node, object] = {}
        self.calls: list[Call] = []
        # calls on no input-dependent tensor, counted together at the end: once per pass (weights alone: a
        # position-bias MLP), and per sample (from the batch size: EdgeNeXt's position encoding of a B x H x W grid)
        self.constants: list[fx.Node] = []
        # the model's own tensors: fx registers the constants it bakes in (a mask computed while tracing) as buffers
        # of the traced module, which are none of the model's weights
        self.weights = {id(t) for t in (*model.parameters(), *model.buffers())}

    def walk(self) -> Traced:
        output = None
        calls_so_far: dict[fx.Node, int] = {}  # node -> the index of the last call made by then
        for node in self.module.graph.nodes:
            if node.op == "output":
                output = self._output(node)
            else:
                self.resolved[node] = self._resolve(node)
            calls_so_far[node] = len(self.calls) - 1
        weight_flops, sized_flops = self._constant_flops()
        return Traced(tuple(self.calls), output, "fx", weight_macs=weight_flops // 2, sized_macs=sized_flops // 2,
                      held=self._held_by_locals(calls_so_far))

    def _held_by_locals(self, calls_so_far: dict) -> tuple[tuple[int, int], ...]:
        """(call, the last call it stays alive through) for the calls' tensors a local name of the model's code
        holds past their last use (archviz/trace/frames.py)."""
        held = {}
        for value, until in held_locals(self.module.graph.nodes, lambda node: node.meta.get("frames", ())):
            ref = self.resolved.get(value)
            if isinstance(ref, Ref) and ref.call is not None and calls_so_far[until] > ref.call:
                held[ref.call] = max(held.get(ref.call, -1), calls_so_far[until])
        return tuple(sorted(held.items()))

    # --- values ---------------------------------------------------------------------------------------------------
    def _resolve(self, node: fx.Node):
        value = self.values.get(node)
        if node.op == "placeholder":
            if not any(n.op == "placeholder" for n in self.resolved):
                return Ref(None, batch_free(value, "the input"))
            return value  # a later argument of forward, at its default
        if node.op == "get_attr":
            if isinstance(value, torch.Tensor):  # a weight, or (eager.py) a tensor computed from weights and cached
                return Const((value,) if id(value) in self.weights else tuple(node.meta.get("weights", ())), value)
            return value
        tensors = isinstance(value, torch.Tensor)
        several = isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value)
        if not (tensors or several):
            return value  # sizes, dims, flags
        if not self._live(_data_arguments(node)):  # computed from weights alone (Swin v2's bias MLP)
            tensors = self._const_tensors((node.args, node.kwargs))
            if node.op == "call_module":
                module = self.module.get_submodule(node.target)
                tensors += (*module.parameters(), *module.buffers())
            self.constants.append(node)
            return Const(tensors, value)
        if node.op == "call_function" and node.target is operator.getitem \
                and isinstance(self.resolved.get(node.args[0]), _TupleRef):
            return self._piece(self.resolved[node.args[0]], node.args[1]) if tensors else value
        if several:
            owner = self.module.get_submodule(node.target) if node.op == "call_module" else None
            return _TupleRef(node, tuple(value), lambda: tuple(self.twins.get(node) or ()), owner)
        return self._call(node, value, lambda: self.twins.get(node))

    def _live(self, args) -> bool:
        found = []
        fx.node.map_arg(args, lambda n: found.append(n) or n)
        return any(isinstance(self.resolved.get(n), (Ref, _TupleRef)) for n in found)

    def _const_tensors(self, args) -> tuple:
        found = []
        fx.node.map_arg(args, lambda n: found.append(n) or n)
        return tuple(t for n in found if isinstance(c := self.resolved.get(n), Const) for t in c.tensors)

    def _args(self, args):
        """fx arguments with every node replaced by its resolved value (tuples of pieces expanded)."""
        def value(n):
            resolved = self.resolved[n]
            if isinstance(resolved, _TupleRef):
                return tuple(self._piece(resolved, i) if isinstance(v, torch.Tensor) else v
                             for i, v in enumerate(resolved.values))
            return resolved

        return fx.node.map_arg(args, value)

    @staticmethod
    def _flat(args, kind) -> list:
        out = []

        def visit(value):
            if isinstance(value, kind):
                out.append(value)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    visit(item)
            elif isinstance(value, dict):
                for item in value.values():
                    visit(item)

        visit(args)
        return out

    # --- calls ----------------------------------------------------------------------------------------------------
    def _stack(self, node: fx.Node) -> list[tuple[str, str]]:
        """(key, module path) of the module calls the node ran inside, outermost first."""
        stack = node.meta.get("nn_module_stack") or {}
        return [(key, entry[0] if isinstance(entry, tuple) else str(entry)) for key, entry in stack.items()]

    def _call(self, node: fx.Node, value, twin) -> Ref:
        args, kwargs = self._args(node.args), self._args(node.kwargs)
        refs = tuple(self._flat((args, kwargs), Ref))
        consts = tuple(t for c in self._flat((args, kwargs), Const) for t in c.tensors)
        stack = self._stack(node)
        if node.op == "call_module":
            plain = not kwargs and all(isinstance(arg, Ref) for arg in args)  # x, not up(x, output_size=...)
            return self._module_call(node, self.module.get_submodule(node.target), stack, refs, consts,
                                     value, twin, mapped=plain)
        if node.op == "call_function":
            target, base = qualified_name(node.target), getattr(node.target, "__name__", "op")
        else:
            target, base = f"Tensor.{node.target}", node.target
        where = target if not stack else f"{target} in {stack[-1][1]}"
        at = located(value, twin, where)
        mapper = map_function if node.op == "call_function" else map_method
        mapped = None
        if _batch_first(refs, at):
            mapped = _takes(mapper(node.target, args, kwargs, at.shape, folded=_folded_input(refs)), refs, at)
        if mapped is not None and {id(t) for t in mapped.claims} != {id(t) for t in consts}:
            mapped = None  # the op's formula would not count every weight the call uses
        key, path = stack[-1] if stack else ("", "")
        within = tuple(k for k, _ in stack)
        return self._add(Call("function", path, key, within, base, _moved(target, refs, at), refs, at.shape, mapped,
                              consts, at.batch_dim, at.fold, self._measure(node)))

    def _module_call(self, node: fx.Node, module, stack, refs, consts, value, twin, *, mapped: bool,
                     piece: str = "", first_piece: bool = True) -> Ref:
        path = node.target
        own, within = (stack[-1][0] if stack else path), tuple(k for k, _ in stack[:-1])
        target = qualified_name(type(module)) + piece
        at = located(value, twin, f"{target} at {path}")
        mapping = None
        if mapped and not consts and _batch_first(refs, at):
            mapping = _takes(map_module(module, refs, folded=_folded_input(refs)), refs, at)
            mapping = _with_call_arguments(mapping, node.kwargs)
        owned = (*module.parameters(), *module.buffers(), *consts)
        measure = self._measure(node) if first_piece else _nothing  # a tuple's first piece holds its MACs
        return self._add(Call("module", path, own, within, type(module).__name__, _moved(target, refs, at),
                              refs, at.shape, mapping, owned, at.batch_dim, at.fold, measure))

    def _constant_flops(self) -> tuple[int, int]:
        """(once per pass, per sample) FLOPs of the calls on no input-dependent tensor: a + b x batch, found by
        running them all again at both batch sizes under one FlopCounterMode each (one per call cost more than the
        trace on a weight-standardised NFNet)."""
        if not self.constants:
            return 0, 0
        first = _flops_of(self.constants, self._callable, self.values)
        if not first or not self.twins:
            return first, 0
        per_sample = (_flops_of(self.constants, self._callable, self._second) - first) // (SECOND_BATCH - BATCH)
        return first - per_sample * BATCH, per_sample

    def _measure(self, node: fx.Node):
        return lambda: self._measured(node)

    def _measured(self, node: fx.Node) -> Measured | None:
        """A call's MACs per sample: FlopCounterMode's FLOPs / 2 running it again at both batch sizes (the growth per
        sample; what does not grow is computed on weights, once per pass), or at the first alone where the second is
        not known. None where it does not run again, or where its cost grows faster than the batch (attention across
        the samples of a batch): no figure per sample holds then."""
        if keeps_shape(self._callable(node)):  # a normalisation: FlopCounterMode counts none (running it is slow)
            return Measured(0)
        first = _flops(self._callable(node), node, self.values)
        if first == 0:  # none at one batch size: none per sample and none once
            return Measured(0)
        second = None
        if first is not None:
            resized = self._resized_inputs(node)
            second = _flops(self._callable(node), node, resized) if resized is not None else None
            if second is None and self.twins:
                second = _flops(self._callable(node), node, self._second)
        if second is None:
            return None if first is None else Measured(first // (2 * BATCH))
        per_sample = (second - first) // (SECOND_BATCH - BATCH)
        once = first - per_sample * BATCH
        return None if once < 0 else Measured(per_sample // 2, once // 2)

    def _resized_inputs(self, node: fx.Node) -> dict | None:
        """A call's inputs at SECOND_BATCH without a second run: each input tensor remade with its batch dim (found
        at BATCH) resized, each weight as it is. None where an input is anything else (a size read off a tensor,
        which may hold the batch)."""
        values = {}
        for source in node.all_input_nodes:
            resolved, value = self.resolved.get(source), self.values.get(source)
            if isinstance(resolved, Ref) and isinstance(value, torch.Tensor):
                shape = list(value.shape)
                shape[resolved.batch_dim] = resolved.fold * SECOND_BATCH
                values[source] = value.new_empty(shape)
            elif isinstance(resolved, Const):
                values[source] = value
            else:
                return None
        return values

    def _callable(self, node: fx.Node):
        if node.op == "call_module":
            return self.module.get_submodule(node.target)
        if node.op == "call_method":
            return lambda tensor, *args, **kwargs: getattr(tensor, node.target)(*args, **kwargs)
        return node.target

    def _add(self, call: Call) -> Ref:
        self.calls.append(call)
        return Ref(len(self.calls) - 1, call.out_shape, call.batch_dim, call.fold)

    def _piece(self, producer: _TupleRef, index) -> Ref:
        if not isinstance(index, int) or not -len(producer.values) <= index < len(producer.values):
            raise UnsupportedOpError(f"cannot follow item {index!r} of {producer.node.target}'s results")
        index %= len(producer.values)
        if index in producer.pieces:
            return producer.pieces[index]
        node, value = producer.node, producer.values[index]
        twin = functools.partial(producer.twin, index)
        args, kwargs = self._args(node.args), self._args(node.kwargs)
        refs = tuple(self._flat((args, kwargs), Ref))
        consts = tuple(t for c in self._flat((args, kwargs), Const) for t in c.tensors)
        stack = self._stack(node)
        if producer.module is not None:
            first = index == 0 and all(isinstance(arg, Ref) for arg in args) and kwargs.keys() <= LATER_ITEMS_ONLY
            ref = self._module_call(node, producer.module, stack, refs, consts, value, twin, mapped=first,
                                    first_piece=not producer.pieces,
                                    piece=f"[{index}]" if index else "")
        else:
            adapter = piece_adapter(node.target, method=node.op != "call_function")
            target = qualified_name(node.target) if node.op == "call_function" else f"Tensor.{node.target}"
            base = getattr(node.target, "__name__", "op") if node.op == "call_function" else node.target
            at = located(value, twin, target)
            mapped = None
            if adapter is not None and refs and args and args[0] is refs[0] and not consts and _batch_first(refs, at):
                pieces = [located(v, functools.partial(producer.twin, i), target).shape
                          for i, v in enumerate(producer.values)]
                dim = split_dim(args, kwargs)
                mapped = _takes(adapter(refs[0], unfolded_dim(dim) if refs[0].fold > 1 else dim, pieces, index),
                                refs, at)
            key, path = stack[-1] if stack else ("", "")
            measure = self._measure(node) if not producer.pieces else _nothing  # the first piece holds the MACs
            ref = self._add(Call("function", path, key, tuple(k for k, _ in stack), base,
                                 _moved(f"{target}[{index}]", refs, at), refs, at.shape, mapped, consts, at.batch_dim,
                                 at.fold, measure))
        producer.pieces[index] = ref
        return ref

    def _output(self, node: fx.Node) -> int:
        found = self._flat(self._args(node.args), Ref)
        if not found or found[0].call is None:
            raise UnsupportedOpError("the model's output does not come from any layer (it returns its input, or "
                                     "nothing that depends on it)")
        return found[0].call
