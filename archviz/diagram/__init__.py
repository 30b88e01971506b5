"""Architecture diagrams: collect what to draw for a fold state, emit DOT, render it with Graphviz.

>>> from archviz import inspect
>>> from archviz.diagram import collect, fold_state, to_dot
>>> report = inspect("resnet152")
>>> text = to_dot(collect(report, fold_state(report, expanded={"layer3.1"})))
>>> '"layer3.2..layer3.35"' in text
True
"""

from archviz.diagram.collect import Diagram, DiagramCluster, DiagramEdge, DiagramNode, FoldState, collect, fold_state
from archviz.diagram.dot import Cost, RankDir, to_dot
from archviz.diagram.render import FORMATS, DiagramFormat, draw, render

__all__ = [
    "FORMATS", "Cost", "Diagram", "DiagramCluster", "DiagramEdge", "DiagramFormat", "DiagramNode", "FoldState",
    "RankDir",
    "collect", "draw", "fold_state", "render", "to_dot",
]
