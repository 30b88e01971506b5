"""export_onnx(): a Graph written as an ONNX file, for Netron and ONNX runtimes, with onnx.helper alone (no torch).

Every layer becomes the ONNX nodes computing what its torch module computes (archviz/torch_build.py), named by its
layer path, its output tensor named by the path too, and its weights stored under to_torch's state-dict keys
("layer1.0.conv1.weight"), so a state dict loads by name and read_onnx() reads the file back into the same layers.
Weights are torch's random initialisation (seeded), a checkpoint's tensors, or, with as_inputs, graph inputs: then
the file holds only the architecture (kilobytes, for Netron), and a runtime must be given the weights.

Most ops map to one ONNX op (opset 20: Gelu's first). The others: linear on more than one dim is MatMul with the
weight transposed, plus an Add of the bias; relu6 is Clip(0, 6); silu is x * Sigmoid(x); hardswish is
x * HardSigmoid(x) with torch's alpha 1/6; adaptive_avgpool2d is a model-local function, archviz.AdaptiveAvgPool2d,
computing torch's windows exactly as two matrix products (rows @ X @ cols) for any sizes. An opaque layer has no
formula, so there is nothing to write: export refuses it, naming the layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from archviz.errors import ArchvizError, UnsupportedOpError
from archviz.graph.ir import INPUT, Graph, Node
from archviz.ops import get_op, has_formula
from archviz.ops.base import pair
from archviz.ops.conv import conv_axes
from archviz.onnx.convert import ARCHVIZ_DOMAIN
from archviz.onnx.read import import_onnx
from archviz.onnx.weights import WeightSpec, byte_count, checkpoint_values, graph_weights, initial_values
from archviz.output import write_atomic

OPSET = 20  # Gelu's first opset; onnxruntime runs it from 1.17 (2024)
IR_VERSION = 9  # the IR of opset 20 (onnx 1.15): runtimes older than the installed onnx package still read it
MAX_FILE_BYTES = 2**31 - 2**24  # protobuf cannot write a message of 2 GiB or more; leave room for the graph
INPUT_NAME = "input"
BATCH = "batch"  # the symbolic batch dim of every tensor


def export_onnx(graph: Graph, path: str | Path, *, checkpoint: str | Path | None = None, as_inputs: bool = False,
                seed: int = 0) -> Path:
    """Write graph to path as an ONNX file (through a temporary file: nothing half-written) and return the path.

    The weights are torch's random initialisation drawn with `seed`, the tensors of a PyTorch state dict
    (`checkpoint`), or, with as_inputs, graph inputs (no data: a small file).

    >>> import tempfile, archviz
    >>> path = export_onnx(archviz.load("lenet"), tempfile.mkdtemp() + "/lenet.onnx")
    >>> archviz.inspect(archviz.onnx.read_onnx(path)).totals.params
    61706
    """
    onnx = import_onnx()
    if checkpoint is not None and as_inputs:
        raise ArchvizError("give a checkpoint (--weights) or --no-weights, not both")
    model = to_onnx(graph, as_inputs=True)
    onnx.checker.check_model(model)  # before the weights go in: checking copies the whole model
    if not as_inputs:
        specs = graph_weights(graph)
        values = checkpoint_values(specs, checkpoint) if checkpoint is not None else initial_values(specs, seed=seed)
        _store_weights(model, specs, values)
    data = model.SerializeToString()
    del model
    return write_atomic(path, data)


def to_onnx(graph: Graph, *, as_inputs: bool = False, seed: int = 0):
    """The graph as an onnx.ModelProto (see the module docstring for the mapping), with torch's random initial
    weights drawn with `seed`, or with as_inputs the weights as graph inputs."""
    import_onnx()
    from onnx import TensorProto, helper

    for node in graph.nodes:
        if not has_formula(node.op):
            raise UnsupportedOpError(f"{node.attrs['target']} has no formula in archviz, so `archviz export` cannot "
                                     "write what it computes to ONNX", layer=node.name)
    specs = graph_weights(graph)
    if not as_inputs and byte_count(specs) > MAX_FILE_BYTES:
        raise ArchvizError(f"{graph.name}: its weights take {byte_count(specs):,} bytes, more than one ONNX file can "
                           "hold (2 GiB); export with --no-weights")
    emitter = _Emitter(graph)
    for node in graph.nodes:
        emit = _EMITTERS.get(node.op)
        if emit is None:
            raise UnsupportedOpError(f"archviz cannot write {node.op} to ONNX yet", layer=node.name)
        emit(emitter, node, [INPUT_NAME if name == INPUT else name for name in node.inputs])
    batch = lambda shape: [BATCH, *shape]  # noqa: E731
    output = graph.by_name[graph.output]
    onnx_graph = helper.make_graph(
        emitter.nodes, graph.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, batch(graph.input_shape)),
         *(helper.make_tensor_value_info(s.key, TensorProto.FLOAT, s.shape) for s in specs)],
        [helper.make_tensor_value_info(output.name, TensorProto.FLOAT, batch(output.out_shape))],
        doc_string=graph.description,
        value_info=[helper.make_tensor_value_info(n.name, TensorProto.FLOAT, batch(n.out_shape))
                    for n in graph.nodes if n.name != output.name],
    )
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid(ARCHVIZ_DOMAIN, 1)] if emitter.functions else [])
    model = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="archviz",
                              producer_version=_version(), functions=list(emitter.functions.values()),
                              doc_string=graph.description)
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"archviz.model": graph.name})
    if not as_inputs:
        _store_weights(model, specs, initial_values(specs, seed=seed))
    return model


def _store_weights(model, specs: list[WeightSpec], values: Iterator[tuple[str, np.ndarray]]) -> None:
    """Turn the weights' graph inputs into initializers holding values, one tensor at a time."""
    from onnx import numpy_helper

    keys = {spec.key for spec in specs}
    inputs = [info for info in model.graph.input if info.name not in keys]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for key, value in values:
        model.graph.initializer.append(numpy_helper.from_array(value, key))


