"""What every operation defines once: its arguments, output shape, costs, window, explanation and torch module.

Conventions (stated here once; every renderer links to them):
  * A MAC is one multiply-accumulate of a convolution, linear layer or matmul. Bias additions are not MACs.
  * FLOPs = 2 x MACs, the convention of torch.utils.flop_counter.FlopCounterMode.
  * "Other ops" are everything else that computes: bias adds, activations, pooling, normalisation and
    residual adds, each with the per-element formula given in its op's docstring.
  * Shapes exclude the batch dimension and use torch's order: (C, H, W) for feature maps, (F,) for vectors.
  * Costs are per image; totals for a batch multiply by the batch size.
"""

from __future__ import annotations

import abc
import enum
import inspect
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, ClassVar, Mapping

from archviz.errors import ShapeError
from archviz.format import exact as fmt_int, shape as fmt_shape  # noqa: F401  (the ops' names for them)
from archviz.ops.interop import EMPTY, NO_TORCH_CALLS, TorchCalls

Shape = tuple[int, ...]
Attrs = Mapping[str, Any]
REQUIRED = object()


class ArgKind(enum.StrEnum):
    INT = "int"  # a positive integer
    NONNEG_INT = "nonneg_int"  # zero allowed
    PAIR = "pair"  # a positive int, or [height, width]
    NONNEG_PAIR = "nonneg_pair"  # like PAIR, zero allowed (padding)
    PADDING = "padding"  # an int, [height, width], "same" or "valid"
    FLOAT = "float"
    BOOL = "bool"
    CHOICE = "choice"
    OPTIONAL_PAIR = "optional_pair"  # like PAIR, but either side may be null (keep that size)
    INT_OR_NONE = "int_or_none"
    COUNT = "count"  # a count of parameters or MACs: zero allowed, up to 10**18
    COUNT_OR_NONE = "count_or_none"  # a count, or null: not known (a measured figure that could not be taken)
    SIGNED_INT = "signed_int"  # any integer, e.g. a dimension counted from the end
    TEXT = "text"  # a short string, e.g. the name of an operation archviz has no formula for
    SHAPE = "shape"  # a list of positive integers, a tensor's shape without the batch
    TRACED_SHAPE = "traced_shape"  # as SHAPE, but a dim may be 0: what a trace saw (an empty slice)
    SIZES = "sizes"  # a positive int, or one per spatial axis: [length], [depth, height, width] (conv1d, conv3d)
    NONNEG_SIZES = "nonneg_sizes"  # like SIZES, zero allowed (a transposed convolution's padding)
    PADDING_SIZES = "padding_sizes"  # an int, one per spatial axis, "same" or "valid" (conv1d, conv3d)
    CONNECTIONS = "connections"  # per output channel, the input channels it sees: [[0, 1, 2], [1, 2, 3], ...]


class OpKind(enum.StrEnum):
    """The family an op belongs to; diagrams colour by it."""

    CONV = "conv"
    POOL = "pool"
    NORM = "norm"
    ACTIVATION = "activation"
    LINEAR = "linear"
    RESHAPE = "reshape"
    REGULARIZATION = "regularization"
    JOIN = "join"
    OPAQUE = "opaque"  # no formula: shapes from a trace, costs not counted


@dataclass(frozen=True)
class Arg:
    name: str
    kind: ArgKind
    default: Any = REQUIRED
    aliases: tuple[str, ...] = ()
    doc: str = ""
    choices: tuple = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Step:
    """One line of arithmetic: what is computed, the formula with numbers filled in, and the result."""

    quantity: str
    arithmetic: str
    value: Any


@dataclass(frozen=True)
class Window:
    """How a spatial op maps input positions to output positions, per axis (height, width).

    kernel is the effective extent, dilation already applied: dilation * (kernel_size - 1) + 1. An op that upsamples
    (pixel_shuffle) has a fractional stride (a Fraction, 1/r) and padding: output position t reads input position
    round(t * stride - padding).
    """

    kernel: tuple[int, int]
    stride: tuple[int | Fraction, int | Fraction]
    padding: tuple[int | Fraction, int | Fraction]


class TorchinfoMacs(enum.StrEnum):
    """How torchinfo counts an op's Mult-Adds, which crosscheck/torchinfo_peer.py converts to archviz's MACs."""

    PARAMS = "params"  # parameters x N
    CONV = "conv"  # weights x output positions, plus one bias term per output element
    TRANSPOSED_CONV = "transposed_conv"  # as CONV: weights x output positions, where ours are weights x input positions
    LINEAR = "linear"  # (weights + bias) x N, leaving out the leading dims of each sample
    NORMALISATION = "normalisation"  # the scale and shift parameters x N, where a normalisation is no MAC
    NO_MACS = "no_macs"  # its parameters x N, where the op multiply-accumulates nothing (a lookup, an added parameter)
    PARTIAL = "partial"  # torchinfo sees part of it only (nn.MultiheadAttention: its out_proj, not the attention)


