"""DOT text for a collected Diagram: one box per node, coloured by layer kind, clusters for expanded groups, a legend.

Plain text out, no graphviz import: `archviz.diagram.render` turns it into SVG, PNG or PDF. Node ids are the
layer and group paths, and each node carries an SVG id ("node:layer3.1"), a class ("layer conv", "group") and a
tooltip, so a page can script the SVG. Everything taken from the spec is escaped (HTML-like labels, quoted strings).
"""

from __future__ import annotations

import enum
import re
import textwrap

from archviz.diagram.collect import Diagram, DiagramCluster, DiagramNode
from archviz.errors import ArchvizError
from archviz.format import exact, human, shape
from archviz.ops.base import OpKind


class RankDir(enum.StrEnum):
    TB = "TB"  # top to bottom
    LR = "LR"  # left to right


# Fill colours by OpKind value (pastel, told apart without relying on red/green alone), then the two node styles
# that are not layers.
COLOURS = {
    OpKind.CONV: "#c6dbef",
    OpKind.POOL: "#c7e9c0",
    OpKind.NORM: "#fff2b3",
    OpKind.ACTIVATION: "#fdd0a2",
    OpKind.LINEAR: "#dadaeb",
    OpKind.JOIN: "#fcbba1",
    OpKind.RESHAPE: "#e5e5e5",
    OpKind.REGULARIZATION: "#f2d4e6",
    "group": "#f7f7f7",
    "input": "#ffffff",
}
FONT = "Helvetica,Arial,sans-serif"


class Cost(enum.StrEnum):
    """What a diagram's fill colour can show instead of the layer kind: each box's share of the largest box's."""

    MACS = "macs"
    PARAMS = "params"
    MEMORY = "memory"  # its layers' output memory
    TIME = "time"  # its layers' predicted time on a device (the report needs one: inspect(..., device=...))


# light to dark orange as the share grows, after ColorBrewer's sequential "Oranges" (colorbrewer2.org), its darkest
# steps left out so that the labels' black text stays readable on every box
COST_PALETTE = ("#fff5eb", "#fee0c2", "#fdc48f", "#fda35c", "#f98232", "#ee6316")
COST_TEXT = {Cost.MACS: "MACs", Cost.PARAMS: "params", Cost.MEMORY: "output memory", Cost.TIME: "predicted time"}
WRAP = 40  # characters per label line; block arguments (an inception module's six widths) wrap at commas


def to_dot(diagram: Diagram, *, rankdir: RankDir | str = RankDir.TB, clusters: bool = True,
           legend: bool = True, cost: Cost | str | None = None) -> str:
    """The DOT text of a diagram, in spec order (the same diagram gives the same text); with a cost, each box is
    filled by its share of the largest box's cost (MACs, params, output memory or predicted time), with a legend.

    >>> from archviz import inspect
    >>> from archviz.diagram.collect import collect
    >>> text = to_dot(collect(inspect("lenet")))
    >>> print(next(line for line in text.splitlines() if line.startswith('  "conv1" -> ')))
      "conv1" -> "tanh1" [id="edge:conv1->tanh1"];
    """
    if str(rankdir).upper() not in RankDir.__members__:
        raise ArchvizError(f"rankdir must be TB or LR, got {rankdir!r}")
    rankdir = RankDir(str(rankdir).upper())
    fills = _cost_fills(diagram, Cost(cost)) if cost is not None else {}
    out = [
        f"digraph {_quote(diagram.model)} {{",
        f'  graph [rankdir={rankdir.value}, fontname="{FONT}", fontsize=12, labelloc=t, labeljust=l, '
        f'nodesep=0.25, ranksep=0.3, newrank=true, id={_quote("diagram:" + diagram.model)}, class="archviz-diagram", '
        f'label=<{_title(diagram)}>];',
        f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize=10, margin="0.1,0.04", '
        'penwidth=0.8, color="#555555"];',
        '  edge [arrowsize=0.6, color="#555555", penwidth=0.9];',
    ]
    children: dict[str | None, list[DiagramCluster]] = {}
    for cluster in diagram.clusters if clusters else ():
        children.setdefault(cluster.parent, []).append(cluster)
    by_cluster: dict[str | None, list[DiagramNode]] = {}
    for node in diagram.nodes:
        by_cluster.setdefault(node.cluster if clusters else None, []).append(node)
    rows = _sibling_rows(diagram, clusters=clusters, rankdir=rankdir)
    out.extend(_scope_lines(None, children, by_cluster, rows, _positions(diagram, clusters=clusters), fills,
                            indent="  "))
    for edge in diagram.edges:
        label = f", label=<{_html(edge.label)}>" if edge.label else ""
        out.append(f'  {_quote(edge.src)} -> {_quote(edge.dst)} [id={_quote(f"edge:{edge.src}->{edge.dst}")}{label}];')
    if legend:
        out.extend(_cost_legend(diagram, Cost(cost), rankdir) if cost is not None else _legend(diagram, rankdir))
    out.append("}")
    return "\n".join(out) + "\n"


