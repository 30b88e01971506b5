"""Receptive field, effective stride (jump) and start of every node (Araujo et al. 2019, "Computing receptive
fields of convolutional neural networks", eq. 1-3), per axis (height, width).

For a window of extent k, stride s and padding p on an input with field r, jump j and start c:
    r_out = r + (k - 1) * j        j_out = j * s        c_out = c + ((k - 1) / 2 - p) * j
Where paths join (add, concat) the field is the largest over the paths; the jump and start are those of the path
with the finest grid among those whose map has the output's size (a squeeze-and-excitation scale of C x 1 x 1,
broadcast or expanded over the map, widens the field but places no unit). Once a tensor is flattened, every unit
sees the whole map, so flatten widens the field by the map's extent: r + (H - 1) * j. An op that upsamples
(pixel_shuffle by r) has a window of stride 1/r: the jump becomes a fraction, and so may a field's size; a unit then
reaches at most ceil(size) whole input pixels, which is the figure reported.

A layer's field is the largest over every path from the input to it (max over paths): a unit sees the union of
what each path shows it, so the field never shrinks along any path. Listed in topological order, a layer on a
shortcut (resnet's downsample) follows a layer of the main path and shows a smaller field: it lies on another
path, which `Field.via` names (the input whose field the layer's own extends: the widest one at a join).

The headline figure is the field of the last spatial layer (`last_spatial_field`): the last map of more than one
position on the way to the output, before global pooling or flatten. After those every output sees every position
of that map, and the field computed there (VGG-16's 404 px on a 224 input) only says that the map's units together
cover the whole input.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from archviz.errors import ShapeError
from archviz.graph.ir import INPUT, Graph, Node
from archviz.ops import OpKind, get_op

MAX_JUMP = 10**30  # strides only compound past the map size on 1x1 maps; beyond this `start` overflows a float


@dataclass(frozen=True)
class Field:
    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]
    # the input (a layer, or INPUT) whose field this one extends: the path it follows; not part of the geometry
    via: str | None = dataclasses.field(default=None, compare=False)

    def widened(self, kernel, stride, padding) -> "Field":
        return Field(
            size=tuple(r + (k - 1) * j for r, k, j in zip(self.size, kernel, self.jump)),
            jump=tuple(j * s for j, s in zip(self.jump, stride)),
            start=tuple(c + ((k - 1) / 2 - p) * j for c, k, p, j in zip(self.start, kernel, padding, self.jump)),
        )


INPUT_FIELD = Field(size=(1, 1), jump=(1, 1), start=(0.5, 0.5))


def receptive_fields(graph: Graph) -> dict[str, Field]:
    fields = {INPUT: INPUT_FIELD}
    windows: dict = {}
    for node in graph.nodes:
        field = node_field(node, [fields[name] for name in node.inputs], windows)
        field = fields[node.name] = dataclasses.replace(field, via=_widest_input(node, fields))
        if max(field.jump) > MAX_JUMP:
            raise ShapeError(f"the strides up to here multiply to a jump of {field.jump[0]:.3g} x {field.jump[1]:.3g} "
                             f"input pixels, more than {MAX_JUMP:.0e}: a stride larger than its map compounds",
                             file=node.file, line=node.line, layer=node.name)
    return fields


def _widest_input(node: Node, fields: dict[str, Field]) -> str:
    """The input whose field a node extends: the widest (the first of equals), as _joined picks it."""
    return max(node.inputs, key=lambda name: fields[name].size[0] * fields[name].size[1])


def node_field(node: Node, inputs: list[Field], windows: dict | None = None) -> Field:
    widest = inputs[0] if len(inputs) == 1 else _joined(node, inputs)
    window, merges = _geometry(node, {} if windows is None else windows)
    if window is not None:
        return widest.widened(window.kernel, window.stride, window.padding)
    in_shape = node.in_shapes[0]
    if merges:
        extent = in_shape[1:]
        return widest.widened(extent, (1, 1), tuple((e - 1) / 2 for e in extent))
    return widest


def _joined(node: Node, inputs: list[Field]) -> Field:
    def area(field: Field) -> int:
        return field.size[0] * field.size[1]

    widest = max(inputs, key=area)
    spatial = node.out_shape[-2:]
    placed = [f for f, shape in zip(inputs, node.in_shapes) if shape[-2:] == spatial] or inputs
    # the finest grid places the units: a 1 x 1 map expanded to the map's size (FRN's mean) has a jump as wide as
    # the map, which is no spacing of the output's units
    anchor = placed[0] if len(placed) == 1 else min(placed, key=lambda field: (max(field.jump), -area(field)))
    return anchor if anchor is widest else Field(widest.size, anchor.jump, anchor.start)


def _geometry(node: Node, cache: dict):
    """The op's window, and whether it merges every position; repeated copies of a layer share one computation."""
    try:
        key = (node.op, tuple(node.attrs.items()), node.in_shapes)
        return cache[key]
    except TypeError:
        return _op_geometry(node)
    except KeyError:
        geometry = cache[key] = _op_geometry(node)
        return geometry


