"""Normalisation: batch norm (Ioffe & Szegedy 2015), layer norm (Ba et al. 2016) and local response norm
(Krizhevsky et al. 2012)."""

from __future__ import annotations

from archviz.errors import ShapeError
from archviz.ops.base import (
    EVERYWHERE, ON_CUDA,
    FLOAT32,
    Arg, ArgKind, Example, Fill, Kept, NoMacs, Op, OpKind, Reduction, SameShape, Saved, Step, Weight, fmt_int,
    fmt_shape, numel, TorchinfoMacs,
)

STATISTIC_BYTES = 4  # torch keeps a normalisation's batch statistics (mean, 1/std) in float32 whatever the input's


def _kept_with_statistics(count: int, *, per_sample: bool, more: tuple = ()) -> Saved:
    """A normalisation's input and its two statistics (mean and 1/std), `count` of each."""
    statistics = Kept(count, per_sample=per_sample, itemsize=STATISTIC_BYTES)
    return Saved(inputs=(0,), made=(statistics, statistics, *more))
from archviz.ops.interop import (
    EMPTY, Const, Mapped, NotRepresentable, Signature, TorchCalls, is_ref, module_args, onnx_as, onnx_float,
)
from archviz.ops.registry import register


_BATCHNORM_BY_RANK = {2: "batchnorm1d", 3: "batchnorm1d", 4: "batchnorm2d", 5: "batchnorm3d"}  # with the batch


def _read_batchnorm(r):
    rank = len(r.shape(r.activation()))
    if rank not in _BATCHNORM_BY_RANK:
        raise NotRepresentable(f"batch norm over a rank-{rank} tensor (archviz has batchnorm1d, 2d and 3d)")
    if r.attrs.get("spatial", 1) != 1:
        raise NotRepresentable("spatial=0 (statistics per position)")
    args = {"eps": onnx_float(r.attrs.get("epsilon", 1e-5)), "momentum": onnx_float(1 - r.attrs.get("momentum", 0.9)),
            "affine": r.weight(1) is not None, "track_running_stats": r.weight(3) is not None}
    return r.layer(_BATCHNORM_BY_RANK[rank], args, stored=r.stored())


def _batch_norm_function(a, out):
    """F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps): the module's computation,
    with its tensors as the model's own. Running statistics used at inference (training false) are
    track_running_stats; none with training true is the batch's own statistics (track_running_stats false); running
    statistics updated in training mode, or a weight without a bias, are no module's and stay opaque."""
    x, mean, var, weight, bias = (a[k] for k in ("input", "running_mean", "running_var", "weight", "bias"))
    if not is_ref(x) or len(x.shape) not in (1, 2, 3, 4) or any(is_ref(t) for t in (mean, var, weight, bias)):
        return None
    if (weight is None) != (bias is None) or (mean is None) != (var is None):
        return None
    tracked = mean is not None
    if tracked == bool(a["training"]):  # statistics to update (train mode), or none to use at inference
        return None
    if not all(_trained(c) for c in (weight, bias)) or any(c is not None and _trained(c) for c in (mean, var)):
        return None  # the formulas count the scale and shift as parameters, the statistics as buffers
    claims = tuple(t for c in (weight, bias, mean, var) if isinstance(c, Const) for t in c.tensors)
    op = _BATCHNORM_BY_RANK[len(x.shape) + 1]
    attrs = {"num_features": x.shape[0], "eps": a["eps"], "momentum": a["momentum"], "affine": weight is not None,
             "track_running_stats": tracked}
    return Mapped(op, attrs, (x,), claims)


def _trained(value) -> bool:
    """Whether a traced argument is a model parameter as it is (None counts as one: it adds nothing)."""
    if value is None:
        return True
    from torch.nn import Parameter

    return isinstance(value, Const) and isinstance(value.parameter, Parameter)


