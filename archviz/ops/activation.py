"""Element-wise activations and softmax. No params; "other ops" per element are conventions stated per op."""

from __future__ import annotations

from archviz.errors import ShapeError
from archviz.ops.base import Arg, ArgKind, Example, Op, OpKind, Step, fmt_int, fmt_shape, numel
from archviz.ops.registry import register

_INPLACE = Arg("inplace", ArgKind.BOOL, False, doc="overwrite the input (saves activation memory)")


class _Activation(Op):
    kind = OpKind.ACTIVATION
    ops_per_element = 1
    ops_reason = ""

    def other_ops(self, attrs, in_shapes, out_shape):
        return self.ops_per_element * numel(out_shape)

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


def _activation(name, torch_class, per_element, reason, *, aliases=(), args=(), inplace=False, doc="",
                examples=POINTWISE_EXAMPLES):
    cls = type(
        torch_class.removeprefix("nn."),
        (_Activation,),
        {
            "__doc__": doc or f"{torch_class}: {per_element} op(s) per element ({reason}). No params.",
            "name": name, "aliases": aliases, "torch_class": torch_class, "keras_class": "Activation",
            "ops_per_element": per_element, "ops_reason": reason, "args": (*args, *((_INPLACE,) if inplace else ())),
            "inplace_capable": inplace, "examples": examples,
        },
    )
    return register(cls)


_activation("relu", "nn.ReLU", 1, "max(x, 0)", inplace=True)
_activation("relu6", "nn.ReLU6", 2, "min(max(x, 0), 6)", inplace=True)
_activation(
    "leaky_relu", "nn.LeakyReLU", 2, "compare, multiply", aliases=("leakyrelu",), inplace=True,
    args=(Arg("negative_slope", ArgKind.FLOAT, 0.01, aliases=("alpha",)),),
    examples=(*POINTWISE_EXAMPLES, Example({"negative_slope": 0.2}, ((3, 4, 4),))),
)
_activation("sigmoid", "nn.Sigmoid", 3, "exp, add, divide")
_activation("tanh", "nn.Tanh", 5, "two exps, two adds, divide")
_activation(
    "gelu", "nn.GELU", 8, "tanh approximation: cube, multiply-adds, tanh",
    args=(Arg("approximate", ArgKind.CHOICE, "none", choices=("none", "tanh")),),
    examples=(*POINTWISE_EXAMPLES, Example({"approximate": "tanh"}, ((3, 4, 4),))),
)
_activation("silu", "nn.SiLU", 4, "x * sigmoid(x)", aliases=("swish",), inplace=True)
_activation("hardswish", "nn.Hardswish", 5, "x * min(max(x + 3, 0), 6) / 6: add, two compares, multiply, divide",
            aliases=("hard_swish",), inplace=True)
_activation("hardsigmoid", "nn.Hardsigmoid", 4, "min(max(x + 3, 0), 6) / 6: add, two compares, divide",
            aliases=("hard_sigmoid",), inplace=True)


@register
class Softmax(_Activation):
    """Softmax over the channel dimension (dim=1 in torch, counting the batch).

    Other ops: 3 per element (exp, add to the sum, divide); the max subtraction is not counted.
    """

    name = "softmax"
    examples = (Example({}, ((10,),)), Example({"dim": 1}, ((3, 4, 5),)), Example({"dim": -1}, ((3, 4, 5),)))
    torch_class = "nn.Softmax"
    keras_class = "Softmax"
    ops_per_element = 3
    ops_reason = "exp, sum, divide"
    args = (Arg("dim", ArgKind.SIGNED_INT, 1, doc="torch's dim, counting the batch as 0"),)

    def resolve(self, attrs, in_shapes):
        rank = len(in_shapes[0]) + 1
        if not -rank <= attrs["dim"] < rank or attrs["dim"] in (0, -rank):
            raise ShapeError(f"dim {attrs['dim']} is not a non-batch dimension of a {rank}-d tensor")
        return attrs
