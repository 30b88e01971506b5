"""What a traced call is in archviz's op registry: a torch module, function or tensor method -> `Mapped` (the op, its
arguments and inputs), or None for an opaque node.

Modules are looked up by their exact class, or by the torch class whose forward a subclass keeps; functions by the
function object; methods by name. Never by a substring of a class name (STYLE.md, section 3). Arguments come in
resolved: `Ref` for a tensor that depends on the input, `Const` for one that does not, plain Python values for the
rest. The op checks the arguments it is given (archviz/spec/args.py) and the assembler checks its shape and counts
against the trace (archviz/trace/assemble.py), so a mapping may be optimistic: a call an op does not accept becomes
opaque, a formula that disagrees with torch is a bug.
"""

from __future__ import annotations

import math
import operator
from functools import cache
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from archviz.trace.assemble import Const, Mapped, Ref

Shape = tuple[int, ...]


# --- modules --------------------------------------------------------------------------------------------------------

def _conv(m, refs):
    if m.padding_mode != "zeros":
        return None
    return Mapped("conv2d", {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": m.kernel_size,
        "stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups,
        "bias": m.bias is not None}, refs)


def _pool_stride(m):
    return m.stride if m.stride not in (None, ()) else m.kernel_size


def _maxpool(m, refs):
    if m.return_indices:
        return None
    return Mapped("maxpool2d", {"kernel_size": m.kernel_size, "stride": _pool_stride(m), "padding": m.padding,
                                "dilation": m.dilation, "ceil_mode": m.ceil_mode}, refs)


def _avgpool(m, refs):
    if m.divisor_override is not None:
        return None
    return Mapped("avgpool2d", {"kernel_size": m.kernel_size, "stride": _pool_stride(m), "padding": m.padding,
                                "ceil_mode": m.ceil_mode, "count_include_pad": m.count_include_pad}, refs)


def _adaptive(output_size, refs):
    sides = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    if sides == (1, 1):
        return Mapped("global_avgpool2d", {}, refs)
    return Mapped("adaptive_avgpool2d", {"output_size": list(sides)}, refs)


def _activation(op: str, *names: str):
    return lambda m, refs: Mapped(op, {name: getattr(m, name) for name in names}, refs)


@cache
def module_table() -> dict[type, Callable]:
    table: dict[type, Callable] = {
        nn.Conv2d: _conv,
        nn.Linear: lambda m, refs: Mapped("linear", {"in_features": m.in_features, "out_features": m.out_features,
                                                     "bias": m.bias is not None}, refs),
        nn.BatchNorm2d: lambda m, refs: Mapped("batchnorm2d", {
            "num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
            "track_running_stats": m.track_running_stats}, refs),
        nn.LayerNorm: lambda m, refs: Mapped("layer_norm", {
            "normalized_shape": list(m.normalized_shape), "eps": m.eps, "elementwise_affine": m.elementwise_affine,
            "bias": m.bias is not None if m.elementwise_affine else True}, refs),
        nn.LocalResponseNorm: _activation("local_response_norm", "size", "alpha", "beta", "k"),
        nn.MaxPool2d: _maxpool,
        nn.AvgPool2d: _avgpool,
        nn.AdaptiveAvgPool2d: lambda m, refs: _adaptive(m.output_size, refs),
        nn.ReLU: _activation("relu", "inplace"),
        nn.ReLU6: _activation("relu6", "inplace"),
        nn.LeakyReLU: _activation("leaky_relu", "negative_slope", "inplace"),
        nn.Sigmoid: _activation("sigmoid"),
        nn.Tanh: _activation("tanh"),
        nn.GELU: _activation("gelu", "approximate"),
        nn.SiLU: _activation("silu", "inplace"),
        nn.Hardswish: _activation("hardswish", "inplace"),
        nn.Hardsigmoid: _activation("hardsigmoid", "inplace"),
        nn.Softmax: lambda m, refs: None if m.dim is None else Mapped("softmax", {"dim": m.dim}, refs),
        nn.Identity: _activation("identity"),
        nn.Flatten: _activation("flatten", "start_dim", "end_dim"),
    }
    for dropout in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout):  # identities at inference
        table[dropout] = _activation("dropout", "p", "inplace")
    try:
        from torchvision.ops import StochasticDepth
    except ImportError:
        pass
    else:
        table[StochasticDepth] = _activation("stochastic_depth", "p", "mode")
    return table


