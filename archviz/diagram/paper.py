"""Paper-style figures: each feature map a 3-D box sized by its shape, kernels as small cubes, skips as arrows.

The layered drawing of the papers and the course's slides (LeNet's and AlexNet's figures; NN-SVG and visualkeras
draw the same), from a Graph alone: no torch, no Graphviz. `layout()` places the boxes and returns a frozen
`PaperFigure`; `to_svg()` writes it as plain, editable SVG text; `to_png()` has Chromium rasterise that SVG.

What a box is. A layer that makes a new feature map (a convolution, a pooling, a linear layer, a join, a layer without
a formula) is a box; the layers after it that keep its shape (activations, normalisations, dropout) or only reshape
it (flatten) are named in its label, not drawn. A box's height follows the map's height, its oblique depth the
width and its thickness the channels, each log-scaled with a minimum (`box_size`); a vector (a linear layer's
output) is a thin bar. A convolution's window is drawn as a small cube on its input box, with lines to its output
box, as in AlexNet's figure.

Folding is the graph diagram's (archviz.diagram.collect): a run of identical blocks (ResNet-50's layer3.1 ...
layer3.5) is drawn once, its boxes bracketed "x5". A group the fold state keeps closed (`--depth 1`) is one box.

Placement. A box's column is its longest path from the input. A chain keeps its lane; parallel branches (an
inception module's four) are stacked around it, and a join returns to the lane of the box its branches split from
(its immediate dominator). An edge that spans columns on one lane (a residual skip) is an arrow curving over the
boxes it skips, which NN-SVG and visualkeras cannot draw.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import shutil
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from archviz.analysis.report import Report, analyze
from archviz.diagram.collect import Diagram, DiagramNode, FoldState, collect, fold_state
from archviz.diagram.dot import COLOURS
from archviz.errors import ArchvizError, MissingDependencyError
from archviz.format import human, shape as shape_text
from archviz.graph.ir import INPUT, Graph, Shape
from archviz.ops import get_op
from archviz.ops.base import OpKind

# Layers drawn on the box before them rather than as boxes: they keep its shape (or only reshape it, flatten).
ON_PREVIOUS_BOX = (OpKind.ACTIVATION, OpKind.NORM, OpKind.REGULARIZATION, OpKind.RESHAPE)
MAX_BOXES = 90  # most boxes a default figure opens folded groups to (GoogLeNet's 82); beyond, the largest stay closed

# Sizes in px. side(n) = SIDE_MIN + SIDE_PER_DOUBLING * log2(n): a 224 map is 115 px high, a 1x1 map still 6 px.
SIDE_MIN, SIDE_PER_DOUBLING = 6.0, 14.0
THICKNESS_MIN, THICKNESS_PER_DOUBLING = 3.0, 4.0  # channels: 3 -> 9 px, 64 -> 27 px, 2048 -> 47 px
DEPTH_RATIO = 0.4  # the oblique depth drawn for a map's width, as a part of the side it would have
BAR_RATIO = 0.6  # a vector's bar height, as a part of the side a map of that many rows would have
BAR_THICKNESS = 8.0
KERNEL_MIN, KERNEL_THICKNESS = 4.0, 6.0
KERNEL_RATIO = 0.5  # a window's side, as a part of the side a map of its size would have: 1x1 small, 11x11 large
COLUMN_GAP, LANE_GAP = 18.0, 16.0
FONT_SIZE, LINE_HEIGHT, CHAR_WIDTH = 10.0, 12.0, 5.8  # CHAR_WIDTH: a sans-serif digit or letter at FONT_SIZE, roughly
LABEL_LINES = 3
BEND = 36.0  # the length along the flow of a step between lanes
SKIP_RISE = 26.0  # how far a skip arrow climbs above the tallest box it passes
MARGIN = 16.0
FONT = "Helvetica, Arial, sans-serif"


class PaperFormat(enum.StrEnum):
    SVG = "svg"
    PNG = "png"


@dataclass(frozen=True)
class BoxSize:
    thickness: float  # along the flow, from the channels
    height: float  # from the map's height (a vector's length)
    depth: float  # drawn obliquely, from the map's width


@dataclass(frozen=True)
class Kernel:
    """A convolution's window, a small cube on its input box (`source`), with lines to the box it makes."""

    source: str
    x: float
    y: float
    size: BoxSize
    target: tuple[float, float]  # where its lines meet, on the output box's front face


