"""Folding layers into the groups (sequentials, blocks) they belong to, for tables that show nesting to a depth."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from archviz.analysis.report import LayerStats, Report
from archviz.format import widest


@dataclass(frozen=True)
class Row:
    """A table row: one layer, or a group with the totals of the layers inside it."""

    name: str
    label: str  # op or block name
    summary: str
    out_shape: tuple[int, ...]
    params: int
    buffers: int
    macs: int
    activation_bytes: int
    receptive_field: tuple[int, int] | None
    depth: int
    is_group: bool
    layer_count: int = 1
    measured: bool = False  # a layer without a formula whose MACs FlopCounterMode measured
    saved_bytes: int | None = None  # training: what autograd keeps of it (a group: of its layers) for backward
    predicted_seconds: float | None = None  # with a device: the roofline's time (a group: its layers' sum)


def rows(report: Report, *, depth: int | None = None) -> list[Row]:
    """Groups as header rows followed by their layers; with `depth` N, only N levels of rows, deeper ones folded.

    depth=1 shows the top-level layers and groups (each group's totals on one row), like torchinfo's depth.
    """
    scopes = {scope.path: scope for scope in report.graph.scopes}
    out: list[Row] = []
    emitted: set[str] = set()
    folded: dict[str, list[LayerStats]] = {}
    order: list[tuple[str, str]] = []  # ("group"|"layer", key)
    for stats in report.layers:
        prefixes = _prefixes(stats.name, scopes)
        for level, prefix in enumerate(prefixes):
            if depth is not None and level + 1 >= depth:
                folded.setdefault(prefix, []).append(stats)
                if prefix not in emitted:
                    emitted.add(prefix)
                    order.append(("fold", prefix))
                break
            if prefix not in emitted:
                emitted.add(prefix)
                order.append(("group", prefix))
        else:
            order.append(("layer", stats.name))
    members = _members(report, scopes)
    by_name = {s.name: s for s in report.layers}
    seconds = predicted_seconds(report)
    for kind, key in order:
        if kind == "layer":
            row = _layer_row(by_name[key])
            names = [key]
        else:
            row = _group_row(key, scopes[key], members[key], folded=kind == "fold")
            names = [s.name for s in members[key]]
        if seconds is not None:
            row = dataclasses.replace(row, predicted_seconds=sum(seconds.get(name, 0.0) for name in names))
        out.append(row)
    return out


def predicted_seconds(report: Report) -> dict[str, float] | None:
    """Each predicted layer's roofline seconds, where the report has a device's latency."""
    if report.latency is None:
        return None
    return {layer.name: layer.seconds for layer in report.latency.layers if layer.predicted}


def _prefixes(name: str, scopes) -> list[str]:
    parts = name.split(".")
    return [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in scopes]


def _members(report: Report, scopes) -> dict[str, list[LayerStats]]:
    members: dict[str, list[LayerStats]] = {path: [] for path in scopes}
    for stats in report.layers:
        for prefix in _prefixes(stats.name, scopes):
            members[prefix].append(stats)
    return members


def _layer_row(stats: LayerStats) -> Row:
    return Row(
        name=stats.name, label=stats.op, summary=stats.summary, out_shape=stats.out_shape, params=stats.params,
        buffers=stats.buffers, macs=stats.macs, activation_bytes=stats.activation_bytes,
        receptive_field=stats.receptive_field, depth=stats.name.count("."), is_group=False,
        measured=stats.measured, saved_bytes=stats.saved_bytes,
    )


def _group_row(path: str, scope, layers: list[LayerStats], *, folded: bool) -> Row:
    last = layers[-1]
    label = scope.block or ("sequential" if scope.kind == "repeat" else scope.kind)
    return Row(
        name=path, label=label, summary=f"{len(layers)} layers" + (", folded" if folded else ""),
        out_shape=last.out_shape, params=sum(s.params for s in layers), buffers=sum(s.buffers for s in layers),
        macs=sum(s.macs for s in layers), activation_bytes=sum(s.activation_bytes for s in layers),
        receptive_field=widest(s.receptive_field for s in layers),
        depth=path.count("."), is_group=True, layer_count=len(layers),
        saved_bytes=None if last.saved_bytes is None else sum(s.saved_bytes or 0 for s in layers),
    )