def mapped_class(cls: type) -> type | None:
    """The torch class whose mapping applies to `cls`: itself, or a base whose forward it keeps unchanged."""
    table = module_table()
    if cls in table:
        return cls
    for base in cls.__mro__[1:]:
        if base in table:
            return base if cls.forward is base.forward else None
    return None


def map_module(module, refs: tuple[Ref, ...]) -> Mapped | None:
    base = mapped_class(type(module))
    if base is None or len(refs) != 1:
        return None
    return module_table()[base](module, refs)


# --- functions and methods ------------------------------------------------------------------------------------------

def bind(args, kwargs, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any] | None:
    """Arguments by name, defaults filled; None when they do not fit the signature."""
    if len(args) > len(names):
        return None
    bound = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names or key in bound:
            return None
        bound[key] = value
    for key in names:
        if key not in bound:
            if key not in defaults:
                return None
            bound[key] = defaults[key]
    return bound


def _dim(dim, rank: int) -> int | None:
    """A dim in torch counting (batch 0) made non-negative, for a tensor of `rank` dims with the batch; None if bad."""
    if isinstance(dim, bool) or not isinstance(dim, int) or not -rank <= dim < rank:
        return None
    return dim % rank


def _ref(value) -> bool:
    return isinstance(value, Ref)


def _unary(op: str, **fixed):
    """An op of one input: the `fixed` arguments, and inplace or approximate where the call has them."""
    def build(a, out):
        if not _ref(a["input"]):
            return None
        return Mapped(op, {**fixed, **{k: a[k] for k in ("inplace", "approximate") if k in a}}, (a["input"],))

    return build


def _join(op: str):
    """x + y or x * y of two traced tensors; with a learned parameter as it is, add_param or mul_param."""
    def build(a, out):
        x, y = a["input"], a["other"]
        if a.get("alpha", 1) != 1:
            return None
        if _ref(x) and _ref(y):
            return Mapped(op, {}, (x, y))
        if _ref(y):
            x, y = y, x
        if _ref(x) and isinstance(y, Const) and y.parameter is not None:
            return Mapped(f"{op}_param", {"shape": list(y.parameter.shape)}, (x,), y.tensors)
        return None

    return build


def _cat(a, out):
    tensors = a["tensors"]
    if not isinstance(tensors, (list, tuple)) or not tensors or not all(_ref(t) for t in tensors):
        return None
    if len(tensors) == 1:  # DenseNet's first layer of a block concatenates one tensor: itself
        return Mapped("identity", {}, tuple(tensors))
    dim = _dim(a["dim"], len(tensors[0].shape) + 1)
    return None if not dim else Mapped("concat", {"dim": dim}, tuple(tensors))


def _flatten(a, out):
    x = a["input"]
    if not _ref(x):
        return None
    rank = len(x.shape) + 1
    start, end = _dim(a["start_dim"], rank), _dim(a["end_dim"], rank)
    if not start or end is None:
        return None
    return Mapped("flatten", {"start_dim": start, "end_dim": end}, (x,))


def reshape_to(x: Ref, out: Shape) -> Mapped:
    """A view of x as `out`: flatten where it merges one span of dims (x.view(n, -1)), else reshape."""
    shape = x.shape
    for start in range(len(shape)):
        for end in range(len(shape) - 1, start, -1):  # the widest span first: x.view(n, -1) is flatten(1, -1)
            if (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:]) == tuple(out):
                return Mapped("flatten", {"start_dim": start + 1, "end_dim": -1 if end == len(shape) - 1 else end + 1},
                              (x,))
    return Mapped("reshape", {"shape": list(out)}, (x,))


