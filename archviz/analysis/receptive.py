"""Receptive field, effective stride (jump) and start of every node (Araujo et al. 2019, "Computing receptive
fields of convolutional neural networks", eq. 1-3), per axis (height, width).

For a window of extent k, stride s and padding p on an input with field r, jump j and start c:
    r_out = r + (k - 1) * j        j_out = j * s        c_out = c + ((k - 1) / 2 - p) * j
Where paths join (add, concat) the field is the largest over the paths; the jump and start are those of the path
with the finest grid among those whose map has the output's size (a squeeze-and-excitation scale of C x 1 x 1,
broadcast or expanded over the map, widens the field but places no unit). Once a tensor is flattened, every unit
sees the whole map, so flatten widens the field by the map's extent: r + (H - 1) * j. An op that upsamples (pixel_shuffle by r) has a window of stride 1/r: the jump
becomes a fraction, and so may a field's size; a unit then reaches at most ceil(size) whole input pixels, which is
the figure reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from archviz.errors import ShapeError
from archviz.graph.ir import INPUT, Graph, Node
from archviz.ops import get_op

MAX_JUMP = 10**30  # strides only compound past the map size on 1x1 maps; beyond this `start` overflows a float


@dataclass(frozen=True)
class Field:
    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]

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
        field = fields[node.name] = node_field(node, [fields[name] for name in node.inputs], windows)
        if max(field.jump) > MAX_JUMP:
            raise ShapeError(f"the strides up to here multiply to a jump of {field.jump[0]:.3g} x {field.jump[1]:.3g} "
                             f"input pixels, more than {MAX_JUMP:.0e}: a stride larger than its map compounds",
                             file=node.file, line=node.line, layer=node.name)
    return fields


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
