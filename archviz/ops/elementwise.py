"""Element-wise ops beyond the activations of activation.py: arithmetic with broadcasting and further activations.

Each op states its "other ops" per element in its docstring (archviz/ops/base.py's convention); none has MACs (nothing
is multiplied by a weight and summed). The small torch modules that rebuild the ops torch has no module for (erf,
sub, div, the scalar arithmetic, sqrt, ...) are made on first use and are attributes of this module (read through
its __getattr__), so importing the registry never imports torch and models holding them pickle.
"""

from __future__ import annotations


from archviz.errors import ShapeError
from archviz.ops.activation import (
    POINTWISE_EXAMPLES, AlongDim, _Activation, _activation, _traced, _with_inplace, along_dim, along_dim_module,
    read_along_dim,
)
from archviz.ops.base import (
    ON_CUDA,
    INPUT_SAVED, NOTHING_SAVED, OUTPUT_SAVED, Arg, ArgKind, Example, Fill, Kept, NoMacs, NoWindow, Op, OpKind,
    SameShape, Saved, SavesInputs, SavesNothing, Step, Weight, fmt_int, fmt_shape, numel,
)
from archviz.ops.base import lazy_torch_classes
from archviz.ops.interop import (
    Mapped, NotRepresentable, OnnxLayer, Signature, TorchCalls, is_close, is_ref, module_args, onnx_as, onnx_float,
    onnx_reads_as, unary,
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
    onnx=onnx_as("Mish"), reads={"Mish": onnx_reads_as("mish")}, saves=INPUT_SAVED, clones_in_place=True,
    transcendental=True)


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
    reads={"Elu": onnx_reads_as("elu", lambda r: {"alpha": onnx_float(r.attrs.get("alpha", 1.0))})}, saves=INPUT_SAVED,
    transcendental=True)

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
    saves=INPUT_SAVED, transcendental=True)


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
    saves=INPUT_SAVED, transcendental=True, widens=ON_CUDA)


@register
class Erf(_Activation):
    """The error function, erf(x) = 2/sqrt(pi) * integral from 0 to x of exp(-t^2) dt (torch.erf), as exact GELU
    written by hand uses it: x * 0.5 * (1 + erf(x / sqrt(2))).

    Other ops: 1 per element (one evaluation of the special function, as a library call counts). No params.
    ONNX Erf.
    """

    name = "erf"
    saves = INPUT_SAVED
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
        return __getattr__("ErfModule")()


_LOG_SOFTMAX = along_dim("log_softmax")


@register
class LogSoftmax(AlongDim):
    """Log-softmax along a dim (dim=1, the channels, by default; torch counting, the batch as 0): torch docs,
    log(exp(x_i) / sum_j exp(x_j)) = x_i - log(sum_j exp(x_j)).

    Other ops: 3 per element (exp, add to the sum, subtract the log-sum); the max subtraction and the one log per
    sum are not counted, as softmax counts. No params. ONNX LogSoftmax.
    """

    name = "log_softmax"
    widens = ON_CUDA  # in torch's CUDA autocast float32 list, not the CPU's
    examples = (Example({}, ((10,),)), Example({"dim": 1}, ((3, 4, 5),)), Example({"dim": -1}, ((3, 4, 5),)))
    torch_class = "nn.LogSoftmax"
    keras_class = "Activation"
    normalises_logits = True
    ops_per_element = 3
    ops_reason = "exp, sum, subtract the log-sum"
    torch_calls = TorchCalls(
        modules={"torch.nn.LogSoftmax": along_dim_module("log_softmax")},
        functions={"torch.nn.functional.log_softmax": _LOG_SOFTMAX, "torch.log_softmax": _LOG_SOFTMAX,
                   "Tensor.log_softmax": Signature(("input", "dim", "dtype"), _LOG_SOFTMAX.build, {"dtype": None})})
    write_onnx = onnx_as("LogSoftmax", lambda a: {"axis": a["dim"]})
    onnx_reads = {"LogSoftmax": read_along_dim("log_softmax")}


