"""Products of two computed tensors (matmul, bmm, @, einsum) and attention (scaled dot-product, multi-head).

Every tensor keeps the batch first (dim 0), and the batch is never contracted: a product whose operands have
different ranks would line one operand's batch up with the other's own dims under torch's broadcasting, so archviz
takes only operands of one rank (anything else stays an opaque layer). The torch modules that rebuild these ops are
made on first use, as attributes of this module (its __getattr__), so importing the registry never imports torch and
models holding them pickle.
"""

from __future__ import annotations

import math

from archviz.errors import ShapeError
from archviz.ops.base import (
    Arg, ArgKind, Example, Fill, Kept, NoWindow, Op, OpKind, Saved, SavesInputs, Step, Weight, fmt_int, fmt_shape,
    numel, require_rank,
)
from archviz.ops.base import TorchinfoMacs, lazy_torch_classes
from archviz.ops.interop import Mapped, NotRepresentable, Signature, TorchCalls, is_close, is_ref, onnx_float
from archviz.ops.registry import register

# the torch modules' names, which differ from the ops' (pickle finds a class by its module and name)
_CLASS_NAMES = ("MatMulModule", "EinsumModule", "ScaledDotProductAttentionModule", "SelfAttention")


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

    class ScaledDotProductAttention(nn.Module):
        """F.scaled_dot_product_attention(query, key, value) with no mask; dropout only while training."""

        def __init__(self, dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None):
            super().__init__()
            self.dropout_p, self.is_causal, self.scale = dropout_p, is_causal, scale

        def forward(self, query, key, value):
            return nn.functional.scaled_dot_product_attention(
                query, key, value, dropout_p=self.dropout_p if self.training else 0.0, is_causal=self.is_causal,
                scale=self.scale)

        def extra_repr(self) -> str:
            return f"dropout_p={self.dropout_p}, is_causal={self.is_causal}, scale={self.scale}"

    class SelfAttention(nn.MultiheadAttention):
        """nn.MultiheadAttention(batch_first=True) applied to one tensor as query, key and value: forward(x) is
        item 0 of attention(x, x, x). It calls torch's reference path (F.multi_head_attention_forward with the
        weights asked for, then dropped), whose products are explicit bmm calls: FlopCounterMode has no count for the
        fused CPU kernel the module's fast path or sdpa would pick."""

        def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                     need_weights: bool = True):
            super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, batch_first=True)
            self.need_weights = need_weights

        def forward(self, x):
            t = x.transpose(0, 1)
            out, _ = nn.functional.multi_head_attention_forward(
                t, t, t, self.embed_dim, self.num_heads, self.in_proj_weight, self.in_proj_bias, None, None, False,
                self.dropout, self.out_proj.weight, self.out_proj.bias, training=self.training,
                need_weights=self.need_weights)
            return out.transpose(0, 1)

    classes = {"MatMulModule": MatMul, "EinsumModule": Einsum,
               "ScaledDotProductAttentionModule": ScaledDotProductAttention,
               "SelfAttention": SelfAttention}
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

    autocasts = True

    name = "matmul"
    takes_folded_batch = True
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

    def scratch(self, attrs, in_shapes, out_shape):
        """An operand whose leading dims broadcast, expanded and copied for bmm."""
        return self.saved(attrs, in_shapes, out_shape).made

    def saved(self, attrs, in_shapes, out_shape):
        """Both operands; one whose leading dims broadcast is kept as torch makes it for bmm, expanded and
        copied to the output's leading dims."""
        lead = out_shape[:-2]
        kept = tuple(i for i, shape in enumerate(in_shapes) if tuple(shape[:-2]) == lead)
        copies = tuple(Kept(numel(lead) * numel(shape[-2:])) for shape in in_shapes if tuple(shape[:-2]) != lead)
        return Saved(inputs=kept, made=copies)

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
        return __getattr__("MatMulModule")()


def read_matmul_of_activations(r):
    """ONNX MatMul of two computed tensors (linear.py's MatMul reader hands it here)."""
    return r.layer("matmul", {}, inputs=(r.activation(0), r.activation(1)))


