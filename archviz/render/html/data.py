"""The data an HTML report's script reads: one JSON document per model, embedded safely in the page.

Everything taken from a spec (names, descriptions, notes) travels as JSON inside <script type="application/json">
with <, > and & escaped as \\u003c, \\u003e, \\u0026, so it can never close the script element; the page script only
ever sets it as textContent.
"""

from __future__ import annotations

import json

from archviz.analysis.explain import explain_layer
from archviz.analysis.receptive import receptive_fields
from archviz.analysis.report import CONVENTIONS, Report
from archviz.render.data import report_dict
from archviz.render.table import field_headline

CHART_LAYERS = 40  # above this many layers a per-layer bar is a pixel wide: the charts show blocks instead


def model_data(report: Report) -> dict:
    """report_dict plus each layer's arithmetic (the click-to-explain panel), the receptive field's headline, and
    for a deep model the blocks its per-layer charts show (chart_groups)."""
    data = report_dict(report)
    fields = receptive_fields(report.graph)
    data["explanations"] = {stats.name: _explanation(report, stats.name, fields) for stats in report.layers}
    data["conventions"] = CONVENTIONS
    data["field_headline"] = field_headline(report)
    data["chart_groups"] = chart_groups(report)
    return data


def chart_groups(report: Report, *, limit: int = CHART_LAYERS) -> list[dict] | None:
    """The blocks a deep model's per-layer charts show, folded as the diagram folds them by default with a budget of
    `limit` boxes: [{name, layers: [layer names]}] in layer order, a layer outside every folded group alone; None
    when the model has at most `limit` layers (its charts show every layer)."""
    if len(report.layers) <= limit:
        return None
    from archviz.diagram.collect import fold_state

    expanded = fold_state(report, budget=limit).expanded
    scopes = {scope.path for scope in report.graph.scopes}
    groups: list[dict] = []
    for stats in report.layers:
        name = _folded_group(stats.name, scopes, expanded) or stats.name
        if groups and groups[-1]["name"] == name:
            groups[-1]["layers"].append(stats.name)
        else:
            groups.append({"name": name, "layers": [stats.name]})
    return groups


def _folded_group(name: str, scopes: set[str], expanded: frozenset[str]) -> str | None:
    """The outermost group holding layer `name` that the fold state leaves folded, or None."""
    parts = name.split(".")
    for prefix in (".".join(parts[:i]) for i in range(1, len(parts))):
        if prefix in scopes and prefix not in expanded:
            return prefix
    return None


def _explanation(report: Report, name: str, fields: dict) -> dict:
    explanation = explain_layer(report, name, fields=fields)
    return {
        "doc": explanation.op_doc,
        "note": explanation.note,
        "inputs": list(explanation.inputs),
        "steps": [[s.quantity, s.arithmetic, str(s.value)] for s in explanation.steps],
    }


def script_json(data) -> str:
    """JSON that is safe inside a <script> element."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
