"""`archviz explain`: one layer's figures, each with its arithmetic."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from archviz.analysis.explain import Explanation
from archviz.errors import display_path
from archviz.format import shape


def explanation_view(explanation: Explanation) -> Group:
    layer = explanation.layer
    where = f"{display_path(explanation.file)}:{explanation.line}" if explanation.file and explanation.line else ""
    title = Text(f"{explanation.model} / {layer.name}", style="bold")
    title.append(f"  {layer.op} {layer.summary}".rstrip())
    if where:
        title.append(f"   (spec {where})", style="dim")
    table = Table(box=box.SIMPLE_HEAD, show_header=True)
    table.add_column("Quantity", style="bold", no_wrap=True)
    table.add_column("Arithmetic")
    table.add_column("Value", justify="right", no_wrap=True)
    for step in explanation.steps:
        table.add_row(step.quantity, step.arithmetic, str(step.value))
    inputs = ", ".join(explanation.inputs)
    parts = [title, Text(f"input from: {inputs}  ->  output {shape(layer.out_shape)}"), table]
    if explanation.note:
        parts.append(Text(f"Note: {explanation.note}\n", style="yellow"))
    parts.append(Text(explanation.op_doc, style="dim"))
    return Group(*parts)
