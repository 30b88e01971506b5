"""The records an op entry uses to say how it meets torch and ONNX, with no torch, numpy or onnx imported here.

An op declares, beside its formulas:
  * `torch_calls`: a `TorchCalls` naming, by dotted path, the torch module classes, functions and tensor methods it
    matches when a model is traced, each with an adapter to the op's arguments (archviz/trace/mapping.py resolves
    the paths and builds the lookup tables; two ops claiming one callable is an error);
  * `write_onnx(emitter, node, inputs)`: the ONNX nodes computing what its torch module computes
    (archviz/onnx/export.py supplies the emitter);
  * `onnx_reads`: ONNX op type -> a reader turning one ONNX node into an `OnnxLayer` of this op or another
    (archviz/onnx/convert.py supplies the node view and folds the layers into a Graph).

Adapters may be optimistic: the op checks the arguments it is given (archviz/spec/args.py) and the importer checks
its shape and counts against what torch or ONNX computed, so a call an op does not accept becomes opaque, and a
formula that disagrees is a bug.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

Shape = tuple[int, ...]
EMPTY: Mapping = MappingProxyType({})


# --- tracing -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ref:
    """A traced tensor that depends on the input: the call that made it (None: the input itself), its shape without
    the batch, and where the batch is (0 almost always; attention code permutes it inward: (3, B, heads, N, d)).

    `fold` > 1: the batch is folded into dim `batch_dim` with a dim of the model's own (window attention's
    B * windows); the per-sample shape keeps that dim with its per-sample size `fold`, so an op reads the tensor as
    (B, fold, ...), the batch apart, and every count per sample stays right."""

    call: int | None
    shape: Shape
    batch_dim: int = 0
    fold: int = 1


@dataclass(frozen=True)
class Const:
    """A tensor that does not depend on the input: a parameter or buffer, or something computed from them only.
    `tensors` are the model's parameters and buffers it was made from (compared by identity)."""

    tensors: tuple = ()
    value: Any = field(default=None, compare=False, repr=False)  # the tensor itself (a meta tensor)

    @property
    def parameter(self):
        """The model parameter this constant is, as it is (not computed from it); else None."""
        return self.value if len(self.tensors) == 1 and self.tensors[0] is self.value else None


@dataclass(frozen=True)
class Mapped:
    """A call as a registry op: its name, raw arguments (checked by the op), inputs, and the model tensors (parameters
    and buffers) its formula counts."""

    op: str
    attrs: Mapping[str, Any]
    inputs: tuple[Ref, ...]
    claims: tuple = ()


ModuleAdapter = Callable[[Any, tuple[Ref, ...]], "Mapped | None"]  # (the module, its traced inputs)
PieceAdapter = Callable[[Ref, Any, list[Shape], int], "Mapped | None"]  # (source, dim, the pieces' shapes, index)


@dataclass(frozen=True)
class Signature:
    """A traced function's arguments by name (a name after `*` collects the remaining positionals: x.view(n, -1)),
    the defaults of those a call may leave out, and the adapter from the bound arguments and the traced output
    shape to the op."""

    names: tuple[str, ...]
    build: Callable[[dict, Shape], "Mapped | None"]
    defaults: Mapping[str, Any] = field(default_factory=lambda: EMPTY)

    def bind(self, args, kwargs) -> dict[str, Any] | None:
        """Arguments by name, defaults filled; None when they do not fit the signature."""
        names = self.names
        rest = None
        if names and names[-1].startswith("*"):
            names, rest = names[:-1], names[-1][1:]
        if len(args) > len(names) and rest is None:
            return None
        bound = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names or key in bound:
                return None
            bound[key] = value
        for key in names:
            if key not in bound:
                if key not in self.defaults:
                    return None
                bound[key] = self.defaults[key]
        if rest is not None:
            bound[rest] = tuple(args[len(names):])
        return bound

    def apply(self, args, kwargs, out: Shape, *, folded: bool = False) -> Mapped | None:
        """The op of a call; `folded`: its first tensor holds a folded batch, so its dims count as the op reads them
        (unfolded_arguments)."""
        bound = self.bind(args, kwargs)
        if bound is not None and folded:
            bound = unfolded_arguments(bound)
        return None if bound is None else self.build(bound, out)


@dataclass(frozen=True)
class TorchCalls:
    """What an op matches when tracing, by dotted path: module classes ("torch.nn.Conv2d"), functions
    ("torch.nn.functional.relu", "operator.add") and tensor methods ("Tensor.relu"), and functions returning a tuple
    whose items the op stands for (`pieces`: torch.chunk's items are narrows). A path under a package that is not
    installed (torchvision) is skipped."""

    modules: Mapping[str, ModuleAdapter] = field(default_factory=lambda: EMPTY)
    functions: Mapping[str, Signature] = field(default_factory=lambda: EMPTY)
    pieces: Mapping[str, PieceAdapter] = field(default_factory=lambda: EMPTY)


