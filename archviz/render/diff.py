"""`archviz diff`: the rich rendering of a Diff and its JSON form ({identical, difference, a, b, stages, summary})."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from archviz.analysis.diff import IDENTICAL, Diff, ratio_text
from archviz.render.data import report_dict
from archviz.format import exact, field_text, human, shape, size_bytes


def _metric_rows(diff: Diff):
    ta, tb = diff.a.totals, diff.b.totals
    yield "Input", shape(diff.a.input), shape(diff.b.input), None, None
    yield "Params", exact(ta.params), exact(tb.params), ta.params, tb.params
    yield "Param memory", size_bytes(ta.param_bytes), size_bytes(tb.param_bytes), ta.param_bytes, tb.param_bytes
    yield "MACs", exact(ta.macs), exact(tb.macs), ta.macs, tb.macs
    yield "FLOPs", human(ta.flops), human(tb.flops), ta.flops, tb.flops
    yield "Peak activation memory", size_bytes(ta.peak_activation_bytes), size_bytes(tb.peak_activation_bytes), \
        ta.peak_activation_bytes, tb.peak_activation_bytes
    yield "Depth (weight layers)", str(ta.depth), str(tb.depth), ta.depth, tb.depth
    yield "Layers", str(ta.layers), str(tb.layers), ta.layers, tb.layers
    rf_a, rf_b = _headline_field(diff.a), _headline_field(diff.b)
    yield "Receptive field (last map)", field_text(rf_a), field_text(rf_b), rf_a and rf_a[0], rf_b and rf_b[0]


def _headline_field(report):
    """The receptive field of the last spatial layer (before global pooling or flatten), else the output's."""
    spatial = report.totals.last_spatial_field
    return report.layers[-1].receptive_field if spatial is None else spatial.size


def totals_table(diff: Diff) -> Table:
    verdict = IDENTICAL if diff.identical else "not identical"
    table = Table(title=f"{diff.a.model} vs {diff.b.model}: {verdict}", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("")
    table.add_column(diff.a.model, justify="right")
    table.add_column(diff.b.model, justify="right")
    table.add_column(f"{diff.b.model} vs {diff.a.model}", justify="right")
    for label, a_text, b_text, a_value, b_value in _metric_rows(diff):
        changed = a_text != b_text
        comparison = ratio_text(a_value, b_value) if a_value is not None else ("differs" if changed else "same")
        table.add_row(label, a_text, b_text, Text(comparison, style="yellow" if changed else "dim"))
    return table


STAGE_COLUMNS = ("Stage", "Model", "Output", "Layers", "Params", "MACs", "Memory", "RF")
PARTS_COLUMN = "Parts"  # the terminal's third column: which of the model's parts (groups, layers) a stage spans


def alignment_text(diff: Diff) -> str:
    """How the stages were cut and aligned (archviz/analysis/diff.py)."""
    if diff.a.input[1:] == diff.b.input[1:]:
        return "by map size, at the models' parts; aligned by output size"
    return "by map size, at the models' parts; aligned by downsampling step: the inputs differ"


def stage_rows(diff: Diff, *, parts: bool = False) -> list[list[list[str]]]:
    """Per stage, one row of STAGE_COLUMNS texts per model (the stage label on the first only); with parts, the
    PARTS_COLUMN third."""
    stages = []
    for index, pair in enumerate(diff.stages):
        label = "head" if any(s is not None and s.resolution is None for s in pair) else str(index)
        rows = []
        for model, stage in zip((diff.a.model, diff.b.model), pair):
            named = ([stage.name if stage else ""] if parts else [])
            rows.append([label, model, *named, *_stage_cells(stage)])
            label = ""
        stages.append(rows)
    return stages


def _stage_cells(stage) -> list[str]:
    """Output, Layers, Params, MACs, Memory, RF; a gap ('-') where the model has no stage here."""
    if stage is None:
        return ["-", "", "", "", "", ""]
    size = stage.label if stage.out_channels is None else f"{stage.out_channels}x{stage.label}"
    return [size, str(stage.layers), human(stage.params), human(stage.macs), size_bytes(stage.activation_bytes),
            field_text(stage.receptive_field)]


def stage_table(diff: Diff) -> Table:
    """Two rows per stage, one per model, so the table stays narrow."""
    table = Table(title=f"Stages ({alignment_text(diff)})", box=box.SIMPLE_HEAD, title_justify="left")
    columns = (*STAGE_COLUMNS[:2], PARTS_COLUMN, *STAGE_COLUMNS[2:])
    for column in columns:
        table.add_column(column, justify="left" if column in ("Stage", "Model", PARTS_COLUMN) else "right",
                         no_wrap=column != PARTS_COLUMN)
    for rows in stage_rows(diff, parts=True):
        for row in rows:
            table.add_row(*row)
        table.add_section()
    return table


def diff_view(diff: Diff) -> Group:
    summary = Text("\n".join(f"• {line}" for line in diff.summary))
    return Group(totals_table(diff), stage_table(diff), summary)


def diff_dict(diff: Diff) -> dict:
    return {
        "identical": diff.identical,
        "difference": diff.difference,
        "a": report_dict(diff.a, layers=False),
        "b": report_dict(diff.b, layers=False),
        "stages": [[None if s is None else _stage_dict(s) for s in pair] for pair in diff.stages],
        "summary": list(diff.summary),
    }


def _stage_dict(stage) -> dict:
    return {"size": stage.label, "parts": stage.name, "out_channels": stage.out_channels, "layers": stage.layers,
            "params": stage.params, "macs": stage.macs, "activation_bytes": stage.activation_bytes,
            "receptive_field": stage.receptive_field and list(stage.receptive_field)}
