"""What a diagram draws, for one fold state: nodes (layers, folded groups, merged repeats), edges and clusters.

Collecting is separate from emitting DOT (micrograd's `trace` then `draw_dot`): `collect()` reads a Report and its
Graph and returns a frozen `Diagram`; `archviz.diagram.dot.to_dot()` writes it out.

Folding. Every scope of the graph (a sequential, a block invocation, the copies of a repeat) is either expanded,
its members drawn inside a cluster, or folded into one node with its totals. Consecutive sibling groups that are
the same block with the same arguments and the same layers, each feeding the next, fold into one node with a
repeat count (ResNet-152's layer3.1 ... layer3.35: "x35"); the first block of a stage, which strides or projects,
differs and stays apart. Edges between drawn nodes come from the layers' own edges, so residual skips and parallel
branches stay a graph.

Node ids are layer or group paths ("layer3.2.conv2", "layer3.0"), "first..last" for a merged run
("layer3.1..layer3.35") and "input" for the input: the same id in every fold state, so a viewer can ask for the
state with a clicked group expanded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from archviz.analysis.fold import predicted_seconds
from archviz.analysis.report import LayerStats, Report
from archviz.errors import ArchvizError, UnknownNameError, closest
from archviz.graph.ir import INPUT, Graph, Scope, Shape
from archviz.ops.base import OpKind

# Most nodes a default diagram draws: about what a screen shows legibly at the labels' size. Deeper levels are
# opened while the diagram stays within it (ResNet-152 opens its stages, GoogLeNet its inception modules).
DEFAULT_BUDGET = 60
MERGED = ".."  # joins the first and last group paths of a merged run: "layer3.1..layer3.35"
KEY_KINDS = (OpKind.CONV, OpKind.POOL, OpKind.LINEAR)  # the layers a folded group's one-line summary names (not bn, relu)


@dataclass(frozen=True)
class DiagramNode:
    """One box: a layer, a folded group, a run of identical folded groups (repeat > 1), or the input."""

    id: str
    title: str  # the path, or "layer3.1 ... layer3.35"
    type: str  # op name, block name, "sequential", "repeat" or "input"
    detail: str  # op summary ("64 3x3 s2 p1") or the block's arguments ("planes=256, stride=2")
    kind: str  # an OpKind value; "group" for folded groups; "input"
    out_shape: Shape
    params: int = 0
    macs: int = 0
    repeat: int = 1
    layer_count: int = 1
    is_group: bool = False
    groups: tuple[str, ...] = ()  # the group paths folded into this node (several for a merged run)
    members: tuple[str, ...] = ()  # the layer paths it stands for
    cluster: str | None = None  # the expanded group it is drawn in
    note: str | None = None
    activation_bytes: int = 0  # its layers' outputs, for the batch
    seconds: float | None = None  # its layers' predicted time on the report's device; None without one

    @property
    def lines(self) -> tuple[str, ...]:
        """Label text, one entry a line: what it is, its arguments, output shape, then params and MACs."""
        from archviz.format import human, shape

        head = f"{self.title}  {self.type}" if self.type and self.type != self.title else self.title
        if self.repeat > 1:
            head += f" x{self.repeat}"
        figures = [f"{human(value)} {name}" for name, value in (("params", self.params), ("MACs", self.macs)) if value]
        if self.is_group:
            figures.append(f"{self.layer_count} layers")
        return tuple(line for line in (head, self.detail, shape(self.out_shape), ", ".join(figures)) if line)


@dataclass(frozen=True)
class DiagramEdge:
    src: str
    dst: str
    label: str | None = None


@dataclass(frozen=True)
class DiagramCluster:
    """An expanded group: a frame around its members, labelled with its totals."""

    id: str  # the group path
    title: str
    type: str
    detail: str
    parent: str | None
    out_shape: Shape
    params: int
    macs: int
    layer_count: int


@dataclass(frozen=True)
class Diagram:
    model: str
    description: str
    input_shape: Shape
    params: int
    macs: int
    nodes: tuple[DiagramNode, ...]
    edges: tuple[DiagramEdge, ...]
    clusters: tuple[DiagramCluster, ...]
    expanded: frozenset[str]

    def node(self, node_id: str) -> DiagramNode:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise UnknownNameError(f"no node {node_id!r} in this diagram{closest(node_id, [n.id for n in self.nodes])}")

    def incoming(self, node_id: str) -> list[str]:
        return [edge.src for edge in self.edges if edge.dst == node_id]


@dataclass(frozen=True)
class FoldState:
    """Which groups are expanded; every other group is drawn as one node. merge=False keeps repeats apart."""

    expanded: frozenset[str]
    merge: bool = True


# --- the scope tree ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tree:
    scopes: dict[str, Scope]
    parent: dict[str, str | None]  # scope path -> enclosing scope path
    level: dict[str, int]  # 1 for a top-level group
    ancestors: dict[str, tuple[str, ...]]  # layer path -> enclosing scope paths, outermost first
    members: dict[str, tuple[str, ...]]  # scope path -> its layer paths in spec order
    order: dict[str, int]  # layer path -> spec index


def _tree(graph: Graph) -> _Tree:
    scopes = {scope.path: scope for scope in graph.scopes}

    def enclosing(path: str) -> tuple[str, ...]:
        parts = path.split(".")
        return tuple(p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in scopes)

    parent = {path: (enclosing(path) or (None,))[-1] for path in scopes}
    level = {path: len(enclosing(path)) + 1 for path in scopes}
    ancestors = {node.name: enclosing(node.name) for node in graph.nodes}
    members: dict[str, list[str]] = {path: [] for path in scopes}
    for node in graph.nodes:
        for scope in ancestors[node.name]:
            members[scope].append(node.name)
    return _Tree(
        scopes={p: s for p, s in scopes.items() if members[p]}, parent=parent, level=level, ancestors=ancestors,
        members={p: tuple(m) for p, m in members.items() if m}, order={n.name: i for i, n in enumerate(graph.nodes)},
    )


# --- fold states ------------------------------------------------------------------------------------------------

def fold_state(report: Report, *, depth: int | None = None, expand: bool = False, expanded: Iterable[str] = (),
               collapsed: Iterable[str] = (), budget: int = DEFAULT_BUDGET, show_a_join: bool = True) -> FoldState:
    """The groups to expand: every one (expand), N levels (depth), or by default as many levels as fit the budget,
    and, with show_a_join, one block more where that would hide every branch and skip (_with_a_join_shown; the
    paper figure, which draws a folded block's skip itself, goes without).

    `expanded` opens more groups on top of that (their enclosing groups too), `collapsed` folds some; both take
    group paths or node ids of a diagram (a merged run "layer3.1..layer3.35" opens its first group).

    >>> from archviz import inspect
    >>> sorted(fold_state(inspect("resnet50"), expanded=["layer3.1"]).expanded)
    ['layer1', 'layer1.0', 'layer2', 'layer3', 'layer3.1', 'layer4']
    """
    if expand and depth is not None:
        raise ArchvizError("--depth and --expand exclude each other: --expand draws every layer")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ArchvizError(f"depth must be a positive integer, got {depth!r}")
    tree = _tree(report.graph)
    if expand:
        chosen = set(tree.scopes)
    elif depth is not None:
        chosen = {path for path in tree.scopes if tree.level[path] < depth}
    else:
        chosen = set(_default_expanded(report, tree, budget))
        if show_a_join:
            chosen = set(_with_a_join_shown(report, tree, frozenset(chosen)))
    for path in map(lambda p: _group_path(p, tree), expanded):
        while path is not None:
            chosen.add(path)
            path = tree.parent[path]
    for path in map(lambda p: _group_path(p, tree), collapsed):
        chosen.discard(path)
    return FoldState(expanded=frozenset(chosen))


def _group_path(name: str, tree: _Tree) -> str:
    path = name.split(MERGED, 1)[0]
    if path not in tree.scopes:
        raise UnknownNameError(f"no group {name!r} to expand or fold{closest(path, tree.scopes)}"
                               + ("" if tree.scopes else " (this model has no groups)"))
    return path


def _default_expanded(report: Report, tree: _Tree, budget: int) -> frozenset[str]:
    """Open groups level by level, all groups of one block at once, largest first, while the diagram fits budget.

    A small network (VGG-16's 41 nodes) is drawn whole; ResNet-152 opens its stages but not their 50 blocks.
    """
    chosen: frozenset[str] = frozenset()
    for level in sorted(set(tree.level.values())):
        classes: dict[str, list[str]] = {}
        for path in tree.scopes:
            if tree.level[path] == level and (tree.parent[path] is None or tree.parent[path] in chosen):
                scope = tree.scopes[path]
                classes.setdefault(scope.block or scope.kind, []).append(path)
        if not classes:
            break
        for paths in sorted(classes.values(), key=lambda ps: -sum(len(tree.members[p]) for p in ps)):
            trial = chosen | frozenset(paths)
            if len(collect(report, FoldState(trial)).nodes) > budget:
                return chosen
            chosen = trial
    return chosen


def _with_a_join_shown(report: Report, tree: _Tree, chosen: frozenset[str]) -> frozenset[str]:
    """A model with branches or skips shows one: where every layer joining two tensors is folded away, the groups
    around the first such layer open, outermost first, until a drawn box takes two inputs (resnet50's first
    bottleneck with its skip, inception_v3's Mixed_5b with its four branches, densenet121's first dense block)."""
    joins = [node.name for node in report.graph.nodes if len(set(node.inputs)) > 1]
    if not joins:
        return chosen
    while not _shows_a_join(collect(report, FoldState(chosen))):
        folded = [path for path in tree.ancestors[joins[0]] if path not in chosen]
        if not folded:
            break
        chosen = chosen | {folded[0]}
    return chosen


def _shows_a_join(diagram: Diagram) -> bool:
    sources: dict[str, set[str]] = {}
    for edge in diagram.edges:
        sources.setdefault(edge.dst, set()).add(edge.src)
    return any(len(found) > 1 for found in sources.values())


# --- collecting -------------------------------------------------------------------------------------------------

def collect(report: Report, state: FoldState | None = None) -> Diagram:
    """The nodes, edges and clusters to draw for a fold state (by default, `fold_state(report)`).

    >>> from archviz import inspect
    >>> report = inspect("resnet152")
    >>> [n.id for n in collect(report).nodes if n.repeat > 1]
    ['layer1.1..layer1.2', 'layer2.1..layer2.7', 'layer3.1..layer3.35', 'layer4.1..layer4.2']
    >>> len(collect(report, fold_state(report, expand=True)).nodes) == len(report.layers) + 1
    True
    """
    state = state if state is not None else fold_state(report)
    graph = report.graph
    tree = _tree(graph)
    stats = {s.name: s for s in report.layers}
    expanded = frozenset(p for p in state.expanded if p in tree.scopes)

    # each layer's drawn item: itself, or the outermost folded group around it
    item_of: dict[str, str] = {}
    for node in graph.nodes:
        folded = [s for s in tree.ancestors[node.name] if s not in expanded]
        item_of[node.name] = folded[0] if folded else node.name

    # items in spec order, each with the expanded group (cluster) it sits in
    items: list[str] = list(dict.fromkeys(item_of[node.name] for node in graph.nodes))
    container = {item: (tree.parent[item] if item in tree.scopes else (tree.ancestors[item] or (None,))[-1])
                 for item in items}

    runs = _merge_runs(items, container, tree, graph) if state.merge else [[item] for item in items]
    node_of: dict[str, str] = {}
    nodes = [DiagramNode(id=INPUT, title=INPUT, type="", detail="", kind="input", out_shape=graph.input_shape)]
    seconds = predicted_seconds(report)
    for run in runs:
        drawn = _group_node(run, tree, stats, container[run[0]], seconds) if run[0] in tree.scopes \
            else _layer_node(stats[run[0]], graph, container[run[0]], seconds)
        nodes.append(drawn)
        for item in run:
            node_of[item] = drawn.id

    def drawn_id(tensor: str) -> str:
        return INPUT if tensor == INPUT else node_of[item_of[tensor]]

    edges: dict[tuple[str, str], None] = {}
    for node in graph.nodes:
        dst = drawn_id(node.name)
        for tensor in node.inputs:
            src = drawn_id(tensor)
            if src != dst:
                edges[(src, dst)] = None
    in_spec_order = sorted(expanded, key=lambda path: tree.order[tree.members[path][0]])
    clusters = tuple(_cluster(path, tree, stats) for path in in_spec_order)
    return Diagram(
        model=report.model, description=report.description, input_shape=graph.input_shape,
        params=report.totals.params, macs=report.totals.macs, nodes=tuple(nodes),
        edges=tuple(DiagramEdge(src, dst) for src, dst in edges), clusters=clusters, expanded=expanded,
    )


def _merge_runs(items: list[str], container: dict, tree: _Tree, graph: Graph) -> list[list[str]]:
    """Consecutive folded sibling groups with one signature, each fed only by the one before, as runs."""
    runs: list[list[str]] = []
    for item in items:
        last = runs[-1][-1] if runs else None
        if (last is not None and item in tree.scopes and last in tree.scopes and container[item] == container[last]
                and _signature(last, tree, graph) == _signature(item, tree, graph)
                and _fed_only_by(item, last, tree, graph)):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _signature(path: str, tree: _Tree, graph: Graph) -> tuple:
    scope = tree.scopes[path]
    layers = tuple(
        (name[len(path):], node.op, repr(sorted(node.attrs.items())), node.in_shapes, node.out_shape)
        for name in tree.members[path] for node in (graph.by_name[name],)
    )
    return scope.kind, scope.block, repr(sorted(scope.args.items())), layers


def _fed_only_by(path: str, previous: str, tree: _Tree, graph: Graph) -> bool:
    inside, before = set(tree.members[path]), set(tree.members[previous])
    outside = {t for name in tree.members[path] for t in graph.by_name[name].inputs if t not in inside}
    return bool(outside) and outside <= before


def _layer_node(stats: LayerStats, graph: Graph, cluster: str | None, seconds: dict | None) -> DiagramNode:
    return DiagramNode(
        id=stats.name, title=stats.name, type=stats.op, detail=stats.summary, kind=stats.kind,
        out_shape=stats.out_shape, params=stats.params, macs=stats.macs, members=(stats.name,), cluster=cluster,
        note=graph.by_name[stats.name].note, activation_bytes=stats.activation_bytes,
        seconds=None if seconds is None else seconds.get(stats.name, 0.0),
    )


def _group_node(run: list[str], tree: _Tree, stats: dict[str, LayerStats], cluster: str | None,
                seconds: dict | None) -> DiagramNode:
    first, last = run[0], run[-1]
    members = tuple(name for path in run for name in tree.members[path])
    title = first if len(run) == 1 else f"{first} ... {last}"
    return DiagramNode(
        id=first if len(run) == 1 else f"{first}{MERGED}{last}", title=title, type=_group_type(first, tree),
        detail=_group_detail(first, tree, stats), kind="group", out_shape=stats[members[-1]].out_shape,
        params=sum(stats[m].params for m in members), macs=sum(stats[m].macs for m in members), repeat=len(run),
        layer_count=len(members), is_group=True, groups=tuple(run), members=members, cluster=cluster,
        activation_bytes=sum(stats[m].activation_bytes for m in members),
        seconds=None if seconds is None else sum(seconds.get(m, 0.0) for m in members),
    )


def _cluster(path: str, tree: _Tree, stats: dict[str, LayerStats]) -> DiagramCluster:
    members = tree.members[path]
    return DiagramCluster(
        id=path, title=path, type=_group_type(path, tree), detail=_group_detail(path, tree, stats),
        parent=tree.parent[path], out_shape=stats[members[-1]].out_shape,
        params=sum(stats[m].params for m in members), macs=sum(stats[m].macs for m in members),
        layer_count=len(members),
    )


def _group_type(path: str, tree: _Tree) -> str:
    scope = tree.scopes[path]
    return scope.block or scope.kind


def _group_detail(path: str, tree: _Tree, stats: dict[str, LayerStats]) -> str:
    """A block's arguments; else, for a sequential or repeat, what it holds."""
    scope = tree.scopes[path]
    key = [stats[m] for m in tree.members[path] if stats[m].kind in KEY_KINDS]
    chain = " → ".join(f"{s.op} {s.summary}".strip() for s in key)
    if 1 <= len(key) <= 2:
        return chain
    if scope.args:
        return ", ".join(f"{key}={value}" for key, value in scope.args.items())
    children = [p for p in tree.scopes if tree.parent[p] == path]
    blocks = list(dict.fromkeys(tree.scopes[c].block or tree.scopes[c].kind for c in children))
    direct = [m for m in tree.members[path] if not any(m.startswith(c + ".") for c in children)]
    if children and not direct and len(blocks) == 1:
        return f"{len(children)} x {blocks[0]}"
    return chain if len(key) <= 3 else ""
