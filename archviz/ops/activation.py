"""Element-wise activations and softmax. No params; "other ops" per element are conventions stated per op."""

from __future__ import annotations

from archviz.errors import ShapeError
from archviz.ops.base import (
    ON_CUDA,
    INPUT_SAVED, OUTPUT_SAVED, Arg, ArgKind, Example, Kept, NoMacs, Op, OpKind, SameShape, Saved, Step, fmt_int,
    fmt_shape, numel,
)
from archviz.ops.interop import (
    Mapped, NotRepresentable, Signature, TorchCalls, batch_dim, is_close, is_ref, module_args, onnx_as, onnx_float,
    onnx_gated, onnx_reads_as, unary,
)
from archviz.ops.registry import register

_INPLACE = Arg("inplace", ArgKind.BOOL, False, doc="overwrite the input (saves activation memory)")


class _Activation(SameShape, NoMacs, Op):
    """An element-wise activation; each declares `saves`, what its gradient reads (torch's derivatives.yaml)."""

    kind = OpKind.ACTIVATION
    # in place, torch keeps a copy of the input for the gradient (hardtanh_, silu_); else the tensor it overwrote
    # holds what the gradient reads (relu_, elu_ and leaky_relu_ read their result)
    clones_in_place = False
    pointwise = True
    takes_folded_batch = True
    ops_per_element = 1
    ops_reason = ""

    def other_ops(self, attrs, in_shapes, out_shape):
        return self.ops_per_element * numel(out_shape)

    def saved(self, attrs, in_shapes, out_shape):
        if attrs.get("inplace") and self.clones_in_place:  # its gradient reads the input it overwrites
            return Saved(made=(Kept(numel(in_shapes[0])),))
        return self.saves

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        return Step(
            "other ops",
            f"{self.ops_per_element} per element ({self.ops_reason}) x {fmt_shape(out_shape)}",
            fmt_int(self.other_ops(attrs, in_shapes, out_shape)),
        )

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        module = getattr(nn, self.torch_class.removeprefix("nn."))
        kwargs = {arg.name: attrs[arg.name] for arg in self.args}
        return module(**kwargs)


POINTWISE_EXAMPLES = (Example({}, ((3, 5, 4),)), Example({}, ((7,),)))  # the same at any shape


def _plain(op: str) -> Signature:
    return Signature(("input",), unary(op))


def _with_inplace(op: str) -> Signature:
    return Signature(("input", "inplace"), unary(op), {"inplace": False})


def _read_clip(r):
    """Clip to [0, 6] is relu6; to [0, inf) relu; to other number bounds clamp."""
    low, high = (r.attrs.get("min"), r.attrs.get("max")) if r.opset < 11 else (r.constant(1), r.constant(2))
    if low == 0 and high == 6:
        return r.layer("relu6")
    if low == 0 and (high is None or high == float("inf")):
        return r.layer("relu")
    bounds = {key: onnx_float(value) for key, value in (("min", low), ("max", high))
              if value is not None and abs(value) != float("inf")}
    if not bounds or not all(isinstance(value, (int, float)) for value in (low, high) if value is not None):
        raise NotRepresentable(f"Clip to [{low}, {high}] (archviz has relu, relu6 and clamp to number bounds)")
    return r.layer("clamp", bounds)  # elementwise.py's clamp


def _read_hard_sigmoid(r):
    if not (is_close(r.attrs.get("alpha", 0.2), 1 / 6) and is_close(r.attrs.get("beta", 0.5), 0.5)):
        raise NotRepresentable("alpha and beta are not torch's 1/6 and 1/2")
    return r.gated("hardsigmoid", "hardswish")


def _read_swish(r):
    if onnx_float(r.attrs.get("alpha", 1.0)) != 1.0:
        raise NotRepresentable("alpha is not 1")
    return r.layer("silu")


def read_along_dim(op: str):
    """A reader for ONNX Softmax-like nodes (Softmax, LogSoftmax): `op` over the node's axis; before opset 13 the
    axes from `axis` on were flattened together, which only the last axis alone matches."""
    def read(r):
        rank = len(r.shape(r.activation()))
        axis = r.attrs.get("axis", -1 if r.opset >= 13 else 1)
        if r.opset < 13 and axis % rank != rank - 1:
            raise NotRepresentable(f"opset {r.opset} {r.op_type} over axes {axis}.. flattened together")
        return r.layer(op, {"dim": axis})

    return read


def _clip_to_6(self, e, node, x):
    low, high = e.constant(f"{node.name}/min", 0.0), e.constant(f"{node.name}/max", 6.0)
    e.add("Clip", [x[0], low, high], node.name, node.name)


def _traced(name: str, torch_class: str, module_attrs: tuple[str, ...], functions: dict) -> TorchCalls:
    return TorchCalls(modules={f"torch.{torch_class}": module_args(name, *module_attrs)}, functions=functions)