@dataclass(frozen=True)
class Box:
    """One feature map: a layer with the layers drawn on it, a folded group, or the input."""

    id: str  # its first layer's path, a folded node's id, or "input"
    members: tuple[str, ...]  # the layer paths it stands for (a folded run's: every copy's)
    kind: str  # an OpKind value, "group" or "input"
    title: str  # "conv2d 6 5x5", "basic_block x2"
    extras: tuple[str, ...]  # the ops drawn on it: ("tanh",)
    shape: Shape
    column: int
    lane: float
    x: float  # the front face's top left corner
    y: float
    size: BoxSize
    kernel: Kernel | None = None

    @property
    def label(self) -> tuple[str, ...]:
        extras = "+ " + ", ".join(self.extras) if self.extras else ""
        return tuple(line for line in (self.title, extras, shape_text(self.shape)) if line)

    @property
    def right(self) -> float:
        return self.x + self.size.thickness + self.size.depth

    @property
    def top(self) -> float:
        return self.y - self.size.depth

    @property
    def bottom(self) -> float:
        return self.y + self.size.height


@dataclass(frozen=True)
class Arrow:
    src: str
    dst: str
    skip: bool  # spans columns: drawn curving over the boxes between
    path: str  # SVG path data


@dataclass(frozen=True)
class Bracket:
    """A run of identical blocks drawn once: a bracket under its boxes, "basic_block x2"."""

    groups: tuple[str, ...]
    label: str
    x0: float
    x1: float
    y: float


@dataclass(frozen=True)
class PaperFigure:
    model: str
    title: str
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]
    brackets: tuple[Bracket, ...]
    view: tuple[float, float, float, float]  # SVG viewBox: min x, min y, width, height

    def box(self, box_id: str) -> Box:
        return next(box for box in self.boxes if box.id == box_id)


# --- sizes ------------------------------------------------------------------------------------------------------

def _side(n: int) -> float:
    return SIDE_MIN + SIDE_PER_DOUBLING * math.log2(max(n, 1))


def box_size(shape: Shape) -> BoxSize:
    """The drawn size of a feature map (C, H, W), a sequence (C, L) or a vector (F,), log-scaled, never below a
    minimum, so a 1x1 map and a 10-unit layer stay visible.

    >>> box_size((6, 28, 28)).height > box_size((16, 10, 10)).height > box_size((120, 1, 1)).height > 0
    True
    """
    if len(shape) <= 1:
        length = shape[0] if shape else 1
        return BoxSize(thickness=BAR_THICKNESS, height=BAR_RATIO * _side(length), depth=THICKNESS_MIN)
    channels, height, width = shape[0], shape[-2] if len(shape) > 2 else shape[-1], shape[-1] if len(shape) > 2 else 1
    thickness = THICKNESS_MIN + THICKNESS_PER_DOUBLING * math.log2(max(channels, 1))
    return BoxSize(thickness=thickness, height=_side(height), depth=max(THICKNESS_MIN, DEPTH_RATIO * _side(width)))


# --- what to draw: boxes and the edges between them --------------------------------------------------------------

@dataclass(frozen=True)
class _Item:
    id: str
    members: tuple[str, ...]
    kind: str
    title: str
    extras: tuple[str, ...]
    shape: Shape
    kernel: tuple[int, int] | None = None  # a convolution's window (kh, kw), drawn on its input box


@dataclass(frozen=True)
class _Plan:
    items: tuple[_Item, ...]  # in topological (spec) order, the input first
    edges: tuple[tuple[str, str], ...]
    runs: tuple[tuple[str, DiagramNode], ...]  # (the group drawn, the merged node it stands for)