def _scope_lines(parent: str | None, children, by_cluster, rows, position, fills, *, indent: str) -> list[str]:
    """The nodes and expanded groups (clusters) directly in `parent`, in spec order, recursively."""
    items = [(position[node.id], "node", node) for node in by_cluster.get(parent, [])]
    items += [(position[cluster.id], "cluster", cluster) for cluster in children.get(parent, [])]
    lines = []
    for _, what, item in sorted(items, key=lambda entry: entry[0]):
        if what == "node":
            lines.append(indent + _node(item, fills.get(item.id)))
            continue
        lines.append(f"{indent}subgraph {_quote('cluster:' + item.id)} {{")
        lines.append(
            f'{indent}  graph [id={_quote("cluster:" + item.id)}, class="expanded", '
            f'label=<{_cluster_label(item)}>, '
            f'tooltip={_quote(_cluster_tooltip(item))}, style="rounded,dashed", color="#888888", '
            'fontsize=10, labeljust=l];'
        )
        lines.extend(_scope_lines(item.id, children, by_cluster, rows, position, fills, indent=indent + "  "))
        lines.append(f"{indent}}}")
    for row in rows.get(parent, []):
        lines.append(f'{indent}{{rank=same; {" -> ".join(_quote(node_id) for node_id in row)} [style=invis];}}')
    return lines


def _positions(diagram: Diagram, *, clusters: bool) -> dict[str, int]:
    """Each node's index in spec order, and each cluster's: that of its first node."""
    position = {node.id: index for index, node in enumerate(diagram.nodes)}
    parent = {cluster.id: cluster.parent for cluster in diagram.clusters}
    for index, node in enumerate(diagram.nodes):
        cluster = node.cluster if clusters else None
        while cluster is not None:
            position.setdefault(cluster, index)
            cluster = parent[cluster]
    return position


def _sibling_rows(diagram: Diagram, *, clusters: bool, rankdir: RankDir) -> dict[str | None, list[tuple[str, ...]]]:
    """Branches side by side in spec order: the consumers of one tensor that sit on one rank in one cluster.

    dot keeps no input order inside a cluster (Graphviz 2.43 reverses it), so an inception module would show
    branch4 ... branch1. A row of invisible edges on one rank fixes the order: dot draws such an edge left to right.
    Only consumers at the same longest-path depth are lined up (a residual add sits lower than its block's first
    conv and keeps its own rank), and only within one cluster: dot orders sibling clusters as it likes. With
    rankdir LR, Graphviz 2.43 turns a row inside a cluster bottom to top (at the top level, top to bottom), so
    those rows are written reversed: the first branch is on top either way.
    """
    order = {node.id: index for index, node in enumerate(diagram.nodes)}
    cluster_of = {node.id: node.cluster if clusters else None for node in diagram.nodes}
    consumers: dict[str, list[str]] = {node.id: [] for node in diagram.nodes}
    for edge in diagram.edges:
        consumers[edge.src].append(edge.dst)
    depth = _longest_path_depth(diagram)
    rows: dict[str | None, list[tuple[str, ...]]] = {}
    for node in diagram.nodes:
        groups: dict[tuple, list[str]] = {}
        for dst in consumers[node.id]:
            if dst in depth:
                groups.setdefault((cluster_of[dst], depth[dst]), []).append(dst)
        for (cluster, _), row in groups.items():
            reverse = rankdir == RankDir.LR and cluster is not None
            row = tuple(sorted(row, key=order.__getitem__, reverse=reverse))
            if len(row) > 1 and row not in rows.get(cluster, []):
                rows.setdefault(cluster, []).append(row)
    return rows


