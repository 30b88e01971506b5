"""Safe arithmetic for spec values written as `$expression` (e.g. `$planes * 4`, `$blocks - 1`).

Only literals, parameter names, arithmetic, comparisons, `and`/`or`/`not`, `x if c else y` and the
functions below are allowed; the expression is parsed with `ast` and walked here, never `eval`ed.
"""

from __future__ import annotations

import ast
import functools
import math
import operator

from archviz.errors import SpecError, closest

MAX_EXPRESSION_CHARS = 500
MAX_INT_DIGITS = 30  # 10**30 is far past any real layer; keeps `2 ** 10 ** 10` from hanging
# items of a text or list an expression builds, those of nested lists counted too: keeps `'a' * 10**9` from filling
# memory, and `[[[1] * 10**4] * 10**4] * 10**4` (a few shared lists) from a repr or `==` of 10**12 items
MAX_SEQUENCE_LENGTH = 10_000

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_FUNCTIONS = {"min": min, "max": max, "int": int, "round": round, "abs": abs, "ceil": math.ceil, "floor": math.floor}


def is_expression(value) -> bool:
    return isinstance(value, str) and value.startswith("$")


def evaluate(text: str, scope: dict):
    """Evaluate `$expr` with the names in scope.

    >>> evaluate("$planes * 4", {"planes": 64})
    256
    """
    source = text[1:].strip()
    if source.startswith("{") and source.endswith("}"):
        source = source[1:-1]
    if len(source) > MAX_EXPRESSION_CHARS:
        raise SpecError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        return _Evaluator(scope, text).visit(_parse(source))
    except SyntaxError:
        raise SpecError(f"cannot parse expression {text!r}") from None
    except RecursionError:  # `- - - ... 1`: 500 characters can nest deeper than Python's stack
        raise SpecError(f"expression {text!r} is nested too deeply") from None


def size(value, limit: int = MAX_SEQUENCE_LENGTH) -> int:
    """Characters and items in value, those inside nested lists and mappings included, each time a shared list
    appears; counting stops soon after limit."""
    total, pending = 0, [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, (list, tuple)):
            total += len(item)
            pending.extend(item)
        elif isinstance(item, dict):
            total += len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
    return total


@functools.lru_cache(maxsize=4096)
def _parse(source: str) -> ast.expr:
    """The expression's tree, parsed once: a block repeated 50,000 times evaluates the same few texts."""
    return ast.parse(source, mode="eval").body


class _Evaluator:
    def __init__(self, scope: dict, text: str):
        self.scope = scope
        self.text = text

    def fail(self, why: str):
        raise SpecError(f"in expression {self.text!r}: {why}")

    def checked(self, result):
        """The result, unless it is too large to be a layer size or to hold in memory."""
        if isinstance(result, int) and abs(result) >= 10**MAX_INT_DIGITS:
            self.fail("result is too large")
        if isinstance(result, (str, list)) and size(result) > MAX_SEQUENCE_LENGTH:
            self.fail(f"result is longer than {MAX_SEQUENCE_LENGTH:,}")
        return result

    def visit(self, node):
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            self.fail(f"{type(node).__name__} is not allowed")
        return method(node)

    def visit_Constant(self, node):
        if not isinstance(node.value, (int, float, str, bool)) and node.value is not None:
            self.fail(f"literal {node.value!r} is not allowed")
        return node.value

    def visit_Name(self, node):
        if node.id in self.scope:
            return self.scope[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        self.fail(f"unknown name {node.id!r}{closest(node.id, self.scope)}")

    def visit_BinOp(self, node):
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > 64:
            self.fail("exponent larger than 64")
        if isinstance(node.op, ast.Mod) and isinstance(left, str):
            self.fail("text formatting with % is not allowed")  # '%0999999999d' % 1 would fill memory
        sequence, count = (left, right) if isinstance(left, (str, list)) else (right, left)
        if isinstance(node.op, ast.Mult) and isinstance(sequence, (str, list)) and isinstance(count, int):
            if size(sequence) * count > MAX_SEQUENCE_LENGTH:  # checked before 'a' * 10**9 allocates
                self.fail(f"result is longer than {MAX_SEQUENCE_LENGTH:,}")
        try:
            result = _BINARY[type(node.op)](left, right)
        except KeyError:
            self.fail(f"operator {type(node.op).__name__} is not allowed")
        except (TypeError, ZeroDivisionError, OverflowError) as error:
            self.fail(str(error))
        return self.checked(result)

    def visit_UnaryOp(self, node):
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            self.fail(f"operator {type(node.op).__name__} is not allowed")
        if not isinstance(value, (int, float)):
            self.fail(f"cannot negate {value!r}" if isinstance(node.op, ast.USub) else f"+{value!r} is not a number")
        return -value if isinstance(node.op, ast.USub) else +value

    def visit_BoolOp(self, node):
        values = [self.visit(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return all(values)
        return any(values)

    def visit_Compare(self, node):
        left = self.visit(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.visit(right_node)
            if type(op) not in _COMPARE:
                self.fail(f"comparison {type(op).__name__} is not allowed")
            try:
                holds = _COMPARE[type(op)](left, right)
            except TypeError as error:  # 'a' < 1
                self.fail(str(error))
            if not holds:
                return False
            left = right
        return True

    def visit_IfExp(self, node):
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_Call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            self.fail(f"only the functions {', '.join(_FUNCTIONS)} may be called")
        args = [self.visit(a) for a in node.args]
        if node.func.id == "round" and len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > MAX_INT_DIGITS:
            self.fail(f"round to at most {MAX_INT_DIGITS} digits")  # round(5, -10**29) computes 10**(10**29)
        try:
            return self.checked(_FUNCTIONS[node.func.id](*args))
        except (TypeError, ValueError, OverflowError) as error:  # int(inf) overflows
            self.fail(str(error))

    def visit_Subscript(self, node):
        container, index = self.visit(node.value), self.visit(node.slice)
        try:
            return container[index]
        except (TypeError, IndexError, KeyError) as error:
            self.fail(f"cannot index {container!r} with {index!r}: {error}")

    def visit_List(self, node):
        return self.checked([self.visit(e) for e in node.elts])

    visit_Tuple = visit_List
