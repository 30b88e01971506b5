"""Element-wise ops beyond the activations of activation.py: arithmetic with broadcasting and further activations.

Each op states its "other ops" per element in its docstring (archviz/ops/base.py's convention); none has MACs (nothing
is multiplied by a weight and summed). The small torch modules that rebuild the ops torch has no module for (erf,
sub, div, the scalar arithmetic, sqrt, ...) are made on first use and are attributes of this module (read through
its __getattr__), so importing the registry never imports torch and models holding them pickle.
"""

from __future__ import annotations

from functools import cache

from archviz.errors import ShapeError
from archviz.ops.activation import (
    POINTWISE_EXAMPLES, _Activation, _activation, _softmax, _traced, _with_inplace,
)
from archviz.ops.base import Arg, ArgKind, Example, Fill, Step, Weight, fmt_int, fmt_shape, numel
from archviz.ops.interop import (
    Mapped, NotRepresentable, Signature, TorchCalls, batch_dim, is_close, is_ref, module_args, onnx_as, onnx_float,
    onnx_reads_as,
)
from archviz.ops.registry import register

# --- activations ---------------------------------------------------------------------------------------------------

_activation(
    "mish", "nn.Mish", 9, "x * tanh(softplus(x)): softplus's exp, add, log (3), tanh (5, as tanh counts), multiply",
    inplace=True,
    doc="nn.Mish (Misra 2019, \"Mish: a self regularized non-monotonic activation function\"; torch docs: "
        "x * tanh(softplus(x))). Other ops: 9 per element: softplus's exp, add and log (3), tanh (5, as the tanh op "
        "counts it) and the multiply (1). No params. ONNX Mish (opset 18).",
    calls=_traced("mish", "nn.Mish", ("inplace",), {"torch.nn.functional.mish": _with_inplace("mish")}),
    onnx=onnx_as("Mish"), reads={"Mish": onnx_reads_as("mish")},
)


def _elu(a, out):
    return Mapped("elu", {"alpha": a["alpha"], "inplace": a["inplace"]}, (a["input"],)) if is_ref(a["input"]) else None


_activation(
    "elu", "nn.ELU", 4, "compare, and for x <= 0: exp, subtract 1, multiply by alpha", inplace=True,
    args=(Arg("alpha", ArgKind.FLOAT, 1.0, doc="the value the negative side approaches: -alpha"),),
    doc="nn.ELU (Clevert et al. 2015, \"Fast and accurate deep network learning by exponential linear units\"; torch "
        "docs: x if x > 0 else alpha * (exp(x) - 1)). Other ops: 4 per element (compare, exp, subtract 1, multiply "
        "by alpha), counted for every element whichever side it falls on. No params. ONNX Elu.",
    examples=(*POINTWISE_EXAMPLES, Example({"alpha": 0.5}, ((3, 4, 4),))),
    calls=_traced("elu", "nn.ELU", ("alpha", "inplace"), {
        "torch.nn.functional.elu": Signature(("input", "alpha", "inplace"), _elu, {"alpha": 1.0, "inplace": False})}),
    onnx=onnx_as("Elu", lambda a: {"alpha": a["alpha"]}),
    reads={"Elu": onnx_reads_as("elu", lambda r: {"alpha": onnx_float(r.attrs.get("alpha", 1.0))})},
)

SELU_ALPHA = 1.6732632423543772848170429916717  # torch/nn/functional.py's selu constants (Klambauer et al. 2017)
SELU_SCALE = 1.0507009873554804934193349852946


def _read_selu(r):
    if not (is_close(r.attrs.get("alpha", SELU_ALPHA), SELU_ALPHA) and is_close(r.attrs.get("gamma", SELU_SCALE),
                                                                                 SELU_SCALE)):
        raise NotRepresentable("alpha and gamma are not torch's selu constants")
    return r.layer("selu")