def _activation(name, torch_class, per_element, reason, *, aliases=(), args=(), inplace=False, doc="",
                examples=POINTWISE_EXAMPLES, calls: TorchCalls, onnx, reads: dict, saves: Saved,
                clones_in_place=False, transcendental=False, widens=frozenset()):
    cls = type(
        torch_class.removeprefix("nn."),
        (_Activation,),
        {
            "__doc__": doc or f"{torch_class}: {per_element} op(s) per element ({reason}). No params.",
            "name": name, "aliases": aliases, "torch_class": torch_class, "keras_class": "Activation",
            "ops_per_element": per_element, "ops_reason": reason, "args": (*args, *((_INPLACE,) if inplace else ())),
            "inplace_capable": inplace, "examples": examples, "torch_calls": calls, "write_onnx": onnx,
            "onnx_reads": reads, "saves": saves, "clones_in_place": clones_in_place,
            "transcendental": transcendental, "widens": widens,
        },
    )
    return register(cls)


_activation("relu", "nn.ReLU", 1, "max(x, 0)", inplace=True, calls=_traced("relu", "nn.ReLU", ("inplace",), {
    "torch.nn.functional.relu": _with_inplace("relu"), "torch.relu": _plain("relu"), "Tensor.relu": _plain("relu"),
    "torch.relu_": Signature(("input",), unary("relu", inplace=True)),
    "Tensor.relu_": Signature(("input",), unary("relu", inplace=True))}), onnx=onnx_as("Relu"),
    reads={"Relu": onnx_reads_as("relu")}, saves=OUTPUT_SAVED)
_activation("relu6", "nn.ReLU6", 2, "min(max(x, 0), 6)", inplace=True, calls=_traced(
    "relu6", "nn.ReLU6", ("inplace",), {"torch.nn.functional.relu6": _with_inplace("relu6")}), onnx=_clip_to_6,
    reads={"Clip": _read_clip}, saves=INPUT_SAVED, clones_in_place=True)


def _leaky_relu(a, out):
    attrs = {"negative_slope": a["negative_slope"], "inplace": a["inplace"]}
    return Mapped("leaky_relu", attrs, (a["input"],)) if is_ref(a["input"]) else None


_activation(
    "leaky_relu", "nn.LeakyReLU", 2, "compare, multiply", aliases=("leakyrelu",), inplace=True,
    args=(Arg("negative_slope", ArgKind.FLOAT, 0.01, aliases=("alpha",)),),
    examples=(*POINTWISE_EXAMPLES, Example({"negative_slope": 0.2}, ((3, 4, 4),))),
    calls=_traced("leaky_relu", "nn.LeakyReLU", ("negative_slope", "inplace"), {
        "torch.nn.functional.leaky_relu": Signature(("input", "negative_slope", "inplace"), _leaky_relu,
                                                    {"negative_slope": 0.01, "inplace": False})}),
    onnx=onnx_as("LeakyRelu", lambda a: {"alpha": a["negative_slope"]}),
    reads={"LeakyRelu": onnx_reads_as(
        "leaky_relu", lambda r: {"negative_slope": onnx_float(r.attrs.get("alpha", 0.01))})}, saves=INPUT_SAVED)
_activation("sigmoid", "nn.Sigmoid", 3, "exp, add, divide", calls=_traced("sigmoid", "nn.Sigmoid", (), {
    "torch.sigmoid": _plain("sigmoid"), "torch.nn.functional.sigmoid": _plain("sigmoid"),
    "Tensor.sigmoid": _plain("sigmoid")}), onnx=onnx_as("Sigmoid"),
    reads={"Sigmoid": lambda r: r.gated("sigmoid", "silu")}, saves=OUTPUT_SAVED,  # x * sigmoid(x) is silu
    transcendental=True)
_activation("tanh", "nn.Tanh", 5, "two exps, two adds, divide", calls=_traced("tanh", "nn.Tanh", (), {
    "torch.tanh": _plain("tanh"), "torch.nn.functional.tanh": _plain("tanh"), "Tensor.tanh": _plain("tanh")}),
    onnx=onnx_as("Tanh"),
    reads={"Tanh": onnx_reads_as("tanh")}, saves=OUTPUT_SAVED, transcendental=True)
_activation(
    "gelu", "nn.GELU", 8, "tanh approximation: cube, multiply-adds, tanh",
    args=(Arg("approximate", ArgKind.CHOICE, "none", choices=("none", "tanh")),),
    examples=(*POINTWISE_EXAMPLES, Example({"approximate": "tanh"}, ((3, 4, 4),))),
    calls=_traced("gelu", "nn.GELU", ("approximate",), {
        "torch.nn.functional.gelu": Signature(("input", "approximate"), unary("gelu"), {"approximate": "none"})}),
    onnx=onnx_as("Gelu", lambda a: {"approximate": a["approximate"]}),
    reads={"Gelu": onnx_reads_as("gelu", lambda r: {"approximate": r.attrs.get("approximate", "none")})},
    saves=INPUT_SAVED, transcendental=True)
