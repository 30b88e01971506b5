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
from archviz.render.format import exact, human, shape


class RankDir(enum.StrEnum):
    TB = "TB"  # top to bottom
    LR = "LR"  # left to right


# Fill colours by OpKind value (pastel, told apart without relying on red/green alone), then the two node styles
# that are not layers.
COLOURS = {
    "conv": "#c6dbef",
    "pool": "#c7e9c0",
    "norm": "#fff2b3",
    "activation": "#fdd0a2",
    "linear": "#dadaeb",
    "join": "#fcbba1",
    "reshape": "#e5e5e5",
    "regularization": "#f2d4e6",
    "group": "#f7f7f7",
    "input": "#ffffff",
}
FONT = "Helvetica,Arial,sans-serif"
WRAP = 40  # characters per label line; block arguments (an inception module's six widths) wrap at commas


def to_dot(diagram: Diagram, *, rankdir: RankDir | str = RankDir.TB, clusters: bool = True,
           legend: bool = True) -> str:
    """The DOT text of a diagram, in spec order (the same diagram gives the same text).

    >>> from archviz import inspect
    >>> from archviz.diagram.collect import collect
    >>> text = to_dot(collect(inspect("lenet")))
    >>> '"conv1" [id="node:conv1"' in text, '"conv1" -> "pool1"' in text or '"conv1" -> "relu1"' in text
    (True, True)
    """
    rankdir = RankDir(str(rankdir).upper())
    out = [
        f"digraph {_quote(diagram.model)} {{",
        f'  graph [rankdir={rankdir.value}, fontname="{FONT}", fontsize=12, labelloc=t, labeljust=l, '
        f'nodesep=0.25, ranksep=0.3, newrank=true, ordering=out, id="diagram", label=<{_title(diagram)}>];',
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
    out.extend(_scope_lines(None, children, by_cluster, indent="  "))
    for edge in diagram.edges:
        label = f", label=<{_html(edge.label)}>" if edge.label else ""
        out.append(f'  {_quote(edge.src)} -> {_quote(edge.dst)} [id={_quote(f"edge:{edge.src}->{edge.dst}")}{label}];')
    if legend:
        out.extend(_legend(diagram))
    out.append("}")
    return "\n".join(out) + "\n"


def _scope_lines(parent: str | None, children, by_cluster, *, indent: str) -> list[str]:
    """The nodes directly in `parent`, then each expanded group inside it as a cluster, recursively."""
    lines = [indent + _node(node) for node in by_cluster.get(parent, [])]
    for cluster in children.get(parent, []):
        lines.append(f"{indent}subgraph {_quote('cluster:' + cluster.id)} {{")
        lines.append(
            f'{indent}  graph [id={_quote("cluster:" + cluster.id)}, class="cluster", label=<{_cluster_label(cluster)}>, '
            f'tooltip={_quote(_cluster_tooltip(cluster))}, style="rounded,dashed", color="#888888", '
            'fontsize=10, labeljust=l];'
        )
        lines.extend(_scope_lines(cluster.id, children, by_cluster, indent=indent + "  "))
        lines.append(f"{indent}}}")
    return lines


def _node(node: DiagramNode) -> str:
    attrs = [
        f"id={_quote('node:' + node.id)}",
        f"class={_quote('group' if node.is_group else node.kind if node.kind == 'input' else 'layer ' + node.kind)}",
        f"label=<{_node_label(node)}>",
        f"tooltip={_quote(_node_tooltip(node))}",
        f'fillcolor="{COLOURS.get(node.kind, "#ffffff")}"',
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
        rows.append(f"<B>{_html(node.title)}</B>  {_html(node.type)}")
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


def _legend(diagram: Diagram) -> list[str]:
    kinds = [kind for kind in COLOURS if kind != "input" and any(node.kind == kind for node in diagram.nodes)]
    if not kinds:
        return []
    cells = "".join(
        f'<TD BGCOLOR="{COLOURS[kind]}" BORDER="1" COLOR="#888888">{_html("folded group" if kind == "group" else kind)}</TD>'
        for kind in kinds
    )
    table = f'<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="3"><TR>{cells}</TR></TABLE>'
    return [
        '  subgraph "cluster:legend" {',
        '    graph [id="cluster:legend", class="legend", label="", style="invis"];',
        f'    "legend" [id="legend", shape=plaintext, style="", fontsize=9, label=<{table}>, tooltip="layer kinds"];',
        "  }",
    ]


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
