"""Fully connected layers (torch.nn.Linear, Keras Dense), applied to the last dimension."""

from __future__ import annotations

from archviz.errors import ShapeError
from archviz.ops.base import (
    Arg, ArgKind, Example, NoWindow, Op, OpKind, Step, TorchinfoMacs, Weight, fmt_int, fmt_shape, numel,
)
from archviz.ops.interop import Const, Mapped, NotRepresentable, Signature, TorchCalls, is_ref, onnx_float
from archviz.ops.matmul import read_matmul_of_activations
from archviz.ops.registry import register


def _read_gemm(r):
    if r.attrs.get("transA", 0):
        raise NotRepresentable("transA is set")
    r.activation()
    weight = r.stored_shape(1, "weight")
    if len(weight) != 2:
        raise NotRepresentable(f"its weight has rank {len(weight)}")
    out_features, in_features = (weight[0], weight[1]) if r.attrs.get("transB", 0) else (weight[1], weight[0])
    scale = [f"{k}={onnx_float(r.attrs[k]):g}" for k in ("alpha", "beta")
             if k in r.attrs and onnx_float(r.attrs[k]) != 1.0]
    note = f"Gemm with {' and '.join(scale)}: scaled weights, the same counts" if scale else None
    args = {"out_features": out_features, "in_features": in_features, "bias": r.has_input(2)}
    return r.with_bias("linear", args, (1, out_features), note)


def _read_matmul(r):
    x = r.activation()
    if r.computed(1):
        return read_matmul_of_activations(r)  # a product of two computed tensors: matmul (archviz/ops/matmul.py)
    weight = r.stored_shape(1, "weight")
    if len(weight) != 2:
        raise NotRepresentable(f"its stored operand has rank {len(weight)}, not 2")
    rank = len(r.shape(x))
    args = {"out_features": weight[1], "in_features": weight[0], "bias": False}
    return r.with_bias("linear", args, (1,) * (rank - 1) + (weight[1],))


def _linear_function(a, out):
    """F.linear(x, weight, bias): weight a model parameter, or computed from parameters only, of shape (out, in);
    bias absent, or a parameter (or computed from parameters) of shape (out,). The tensors it is made from are the
    layer's: their sizes must add up to linear's params, else the call stays opaque (a weight-normalised weight, made
    from more tensors than it has elements, is not counted by linear's formula)."""
    import torch

    x, weight, bias = a["input"], a["weight"], a["bias"]
    if not is_ref(x) or not isinstance(weight, Const) or weight.value is None or weight.value.dim() != 2:
        return None
    out_features, in_features = weight.value.shape
    if bias is not None and (not isinstance(bias, Const) or bias.value is None
                             or tuple(bias.value.shape) != (out_features,)):
        return None
    claims = tuple({id(t): t for c in (weight, bias) if c is not None for t in c.tensors}.values())
    expected = (in_features + (1 if bias is not None else 0)) * out_features
    if not claims or not all(isinstance(t, torch.nn.Parameter) for t in claims) \
            or sum(t.numel() for t in claims) != expected:
        return None
    return Mapped("linear", {"in_features": in_features, "out_features": out_features, "bias": bias is not None},
                  (x,), claims)


@register
class Linear(NoWindow, Op):
    """Fully connected layer on the last dimension (torch.nn.Linear, and F.linear with a weight that is a model
    parameter or computed from parameters alone).

    params = (in_features + 1) * out_features with bias (the course's output_size * (input_size + 1)).
    MACs = in_features * out_features per input row. Other ops: one bias add per output element.
    """

    name = "linear"
    takes_folded_batch = True
    examples = (Example({"out_features": 5}, ((12,),)), Example({"out_features": 3, "bias": False}, ((7,),)))
    aliases = ("dense", "fc")
    kind = OpKind.LINEAR
    torch_class = "nn.Linear"
    torchinfo_macs = TorchinfoMacs.LINEAR
    torch_calls = TorchCalls(
        modules={"torch.nn.Linear": lambda m, refs: Mapped("linear", {
            "in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}, refs)},
        functions={"torch.nn.functional.linear": Signature(("input", "weight", "bias"), _linear_function,
                                                           {"bias": None})})
    onnx_reads = {"Gemm": _read_gemm, "MatMul": _read_matmul}  # and a following Add of a stored bias
    keras_class = "Dense"
    args = (
        Arg("out_features", ArgKind.INT, aliases=("units", "out")),
        Arg("bias", ArgKind.BOOL, True),
        Arg("in_features", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )

    def resolve(self, attrs, in_shapes):
        features = in_shapes[0][-1]
        if attrs["in_features"] is not None and attrs["in_features"] != features:
            raise ShapeError(
                f"in_features is {attrs['in_features']} but the input has {features} features"
                f" (shape {fmt_shape(in_shapes[0])}; flatten first?)"
            )
        return {**attrs, "in_features": features}

    def infer_shape(self, attrs, in_shapes):
        return (*in_shapes[0][:-1], attrs["out_features"])

    def weights(self, attrs, in_shapes):
        fan_in, out = attrs["in_features"], attrs["out_features"]
        matrix = Weight("weight", (out, fan_in), fan_in=fan_in)
        return (matrix, Weight("bias", (out,), fan_in=fan_in)) if attrs["bias"] else (matrix,)

    def params(self, attrs, in_shapes):  # the formula, kept apart from weights(): analysis calls it for every layer
        return (attrs["in_features"] + (1 if attrs["bias"] else 0)) * attrs["out_features"]

    def macs(self, attrs, in_shapes, out_shape):
        return numel(in_shapes[0][:-1]) * attrs["in_features"] * attrs["out_features"]

    def other_ops(self, attrs, in_shapes, out_shape):
        return numel(out_shape) if attrs["bias"] else 0

    def explain(self, attrs, in_shapes, out_shape):
        n_in, n_out = attrs["in_features"], attrs["out_features"]
        rows = numel(in_shapes[0][:-1])
        row_text = f"{rows} rows x " if rows > 1 else ""
        bias = " + 1" if attrs["bias"] else ""
        return [
            Step("output shape", f"{fmt_shape(in_shapes[0])} -> {n_out} units", fmt_shape(out_shape)),
            Step("params", f"({n_in}{bias})*{n_out}", fmt_int(self.params(attrs, in_shapes))),
            Step("MACs", f"{row_text}{n_in}*{n_out}", fmt_int(self.macs(attrs, in_shapes, out_shape))),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        if not attrs["bias"]:
            return Step("other ops", "no bias, nothing to add", 0)
        return Step("other ops", f"one bias add per output: {fmt_shape(out_shape)}", fmt_int(numel(out_shape)))

    def summary(self, attrs):
        return f"{attrs['out_features']} units"

    def write_onnx(self, e, node, x):
        """(N, F): one Gemm with the weight as torch stores it (out, in); more dims: MatMul by its transpose, Add."""
        a, path = node.attrs, node.name
        if len(node.in_shapes[0]) == 1:
            inputs = [x[0], e.weight(node, "weight")] + ([e.weight(node, "bias")] if a["bias"] else [])
            e.add("Gemm", inputs, path, path, transB=1)
            return
        transposed = e.add("Transpose", [e.weight(node, "weight")], f"{path}/weight_t", f"{path}/Transpose",
                           perm=[1, 0])
        product = e.add("MatMul", [x[0], transposed], f"{path}/matmul" if a["bias"] else path, path)
        if a["bias"]:
            e.add("Add", [product, e.weight(node, "bias")], path, f"{path}/bias")

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.Linear(attrs["in_features"], attrs["out_features"], bias=attrs["bias"])