def _plan(report: Report, diagram: Diagram, *, opened: frozenset[str]) -> _Plan:
    """Which layers make boxes, which are drawn on the box before them, and which folded copies are not drawn; the
    diagram's folded groups in `opened` are drawn layer by layer (a merged run's first copy), the others one box."""
    graph, stats = report.graph, {s.name: s for s in report.layers}
    folded, copy_of, runs = {}, {}, []
    for node in diagram.nodes:
        if node.is_group and node.id not in opened:
            folded.update({member: node for member in node.members})
        elif node.is_group and node.repeat > 1:
            runs.append((node.groups[0], node))
            copy_of.update(_copies(node))
    items: dict[str, dict] = {INPUT: dict(id=INPUT, members=[INPUT], kind="input", title="input", extras=[],
                                          shape=graph.input_shape, kernel=None)}
    box_of: dict[str, str] = {INPUT: INPUT}
    edges: dict[tuple[str, str], None] = {}

    def source(tensor: str) -> str:
        return box_of[copy_of.get(tensor, tensor)]

    for node in graph.nodes:
        if node.name in copy_of:
            items[box_of[copy_of[node.name]]]["members"].append(node.name)
            continue
        sources = list(dict.fromkeys(source(t) for t in node.inputs))
        if node.name in folded:
            group = folded[node.name]
            box_of[node.name] = group.id
            items.setdefault(group.id, _group_item(group))
        elif get_op(node.op).kind in ON_PREVIOUS_BOX and len(sources) == 1 and sources[0] in items:
            box_of[node.name] = sources[0]
            items[sources[0]]["members"].append(node.name)
            items[sources[0]]["extras"].append(node.op)
            continue
        else:
            box_of[node.name] = node.name
            items[node.name] = _layer_item(node, stats[node.name])
        edges.update({(src, box_of[node.name]): None for src in sources if src != box_of[node.name]})
    frozen = tuple(_Item(**{**item, "members": tuple(item["members"]), "extras": tuple(dict.fromkeys(item["extras"]))})
                   for item in items.values())
    return _Plan(items=frozen, edges=tuple(edges), runs=tuple(runs))


def _copies(node: DiagramNode) -> dict[str, str]:
    """Each layer of a merged run's later copies -> the same layer of its first copy, the one drawn."""
    first = node.groups[0]
    copies = {}
    for member in node.members:
        group = next(g for g in node.groups if member.startswith(g + "."))
        if group != first:
            copies[member] = first + member[len(group):]
    return copies


def _layer_item(node, stats) -> dict:
    op = get_op(node.op)
    window = op.window(node.attrs, list(node.in_shapes)) if op.kind == OpKind.CONV else None
    kernel = tuple(window.kernel) if window is not None and len(node.in_shapes[0]) == 3 else None
    return dict(id=node.name, members=[node.name], kind=str(op.kind), title=f"{node.op} {stats.summary}".strip(),
                extras=[], shape=node.out_shape, kernel=kernel)


def _group_item(node: DiagramNode) -> dict:
    title = f"{node.type} x{node.repeat}" if node.repeat > 1 else node.type
    return dict(id=node.id, members=list(node.members), kind="group", title=title, extras=[],
                shape=node.out_shape, kernel=None)


# --- placement: columns and lanes ----------------------------------------------------------------------------------

def _columns(plan: _Plan) -> dict[str, int]:
    preds = _predecessors(plan)
    column: dict[str, int] = {}
    for item in plan.items:
        column[item.id] = 1 + max((column[p] for p in preds[item.id]), default=-1)
    return column


def _predecessors(plan: _Plan) -> dict[str, list[str]]:
    preds: dict[str, list[str]] = {item.id: [] for item in plan.items}
    for src, dst in plan.edges:
        preds[dst].append(src)
    return preds


def _successors(plan: _Plan) -> dict[str, list[str]]:
    succs: dict[str, list[str]] = {item.id: [] for item in plan.items}
    for src, dst in plan.edges:
        succs[src].append(dst)
    return succs


def _heights(plan: _Plan) -> dict[str, int]:
    """Each box's longest path to an output: which of parallel branches is the main chain."""
    succs = _successors(plan)
    height: dict[str, int] = {}
    for item in reversed(plan.items):
        height[item.id] = 1 + max((height[s] for s in succs[item.id]), default=-1)
    return height


def _dominators(plan: _Plan) -> dict[str, str]:
    """Each box's immediate dominator (the last box every path from the input to it passes), for a DAG in order."""
    preds = _predecessors(plan)
    idom: dict[str, str] = {INPUT: INPUT}
    depth: dict[str, int] = {INPUT: 0}

    def meet(a: str, b: str) -> str:
        while a != b:
            if depth[a] >= depth[b]:
                a = idom[a]
            else:
                b = idom[b]
        return a

    for item in plan.items[1:]:
        known = [p for p in preds[item.id] if p in idom]
        dominator = known[0] if known else INPUT
        for other in known[1:]:
            dominator = meet(dominator, other)
        idom[item.id], depth[item.id] = dominator, depth[dominator] + 1
    return idom