_SOFTMIN = along_dim("softmin")


@register
class Softmin(AlongDim):
    """Softmin along a dim (dim=1 by default; torch counting, the batch as 0): torch docs, softmax(-x),
    exp(-x_i) / sum_j exp(-x_j).

    Other ops: 4 per element (negate, then softmax's exp, add to the sum, divide); the max subtraction is not
    counted, as softmax counts. No params. ONNX Neg then Softmax (read back as one softmin: neg's reader folds a
    Softmax that alone reads the Neg).
    """

    def scratch(self, attrs, in_shapes, out_shape):
        """softmax(-x): the negated input, held while the softmax runs."""
        return (Kept(numel(in_shapes[0])),)

    name = "softmin"
    widens = ON_CUDA  # in torch's CUDA autocast float32 list, not the CPU's
    examples = (Example({}, ((10,),)), Example({"dim": 1}, ((3, 4, 5),)), Example({"dim": -1}, ((4, 5),)))
    torch_class = "nn.Softmin"
    keras_class = "Activation"
    ops_per_element = 4
    ops_reason = "negate, exp, sum, divide"
    torch_calls = TorchCalls(
        modules={"torch.nn.Softmin": along_dim_module("softmin")},
        functions={"torch.nn.functional.softmin": _SOFTMIN})

    def write_onnx(self, e, node, x):
        negated = e.add("Neg", x[:1], f"{node.name}/neg", f"{node.name}/neg")
        e.add("Softmax", [negated], node.name, node.name, axis=node.attrs["dim"])


def _read_neg(r):
    """Neg, or with a Softmax (opset 13 on) that alone reads it folded in, softmin."""
    from archviz.onnx.model import DEFAULT_DOMAINS, attributes

    x, view = r.activation(), r.view
    index = view.sole_consumer(r.output)
    if index is not None and r.opset >= 13:
        softmax = view.graph.node[index]
        if softmax.op_type == "Softmax" and softmax.domain in DEFAULT_DOMAINS:
            return OnnxLayer("softmin", {"dim": attributes(softmax).get("axis", -1)}, (x,), softmax.output[0],
                             absorbed=(index,))
    return r.layer("neg")


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
    saves = INPUT_SAVED
    autocasts = True  # in torch's CPU autocast list
    takes_folded_batch = False  # its slopes run along dim 1, the channels
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


# --- arithmetic -----------------------------------------------------------------------------------------------------

