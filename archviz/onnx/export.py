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
from typing import Iterator, Mapping

import numpy as np

from archviz.errors import ArchvizError, UnsupportedOpError
from archviz.graph.ir import INPUT, Graph, Node
from archviz.ops import get_op, has_formula
from archviz.onnx.convert import ARCHVIZ_DOMAIN
from archviz.onnx.read import import_onnx
from archviz.onnx.weights import (WeightSpec, byte_count, checkpoint_values, graph_weights, initial_values,
                                  state_dict_values)
from archviz.output import write_atomic

OPSET = 20  # Gelu's first opset; onnxruntime runs it from 1.17 (2024)
IR_VERSION = 9  # the IR of opset 20 (onnx 1.15): runtimes older than the installed onnx package still read it
MAX_FILE_BYTES = 2**31 - 2**24  # protobuf cannot write a message of 2 GiB or more; leave room for the graph
INPUT_NAME = "input"
BATCH = "batch"  # the symbolic batch dim of every tensor


def export_onnx(graph: Graph, path: str | Path, *, checkpoint: str | Path | None = None, as_inputs: bool = False,
                seed: int = 0, state_dict: Mapping | None = None, origin: str = "the state dict",
                properties: Mapping[str, str] | None = None) -> Path:
    """Write graph to path as an ONNX file (through a temporary file: nothing half-written) and return the path.

    The weights are torch's random initialisation drawn with `seed`, the tensors of a PyTorch state dict file
    (`checkpoint`) or in memory (`state_dict`, named `origin` in errors: a trained run's), or, with as_inputs, graph
    inputs (no data: a small file). `properties` go into the model's metadata beside archviz.model.

    >>> import tempfile, archviz
    >>> path = export_onnx(archviz.load("lenet"), tempfile.mkdtemp() + "/lenet.onnx")
    >>> archviz.inspect(archviz.onnx.read_onnx(path)).totals.params
    61706
    """
    onnx = import_onnx()
    if (checkpoint is not None or state_dict is not None) and as_inputs:
        raise ArchvizError("give a checkpoint (--weights) or --no-weights, not both")
    model = to_onnx(graph, as_inputs=True)
    if properties:
        from onnx import helper

        helper.set_model_props(model, {"archviz.model": graph.name, **properties})
    onnx.checker.check_model(model)  # before the weights go in: checking copies the whole model
    if not as_inputs:
        specs = graph_weights(graph)
        if state_dict is not None:
            values = state_dict_values(specs, state_dict, file=origin)
        elif checkpoint is not None:
            values = checkpoint_values(specs, checkpoint)
        else:
            values = initial_values(specs, seed=seed)
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
        get_op(node.op).write_onnx(emitter, node, [INPUT_NAME if name == INPUT else name for name in node.inputs])
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
        self.domain = ARCHVIZ_DOMAIN

    def add(self, op_type: str, inputs: list[str], output: str, name: str, *, domain: str = "",
            unused: tuple[str, ...] = (), **attrs) -> str:
        """Add a node computing output (and outputs ONNX requires that nothing reads: `unused`)."""
        self.nodes.append(self.helper.make_node(op_type, inputs, [output, *unused], name=name, domain=domain, **attrs))
        return output

    def constant(self, name: str, value, dtype: str = "float32") -> str:
        """A Constant node holding value, a number or nested lists (not a weight: read_onnx counts no params for it)."""
        from onnx import numpy_helper

        array = np.asarray(value, dtype=dtype)
        self.nodes.append(self.helper.make_node("Constant", [], [name], name=name,
                                                value=numpy_helper.from_array(array, name)))
        return name

    def function(self, name: str, inputs: list[str], outputs: list[str], body: list[tuple], *, doc: str) -> None:
        """Define the model-local function `name` in archviz's domain once: body is (op type, inputs, outputs) per
        node, or (op type, inputs, outputs, attributes)."""
        if name in self.functions:
            return
        nodes = [self.helper.make_node(op_type, ins, outs, **(rest[0] if rest else {}))
                 for op_type, ins, outs, *rest in body]
        self.functions[name] = self.helper.make_function(
            ARCHVIZ_DOMAIN, name, inputs, outputs, nodes, [self.helper.make_opsetid("", OPSET)], doc_string=doc)

    def weight(self, node: Node, suffix: str) -> str:
        """The stored tensor's name: the state-dict key of this layer, or of the layer whose weights it shares."""
        return f"{node.shares or node.name}.{suffix}"


def _version() -> str:
    from archviz import __version__

    return __version__
