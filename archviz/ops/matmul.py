"""Products of two computed tensors (matmul, bmm, @, einsum) and attention (scaled dot-product, multi-head).

Every tensor keeps the batch first (dim 0), and the batch is never contracted: a product whose operands have
different ranks would line one operand's batch up with the other's own dims under torch's broadcasting, so archviz
takes only operands of one rank (anything else stays an opaque layer). The torch modules that rebuild these ops are
made on first use, as attributes of this module (its __getattr__), so importing the registry never imports torch and
models holding them pickle.
"""

from __future__ import annotations

import math
from functools import cache

from archviz.errors import ShapeError
from archviz.ops.base import (
    Arg, ArgKind, Example, NoWindow, Op, OpKind, Step, fmt_int, fmt_shape, numel,
)
from archviz.ops.interop import Mapped, NotRepresentable, Signature, TorchCalls, is_ref
from archviz.ops.registry import register

_CLASS_NAMES = ("MatMul", "Einsum")


def __getattr__(name: str):
    if name in _CLASS_NAMES:
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _classes() -> dict[str, type]:
    from archviz.torch_build import import_torch

    torch = import_torch()
    nn = torch.nn

    class MatMul(nn.Module):
        """torch.matmul of its two inputs."""

        def forward(self, x, y):
            return torch.matmul(x, y)

    class Einsum(nn.Module):
        """torch.einsum(equation, x, y)."""

        def __init__(self, equation: str):
            super().__init__()
            self.equation = equation

        def forward(self, x, y):
            return torch.einsum(self.equation, x, y)

        def extra_repr(self) -> str:
            return f"equation={self.equation!r}"

    classes = {"MatMul": MatMul, "Einsum": Einsum}
    for name, cls in classes.items():
        cls.__module__, cls.__qualname__ = __name__, name
    return classes


# --- matmul ------------------------------------------------------------------------------------------------------

def _matmul_shapes(a, b) -> tuple[tuple[int, ...], int]:
    """(the output shape, K) of torch.matmul of (batch, *a) and (batch, *b); ShapeError where the batch would be
    contracted or lined up with another dim."""
    if len(a) < 2 or len(a) != len(b):
        raise ShapeError(f"matmul takes two operands of one rank of at least 2 without the batch, got "
                         f"{fmt_shape(a)} and {fmt_shape(b)} (other ranks would contract or move the batch)")
    if a[-1] != b[-2]:
        raise ShapeError(f"matmul of {fmt_shape(a)} and {fmt_shape(b)}: {a[-1]} columns against {b[-2]} rows")
    lead = []
    for i, (x, y) in enumerate(zip(a[:-2], b[:-2])):
        if x != y and 1 not in (x, y):
            raise ShapeError(f"matmul of {fmt_shape(a)} and {fmt_shape(b)}: dim {i + 1} does not broadcast")
        lead.append(max(x, y))
    return (*lead, a[-2], b[-1]), a[-1]


def _matmul(a, out):
    x, y = a["input"], a["other"]
    return Mapped("matmul", {}, (x, y)) if is_ref(x) and is_ref(y) else None


_MATMUL = Signature(("input", "other"), _matmul)


