"""The one step that turns an op's raw arguments into a checked layer: arguments normalised (canonical names,
defaults, `$expressions` evaluated, types checked), resolved against the input shapes (in_channels, num_features,
...), then the output shape inferred by the op's own formula.

Every source of layers calls it: the spec builder (graph/build.py), the fx tracer and hook fallback
(trace/assemble.py), the ONNX reader (onnx/convert.py), export-spec's argument minimiser (graph/structure.py),
training's classifier head (train/model.py) and the registry-wide test. An error is the op's own ArchvizError; each
caller adds where it happened.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Iterable, Mapping, NamedTuple

from archviz.graph.ir import Node, Shape
from archviz.ops import Op, get_op
from archviz.spec.args import normalize_args

NO_SCOPE: Mapping[str, Any] = MappingProxyType({})


class Made(NamedTuple):
    """An op with its checked arguments, for these input shapes (a NamedTuple: made once per layer, kept cheap)."""

    op: Op
    attrs: Mapping[str, Any]  # read-only: a node's attributes never change once made
    in_shapes: tuple[Shape, ...]
    out_shape: Shape


def made(op: Op | str, raw: Any, in_shapes: Iterable[Shape], *,
         scope: Mapping[str, Any] = NO_SCOPE) -> Made:
    """`raw` arguments of `op` (as a spec, a trace or an ONNX file gives them) checked for `in_shapes`.

    >>> conv = made("conv2d", {"out_channels": 8, "kernel_size": 3}, [(3, 32, 32)])
    >>> conv.attrs["in_channels"], conv.out_shape
    (3, (8, 30, 30))
    """
    op = get_op(op) if isinstance(op, str) else op
    shapes = list(in_shapes)
    if isinstance(raw, MappingProxyType):  # a node's attributes, read-only; a spec's own dict keeps its lines
        raw = dict(raw)
    attrs = op.resolve(normalize_args(op, raw, scope), shapes)
    return Made(op, MappingProxyType(attrs), tuple(shapes), tuple(op.infer_shape(attrs, shapes)))


def make_node(name: str, layer: Made, inputs: Iterable[str], **placed) -> Node:
    """The node of a made layer, named and wired; `placed` are Node's other fields (scope, file, line, ...)."""
    return Node(name=name, op=layer.op.name, attrs=layer.attrs, inputs=tuple(inputs), in_shapes=layer.in_shapes,
                out_shape=layer.out_shape, **placed)
