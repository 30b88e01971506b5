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


def model_data(report: Report) -> dict:
    """report_dict plus each layer's arithmetic, for the page's click-to-explain panel."""
    data = report_dict(report)
    fields = receptive_fields(report.graph)
    data["explanations"] = {stats.name: _explanation(report, stats.name, fields) for stats in report.layers}
    data["conventions"] = CONVENTIONS
    return data


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