@register
class MatMul(NoWindow, Op):
    """Matrix product of two computed tensors (torch.matmul, `@`, torch.bmm), the leading dims broadcast as
    torch.matmul broadcasts them (torch docs, torch.matmul: "the non-matrix (i.e. batch) dimensions are broadcasted").

    (..., M, K) @ (..., K, N) -> (broadcast ..., M, N). No params. MACs = prod(output shape) * K: every output
    element is a dot product of length K (FlopCounterMode counts bmm as 2*b*M*N*K). Other ops: none.
    A product with a stored operand is linear (x @ W). No window: an output row reads a whole row of the first
    operand and every column of the second.
    """

    name = "matmul"
    examples = (Example({}, ((4, 5), (5, 3))), Example({}, ((4, 4), (4, 4))),
                Example({}, ((3, 1, 4, 5), (1, 2, 5, 6))))
    aliases = ("bmm",)
    kind = OpKind.LINEAR
    torch_class = "archviz MatMul"
    min_inputs, max_inputs = 2, 2
    torch_calls = TorchCalls(functions={path: _MATMUL for path in (
        "torch.matmul", "operator.matmul", "Tensor.matmul", "Tensor.__matmul__", "torch.bmm", "Tensor.bmm")})

    def resolve(self, attrs, in_shapes):
        _matmul_shapes(*in_shapes)
        return attrs

    def infer_shape(self, attrs, in_shapes):
        return _matmul_shapes(*in_shapes)[0]

    def macs(self, attrs, in_shapes, out_shape):
        return numel(out_shape) * _matmul_shapes(*in_shapes)[1]

    def other_ops(self, attrs, in_shapes, out_shape):
        return 0

    def explain(self, attrs, in_shapes, out_shape):
        k = _matmul_shapes(*in_shapes)[1]
        return [
            Step("output shape", f"{fmt_shape(in_shapes[0])} @ {fmt_shape(in_shapes[1])} (leading dims broadcast)",
                 fmt_shape(out_shape)),
            Step("params", "a product of two computed tensors has no weights", 0),
            Step("MACs", f"{fmt_shape(out_shape)} outputs x K={k}", fmt_int(numel(out_shape) * k)),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        return Step("other ops", "only multiply-accumulates", 0)

    def write_onnx(self, e, node, x):
        e.add("MatMul", x[:2], node.name, node.name)

    def build_torch(self, attrs, in_shapes):
        return _classes()["MatMul"]()


def read_matmul_of_activations(r):
    """ONNX MatMul of two computed tensors (linear.py's MatMul reader hands it here)."""
    return r.layer("matmul", {}, inputs=(r.activation(0), r.activation(1)))


# --- einsum ------------------------------------------------------------------------------------------------------

def _parse(equation: str, in_shapes) -> tuple[list[str], str, dict[str, int]]:
    """(the operands' letters, the output's letters, each letter's size) of an einsum with the batch letter first
    everywhere; ShapeError for what archviz does not count exactly."""
    text = equation.replace(" ", "")
    if "..." in text or "->" not in text:
        raise ShapeError(f"einsum {equation!r}: archviz needs an explicit output ('->') and no '...'")
    left, output = text.split("->")
    terms = left.split(",")
    if len(terms) != 2 or len(in_shapes) != 2:
        raise ShapeError(f"einsum {equation!r}: archviz counts an einsum of two operands")
    if not all(t.isalpha() for t in (*terms, output)) or any(len(set(t)) != len(t) for t in (*terms, output)):
        raise ShapeError(f"einsum {equation!r}: letters only, none repeated within an operand or the output")
    batch = output[:1]
    if not batch or any(t[:1] != batch or batch in t[1:] for t in terms) or batch in output[1:]:
        raise ShapeError(f"einsum {equation!r}: the batch letter must come first in every operand and the output")
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, in_shapes):
        if len(term) != len(shape) + 1:
            raise ShapeError(f"einsum {equation!r}: {term!r} has {len(term) - 1} dims after the batch, the input "
                             f"{fmt_shape(shape)} has {len(shape)}")
        for letter, size in zip(term[1:], shape):
            if sizes.setdefault(letter, size) != size:
                raise ShapeError(f"einsum {equation!r}: letter {letter!r} is {sizes[letter]} and {size}")
    for letter in set(output) - set("".join(terms)):
        raise ShapeError(f"einsum {equation!r}: output letter {letter!r} is in no operand")
    a, b = (set(t[1:]) for t in terms)
    if any(letter not in output for letter in a ^ b):
        raise ShapeError(f"einsum {equation!r}: a letter of one operand alone is summed (torch sums it first)")
    if not (a & b) - set(output):
        raise ShapeError(f"einsum {equation!r}: nothing is contracted (an element-wise or outer product)")
    return terms, output, sizes