NO_TORCH_CALLS = TorchCalls()


DIM_ARGUMENTS = frozenset({"dim", "dim0", "dim1", "axis0", "axis1", "start_dim", "end_dim", "dims"})
REFUSED_FOLDED = frozenset({"equation"})  # einsum's letters name the torch dims one by one: not rewritten


def unfolded_dim(dim):
    """A dim of a call on a folded tensor (B*m, ...) as the op counts it on (B, m, ...): 0, the folded dim itself,
    has no such dim (None); later dims move one on; negative ones count from the end either way."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        return dim
    if dim == 0:
        return None
    return dim + 1 if dim > 0 else dim


def _unfolded_dims(dims):
    """A tuple of dims: permute's order, which must keep the folded dim first ((0, 2, 1) -> (0, 1, 3, 2)), or each
    dim of a reduction or roll."""
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else tuple(dims)
    if dims and dims[0] == 0 and all(isinstance(d, int) for d in dims) \
            and sorted(d % len(dims) for d in dims) == list(range(len(dims))):
        return (0, 1, *(d + 1 if d >= 0 else d for d in dims[1:]))
    moved = tuple(unfolded_dim(d) for d in dims)
    return None if None in moved else moved


def _unfolded_index(index):
    """x[...] of a folded tensor: its first item (the folded dim) becomes the batch's `:` and the per-sample `:`."""
    items = index if isinstance(index, tuple) else (index,)
    if items and items[0] is Ellipsis:
        return index
    return (slice(None), *items)


def unfolded_arguments(bound: dict) -> dict | None:
    """A call's arguments, on a tensor whose batch is folded into its first dim, as the op reads them: the tensor
    seen as (B, m, ...). None: an argument the op cannot read that way (a dim naming the folded dim itself)."""
    if REFUSED_FOLDED & bound.keys():
        return None
    out = dict(bound)
    for key, value in bound.items():
        if key in DIM_ARGUMENTS and isinstance(value, (tuple, list)):
            out[key] = _unfolded_dims(value)
        elif key in DIM_ARGUMENTS and value is not None:
            out[key] = unfolded_dim(value)
        elif key == "index" and "dim" not in bound:  # getitem's index; select's (with a dim) is a position
            out[key] = _unfolded_index(value)
        elif key == "sizes":  # expand's sizes: the batch's -1 first
            sizes = tuple(value[0]) if len(value) == 1 and isinstance(value[0], (tuple, list)) else tuple(value)
            out[key] = (-1, *sizes)
        else:
            continue
        if out[key] is None:
            return None
    return out


def is_ref(value) -> bool:
    return isinstance(value, Ref)


def batch_dim(dim, rank: int) -> int | None:
    """A dim in torch counting (batch 0) made non-negative, for a tensor of `rank` dims with the batch; None if bad."""
    if isinstance(dim, bool) or not isinstance(dim, int) or not -rank <= dim < rank:
        return None
    return dim % rank


def unary(op: str, **fixed) -> Callable[[dict, Shape], Mapped | None]:
    """An adapter for an op of one input: the `fixed` arguments, and inplace or approximate where the call has them."""

    def build(a, out):
        if not is_ref(a["input"]):
            return None
        return Mapped(op, {**fixed, **{k: a[k] for k in ("inplace", "approximate") if k in a}}, (a["input"],))

    return build


def module_args(op: str, *names: str) -> ModuleAdapter:
    """A module adapter copying the module's attributes `names` as the op's arguments."""
    return lambda m, refs: Mapped(op, {name: getattr(m, name) for name in names}, refs)


# --- ONNX ----------------------------------------------------------------------------------------------------------

class NotRepresentable(Exception):
    """This ONNX node is not any registry op as it stands; the message says why, and it becomes an opaque layer."""


@dataclass(frozen=True)
class OnnxLayer:
    """What one ONNX node, with the nodes folded into it, becomes."""

    op: str
    args: Mapping[str, Any]
    inputs: tuple[str, ...]  # the ONNX activation tensors it reads
    output: str  # the ONNX tensor it produces
    absorbed: tuple[int, ...] = ()  # indices of later nodes folded into it (a bias Add, the Mul of x * sigmoid(x))
    weight: str | None = None  # the stored tensor of a conv/linear weight: the key for weights used twice
    stored: tuple[str, ...] = ()  # the stored tensors it reads (names for the path, params for an opaque layer)
    note: str | None = None


def onnx_float(value) -> float:
    """An ONNX float attribute (float32) as the decimal it was written as: 0.9 rather than 0.8999999761581421."""
    return float(f"{value:.7g}")


