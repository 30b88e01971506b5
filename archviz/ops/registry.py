"""The one registry of operations: spec name (and aliases) -> Op. Registering a name twice is a bug."""

from __future__ import annotations

from archviz.errors import UnsupportedOpError, closest
from archviz.ops.base import Op

_OPS: dict[str, Op] = {}
_ALIASES: dict[str, str] = {}


def register(cls: type[Op]) -> type[Op]:
    op = cls()
    for key in (cls.name, *cls.aliases):
        if key in _OPS or key in _ALIASES:
            raise ValueError(f"op name {key!r} is registered twice")
    _OPS[cls.name] = op
    for alias in cls.aliases:
        _ALIASES[alias] = cls.name
    return cls


def canonical_name(name: str) -> str | None:
    if name in _OPS:
        return name
    return _ALIASES.get(name)


def get_op(name: str) -> Op:
    key = canonical_name(name)
    if key is None:
        raise UnsupportedOpError(f"unknown layer type {name!r}{closest(name, all_names())}")
    return _OPS[key]


def has_formula(name: str) -> bool:
    """Whether archviz computes the op's figures (False for the opaque op: shapes from a trace, costs uncounted)."""
    from archviz.ops.base import OpKind

    return get_op(name).kind != OpKind.OPAQUE


def all_ops() -> list[Op]:
    return list(_OPS.values())


def all_names() -> list[str]:
    return [*_OPS, *_ALIASES]