def _longest_path_depth(diagram: Diagram) -> dict[str, int]:
    """Each node's longest distance from the input (Kahn's topological walk; nodes on a cycle are left out)."""
    waiting = {node.id: 0 for node in diagram.nodes}
    consumers: dict[str, list[str]] = {node.id: [] for node in diagram.nodes}
    for edge in diagram.edges:
        waiting[edge.dst] += 1
        consumers[edge.src].append(edge.dst)
    depth = {node_id: 0 for node_id, count in waiting.items() if count == 0}
    ready = list(depth)
    while ready:
        node_id = ready.pop()
        for dst in consumers[node_id]:
            depth[dst] = max(depth.get(dst, 0), depth[node_id] + 1)
            waiting[dst] -= 1
            if waiting[dst] == 0:
                ready.append(dst)
    return {node_id: value for node_id, value in depth.items() if waiting[node_id] == 0}


def _node(node: DiagramNode, fill: str | None = None) -> str:
    attrs = [
        f"id={_quote('node:' + node.id)}",
        f"class={_quote('group' if node.is_group else node.kind if node.kind == 'input' else 'layer ' + node.kind)}",
        f"label=<{_node_label(node)}>",
        f"tooltip={_quote(_node_tooltip(node))}",
        f'fillcolor="{fill or COLOURS.get(node.kind, "#ffffff")}"',
    ]
    if node.is_group:
        attrs.append("penwidth=1.4")
        if node.repeat > 1:
            attrs.append("peripheries=2")  # drawn as a stack: one box standing for several
    if node.kind == "input":
        attrs.append("penwidth=1.4")
    return f"{_quote(node.id)} [{', '.join(attrs)}];"


def _node_label(node: DiagramNode) -> str:
    rows = []
    if node.kind == "input":
        rows.append(f"<B>input</B>  {_html(shape(node.out_shape))}")
        return _table(rows)
    if node.is_group:
        rows.append(f"<B>{_html(node.title)}</B>")
        kind = _html(_group_kind(node.type)) + (f"  <B>x{node.repeat}</B>" if node.repeat > 1 else "")
        if kind:
            rows.append(kind)
        rows.extend(_html(line) for line in _wrap(node.detail))
    else:
        same = node.type == node.title.rsplit(".", 1)[-1]  # "relu  relu" says it twice
        rows.append(f"<B>{_html(node.title)}</B>" + ("" if same else f"  {_html(node.type)}"))
        if node.detail:
            rows.append(_html(node.detail))
    rows.append(_html(shape(node.out_shape)))
    figures = _figures(node.params, node.macs, node.layer_count if node.is_group else None)
    if figures:
        rows.append(f'<FONT POINT-SIZE="8" COLOR="#444444">{_html(figures)}</FONT>')
    return _table(rows)


