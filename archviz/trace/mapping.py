"""What a traced call is in archviz's op registry: a torch module, function or tensor method -> `Mapped` (the op, its
arguments and inputs), or None for an opaque node.

Every op says what it matches in its own entry (`torch_calls`, archviz/ops/interop.py), by dotted path; this module
resolves the paths once and looks calls up. Modules are looked up by their exact class, or by the torch class whose
forward a subclass keeps; functions by the function object; methods by name. Never by a substring of a class name
(STYLE.md, section 3). Arguments come in resolved: `Ref` for a tensor that depends on the input, `Const` for one that
does not, plain Python values for the rest. The op checks the arguments it is given (archviz/spec/args.py) and the
assembler checks its shape and counts against the trace (archviz/trace/assemble.py).
"""

from __future__ import annotations

import importlib
import inspect
import operator
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archviz.ops import all_ops
from archviz.ops.interop import DIM_ARGUMENTS, Mapped, PieceAdapter, Ref, Signature, unfolded_dim

Shape = tuple[int, ...]
METHOD = "Tensor."


@dataclass(frozen=True)
class _Tables:
    modules: dict[type, Any]
    functions: dict[Any, Signature]
    methods: dict[str, Signature]
    pieces: dict[Any, PieceAdapter]  # functions, and method names, whose results' items an op stands for


class _Absent(Exception):
    """The path is under a package that is not installed."""


def resolve(path: str):
    """The object a dotted path names: 'torch.nn.functional.relu', 'torchvision.ops.StochasticDepth'."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as error:
            if error.name == parts[0]:
                raise _Absent(path) from None
            continue
        for part in parts[cut:]:
            found = getattr(found, part)  # a misspelt path is an AttributeError: a registry bug, raised at once
        return found
    raise ValueError(f"{path!r} is not a dotted path")


def _claim(table: dict, key, value, owner: str, path: str, owners: dict) -> None:
    if key in table and owners[key] != owner:
        raise ValueError(f"{path} is claimed by two ops: {owners[key]} and {owner}")
    table[key], owners[key] = value, owner


@cache
def _tables() -> _Tables:
    tables = _Tables({}, {}, {}, {})
    owners: dict = {}
    for op in all_ops():
        calls = op.torch_calls
        for group, target in ((calls.modules, tables.modules), (calls.functions, None), (calls.pieces, tables.pieces)):
            for path, adapter in group.items():
                if path.startswith(METHOD):
                    table, key = (tables.methods if target is None else target), path.removeprefix(METHOD)
                    key = key if table is not tables.pieces else (METHOD, key)
                else:
                    table = tables.functions if target is None else target
                    try:
                        key = resolve(path)
                    except _Absent:
                        continue
                _claim(table, key, adapter, op.name, path, owners)
    return tables


def module_table() -> dict[type, Any]:
    return _tables().modules


def function_table() -> dict[Any, Signature]:
    return _tables().functions


def wrapped_functions() -> tuple:
    """The Python functions ops match that torch.fx would trace into (torchvision's stochastic_depth): kept as one
    call where a model calls them by name. torch's own functions record themselves (__torch_function__)."""
    return tuple(f for f in function_table() if inspect.isfunction(f) and f.__module__.split(".")[0] != "torch")


def mapped_class(cls: type) -> type | None:
    """The torch class whose mapping applies to `cls`: itself, or a base whose forward it keeps unchanged."""
    table = module_table()
    if cls in table:
        return cls
    for base in cls.__mro__[1:]:
        if base in table:
            return base if cls.forward is base.forward else None
    return None


class _Unfolded:
    """A module as an op reads it on a folded batch (B*m, ...) seen as (B, m, ...): its dim attributes (Softmax's
    dim, Flatten's start_dim) moved one on, the folded dim itself None."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name: str):
        value = getattr(self._module, name)
        return unfolded_dim(value) if name in DIM_ARGUMENTS else value


def map_module(module, refs: tuple[Ref, ...], *, folded: bool = False) -> Mapped | None:
    base = mapped_class(type(module))
    if base is None or len(set(refs)) != 1:  # one traced tensor (self-attention passes it as query, key and value)
        return None
    return module_table()[base](_Unfolded(module) if folded else module, refs)


def map_function(target, args, kwargs, out: Shape, *, folded: bool = False) -> Mapped | None:
    try:
        signature = function_table().get(target)
    except TypeError:  # an unhashable callable
        return None
    return None if signature is None else signature.apply(args, kwargs, out, folded=folded)


def map_method(name: str, args, kwargs, out: Shape, *, folded: bool = False) -> Mapped | None:
    signature = _tables().methods.get(name)
    return None if signature is None else signature.apply(args, kwargs, out, folded=folded)


def piece_adapter(target, *, method: bool) -> PieceAdapter | None:
    """The adapter for the items of what `target` returns (torch.chunk, Tensor.split), or None."""
    try:
        return _tables().pieces.get((METHOD, target) if method else target)
    except TypeError:
        return None


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