def _op_geometry(node: Node):
    op, in_shapes = get_op(node.op), list(node.in_shapes)
    window = op.window(node.attrs, in_shapes)
    return window, window is None and op.merges_positions(node.attrs, in_shapes)


@dataclass(frozen=True)
class SpatialField:
    """The receptive field of the last spatial layer: the headline figure (see the module's docstring)."""

    layer: str  # the last layer whose output is a map of more than one position, on the way to the output
    size: tuple[int, int]
    out_shape: tuple[int, ...]
    merged_at: str | None  # the layer after which every output sees every position of that map; None: a map out
    merged_by: str | None  # how: "global pooling", "flattening" or the op's name
    covers_input: bool  # the map's units together see every input pixel, so after merged_at every output does


def last_spatial_field(graph: Graph, fields: dict[str, Field]) -> SpatialField | None:
    """Walk back from the output along each layer's widest input to the last map of more than one position; a
    pooling, reshape or dropout that leaves that map as it is (torchvision VGG's adaptive pool to 7x7 on a 7x7 map)
    is passed over. None where the output is reached from the input without a map (no spatial layer).

    >>> from archviz import load
    >>> graph = load("vgg16")
    >>> last_spatial_field(graph, receptive_fields(graph)).layer
    'features.30'
    """
    name, after = graph.output, None
    while name != INPUT and not _is_map(graph.shape_of(name)):
        name, after = fields[name].via, name
    if name == INPUT:
        return None
    name = _past_unchanged(graph, fields, name)
    field, out_shape = fields[name], graph.shape_of(name)
    merged_by = None if after is None else _merger_text(graph.by_name[after])
    return SpatialField(layer=name, size=_whole_pixels(field.size), out_shape=out_shape, merged_at=after,
                        merged_by=merged_by, covers_input=_covers(field, out_shape, graph.input_shape))


def _is_map(out_shape: tuple[int, ...]) -> bool:
    return len(out_shape) == 3 and out_shape[1] * out_shape[2] > 1


_PASS_OVER = (OpKind.POOL, OpKind.RESHAPE, OpKind.REGULARIZATION)


def _past_unchanged(graph: Graph, fields: dict[str, Field], name: str) -> str:
    """The earliest layer of a chain that ends at `name` whose later layers change neither the map nor the field."""
    while True:
        node = graph.by_name[name]
        source = node.inputs[0]
        if (len(node.inputs) != 1 or source == INPUT or get_op(node.op).kind not in _PASS_OVER
                or graph.shape_of(source) != node.out_shape or fields[source].size != fields[name].size
                or fields[source].jump != fields[name].jump):
            return name
        name = source


def _merger_text(node: Node) -> str:
    kind = get_op(node.op).kind
    return {OpKind.POOL: "global pooling", OpKind.RESHAPE: "flattening"}.get(kind, node.op)


def _covers(field: Field, out_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> bool:
    """Whether the fields of the map's units, centred start + i * jump, together span the input's pixels [0, extent]."""
    spans = zip(field.size, field.jump, field.start, out_shape[1:], input_shape[1:])
    return all(start - size / 2 <= 0 and start + (units - 1) * jump + size / 2 >= extent
               for size, jump, start, units, extent in spans)


def _whole_pixels(sizes: tuple) -> tuple[int, int]:
    """A field's size in whole pixels: a unit reaches at most ceil(size) of them (after an upsampling op)."""
    return tuple(size if type(size) is int else math.ceil(size) for size in sizes)