def _cluster_label(cluster: DiagramCluster) -> str:
    """Two short lines: edges entering the frame cross its label, so the details live in the tooltip."""
    kind = _group_kind(cluster.type)
    detail = cluster.detail if not kind or len(cluster.detail) <= WRAP // 2 else ""
    head = "  ".join(part for part in (f"<B>{_html(cluster.title)}</B>", _html(kind), _html(detail)) if part)
    figures = _figures(cluster.params, cluster.macs, None)
    tail = f'<BR ALIGN="LEFT"/><FONT POINT-SIZE="8" COLOR="#444444">{_html(figures)}</FONT>' if figures else ""
    return head + tail + '<BR ALIGN="LEFT"/>'


def _group_kind(type_: str) -> str:
    """A block's name; nothing for a plain sequential or repeat, which the detail line describes."""
    return "" if type_ in ("sequential", "repeat") else type_


def _title(diagram: Diagram) -> str:
    head = f"<B>{_html(diagram.model)}</B>"
    description = _wrap(diagram.description, width=2 * WRAP + 20)
    totals = (f"input {shape(diagram.input_shape)}, {human(diagram.params)} params, {human(diagram.macs)} MACs, "
              f"{len(diagram.nodes) - 1} boxes")
    lines = [head] + [_html(line) for line in description] + [f'<FONT POINT-SIZE="10">{_html(totals)}</FONT>']
    return '<BR ALIGN="LEFT"/>'.join(lines) + '<BR ALIGN="LEFT"/>'


def _legend(diagram: Diagram, rankdir: RankDir) -> list[str]:
    kinds = [kind for kind in COLOURS if kind != "input" and any(node.kind == kind for node in diagram.nodes)]
    if not kinds:
        return []
    names = {kind: "folded group" if kind == "group" else kind for kind in kinds}
    cells = [f'<TD BGCOLOR="{COLOURS[kind]}" BORDER="1" COLOR="#888888">{_html(names[kind])}</TD>' for kind in kinds]
    # a row across the top when the flow goes down, a column when it goes right: either way beside the input
    rows = [cells] if rankdir == RankDir.TB else [[cell] for cell in cells]
    return _legend_node(rows, "layer kinds")


def cost_of(node: DiagramNode, cost: Cost) -> float:
    if cost == Cost.TIME:
        if node.seconds is None and node.kind != "input":
            raise ArchvizError("colouring by predicted time needs a device: name one (--device h100, or cpu)")
        return node.seconds or 0.0
    return float({Cost.MACS: node.macs, Cost.PARAMS: node.params, Cost.MEMORY: node.activation_bytes}[cost]
                 if node.kind != "input" else 0)


def _cost_fills(diagram: Diagram, cost: Cost) -> dict[str, str]:
    """Each box's fill: the palette step of its share of the largest box's cost (white where it has none)."""
    values = {node.id: cost_of(node, cost) for node in diagram.nodes}
    largest = max(values.values(), default=0.0)
    return {node_id: _step_colour(value / largest) if largest and value else "#ffffff"
            for node_id, value in values.items()}


def _step_colour(share: float) -> str:
    return COST_PALETTE[min(int(share * len(COST_PALETTE)), len(COST_PALETTE) - 1)]


def cost_fills(diagram: Diagram, cost: Cost | str) -> dict[str, str]:
    """Each box's fill colour for `cost`, as to_dot(diagram, cost=cost) draws it: for a page that recolours an SVG
    drawn by kind instead of drawing it again."""
    return _cost_fills(diagram, Cost(cost))