_activation("silu", "nn.SiLU", 4, "x * sigmoid(x)", aliases=("swish",), inplace=True, calls=_traced(
    "silu", "nn.SiLU", ("inplace",), {"torch.nn.functional.silu": _with_inplace("silu")}),
            onnx=onnx_gated("Sigmoid"), reads={"Swish": _read_swish}, saves=INPUT_SAVED, clones_in_place=True,
            transcendental=True)
_activation("hardswish", "nn.Hardswish", 5, "x * min(max(x + 3, 0), 6) / 6: add, two compares, multiply, divide",
            aliases=("hard_swish",), inplace=True, calls=_traced(
                "hardswish", "nn.Hardswish", ("inplace",),
                {"torch.nn.functional.hardswish": _with_inplace("hardswish")}),
            onnx=onnx_gated("HardSigmoid", alpha=1 / 6, beta=0.5), reads={"HardSwish": onnx_reads_as("hardswish")},
    saves=INPUT_SAVED, clones_in_place=True)
_activation("hardsigmoid", "nn.Hardsigmoid", 4, "min(max(x + 3, 0), 6) / 6: add, two compares, divide",
            aliases=("hard_sigmoid",), inplace=True, calls=_traced(
                "hardsigmoid", "nn.Hardsigmoid", ("inplace",),
                {"torch.nn.functional.hardsigmoid": _with_inplace("hardsigmoid")}),
            onnx=onnx_as("HardSigmoid", lambda a: {"alpha": 1 / 6, "beta": 0.5}),
            reads={"HardSigmoid": _read_hard_sigmoid},  # x * hardsigmoid(x) is hardswish
            saves=INPUT_SAVED, clones_in_place=True)


def along_dim(op: str) -> Signature:
    """F.softmax-like calls (softmax, log_softmax, softmin): `op` over a non-batch dim, in the input's dtype."""
    def build(a, out):
        x = a["input"]
        if not is_ref(x) or a.get("dtype") is not None:
            return None
        dim = batch_dim(a["dim"], len(x.shape) + 1)
        return None if not dim else Mapped(op, {"dim": dim}, (x,))

    return Signature(("input", "dim", "_stacklevel", "dtype"), build, {"dim": None, "_stacklevel": 3, "dtype": None})


def along_dim_module(op: str):
    """A module adapter for nn.Softmax-like modules: `op` over the module's dim (None, torch's legacy guess: opaque)."""
    return lambda m, refs: None if m.dim is None else Mapped(op, {"dim": m.dim}, refs)


class AlongDim(_Activation):
    """An op normalising along one non-batch dim (softmax, log_softmax, softmin): its dim argument and its check."""

    pointwise = False  # it normalises along a dim
    transcendental = True  # an exp per element
    args = (Arg("dim", ArgKind.SIGNED_INT, 1, doc="torch's dim, counting the batch as 0"),)
    saves = OUTPUT_SAVED  # softmax's gradient is y * (g - sum(g * y)); log-softmax's g - exp(y) * sum(g)

    def resolve(self, attrs, in_shapes):
        rank = len(in_shapes[0]) + 1
        if not -rank <= attrs["dim"] < rank or attrs["dim"] in (0, -rank):
            raise ShapeError(f"dim {attrs['dim']} is not a non-batch dimension of a {rank}-d tensor")
        return attrs


_SOFTMAX = along_dim("softmax")


@register
class Softmax(AlongDim):
    """Softmax over the channel dimension (dim=1 in torch, counting the batch).

    Other ops: 3 per element (exp, add to the sum, divide); the max subtraction is not counted.
    """

    name = "softmax"
    widens = ON_CUDA  # in torch's CUDA autocast float32 list, not the CPU's
    examples = (Example({}, ((10,),)), Example({"dim": 1}, ((3, 4, 5),)), Example({"dim": -1}, ((3, 4, 5),)))
    torch_class = "nn.Softmax"
    keras_class = "Softmax"
    normalises_logits = True
    ops_per_element = 3
    ops_reason = "exp, sum, divide"
    torch_calls = TorchCalls(
        modules={"torch.nn.Softmax": along_dim_module("softmax")},
        functions={"torch.nn.functional.softmax": _SOFTMAX, "torch.softmax": _SOFTMAX,
                   "Tensor.softmax": Signature(("input", "dim", "dtype"), _SOFTMAX.build, {"dtype": None})})
    write_onnx = onnx_as("Softmax", lambda a: {"axis": a["dim"]})
    onnx_reads = {"Softmax": read_along_dim("softmax")}
