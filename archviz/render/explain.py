"""`archviz explain`: one layer's figures, each with its arithmetic."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from archviz.analysis.explain import Explanation, GroupExplanation
from archviz.errors import display_path
from archviz.format import exact, shape


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


def group_view(explanation: GroupExplanation) -> Group:
    """A group's parts (a row each) and its totals as their sums."""
    where = f"{display_path(explanation.file)}:{explanation.line}" if explanation.file and explanation.line else ""
    title = Text(f"{explanation.model} / {explanation.path}", style="bold")
    title.append(f"  {explanation.what}")
    if where:
        title.append(f"   (spec {where})", style="dim")
    parts = Table(box=box.SIMPLE_HEAD, show_header=True)
    for column, justify in (("Part", "left"), ("What", "left"), ("Output", "right"), ("Params", "right"),
                            ("MACs", "right")):
        parts.add_column(column, justify=justify, no_wrap=column != "What")
    for part in explanation.parts:
        parts.add_row(part.name, part.what, shape(part.out_shape), exact(part.params), exact(part.macs))
    totals = Table(box=box.SIMPLE_HEAD, show_header=True)
    totals.add_column("Quantity", style="bold", no_wrap=True)
    totals.add_column("Arithmetic")
    totals.add_column("Value", justify="right", no_wrap=True)
    for step in explanation.steps:
        totals.add_row(step.quantity, step.arithmetic, str(step.value))
    return Group(title, parts, totals)