def cost_key(diagram: Diagram, cost: Cost | str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The cost legend's title and its steps, (fill colour, text) from "none" to the largest share, as to_dot draws
    them."""
    cost = Cost(cost)
    largest = max((cost_of(node, cost) for node in diagram.nodes), default=0.0)
    steps = len(COST_PALETTE)
    title = f"{COST_TEXT[cost]}, share of the largest box's ({_cost_text(largest, cost)})"
    return title, (("#ffffff", "none"), *((colour, _share_text(i, steps)) for i, colour in enumerate(COST_PALETTE)))


def _cost_legend(diagram: Diagram, cost: Cost, rankdir: RankDir) -> list[str]:
    title, key = cost_key(diagram, cost)
    cells = [f'<TD BGCOLOR="{colour}" BORDER="1" COLOR="#888888">{_html(text)}</TD>' for colour, text in key]
    rows = [[f'<TD COLSPAN="{len(cells)}">{_html(title)}</TD>'], cells] if rankdir == RankDir.TB \
        else [[f"<TD>{_html(title)}</TD>"]] + [[cell] for cell in cells]
    return _legend_node(rows, title)


def _legend_node(rows: list[list[str]], tooltip: str) -> list[str]:
    """The legend: a table of cells in an invisible cluster beside the input, a row across the top when the flow
    goes down, a column when it goes right."""
    body = "".join("<TR>" + "".join(row) + "</TR>" for row in rows)
    table = f'<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="3">{body}</TABLE>'
    return [
        '  subgraph "cluster:archviz:legend" {',
        '    graph [id="cluster:archviz:legend", class="legend", label="", style="invis"];',
        f'    "archviz:legend" [id="diagram:legend", shape=plaintext, style="", fontsize=9, label=<{table}>, '
        f'tooltip={_quote(tooltip)}];',
        "  }",
    ]


def _share_text(step: int, steps: int) -> str:
    low, high = round(100 * step / steps), round(100 * (step + 1) / steps)
    return f"{low}-{high}%"


def _cost_text(value: float, cost: Cost) -> str:
    from archviz.format import seconds_text, size_bytes

    if cost == Cost.TIME:
        return seconds_text(value)
    if cost == Cost.MEMORY:
        return size_bytes(int(value))
    return f"{human(int(value))} {COST_TEXT[cost]}"


def _figures(params: int, macs: int, layer_count: int | None) -> str:
    figures = [f"{human(value)} {name}" for name, value in (("params", params), ("MACs", macs)) if value]
    if layer_count is not None:
        figures.append(f"{layer_count} layer" + ("s" if layer_count != 1 else ""))
    return ", ".join(figures)


def _node_tooltip(node: DiagramNode) -> str:
    if node.kind == "input":
        return f"input {shape(node.out_shape)}"
    head = f"{node.title}  {node.type}" + (f" x{node.repeat}" if node.repeat > 1 else "")
    figures = f"params {exact(node.params)}, MACs {exact(node.macs)}" + (
        f", {node.layer_count} layers" if node.is_group else "")
    groups = "groups " + ", ".join(node.groups) if node.repeat > 1 else ""
    return "\n".join(line for line in (head, node.detail, shape(node.out_shape), figures, groups, node.note) if line)


def _cluster_tooltip(cluster: DiagramCluster) -> str:
    return "\n".join(line for line in (
        f"{cluster.title}  {cluster.type}", cluster.detail, shape(cluster.out_shape),
        f"params {exact(cluster.params)}, MACs {exact(cluster.macs)}, {cluster.layer_count} layers",
    ) if line)


def _table(rows: list[str]) -> str:
    body = "".join(f"<TR><TD>{row}</TD></TR>" for row in rows)
    return f'<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{body}</TABLE>'


def _wrap(text: str, *, width: int = WRAP) -> list[str]:
    return textwrap.wrap(_plain(text), width=width, break_on_hyphens=False) if text else []


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _plain(text: str) -> str:
    """One line of printable text: newlines and tabs become spaces, other control characters go."""
    return _CONTROL.sub("", str(text).replace("\r\n", " ").replace("\n", " ").replace("\t", " "))


def _html(text: str) -> str:
    """Text for an HTML-like label: the five XML special characters as entities."""
    return (_plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def _quote(text: str) -> str:
    """A DOT quoted string; newlines become DOT's \\n, backslashes and quotes are escaped."""
    lines = [_CONTROL.sub("", line) for line in str(text).replace("\r\n", "\n").split("\n")]
    return '"' + "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines) + '"'