class _Emitter:
    """Collects the ONNX nodes of the layers, in graph order, and the functions they call."""

    def __init__(self, graph: Graph):
        from onnx import helper

        self.helper = helper
        self.graph = graph
        self.nodes: list = []
        self.functions: dict[str, object] = {}

    def add(self, op_type: str, inputs: list[str], output: str, name: str, *, domain: str = "",
            unused: tuple[str, ...] = (), **attrs) -> str:
        """Add a node computing output (and outputs ONNX requires that nothing reads: `unused`)."""
        self.nodes.append(self.helper.make_node(op_type, inputs, [output, *unused], name=name, domain=domain, **attrs))
        return output

    def constant(self, name: str, value) -> str:
        """A Constant node holding value (not a weight: read_onnx counts no params for it)."""
        from onnx import numpy_helper

        self.nodes.append(self.helper.make_node("Constant", [], [name], name=name,
                                                value=numpy_helper.from_array(np.asarray(value), name)))
        return name

    def weight(self, node: Node, suffix: str) -> str:
        """The stored tensor's name: the state-dict key of this layer, or of the layer whose weights it shares."""
        return f"{node.shares or node.name}.{suffix}"


Emit = Callable[[_Emitter, Node, list[str]], None]


def _conv(e: _Emitter, node: Node, x: list[str]) -> None:
    a = node.attrs
    axes = conv_axes(a, node.in_shapes[0])
    after = [ax.padding if ax.padding_after is None else ax.padding_after for ax in axes]
    inputs = [x[0], e.weight(node, "weight")] + ([e.weight(node, "bias")] if a["bias"] else [])
    e.add("Conv", inputs, node.name, node.name, kernel_shape=list(pair(a["kernel_size"])),
          strides=list(pair(a["stride"])), dilations=list(pair(a["dilation"])), group=a["groups"],
          pads=[axes[0].padding, axes[1].padding, *after])


def _linear(e: _Emitter, node: Node, x: list[str]) -> None:
    a, path = node.attrs, node.name
    if len(node.in_shapes[0]) == 1:  # (N, F): one Gemm, the weight as torch stores it (out, in)
        inputs = [x[0], e.weight(node, "weight")] + ([e.weight(node, "bias")] if a["bias"] else [])
        e.add("Gemm", inputs, path, path, transB=1)
        return
    transposed = e.add("Transpose", [e.weight(node, "weight")], f"{path}/weight_t", f"{path}/Transpose", perm=[1, 0])
    product = e.add("MatMul", [x[0], transposed], f"{path}/matmul" if a["bias"] else path, path)
    if a["bias"]:
        e.add("Add", [product, e.weight(node, "bias")], path, f"{path}/bias")