def _lanes(plan: _Plan, column: dict[str, int]) -> dict[str, float]:
    """A chain keeps its lane; branches leaving one box stack around it (the longest keeps the lane when one is
    longest); a join takes its dominator's lane. Boxes that would overlap in a column move down."""
    preds, succs, height, idom = _predecessors(plan), _successors(plan), _heights(plan), _dominators(plan)
    lane: dict[str, float] = {INPUT: 0.0}
    for item in plan.items[1:]:
        if len(preds[item.id]) != 1:
            lane[item.id] = lane.get(idom[item.id], 0.0)
            continue
        parent = preds[item.id][0]
        branches = [s for s in succs[parent] if len(preds[s]) == 1]
        lane[item.id] = lane[parent] + _branch_offset(item.id, branches, height)
    taken: dict[int, list[float]] = {}
    for item in sorted(plan.items, key=lambda i: (column[i.id], lane[i.id])):
        used = taken.setdefault(column[item.id], [])
        if used and lane[item.id] < used[-1] + 1:
            lane[item.id] = used[-1] + 1
        used.append(lane[item.id])
    return lane


def _branch_offset(item: str, branches: list[str], height: dict[str, int]) -> float:
    if len(branches) <= 1:
        return 0.0
    tallest = max(height[b] for b in branches)
    main = [b for b in branches if height[b] == tallest]
    if len(main) == 1:
        others = [b for b in branches if b != main[0]]
        return 0.0 if item == main[0] else 1.0 + others.index(item)
    return branches.index(item) - (len(branches) - 1) / 2


# --- geometry ------------------------------------------------------------------------------------------------------

def _label_width(item: _Item) -> float:
    extras = "+ " + ", ".join(item.extras) if item.extras else ""
    return CHAR_WIDTH * max(len(item.title), len(extras), len(shape_text(item.shape)))


def _boxes(plan: _Plan, column: dict[str, int], lane: dict[str, float]) -> tuple[Box, ...]:
    sizes = {item.id: box_size(item.shape) for item in plan.items}
    widths: dict[int, float] = {}
    for item in plan.items:
        size = sizes[item.id]
        widths[column[item.id]] = max(widths.get(column[item.id], 0.0), size.thickness + size.depth, _label_width(item))
    starts, x = {}, 0.0
    for col in sorted(widths):
        starts[col], x = x, x + widths[col] + COLUMN_GAP
    shared = [i for i in plan.items if sum(column[j.id] == column[i.id] for j in plan.items) > 1]
    pitch = max((sizes[i.id].height + sizes[i.id].depth for i in shared), default=0.0) + LABEL_LINES * LINE_HEIGHT \
        + LANE_GAP
    boxes = []
    for item in plan.items:
        size, col = sizes[item.id], column[item.id]
        left = starts[col] + (widths[col] - size.thickness - size.depth) / 2
        top = lane[item.id] * pitch - (size.height - size.depth) / 2
        boxes.append(Box(id=item.id, members=item.members, kind=item.kind, title=item.title, extras=item.extras,
                         shape=item.shape, column=col, lane=lane[item.id], x=left, y=top, size=size))
    return tuple(boxes)


def _with_kernels(boxes: tuple[Box, ...], plan: _Plan) -> tuple[Box, ...]:
    by_id = {box.id: box for box in boxes}
    sources = {dst: src for src, dst in plan.edges}
    out = []
    for box, item in zip(boxes, plan.items):
        source = by_id.get(sources.get(box.id, ""))
        if item.kernel is not None and source is not None and len(source.shape) == 3:
            box = dataclasses.replace(box, kernel=_kernel(item.kernel, source, box))
        out.append(box)
    return tuple(out)


def _kernel(window: tuple[int, int], source: Box, target: Box) -> Kernel:
    """The window on the source box's front face, log-scaled as the maps are (a 3x3 window 14 px high)."""
    height = min(source.size.height * 0.6, max(KERNEL_MIN, KERNEL_RATIO * _side(window[0])))
    depth = min(source.size.depth * 0.6, max(KERNEL_MIN / 2, KERNEL_RATIO * DEPTH_RATIO * _side(window[1])))
    thickness = min(KERNEL_THICKNESS, source.size.thickness)
    size = BoxSize(thickness=thickness, height=height, depth=depth)
    x = source.x + source.size.thickness - thickness + depth * 0.3
    y = source.y + (source.size.height - height) * 0.4
    aim = (target.x + target.size.thickness * 0.5, target.y + target.size.height * 0.45)
    return Kernel(source=source.id, x=x, y=y, size=size, target=aim)