def _view(a, out):
    return reshape_to(a["input"], out) if _ref(a["input"]) else None


def _permute(a, out):
    x, dims = a["input"], a["dims"]
    if not _ref(x):
        return None
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = tuple(dims[0])
    rank = len(x.shape) + 1
    normal = [_dim(d, rank) for d in dims]
    if None in normal or len(normal) != rank or normal[0] != 0:
        return None
    return Mapped("permute", {"dims": normal[1:]}, (x,))


def _narrow(a, out):
    """x.narrow(dim, start, length) or torch.narrow: a slice of a non-batch dim (a negative start counts from the end)."""
    x, start, length = a["input"], a["start"], a["length"]
    if not _ref(x) or not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, length)):
        return None
    rank = len(x.shape) + 1
    dim = _dim(a["dim"], rank)
    if not dim:
        return None
    size = x.shape[dim - 1]
    return Mapped("narrow", {"dim": dim, "start": start % size if start < 0 else start, "length": length}, (x,))


_NARROW = (("input", "dim", "start", "length"), {}, _narrow)


def _transpose(a, out):
    x = a["input"]
    if not _ref(x):
        return None
    rank = len(x.shape) + 1
    d0, d1 = _dim(a["dim0"], rank), _dim(a["dim1"], rank)
    if not d0 or not d1:
        return None
    dims = list(range(1, rank))
    dims[d0 - 1], dims[d1 - 1] = dims[d1 - 1], dims[d0 - 1]
    return Mapped("permute", {"dims": dims}, (x,))


def _mean(a, out):
    x, dims = a["input"], a["dim"]
    if not _ref(x) or len(x.shape) != 3 or dims is None:
        return None
    dims = dims if isinstance(dims, (list, tuple)) else (dims,)
    if sorted(_dim(d, 4) or 0 for d in dims) != [2, 3] or a.get("dtype") is not None:
        return None
    return Mapped("global_avgpool2d", {"keepdim": bool(a["keepdim"])}, (x,))


def _adaptive_fn(a, out):
    return _adaptive(a["output_size"], (a["input"],)) if _ref(a["input"]) else None


def _pool_fn(op: str, names: tuple[str, ...]):
    def build(a, out):
        if not _ref(a["input"]) or a.get("return_indices") or a.get("divisor_override") is not None:
            return None
        attrs = {name: a[name] for name in names}
        if attrs["stride"] in (None, [], ()):
            attrs["stride"] = attrs["kernel_size"]
        return Mapped(op, attrs, (a["input"],))

    return build


def _layer_norm(a, out):
    x, weight, bias = a["input"], a["weight"], a["bias"]
    if not _ref(x) or _ref(weight) or _ref(bias) or (weight is None and bias is not None):
        return None
    claims = tuple(t for c in (weight, bias) if isinstance(c, Const) for t in c.tensors)
    attrs = {"normalized_shape": list(a["normalized_shape"]), "eps": a["eps"], "elementwise_affine": weight is not None,
             "bias": bias is not None or weight is None}
    return Mapped("layer_norm", attrs, (x,), claims)


def _softmax(a, out):
    x = a["input"]
    if not _ref(x) or a.get("dtype") is not None:
        return None
    dim = _dim(a["dim"], len(x.shape) + 1)
    return None if not dim else Mapped("softmax", {"dim": dim}, (x,))


def _stochastic_depth(a, out):
    return Mapped("stochastic_depth", {"p": a["p"], "mode": a["mode"]}, (a["input"],)) if _ref(a["input"]) else None


def _leaky_relu(a, out):
    attrs = {"negative_slope": a["negative_slope"], "inplace": a["inplace"]}
    return Mapped("leaky_relu", attrs, (a["input"],)) if _ref(a["input"]) else None