def _batchnorm(e: _Emitter, node: Node, x: list[str]) -> None:
    a, path, channels = node.attrs, node.name, node.attrs["num_features"]
    if a["affine"]:
        scale, shift = e.weight(node, "weight"), e.weight(node, "bias")
    else:
        scale = e.constant(f"{path}/scale", np.ones(channels, np.float32))
        shift = e.constant(f"{path}/shift", np.zeros(channels, np.float32))
    options = {"epsilon": a["eps"], "momentum": 1 - a["momentum"]}
    if a["track_running_stats"]:
        mean, var = e.weight(node, "running_mean"), e.weight(node, "running_var")
    else:  # torch normalises with the batch's own statistics: ONNX's training mode, which must output the new stats
        mean = e.constant(f"{path}/mean", np.zeros(channels, np.float32))
        var = e.constant(f"{path}/var", np.ones(channels, np.float32))
        options.update(training_mode=1, unused=(f"{path}/running_mean", f"{path}/running_var"))
    e.add("BatchNormalization", [x[0], scale, shift, mean, var], path, path, **options)


def _pool(op_type: str) -> Emit:
    def emit(e: _Emitter, node: Node, x: list[str]) -> None:
        a = node.attrs
        axes = get_op(node.op).axes(a, node.in_shapes[0])
        options = {"kernel_shape": list(pair(a["kernel_size"])), "strides": list(pair(a["stride"])),
                   "pads": [ax.padding for ax in axes] * 2, "ceil_mode": int(a["ceil_mode"])}
        if op_type == "MaxPool":
            options["dilations"] = list(pair(a["dilation"]))
        else:
            options["count_include_pad"] = int(a["count_include_pad"])
        e.add(op_type, x[:1], node.name, node.name, **options)

    return emit


def _adaptive_avgpool(e: _Emitter, node: Node, x: list[str]) -> None:
    """torch's adaptive windows as matrices: rows (out_h x H) and cols (W x out_w) of 1/window-length entries."""
    (height, width), target = node.in_shapes[0][1:], get_op(node.op).target(node.attrs, node.in_shapes[0])
    rows = _window_matrix(height, target[0])
    cols = _window_matrix(width, target[1]).T
    if "AdaptiveAvgPool2d" not in e.functions:
        e.functions["AdaptiveAvgPool2d"] = _adaptive_function(e.helper)
    e.add("AdaptiveAvgPool2d", [x[0], e.constant(f"{node.name}/rows", rows), e.constant(f"{node.name}/cols", cols)],
          node.name, node.name, domain=ARCHVIZ_DOMAIN)


def _window_matrix(size: int, out: int) -> np.ndarray:
    """Row i averages window i of torch's adaptive pooling: [floor(i*size/out), ceil((i+1)*size/out))."""
    matrix = np.zeros((out, size), np.float32)
    for i in range(out):
        start, stop = i * size // out, -(-(i + 1) * size // out)
        matrix[i, start:stop] = 1 / (stop - start)
    return matrix


def _adaptive_function(helper):
    return helper.make_function(
        ARCHVIZ_DOMAIN, "AdaptiveAvgPool2d", ["X", "rows", "cols"], ["Y"],
        [helper.make_node("MatMul", ["rows", "X"], ["T"]), helper.make_node("MatMul", ["T", "cols"], ["Y"])],
        [helper.make_opsetid("", OPSET)],
        doc_string="torch.nn.AdaptiveAvgPool2d: Y = rows @ X @ cols, each row of `rows` (column of `cols`) averaging "
                   "one of torch's windows along the height (width)",
    )


def _global_avgpool(e: _Emitter, node: Node, x: list[str]) -> None:
    if node.attrs.get("keepdim", True):
        e.add("GlobalAveragePool", x[:1], node.name, node.name)
        return
    axes = e.constant(f"{node.name}/axes", np.array([2, 3], np.int64))
    e.add("ReduceMean", [x[0], axes], node.name, node.name, keepdims=0)


def _flatten(e: _Emitter, node: Node, x: list[str]) -> None:
    first, stop = get_op("flatten").span(node.attrs, node.in_shapes[0])
    if first == 0 and stop == len(node.in_shapes[0]):
        e.add("Flatten", x[:1], node.name, node.name, axis=1)
    else:
        _reshape_to(e, node, x, node.out_shape)


def _reshape_to(e: _Emitter, node: Node, x: list[str], shape) -> None:
    target = e.constant(f"{node.name}/shape", np.array([0, *shape], np.int64))  # 0: keep the batch dim
    e.add("Reshape", [x[0], target], node.name, node.name)


def _simple(op_type: str, options: Callable[[Mapping], dict] = lambda attrs: {}) -> Emit:
    def emit(e: _Emitter, node: Node, x: list[str]) -> None:
        e.add(op_type, x, node.name, node.name, **options(node.attrs))

    return emit