def is_number(value) -> bool:
    """A Python number operand (x * 0.5, 1 - x): not a bool, not a tensor."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalar(operation: str, x, value) -> Mapped:
    return Mapped("scalar_arith", {"operation": operation, "value": value}, (x,))


def arithmetic(op: str, operation: str, reverse: str, *, swap: bool = False):
    """An adapter for x - y or x / y (`swap`: the reflected form, x.__rsub__(y) is y - x): `op` of two traced
    tensors, the op `scalar_arith` with `operation` (x - 3) or `reverse` (3 - x) where one operand is a Python number;
    None (an opaque layer) for a tensor constant or an alpha other than 1."""

    def build(a, out):
        x, y = a["input"], a["other"]
        if swap:
            x, y = y, x
        if a.get("alpha", 1) != 1 or a.get("rounding_mode") is not None:
            return None
        if is_ref(x) and is_ref(y):
            return Mapped(op, {}, (x, y))
        if is_ref(x) and is_number(y):
            return _scalar(operation, x, y)
        if is_ref(y) and is_number(x):
            return _scalar(reverse, y, x)
        return None

    return build


def with_number(adapter, operation: str):
    """A join adapter (archviz/ops/interop.py's join) extended to a Python number operand: x + 3 and 3 + x as the op
    `scalar_arith` with `operation` ("add" or "mul"); for structure.py's add and tensor.py's mul."""

    def build(a, out):
        x, y = a["input"], a["other"]
        if a.get("alpha", 1) == 1 and (is_ref(x) and is_number(y) or is_ref(y) and is_number(x)):
            return _scalar(operation, *((x, y) if is_ref(x) else (y, x)))
        return adapter(a, out)

    return build


def _number(r, position: int):
    """The constant at input `position` as one number, or None when it is not one."""
    try:
        value = r.constant(position)
    except NotRepresentable:
        return None
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return float(value) if is_number(value) else None


def reads_number(reader, operation: str, reverse: str | None = None):
    """An ONNX reader extended to a constant one-number operand: `operation` of the computed input and the number
    (x + c), `reverse` where the number comes first (c - x; None: the operation commutes)."""

    def read(r):
        inputs = r.inputs()
        if len(inputs) == 2 and r.computed(0) != r.computed(1):
            position = 1 if r.computed(0) else 0
            value = _number(r, position)
            if value is not None:
                chosen = operation if position == 1 or reverse is None else reverse
                return r.layer("scalar_arith", {"operation": chosen, "value": onnx_float(value)},
                               inputs=(inputs[1 - position],))
        return reader(r)

    return read


def _read_pair(op: str):
    def read(r):
        inputs = r.inputs()
        if len(inputs) != 2 or not (r.computed(0) and r.computed(1)):
            raise NotRepresentable("an operand is a stored tensor, not a number or a computed tensor")
        return r.layer(op, inputs=inputs)

    return read


def broadcast(shapes) -> tuple[int, ...]:
    """torch's broadcast of two shapes of one rank (the batch aside): each dim equal, or 1 on one side (as tensor.py's
    mul broadcasts; not imported from there, which imports this module's number adapters)."""
    first, other = shapes
    if len(other) != len(first):
        raise ShapeError(f"shapes {fmt_shape(first)} and {fmt_shape(other)} have different ranks")
    for i, (a, b) in enumerate(zip(first, other)):
        if a != b and 1 not in (a, b):
            raise ShapeError(f"shapes {fmt_shape(first)} and {fmt_shape(other)} do not broadcast (dim {i + 1})")
    return tuple(max(a, b) for a, b in zip(first, other))


class _Binary(NoWindow, NoMacs, Op):
    """Two tensors of one rank, broadcast as torch does; one op per output element."""

    kind = OpKind.JOIN
    min_inputs = max_inputs = 2
    symbol = ""
    verb = ""
    examples = (Example({}, ((3, 4, 5), (3, 4, 5))), Example({}, ((3, 4, 5), (3, 1, 1))),
                Example({}, ((3, 4, 5), (1, 4, 1))))

    def infer_shape(self, attrs, in_shapes):
        return broadcast(in_shapes)

    def other_ops(self, attrs, in_shapes, out_shape):
        return numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        shapes = f" {self.symbol} ".join(fmt_shape(s) for s in in_shapes)
        return [Step("output shape", f"{shapes} (element-wise, broadcast)", fmt_shape(out_shape))]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        return Step("other ops", f"1 {self.verb} x {fmt_shape(out_shape)}", fmt_int(numel(out_shape)))

    def write_onnx(self, e, node, x):
        e.add(type(self).__name__, x, node.name, node.name)

    def build_torch(self, attrs, in_shapes):
        return __getattr__(f"{type(self).__name__}Module")()


def _calls(op: str, operation: str, reverse: str, paths: tuple[str, ...], reflected: tuple[str, ...],
           names: tuple[str, ...], defaults: dict) -> TorchCalls:
    forward = Signature(names, arithmetic(op, operation, reverse), defaults)
    backward = Signature(names, arithmetic(op, operation, reverse, swap=True), defaults)
    return TorchCalls(functions={**{p: forward for p in paths}, **{p: backward for p in reflected}})


@register
class Sub(SavesNothing, _Binary):
    """Element-wise difference x - y of two computed tensors, broadcast (torch.sub; operator.sub). A Python number
    as either operand makes it the op `scalar_arith` (x - 3, 1 - x); torch.sub's alpha other than 1 is not matched.

    Other ops: 1 subtract per output element. No params. ONNX Sub.
    """

    name = "sub"
    takes_folded_batch = True
    aliases = ("subtract",)
    keras_class = "Subtract"
    torch_class = "archviz Sub"
    symbol, verb = "-", "subtract"
    torch_calls = _calls("sub", "sub", "rsub",
                         ("operator.sub", "operator.isub", "torch.sub", "torch.subtract", "Tensor.sub", "Tensor.sub_",
                          "Tensor.subtract", "Tensor.__sub__", "Tensor.__isub__"),
                         ("Tensor.__rsub__", "torch.rsub"), ("input", "other", "alpha"), {"alpha": 1})
    onnx_reads = {"Sub": reads_number(_read_pair("sub"), "sub", "rsub")}


@register
class Div(SavesInputs, _Binary):
    """Element-wise quotient x / y of two computed tensors, broadcast (torch.div; operator.truediv). A Python number
    as either operand makes it the op `scalar_arith` (x / 6, 1 / x); a rounding_mode is not matched.

    Other ops: 1 divide per output element. No params. ONNX Div.
    """

    name = "div"
    takes_folded_batch = True
    aliases = ("divide",)
    torch_class = "archviz Div"
    symbol, verb = "/", "divide"
    torch_calls = _calls("div", "div", "rdiv",
                         ("operator.truediv", "operator.itruediv", "torch.div", "torch.divide", "torch.true_divide",
                          "Tensor.div", "Tensor.div_", "Tensor.divide", "Tensor.true_divide", "Tensor.__truediv__",
                          "Tensor.__itruediv__"),
                         ("Tensor.__rtruediv__",), ("input", "other", "rounding_mode"), {"rounding_mode": None})
    onnx_reads = {"Div": lambda r: r.erf_gelu("gelu") or reads_number(_read_pair("div"), "div", "rdiv")(r)}
    # a Div by sqrt(2) may start the erf form of GELU torch writes: read as one gelu


_SCALAR = {  # operation -> (the expression, ONNX op, number first)
    "add": ("x + {v}", "Add", False), "sub": ("x - {v}", "Sub", False), "rsub": ("{v} - x", "Sub", True),
    "mul": ("x * {v}", "Mul", False), "div": ("x / {v}", "Div", False), "rdiv": ("{v} / x", "Div", True),
}


@register
class Scalar(SameShape, NoMacs, Op):
    """A tensor and a number: x + c, x - c, c - x, x * c, x / c or c / x (Python's and torch's arithmetic with a
    number operand: x * 0.5, x / 6, x + 3, 1 - x), the shape of x.

    Other ops: 1 per element (the add, subtract, multiply or divide). No params: the number is part of the code,
    not a learned weight. ONNX Add, Sub, Mul or Div of the tensor and a Constant.
    """

    name = "scalar_arith"
    takes_folded_batch = True
    kind = OpKind.ACTIVATION
    pointwise = True
    torch_class = "archviz Scalar"
    args = (Arg("operation", ArgKind.CHOICE, choices=tuple(_SCALAR),
                doc="add (x + c), sub (x - c), rsub (c - x), mul (x * c), div (x / c) or rdiv (c / x)"),
            Arg("value", ArgKind.FLOAT, doc="the number c"))
    examples = tuple(Example({"operation": op, "value": value}, (shape,)) for op, value, shape in (
        ("add", 3.0, (3, 4, 5)), ("sub", 0.5, (3, 4, 5)), ("rsub", 1.0, (7,)), ("mul", 0.5, (3, 4, 5)),
        ("div", 6.0, (3, 4, 5)), ("rdiv", 2.0, (7,))))

    def other_ops(self, attrs, in_shapes, out_shape):
        return numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        return [Step("output shape", f"{self.summary(attrs)}: same as input {fmt_shape(in_shapes[0])}",
                     fmt_shape(out_shape))]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        return Step("other ops", f"1 per element ({self.summary(attrs)}) x {fmt_shape(out_shape)}",
                    fmt_int(numel(out_shape)))

    def summary(self, attrs):
        return _SCALAR[attrs["operation"]][0].format(v=f"{attrs['value']:g}")

    def widens_under_autocast(self, attrs, device="cpu"):
        """c / x is torch's c * reciprocal(x), and reciprocal is in torch's CUDA autocast float32 list."""
        return device == "cuda" and attrs["operation"] == "rdiv"

    def scratch(self, attrs, in_shapes, out_shape):
        """c / x holds the reciprocal while it multiplies."""
        return self.saved(attrs, in_shapes, out_shape).made

    def saved(self, attrs, in_shapes, out_shape):
        """c / x is torch's c * reciprocal(x), whose gradient reads the reciprocal; the rest read nothing."""
        return Saved(made=(Kept(numel(in_shapes[0])),)) if attrs["operation"] == "rdiv" else NOTHING_SAVED

    def write_onnx(self, e, node, x):
        _, op_type, first = _SCALAR[node.attrs["operation"]]
        value = e.constant(f"{node.name}/value", node.attrs["value"])
        e.add(op_type, [value, x[0]] if first else [x[0], value], node.name, node.name)

    def build_torch(self, attrs, in_shapes):
        return __getattr__("ScalarModule")(attrs["operation"], attrs["value"])


# --- other pointwise functions ------------------------------------------------------------------------------------

class _Function(_Activation):
    """One torch function of each element (torch.sqrt, ...); the module calling it is `Function` below."""

    call = ""  # the torch function the module calls

    def function_args(self, attrs) -> dict:
        return {}

    def build_torch(self, attrs, in_shapes):
        return __getattr__("FunctionModule")(self.call, self.function_args(attrs))


def _function(name: str, call: str, per_element: int, reason: str, onnx_type: str, paths: tuple[str, ...], doc: str,
              **extra):
    """Register one pointwise function of no arguments: torch.`call`, matched at `paths`, ONNX `onnx_type`."""
    body = {
        "__doc__": doc, "name": name, "call": call, "torch_class": f"torch.{call}", "ops_per_element": per_element,
        "ops_reason": reason, "examples": POINTWISE_EXAMPLES,
        "torch_calls": TorchCalls(functions={path: Signature(("input",), unary(name)) for path in paths}),
        "write_onnx": onnx_as(onnx_type), "onnx_reads": {onnx_type: onnx_reads_as(name)}, **extra,
    }
    return register(type(name.capitalize(), (_Function,), body))


def _paths(call: str, *more: str) -> tuple[str, ...]:
    return (f"torch.{call}", f"Tensor.{call}", f"Tensor.{call}_", *more)


_function("sqrt", "sqrt", 1, "one square root", "Sqrt", _paths("sqrt"),
          "Square root of each element (torch.sqrt). Other ops: 1 per element. No params. ONNX Sqrt.",
          saves=OUTPUT_SAVED)
_function("exp", "exp", 1, "one exp", "Exp", _paths("exp"),
          "e to the power of each element (torch.exp). Other ops: 1 per element (one exp, as a library call counts; "
          "sigmoid counts its exp as 1 too). No params. ONNX Exp.",
          saves=OUTPUT_SAVED, transcendental=True, widens=ON_CUDA)
_function("absolute", "abs", 1, "one absolute value", "Abs", _paths("abs", "torch.absolute", "Tensor.absolute",
                                                               "operator.abs", "Tensor.__abs__"),
          "Absolute value of each element (torch.abs; abs(x)). Other ops: 1 per element. No params. ONNX Abs.",
          saves=INPUT_SAVED)
_function("neg", "neg", 1, "one negation", "Neg", _paths("neg", "torch.negative", "Tensor.negative",
                                                          "operator.neg", "Tensor.__neg__"),
          "Negation of each element (torch.neg; -x). Other ops: 1 per element. No params. ONNX Neg (followed by a "
          "Softmax alone, read as softmin).", onnx_reads={"Neg": _read_neg},
          saves=NOTHING_SAVED)


def _write_rsqrt(self, e, node, x):
    e.function("Rsqrt", ["X"], ["Y"], [("Sqrt", ["X"], ["S"]), ("Reciprocal", ["S"], ["Y"])],
               doc="torch.rsqrt: 1 / sqrt(x)")
    e.add("Rsqrt", x[:1], node.name, node.name, domain=e.domain)


_function("rsqrt", "rsqrt", 2, "square root, reciprocal", "Sqrt", _paths("rsqrt"),
          "Reciprocal square root of each element, 1 / sqrt(x) (torch.rsqrt; as a normalisation written by hand "
          "uses it). Other ops: 2 per element (square root, reciprocal). No params. ONNX has no Rsqrt: the "
          "model-local function archviz.Rsqrt, Sqrt then Reciprocal.",
          write_onnx=_write_rsqrt, onnx_reads={"archviz::Rsqrt": onnx_reads_as("rsqrt")},
          saves=OUTPUT_SAVED, widens=ON_CUDA)


def _pow(a, out):
    x, exponent = a["input"], a["exponent"]
    return Mapped("pow", {"exponent": exponent}, (x,)) if is_ref(x) and is_number(exponent) else None


def _read_pow(r):
    exponent = _number(r, 1)
    if exponent is None:
        raise NotRepresentable("its exponent is not one constant number")
    return r.layer("pow", {"exponent": onnx_float(exponent)})


def _write_pow(self, e, node, x):
    exponent = e.constant(f"{node.name}/exponent", node.attrs["exponent"])
    e.add("Pow", [x[0], exponent], node.name, node.name)


_POW = Signature(("input", "exponent"), _pow)
_POW_OPERATOR = Signature(("input", "other"), lambda a, out: _pow({"input": a["input"], "exponent": a["other"]}, out))
_function("pow", "pow", 1, "one power", "Pow", (), "x to the power of a number, for each element (torch.pow with "
          "a number exponent; x ** 2). Other ops: 1 per element (one power evaluation, whatever the exponent). No "
          "params. ONNX Pow with a Constant exponent; a tensor exponent is not matched.",
          args=(Arg("exponent", ArgKind.FLOAT, doc="the number each element is raised to"),),
          examples=(Example({"exponent": 2.0}, ((3, 4, 5),)), Example({"exponent": 3.0}, ((7,),))),
          torch_calls=TorchCalls(functions={**{path: _POW for path in _paths("pow")},  # x ** 2: positional only
                                            "operator.pow": _POW_OPERATOR, "Tensor.__pow__": _POW_OPERATOR}),
          function_args=lambda self, attrs: {"exponent": attrs["exponent"]},
          summary=lambda self, attrs: f"^{attrs['exponent']:g}",
          write_onnx=_write_pow, onnx_reads={"Pow": _read_pow},
          saves=INPUT_SAVED, widens=ON_CUDA)


def _clamp(a, out):
    x, low, high = a["input"], a["min"], a["max"]
    if not is_ref(x) or not all(v is None or is_number(v) for v in (low, high)) or (low is None and high is None):
        return None
    return Mapped("clamp", {k: v for k, v in (("min", low), ("max", high)) if v is not None}, (x,))


_CLAMP = Signature(("input", "min", "max"), _clamp, {"min": None, "max": None})


@register
class Clamp(_Function):
    """Each element limited to [min, max] (torch.clamp, torch.clip: min(max(x, min), max)); either bound may be
    left out. clamp(0, 6) computes relu6 and clamp(min=0) relu, with the same counts.

    Other ops: 1 compare per bound given, per element (2 with both). No params. ONNX Clip with Constant bounds
    (ONNX Clip reads back as relu6 or relu where it is one of them: activation.py's reader).
    """

    name = "clamp"
    saves = INPUT_SAVED
    aliases = ("clip",)
    call = "clamp"
    torch_class = "torch.clamp"
    ops_reason = "one compare per bound"
    args = (Arg("min", ArgKind.FLOAT, None, doc="the lower bound; none if left out"),
            Arg("max", ArgKind.FLOAT, None, doc="the upper bound; none if left out"))
    examples = (Example({"min": -0.5, "max": 0.5}, ((3, 4, 5),)), Example({"min": 0.25}, ((3, 4, 5),)),
                Example({"max": -0.25}, ((7,),)))
    torch_calls = TorchCalls(functions={path: _CLAMP for path in _paths("clamp", "torch.clip", "Tensor.clip",
                                                                        "Tensor.clip_")})

    def resolve(self, attrs, in_shapes):
        if attrs["min"] is None and attrs["max"] is None:
            raise ShapeError("clamp needs min, max or both")
        return attrs

    def bounds(self, attrs) -> int:
        return (attrs["min"] is not None) + (attrs["max"] is not None)

    def other_ops(self, attrs, in_shapes, out_shape):
        return self.bounds(attrs) * numel(out_shape)

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        return Step("other ops", f"{self.bounds(attrs)} per element (one compare per bound) x {fmt_shape(out_shape)}",
                    fmt_int(self.other_ops(attrs, in_shapes, out_shape)))

    def function_args(self, attrs):
        return {"min": attrs["min"], "max": attrs["max"]}

    def summary(self, attrs):
        low, high = attrs["min"], attrs["max"]
        return f"[{'' if low is None else f'{low:g}'}, {'' if high is None else f'{high:g}'}]"

    def write_onnx(self, e, node, x):
        bounds = [e.constant(f"{node.name}/{key}", node.attrs[key]) if node.attrs[key] is not None else ""
                  for key in ("min", "max")]
        while bounds and not bounds[-1]:
            bounds.pop()
        e.add("Clip", [x[0], *bounds], node.name, node.name)


# --- the torch modules of the ops torch has none for ---------------------------------------------------------------

# the torch modules' names, which differ from the ops' (pickle finds a class by its module and name)
_CLASS_NAMES = ("ErfModule", "SubModule", "DivModule", "ScalarModule", "FunctionModule")


def _classes() -> dict[str, type]:
    from archviz.torch_build import import_torch

    torch = import_torch()
    nn = torch.nn

    class Erf(nn.Module):
        """torch.erf of its input."""

        def forward(self, x):
            return torch.erf(x)

    class Sub(nn.Module):
        """a - b, broadcast."""

        def forward(self, a, b):
            return a - b

    class Div(nn.Module):
        """a / b, broadcast."""

        def forward(self, a, b):
            return a / b

    class Scalar(nn.Module):
        """x and a number: x + c, x - c, c - x, x * c, x / c or c / x (`operation`)."""

        def __init__(self, operation: str, value: float):
            super().__init__()
            self.operation, self.value = operation, value

        def forward(self, x):
            c = self.value
            if self.operation == "add":
                return x + c
            if self.operation == "sub":
                return x - c
            if self.operation == "rsub":
                return c - x
            if self.operation == "mul":
                return x * c
            if self.operation == "div":
                return x / c
            return c / x

        def extra_repr(self) -> str:
            return f"operation={self.operation!r}, value={self.value}"

    class Function(nn.Module):
        """torch.`name`(x, **arguments): sqrt, exp, pow with a number, clamp to bounds, ..."""

        def __init__(self, name: str, arguments: dict):
            super().__init__()
            self.name, self.arguments = name, dict(arguments)

        def forward(self, x):
            return getattr(torch, self.name)(x, **self.arguments)

        def extra_repr(self) -> str:
            return ", ".join([self.name, *(f"{k}={v}" for k, v in self.arguments.items())])

    classes = {"ErfModule": Erf, "SubModule": Sub, "DivModule": Div, "ScalarModule": Scalar, "FunctionModule": Function}
    return classes


__getattr__ = lazy_torch_classes(__name__, _CLASS_NAMES, _classes)