_activation(
    "selu", "nn.SELU", 5, "compare, and for x <= 0: exp, subtract 1, multiply by alpha; multiply by scale",
    inplace=True,
    doc="nn.SELU (Klambauer et al. 2017, \"Self-normalizing neural networks\"; torch docs: scale * (max(0, x) + "
        "min(0, alpha * (exp(x) - 1))), alpha = 1.6733, scale = 1.0507). Other ops: 5 per element (elu's compare, "
        "exp, subtract and multiply by alpha, then the multiply by scale). No params. ONNX Selu with torch's "
        "constants as alpha and gamma.",
    calls=_traced("selu", "nn.SELU", ("inplace",), {"torch.nn.functional.selu": _with_inplace("selu")}),
    onnx=onnx_as("Selu", lambda a: {"alpha": SELU_ALPHA, "gamma": SELU_SCALE}), reads={"Selu": _read_selu},
)


def _softplus(a, out):
    x = a["input"]
    return Mapped("softplus", {"beta": a["beta"], "threshold": a["threshold"]}, (x,)) if is_ref(x) else None


def _write_softplus(self, e, node, x):
    """ONNX Softplus is log(exp(x) + 1): torch's at beta 1 and threshold 20, where above the threshold the two agree
    to float32 (exp(-20) is 2e-9 of 1). Other beta and threshold: the model-local function archviz.Softplus,
    x where beta * x > threshold, else Softplus(beta * x) / beta."""
    beta, threshold = node.attrs["beta"], node.attrs["threshold"]
    if beta == 1.0 and threshold == 20.0:
        e.add("Softplus", x[:1], node.name, node.name)
        return
    e.function("Softplus", ["X", "beta", "threshold"], ["Y"], [
        ("Mul", ["X", "beta"], ["BX"]), ("Softplus", ["BX"], ["S"]), ("Div", ["S", "beta"], ["SB"]),
        ("Greater", ["BX", "threshold"], ["Above"]), ("Where", ["Above", "X", "SB"], ["Y"])],
        doc="torch.nn.Softplus: 1/beta * log(1 + exp(beta * x)), x where beta * x > threshold")
    b = e.constant(f"{node.name}/beta", beta)
    t = e.constant(f"{node.name}/threshold", threshold)
    e.add("Softplus", [x[0], b, t], node.name, node.name, domain=e.domain)


_activation(
    "softplus", "nn.Softplus", 6, "multiply by beta, compare with the threshold, exp, add 1, log, divide by beta",
    args=(Arg("beta", ArgKind.FLOAT, 1.0), Arg("threshold", ArgKind.FLOAT, 20.0,
                                                doc="above it (beta * x), the output is x")),
    doc="nn.Softplus (torch docs: 1/beta * log(1 + exp(beta * x)), and x where beta * x > threshold). Other ops: 6 "
        "per element (multiply by beta, compare with the threshold, exp, add 1, log, divide by beta), whatever the "
        "beta. No params. ONNX Softplus at torch's defaults (beta 1, threshold 20: above it the two agree to float32), "
        "else the model-local function archviz.Softplus.",
    examples=(*POINTWISE_EXAMPLES, Example({"beta": 2.0, "threshold": 1.0}, ((3, 4, 4),))),
    calls=_traced("softplus", "nn.Softplus", ("beta", "threshold"), {
        "torch.nn.functional.softplus": Signature(("input", "beta", "threshold"), _softplus,
                                                  {"beta": 1.0, "threshold": 20.0})}),
    onnx=_write_softplus,
    reads={"Softplus": onnx_reads_as("softplus"),
           "archviz::Softplus": onnx_reads_as("softplus", lambda r: {"beta": onnx_float(r.constant(1)),
                                                                     "threshold": onnx_float(r.constant(2))})},
)


