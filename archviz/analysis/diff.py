"""Two architectures side by side: totals, stages aligned by resolution, and a plain-language summary.

A stage is every layer whose output has one spatial size. When both inputs have one size, stages of equal size
face each other (a model without that size shows a gap); otherwise stage k faces stage k, each after k
downsamplings. The vector layers form the head.
"""

from __future__ import annotations

from dataclasses import dataclass

from archviz.analysis.report import Report
from archviz.ops import OpKind, get_op
from archviz.format import human, pair_text, shape, widest


@dataclass(frozen=True)
class Stage:
    label: str  # "56x56" or "head"
    resolution: tuple[int, int] | None
    layers: int
    params: int
    macs: int
    activation_bytes: int
    out_channels: int | None
    receptive_field: tuple[int, int] | None


@dataclass(frozen=True)
class Diff:
    a: Report
    b: Report
    stages: tuple[tuple[Stage | None, Stage | None], ...]
    summary: tuple[str, ...]


def stages(report: Report) -> list[Stage]:
    groups: dict[tuple[int, int] | None, list] = {}
    for stats in report.layers:
        key = tuple(stats.out_shape[1:]) if len(stats.out_shape) == 3 else None
        groups.setdefault(key, []).append(stats)
    spatial = sorted((k for k in groups if k is not None), key=lambda hw: hw[0] * hw[1], reverse=True)
    keys = [*spatial, *([None] if None in groups else [])]
    result = []
    for key in keys:
        layers = groups[key]
        result.append(Stage(
            label="head" if key is None else shape(key), resolution=key, layers=len(layers),
            params=sum(s.params for s in layers), macs=sum(s.macs for s in layers),
            activation_bytes=sum(s.activation_bytes for s in layers),
            out_channels=layers[-1].out_shape[0] if key is not None else None,
            receptive_field=widest(s.receptive_field for s in layers),
        ))
    return result


def diff_reports(a: Report, b: Report) -> Diff:
    """Stages face each other by output size when the inputs have one size, else by downsampling step."""
    sa, sb = stages(a), stages(b)
    body_a = [s for s in sa if s.resolution is not None]
    body_b = [s for s in sb if s.resolution is not None]
    if a.input[1:] == b.input[1:]:
        sizes = sorted({s.resolution for s in (*body_a, *body_b)}, key=lambda hw: hw[0] * hw[1], reverse=True)
        by_size_a = {s.resolution: s for s in body_a}
        by_size_b = {s.resolution: s for s in body_b}
        aligned = [(by_size_a.get(size), by_size_b.get(size)) for size in sizes]
    else:
        aligned = [
            (body_a[i] if i < len(body_a) else None, body_b[i] if i < len(body_b) else None)
            for i in range(max(len(body_a), len(body_b)))
        ]
    head_a = next((s for s in sa if s.resolution is None), None)
    head_b = next((s for s in sb if s.resolution is None), None)
    if head_a or head_b:
        aligned.append((head_a, head_b))
    return Diff(a=a, b=b, stages=tuple(aligned), summary=tuple(summarize(a, b)))


def ratio_text(x: int, y: int) -> str:
    """How y compares with x, e.g. '1,011x more' or '3.2x fewer'."""
    if x == y:
        return "the same"
    if x == 0 or y == 0:
        return f"{human(y)} vs {human(x)}"
    r = y / x
    return f"{r:,.1f}x more" if r >= 1 else f"{1 / r:,.1f}x fewer"


def summarize(a: Report, b: Report) -> list[str]:
    ta, tb = a.totals, b.totals
    lines = []
    if a.input != b.input:
        lines.append(f"Inputs differ: {a.model} takes {shape(a.input)}, {b.model} takes {shape(b.input)}.")
    lines.append(f"{b.model} has {ratio_text(ta.params, tb.params)} parameters than {a.model} "
                 f"({human(tb.params)} vs {human(ta.params)}).")
    lines.append(f"{b.model} needs {ratio_text(ta.macs, tb.macs)} multiply-accumulates per batch "
                 f"({human(tb.macs)} vs {human(ta.macs)} MACs).")
    if ta.depth != tb.depth:
        deeper, shallower = (b, a) if tb.depth > ta.depth else (a, b)
        lines.append(f"{deeper.model} is deeper: {deeper.totals.depth} weight layers against {shallower.totals.depth}.")
    for report in (a, b):
        fc = sum(s.params for s in report.layers if get_op(s.op).kind == OpKind.LINEAR)
        if report.totals.params:
            lines.append(f"{report.model} keeps {100 * fc / report.totals.params:.0f}% of its parameters in fully "
                         f"connected layers and {100 * (1 - fc / report.totals.params):.0f}% in the rest.")
    lines.append(f"Peak activation memory: {human(tb.peak_activation_bytes)}B for {b.model} vs "
                 f"{human(ta.peak_activation_bytes)}B for {a.model}.")
    rf_a, rf_b = a.layers[-1].receptive_field, b.layers[-1].receptive_field
    if rf_a is not None and rf_b is not None:
        lines.append(f"Receptive field at the output: {pair_text(rf_b)} px for {b.model} vs {pair_text(rf_a)} px for "
                     f"{a.model}.")
    return lines