def onnx_pair(values) -> int | list[int]:
    values = [int(v) for v in values]
    return values[0] if len(values) == 2 and values[0] == values[1] else values


def onnx_pads(attrs, spatial, kernel, strides, dilations) -> tuple[list[int], list[int]]:
    """(before, after) padding per spatial axis of an ONNX Conv or pool, from `pads` or `auto_pad`."""
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
        return [0] * len(kernel), [0] * len(kernel)
    pads = list(attrs.get("pads", [0] * 2 * len(kernel)))
    if len(pads) != 2 * len(kernel):
        raise NotRepresentable(f"pads {pads} are not those of a {len(kernel)}-d window")
    return pads[:len(kernel)], pads[len(kernel):]


def window_matrix(size: int, out: int) -> list[list[float]]:
    """Row i averages window i of torch's adaptive pooling: [floor(i*size/out), ceil((i+1)*size/out))."""
    rows = []
    for i in range(out):
        start, stop = i * size // out, -(-(i + 1) * size // out)
        rows.append([1 / (stop - start) if start <= j < stop else 0.0 for j in range(size)])
    return rows


def is_close(value, target) -> bool:
    return math.isclose(value, target, rel_tol=1e-6)


def onnx_symmetric(before, after, spatial, kernel, strides, dilations, ceil_mode=False):
    """A symmetric padding giving the same output size as ONNX's (before, after), and a note when it differs."""
    from archviz.ops.base import SlidingAxis

    if before == after:
        return onnx_pair(before), None
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
    return onnx_pair(chosen), note


def join(op: str, with_parameter: str) -> Callable[[dict, Shape], Mapped | None]:
    """An adapter for x + y or x * y: `op` of two traced tensors; `with_parameter` of one traced tensor and a learned
    parameter as it is (a position embedding, a layer scale)."""

    def build(a, out):
        x, y = a["input"], a["other"]
        if a.get("alpha", 1) != 1:
            return None
        if is_ref(x) and is_ref(y):
            return Mapped(op, {}, (x, y))
        if is_ref(y):
            x, y = y, x
        if is_ref(x) and isinstance(y, Const) and y.parameter is not None:
            return Mapped(with_parameter, {"shape": list(y.parameter.shape)}, (x,), y.tensors)
        return None

    return build


def onnx_as(op_type: str, options: Callable[[Mapping], dict] = lambda attrs: {}):
    """write_onnx for an op that is one ONNX node of `op_type` on the same inputs, with attributes from `options`."""

    def write_onnx(self, e, node, x: list[str]) -> None:
        e.add(op_type, x, node.name, node.name, **options(node.attrs))

    return write_onnx


def onnx_gated(gate: str, **options):
    """write_onnx for x * gate(x): silu with Sigmoid, hardswish with HardSigmoid."""

    def write_onnx(self, e, node, x: list[str]) -> None:
        gated = e.add(gate, x[:1], f"{node.name}/{gate.lower()}", node.name, **options)
        e.add("Mul", [x[0], gated], node.name, f"{node.name}/Mul")

    return write_onnx


def onnx_reshape(e, node, x: list[str], shape) -> None:
    """A Reshape of x to (batch, *shape): 0 in ONNX's target keeps the batch dim."""
    target = e.constant(f"{node.name}/shape", [0, *shape], "int64")
    e.add("Reshape", [x[0], target], node.name, node.name)


def onnx_reads_as(op: str, args: Callable[[Any], dict] = lambda r: {}):
    """A reader for an ONNX node that is `op` of its first input, with arguments from the node (`args(reader)`)."""
    return lambda r: r.layer(op, args(r))


def onnx_join(op: str, with_parameter: str | None = None, args: Callable[[Any], dict] = lambda r: {}):
    """A reader for Add, Mul, Sum, Concat: `op` of the computed inputs (one alone is the identity), or with one
    stored weight W, x + W or x * W as `with_parameter` (a position embedding, a layer scale)."""

    def read(r):
        inputs = r.inputs()
        computed = [i for i in range(len(inputs)) if r.computed(i)]
        if len(computed) == len(inputs):
            return r.layer(op, args(r), inputs=inputs) if len(inputs) > 1 else r.layer("identity", inputs=inputs)
        if with_parameter is None or len(inputs) != 2 or len(computed) != 1:
            raise NotRepresentable("an operand is a stored tensor")
        stored = 1 - computed[0]
        if r.weight(stored) is None:
            raise NotRepresentable("an operand is a constant, not a stored weight")
        shape = r.stored_shape(stored, "operand")
        return r.layer(with_parameter, {"shape": list(shape) or [1]}, inputs=(inputs[computed[0]],), stored=r.stored())

    return read