def _arrows(boxes: tuple[Box, ...], plan: _Plan) -> tuple[Arrow, ...]:
    by_id = {box.id: box for box in boxes}
    joins = {dst for dst, sources in _predecessors(plan).items() if len(sources) > 1}
    arrows = []
    for src, dst in plan.edges:
        a, b = by_id[src], by_id[dst]
        if b.kernel is not None and b.kernel.source == src:
            continue  # the kernel's lines show this step
        skip = b.column - a.column > 1 and a.lane == b.lane
        path = _skip_path(a, b, boxes) if skip else _step_path(a, b, into_join=dst in joins)
        arrows.append(Arrow(src=src, dst=dst, skip=skip, path=path))
    return tuple(arrows)


def _step_path(a: Box, b: Box, *, into_join: bool) -> str:
    """Straight along a lane; between lanes, along the source's lane and bending at the end into a join (a branch
    coming back), else bending at the start (a branch leaving), so the bend stays in a gap between columns."""
    x0, y0 = a.x + a.size.thickness + a.size.depth / 2, a.y + a.size.height / 2 - a.size.depth / 2
    x1, y1 = b.x - 2, b.y + b.size.height / 2
    if abs(y0 - y1) < 1:
        return f"M {x0:.1f} {y0:.1f} L {x1:.1f} {y1:.1f}"
    bend = min(BEND, x1 - x0)
    start, end = (x1 - bend, x1) if into_join else (x0, x0 + bend)
    middle = (start + end) / 2
    return (f"M {x0:.1f} {y0:.1f} L {start:.1f} {y0:.1f} C {middle:.1f} {y0:.1f} {middle:.1f} {y1:.1f} "
            f"{end:.1f} {y1:.1f} L {x1:.1f} {y1:.1f}")


def _skip_path(a: Box, b: Box, boxes: tuple[Box, ...]) -> str:
    """Over the boxes between, from the source's top to the target's top."""
    between = [box for box in boxes if a.column <= box.column <= b.column and box.lane == a.lane]
    peak = min(box.top for box in between) - SKIP_RISE
    x0, y0 = a.x + a.size.thickness / 2 + a.size.depth / 2, a.top
    x1, y1 = b.x + b.size.thickness / 2 + b.size.depth / 2, b.top - 2
    return f"M {x0:.1f} {y0:.1f} C {x0:.1f} {peak:.1f} {x1:.1f} {peak:.1f} {x1:.1f} {y1:.1f}"


def _brackets(boxes: tuple[Box, ...], plan: _Plan) -> tuple[Bracket, ...]:
    brackets = []
    for group, node in plan.runs:
        inside = [box for box in boxes if box.id.startswith(group + ".")]
        if not inside:
            continue
        columns = {box.column for box in inside}
        below = max(_label_bottom(box) for box in boxes if box.column in columns)
        brackets.append(Bracket(groups=node.groups, label=f"{node.type} x{node.repeat}  ({node.title})",
                                x0=min(box.x for box in inside), x1=max(box.right for box in inside), y=below + 8))
    return tuple(brackets)


def _label_right(box: Box) -> float:
    centre = box.x + (box.size.thickness + box.size.depth) / 2
    return max(box.right, centre + CHAR_WIDTH * max(len(line) for line in box.label) / 2)


def _label_bottom(box: Box) -> float:
    return box.bottom + LINE_HEIGHT * len(box.label) + 4


# --- the figure ----------------------------------------------------------------------------------------------------