class Reduction(enum.StrEnum):
    """What a pooling layer computes over its window: kernels differ in cost (torch's NCHW max pool on a CPU tracks
    its winner's index and runs about 3x slower per output than its average pool; archviz/profile/calibrate.py)."""

    MAX = "max"
    MEAN = "mean"
    SUM = "sum"


class Fill(enum.StrEnum):
    """How torch fills a tensor when a module is made (reset_parameters in torch/nn/modules/conv.py, linear.py,
    batchnorm.py, normalization.py)."""

    UNIFORM = "uniform"  # U(-bound, bound), bound = 1/sqrt(fan_in): kaiming_uniform_(a=sqrt(5)) and its bias
    ONES = "ones"
    ZEROS = "zeros"


@dataclass(frozen=True)
class Weight:
    """One tensor a layer stores: its state-dict name after the layer's path ("weight", "running_mean"), its shape,
    whether it is trained (a parameter) or only kept (a buffer), and torch's first fill. An op's params and buffers
    are the sizes of these; to_torch, the ONNX writer and the state-dict loader all read them."""

    name: str
    shape: Shape
    trainable: bool = True
    fill: Fill = Fill.UNIFORM
    fan_in: int = 1


@dataclass(frozen=True)
class Kept:
    """A tensor a layer makes for its backward pass alone (batch norm's batch statistics, max pool's argmax indices,
    dropout's mask): its elements (per sample, or once per pass), and bytes per element where they are not the
    activations' (8: int64 indices; 4: float32 statistics whatever the activations' dtype)."""

    elements: int
    per_sample: bool = True
    itemsize: int | None = None  # None: the activations' dtype

    def bytes(self, *, batch: int, activation_itemsize: int) -> int:
        return self.elements * (batch if self.per_sample else 1) * (self.itemsize or activation_itemsize)


@dataclass(frozen=True)
class Saved:
    """What autograd keeps of one layer from its forward pass until its backward pass has run, training, as torch
    does on the CPU (torch's derivatives.yaml says which tensors each gradient formula reads): which of the layer's
    inputs and whether its output (tensors other layers may keep too, so a model counts each once), and the tensors
    it makes for the backward pass alone. Its weights are kept as they always are and are not listed."""

    inputs: tuple[int, ...] = ()
    output: bool = False
    made: tuple[Kept, ...] = ()


LOWER_PRECISION_BYTES = 2  # autocast's bf16 and fp16
ON_CPU, ON_CUDA = frozenset({"cpu"}), frozenset({"cuda"})  # where an op widens under autocast (Op.widens)
EVERYWHERE = ON_CPU | ON_CUDA


@dataclass(frozen=True)
class Precision:
    """Where a layer's backward runs: bytes per element of its input (and that input's gradient) and of its weights
    (and theirs); `autocast`: under torch.autocast, where an op that autocasts computes from 2-byte copies of its
    inputs and weights, so makes their gradients in 2 bytes first and copies them back."""

    input_itemsize: int = 4
    weight_itemsize: int = 4
    autocast: bool = False


FLOAT32 = Precision()

NOTHING_SAVED = Saved()
INPUT_SAVED = Saved(inputs=(0,))
OUTPUT_SAVED = Saved(output=True)


@dataclass(frozen=True)
class Example:
    """Arguments (as a spec writes them) and input shapes the registry-wide test builds an op with, in torch, against
    every figure the op declares (tests/test_op_registry.py). Each op lists the cases its formulas branch on."""

    args: Mapping[str, Any]
    inputs: tuple[Shape, ...]
    below: int | None = None  # the inputs are indices, whole numbers below this (an embedding's table size)


