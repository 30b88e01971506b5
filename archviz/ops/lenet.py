"""The two layers of LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 86(11), section II.B) that no other op states: a convolution whose output maps each see only
some input maps (C3, Table I), and the Euclidean radial basis function units of its output layer.

S2 and S4, the trainable subsampling layers (the four inputs of a unit added, times a trainable coefficient, plus a
trainable bias, per map), need no op of their own: avgpool2d, mul_param and add_param say the same (specs/lenet5_1998.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass

from archviz.errors import ShapeError
from archviz.ops.base import (
    EVERYWHERE, FLOAT32, LOWER_PRECISION_BYTES, Arg, ArgKind, Example, Kept, NoWindow, Op, OpKind, Saved, SlidingAxis,
    Step, TorchinfoMacs, Weight, Window, check_window_fits, fmt_int, fmt_shape, lazy_torch_classes, numel, pair,
    require_rank,
)
from archviz.ops.interop import Mapped, NotRepresentable, TorchCalls
from archviz.ops.registry import register

_MODULES = ("ConnectionTableConv2d", "EuclideanRBF")


def _connections_module(m, refs):
    return Mapped("partial_conv2d", {"connections": [list(maps) for maps in m.connections],
                                     "kernel_size": m.kernel_size, "in_channels": m.in_channels}, refs)


@dataclass(frozen=True)
class MapRun:
    """Consecutive output maps that see the same number of input maps: one grouped convolution computes them, each
    map a group, from the input maps they see gathered map after map; their kernels are consecutive rows of the
    packed weight, their biases consecutive entries, so both are slices."""

    first: int  # the first output map (and its bias's entry)
    maps: int  # how many
    size: int  # input maps each sees
    inputs: tuple[int, ...]  # the input maps gathered, map after map
    row: int  # the first kernel's row in the packed weight


def map_runs(connections) -> tuple[MapRun, ...]:
    """The table cut where the number of input maps changes (LeNet-5's C3: 6 maps of 3, 9 of 4, 1 of 6)."""
    runs, row, first = [], 0, 0
    for j in range(1, len(connections) + 1):
        if j == len(connections) or len(connections[j]) != len(connections[first]):
            inputs = tuple(i for maps in connections[first:j] for i in maps)
            runs.append(MapRun(first, j - first, len(connections[first]), inputs, row))
            row, first = row + len(inputs), j
    return tuple(runs)


def dense_index(connections, in_channels: int) -> list[list[int]]:
    """(out, in): 0 where output map j does not see input map i, else 1 + the row of the packed weight holding that
    kernel (rows in table order): the ONNX function gathers the dense weight by it from [zeros, packed weight]."""
    index, row = [[0] * in_channels for _ in connections], 1
    for j, maps in enumerate(connections):
        for i in maps:
            index[j][i], row = row, row + 1
    return index


def _read_connections(r):
    """The function archviz writes: the table read back from its dense index (rows in table order)."""
    index = r.constant(4)
    if not isinstance(index, list) or not all(isinstance(row, list) for row in index):
        raise NotRepresentable("its connection index is not a stored (out, in) table")
    connections = [[i for i, k in enumerate(row) if k] for row in index]
    if dense_index(connections, len(index[0])) != index:
        raise NotRepresentable("its connection index does not number the kernels in table order")
    packed = r.stored_shape(1, "weight")
    return r.layer("partial_conv2d", {"connections": connections, "kernel_size": tuple(packed[1:])},
                   stored=r.stored())


class _BytesHeld:
    """Bytes alive, per sample and once per pass, and the most at any moment (compared per sample first)."""

    def __init__(self):
        self.now = self.peak = (0, 0)

    def make(self, per_sample: int, once: int = 0) -> None:
        self.now = (self.now[0] + per_sample, self.now[1] + once)
        self.peak = max(self.peak, self.now)

    def free(self, per_sample: int, once: int = 0) -> None:
        self.now = (self.now[0] - per_sample, self.now[1] - once)

    def scatter(self, whole: int, whole_once: int, part: int, part_once: int, into_earlier: bool) -> None:
        """A part's gradient scattered into a zeroed tensor of the whole's size (made next to the zeros, which are
        then freed with the part), then, after an earlier one, added into that into a new tensor."""
        self.make(whole, whole_once)
        if whole:  # index_add: out of place, beside its zeros
            self.make(whole, whole_once)
            self.free(whole, whole_once)
        self.free(part, part_once)
        if into_earlier:
            self.make(whole, whole_once)
            self.free(2 * whole, 2 * whole_once)


@register
class PartialConv2d(Op):
    """2-D convolution in which output map j sees only the input maps connections[j] lists (LeNet-5's C3: "each unit
    in each feature map is connected to several 5x5 neighborhoods at identical locations in a subset of S2's feature
    maps", LeCun et al. 1998, Table I). Stride 1, no padding, one bias per output map, as C3 has.

    out = (W - F) + 1 per axis (the course's ([W-F+2P]/S)+1 with P = 0, S = 1).
    params = F_h * F_w * (sum over j of |connections[j]|) + C_out: one kernel per connection, one bias per map
    (C3: 25 * 60 + 16 = 1,516). A dense convolution whose weight is masked by the table has the same figures when its
    masked-out weights are not counted.
    MACs = H_out * W_out * F_h * F_w * (sum over j of |connections[j]|); the bias is not a MAC. The paper's
    "connections" (C3: 151,600) count the bias too: (params) * H_out * W_out.
    Other ops: one bias add per output element.
    """

    autocasts = True  # its convolutions run in the lower precision under torch.autocast

    name = "partial_conv2d"
    aliases = ("conv2d_table", "connection_table_conv2d")
    kind = OpKind.CONV
    torch_class = "archviz ConnectionTableConv2d"
    draws_kernels = False  # its weight is one kernel per connection, not (out, in/groups, kh, kw)
    torchinfo_macs = TorchinfoMacs.CONV  # torchinfo: (weights + bias) x output positions, the paper's "connections"
    examples = (Example({"connections": [[0, 1], [1, 2], [0, 2], [0, 1, 2]], "kernel_size": 3}, ((3, 7, 6),)),
                Example({"connections": [[1], [0, 1]], "kernel_size": [2, 3]}, ((2, 5, 5),)),
                # one run; and two whose first differentiated holds the most
                Example({"connections": [[0, 1, 2, 3]], "kernel_size": 3}, ((4, 6, 6),)),
                Example({"connections": [[0], [0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]],
                         "kernel_size": 3}, ((4, 6, 6),)),
                Example({"connections": [[0], [1], [0, 1, 2], [1, 2, 3], [0, 2, 3]], "kernel_size": 3}, ((4, 6, 6),)))
    torch_calls = TorchCalls(modules={"archviz.ops.lenet.ConnectionTableConv2d": _connections_module})
    onnx_reads = {"archviz::PartialConv2d": _read_connections}  # the function archviz writes
    args = (
        Arg("connections", ArgKind.CONNECTIONS, aliases=("table",),
            doc="for each output map, the input maps it sees, e.g. [[0, 1, 2], [1, 2, 3]]"),
        Arg("kernel_size", ArgKind.PAIR, aliases=("kernel", "k"), doc="filter size: int or [h, w]"),
        Arg("in_channels", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )

    def resolve(self, attrs, in_shapes):
        require_rank(self, in_shapes[0], 3, "C x H x W")
        channels = in_shapes[0][0]
        if attrs["in_channels"] is not None and attrs["in_channels"] != channels:
            raise ShapeError(f"in_channels is {attrs['in_channels']} but the input has {channels} channels")
        for j, maps in enumerate(attrs["connections"]):
            if max(maps) >= channels:
                raise ShapeError(f"connections[{j}] names input map {max(maps)}, but the input has {channels} maps "
                                 f"(0 to {channels - 1})")
        return {**attrs, "in_channels": channels}

    def connection_count(self, attrs) -> int:
        return sum(len(maps) for maps in attrs["connections"])

    def axes(self, attrs, in_shape) -> list[SlidingAxis]:
        return [SlidingAxis(size, kernel, 1, 0) for size, kernel in zip(in_shape[1:], pair(attrs["kernel_size"]))]

    def infer_shape(self, attrs, in_shapes):
        axes = self.axes(attrs, in_shapes[0])
        check_window_fits(self, axes, in_shapes[0])
        return (len(attrs["connections"]), *(axis.out for axis in axes))

    def weights(self, attrs, in_shapes):
        kh, kw = pair(attrs["kernel_size"])
        fan_in = kh * kw * min(len(maps) for maps in attrs["connections"])
        return (Weight("weight", (self.connection_count(attrs), kh, kw), fan_in=fan_in),
                Weight("bias", (len(attrs["connections"]),), fan_in=fan_in))

    def params(self, attrs, in_shapes):
        kh, kw = pair(attrs["kernel_size"])
        return kh * kw * self.connection_count(attrs) + len(attrs["connections"])

    def macs(self, attrs, in_shapes, out_shape):
        kh, kw = pair(attrs["kernel_size"])
        return out_shape[1] * out_shape[2] * kh * kw * self.connection_count(attrs)

    def other_ops(self, attrs, in_shapes, out_shape):
        return numel(out_shape)

    def window(self, attrs, in_shapes):
        return Window(pair(attrs["kernel_size"]), (1, 1), (0, 0))

    def saved(self, attrs, in_shapes, out_shape):
        """Per run of maps (map_runs), the input maps it sees, gathered (its convolution's input), and the int64
        index that gathered them (the gather's backward scatters by it)."""
        positions = numel(in_shapes[0][1:])
        runs = map_runs(attrs["connections"])
        made = [Kept(len(run.inputs) * positions) for run in runs]
        made += [Kept(len(run.inputs), per_sample=False, itemsize=8) for run in runs]
        return Saved(made=tuple(made))

    def scratch(self, attrs, in_shapes, out_shape):
        """The most held at once beyond the output: runs of maps are computed one by one, each from its input maps
        gathered, and kept until they are concatenated (the concatenation holds them and the output together)."""
        per_map, positions = numel(out_shape[1:]), numel(in_shapes[0][1:])
        runs = map_runs(attrs["connections"])
        while_computing = max(run.first * per_map + len(run.inputs) * positions + run.maps * per_map for run in runs)
        joined = 2 * numel(out_shape) if len(runs) > 1 else numel(out_shape)
        return (Kept(max(while_computing, joined) - numel(out_shape)),)

    def backward_scratch(self, attrs, in_shapes, out_shape, precision=FLOAT32):
        """Followed tensor by tensor (torch's autograd, read from the live-storage tracker): runs are differentiated
        last first. A run's convolution makes the gradients of its gathered maps, kernels and biases (under autocast
        in 2 bytes, then copied back), and frees the maps it kept; the biases' and kernels' are scattered into
        gradients of the whole bias and weight, and the maps' into a zeroed tensor of the input's size, next to it;
        a run after the first adds each into the earlier runs'. The most held at once beyond the gradients returned
        (the input's, the weight's and the bias's, which the last additions make): in bytes."""
        gathered_per_map, input_maps = numel(in_shapes[0][1:]), numel(in_shapes[0])
        kernel = numel(pair(attrs["kernel_size"]))
        weights, biases = kernel * self.connection_count(attrs), len(attrs["connections"])
        a, w = precision.input_itemsize, precision.weight_itemsize
        lowered = LOWER_PRECISION_BYTES if precision.autocast else None
        bytes_held = _BytesHeld()
        for position, run in enumerate(reversed(map_runs(attrs["connections"]))):
            gathered, kernels, later = len(run.inputs) * gathered_per_map, len(run.inputs) * kernel, position > 0
            bytes_held.make((lowered or a) * gathered, (lowered or w) * (kernels + run.maps))
            bytes_held.free((lowered or a) * gathered, (lowered or 0) * kernels)  # the maps and kernels it kept
            if lowered and lowered != a:
                bytes_held.make(a * gathered)
                bytes_held.free(lowered * gathered)
            if lowered:
                bytes_held.make(0, w * kernels)
                bytes_held.free(0, lowered * kernels)
                bytes_held.make(0, w * run.maps)
                bytes_held.free(0, lowered * run.maps)
            bytes_held.scatter(0, w * biases, 0, w * run.maps, later)
            bytes_held.scatter(a * input_maps, 0, a * gathered, 0, later)
            bytes_held.scatter(0, w * weights, 0, w * kernels, later)
        per_sample, once = bytes_held.peak
        return (Kept(per_sample - a * input_maps, itemsize=1),  # in bytes
                Kept(once - w * (weights + biases), per_sample=False, itemsize=1))

    def explain(self, attrs, in_shapes, out_shape):
        axes = self.axes(attrs, in_shapes[0])
        kh, kw = pair(attrs["kernel_size"])
        counts = [len(maps) for maps in attrs["connections"]]
        sizes = " + ".join(f"{n}x{counts.count(n)}" for n in sorted(set(counts)))
        total = self.connection_count(attrs)
        c_out = len(counts)
        return [
            Step("output height", axes[0].arithmetic(), axes[0].out),
            Step("output width", axes[1].arithmetic(), axes[1].out),
            Step("output shape", f"{c_out} maps x {axes[0].out} x {axes[1].out}", fmt_shape(out_shape)),
            Step("connections", f"input maps seen per output map: {sizes} (maps seen x how many maps)", total),
            Step("params", f"{kh}*{kw}*{total} + {c_out} (one {kh}x{kw} kernel per connection, one bias per map)",
                 fmt_int(self.params(attrs, in_shapes))),
            Step("MACs", f"{out_shape[1]}*{out_shape[2]} positions x {kh}*{kw}*{total}",
                 fmt_int(self.macs(attrs, in_shapes, out_shape))),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        return Step("other ops", f"one bias add per output: {fmt_shape(out_shape)}", fmt_int(numel(out_shape)))

    def summary(self, attrs):
        kh, kw = pair(attrs["kernel_size"])
        return f"{len(attrs['connections'])} {kh}x{kw} table ({self.connection_count(attrs)} connections)"

    def write_onnx(self, e, node, x):
        """The dense (out, in, kh, kw) weight gathered from [zeros, packed weight] by the table's index, then one
        Conv, in the function archviz.PartialConv2d."""
        a, path = node.attrs, node.name
        kh, kw = pair(a["kernel_size"])
        e.function("PartialConv2d", ["X", "W", "B", "Z", "I"], ["Y"], [
            ("Concat", ["Z", "W"], ["P"], {"axis": 0}),
            ("Gather", ["P", "I"], ["D"], {"axis": 0}),
            ("Conv", ["X", "D", "B"], ["Y"]),
        ], doc="a convolution whose output map j sees the input maps the index's row j numbers (LeNet-5's C3)")
        zeros = [[[0.0] * kw for _ in range(kh)]]
        e.add("PartialConv2d", [x[0], e.weight(node, "weight"), e.weight(node, "bias"),
                                e.constant(f"{path}/zeros", zeros),
                                e.constant(f"{path}/index", dense_index(a["connections"], a["in_channels"]), "int64")],
              path, path, domain=e.domain)

    def launches(self, attrs):
        """One grouped convolution per run of maps (ConnectionTableConv2d.forward)."""
        return len(map_runs(attrs["connections"]))

    def small_launches(self, attrs):
        """A gather of the input maps per run, and the concatenation of the runs' outputs when there are several."""
        runs = len(map_runs(attrs["connections"]))
        return runs + (runs > 1)

    def lane_groups(self, attrs):
        """Every output map is a group of its own: one output channel per group fills one SIMD lane."""
        return len(attrs["connections"])

    def build_torch(self, attrs, in_shapes):
        return __getattr__("ConnectionTableConv2d")(attrs["in_channels"], attrs["connections"],
                                                     pair(attrs["kernel_size"]))


@register
class EuclideanRBFUnits(NoWindow, Op):
    """Euclidean radial basis function units (LeNet-5's output layer, LeCun et al. 1998, eq. 7): unit i outputs
    y_i = sum_j (x_j - w_ij)^2, the squared distance of the input from its parameter vector.

    params = in_features * out_features (LeNet-5: 84 * 10 = 840; no bias).
    MACs = in_features * out_features: computed as |x|^2 - 2 x.w_i + |w_i|^2, the dot products are the MACs.
    Other ops: per sample, in_features squares and sums for |x|^2, and per unit 2 (the doubling and the two adds);
    |w_i|^2 depends on the weights alone.
    """

    name = "rbf"
    widens = EVERYWHERE  # its float32 centres promote a 2-byte input
    aliases = ("euclidean_rbf",)
    kind = OpKind.LINEAR
    torch_class = "archviz EuclideanRBF"
    examples = (Example({"out_features": 4}, ((6,),)), Example({"out_features": 10}, ((84,),)))
    torch_calls = TorchCalls(modules={"archviz.ops.lenet.EuclideanRBF": lambda m, refs: Mapped(
        "rbf", {"out_features": m.out_features, "in_features": m.in_features}, refs)})
    onnx_reads = {"archviz::EuclideanRBF": lambda r: r.layer(
        "rbf", {"out_features": r.stored_shape(1, "weight")[0]}, stored=r.stored())}
    args = (
        Arg("out_features", ArgKind.INT, aliases=("units", "out")),
        Arg("in_features", ArgKind.INT, None, doc="inferred from the input; checked when given"),
    )

    def resolve(self, attrs, in_shapes):
        require_rank(self, in_shapes[0], 1, "vector (F)")
        features = in_shapes[0][0]
        if attrs["in_features"] is not None and attrs["in_features"] != features:
            raise ShapeError(f"in_features is {attrs['in_features']} but the input has {features} features")
        return {**attrs, "in_features": features}

    def infer_shape(self, attrs, in_shapes):
        return (attrs["out_features"],)

    def weights(self, attrs, in_shapes):
        return (Weight("weight", (attrs["out_features"], attrs["in_features"]), fan_in=attrs["in_features"]),)

    def macs(self, attrs, in_shapes, out_shape):
        return attrs["in_features"] * attrs["out_features"]

    def other_ops(self, attrs, in_shapes, out_shape):
        return 2 * attrs["in_features"] + 2 * attrs["out_features"]

    def saved(self, attrs, in_shapes, out_shape):
        """The input (for |x|^2's and the product's gradients)."""
        return Saved(inputs=(0,))

    def scratch(self, attrs, in_shapes, out_shape):
        """The products x.w_i per sample, and per pass the squared weights and their sums |w_i|^2."""
        n, m = attrs["in_features"], attrs["out_features"]
        return (Kept(m), Kept(n * m + m, per_sample=False))

    def small_launches(self, attrs):
        """Besides the product x.w_i: |x|^2 (square, sum), 2 x.w_i, the difference, |w_i|^2 (square, sum), the sum."""
        return 7

    def explain(self, attrs, in_shapes, out_shape):
        n, m = attrs["in_features"], attrs["out_features"]
        return [
            Step("output shape", f"{m} units, each the squared distance of the {n} inputs from its centre",
                 fmt_shape(out_shape)),
            Step("params", f"{n}*{m} (one centre of {n} per unit, no bias)", fmt_int(n * m)),
            Step("MACs", f"{n}*{m}: the dot products x.w_i in |x|^2 - 2 x.w_i + |w_i|^2", fmt_int(n * m)),
        ]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        n, m = attrs["in_features"], attrs["out_features"]
        return Step("other ops", f"2*{n} (|x|^2) + 2*{m} (doubling, adding)", fmt_int(2 * n + 2 * m))

    def summary(self, attrs):
        return f"{attrs['out_features']} RBF units"

    def write_onnx(self, e, node, x):
        e.function("EuclideanRBF", ["X", "W", "last"], ["Y"], [
            ("Mul", ["X", "X"], ["XX"]),
            ("ReduceSum", ["XX", "last"], ["xx"], {"keepdims": 1}),
            ("Mul", ["W", "W"], ["WW"]),
            ("ReduceSum", ["WW", "last"], ["ww"], {"keepdims": 0}),
            ("Transpose", ["W"], ["WT"], {"perm": [1, 0]}),
            ("MatMul", ["X", "WT"], ["XW"]),
            ("Add", ["XW", "XW"], ["XW2"]),
            ("Sub", ["xx", "XW2"], ["D"]),
            ("Add", ["D", "ww"], ["Y"]),
        ], doc="Euclidean RBF units: |x|^2 - 2 x.w_i + |w_i|^2, the squared distance from each unit's centre")
        e.add("EuclideanRBF", [x[0], e.weight(node, "weight"), e.constant(f"{node.name}/last", [-1], "int64")],
              node.name, node.name, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        return __getattr__("EuclideanRBF")(attrs["in_features"], attrs["out_features"])


def _torch_modules() -> dict[str, type]:
    import math

    import torch
    from torch import nn
    from torch.nn import functional

    class ConnectionTableConv2d(nn.Module):
        """A convolution whose output map j sees the input maps connections[j] (LeNet-5's C3): one kernel per
        connection, packed in table order in `weight` (connections, kh, kw), and one bias per output map. Computed
        as one grouped convolution per run of maps seeing as many input maps (map_runs), not one per map."""

        def __init__(self, in_channels, connections, kernel_size):
            super().__init__()
            self.in_channels, self.kernel_size = in_channels, tuple(kernel_size)
            self.connections = tuple(tuple(maps) for maps in connections)
            self.runs = map_runs(self.connections)
            count = sum(len(maps) for maps in self.connections)
            self.weight = nn.Parameter(torch.empty(count, *self.kernel_size))
            self.bias = nn.Parameter(torch.empty(len(self.connections)))
            bound = 1 / math.sqrt(min(len(maps) for maps in self.connections) * math.prod(self.kernel_size))
            nn.init.uniform_(self.weight, -bound, bound)
            nn.init.uniform_(self.bias, -bound, bound)
            # the gathers' indices, made once per device: not buffers, which a state dict and a count of the
            # model's weights would hold
            self._indices = {torch.device("cpu"): [torch.tensor(run.inputs) for run in self.runs]}

        def forward(self, x):
            indices = self._indices_on(x.device)
            outputs = [self._run(x, run, index) for run, index in zip(self.runs, indices)]
            return torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]

        def _run(self, x, run, index):
            """One run's maps (a function, so the gathered input is freed when it returns)."""
            kernels = self.weight[run.row:run.row + run.maps * run.size].view(run.maps, run.size, *self.kernel_size)
            return functional.conv2d(x.index_select(1, index), kernels, self.bias[run.first:run.first + run.maps],
                                     groups=run.maps)

        def _indices_on(self, device):
            if device not in self._indices:
                self._indices[device] = [index.to(device) for index in self._indices[torch.device("cpu")]]
            return self._indices[device]

    class EuclideanRBF(nn.Module):
        """y_i = |x - w_i|^2, computed as |x|^2 - 2 x.w_i + |w_i|^2 (LeNet-5's output units)."""

        def __init__(self, in_features, out_features):
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.weight = nn.Parameter(torch.empty(out_features, in_features))
            nn.init.uniform_(self.weight, -1 / math.sqrt(in_features), 1 / math.sqrt(in_features))

        def forward(self, x):
            products = x @ self.weight.t()
            return (x * x).sum(-1, keepdim=True) - (products + products) + (self.weight * self.weight).sum(-1)

    return {"ConnectionTableConv2d": ConnectionTableConv2d, "EuclideanRBF": EuclideanRBF}


__getattr__ = lazy_torch_classes(__name__, _MODULES, _torch_modules)  # made on first use, pickled by name