@register
class Erf(_Activation):
    """The error function, erf(x) = 2/sqrt(pi) * integral from 0 to x of exp(-t^2) dt (torch.erf), as exact GELU
    written by hand uses it: x * 0.5 * (1 + erf(x / sqrt(2))).

    Other ops: 1 per element (one evaluation of the special function, as a library call counts). No params.
    ONNX Erf.
    """

    name = "erf"
    torch_class = "archviz Erf"
    ops_per_element = 1
    ops_reason = "one evaluation of erf"
    examples = POINTWISE_EXAMPLES
    torch_calls = TorchCalls(functions={
        path: Signature(("input",), lambda a, out: Mapped("erf", {}, (a["input"],)) if is_ref(a["input"]) else None)
        for path in ("torch.erf", "torch.special.erf", "Tensor.erf")})
    write_onnx = onnx_as("Erf")
    onnx_reads = {"Erf": onnx_reads_as("erf")}

    def build_torch(self, attrs, in_shapes):
        return _classes()["Erf"]()


def _read_log_softmax(r):
    rank = len(r.shape(r.activation()))
    axis = r.attrs.get("axis", -1 if r.opset >= 13 else 1)
    if r.opset < 13 and axis % rank != rank - 1:
        raise NotRepresentable(f"opset {r.opset} log-softmax over axes {axis}.. flattened together")
    return r.layer("log_softmax", {"dim": axis})


def _log_softmax(a, out):
    mapped = _softmax(a, out)
    return None if mapped is None else Mapped("log_softmax", mapped.attrs, mapped.inputs)


_LOG_SOFTMAX = Signature(("input", "dim", "_stacklevel", "dtype"), _log_softmax,
                         {"dim": None, "_stacklevel": 3, "dtype": None})


@register
class LogSoftmax(_Activation):
    """Log-softmax along a dim (dim=1, the channels, by default; torch counting, the batch as 0): torch docs,
    log(exp(x_i) / sum_j exp(x_j)) = x_i - log(sum_j exp(x_j)).

    Other ops: 3 per element (exp, add to the sum, subtract the log-sum); the max subtraction and the one log per
    sum are not counted, as softmax counts. No params. ONNX LogSoftmax.
    """

    name = "log_softmax"
    examples = (Example({}, ((10,),)), Example({"dim": 1}, ((3, 4, 5),)), Example({"dim": -1}, ((3, 4, 5),)))
    torch_class = "nn.LogSoftmax"
    keras_class = "Activation"
    pointwise = False  # it normalises along a dim
    normalises_logits = True
    ops_per_element = 3
    ops_reason = "exp, sum, subtract the log-sum"
    args = (Arg("dim", ArgKind.SIGNED_INT, 1, doc="torch's dim, counting the batch as 0"),)
    torch_calls = TorchCalls(
        modules={"torch.nn.LogSoftmax": lambda m, refs: None if m.dim is None else Mapped(
            "log_softmax", {"dim": m.dim}, refs)},
        functions={"torch.nn.functional.log_softmax": _LOG_SOFTMAX, "torch.log_softmax": _LOG_SOFTMAX,
                   "Tensor.log_softmax": Signature(("input", "dim", "dtype"), _log_softmax, {"dtype": None})})
    write_onnx = onnx_as("LogSoftmax", lambda a: {"axis": a["dim"]})
    onnx_reads = {"LogSoftmax": _read_log_softmax}

    def resolve(self, attrs, in_shapes):
        rank = len(in_shapes[0]) + 1
        if not -rank <= attrs["dim"] < rank or attrs["dim"] in (0, -rank):
            raise ShapeError(f"dim {attrs['dim']} is not a non-batch dimension of a {rank}-d tensor")
        return attrs


def _prelu(a, out):
    x, weight = a["input"], a["weight"]
    parameter = getattr(weight, "parameter", None)
    if not is_ref(x) or parameter is None or parameter.dim() != 1:
        return None
    return Mapped("prelu", {"num_parameters": parameter.shape[0]}, (x,), weight.tensors)