def layout(graph: Graph, *, state: FoldState | None = None) -> PaperFigure:
    """The laid-out figure of a graph (a spec's, the zoo's or a traced model's).

    By default, the graph diagram's fold state with its folded groups opened, a run of identical blocks drawn once;
    a fold state given (`fold_state(report, depth=1)`) is drawn as it is, each closed group one box.

    >>> from archviz import load
    >>> figure = layout(load("lenet"))
    >>> [box.id for box in figure.boxes]
    ['input', 'conv1', 'pool1', 'conv2', 'pool2', 'fc1', 'fc2', 'fc3']
    >>> figure.box("conv1").label
    ('conv2d 6 5x5', '+ tanh', '6x28x28')
    """
    report = analyze(graph)
    diagram = collect(report, state if state is not None else fold_state(report, show_a_join=False))
    plan = _plan(report, diagram, opened=frozenset()) if state is not None else _opened_plan(report, diagram)
    column = _columns(plan)
    boxes = _with_kernels(_boxes(plan, column, _lanes(plan, column)), plan)
    arrows, brackets = _arrows(boxes, plan), _brackets(boxes, plan)
    title = f"{report.model}: {human(report.totals.params)} params, {human(report.totals.macs)} MACs"
    return PaperFigure(model=report.model, title=title, boxes=boxes, arrows=arrows, brackets=brackets,
                       view=_view(boxes, brackets))


def _opened_plan(report: Report, diagram: Diagram) -> _Plan:
    """Every folded group opened, then the largest closed again, one at a time, until the figure has MAX_BOXES."""
    opened = [node for node in diagram.nodes if node.is_group]
    plan = _plan(report, diagram, opened=frozenset(node.id for node in opened))
    while len(plan.items) > MAX_BOXES and opened:
        opened.remove(max(reversed(opened), key=lambda node: len(node.members) // node.repeat))
        plan = _plan(report, diagram, opened=frozenset(node.id for node in opened))
    return plan


def _view(boxes: tuple[Box, ...], brackets: tuple[Bracket, ...]) -> tuple[float, float, float, float]:
    left = min(box.x for box in boxes) - MARGIN
    right = max(max(_label_right(box) for box in boxes), max((b.x1 for b in brackets), default=0.0)) + MARGIN
    top = min(box.top for box in boxes) - SKIP_RISE - 2 * LINE_HEIGHT - MARGIN
    bottom = max(max(_label_bottom(box) for box in boxes), max((b.y + 2 * LINE_HEIGHT for b in brackets),
                                                                default=0.0)) + MARGIN
    return (round(left, 1), round(top, 1), round(right - left, 1), round(bottom - top, 1))


# --- SVG -----------------------------------------------------------------------------------------------------------

def to_svg(figure: PaperFigure) -> str:
    """The figure as SVG text: one <g> per box (its id "box:PATH", its layers in data-members and a <title>), then
    the arrows, brackets and title; plain shapes and text an editor (Inkscape, Illustrator) opens as they are.

    >>> from archviz import load
    >>> to_svg(layout(load("lenet"))).startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    True
    """
    left, top, width, height = figure.view
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{left} {top} {width} {height}" width="{width}" '
        f'height="{height}" font-family="{FONT}" font-size="{FONT_SIZE:g}">',
        f'<title>{escape(figure.title)}</title>',
        '<defs><marker id="arrowhead" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555555"/></marker></defs>',
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left + MARGIN}" y="{top + MARGIN + FONT_SIZE}" font-size="{FONT_SIZE + 2:g}" '
        f'font-weight="bold">{escape(figure.title)}</text>',
    ]
    out += [_svg_arrow(arrow) for arrow in figure.arrows if not arrow.skip]
    out += [_svg_box(box) for box in figure.boxes]
    out += [_svg_kernel(box.kernel) for box in figure.boxes if box.kernel is not None]
    out += [_svg_arrow(arrow) for arrow in figure.arrows if arrow.skip]
    out += [_svg_bracket(bracket) for bracket in figure.brackets]
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _shade(colour: str, factor: float) -> str:
    """A colour lighter (factor > 1, towards white) or darker (factor < 1)."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(c + (255 - c) * (factor - 1)) if factor > 1 else round(c * factor) for c in rgb]
    return "#" + "".join(f"{min(255, max(0, c)):02x}" for c in mixed)


def _cuboid(x: float, y: float, size: BoxSize, colour: str, stroke: str = "#555555") -> list[str]:
    """Front, top and side faces of a box whose front face's top left corner is (x, y)."""
    t, h, d = size.thickness, size.height, size.depth
    faces = (
        (((x, y), (x + t, y), (x + t, y + h), (x, y + h)), colour),
        (((x, y), (x + d, y - d), (x + t + d, y - d), (x + t, y)), _shade(colour, 1.4)),
        (((x + t, y), (x + t + d, y - d), (x + t + d, y + h - d), (x + t, y + h)), _shade(colour, 0.8)),
    )
    return [f'<polygon points="{" ".join(f"{px:.1f},{py:.1f}" for px, py in corners)}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="0.7" stroke-linejoin="round"/>' for corners, fill in faces]


