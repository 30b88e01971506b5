"""Normalisation: batch norm (Ioffe & Szegedy 2015) and local response norm (Krizhevsky et al. 2012)."""

from __future__ import annotations

from archviz.errors import ShapeError
from archviz.ops.base import Arg, ArgKind, Op, OpKind, Step, fmt_int, fmt_shape, numel, require_rank
from archviz.ops.registry import register


@register
class BatchNorm2d(Op):
    """Batch normalisation over channels.

    params = 2*C (scale gamma and shift beta) when affine; buffers = 2*C running mean and variance
    (torch also saves a one-element num_batches_tracked counter, not counted here).
    Other ops at inference: 2 per element (the normalisation folds into one multiply and one add).
    """

    name = "batchnorm2d"
    aliases = ("batchnorm", "bn", "batch_norm")
    kind = OpKind.NORM
    torch_class = "nn.BatchNorm2d"
    keras_class = "BatchNormalization"
    args = (
        Arg("eps", ArgKind.FLOAT, 1e-5),
        Arg("momentum", ArgKind.FLOAT, 0.1),
        Arg("affine", ArgKind.BOOL, True),
        Arg("track_running_stats", ArgKind.BOOL, True),
        Arg("num_features", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )

    def resolve(self, attrs, in_shapes):
        require_rank(self, in_shapes[0], 3, "C x H x W")
        channels = in_shapes[0][0]
        if attrs["num_features"] is not None and attrs["num_features"] != channels:
            raise ShapeError(f"num_features is {attrs['num_features']} but the input has {channels} channels")
        return {**attrs, "num_features": channels}

    def params(self, attrs, in_shapes):
        return 2 * attrs["num_features"] if attrs["affine"] else 0

    def buffers(self, attrs, in_shapes):
        return 2 * attrs["num_features"] if attrs["track_running_stats"] else 0

    def other_ops(self, attrs, in_shapes, out_shape):
        return 2 * numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        c = attrs["num_features"]
        return [
            Step("output shape", f"same as input {fmt_shape(in_shapes[0])}", fmt_shape(out_shape)),
            Step("params", f"2*{c} (gamma and beta per channel)" if attrs["affine"] else "affine is off", fmt_int(self.params(attrs, in_shapes))),
            Step("buffers", f"2*{c} (running mean and variance, not trained)", fmt_int(self.buffers(attrs, in_shapes))),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        return Step("other ops", f"2 per element (scale and shift) x {fmt_shape(out_shape)}", fmt_int(2 * numel(out_shape)))

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.BatchNorm2d(
            attrs["num_features"], eps=attrs["eps"], momentum=attrs["momentum"], affine=attrs["affine"],
            track_running_stats=attrs["track_running_stats"],
        )


@register
class LocalResponseNorm(Op):
    """Local response normalisation across `size` neighbouring channels (AlexNet's norm1, norm2).

    b = a / (k + alpha/size * sum of a^2 over the window)^beta. No params.
    Other ops: 2*size + 3 per element (size squares, size adds, then scale, power and divide).
    """

    name = "local_response_norm"
    aliases = ("lrn", "localresponsenorm")
    kind = OpKind.NORM
    torch_class = "nn.LocalResponseNorm"
    keras_class = "LocalResponseNormalization"
    args = (
        Arg("size", ArgKind.INT, aliases=("depth_radius",), doc="number of neighbouring channels"),
        Arg("alpha", ArgKind.FLOAT, 1e-4),
        Arg("beta", ArgKind.FLOAT, 0.75),
        Arg("k", ArgKind.FLOAT, 1.0),
    )

    def other_ops(self, attrs, in_shapes, out_shape):
        return (2 * attrs["size"] + 3) * numel(out_shape)

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        value = self.other_ops(attrs, in_shapes, out_shape)
        return Step("other ops", f"(2*{attrs['size']} + 3) per element x {fmt_shape(out_shape)}", fmt_int(value))

    def summary(self, attrs):
        return f"size {attrs['size']}"

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.LocalResponseNorm(attrs["size"], alpha=attrs["alpha"], beta=attrs["beta"], k=attrs["k"])
