"""Fully connected layers (torch.nn.Linear, Keras Dense), applied to the last dimension, and lookup tables
(torch.nn.Embedding), a linear map of one-hot indices."""

from __future__ import annotations

from archviz.errors import ShapeError
from archviz.ops.base import (
    EVERYWHERE,
    Arg, ArgKind, Example, Free, Kept, NoWindow, Op, OpKind, Saved, SavesInput, Step, TorchinfoMacs, Weight, fmt_int,
    fmt_shape, lazy_torch_classes, numel,
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
class Linear(SavesInput, NoWindow, Op):
    """Fully connected layer on the last dimension (torch.nn.Linear, and F.linear with a weight that is a model
    parameter or computed from parameters alone).

    params = (in_features + 1) * out_features with bias (the course's output_size * (input_size + 1)).
    MACs = in_features * out_features per input row. Other ops: one bias add per output element.
    """

    autocasts = True

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


def _embedding_function(a, out):
    """F.embedding(indices, weight, padding_idx): the weight a model parameter of shape (num_embeddings, dim) as it
    is; max_norm (which renormalises the table's rows in place) and the sparse-gradient flags stay opaque."""
    x, weight = a["input"], a["weight"]
    if not is_ref(x) or not isinstance(weight, Const) or weight.parameter is None or weight.parameter.dim() != 2:
        return None
    if a["max_norm"] is not None or a["scale_grad_by_freq"] or a["sparse"]:
        return None
    count, dim = weight.parameter.shape
    padding = a["padding_idx"]
    if padding is not None and not -count <= padding < count:
        return None
    args = {"num_embeddings": count, "embedding_dim": dim, "padding_idx": None if padding is None else padding % count}
    return Mapped("embedding", args, (x,), weight.tensors)


def _embedding_module(m, refs):
    if m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
        return None
    return Mapped("embedding", {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim,
                                "padding_idx": m.padding_idx}, refs)


def read_embedding(r):
    """ONNX Gather of rows of a stored 2-D table by computed indices (how torch exports nn.Embedding), or the
    function archviz writes: embedding."""
    table = r.stored_shape(0, "table")
    if len(table) != 2 or r.attrs.get("axis", 0) != 0:
        raise NotRepresentable("it gathers from a stored tensor that is not a 2-D table, or along another axis")
    r.activation(1)
    return r.layer("embedding", {"num_embeddings": table[0], "embedding_dim": table[1]}, inputs=(r.activation(1),),
                   weight=r.node.input[0])


def _read_archviz_embedding(r):
    table = r.stored_shape(1, "table")
    return r.layer("embedding", {"num_embeddings": table[0], "embedding_dim": table[1]}, weight=r.node.input[1])


def _classes() -> dict[str, type]:
    from torch import nn

    class IndexEmbedding(nn.Embedding):
        """nn.Embedding on indices held in a float tensor (archviz's graphs carry float tensors): x.long() first."""

        def forward(self, input):
            return super().forward(input.long())

    return {"IndexEmbedding": IndexEmbedding}


@register
class Embedding(NoWindow, Free, Op):
    """A lookup table (torch.nn.Embedding; a VQ-VAE's codebook, a token embedding): each index of the input, a
    whole number below num_embeddings, becomes that row of the table, a vector of embedding_dim.

    params = num_embeddings * embedding_dim (the table, torch's `weight`). No MACs and no other ops: a row copied
    per index, which FlopCounterMode does not count either. Output: the input's shape with embedding_dim appended.
    padding_idx names a row whose gradient is zero (training only; counted like the others).
    The registry's test feeds it whole numbers below num_embeddings (Example.below). archviz's graphs carry float
    tensors, so the torch module it builds takes the indices as floats (IndexEmbedding: x.long() first) and the ONNX
    it writes is the model-local function archviz.Embedding (Cast to int64, then Gather); a file exported by torch
    (Gather of a stored table by computed indices) reads as embedding too. An input that is the model's own image
    is whole numbers only if the user's model says so: archviz traces with a float input, so a model that takes
    token ids as its input does not trace (its first layer raises in torch); one that computes indices (a VQ code's
    argmin) does.
    """

    def scratch(self, attrs, in_shapes, out_shape):
        """The indices made int64 for the lookup."""
        return self.saved(attrs, in_shapes, out_shape).made

    name = "embedding"
    widens = EVERYWHERE  # it reads its output from float32 weights
    takes_folded_batch = True
    examples = (Example({"num_embeddings": 10, "embedding_dim": 4}, ((6,),), below=10),
                Example({"num_embeddings": 7, "embedding_dim": 3, "padding_idx": 0}, ((2, 5),), below=7))
    aliases = ("lookup",)
    kind = OpKind.LINEAR
    torch_class = "nn.Embedding"
    torchinfo_macs = TorchinfoMacs.NO_MACS
    keras_class = "Embedding"
    torch_calls = TorchCalls(
        modules={"torch.nn.Embedding": _embedding_module, "archviz.ops.linear.IndexEmbedding": _embedding_module},
        functions={"torch.nn.functional.embedding": Signature(
            ("input", "weight", "padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse"),
            _embedding_function, {"padding_idx": None, "max_norm": None, "norm_type": 2.0,
                                  "scale_grad_by_freq": False, "sparse": False})})
    onnx_reads = {"archviz::Embedding": _read_archviz_embedding}  # and Gather (tensor.py's reader dispatches)
    args = (
        Arg("num_embeddings", ArgKind.INT, aliases=("input_dim", "rows")),
        Arg("embedding_dim", ArgKind.INT, aliases=("output_dim", "dim")),
        Arg("padding_idx", ArgKind.COUNT_OR_NONE, None, doc="the row kept at zero gradient; below num_embeddings"),
    )

    def saved(self, attrs, in_shapes, out_shape):
        """The indices, as the int64 tensor torch looks them up with (the table's gradient scatters into them)."""
        return Saved(made=(Kept(numel(in_shapes[0]), itemsize=8),))

    def resolve(self, attrs, in_shapes):
        padding = attrs["padding_idx"]
        if padding is not None and padding >= attrs["num_embeddings"]:
            raise ShapeError(f"padding_idx {padding} is not a row of a table of {attrs['num_embeddings']}")
        return attrs

    def infer_shape(self, attrs, in_shapes):
        return (*in_shapes[0], attrs["embedding_dim"])

    def weights(self, attrs, in_shapes):
        return (Weight("weight", (attrs["num_embeddings"], attrs["embedding_dim"]), fan_in=attrs["embedding_dim"]),)

    def explain(self, attrs, in_shapes, out_shape):
        rows, width = attrs["num_embeddings"], attrs["embedding_dim"]
        return [
            Step("output shape", f"each index of {fmt_shape(in_shapes[0])} -> a row of {width}", fmt_shape(out_shape)),
            Step("params", f"{rows} rows x {width}", fmt_int(rows * width)),
            Step("MACs", "a row copied per index: no multiply-accumulate", "0"),
        ]

    def summary(self, attrs):
        return f"{attrs['num_embeddings']} x {attrs['embedding_dim']} table"

    def write_onnx(self, e, node, x):
        e.function("Embedding", ["X", "W"], ["Y"], [
            ("Cast", ["X"], ["I"], {"to": 7}), ("Gather", ["W", "I"], ["Y"], {"axis": 0})],
            doc="torch.nn.Embedding on indices held as floats: cast to int64, gather rows of the table")
        e.add("Embedding", [x[0], e.weight(node, "weight")], node.name, node.name, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        return __getattr__("IndexEmbedding")(attrs["num_embeddings"], attrs["embedding_dim"],
                                              padding_idx=attrs["padding_idx"])


__getattr__ = lazy_torch_classes(__name__, ("IndexEmbedding",), _classes)
