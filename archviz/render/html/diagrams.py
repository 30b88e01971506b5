"""The report's diagram: the default view and the views one or two clicks away from it.

A browser cannot run Graphviz, so each view a click can reach is rendered here: the default fold state; one click
opens a folded block (or folds an open one); a second click opens a block inside the one just opened, and clicking
an open block's frame folds it back. Up to MAX_VIEWS views are rendered (blocks beyond that are not clickable; the
CLI's `archviz diagram --unfold PATH` draws any of them). toggles[view][node id] is the view a click shows.

Each view is drawn once, filled by layer kind; the fills of every cost (MACs, params, memory, and time when the
report has a device) are computed here per view, so the page recolours the SVG's boxes instead of holding one
drawing per cost.
"""

from __future__ import annotations

from archviz.analysis.report import Report
from archviz.diagram import Cost, Diagram, collect, fold_state, render, to_dot
from archviz.diagram.collect import MERGED
from archviz.diagram.dot import COST_TEXT, cost_fills, cost_key
from archviz.render.html.page import DiagramViews

MAX_VIEWS = 24  # each view is one inline SVG (20-120 KB); this bounds a report's size and build time
DEFAULT_VIEW = "default"


class _Views:
    """The fold states rendered so far, keyed by their sets of expanded groups."""

    def __init__(self, report: Report):
        self.report = report
        self.states = {}
        self.diagrams = {}
        self.parent: dict[str, str] = {}  # a view -> the view its opening click came from

    def add(self, expanded: frozenset[str], *, parent: str | None = None) -> str | None:
        for view, state in self.states.items():
            if state.expanded == expanded:
                return view
        if len(self.states) >= MAX_VIEWS:
            return None
        view = DEFAULT_VIEW if not self.states else f"view{len(self.states)}"
        state = fold_state(self.report, expanded=expanded) if self.states else fold_state(self.report)
        self.states[view], self.diagrams[view] = state, collect(self.report, state)
        if parent is not None:
            self.parent[view] = parent
        return view


def views_for(report: Report) -> DiagramViews:
    views = _Views(report)
    default = views.add(frozenset())
    base = views.states[default].expanded
    first: dict[str, str | None] = {}  # node id -> the view that opens (or folds) it from the default
    for node in views.diagrams[default].nodes:
        if node.is_group:
            first[node.id] = views.add(base | {node.groups[0]}, parent=default)
    for cluster in views.diagrams[default].clusters:
        first[cluster.id] = views.add(base - {cluster.id}, parent=default)
    second: dict[tuple[str, str], str | None] = {}
    for view in [v for v in views.parent if views.parent[v] == default]:
        known = {n.id for n in views.diagrams[default].nodes}
        for node in views.diagrams[view].nodes:
            if node.is_group and node.id not in known:
                second[view, node.id] = views.add(views.states[view].expanded | {node.groups[0]}, parent=view)
    toggles = {view: _clicks(view, views, first, second) for view in views.states}
    svgs = {view: _svg(to_dot(diagram)) for view, diagram in views.diagrams.items()}
    costs = {cost.value: _cost_colours(views.diagrams, cost) for cost in _costs(report)}
    return DiagramViews(default=default, svgs=svgs, toggles=toggles, costs=costs, merged=_merged(views.diagrams))


def _costs(report: Report) -> list[Cost]:
    """The costs a report can colour by: time only when it was inspected for a device."""
    return [cost for cost in Cost if cost != Cost.TIME or report.latency is not None]


def _cost_colours(diagrams: dict[str, Diagram], cost: Cost) -> dict:
    """{title, views: {view: {fills: {node id: colour}, title, key: [[colour, text]]}}}: each view's share is of
    its own largest box, as `archviz diagram --color-by` draws it."""
    views = {}
    for view, diagram in diagrams.items():
        title, key = cost_key(diagram, cost)
        views[view] = {"fills": cost_fills(diagram, cost), "title": title, "key": [list(step) for step in key]}
    return {"title": COST_TEXT[cost], "views": views}


def _merged(diagrams: dict[str, Diagram]) -> dict[str, list[str]]:
    """A merged run's node id ("layer3.1..layer3.5") -> the groups it stands for: a search for a layer inside one
    of them finds the box that holds it."""
    return {node.id: list(node.groups) for diagram in diagrams.values() for node in diagram.nodes
            if MERGED in node.id}


def _clicks(view: str, views: _Views, first: dict, second: dict) -> dict[str, str]:
    clicks = {}
    opened = views.states[view].expanded - views.states[DEFAULT_VIEW].expanded
    for node in views.diagrams[view].nodes:
        if node.is_group:
            clicks[node.id] = second.get((view, node.id)) or first.get(node.id)
    for cluster in views.diagrams[view].clusters:
        if cluster.id in opened:  # opened by a click: fold it back to where that click came from
            clicks[cluster.id] = views.parent.get(view, DEFAULT_VIEW)
        else:
            clicks[cluster.id] = first.get(cluster.id)
    return {node_id: target for node_id, target in clicks.items() if target is not None and target != view}


def _svg(dot_text: str) -> str:
    """Inline SVG: the XML prolog and DOCTYPE dropped (they are not allowed inside HTML)."""
    text = render(dot_text, "svg").decode("utf-8")
    return text[text.index("<svg"):]