_BATCH_NORM = Signature(("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
                        _batch_norm_function, {"weight": None, "bias": None, "training": False, "momentum": 0.1,
                                               "eps": 1e-5})


def _read_lrn(r):
    a = r.attrs
    return r.layer("local_response_norm", {
        "size": a["size"], "alpha": onnx_float(a.get("alpha", 1e-4)), "beta": onnx_float(a.get("beta", 0.75)),
        "k": onnx_float(a.get("bias", 1.0))})


def _read_layer_norm(r):
    shape = r.shape(r.activation())
    axis = r.attrs.get("axis", -1) % len(shape)
    if axis == 0:
        raise NotRepresentable("it normalises over the batch too")
    args = {"normalized_shape": list(shape[axis:]), "eps": onnx_float(r.attrs.get("epsilon", 1e-5)),
            "elementwise_affine": r.weight(1) is not None, "bias": r.has_input(2) and r.weight(2) is not None}
    return r.layer("layer_norm", args, stored=r.stored())


class _BatchNorm(SameShape, NoMacs, Op):
    """What batch norm over 1-d, 2-d and 3-d maps shares: all but the input ranks and the torch class."""

    def scratch(self, attrs, in_shapes, out_shape):
        """Without running statistics it normalises by the batch's own: their mean and 1/std per channel."""
        if attrs["track_running_stats"]:
            return ()
        return (Kept(in_shapes[0][0], per_sample=False, itemsize=STATISTIC_BYTES),) * 2

    ranks: tuple[int, ...] = ()  # the input ranks without the batch
    what = ""
    kind = OpKind.NORM
    torchinfo_macs = TorchinfoMacs.NORMALISATION
    keras_class = "BatchNormalization"
    args = (
        Arg("eps", ArgKind.FLOAT, 1e-5),
        Arg("momentum", ArgKind.FLOAT, 0.1),
        Arg("affine", ArgKind.BOOL, True),
        Arg("track_running_stats", ArgKind.BOOL, True),
        Arg("num_features", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )

    def saved(self, attrs, in_shapes, out_shape):
        """The input and the batch's mean and 1/std per channel (one pair for the whole batch)."""
        return _kept_with_statistics(in_shapes[0][0], per_sample=False)

    def resolve(self, attrs, in_shapes):
        if len(in_shapes[0]) not in self.ranks:
            raise ShapeError(f"{self.name} needs a {self.what} input, got shape {fmt_shape(in_shapes[0])}")
        channels = in_shapes[0][0]
        if attrs["num_features"] is not None and attrs["num_features"] != channels:
            raise ShapeError(f"num_features is {attrs['num_features']} but the input has {channels} channels")
        return {**attrs, "num_features": channels}

    def weights(self, attrs, in_shapes):
        c = (attrs["num_features"],)
        scale = (Weight("weight", c, fill=Fill.ONES), Weight("bias", c, fill=Fill.ZEROS)) if attrs["affine"] else ()
        running = (Weight("running_mean", c, trainable=False, fill=Fill.ZEROS),
                   Weight("running_var", c, trainable=False, fill=Fill.ONES)) if attrs["track_running_stats"] else ()
        return scale + running

    def params(self, attrs, in_shapes):  # the formulas, kept apart from weights(): analysis calls them for every layer
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

    def write_onnx(self, e, node, x):
        a, path, channels = node.attrs, node.name, node.attrs["num_features"]
        if a["affine"]:
            scale, shift = e.weight(node, "weight"), e.weight(node, "bias")
        else:
            scale, shift = e.constant(f"{path}/scale", [1.0] * channels), e.constant(f"{path}/shift", [0.0] * channels)
        options = {"epsilon": a["eps"], "momentum": 1 - a["momentum"]}
        if a["track_running_stats"]:
            mean, var = e.weight(node, "running_mean"), e.weight(node, "running_var")
        else:  # torch normalises with the batch's own statistics: ONNX's training mode, which must output the new stats
            mean, var = e.constant(f"{path}/mean", [0.0] * channels), e.constant(f"{path}/var", [1.0] * channels)
            options.update(training_mode=1, unused=(f"{path}/running_mean", f"{path}/running_var"))
        e.add("BatchNormalization", [x[0], scale, shift, mean, var], path, path, **options)

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return getattr(nn, self.torch_class.removeprefix("nn."))(
            attrs["num_features"], eps=attrs["eps"], momentum=attrs["momentum"], affine=attrs["affine"],
            track_running_stats=attrs["track_running_stats"],
        )


def _batchnorm_calls(op: str, torch_class: str, functions=EMPTY) -> TorchCalls:
    return TorchCalls(modules={f"torch.{torch_class}": module_args(
        op, "num_features", "eps", "momentum", "affine", "track_running_stats")}, functions=functions)


@register
class BatchNorm2d(_BatchNorm):
    """Batch normalisation over channels (Ioffe & Szegedy 2015; torch.nn.BatchNorm2d).

    params = 2*C (scale gamma and shift beta) when affine; buffers = 2*C running mean and variance
    (torch also saves a one-element num_batches_tracked counter, not counted here).
    Other ops at inference: 2 per element (the normalisation folds into one multiply and one add).
    F.batch_norm traces to batchnorm1d, 2d or 3d by its input's rank.
    """

    name = "batchnorm2d"
    ranks, what = (3,), "C x H x W"
    examples = (Example({}, ((3, 5, 4),)), Example({"affine": False}, ((2, 4, 4),)),
                Example({"track_running_stats": False}, ((2, 3, 3),)))
    aliases = ("batchnorm", "bn", "batch_norm")
    torch_class = "nn.BatchNorm2d"
    torch_calls = _batchnorm_calls("batchnorm2d", torch_class, {"torch.nn.functional.batch_norm": _BATCH_NORM})
    onnx_reads = {"BatchNormalization": _read_batchnorm}  # by the input's rank: batchnorm1d, 2d or 3d


@register
class BatchNorm1d(_BatchNorm):
    """Batch normalisation of features (C) or of channels over a sequence (C x L) (torch.nn.BatchNorm1d).

    params = 2*C when affine; buffers = 2*C running mean and variance (num_batches_tracked not counted).
    Other ops at inference: 2 per element (one multiply and one add).
    """

    name = "batchnorm1d"
    ranks, what = (1, 2), "C or C x L"
    examples = (Example({}, ((6,),)), Example({}, ((3, 7),)), Example({"affine": False}, ((4, 5),)),
                Example({"track_running_stats": False}, ((3, 6),)))
    aliases = ("batch_norm1d",)
    torch_class = "nn.BatchNorm1d"
    torch_calls = _batchnorm_calls("batchnorm1d", torch_class)


@register
class BatchNorm3d(_BatchNorm):
    """Batch normalisation over the channels of a volume (C x D x H x W) (torch.nn.BatchNorm3d).

    params = 2*C when affine; buffers = 2*C running mean and variance (num_batches_tracked not counted).
    Other ops at inference: 2 per element (one multiply and one add).
    """

    name = "batchnorm3d"
    ranks, what = (4,), "C x D x H x W"
    examples = (Example({}, ((3, 4, 5, 4),)), Example({"affine": False}, ((2, 3, 4, 4),)),
                Example({"track_running_stats": False}, ((2, 3, 3, 3),)))
    aliases = ("batch_norm3d",)
    torch_class = "nn.BatchNorm3d"
    torch_calls = _batchnorm_calls("batchnorm3d", torch_class)


@register
class LocalResponseNorm(SameShape, NoMacs, Op):
    """Local response normalisation across `size` neighbouring channels (AlexNet's norm1, norm2).

    b = a / (k + alpha/size * sum of a^2 over the window)^beta. No params.
    Other ops: 2*size + 3 per element (size squares, size adds, then scale, power and divide).
    """

    reduction = Reduction.MEAN  # the squares' mean over a window of channels (torch: a 3-d average pool)
    transcendental = True  # the power beta

    def scratch(self, attrs, in_shapes, out_shape):
        """The squares' pooled sum and the divisor, each of the input's size."""
        return (Kept(numel(in_shapes[0])),) * 2

    name = "local_response_norm"
    widens = EVERYWHERE  # torch computes it through avg_pool3d (the CPU's autocast float32 list) and pow (CUDA's)
    examples = (Example({"size": 5}, ((7, 6, 5),)), Example({"size": 2, "k": 2.0}, ((3, 4, 4),)))
    aliases = ("lrn", "localresponsenorm")
    kind = OpKind.NORM
    torch_class = "nn.LocalResponseNorm"
    torch_calls = TorchCalls(modules={"torch.nn.LocalResponseNorm": module_args(
        "local_response_norm", "size", "alpha", "beta", "k")})
    onnx_reads = {"LRN": _read_lrn}
    write_onnx = onnx_as("LRN", lambda a: {"size": a["size"], "alpha": a["alpha"], "beta": a["beta"], "bias": a["k"]})
    keras_class = "LocalResponseNormalization"
    args = (
        Arg("size", ArgKind.INT, aliases=("depth_radius",), doc="number of neighbouring channels"),
        Arg("alpha", ArgKind.FLOAT, 1e-4),
        Arg("beta", ArgKind.FLOAT, 0.75),
        Arg("k", ArgKind.FLOAT, 1.0),
    )

    def saved(self, attrs, in_shapes, out_shape):
        """torch's F.local_response_norm as autograd keeps it: the input, its squares padded by size - 1 channels,
        the pooled sum and the divisor."""
        channels, *spatial = in_shapes[0]
        padded = (channels + attrs["size"] - 1) * numel(spatial)
        return Saved(inputs=(0,), made=(Kept(numel(in_shapes[0])), Kept(numel(in_shapes[0])), Kept(padded)))

    def other_ops(self, attrs, in_shapes, out_shape):
        return (2 * attrs["size"] + 3) * numel(out_shape)

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        value = self.other_ops(attrs, in_shapes, out_shape)
        return Step("other ops", f"(2*{attrs['size']} + 3) per element x {fmt_shape(out_shape)}", fmt_int(value))

    def summary(self, attrs):
        return f"size {attrs['size']}"

    def backward_scratch(self, attrs, in_shapes, out_shape, precision=FLOAT32):
        """Three tensors of the input's size at its output's precision at once, beside the tensors it kept, which
        its backward frees step by step; from a 2-byte input (under autocast: it computes in float32) one more, at
        the input's, the input's gradient before it is added to the one returned (the live-storage tracker's count
        in tests/test_op_registry.py)."""
        elements = numel(in_shapes[0])
        narrow_input = precision.autocast and precision.input_itemsize < 4
        return (Kept(3 * elements),) + ((Kept(elements, itemsize=precision.input_itemsize),) if narrow_input else ())

    def window_elements(self, attrs, in_shapes):
        return attrs["size"]

    def small_launches(self, attrs):
        """torch's local_response_norm runs seven kernels: square, pad, 3-d average pool, scale, add k, power, divide."""
        return 6

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.LocalResponseNorm(attrs["size"], alpha=attrs["alpha"], beta=attrs["beta"], k=attrs["k"])


def _filled(shape, value) -> list:
    """A nested list of `shape` holding `value` everywhere (an ONNX constant, without numpy)."""
    return [value] * shape[-1] if len(shape) == 1 else [_filled(shape[1:], value) for _ in range(shape[0])]


def _layer_norm_module(m, refs):
    return Mapped("layer_norm", {
        "normalized_shape": list(m.normalized_shape), "eps": m.eps, "elementwise_affine": m.elementwise_affine,
        "bias": m.bias is not None if m.elementwise_affine else True}, refs)


def _layer_norm_function(a, out):
    x, weight, bias = a["input"], a["weight"], a["bias"]
    if not is_ref(x) or is_ref(weight) or is_ref(bias) or (weight is None and bias is not None):
        return None
    claims = tuple(t for c in (weight, bias) if isinstance(c, Const) for t in c.tensors)
    attrs = {"normalized_shape": list(a["normalized_shape"]), "eps": a["eps"], "elementwise_affine": weight is not None,
             "bias": bias is not None or weight is None}
    return Mapped("layer_norm", attrs, (x,), claims)


class _TrailingNorm(SameShape, NoMacs, Op):
    """A normalisation over the last dims, `normalized_shape`: layer_norm and rms_norm. Other ops per element:
    `ops_per_element` with the elementwise scale, one fewer without it."""

    ops_per_element: int

    def resolve(self, attrs, in_shapes):
        normalized = tuple(attrs["normalized_shape"])
        if len(normalized) > len(in_shapes[0]) or tuple(in_shapes[0][-len(normalized):]) != normalized:
            raise ShapeError(f"normalized_shape {fmt_shape(normalized)} is not the end of the input shape "
                             f"{fmt_shape(in_shapes[0])}")
        return {**attrs, "normalized_shape": normalized}

    def per_element(self, attrs) -> int:
        return self.ops_per_element if attrs["elementwise_affine"] else self.ops_per_element - 1

    def other_ops(self, attrs, in_shapes, out_shape):
        return self.per_element(attrs) * numel(out_shape)

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        per = self.per_element(attrs)
        return Step("other ops", f"{per} per element x {fmt_shape(out_shape)}", fmt_int(per * numel(out_shape)))

    def summary(self, attrs):
        return f"over {fmt_shape(attrs['normalized_shape'])}"


@register
class LayerNorm(_TrailingNorm):
    """Layer normalisation over the last dimensions, `normalized_shape` (Ba, Kiros & Hinton 2016).

    params = 2 * prod(normalized_shape) (scale and shift) with elementwise_affine and bias; prod(normalized_shape)
    without the bias; 0 without elementwise_affine. No buffers: the statistics are computed for each input.
    Other ops: 5 per element with the affine scale, 4 without (fvcore's norm_flop_counter convention, so the
    cross-check compares like with like: mean, variance, normalise, and the scale-and-shift).
    """

    def scratch(self, attrs, in_shapes, out_shape):
        return self.saved(attrs, in_shapes, out_shape).made

    name = "layer_norm"
    widens = ON_CUDA  # in torch's CUDA autocast float32 list, not the CPU's
    takes_folded_batch = True
    ops_per_element = 5
    examples = (Example({"normalized_shape": [6]}, ((4, 6),)), Example({"normalized_shape": [3, 4, 4]}, ((3, 4, 4),)),
                Example({"normalized_shape": [5], "bias": False}, ((5,),)))
    aliases = ("layernorm",)
    kind = OpKind.NORM
    torch_class = "nn.LayerNorm"
    torchinfo_macs = TorchinfoMacs.NORMALISATION
    torch_calls = TorchCalls(
        modules={"torch.nn.LayerNorm": _layer_norm_module},
        functions={"torch.nn.functional.layer_norm": Signature(
            ("input", "normalized_shape", "weight", "bias", "eps"), _layer_norm_function,
            {"weight": None, "bias": None, "eps": 1e-5})})
    onnx_reads = {"LayerNormalization": _read_layer_norm}
    keras_class = "LayerNormalization"
    args = (
        Arg("normalized_shape", ArgKind.SHAPE, doc="the last dims normalised together, e.g. [768]"),
        Arg("eps", ArgKind.FLOAT, 1e-5),
        Arg("elementwise_affine", ArgKind.BOOL, True),
        Arg("bias", ArgKind.BOOL, True),
    )

    def saved(self, attrs, in_shapes, out_shape):
        """The input and the mean and 1/std of each normalised row."""
        return _kept_with_statistics(numel(in_shapes[0]) // numel(attrs["normalized_shape"]), per_sample=True)

    def weights(self, attrs, in_shapes):
        if not attrs["elementwise_affine"]:
            return ()
        shape = tuple(attrs["normalized_shape"])
        scale = Weight("weight", shape, fill=Fill.ONES)
        return (scale, Weight("bias", shape, fill=Fill.ZEROS)) if attrs["bias"] else (scale,)

    def params(self, attrs, in_shapes):  # the formula, kept apart from weights(): analysis calls it for every layer
        if not attrs["elementwise_affine"]:
            return 0
        return numel(attrs["normalized_shape"]) * (2 if attrs["bias"] else 1)

    def explain(self, attrs, in_shapes, out_shape):
        size = numel(attrs["normalized_shape"])
        if not attrs["elementwise_affine"]:
            params = Step("params", "elementwise_affine is off", 0)
        else:
            formula = f"2*{size} (scale and shift)" if attrs["bias"] else f"{size} (scale; no bias)"
            params = Step("params", formula, fmt_int(self.params(attrs, in_shapes)))
        return [Step("output shape", f"same as input {fmt_shape(in_shapes[0])}", fmt_shape(out_shape)), params]

    def write_onnx(self, e, node, x):
        a, shape = node.attrs, tuple(node.attrs["normalized_shape"])
        if a["elementwise_affine"]:
            inputs = [x[0], e.weight(node, "weight")] + ([e.weight(node, "bias")] if a.get("bias", True) else [])
        else:
            inputs = [x[0], e.constant(f"{node.name}/scale", _filled(shape, 1.0))]
        e.add("LayerNormalization", inputs, node.name, node.name, axis=-len(shape), epsilon=a["eps"])

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.LayerNorm(list(attrs["normalized_shape"]), eps=attrs["eps"],
                            elementwise_affine=attrs["elementwise_affine"], bias=attrs["bias"])


# --- group, instance and RMS normalisation ----------------------------------------------------------------------------

_FLOAT32_EPS = 1.1920928955078125e-07  # torch.finfo(torch.float32).eps: nn.RMSNorm's eps when none is given


def _per_channel_shape(rank: int, channels: int) -> list[int]:
    """(C, 1, ..., 1): a per-channel vector broadcast over a rank-`rank` tensor with the batch."""
    return [channels] + [1] * (rank - 2)


def _affine_or_ones(e, node, channels: int, affine: bool) -> tuple[str, str]:
    """The scale and shift tensors an ONNX node reads: the layer's weight and bias, or ones and zeros."""
    if affine:
        return e.weight(node, "weight"), e.weight(node, "bias")
    return e.constant(f"{node.name}/scale", [1.0] * channels), e.constant(f"{node.name}/shift", [0.0] * channels)


def _read_group_norm(r):
    args = {"num_groups": int(r.constant(5)), "eps": onnx_float(r.constant(4)), "affine": r.weight(1) is not None}
    return r.layer("group_norm", args, stored=r.stored())


def _group_norm_module(m, refs):
    return Mapped("group_norm", {"num_groups": m.num_groups, "num_channels": m.num_channels, "eps": m.eps,
                                 "affine": m.affine}, refs)


def _group_norm_function(a, out):
    x, weight, bias = a["input"], a["weight"], a["bias"]
    if not is_ref(x) or is_ref(weight) or is_ref(bias) or (weight is None) != (bias is None):
        return None  # the module has both a scale and a shift, or neither
    claims = tuple(t for c in (weight, bias) if isinstance(c, Const) for t in c.tensors)
    return Mapped("group_norm", {"num_groups": a["num_groups"], "eps": a["eps"], "affine": weight is not None},
                  (x,), claims)


@register
class GroupNorm(SameShape, NoMacs, Op):
    """Group normalisation (Wu & He 2018; torch.nn.GroupNorm): the C channels split into num_groups groups, each
    normalised over its channels and all positions, then a per-channel scale and shift.

    params = 2*C (weight and bias) when affine, else 0; no buffers (statistics computed for each input).
    Other ops: 5 per element with affine, 4 without (fvcore's norm_flop_counter convention, as layer_norm: mean,
    variance, normalise, scale-and-shift). No window: each output depends on every position of its group.
    """

    def scratch(self, attrs, in_shapes, out_shape):
        return self.saved(attrs, in_shapes, out_shape).made

    name = "group_norm"
    widens = ON_CUDA  # in torch's CUDA autocast float32 list, not the CPU's
    examples = (Example({"num_groups": 2}, ((4, 5, 6),)), Example({"num_groups": 3, "affine": False}, ((6, 4, 4),)),
                Example({"num_groups": 1}, ((4, 7),)), Example({"num_groups": 4, "eps": 1e-3}, ((4, 3, 4, 3),)))
    aliases = ("groupnorm", "gn")
    kind = OpKind.NORM
    torch_class = "nn.GroupNorm"
    torchinfo_macs = TorchinfoMacs.NORMALISATION
    torch_calls = TorchCalls(
        modules={"torch.nn.GroupNorm": _group_norm_module},
        functions={"torch.nn.functional.group_norm": Signature(
            ("input", "num_groups", "weight", "bias", "eps"), _group_norm_function,
            {"weight": None, "bias": None, "eps": 1e-5})})
    onnx_reads = {"archviz::GroupNorm": _read_group_norm}  # the function archviz writes (opset 18's GroupNormalization
    # scales per group, not per channel as torch does)
    keras_class = "GroupNormalization"
    args = (
        Arg("num_groups", ArgKind.INT, aliases=("groups",)),
        Arg("eps", ArgKind.FLOAT, 1e-5),
        Arg("affine", ArgKind.BOOL, True),
        Arg("num_channels", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )

    def saved(self, attrs, in_shapes, out_shape):
        """The input and the mean and 1/std of each group of each sample."""
        return _kept_with_statistics(attrs["num_groups"], per_sample=True)

    def resolve(self, attrs, in_shapes):
        shape = in_shapes[0]
        if not 1 <= len(shape) <= 4:
            raise ShapeError(f"group_norm needs a C, C x L, C x H x W or C x D x H x W input, got {fmt_shape(shape)}")
        channels = shape[0]
        if attrs["num_channels"] is not None and attrs["num_channels"] != channels:
            raise ShapeError(f"num_channels is {attrs['num_channels']} but the input has {channels} channels")
        if channels % attrs["num_groups"]:
            raise ShapeError(f"{channels} channels do not split into {attrs['num_groups']} groups")
        return {**attrs, "num_channels": channels}

    def weights(self, attrs, in_shapes):
        if not attrs["affine"]:
            return ()
        c = (attrs["num_channels"],)
        return Weight("weight", c, fill=Fill.ONES), Weight("bias", c, fill=Fill.ZEROS)

    def params(self, attrs, in_shapes):
        return 2 * attrs["num_channels"] if attrs["affine"] else 0

    def other_ops(self, attrs, in_shapes, out_shape):
        return (5 if attrs["affine"] else 4) * numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        c, g = attrs["num_channels"], attrs["num_groups"]
        params = Step("params", f"2*{c} (scale and shift per channel)" if attrs["affine"] else "affine is off",
                      fmt_int(self.params(attrs, in_shapes)))
        return [Step("output shape", f"same as input {fmt_shape(in_shapes[0])}", fmt_shape(out_shape)),
                Step("groups", f"{c} channels / {g} groups", f"{c // g} channels per group"), params]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        per = 5 if attrs["affine"] else 4
        return Step("other ops", f"{per} per element x {fmt_shape(out_shape)}", fmt_int(per * numel(out_shape)))

    def summary(self, attrs):
        return f"{attrs['num_groups']} groups"

    def write_onnx(self, e, node, x):
        """archviz.GroupNorm: X reshaped to (N, G, -1), each row normalised by its mean and variance (biased), shaped
        back and scaled and shifted per channel: torch.nn.GroupNorm's formula."""
        a, rank = node.attrs, len(node.in_shapes[0]) + 1
        e.function("GroupNorm", ["X", "scale", "bias", "channel_shape", "epsilon", "groups"], ["Y"], [
            ("Constant", [], ["minus_one"], {"value_ints": [-1]}),
            ("Constant", [], ["zero"], {"value_ints": [0]}),
            ("Constant", [], ["last"], {"value_ints": [2]}),
            ("Concat", ["zero", "groups", "minus_one"], ["grouped_shape"], {"axis": 0}),
            ("Reshape", ["X", "grouped_shape"], ["grouped"]),
            ("ReduceMean", ["grouped", "last"], ["mean"]),
            ("Sub", ["grouped", "mean"], ["centred"]),
            ("Mul", ["centred", "centred"], ["squares"]),
            ("ReduceMean", ["squares", "last"], ["variance"]),
            ("Add", ["variance", "epsilon"], ["shifted"]),
            ("Sqrt", ["shifted"], ["deviation"]),
            ("Div", ["centred", "deviation"], ["normalised"]),
            ("Shape", ["X"], ["shape"]),
            ("Reshape", ["normalised", "shape"], ["unscaled"]),
            ("Reshape", ["scale", "channel_shape"], ["channel_scale"]),
            ("Reshape", ["bias", "channel_shape"], ["channel_bias"]),
            ("Mul", ["unscaled", "channel_scale"], ["scaled"]),
            ("Add", ["scaled", "channel_bias"], ["Y"]),
        ], doc="torch.nn.GroupNorm: (X - mean) / sqrt(var + epsilon) over each group of channels and all positions, "
               "then scale * . + bias per channel")
        scale, shift = _affine_or_ones(e, node, a["num_channels"], a["affine"])
        path = node.name
        e.add("GroupNorm", [x[0], scale, shift,
                            e.constant(f"{path}/channel_shape", _per_channel_shape(rank, a["num_channels"]), "int64"),
                            e.constant(f"{path}/epsilon", a["eps"]), e.constant(f"{path}/groups", [a["num_groups"]],
                                                                                 "int64")],
              path, path, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.GroupNorm(attrs["num_groups"], attrs["num_channels"], eps=attrs["eps"], affine=attrs["affine"])


_INSTANCE_NORM_CLASSES = {2: "nn.InstanceNorm1d", 3: "nn.InstanceNorm2d", 4: "nn.InstanceNorm3d"}  # by input rank


def _instance_norm_module(m, refs):
    kept = m.affine or m.track_running_stats  # without tensors torch does not check num_features against the input
    return Mapped("instance_norm", {"num_features": m.num_features if kept else None, "eps": m.eps,
                                    "momentum": m.momentum, "affine": m.affine,
                                    "track_running_stats": m.track_running_stats}, refs)


def _instance_norm_function(a, out):
    """F.instance_norm: the input's own statistics without running ones (use_input_stats true), or the running
    statistics alone (use_input_stats false, a tracking module at inference); statistics updated while the input's
    are used (training) are no module's at inference and stay opaque."""
    x, mean, var, weight, bias = (a[k] for k in ("input", "running_mean", "running_var", "weight", "bias"))
    if not is_ref(x) or any(is_ref(t) for t in (mean, var, weight, bias)):
        return None
    if (weight is None) != (bias is None) or (mean is None) != (var is None):
        return None
    tracked = mean is not None
    if tracked == bool(a["use_input_stats"]):
        return None
    if not all(_trained(c) for c in (weight, bias)) or any(c is not None and _trained(c) for c in (mean, var)):
        return None
    claims = tuple(t for c in (weight, bias, mean, var) if isinstance(c, Const) for t in c.tensors)
    return Mapped("instance_norm", {"num_features": x.shape[0], "eps": a["eps"], "momentum": a["momentum"],
                                    "affine": weight is not None, "track_running_stats": tracked}, (x,), claims)


def _read_instance_norm(r):
    rank = len(r.shape(r.activation()))
    if rank - 1 not in _INSTANCE_NORM_CLASSES:
        raise NotRepresentable(f"instance norm over a rank-{rank} tensor (archviz's has rank 3 to 5)")
    args = {"eps": onnx_float(r.attrs.get("epsilon", 1e-5)), "affine": r.weight(1) is not None}
    return r.layer("instance_norm", args, stored=r.stored())


def _read_instance_norm_running(r):
    args = {"eps": onnx_float(r.constant(6)), "affine": r.weight(1) is not None, "track_running_stats": True}
    return r.layer("instance_norm", args, stored=r.stored())


@register
class InstanceNorm(SameShape, NoMacs, Op):
    """Instance normalisation (Ulyanov, Vedaldi & Lempitsky 2016; torch.nn.InstanceNorm1d/2d/3d by the input's
    rank, C x L, C x H x W or C x D x H x W): each channel of each image normalised over its positions.

    params = 2*C (weight and bias) when affine (torch's default is off); buffers = 2*C running mean and variance
    with track_running_stats (num_batches_tracked not counted). At inference a tracking module uses its running
    statistics, as batch norm does.
    Other ops: with the image's own statistics, 5 per element with affine and 4 without (fvcore's
    norm_flop_counter convention, as layer_norm); with running statistics 2 per element (scale and shift folded,
    as batchnorm2d). No window without running statistics: each output depends on every position of its channel.
    """

    def scratch(self, attrs, in_shapes, out_shape):
        """Per sample and channel: the batch's statistics or the running ones repeated, and the repeated scale and
        shift where it has them."""
        channels = in_shapes[0][0]
        return (Kept(channels, itemsize=STATISTIC_BYTES),) * (2 + 2 * int(attrs["affine"]))

    name = "instance_norm"
    examples = (Example({}, ((3, 5, 4),)), Example({"affine": True}, ((2, 6),)),
                Example({"affine": True, "track_running_stats": True}, ((3, 4, 4),)),
                Example({"track_running_stats": True, "eps": 1e-3}, ((2, 3, 4, 3),)),
                Example({"affine": True}, ((2, 3, 3, 4),)))
    aliases = ("instancenorm", "instance_norm2d", "instancenorm2d")
    kind = OpKind.NORM
    torch_class = "nn.InstanceNorm2d"
    torchinfo_macs = TorchinfoMacs.NORMALISATION
    torch_calls = TorchCalls(
        modules={f"torch.{cls}": _instance_norm_module for cls in _INSTANCE_NORM_CLASSES.values()},
        functions={"torch.nn.functional.instance_norm": Signature(
            ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats", "momentum", "eps"),
            _instance_norm_function, {"running_mean": None, "running_var": None, "weight": None, "bias": None,
                                      "use_input_stats": True, "momentum": 0.1, "eps": 1e-5})})
    onnx_reads = {"InstanceNormalization": _read_instance_norm,
                  "archviz::InstanceNormRunning": _read_instance_norm_running}  # the function archviz writes
    keras_class = "GroupNormalization"  # keras: GroupNormalization(groups=-1)
    args = (
        Arg("eps", ArgKind.FLOAT, 1e-5),
        Arg("momentum", ArgKind.FLOAT, 0.1),
        Arg("affine", ArgKind.BOOL, False),
        Arg("track_running_stats", ArgKind.BOOL, False),
        Arg("num_features", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )

    def saved(self, attrs, in_shapes, out_shape):
        """torch's instance norm is batch norm over (1, N x C, ...): the input, the mean and 1/std of each sample's
        channels, and the per-channel tensors it repeats for every sample (the scale; the running statistics)."""
        channels = in_shapes[0][0]
        repeated = int(attrs["affine"]) + 2 * int(attrs["track_running_stats"])
        return _kept_with_statistics(channels, per_sample=True,
                                     more=(Kept(channels, itemsize=STATISTIC_BYTES),) * repeated)

    def resolve(self, attrs, in_shapes):
        shape = in_shapes[0]
        if len(shape) not in (2, 3, 4):
            raise ShapeError(f"instance_norm needs a C x L, C x H x W or C x D x H x W input, got {fmt_shape(shape)}")
        if attrs["num_features"] is not None and attrs["num_features"] != shape[0]:
            raise ShapeError(f"num_features is {attrs['num_features']} but the input has {shape[0]} channels")
        return {**attrs, "num_features": shape[0]}

    def weights(self, attrs, in_shapes):
        c = (attrs["num_features"],)
        scale = (Weight("weight", c, fill=Fill.ONES), Weight("bias", c, fill=Fill.ZEROS)) if attrs["affine"] else ()
        running = (Weight("running_mean", c, trainable=False, fill=Fill.ZEROS),
                   Weight("running_var", c, trainable=False, fill=Fill.ONES)) if attrs["track_running_stats"] else ()
        return scale + running

    def params(self, attrs, in_shapes):
        return 2 * attrs["num_features"] if attrs["affine"] else 0

    def buffers(self, attrs, in_shapes):
        return 2 * attrs["num_features"] if attrs["track_running_stats"] else 0

    def per_element(self, attrs) -> int:
        if attrs["track_running_stats"]:
            return 2
        return 5 if attrs["affine"] else 4

    def other_ops(self, attrs, in_shapes, out_shape):
        return self.per_element(attrs) * numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        c = attrs["num_features"]
        return [
            Step("output shape", f"same as input {fmt_shape(in_shapes[0])}", fmt_shape(out_shape)),
            Step("params", f"2*{c} (scale and shift per channel)" if attrs["affine"] else "affine is off",
                 fmt_int(self.params(attrs, in_shapes))),
            Step("buffers", f"2*{c} (running mean and variance, not trained)" if attrs["track_running_stats"]
                 else "track_running_stats is off", fmt_int(self.buffers(attrs, in_shapes))),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        per = self.per_element(attrs)
        why = "scale and shift with running statistics" if attrs["track_running_stats"] else "mean, variance, normalise" \
            + (", scale and shift" if attrs["affine"] else "")
        return Step("other ops", f"{per} per element ({why}) x {fmt_shape(out_shape)}", fmt_int(per * numel(out_shape)))

    def summary(self, attrs):
        return "running stats" if attrs["track_running_stats"] else ""

    def write_onnx(self, e, node, x):
        a, path, rank = node.attrs, node.name, len(node.in_shapes[0]) + 1
        scale, shift = _affine_or_ones(e, node, a["num_features"], a["affine"])
        if not a["track_running_stats"]:
            e.add("InstanceNormalization", [x[0], scale, shift], path, path, epsilon=a["eps"])
            return
        e.function("InstanceNormRunning", ["X", "scale", "bias", "mean", "var", "channel_shape", "epsilon"], ["Y"], [
            ("Reshape", ["mean", "channel_shape"], ["channel_mean"]),
            ("Add", ["var", "epsilon"], ["shifted"]),
            ("Sqrt", ["shifted"], ["deviation"]),
            ("Div", ["scale", "deviation"], ["factor"]),
            ("Reshape", ["factor", "channel_shape"], ["channel_factor"]),
            ("Reshape", ["bias", "channel_shape"], ["channel_bias"]),
            ("Sub", ["X", "channel_mean"], ["centred"]),
            ("Mul", ["centred", "channel_factor"], ["scaled"]),
            ("Add", ["scaled", "channel_bias"], ["Y"]),
        ], doc="torch.nn.InstanceNorm with track_running_stats at inference: (X - mean) / sqrt(var + epsilon) * scale "
               "+ bias per channel, with the running statistics")
        e.add("InstanceNormRunning", [
            x[0], scale, shift, e.weight(node, "running_mean"), e.weight(node, "running_var"),
            e.constant(f"{path}/channel_shape", _per_channel_shape(rank, a["num_features"]), "int64"),
            e.constant(f"{path}/epsilon", a["eps"])], path, path, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        module = getattr(nn, _INSTANCE_NORM_CLASSES[len(in_shapes[0])].removeprefix("nn."))
        return module(attrs["num_features"], eps=attrs["eps"], momentum=attrs["momentum"], affine=attrs["affine"],
                      track_running_stats=attrs["track_running_stats"])


def _rms_norm_module(m, refs):
    return Mapped("rms_norm", {"normalized_shape": list(m.normalized_shape), "eps": m.eps,
                               "elementwise_affine": m.elementwise_affine}, refs)


def _rms_norm_function(a, out):
    x, weight = a["input"], a["weight"]
    if not is_ref(x) or is_ref(weight):
        return None
    claims = weight.tensors if isinstance(weight, Const) else ()
    return Mapped("rms_norm", {"normalized_shape": list(a["normalized_shape"]), "eps": a["eps"],
                               "elementwise_affine": weight is not None}, (x,), claims)


def _read_rms_norm(r):
    shape, axes = r.shape(r.activation()), r.constant(2)
    axes = sorted(axis % len(shape) for axis in ([axes] if isinstance(axes, int) else axes))
    if not axes or axes != list(range(axes[0], len(shape))) or axes[0] == 0:
        raise NotRepresentable(f"a root mean square over axes {axes}, not the trailing non-batch dims")
    eps = r.constant(3)
    args = {"normalized_shape": list(shape[axes[0]:]), "eps": None if eps == _FLOAT32_EPS else onnx_float(eps),
            "elementwise_affine": r.weight(1) is not None}
    return r.layer("rms_norm", args, stored=r.stored())


@register
class RMSNorm(_TrailingNorm):
    """Root-mean-square normalisation over the last dimensions, `normalized_shape` (Zhang & Sennrich 2019;
    torch.nn.RMSNorm): y = x / sqrt(mean(x^2) + eps) * weight; eps none is float32's machine epsilon, as in torch.

    params = prod(normalized_shape) (the scale) with elementwise_affine, else 0; no buffers, no bias.
    Other ops: 4 per element with the scale (square, sum into the mean, normalise, scale), 3 without (layer_norm's
    convention less the mean subtraction); the root per normalised group is not counted.
    """

    def scratch(self, attrs, in_shapes, out_shape):
        """1/rms of each row, and the normalised input a scale multiplies (without a scale, the mean square)."""
        rows = numel(in_shapes[0]) // numel(attrs["normalized_shape"])
        if attrs["elementwise_affine"]:
            return (Kept(rows, itemsize=STATISTIC_BYTES), Kept(numel(in_shapes[0])))
        return (Kept(rows, itemsize=STATISTIC_BYTES),) * 2

    name = "rms_norm"
    widens = ON_CUDA  # in torch's CUDA autocast float32 list, not the CPU's
    takes_folded_batch = True
    ops_per_element = 4
    examples = (Example({"normalized_shape": [6]}, ((4, 6),)), Example({"normalized_shape": [3, 4, 4]}, ((3, 4, 4),)),
                Example({"normalized_shape": [5], "elementwise_affine": False, "eps": 1e-6}, ((5,),)),
                Example({"normalized_shape": [4, 5]}, ((2, 4, 5),)))
    aliases = ("rmsnorm",)
    kind = OpKind.NORM
    torch_class = "nn.RMSNorm"
    torchinfo_macs = TorchinfoMacs.NORMALISATION
    torch_calls = TorchCalls(
        modules={"torch.nn.RMSNorm": _rms_norm_module},
        functions={"torch.nn.functional.rms_norm": Signature(
            ("input", "normalized_shape", "weight", "eps"), _rms_norm_function, {"weight": None, "eps": None})})
    onnx_reads = {"archviz::RMSNorm": _read_rms_norm}  # the function archviz writes (RMSNormalization is opset 23)
    keras_class = "RMSNormalization"
    args = (
        Arg("normalized_shape", ArgKind.SHAPE, doc="the last dims normalised together, e.g. [768]"),
        Arg("eps", ArgKind.FLOAT, None, doc="null: float32's machine epsilon, as torch"),
        Arg("elementwise_affine", ArgKind.BOOL, True),
    )

    def saved(self, attrs, in_shapes, out_shape):
        """The input, 1/rms of each normalised row, and with a scale the normalised input it multiplies."""
        rows = Kept(numel(in_shapes[0]) // numel(attrs["normalized_shape"]), itemsize=STATISTIC_BYTES)
        scaled = (Kept(numel(in_shapes[0])),) if attrs["elementwise_affine"] else ()
        return Saved(inputs=(0,), made=(rows, *scaled))

    def weights(self, attrs, in_shapes):
        if not attrs["elementwise_affine"]:
            return ()
        return (Weight("weight", tuple(attrs["normalized_shape"]), fill=Fill.ONES),)

    def params(self, attrs, in_shapes):
        return numel(attrs["normalized_shape"]) if attrs["elementwise_affine"] else 0

    def explain(self, attrs, in_shapes, out_shape):
        size = numel(attrs["normalized_shape"])
        params = Step("params", f"{size} (scale; no shift)" if attrs["elementwise_affine"] else
                      "elementwise_affine is off", fmt_int(self.params(attrs, in_shapes)))
        return [Step("output shape", f"same as input {fmt_shape(in_shapes[0])}", fmt_shape(out_shape)), params]

    def write_onnx(self, e, node, x):
        """archviz.RMSNorm: X / sqrt(ReduceMean(X * X over the trailing axes) + epsilon) * scale."""
        a, path, shape = node.attrs, node.name, tuple(node.attrs["normalized_shape"])
        e.function("RMSNorm", ["X", "scale", "axes", "epsilon"], ["Y"], [
            ("Mul", ["X", "X"], ["squares"]),
            ("ReduceMean", ["squares", "axes"], ["mean_square"]),
            ("Add", ["mean_square", "epsilon"], ["shifted"]),
            ("Sqrt", ["shifted"], ["root"]),
            ("Div", ["X", "root"], ["normalised"]),
            ("Mul", ["normalised", "scale"], ["Y"]),
        ], doc="torch.nn.RMSNorm: X / sqrt(mean(X^2) over the trailing axes + epsilon) * scale")
        scale = e.weight(node, "weight") if a["elementwise_affine"] else e.constant(f"{path}/scale", 1.0)
        eps = _FLOAT32_EPS if a["eps"] is None else a["eps"]
        axes = e.constant(f"{path}/axes", list(range(-len(shape), 0)), "int64")
        e.add("RMSNorm", [x[0], scale, axes, e.constant(f"{path}/epsilon", eps)], path, path, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.RMSNorm(list(attrs["normalized_shape"]), eps=attrs["eps"],
                          elementwise_affine=attrs["elementwise_affine"])
