"""An operation archviz has no formula for, met in a traced PyTorch model or an ONNX file.

Its output shape comes from the trace and its parameter count from the module that ran it, so shapes, memory and
params stay exact. Its MACs are measured where the tracer could run the call again under torch's FlopCounterMode
(`measured_macs`, marked "measured, no formula" wherever it shows: `Totals.measured`); its other ops, and the MACs of
a call that could not be measured, are not counted, and every total says which layers it leaves out
(`Totals.uncounted`). Never a silent zero: renderers print the list.
"""

from __future__ import annotations

from archviz.errors import UnsupportedOpError
from archviz.ops.base import Arg, ArgKind, Op, OpKind, Step, fmt_int, fmt_shape
from archviz.ops.registry import register


@register
class Opaque(Op):
    """An operation without a formula: shape and parameters as traced, MACs measured or not counted, other ops not
    counted.

    In a spec: `- opaque: {target: torch.nn.GELU, out_shape: [64, 56, 56], params: 0}`.
    measured_macs: multiply-accumulates per sample that torch's FlopCounterMode counted when the tracer ran the call
    again at two batch sizes (its FLOPs / 2 per added sample); null: not measured, so not counted.
    """

    def saved(self, attrs, in_shapes, out_shape):
        """Not known: nothing says what a call without a formula keeps."""
        return None

    name = "opaque"
    kind = OpKind.OPAQUE
    torch_class = "(traced)"
    min_inputs, max_inputs = 1, 64
    args = (
        Arg("target", ArgKind.TEXT, doc="what ran: a module class, a function or an ONNX op type"),
        Arg("out_shape", ArgKind.TRACED_SHAPE, doc="its output shape without the batch, from the trace (a dim may be "
            "0: an empty slice)"),
        Arg("params", ArgKind.COUNT, 0, doc="trainable parameters of the module that ran it"),
        Arg("buffers", ArgKind.COUNT, 0, doc="saved non-trainable state of that module"),
        Arg("measured_macs", ArgKind.COUNT_OR_NONE, None,
            doc="MACs per sample measured by FlopCounterMode on the traced call; null: not measured"),
    )

    def infer_shape(self, attrs, in_shapes):
        return tuple(attrs["out_shape"])

    def params(self, attrs, in_shapes):
        return attrs["params"]

    def buffers(self, attrs, in_shapes):
        return attrs["buffers"]

    def macs(self, attrs, in_shapes, out_shape):
        measured = attrs.get("measured_macs")
        return 0 if measured is None else measured  # None: unknown, not zero (LayerStats.counted, .measured)

    def other_ops(self, attrs, in_shapes, out_shape):
        return 0  # unknown, as macs

    def window(self, attrs, in_shapes):
        return None  # unknown: the receptive field is carried through as if the op were pointwise

    def write_onnx(self, e, node, inputs):
        raise UnsupportedOpError(f"{node.attrs['target']} has no formula in archviz, so `archviz export` cannot write "
                                 "what it computes to ONNX", layer=node.name)

    def explain(self, attrs, in_shapes, out_shape):
        inputs = ", ".join(fmt_shape(s) for s in in_shapes)
        return [
            Step("output shape", f"{attrs['target']} on {inputs}, as traced", fmt_shape(out_shape)),
            Step("params", "counted from the module's own parameters", fmt_int(attrs["params"])),
            self._macs_step(attrs),
        ]

    @staticmethod
    def _macs_step(attrs) -> Step:
        if attrs.get("measured_macs") is None:
            return Step("MACs", f"not counted: archviz has no formula for {attrs['target']}", "?")
        return Step("MACs", f"measured, no formula: torch's FlopCounterMode on the traced call ({attrs['target']}), "
                    "FLOPs / 2 per sample; other ops not counted", fmt_int(attrs["measured_macs"]))

    def summary(self, attrs):
        measured = attrs.get("measured_macs")
        return f"{attrs['target']} ({'not counted' if measured is None else 'MACs measured, no formula'})"

    def build_torch(self, attrs, in_shapes):
        raise UnsupportedOpError(f"{attrs['target']} has no formula in archviz, so it cannot be rebuilt in torch; "
                                 "the cross-check runs on the original model instead")