# --- einsum ------------------------------------------------------------------------------------------------------

def _expand(equation: str, text: str, in_shapes) -> str:
    """The equation with a leading '...' in every term written as letters: the batch's, then one per further dim,
    where the operands' dims under '...' are the same (torch would broadcast them otherwise)."""
    left, output = text.split("->")
    terms = left.split(",")
    if len(terms) != len(in_shapes) or not all(t.startswith("...") and "." not in t[3:] for t in (*terms, output)):
        raise ShapeError(f"einsum {equation!r}: archviz takes '...' only at the start of every term and the output")
    under = {tuple(shape[:len(shape) + 1 - (len(t) - 3) - 1]) for t, shape in zip(terms, in_shapes)}
    if len(under) != 1 or any(len(shape) + 1 - (len(t) - 3) < 1 for t, shape in zip(terms, in_shapes)):
        raise ShapeError(f"einsum {equation!r}: the dims under '...' differ between the operands")
    free = [c for c in "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in text]
    letters = "".join(free[:1 + len(next(iter(under)))])
    return text.replace("...", letters)


def _parse(equation: str, in_shapes) -> tuple[list[str], str, dict[str, int]]:
    """(the operands' letters, the output's letters, each letter's size) of an einsum with the batch letter first
    everywhere ('...' at the start of every term stands for the batch and the dims after it); ShapeError for what
    archviz does not count exactly."""
    text = equation.replace(" ", "")
    if "->" not in text:
        raise ShapeError(f"einsum {equation!r}: archviz needs an explicit output ('->')")
    if "..." in text:
        text = _expand(equation, text, in_shapes)
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
class Einsum(SavesInputs, NoWindow, Op):
    """Einstein summation of two computed tensors (torch.einsum), the batch letter first in both operands and the
    output (torch docs, torch.einsum: "the output is computed by multiplying the input operands element-wise, with
    their dimensions aligned based on the subscripts, and then summing out the dimensions whose subscripts are not
    part of the output").

    MACs = the product of the sizes of all distinct letters (one multiply-accumulate per combination of the letters:
    torch contracts the pair as one bmm of exactly that many, and fvcore's einsum handle counts it as the matmul it
    is). Other ops: none. No params. archviz takes the equations where that is what torch computes: an explicit
    output, no letter repeated within a term, at least one contracted letter, and no letter of one operand alone
    that is summed (torch would sum it before the product); '...' only at the start of every term, standing for the
    batch and the same further dims in both operands. Any other einsum stays opaque.
    """

    autocasts = True

    name = "einsum"
    examples = (Example({"equation": "bij,bjk->bik"}, ((4, 4), (4, 4))),
                Example({"equation": "bxhnd,bxhmd->bxhnm"}, ((1, 2, 3, 4), (1, 2, 5, 4))),
                Example({"equation": "bij,bkj->bki"}, ((3, 4), (5, 4))),
                Example({"equation": "...ij,...jk->...ik"}, ((2, 1, 3, 4), (2, 1, 4, 5))),
                Example({"equation": "... i j, ... j k -> ... i k"}, ((4, 4), (4, 4))))
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
            Step("output shape", f"{attrs['equation']}: the letters {output[1:]} after the batch",
                 fmt_shape(out_shape)),
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
        return __getattr__("EinsumModule")(attrs["equation"])


# --- scaled dot-product attention ----------------------------------------------------------------------------------

def _attention_shapes(q, k, v) -> tuple[int, int, int, int, int]:
    """(L, N, S, D, Dv): the leading dims' product, queries, keys, the query/key width and the value width of
    query (..., N, D), key (..., S, D), value (..., S, Dv); ShapeError otherwise."""
    if len(q) < 2 or not len(q) == len(k) == len(v) or not q[:-2] == k[:-2] == v[:-2]:
        raise ShapeError(f"attention takes query (H, N, D), key (H, S, D), value (H, S, Dv), the leading dims alike, "
                         f"got {fmt_shape(q)}, {fmt_shape(k)}, {fmt_shape(v)}")
    if q[-1] != k[-1] or k[-2] != v[-2]:
        raise ShapeError(f"attention of query {fmt_shape(q)}, key {fmt_shape(k)}, value {fmt_shape(v)}: the query "
                         "and key widths, or the key and value counts, differ")
    return numel(q[:-2]), q[-2], k[-2], q[-1], v[-1]


def _sdpa(a, out):
    q, k, v = a["query"], a["key"], a["value"]
    if not all(is_ref(t) for t in (q, k, v)) or a["attn_mask"] is not None or a["enable_gqa"]:
        return None
    return Mapped("scaled_dot_product_attention", {
        "dropout_p": a["dropout_p"], "is_causal": a["is_causal"], "scale": a["scale"]}, (q, k, v))


def _read_sdpa(r):
    inputs = tuple(r.activation(i) for i in range(3))
    scale = r.constant(3)
    width = r.shape(inputs[0])[-1]
    causal = r.op_type == "CausalScaledDotProductAttention"
    given = None if is_close(scale, 1 / math.sqrt(width)) else onnx_float(scale)
    args = {"is_causal": causal, "scale": given, "dropout_p": onnx_float(r.constant(4, 0.0))}
    return r.layer("scaled_dot_product_attention", args, inputs=inputs)


@register
class ScaledDotProductAttention(NoWindow, Op):
    """Scaled dot-product attention of three computed tensors, softmax(Q K^T * scale) V (Vaswani et al. 2017;
    torch.nn.functional.scaled_dot_product_attention, whose docs give this reference computation), with no mask.

    query (H, N, D), key (H, S, D), value (H, S, Dv) -> (H, N, Dv) after the batch (or (N, D) with no heads' dim,
    or more leading dims), the leading dims alike; L is their product (H). scale defaults to 1/sqrt(D). No params.
    MACs = L*N*S*D (Q K^T) + L*N*S*Dv (the weights times V): FlopCounterMode counts sdpa as exactly these two
    products (on the CPU it has no count for the fused kernel torch picks when D = Dv and there are at most 4 dims
    with the batch, _scaled_dot_product_flash_attention_for_cpu, and reports 0 there; the examples take the paths it
    counts). Other ops: 4 per score, L*N*S of them: the scale multiply, and softmax's 3 (exp, add to the sum, divide;
    the max subtraction is not counted, as for softmax). is_causal changes no count: torch's reference computation
    forms every score and masks the upper triangle before the softmax (the mask is not counted, as the max
    subtraction is not), and FlopCounterMode counts the full product too. Dropout acts only while training.
    """

    autocasts = True

    name = "scaled_dot_product_attention"
    takes_folded_batch = True
    examples = (Example({}, ((1, 2, 4, 4), (1, 2, 4, 4), (1, 2, 4, 4))),
                Example({"is_causal": True, "scale": 0.5, "dropout_p": 0.1},
                        ((1, 2, 5, 3), (1, 2, 5, 3), (1, 2, 5, 3))),
                Example({}, ((2, 4, 3), (2, 6, 3), (2, 6, 5))),
                Example({"is_causal": True}, ((3, 4, 3), (3, 4, 3), (3, 4, 6))),
                Example({}, ((4, 3), (6, 3), (6, 5))))
    aliases = ("sdpa",)
    kind = OpKind.LINEAR
    torch_class = "archviz ScaledDotProductAttention"
    min_inputs, max_inputs = 3, 3
    torch_calls = TorchCalls(functions={"torch.nn.functional.scaled_dot_product_attention": Signature(
        ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"), _sdpa,
        {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False})})
    onnx_reads = {"archviz::ScaledDotProductAttention": _read_sdpa,
                  "archviz::CausalScaledDotProductAttention": _read_sdpa}
    args = (
        Arg("dropout_p", ArgKind.FLOAT, 0.0, doc="dropout on the attention weights while training"),
        Arg("is_causal", ArgKind.BOOL, False, doc="query i attends keys 0..i only"),
        Arg("scale", ArgKind.FLOAT, None, doc="the scores' factor; 1/sqrt(D) when not given"),
    )

    def saved(self, attrs, in_shapes, out_shape):
        """torch's math attention on the CPU: the values, the query and keys scaled, and the attention weights
        (with dropout, its mask and the weights after it too)."""
        query, key, _ = in_shapes
        weights = numel(query[:-1]) * key[-2]
        return Saved(inputs=(2,), made=(Kept(numel(query)), Kept(numel(key)),
                                        *(Kept(weights),) * (3 if attrs["dropout_p"] else 1)))

    def resolve(self, attrs, in_shapes):
        _attention_shapes(*in_shapes)
        if not 0 <= attrs["dropout_p"] < 1:
            raise ShapeError(f"dropout_p {attrs['dropout_p']} is not in [0, 1)")
        return attrs

    def infer_shape(self, attrs, in_shapes):
        return (*in_shapes[0][:-1], in_shapes[2][-1])

    def macs(self, attrs, in_shapes, out_shape):
        heads, n, s, d, dv = _attention_shapes(*in_shapes)
        return heads * n * s * (d + dv)

    def other_ops(self, attrs, in_shapes, out_shape):
        heads, n, s, _, _ = _attention_shapes(*in_shapes)
        return 4 * heads * n * s

    def explain(self, attrs, in_shapes, out_shape):
        heads, n, s, d, dv = _attention_shapes(*in_shapes)
        lead = f"{heads}*"
        return [
            Step("output shape", f"query {fmt_shape(in_shapes[0])}, value {fmt_shape(in_shapes[2])}: "
                                 f"one {dv}-wide output per query", fmt_shape(out_shape)),
            Step("params", "attention of computed tensors has no weights", 0),
            Step("MACs", f"{lead}{n}*{s}*{d} (Q K^T) + {lead}{n}*{s}*{dv} (weights x V)",
                 fmt_int(self.macs(attrs, in_shapes, out_shape))),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        heads, n, s, _, _ = _attention_shapes(*in_shapes)
        lead = f"{heads}*"
        return Step("other ops", f"4 per score (scale, and softmax's 3) x {lead}{n}*{s} scores",
                    fmt_int(4 * heads * n * s))

    def summary(self, attrs):
        return "causal" if attrs["is_causal"] else ""

    def write_onnx(self, e, node, x):
        """The model-local function archviz.ScaledDotProductAttention: Q K^T (an Einsum over the last dims), times
        the scale, Softmax over the keys, MatMul by V; archviz.CausalScaledDotProductAttention adds a constant mask
        (0 where key j <= query i, -inf above) before the softmax, as torch does. dropout_p is an ONNX Dropout on the
        weights, the identity at inference."""
        a, (q, k, _) = node.attrs, node.in_shapes
        causal = a["is_causal"]
        name = "CausalScaledDotProductAttention" if causal else "ScaledDotProductAttention"
        body = [("Einsum", ["Q", "K"], ["QK"], {"equation": "...nd,...sd->...ns"}), ("Mul", ["QK", "scale"], ["S"])]
        if causal:
            body.append(("Add", ["S", "mask"], ["M"]))
        body += [("Softmax", ["M" if causal else "S"], ["P0"], {"axis": -1}), ("Dropout", ["P0", "ratio"], ["P"]),
                 ("MatMul", ["P", "V"], ["Y"])]
        e.function(name, ["Q", "K", "V", "scale", "ratio", *(["mask"] if causal else [])], ["Y"], body,
                   doc="torch.nn.functional.scaled_dot_product_attention without a mask"
                       + (", is_causal" if causal else ""))
        scale = a["scale"] if a["scale"] is not None else 1 / math.sqrt(q[-1])
        inputs = [*x[:3], e.constant(f"{node.name}/scale", scale), e.constant(f"{node.name}/ratio", a["dropout_p"])]
        if causal:
            inputs.append(e.constant(f"{node.name}/mask", [[0.0 if j <= i else -math.inf for j in range(k[-2])]
                                                           for i in range(q[-2])]))
        e.add(name, inputs, node.name, node.name, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        return __getattr__("ScaledDotProductAttentionModule")(attrs["dropout_p"], attrs["is_causal"], attrs["scale"])


# --- multi-head self-attention -------------------------------------------------------------------------------------

def _mha_module(m, refs):
    """nn.MultiheadAttention (and archviz's SelfAttention) as self-attention of one traced tensor, batch first, with
    no separate key/value widths, no bias_k/bias_v and no zero attention; anything else stays opaque."""
    if not refs or any(ref != refs[0] for ref in refs) or len(refs) > 3:
        return None
    if not m.batch_first or not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        return None  # batch_first=False moves the batch to dim 1
    return Mapped("multihead_attention", {"embed_dim": m.embed_dim, "num_heads": m.num_heads, "dropout": m.dropout,
                                          "bias": m.in_proj_bias is not None,
                                          "need_weights": getattr(m, "need_weights", True)}, refs[:1])


def _read_mha(r):
    x = r.activation()
    heads = r.constant(5)
    if not isinstance(heads, list) or len(heads) != 4:
        raise NotRepresentable("its heads' shape is not (0, N, heads, head width)")
    bias = r.weight(2) is not None
    if bias != (r.weight(4) is not None):
        raise NotRepresentable("one projection has a stored bias and the other none")
    args = {"num_heads": heads[2], "bias": bias, "dropout": onnx_float(r.constant(8, 0.0))}
    return r.layer("multihead_attention", args, inputs=(x,), stored=r.stored(),
                   weight=r.weight(1))


@register
class MultiheadAttention(NoWindow, Op):
    """Multi-head self-attention (Vaswani et al. 2017; torch.nn.MultiheadAttention with batch_first=True, called as
    attention(x, x, x), item 0 of what it returns) on a sequence of N tokens of width E.

    params = in_proj (3*E*E + 3*E) + out_proj (E*E + E) with bias; 4*E*E without (torch's in_proj_weight,
    in_proj_bias, out_proj.weight, out_proj.bias). MACs = 3*N*E*E (the query, key and value projections)
    + 2*N*N*E (Q K^T and the weights times V over all heads: heads * N * N * E/heads each) + N*E*E (the output
    projection); FlopCounterMode counts these as the linear and bmm calls of torch's reference path. Other ops:
    4 per score, heads*N*N of them (the scale and softmax's 3, as scaled_dot_product_attention counts them), and with
    bias one add per projected element, 3*N*E + N*E. Dropout acts only while training.
    archviz takes E divisible by num_heads, kdim = vdim = E, no add_bias_kv or add_zero_attn, and batch_first=True
    (with batch_first=False the batch is dim 1, and the call stays opaque). torch fills in_proj_weight with
    xavier_uniform (bound sqrt(6/(4E))); archviz's random first fill for an export uses 1/sqrt(E).
    Tracing: torch's nn.MultiheadAttention called as attention(x, x, x) (need_weights and average_attn_weights may be
    given: they change only item 1, the weights) maps to this op as item 0 of its result, and so does archviz's own
    SelfAttention module (what build_torch makes); a mask, or different query, key and value, stays opaque.
    """

    autocasts = True

    name = "multihead_attention"
    torchinfo_macs = TorchinfoMacs.PARTIAL
    examples = (Example({"num_heads": 2}, ((5, 8),)), Example({"num_heads": 1, "bias": False}, ((3, 4),)),
                Example({"num_heads": 4, "dropout": 0.1}, ((6, 8),)),
                Example({"num_heads": 2, "need_weights": False}, ((5, 8),)),
                Example({"num_heads": 4, "dropout": 0.1, "need_weights": False}, ((6, 8),)))
    aliases = ("mha", "self_attention")
    call_arguments = ("need_weights",)
    kind = OpKind.LINEAR
    torch_class = "nn.MultiheadAttention"
    torch_calls = TorchCalls(modules={"torch.nn.MultiheadAttention": _mha_module,
                                      "archviz.ops.matmul.SelfAttention": _mha_module})
    onnx_reads = {"archviz::MultiheadSelfAttention": _read_mha}
    args = (
        Arg("num_heads", ArgKind.INT, aliases=("heads",)),
        Arg("bias", ArgKind.BOOL, True),
        Arg("dropout", ArgKind.FLOAT, 0.0, doc="on the attention weights while training"),
        Arg("embed_dim", ArgKind.INT, None, doc="E, inferred from the input's last dim; checked when given"),
        Arg("need_weights", ArgKind.BOOL, True, doc="a call's need_weights: with it torch takes its reference path "
            "and keeps the attention weights for training; without, a fused kernel (the same MACs; less memory)"),
    )

    def saved(self, attrs, in_shapes, out_shape):
        """torch's multi_head_attention_forward on the CPU. With the weights asked for (the reference path): the
        input copied for the input projection, its q, k and v output, q, k and v split into heads, the attention
        weights (with dropout, its mask and the weights after it too), the heads' output for the output projection.
        Without: the input's copy, the q, k and v output, the heads' output and the fused kernel's float32
        log-sum-exp per head and query; with dropout, which the fused kernel lacks, the math path's scaled q and k
        and the weights, mask and dropped weights."""
        length, embed = in_shapes[0]
        heads = attrs["num_heads"]
        weights = heads * length * length
        if attrs["need_weights"]:
            return Saved(made=(*(Kept(length * embed),) * 3, Kept(3 * length * embed),
                               *(Kept(weights),) * (3 if attrs["dropout"] else 1)))
        if attrs["dropout"]:
            return Saved(made=(*(Kept(length * embed),) * 4, Kept(3 * length * embed), *(Kept(weights),) * 3))
        return Saved(made=(Kept(length * embed), Kept(3 * length * embed), Kept(length * embed),
                           Kept(heads * length, itemsize=4)))

    def resolve(self, attrs, in_shapes):
        require_rank(self, in_shapes[0], 2, "tokens x width (N x E)")
        width = in_shapes[0][-1]
        if attrs["embed_dim"] is not None and attrs["embed_dim"] != width:
            raise ShapeError(f"embed_dim is {attrs['embed_dim']} but the tokens are {width} wide")
        if width % attrs["num_heads"]:
            raise ShapeError(f"embed_dim {width} does not divide into {attrs['num_heads']} heads")
        if not 0 <= attrs["dropout"] < 1:
            raise ShapeError(f"dropout {attrs['dropout']} is not in [0, 1)")
        return {**attrs, "embed_dim": width}

    def infer_shape(self, attrs, in_shapes):
        return in_shapes[0]

    def weights(self, attrs, in_shapes):
        e = attrs["embed_dim"]
        if not attrs["bias"]:
            return (Weight("in_proj_weight", (3 * e, e), fan_in=e), Weight("out_proj.weight", (e, e), fan_in=e))
        return (Weight("in_proj_weight", (3 * e, e), fan_in=e), Weight("in_proj_bias", (3 * e,), fill=Fill.ZEROS),
                Weight("out_proj.weight", (e, e), fan_in=e), Weight("out_proj.bias", (e,), fill=Fill.ZEROS))

    def params(self, attrs, in_shapes):  # the formula, kept apart from weights(): analysis calls it for every layer
        e = attrs["embed_dim"]
        return 4 * e * e + (4 * e if attrs["bias"] else 0)

    def macs(self, attrs, in_shapes, out_shape):
        n, e = in_shapes[0]
        return 3 * n * e * e + 2 * n * n * e + n * e * e

    def other_ops(self, attrs, in_shapes, out_shape):
        n, e = in_shapes[0]
        return 4 * attrs["num_heads"] * n * n + (4 * n * e if attrs["bias"] else 0)

    def explain(self, attrs, in_shapes, out_shape):
        (n, e), h = in_shapes[0], attrs["num_heads"]
        bias = " + 3*{e} + {e}".format(e=e) if attrs["bias"] else ""
        return [
            Step("output shape", f"{n} tokens of width {e}, {h} heads of {e // h}: same as the input",
                 fmt_shape(out_shape)),
            Step("params", f"3*{e}*{e} + {e}*{e}{bias} (in_proj, out_proj)", fmt_int(self.params(attrs, in_shapes))),
            Step("MACs", f"3*{n}*{e}*{e} (q, k, v) + 2*{n}*{n}*{e} (Q K^T, weights x V) + {n}*{e}*{e} (out)",
                 fmt_int(self.macs(attrs, in_shapes, out_shape))),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        (n, e), h = in_shapes[0], attrs["num_heads"]
        bias = f" + 4*{n}*{e} bias adds" if attrs["bias"] else ""
        return Step("other ops", f"4 per score x {h}*{n}*{n} scores{bias}",
                    fmt_int(self.other_ops(attrs, in_shapes, out_shape)))

    def summary(self, attrs):
        return f"{attrs['num_heads']} heads"

    def write_onnx(self, e, node, x):
        """The model-local function archviz.MultiheadSelfAttention: X W_in^T + b_in split into Q, K, V, each
        reshaped to heads (Q, V to (B, h, N, E/h), K to (B, h, E/h, N)), softmax(Q K * 1/sqrt(E/h)) V, the heads
        merged back to (B, N, E), times W_out^T + b_out. Without bias the biases are zero constants. The dropout
        ratio is an ONNX Dropout on the weights, the identity at inference, as torch's is."""
        a, path = node.attrs, node.name
        (n, width), h = node.in_shapes[0], a["num_heads"]
        e.function("MultiheadSelfAttention", ["X", "Win", "Bin", "Wout", "Bout", "heads", "merged", "scale", "ratio"],
                   ["Y"], [
            ("Transpose", ["Win"], ["WinT"], {"perm": [1, 0]}), ("MatMul", ["X", "WinT"], ["P"]),
            ("Add", ["P", "Bin"], ["QKV"]), ("Split", ["QKV"], ["Q0", "K0", "V0"], {"axis": 2, "num_outputs": 3}),
            ("Reshape", ["Q0", "heads"], ["Q1"]), ("Transpose", ["Q1"], ["Q"], {"perm": [0, 2, 1, 3]}),
            ("Reshape", ["K0", "heads"], ["K1"]), ("Transpose", ["K1"], ["K"], {"perm": [0, 2, 3, 1]}),
            ("Reshape", ["V0", "heads"], ["V1"]), ("Transpose", ["V1"], ["V"], {"perm": [0, 2, 1, 3]}),
            ("MatMul", ["Q", "K"], ["S0"]), ("Mul", ["S0", "scale"], ["S"]), ("Softmax", ["S"], ["A0"], {"axis": -1}),
            ("Dropout", ["A0", "ratio"], ["A"]), ("MatMul", ["A", "V"], ["O0"]),
            ("Transpose", ["O0"], ["O1"], {"perm": [0, 2, 1, 3]}),
            ("Reshape", ["O1", "merged"], ["O"]), ("Transpose", ["Wout"], ["WoutT"], {"perm": [1, 0]}),
            ("MatMul", ["O", "WoutT"], ["R"]), ("Add", ["R", "Bout"], ["Y"])],
            doc="torch.nn.MultiheadAttention(batch_first=True) as self-attention, attention(x, x, x)[0]")
        if a["bias"]:
            biases = [e.weight(node, "in_proj_bias"), e.weight(node, "out_proj.bias")]
        else:
            biases = [e.constant(f"{path}/in_proj_bias", [0.0] * 3 * width),
                      e.constant(f"{path}/out_proj_bias", [0.0] * width)]
        inputs = [x[0], e.weight(node, "in_proj_weight"), biases[0], e.weight(node, "out_proj.weight"), biases[1],
                  e.constant(f"{path}/heads", [0, n, h, width // h], "int64"),
                  e.constant(f"{path}/merged", [0, n, width], "int64"),
                  e.constant(f"{path}/scale", 1 / math.sqrt(width // h)), e.constant(f"{path}/ratio", a["dropout"])]
        e.add("MultiheadSelfAttention", inputs, path, path, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        return __getattr__("SelfAttention")(attrs["embed_dim"], attrs["num_heads"], attrs["dropout"], attrs["bias"],
                                            attrs["need_weights"])


__getattr__ = lazy_torch_classes(__name__, _CLASS_NAMES, _classes)