def _svg_box(box: Box) -> str:
    colour = COLOURS.get(box.kind, "#ffffff")
    if box.kind == "input":
        colour = "#eeeeee"
    centre = box.x + (box.size.thickness + box.size.depth) / 2
    text = [f'<text x="{centre:.1f}" y="{box.bottom + LINE_HEIGHT * (i + 1):.1f}" text-anchor="middle" '
            f'fill="{"#444444" if i else "#000000"}">{escape(line)}</text>' for i, line in enumerate(box.label)]
    return "\n".join([
        f'<g class="box" id={quoteattr("box:" + box.id)} data-kind="{box.kind}" '
        f'data-members={quoteattr(" ".join(box.members))}>',
        f'<title>{escape(", ".join(box.members))}</title>',
        *_cuboid(box.x, box.y, box.size, colour), *text, "</g>",
    ])


def _svg_kernel(kernel: Kernel) -> str:
    x, y, size = kernel.x, kernel.y, kernel.size
    corners = ((x + size.thickness, y), (x + size.thickness, y + size.height),
               (x + size.thickness + size.depth, y - size.depth))
    lines = [f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{kernel.target[0]:.1f}" y2="{kernel.target[1]:.1f}" '
             f'stroke="#777777" stroke-width="0.6"/>' for cx, cy in corners]
    return "\n".join(['<g class="kernel">', *_cuboid(x, y, size, "#fdd49e", stroke="#8c510a"), *lines, "</g>"])


def _svg_arrow(arrow: Arrow) -> str:
    colour, css = ("#b2182b", "skip") if arrow.skip else ("#555555", "step")
    return (f'<path class="{css}" d="{arrow.path}" fill="none" stroke="{colour}" stroke-width="1.1" '
            f'marker-end="url(#arrowhead)" data-src={quoteattr(arrow.src)} data-dst={quoteattr(arrow.dst)}/>')


def _svg_bracket(bracket: Bracket) -> str:
    x0, x1, y = bracket.x0, bracket.x1, bracket.y
    return (f'<g class="repeat" data-groups={quoteattr(" ".join(bracket.groups))}>'
            f'<path d="M {x0:.1f} {y - 5:.1f} L {x0:.1f} {y:.1f} L {x1:.1f} {y:.1f} L {x1:.1f} {y - 5:.1f}" '
            f'fill="none" stroke="#333333" stroke-width="1"/>'
            f'<text x="{(x0 + x1) / 2:.1f}" y="{y + LINE_HEIGHT:.1f}" text-anchor="middle" font-weight="bold">'
            f'{escape(bracket.label)}</text></g>')


# --- PNG -----------------------------------------------------------------------------------------------------------

def to_png(svg: str, *, scale: float = 2.0) -> bytes:
    """The SVG rasterised by Chromium through Playwright (the browser the HTML report's tests use): it draws SVG as
    every browser does, where Graphviz here cannot read an SVG and no SVG rasteriser (cairosvg, rsvg) is installed.
    """
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        raise MissingDependencyError(
            "writing a paper-style PNG needs Playwright and Chromium: pip install playwright, then "
            "playwright install chromium (or apt-get install chromium); or write .svg") from None
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(device_scale_factor=scale)
                page.set_content(f'<html><body style="margin:0">{svg}</body></html>')
                return page.locator("svg").first.screenshot(type="png")
            finally:
                browser.close()
    except Error as error:
        raise MissingDependencyError(f"Chromium could not draw the PNG ({str(error).splitlines()[0]}): "
                                     "playwright install chromium, or write .svg") from None


def draw_paper(graph: Graph, fmt: PaperFormat | str = PaperFormat.SVG, *, state: FoldState | None = None) -> bytes:
    """One call from a Graph to a file's bytes, SVG or PNG.

    >>> from archviz import load
    >>> draw_paper(load("lenet")).startswith(b"<svg")
    True
    """
    fmt = str(fmt).lower()
    if fmt not in tuple(PaperFormat):
        raise ArchvizError(f"a paper-style figure is written as .svg or .png, not .{fmt}")
    svg = to_svg(layout(graph, state=state))
    return svg.encode("utf-8") if fmt == PaperFormat.SVG else to_png(svg)
