"""fold_shapes(): the shape arithmetic of an ONNX graph evaluated, so that every tensor gets a static shape.

torch.onnx.export writes `x.view(B, N, -1)`, `F.pad(x, (0, (7 - W % 7) % 7))` and the like as chains of Shape,
Gather, Div, Mod, Concat ... on the image's shape; ONNX shape inference propagates only some of them, and leaves
the Reshape or Pad they feed without a static shape. With the input's shape fixed, every such node is a constant:
a node whose inputs are all known values (Constant nodes, integer initializers, Shape and Size of a tensor whose
shape is static, and the outputs of nodes folded before) is run alone by onnx's reference implementation
(onnx.reference.ReferenceEvaluator on a one-node model) and replaced, in place, by a Constant node holding its
result; shape inference then runs again, which may make more shapes static, until nothing changes. This is what
onnxsim does, smaller. Float initializers are never folded into: they are weights, whose names and counts the
converter reads (archviz/onnx/model.py follows them through Transpose or Identity itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from archviz.onnx.model import DEFAULT_DOMAINS, FLOAT_TYPES, SHAPE_OPS, constant_tensor, dims

if TYPE_CHECKING:
    import numpy as np
    import onnx

MAX_ROUNDS = 100  # a bound only: each round folds what the last one made static (swin_tiny takes 9)
MAX_FOLDED_ELEMENTS = 1 << 16  # a larger result (a mask made by ConstantOfShape) is left to the graph
UNFOLDED_OPS = frozenset({  # not functions of their inputs' values alone
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
    "Constant", "If", "Loop", "Scan", "SequenceConstruct", "SequenceEmpty", "Optional",
})


def fold_shapes(model: onnx.ModelProto, infer: Callable[[onnx.ModelProto], onnx.ModelProto]) -> onnx.ModelProto:
    """The model (shapes inferred by `infer`) with every node computing a known value replaced by a Constant node,
    inferred again after each round of folding.

    >>> import onnx
    >>> from onnx import helper as h, TensorProto as T
    >>> graph = h.make_graph([h.make_node("Shape", ["x"], ["s"]), h.make_node("Reshape", ["x", "s"], ["y"])], "g",
    ...     [h.make_tensor_value_info("x", T.FLOAT, [1, 3])], [h.make_tensor_value_info("y", T.FLOAT, None)])
    >>> [node.op_type for node in fold_shapes(h.make_model(graph), onnx.shape_inference.infer_shapes).graph.node]
    ['Constant', 'Reshape']
    """
    model = infer(model)
    for _ in range(MAX_ROUNDS):
        if not _fold_round(model):
            break
        model = infer(model)
    return model


def _fold_round(model: onnx.ModelProto) -> bool:
    """Replace every node whose value is known now by a Constant node; whether any was."""
    graph, opset = model.graph, _opset(model)
    shapes = {info.name: dims(info.type) for info in (*graph.input, *graph.value_info, *graph.output)}
    values = _known_initializers(graph)
    folded = False
    for index, node in enumerate(graph.node):
        if node.domain not in DEFAULT_DOMAINS:
            continue
        if node.op_type == "Constant":
            tensor = constant_tensor(node)
            if tensor is not None:
                values[node.output[0]] = _array(tensor)
            continue
        results = _evaluate(node, values, shapes, opset)
        if results is None:
            continue
        values.update(results)
        graph.node[index].CopyFrom(_constant_node(node, results))
        folded = True
    return folded


def _known_initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The values of the integer and boolean initializers (shape targets, axes, pads); float ones are weights."""
    import onnx

    values = {}
    for tensor in graph.initializer:
        if tensor.data_type not in FLOAT_TYPES and tensor.data_location != onnx.TensorProto.EXTERNAL:
            values[tensor.name] = _array(tensor)
    return values


def _evaluate(node: onnx.NodeProto, values: dict, shapes: dict, opset: int) -> dict[str, np.ndarray] | None:
    """The node's outputs by name, where all its inputs are known and its result is small; else None."""
    import numpy as np

    inputs = [name for name in node.input if name]
    if node.op_type in SHAPE_OPS and inputs and shapes.get(inputs[0]) is not None:
        shape = np.array(shapes[inputs[0]], dtype=np.int64)
        result = shape[_shape_slice(node)] if node.op_type == "Shape" else np.array(shape.prod(), dtype=np.int64)
        return {node.output[0]: result}
    if node.op_type in UNFOLDED_OPS or len(node.output) != 1 or not all(name in values for name in inputs):
        return None
    outputs = _run_alone(node, values, opset)
    if outputs is None or sum(np.asarray(v).size for v in outputs.values()) > MAX_FOLDED_ELEMENTS:
        return None
    return outputs


def _shape_slice(node: onnx.NodeProto) -> slice:
    from archviz.onnx.model import attributes

    attrs = attributes(node)
    return slice(attrs.get("start", 0), attrs.get("end"))


def _run_alone(node: onnx.NodeProto, values: dict, opset: int) -> dict[str, np.ndarray] | None:
    """The node run by onnx.reference on its known inputs; None where the reference implementation fails."""
    import numpy as np
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inputs = [name for name in node.input if name]
    infos = [helper.make_value_info(name, helper.TypeProto()) for name in dict.fromkeys(inputs)]
    outputs = [helper.make_value_info(name, helper.TypeProto()) for name in node.output if name]
    graph = helper.make_graph([node], "fold", infos, outputs)
    one_node = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(one_node).run(None, {name: values[name] for name in dict.fromkeys(inputs)})
    except Exception:  # noqa: BLE001 - any failure of the reference run only leaves the node unfolded
        return None
    named = [name for name in node.output if name]
    if len(results) != len(named) or any(not isinstance(r, (np.ndarray, np.generic)) for r in results):
        return None
    return {name: np.asarray(result) for name, result in zip(named, results)}


def _constant_node(node: onnx.NodeProto, results: dict[str, np.ndarray]) -> onnx.NodeProto:
    """A Constant node computing what `node` (one output) computed, under the same names."""
    from onnx import helper, numpy_helper

    (name, value), = results.items()
    return helper.make_node("Constant", [], [name], name=node.name, value=numpy_helper.from_array(value, name))


def _array(tensor: onnx.TensorProto) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor)


def _opset(model: onnx.ModelProto) -> int:
    return max(o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS)