def _einsum(a, out):
    operands = a["operands"]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(a["equation"], str) or len(operands) != 2 or not all(is_ref(o) for o in operands):
        return None
    return Mapped("einsum", {"equation": a["equation"].replace(" ", "")}, tuple(operands))


def _read_einsum(r):
    inputs = r.inputs()
    if len(inputs) != 2 or not all(r.computed(i) for i in range(2)):
        raise NotRepresentable("an einsum archviz counts has two computed operands")
    return r.layer("einsum", {"equation": r.attrs["equation"].replace(" ", "")}, inputs=inputs)


@register
class Einsum(NoWindow, Op):
    """Einstein summation of two computed tensors (torch.einsum), the batch letter first in both operands and the
    output (torch docs, torch.einsum: "the output is computed by multiplying the input operands element-wise, with
    their dimensions aligned based on the subscripts, and then summing out the dimensions whose subscripts are not
    part of the output").

    MACs = the product of the sizes of all distinct letters (one multiply-accumulate per combination of the letters:
    torch contracts the pair as one bmm of exactly that many, and fvcore's einsum handle counts it as the matmul it
    is). Other ops: none. No params. archviz takes the equations where that is what torch computes: an explicit
    output, no '...', no letter repeated within a term, at least one contracted letter, and no letter of one operand
    alone that is summed (torch would sum it before the product); any other einsum stays opaque.
    """

    name = "einsum"
    examples = (Example({"equation": "bij,bjk->bik"}, ((4, 4), (4, 4))),
                Example({"equation": "bxhnd,bxhmd->bxhnm"}, ((1, 2, 3, 4), (1, 2, 5, 4))),
                Example({"equation": "bij,bkj->bki"}, ((3, 4), (5, 4))))
    kind = OpKind.LINEAR
    torch_class = "archviz Einsum"
    min_inputs, max_inputs = 2, 2
    torch_calls = TorchCalls(functions={"torch.einsum": Signature(("equation", "*operands"), _einsum)})
    onnx_reads = {"Einsum": _read_einsum}
    args = (Arg("equation", ArgKind.TEXT, doc="e.g. 'bij,bjk->bik': the batch letter first in every term"),)

    def resolve(self, attrs, in_shapes):
        _parse(attrs["equation"], in_shapes)
        return {**attrs, "equation": attrs["equation"].replace(" ", "")}

    def infer_shape(self, attrs, in_shapes):
        _, output, sizes = _parse(attrs["equation"], in_shapes)
        return tuple(sizes[letter] for letter in output[1:])

    def macs(self, attrs, in_shapes, out_shape):
        _, _, sizes = _parse(attrs["equation"], in_shapes)
        return math.prod(sizes.values())

    def other_ops(self, attrs, in_shapes, out_shape):
        return 0

    def explain(self, attrs, in_shapes, out_shape):
        terms, output, sizes = _parse(attrs["equation"], in_shapes)
        letters = " * ".join(f"{letter}={size}" for letter, size in sizes.items())
        summed = "".join(sorted(set(sizes) - set(output))) or "none"
        return [
            Step("output shape", f"{attrs['equation']}: the letters {output[1:]} after the batch", fmt_shape(out_shape)),
            Step("params", "a product of two computed tensors has no weights", 0),
            Step("MACs", f"every letter's size multiplied: {letters} (summed: {summed})",
                 fmt_int(math.prod(sizes.values()))),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        return Step("other ops", "only multiply-accumulates", 0)

    def summary(self, attrs):
        return attrs["equation"]

    def write_onnx(self, e, node, x):
        e.add("Einsum", x[:2], node.name, node.name, equation=node.attrs["equation"])

    def build_torch(self, attrs, in_shapes):
        return _classes()["Einsum"](attrs["equation"])