class Op(abc.ABC):
    """Base of every operation. Subclasses override what differs from a parameter-free pointwise op."""

    name: ClassVar[str]
    kind: ClassVar[OpKind]
    args: ClassVar[tuple[Arg, ...]] = ()
    aliases: ClassVar[tuple[str, ...]] = ()
    torch_class: ClassVar[str] = ""
    keras_class: ClassVar[str] = ""
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int] = 1
    inplace_capable: ClassVar[bool] = False
    normalises_logits: ClassVar[bool] = False  # softmax: a classifier's last step, which a training loss applies itself
    pointwise: ClassVar[bool] = False  # an activation of each element alone (relu, not softmax): fusable into a layer
    # treats every dim before those its formulas name alike, as it treats the batch: it may read a batch folded into
    # the first dim, (B*m, ...), as (B, m, ...) (window attention; archviz/trace/fx.py). False: such a call is opaque
    takes_folded_batch: ClassVar[bool] = False
    draws_kernels: ClassVar[bool] = False  # its weight is (out, in/groups, kh, kw): each kernel drawable as an image
    returns_view: ClassVar[bool] = False  # its output is a view of its input's storage (flatten, permute): no new bytes
    # runs in the lower precision under torch.autocast (torch's list: conv, linear, matmul, bmm, attention), its
    # inputs and weights cast to bf16 or fp16 copies; every other op computes in its inputs' dtype
    autocasts: ClassVar[bool] = False
    # the devices ("cpu", "cuda") where its output is float32 under torch.autocast though its inputs are 2-byte
    # floats: it is in that device's autocast float32 list (the CPU's: 3-d pools, reflection padding; CUDA's: layer
    # and group norm, softmax, exp, pow, sum, interpolation) or mixes them with float32 weights by type promotion
    # (add_param, mul_param, rbf, embedding: EVERYWHERE); see widens_under_autocast
    widens: ClassVar[frozenset[str]] = frozenset()
    # arguments a module's call (not its constructor) gives that are the op's own (nn.MultiheadAttention's
    # need_weights): the tracer copies them from the call into the layer's arguments
    call_arguments: ClassVar[tuple[str, ...]] = ()
    reduction: ClassVar[Reduction | None] = None  # a pool's: the maximum, mean or sum of its window
    # computes an exp, log, tanh or erf per element (sigmoid, tanh, GELU, SiLU, softmax): on a CPU these run at a
    # measured rate far below the memory roof (archviz/profile/calibrate.py), while max(x, 0) streams
    transcendental: ClassVar[bool] = False
    torchinfo_macs: ClassVar[TorchinfoMacs] = TorchinfoMacs.PARAMS
    examples: ClassVar[tuple[Example, ...]] = ()  # what the registry-wide test checks; every op has some
    torch_calls: ClassVar[TorchCalls] = NO_TORCH_CALLS  # what it matches when tracing (archviz/ops/interop.py)
    onnx_reads: ClassVar[Mapping[str, Any]] = EMPTY  # ONNX op type -> reader of one node (archviz/ops/interop.py)

    def __init__(self):
        self.doc = inspect.cleandoc(type(self).__doc__ or "")
        self.stores_weights = type(self).weights is not Op.weights  # most ops store none: params and buffers are 0

    # --- shapes -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def infer_shape(self, attrs: Attrs, in_shapes: list[Shape]) -> Shape:
        """The output shape (without the batch); SameShape declares the input's."""

    def resolve(self, attrs: dict, in_shapes: list[Shape]) -> dict:
        """Fill arguments that come from the input shape (in_channels, num_features, ...) and check given ones."""
        return attrs

    # --- costs ------------------------------------------------------------------------------------
    def weights(self, attrs: Attrs, in_shapes: list[Shape]) -> tuple[Weight, ...]:
        """Every tensor the layer stores, in the order its torch module registers them."""
        return ()

    def params(self, attrs: Attrs, in_shapes: list[Shape]) -> int:
        """Trainable parameters: the sizes of the trained weights()."""
        if not self.stores_weights:
            return 0
        return sum(numel(w.shape) for w in self.weights(attrs, in_shapes) if w.trainable)

    def buffers(self, attrs: Attrs, in_shapes: list[Shape]) -> int:
        """Non-trainable state saved with the model (batch-norm running statistics): the other weights()."""
        if not self.stores_weights:
            return 0
        return sum(numel(w.shape) for w in self.weights(attrs, in_shapes) if not w.trainable)

    @abc.abstractmethod
    def macs(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> int:
        """Multiply-accumulates per image (see the module docstring); NoMacs declares none."""

    @abc.abstractmethod
    def other_ops(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> int:
        """Other operations per image, by the per-element formula in the op's docstring; Free declares none."""

    @abc.abstractmethod
    def window(self, attrs: Attrs, in_shapes: list[Shape]) -> Window | None:
        """The spatial window, for receptive fields; None where an output position is computed from the input
        position it sits at, or the output has no positions (NoWindow, SameShape declare that)."""

    @abc.abstractmethod
    def saved(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> Saved | None:
        """What autograd keeps of this layer for its backward pass (see Saved); None where that is not known (a layer
        without a formula). Checked against torch's saved_tensors_hooks by tests/test_op_registry.py."""

    def scratch(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> tuple[Kept, ...]:
        """What the layer holds beyond its inputs, weights and output at the peak of its own inference pass, torch on
        the CPU, freed when it returns (max pool's int64 indices, attention's weights); most layers hold nothing.
        Checked for every op against the live-storage tracker by tests/test_op_registry.py."""
        return ()

    def backward_scratch(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape,
                         precision: Precision = FLOAT32) -> tuple[Kept, ...]:
        """What its backward pass holds at its peak beyond what was alive when it began and the gradients it
        returns: the temporaries of a backward formula made of several ops (local response norm's, a connection
        table's), at the precision its input and weights have. Checked against the live-storage tracker, in float32
        and under autocast, by tests/test_op_registry.py, which lists the ops not modelled yet."""
        return ()

    def launches(self, attrs: Attrs) -> int:
        """The kernels its torch build runs for one call, each paying a call's fixed cost: one for every op but one
        that splits its work (partial_conv2d: a grouped convolution per run of maps seeing as many input maps)."""
        return 1

    def window_elements(self, attrs: Attrs, in_shapes: list[Shape]) -> int:
        """The input elements one output of a pooling op reads (its window's area; local response norm: its size):
        a CPU pool's time grows with it (analysis/latency.py)."""
        window = self.window(attrs, in_shapes)
        return window.kernel[0] * window.kernel[1] if window is not None else 1

    def widens_under_autocast(self, attrs: Attrs, device: str = "cpu") -> bool:
        """Whether its output is float32 under autocast on `device` ("cpu" or "cuda") from 2-byte inputs (its
        `widens`; pad and scalar_arith: by their arguments). Checked for every op, on the CPU and on fake CUDA
        tensors (torch's CUDA autocast runs on them without a GPU), by tests/test_op_registry.py."""
        return device in self.widens

    def small_launches(self, attrs: Attrs) -> int:
        """Small kernels its torch build runs besides (gathers, a concatenation), each paying a launch's fixed cost."""
        return 0

    def lane_groups(self, attrs: Attrs) -> int:
        """The groups a convolution's output channels are split into, each filling SIMD lanes apart: its groups."""
        return int(attrs.get("groups") or 1)

    def output_is_input(self, attrs: Attrs) -> bool:
        """Whether the output shares the input's storage: a view (returns_view), or an op that hands its input back
        as it is (dropout with p = 0: torch returns the input itself). Checked against torch for every example."""
        return self.returns_view

    def merges_positions(self, attrs: Attrs, in_shapes: list[Shape]) -> bool:
        """Whether each output sees every position of a C x H x W input (a flatten before a classifier): the
        receptive field then covers the whole map."""
        return False

    # --- explanation ------------------------------------------------------------------------------
    @abc.abstractmethod
    def explain(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> list[Step]:
        """The arithmetic of the output shape, params and MACs with the layer's own numbers."""

    def explain_other_ops(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> Step | None:
        return None

    # --- ONNX -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def write_onnx(self, e, node, inputs: list[str]) -> None:
        """Add to `e` the ONNX nodes computing what build_torch's module computes, reading the tensors `inputs` and
        writing node.name (archviz/onnx/export.py's emitter: add, constant, weight, function)."""

    # --- torch ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def build_torch(self, attrs: Attrs, in_shapes: list[Shape]):
        """The torch module computing this op (torch is imported inside: the formula path never needs it)."""

    def summary(self, attrs: Attrs) -> str:
        """Short hyper-parameter text for tables and diagrams, e.g. 'k3 s1 p1'."""
        return ""


# --- declarations an op chooses (never defaults: an op that chooses none of them fails at import) --------------------

class SameShape:
    """The output has the input's shape, each position computed from the input at the same position: no window."""

    def infer_shape(self, attrs: Attrs, in_shapes: list[Shape]) -> Shape:
        return in_shapes[0]

    def window(self, attrs: Attrs, in_shapes: list[Shape]) -> Window | None:
        return None

    def explain(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> list[Step]:
        return [Step("output shape", f"same as input {fmt_shape(in_shapes[0])}", fmt_shape(out_shape))]


class NoWindow:
    """No sliding window: each output position comes from the input position it sits at (an element-wise join), or
    the output has no spatial positions to trace back (flatten, linear)."""

    def window(self, attrs: Attrs, in_shapes: list[Shape]) -> Window | None:
        return None


class NoMacs:
    """No multiply-accumulates: nothing is multiplied by a weight and summed."""

    def macs(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 0


class Free(NoMacs):
    """Moves or passes data without computing: no MACs and no other ops."""

    def other_ops(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 0


class SavesNothing:
    """Its gradient reads none of its tensors (an add, a view, a concatenation): autograd keeps nothing of it."""

    def saved(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> Saved | None:
        return NOTHING_SAVED


class SavesInput:
    """Its gradient reads its input (a convolution's weight gradient, gelu's derivative at x)."""

    def saved(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> Saved | None:
        return INPUT_SAVED


class SavesOutput:
    """Its gradient reads its output (relu's mask, sigmoid's s(1 - s), softmax's y)."""

    def saved(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> Saved | None:
        return OUTPUT_SAVED


class SavesInputs:
    """Its gradient with respect to each input reads the others (a product: matmul, mul, div)."""

    def saved(self, attrs: Attrs, in_shapes: list[Shape], out_shape: Shape) -> Saved | None:
        return Saved(inputs=tuple(range(len(in_shapes))))


# --- shared helpers -------------------------------------------------------------------------------

def lazy_torch_classes(module: str, names: tuple[str, ...], build: Callable[[], dict[str, type]]):
    """A module-level __getattr__ serving the torch module classes `build` makes, made on the first request (so
    importing the registry never imports torch) and named as attributes of `module`, so models holding them pickle."""
    made: dict[str, type] = {}

    def __getattr__(name: str) -> type:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        if not made:
            for key, cls in build().items():
                cls.__module__, cls.__qualname__ = module, key
                made[key] = cls
        return made[name]

    return __getattr__


def numel(shape: Shape) -> int:
    return math.prod(shape)


def require_rank(op: Op, in_shape: Shape, rank: int, what: str) -> None:
    if len(in_shape) != rank:
        raise ShapeError(f"{op.name} needs a {what} input, got shape {fmt_shape(in_shape)}")


def pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def compact(value) -> str:
    """'3' for 3 or (3, 3), '1x3' for (1, 3), strings as they are."""
    if isinstance(value, str):
        return value
    a, b = pair(value)
    return str(a) if a == b else f"{a}x{b}"


@dataclass(frozen=True)
class SlidingAxis:
    """Output size of one axis of a sliding window: floor or ceil((in + 2p - d(k-1) - 1) / s) + 1."""

    size: int
    kernel: int
    stride: int
    padding: int
    dilation: int = 1
    ceil_mode: bool = False
    padding_after: int | None = None  # asymmetric padding ('same' with an even kernel)

    @property
    def extent(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    @property
    def padded(self) -> int:
        after = self.padding if self.padding_after is None else self.padding_after
        return self.size + self.padding + after

    @property
    def out(self) -> int:
        """torch's size (ATen pooling_output_shape); 0 when no window fits.

        With ceil_mode the last window may hang past the end of the input, even when the kernel is longer than the
        padded input (a 2x2/2 max pool on 1x1 gives 1x1), as long as it starts inside the input or its left padding.
        """
        span = self.padded - self.extent
        if not self.ceil_mode:
            return span // self.stride + 1 if span >= 0 else 0
        out = -(-span // self.stride) + 1  # ceil, for a negative span too
        if (out - 1) * self.stride >= self.size + self.padding:
            out -= 1
        return max(out, 0)

    def arithmetic(self) -> str:
        """The course's ([W - F + 2P] / S) + 1, with the numbers of this axis."""
        kernel = f"{self.extent}" if self.dilation == 1 else f"({self.dilation}*({self.kernel}-1)+1)"
        if self.padding_after is None or self.padding_after == self.padding:
            pad = f"2*{self.padding}"
        else:
            pad = f"{self.padding}+{self.padding_after}"
        numerator = f"{self.size} - {kernel} + {pad}"
        exact = (self.padded - self.extent) % self.stride == 0
        rounding = "" if exact else (" (rounded up: ceil_mode)" if self.ceil_mode else " (rounded down)")
        if self.stride == 1:
            return f"({numerator}) + 1 = {self.out}"
        return f"({numerator})/{self.stride} + 1 = {self.out}{rounding}"


AXES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}  # spatial axes' names, by count


def check_window_fits(op: Op, axes: list[SlidingAxis], in_shape: Shape) -> None:
    for axis_name, axis in zip(AXES[len(axes)], axes):
        if axis.out <= 0:
            raise ShapeError(
                f"kernel {axis.kernel}"
                + (f" (dilation {axis.dilation}, extent {axis.extent})" if axis.dilation > 1 else "")
                + f" is larger than its {fmt_shape(in_shape[1:])} input"
                f" (padding {axis.padding}) along the {axis_name}"
            )