def _gated(gate: str, **options) -> Emit:
    """x * gate(x): silu with Sigmoid, hardswish with HardSigmoid."""

    def emit(e: _Emitter, node: Node, x: list[str]) -> None:
        gated = e.add(gate, x[:1], f"{node.name}/{gate.lower()}", node.name, **options)
        e.add("Mul", [x[0], gated], node.name, f"{node.name}/Mul")

    return emit


def _relu6(e: _Emitter, node: Node, x: list[str]) -> None:
    low = e.constant(f"{node.name}/min", np.array(0, np.float32))
    high = e.constant(f"{node.name}/max", np.array(6, np.float32))
    e.add("Clip", [x[0], low, high], node.name, node.name)


def _dropout(e: _Emitter, node: Node, x: list[str]) -> None:
    ratio = e.constant(f"{node.name}/ratio", np.array(node.attrs["p"], np.float32))
    e.add("Dropout", [x[0], ratio], node.name, node.name)


def _add(e: _Emitter, node: Node, x: list[str]) -> None:
    e.add("Add" if len(x) == 2 else "Sum", x, node.name, node.name)


def _mul(e: _Emitter, node: Node, x: list[str]) -> None:
    product = x[0]
    for index, operand in enumerate(x[1:], start=1):
        last = index == len(x) - 1
        product = e.add("Mul", [product, operand], node.name if last else f"{node.name}/mul{index}",
                        node.name if index == 1 else f"{node.name}/Mul{index}")


def _narrow(e: _Emitter, node: Node, x: list[str]) -> None:
    a = node.attrs
    constants = [e.constant(f"{node.name}/{name}", np.array([value], np.int64)) for name, value in
                 (("starts", a["start"]), ("ends", a["start"] + a["length"]), ("axes", a["dim"]))]
    e.add("Slice", [x[0], *constants], node.name, node.name)


def _layer_norm(e: _Emitter, node: Node, x: list[str]) -> None:
    a, shape = node.attrs, tuple(node.attrs["normalized_shape"])
    if a["elementwise_affine"]:
        inputs = [x[0], e.weight(node, "weight")] + ([e.weight(node, "bias")] if a.get("bias", True) else [])
    else:
        inputs = [x[0], e.constant(f"{node.name}/scale", np.ones(shape, np.float32))]
    e.add("LayerNormalization", inputs, node.name, node.name, axis=-len(shape), epsilon=a["eps"])


_EMITTERS: dict[str, Emit] = {
    "conv2d": _conv, "linear": _linear, "batchnorm2d": _batchnorm,
    "local_response_norm": _simple("LRN", lambda a: {"size": a["size"], "alpha": a["alpha"], "beta": a["beta"],
                                                     "bias": a["k"]}),
    "maxpool2d": _pool("MaxPool"), "avgpool2d": _pool("AveragePool"), "adaptive_avgpool2d": _adaptive_avgpool,
    "global_avgpool2d": _global_avgpool, "flatten": _flatten, "dropout": _dropout,
    "identity": _simple("Identity"), "stochastic_depth": _simple("Identity"), "add": _add, "mul": _mul,
    "concat": _simple("Concat", lambda a: {"axis": a["dim"]}),
    "relu": _simple("Relu"), "relu6": _relu6,
    "leaky_relu": _simple("LeakyRelu", lambda a: {"alpha": a["negative_slope"]}),
    "sigmoid": _simple("Sigmoid"), "tanh": _simple("Tanh"), "silu": _gated("Sigmoid"),
    "gelu": _simple("Gelu", lambda a: {"approximate": a["approximate"]}),
    "softmax": _simple("Softmax", lambda a: {"axis": a["dim"]}),
    "hardsigmoid": _simple("HardSigmoid", lambda a: {"alpha": 1 / 6, "beta": 0.5}),
    "hardswish": _gated("HardSigmoid", alpha=1 / 6, beta=0.5),
    "reshape": lambda e, node, x: _reshape_to(e, node, x, node.attrs["shape"]),
    "permute": _simple("Transpose", lambda a: {"perm": [0, *a["dims"]]}), "narrow": _narrow,
    "layer_norm": _layer_norm,
    "add_param": lambda e, node, x: e.add("Add", [x[0], e.weight(node, "weight")], node.name, node.name),
    "mul_param": lambda e, node, x: e.add("Mul", [x[0], e.weight(node, "weight")], node.name, node.name),
}


def _version() -> str:
    from archviz import __version__

    return __version__
