"""What the converter reads from an ONNX model once shapes are inferred: every tensor's shape, which tensors are
stored or computed from stored ones (static), which are activations, and who consumes each.

Static tensors are initializers, Constant outputs, weights given as graph inputs, the outputs of Shape and Size (a
shape is known before the data), and whatever is computed from static tensors only (the Shape -> Gather -> Concat
chains a `view` exports to). The nodes computing them are not layers. A weight's `origin` is the stored tensor it
comes from through Identity, Transpose, Cast and the like (integer tensors such as a Reshape's target aside), so a
weight used twice is recognised and counted once; a tensor computed from several stored tensors has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: importing archviz.onnx never needs the onnx package
    import numpy as np
    import onnx

DEFAULT_DOMAINS = ("", "ai.onnx")
SHAPE_OPS = ("Shape", "Size")  # their outputs depend on the input's shape only, never on its values
FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
# positions of the inputs that hold weights, per op type: a graph input used only there is a weight, not an image
WEIGHT_POSITIONS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "BatchNormalization": (1, 2, 3, 4),
    "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2), "PRelu": (1,),
}
# a graph input named like a PyTorch state-dict entry and never an op's first operand is a weight too (a bias added
# after a MatMul, in a file written by `archviz export --no-weights` or torch.onnx.export(export_params=False))
WEIGHT_NAME_SUFFIXES = (".weight", ".bias", ".running_mean", ".running_var")


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as Python values (strings decoded)."""
    from onnx import helper

    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


@dataclass
class ModelView:
    """The tensors of one (shape-inferred) ONNX graph; built by `view()`, read-only afterwards."""

    graph: onnx.GraphProto
    opset: int
    image: str  # the graph input holding the images
    shapes: dict[str, tuple[int, ...] | None]  # with the batch; None where inference left a dim unknown
    static: set[str]
    stored: dict[str, tuple[int, ...]]  # initializers and weight graph inputs: their shapes
    origin: dict[str, str]  # static tensor -> the stored tensor it derives from, where there is exactly one
    consumers: dict[str, list[int]]  # tensor -> indices of the nodes reading it
    outputs: tuple[str, ...]  # the graph's outputs
    constants: dict[str, onnx.TensorProto] = field(default_factory=dict)  # small tensors whose values are known

    def is_activation(self, name: str) -> bool:
        return bool(name) and name not in self.static

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def weight(self, name: str) -> str | None:
        """The stored tensor behind a static input, or None (computed, or from several stored tensors)."""
        return self.origin.get(name)

    def value(self, name: str) -> np.ndarray | None:
        """The value of a constant input (a Clip bound, a dropout ratio), or None when not stored in the file."""
        import onnx
        from onnx import numpy_helper

        tensor = self.constants.get(name)
        if tensor is None or tensor.data_location == onnx.TensorProto.EXTERNAL:
            return None
        return numpy_helper.to_array(tensor)

    @property
    def batch(self) -> int:
        return (self.shapes.get(self.image) or (1,))[0]

    def folded(self, name: str) -> bool:
        """Whether the activation's first dim is not the batch: window attention folds the batch into it (B * windows),
        attention code moves it inward ((3, B, heads, N, d): then the first dim is 3)."""
        shape = self.shape(name)
        return bool(shape) and shape[0] != self.batch and self.is_activation(name)

    def per_sample(self, name: str) -> tuple[int, ...] | None:
        """The tensor's shape per sample, the Graph's shapes: without the batch where the batch is first; with the
        batch folded into the first dim, that dim's per-sample size kept (B * windows -> windows), as the tracer
        keeps it (interop.Ref.fold); None where unknown or a scalar."""
        shape = self.shape(name)
        if shape is None or len(shape) < 2:
            return None
        if not self.folded(name):
            return shape[1:]
        return (shape[0] // self.batch, *shape[1:]) if shape[0] % self.batch == 0 else shape

    def sole_consumer(self, tensor: str) -> int | None:
        """The index of the one node reading tensor, if exactly one does and it is not a graph output."""
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or tensor in self.outputs:
            return None
        return users[0]


def view(model: onnx.ModelProto, opset: int, image: str, weight_inputs: set[str]) -> ModelView:
    """The tensors of the model's main graph (shapes inferred already); `image` is its image input."""
    graph = model.graph
    shapes: dict[str, tuple[int, ...] | None] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        shapes[info.name] = dims(info.type)
    stored: dict[str, tuple[int, ...]] = {}
    constants: dict[str, onnx.TensorProto] = {}
    for tensor in graph.initializer:
        stored[tensor.name] = tuple(tensor.dims)
        shapes[tensor.name] = tuple(tensor.dims)
        constants[tensor.name] = tensor
    for info in graph.input:
        if info.name in weight_inputs:
            stored[info.name] = shapes.get(info.name) or ()
    static = set(stored)
    numbers = _integer_tensors(graph)
    origin = {name: name for name in stored if name not in numbers}
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in dict.fromkeys(node.input):
            if name:
                consumers.setdefault(name, []).append(index)
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
            tensor = constant_tensor(node)
            if tensor is not None:
                constants[node.output[0]] = tensor
                shapes[node.output[0]] = tuple(tensor.dims)
        if node.op_type in SHAPE_OPS or all(name in static for name in inputs):
            static.update(name for name in node.output if name)
            sources = {origin.get(name) for name in inputs if name not in numbers}
            if len(sources) == 1 and None not in sources and len(node.output) == 1:
                origin[node.output[0]] = sources.pop()
    return ModelView(
        graph=graph, opset=opset, image=image, shapes=shapes, static=static, stored=stored, origin=origin,
        consumers=consumers, outputs=tuple(info.name for info in graph.output), constants=constants,
    )


def _integer_tensors(graph: onnx.GraphProto) -> set[str]:
    """The tensors of an integer or boolean type (shape targets, axes, indices): never weights, nor part of one."""
    names = {t.name for t in graph.initializer if t.data_type not in FLOAT_TYPES}
    for info in (*graph.input, *graph.value_info, *graph.output):
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type not in (0, *FLOAT_TYPES):
            names.add(info.name)  # 0: a type inference did not find
    for node in graph.node:
        tensor = constant_tensor(node) if node.op_type == "Constant" else None
        if tensor is not None and tensor.data_type not in FLOAT_TYPES:
            names.add(node.output[0])
    return names


def constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """A Constant node's value as a tensor (value, value_float(s), value_int(s)); None for sparse values."""
    import numpy as np
    from onnx import helper, numpy_helper

    for attribute in node.attribute:
        if attribute.name == "value":
            return attribute.t
        if attribute.name in ("value_float", "value_floats", "value_int", "value_ints"):
            value = helper.get_attribute_value(attribute)
            dtype = np.float32 if "float" in attribute.name else np.int64
            return numpy_helper.from_array(np.asarray(value, dtype=dtype), node.output[0])
    return None


def dims(type_proto: onnx.TypeProto) -> tuple[int, ...] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in type_proto.tensor_type.shape.dim:
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            return None
        dims.append(dim.dim_value)
    return tuple(dims)