def _read_prelu(r):
    """PRelu of a stored slope that varies at most along the channels (axis 1): prelu with that many parameters."""
    rank = len(r.shape(r.activation()))
    stored = r.weight(1)
    if stored is None:
        raise NotRepresentable("its slope is not one stored tensor")
    slope = tuple(r.stored_shape(1, "slope"))
    aligned = (1,) * (rank - len(slope)) + slope if len(slope) <= rank else None
    if aligned is None or any(size != 1 for axis, size in enumerate(aligned) if axis != 1):
        raise NotRepresentable(f"its slope of shape {slope} varies along more than the channels")
    if numel(r.shape(stored)) != aligned[1]:
        raise NotRepresentable("its slope is not its stored tensor reshaped")
    return r.layer("prelu", {"num_parameters": aligned[1]}, weight=stored, stored=r.stored())


@register
class PReLU(_Activation):
    """nn.PReLU (He et al. 2015, "Delving deep into rectifiers"; torch docs: max(0, x) + a * min(0, x)), with a
    learned slope a, one shared (num_parameters=1) or one per channel (dim 1, counting the batch).

    Params: num_parameters (the slope). Other ops: 2 per element (compare, multiply), as leaky_relu counts.
    ONNX PRelu, its slope the stored weight reshaped to (num_parameters, 1, ...) so it broadcasts over the channels.
    """

    name = "prelu"
    torch_class = "nn.PReLU"
    keras_class = "PReLU"
    ops_per_element = 2
    ops_reason = "compare, multiply"
    args = (Arg("num_parameters", ArgKind.INT, 1, doc="1 (one shared slope) or the number of channels"),
            Arg("init", ArgKind.FLOAT, 0.25, doc="the slope's first value"))
    examples = (*POINTWISE_EXAMPLES, Example({"num_parameters": 3}, ((3, 4, 5),)), Example({"num_parameters": 7},
                                                                                            ((7,),)))
    torch_calls = TorchCalls(modules={"torch.nn.PReLU": module_args("prelu", "num_parameters", "init")},
                             functions={path: Signature(("input", "weight"), _prelu)
                                        for path in ("torch.nn.functional.prelu", "torch.prelu", "Tensor.prelu")})
    onnx_reads = {"PRelu": _read_prelu}

    def resolve(self, attrs, in_shapes):
        n = attrs["num_parameters"]
        if n != 1 and in_shapes[0][:1] != (n,):
            raise ShapeError(f"{n} slopes need {n} channels (dim 1), got an input of shape {fmt_shape(in_shapes[0])}")
        return attrs

    def weights(self, attrs, in_shapes):
        # torch fills the slope with `init` (0.25); Fill has no constant fill, so a file written without a checkpoint
        # starts it uniform: no figure depends on it
        return (Weight("weight", (attrs["num_parameters"],), fill=Fill.UNIFORM, fan_in=1),)

    def explain(self, attrs, in_shapes, out_shape):
        n = attrs["num_parameters"]
        return [Step("output shape", f"same as input {fmt_shape(in_shapes[0])}", fmt_shape(out_shape)),
                Step("params", "one slope" if n == 1 else f"one slope per channel: {n}", fmt_int(n))]

    def summary(self, attrs):
        return "" if attrs["num_parameters"] == 1 else f"{attrs['num_parameters']} slopes"

    def write_onnx(self, e, node, x):
        n, rank = node.attrs["num_parameters"], len(node.in_shapes[0])
        shape = e.constant(f"{node.name}/slope_shape", [n, *(1,) * (rank - 1)], "int64")
        slope = e.add("Reshape", [e.weight(node, "weight"), shape], f"{node.name}/slope", f"{node.name}/slope")
        e.add("PRelu", [x[0], slope], node.name, node.name)

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.PReLU(attrs["num_parameters"], attrs["init"])


# --- the torch modules of the ops torch has none for ---------------------------------------------------------------

_CLASS_NAMES = ("Erf",)


def __getattr__(name: str):
    if name in _CLASS_NAMES:
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _classes() -> dict[str, type]:
    from archviz.torch_build import import_torch

    torch = import_torch()
    nn = torch.nn

    class Erf(nn.Module):
        """torch.erf of its input."""

        def forward(self, x):
            return torch.erf(x)

    classes = {"Erf": Erf}
    for cls in classes.values():
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return classes