def _dropout(a, out):  # the identity at inference; F.dropout's `training` flag does not change the figures
    return Mapped("dropout", {"p": a["p"], "inplace": a["inplace"]}, (a["input"],)) if _ref(a["input"]) else None


def _identity(a, out):
    return Mapped("identity", {}, (a["input"],)) if _ref(a["input"]) else None


# Signatures: (argument names, defaults, builder). A name after `*` collects the remaining positionals (x.view(n, -1)).
_ADD = (("input", "other", "alpha"), {"alpha": 1}, _join("add"))
_MUL = (("input", "other"), {}, _join("mul"))
_INPLACE = (("input", "inplace"), {"inplace": False})
_MAXPOOL = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
_MAXPOOL_SIG = (("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False},
                _pool_fn("maxpool2d", _MAXPOOL))
_AVGPOOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_AVGPOOL_SIG = (("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
                {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                 "divisor_override": None}, _pool_fn("avgpool2d", _AVGPOOL))
_CAT = (("tensors", "dim"), {"dim": 0}, _cat)
_FLATTEN = (("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1}, _flatten)
_MEAN = (("input", "dim", "keepdim", "dtype"), {"dim": None, "keepdim": False, "dtype": None}, _mean)
_SOFTMAX = (("input", "dim", "_stacklevel", "dtype"), {"dim": None, "_stacklevel": 3, "dtype": None}, _softmax)
_TRANSPOSE = (("input", "dim0", "dim1"), {}, _transpose)
_RESHAPE = (("input", "*shape"), {}, _view)


@cache
def function_table() -> dict[Any, tuple]:
    table = {
        operator.add: _ADD, operator.iadd: _ADD, torch.add: _ADD,
        operator.mul: _MUL, operator.imul: _MUL, torch.mul: _MUL,
        torch.cat: _CAT, torch.concat: _CAT, torch.concatenate: _CAT,
        torch.flatten: _FLATTEN, torch.reshape: (("input", "shape"), {}, _view),
        torch.permute: (("input", "dims"), {}, lambda a, out: _permute({**a, "dims": (a["dims"],)}, out)),
        torch.transpose: _TRANSPOSE, torch.swapaxes: _TRANSPOSE, torch.narrow: _NARROW,
        torch.mean: _MEAN,
        F.relu: (*_INPLACE, _unary("relu")), torch.relu: (("input",), {}, _unary("relu")),
        torch.relu_: (("input",), {}, _unary("relu", inplace=True)),
        F.relu6: (*_INPLACE, _unary("relu6")), F.hardswish: (*_INPLACE, _unary("hardswish")),
        F.hardsigmoid: (*_INPLACE, _unary("hardsigmoid")), F.silu: (*_INPLACE, _unary("silu")),
        F.gelu: (("input", "approximate"), {"approximate": "none"}, _unary("gelu")),
        torch.sigmoid: (("input",), {}, _unary("sigmoid")), F.sigmoid: (("input",), {}, _unary("sigmoid")),
        torch.tanh: (("input",), {}, _unary("tanh")), F.tanh: (("input",), {}, _unary("tanh")),
        F.leaky_relu: (("input", "negative_slope", "inplace"), {"negative_slope": 0.01, "inplace": False},
                       _leaky_relu),
        F.softmax: _SOFTMAX, torch.softmax: _SOFTMAX,
        F.dropout: (("input", "p", "training", "inplace"), {"p": 0.5, "training": True, "inplace": False}, _dropout),
        F.adaptive_avg_pool2d: (("input", "output_size"), {}, _adaptive_fn),
        F.max_pool2d: _MAXPOOL_SIG, torch.max_pool2d: _MAXPOOL_SIG,
        F.avg_pool2d: _AVGPOOL_SIG,
        F.layer_norm: (("input", "normalized_shape", "weight", "bias", "eps"),
                       {"weight": None, "bias": None, "eps": 1e-5}, _layer_norm),
    }
    try:
        from torchvision.ops.stochastic_depth import stochastic_depth
    except ImportError:
        pass
    else:
        table[stochastic_depth] = (("input", "p", "mode", "training"), {"training": True}, _stochastic_depth)
    return table


METHODS: dict[str, tuple] = {
    "add": _ADD, "add_": _ADD, "__add__": _ADD, "__iadd__": _ADD, "__radd__": _ADD,
    "mul": _MUL, "mul_": _MUL, "__mul__": _MUL, "__rmul__": _MUL,
    "relu": (("input",), {}, _unary("relu")), "relu_": (("input",), {}, _unary("relu", inplace=True)),
    "sigmoid": (("input",), {}, _unary("sigmoid")), "tanh": (("input",), {}, _unary("tanh")),
    "softmax": (("input", "dim", "dtype"), {"dtype": None}, _softmax),
    "flatten": _FLATTEN, "view": _RESHAPE, "reshape": _RESHAPE,
    "permute": (("input", "*dims"), {}, _permute),
    "transpose": _TRANSPOSE, "swapaxes": _TRANSPOSE, "narrow": _NARROW,
    "mean": _MEAN,
    "contiguous": (("input", "memory_format"), {"memory_format": None}, _identity),
    "clone": (("input", "memory_format"), {"memory_format": None}, _identity),
    "detach": (("input",), {}, _identity),
}


def _apply(signature: tuple, args, kwargs, out: Shape) -> Mapped | None:
    names, defaults, build = signature
    if names and names[-1].startswith("*"):
        fixed = names[:-1]
        rest = tuple(args[len(fixed):])
        bound = bind(args[:len(fixed)], kwargs, fixed, defaults)
        if bound is None:
            return None
        bound[names[-1][1:]] = rest
    else:
        bound = bind(args, kwargs, names, defaults)
        if bound is None:
            return None
    return build(bound, out)


def map_function(target, args, kwargs, out: Shape) -> Mapped | None:
    try:
        signature = function_table().get(target)
    except TypeError:  # an unhashable callable
        return None
    return None if signature is None else _apply(signature, args, kwargs, out)


def map_method(name: str, args, kwargs, out: Shape) -> Mapped | None:
    signature = METHODS.get(name)
    return None if signature is None else _apply(signature, args, kwargs, out)


SPLITTERS = frozenset({torch.chunk, torch.split, torch.tensor_split})
SPLITTER_METHODS = frozenset({"chunk", "split", "tensor_split"})


def map_piece(source: Ref, dim: int | None, pieces: list[Shape], index: int) -> Mapped | None:
    """Piece `index` of a chunk or split of `source` along `dim` (torch counting) as a narrow."""
    rank = len(source.shape) + 1
    dim = _dim(dim, rank) if dim is not None else None
    if not dim:
        return None
    start = sum(shape[dim - 1] for shape in pieces[:index])
    return Mapped("narrow", {"dim": dim, "start": start, "length": pieces[index][dim - 1]}, (source,))


def split_dim(args, kwargs) -> Any:
    """The dim argument of chunk/split/tensor_split (second after the size or sections), default 0."""
    if "dim" in kwargs:
        return kwargs["dim"]
    return args[2] if len(args) > 2 else 0


def qualified_name(obj) -> str:
    """'torch.nn.MultiheadAttention', 'torch.cumsum', 'operator.getitem': what ran, for an opaque node."""
    name = getattr(obj, "__name__", None) or type(obj).__name__
    for public, namespace in (("torch", torch), ("torch.nn.functional", F), ("operator", operator)):
        if getattr(namespace, name, None) is obj:
            return f"{public}.{name}"
    if isinstance(obj, type) and mapped_class(obj) is None and getattr(nn, name, None) is obj:
        return f"torch.nn.{name}"
    module = getattr(obj, "__module__", None) or ""
    qualified = getattr(obj, "__qualname__", None) or name
    if module.startswith("torch.nn.modules."):
        module = "torch.nn"
    return f"{module}.{qualified}" if module else qualified
