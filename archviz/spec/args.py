"""Checking and normalising the arguments of one layer entry against its op's declared arguments."""

from __future__ import annotations

import functools
from typing import Any, Mapping

from archviz.errors import SpecError, closest
from archviz.ops.base import Arg, ArgKind, Op
from archviz.spec.expr import evaluate, is_expression

MAX_DIMENSION = 10**9  # larger sizes are typos, and would make element counts meaningless
MAX_COUNT = 10**18  # a count of parameters or MACs (a huge model's attention takes more than 10**9)


def resolve_value(value, scope: Mapping[str, Any]):
    """A literal as it is, a `$expression` evaluated, lists element by element."""
    if is_expression(value):
        return evaluate(value, scope)
    if isinstance(value, list):
        return [resolve_value(v, scope) for v in value]
    return value


@functools.cache
def _argument_names(op: Op) -> dict[str, Arg]:
    """Every name an op's arguments answer to (their own and aliases); the ops are registered once, so made once."""
    return {alias: arg for arg in op.args for alias in (arg.name, *arg.aliases)}


def normalize_args(op: Op, raw, scope: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical argument names, defaults filled, values evaluated and type-checked."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"arguments of {op.name} must be a mapping like {{{_example(op)}}}, got {raw!r}")
    lookup = _argument_names(op)
    given: dict[str, Any] = {}
    for key, value in raw.items():
        arg = lookup.get(key)
        if arg is None:
            known = [a.name for a in op.args]
            hint = closest(key, list(lookup)) or (f" (it takes: {', '.join(known)})" if known else " (it takes none)")
            raise SpecError(f"{op.name} has no argument {key!r}{hint}", line=_line(raw, key))
        if arg.name in given:
            raise SpecError(f"{op.name}: {arg.name} is given twice (as {key!r} and another alias)",
                            line=_line(raw, key))
        try:
            given[arg.name] = coerce(arg, resolve_value(value, scope))
        except SpecError as error:
            raise error.located(line=_line(raw, key))
    for arg in op.args:
        if arg.name not in given:
            if arg.required:
                raise SpecError(f"{op.name} needs {arg.name!r}" + (f" ({arg.doc})" if arg.doc else ""))
            given[arg.name] = arg.default
    return given


def _line(raw, key):
    return raw.line_of(key) if hasattr(raw, "line_of") else None


def _example(op: Op) -> str:
    required = [a.name for a in op.args if a.required]
    return ", ".join(f"{name}: ..." for name in required) or "..."


def coerce(arg: Arg, value):
    """The value in canonical form for its kind, or a SpecError saying what was expected."""
    if value is None and arg.default is None:
        return None
    checker = _CHECKERS[arg.kind]
    result = checker(arg, value)
    return result


def _fail(arg: Arg, value, expected: str):
    raise SpecError(f"{arg.name} must be {expected}, got {value!r}")


def _as_int(arg: Arg, value, *, minimum: int | None, expected: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(arg, value, expected)
    if minimum is not None and value < minimum:
        _fail(arg, value, expected)
    if abs(value) > MAX_DIMENSION:
        _fail(arg, value, f"at most {MAX_DIMENSION:,}")
    return value


def _int(arg, value):
    return _as_int(arg, value, minimum=1, expected="a positive integer")


def _nonneg_int(arg, value):
    return _as_int(arg, value, minimum=0, expected="an integer >= 0")


def _signed_int(arg, value):
    return _as_int(arg, value, minimum=None, expected="an integer")


def _pair_of(arg, value, *, minimum: int, allow_none: bool = False):
    expected = ("a positive integer" if minimum else "an integer >= 0") + " or a [height, width] pair"
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            _fail(arg, value, expected)
        if allow_none:
            return tuple(None if v is None else _as_int(arg, v, minimum=minimum, expected=expected) for v in value)
        return tuple(_as_int(arg, v, minimum=minimum, expected=expected) for v in value)
    number = _as_int(arg, value, minimum=minimum, expected=expected)
    return number


def _pair(arg, value):
    return _pair_of(arg, value, minimum=1)


def _nonneg_pair(arg, value):
    return _pair_of(arg, value, minimum=0)


def _optional_pair(arg, value):
    return _pair_of(arg, value, minimum=1, allow_none=True)


def _padding(arg, value):
    if isinstance(value, str):
        if value not in ("same", "valid"):
            _fail(arg, value, "an integer, a [height, width] pair, 'same' or 'valid'")
        return value
    return _pair_of(arg, value, minimum=0)


def _float(arg, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(arg, value, "a number")
    return float(value)


def _bool(arg, value):
    if not isinstance(value, bool):
        _fail(arg, value, "true or false")
    return value


def _choice(arg, value):
    if value not in arg.choices:
        _fail(arg, value, "one of " + ", ".join(repr(c) for c in arg.choices))
    return value


MAX_TEXT = 200  # characters of a TEXT argument (an op's name from a trace or an ONNX file)


def _text(arg, value):
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        _fail(arg, value, f"a non-empty string of at most {MAX_TEXT} characters")
    return value


def _shape_of(arg, value, *, minimum: int):
    expected = f"a shape: a list of {'positive integers' if minimum else 'integers >= 0'} such as [64, 56, 56]"
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 8:
        _fail(arg, value, expected)
    return tuple(_as_int(arg, v, minimum=minimum, expected=expected) for v in value)


def _shape(arg, value):
    return _shape_of(arg, value, minimum=1)


def _traced_shape(arg, value):
    return _shape_of(arg, value, minimum=0)


def _sizes_of(arg, value, *, minimum: int):
    """An int, or a list of one per spatial axis (1 to 3 of them; the op checks that it has one per axis)."""
    expected = ("a positive integer" if minimum else "an integer >= 0") + " or a list of one per spatial axis"
    if isinstance(value, (list, tuple)):
        if not 1 <= len(value) <= 3:
            _fail(arg, value, expected)
        return tuple(_as_int(arg, v, minimum=minimum, expected=expected) for v in value)
    return _as_int(arg, value, minimum=minimum, expected=expected)


def _sizes(arg, value):
    return _sizes_of(arg, value, minimum=1)


def _nonneg_sizes(arg, value):
    return _sizes_of(arg, value, minimum=0)


def _padding_sizes(arg, value):
    if isinstance(value, str):
        if value not in ("same", "valid"):
            _fail(arg, value, "an integer, a list of one per spatial axis, 'same' or 'valid'")
        return value
    return _sizes_of(arg, value, minimum=0)


def _int_or_none(arg, value):
    return None if value is None else _int(arg, value)


def _count(arg, value):
    """A count of parameters or MACs: up to MAX_COUNT, not MAX_DIMENSION."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(arg, value, "an integer >= 0")
    if value > MAX_COUNT:
        _fail(arg, value, f"at most {MAX_COUNT:,}")
    return value


def _count_or_none(arg, value):
    return None if value is None else _count(arg, value)


MAX_CONNECTIONS = 4096  # output maps of a connection table: a table is written out by hand, map by map


def _connections(arg, value):
    """A connection table: for each output map, a non-empty list of distinct input maps (indices from 0)."""
    expected = "a list, for each output map, of the input maps it sees (distinct integers >= 0), e.g. [[0, 1], [1, 2]]"
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_CONNECTIONS:
        _fail(arg, value, expected)
    table = []
    for maps in value:
        if not isinstance(maps, (list, tuple)) or not maps:
            _fail(arg, value, expected)
        row = tuple(_as_int(arg, i, minimum=0, expected=expected) for i in maps)
        if len(set(row)) != len(row):
            _fail(arg, value, expected)
        table.append(row)
    return tuple(table)


_CHECKERS = {
    ArgKind.INT: _int, ArgKind.NONNEG_INT: _nonneg_int, ArgKind.SIGNED_INT: _signed_int, ArgKind.PAIR: _pair,
    ArgKind.NONNEG_PAIR: _nonneg_pair, ArgKind.OPTIONAL_PAIR: _optional_pair, ArgKind.PADDING: _padding,
    ArgKind.FLOAT: _float, ArgKind.BOOL: _bool, ArgKind.CHOICE: _choice, ArgKind.INT_OR_NONE: _int_or_none,
    ArgKind.COUNT: _count, ArgKind.COUNT_OR_NONE: _count_or_none, ArgKind.TEXT: _text, ArgKind.SHAPE: _shape,
    ArgKind.TRACED_SHAPE: _traced_shape, ArgKind.CONNECTIONS: _connections,
    ArgKind.SIZES: _sizes, ArgKind.NONNEG_SIZES: _nonneg_sizes, ArgKind.PADDING_SIZES: _padding_sizes,
}
