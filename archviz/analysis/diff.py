"""Two architectures side by side: whether they are identical, totals, stages aligned, and a plain-language summary.

Identical means layer by layer: as many layers, and each pair of the same op, output shape, params and MACs (the
names may differ: a spec's `relu1` is torchvision's `relu`). Totals alone can agree by chance.

A stage is a run of the model's own parts (its top-level groups, such as resnet's layer1..layer4, and its top-level
layers) whose outputs have one spatial size, and a pooling layer that shrinks that size closes it; a part whose
own parts end at several sizes (vgg's `features`, one sequential) is opened into them. So resnet's stem ends at its
max pool (64x56x56), layer1 is the next stage (256x56x56), and layer2, whose first convolutions still run at
56x56, the stage at 28x28; vgg's stages are its blocks, each ending at its max pool. A model without groups falls
back to its layers. The layers after the last spatial layer (receptive.py's last_spatial_field: global pooling,
flatten, the classifier) form the head.

When both inputs have one size, stages of equal output size face each other (a model without that size shows a
gap); otherwise stage k faces stage k, each after k downsamplings.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from archviz.analysis.report import LayerStats, Report
from archviz.format import human, pair_text, shape, widest
from archviz.ops import OpKind, get_op

CLOSE = 1.1  # ratios nearer 1 than this are written as a percentage
IDENTICAL = "identical: same layers, shapes, params and MACs"


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
    name: str = ""  # the model's parts it spans: "layer1", "maxpool..layer1", "features.0..3"


@dataclass(frozen=True, repr=False)
class Diff:
    a: Report
    b: Report
    stages: tuple[tuple[Stage | None, Stage | None], ...]
    summary: tuple[str, ...]
    difference: str | None = None  # the first layer-by-layer difference; None when the two are identical

    @property
    def identical(self) -> bool:
        return self.difference is None

    def __repr__(self) -> str:
        from archviz.render.notebook import diff_text

        return diff_text(self)

    def _repr_html_(self) -> str:
        from archviz.render.notebook import diff_html

        return diff_html(self)


def first_difference(a: Report, b: Report) -> str | None:
    """Where the two stop being the same model, layer by layer (op, output shape, params, MACs); None if nowhere."""
    if a.input != b.input:
        return f"the inputs differ ({shape(a.input)} vs {shape(b.input)})"
    if len(a.layers) != len(b.layers):
        return f"{a.model} has {len(a.layers)} layers, {b.model} {len(b.layers)}"
    for index, (x, y) in enumerate(zip(a.layers, b.layers), start=1):
        if _layer_facts(x) != _layer_facts(y):
            return f"layer {index}: {_layer_text(x)} in {a.model}, {_layer_text(y)} in {b.model}"
    return None


def _layer_facts(stats: LayerStats) -> tuple:
    return stats.op, stats.out_shape, stats.params, stats.macs


def _layer_text(stats: LayerStats) -> str:
    return f"{stats.name} ({stats.op}, {shape(stats.out_shape)}, {stats.params:,} params, {stats.macs:,} MACs)"


def stages(report: Report) -> list[Stage]:
    """The body's stages, in order, then the head (see the module's docstring)."""
    body_end = _body_end(report)
    scopes = frozenset(scope.path for scope in report.graph.scopes)
    units = _units(list(report.layers[:body_end]), scopes, level=0)
    result = [_stage(list(runs)) for _, runs in itertools.groupby(units, key=_works_at)]
    head = report.layers[body_end:]
    if head:
        result.append(_stage([_Unit(name=head[0].name, layers=tuple(head[:1])),
                              _Unit(name=head[-1].name, layers=tuple(head[1:]))], head=True))
    return result


@dataclass(frozen=True)
class _Unit:
    name: str  # a group's path or a layer's name
    layers: tuple[LayerStats, ...]


def _body_end(report: Report) -> int:
    """The index just past the last spatial layer: the head starts there."""
    spatial = report.totals.last_spatial_field
    if spatial is not None:
        return next(i for i, stats in enumerate(report.layers) if stats.name == spatial.layer) + 1
    return max((i + 1 for i, stats in enumerate(report.layers) if len(stats.out_shape) == 3), default=0)


def _units(layers: list[LayerStats], scopes: frozenset[str], *, level: int) -> list[_Unit]:
    """Consecutive layers in one group at this nesting level make one part (a layer in none is a part of its own);
    a group whose own parts end at several spatial sizes is opened into them."""
    units = []
    for unit in _parts(layers, scopes, level=level):
        is_layer = len(unit.layers) == 1 and unit.name == unit.layers[0].name
        ends = {_resolution(part.layers[-1]) for part in _parts(list(unit.layers), scopes, level=level + 1)}
        if is_layer or len(ends) == 1:
            units.append(unit)
        else:
            units.extend(_units(list(unit.layers), scopes, level=level + 1))
    return units


def _parts(layers: list[LayerStats], scopes: frozenset[str], *, level: int) -> list[_Unit]:
    """The runs of consecutive layers that share their group at a nesting level (a layer in none: alone)."""
    return [_Unit(name=name, layers=tuple(members))
            for name, members in itertools.groupby(layers, key=lambda stats: _part_at(stats.name, scopes, level))]


def _part_at(name: str, scopes: frozenset[str], level: int) -> str:
    """The group that holds a layer at a nesting level, or the layer itself below its innermost group."""
    parts = name.split(".")
    groups = [path for path in (".".join(parts[:i]) for i in range(1, len(parts))) if path in scopes]
    return groups[level] if level < len(groups) else name


def _works_at(unit: _Unit) -> tuple[int, int] | None:
    """The map size a part works at: its output's, but a lone pooling layer that shrinks the map closes the stage
    of its input (vgg's blocks end at their max pool, resnet's stem at its max pool)."""
    last = unit.layers[-1]
    if len(unit.layers) == 1 and get_op(last.op).kind == OpKind.POOL and len(last.in_shapes[0]) == 3:
        return tuple(last.in_shapes[0][1:])
    return _resolution(last)


def _resolution(stats: LayerStats) -> tuple[int, int] | None:
    return tuple(stats.out_shape[1:]) if len(stats.out_shape) == 3 else None


def _stage(units: list[_Unit], *, head: bool = False) -> Stage:
    layers = [stats for unit in units for stats in unit.layers]
    resolution = None if head else _resolution(layers[-1])
    return Stage(
        label="head" if resolution is None else shape(resolution), resolution=resolution, layers=len(layers),
        params=sum(s.params for s in layers), macs=sum(s.macs for s in layers),
        activation_bytes=sum(s.activation_bytes for s in layers),
        out_channels=layers[-1].out_shape[0] if resolution is not None else None,
        receptive_field=widest(s.receptive_field for s in layers),
        name=_span_name(units[0].name, units[-1].name),
    )


def _span_name(first: str, last: str) -> str:
    """'layer1', or 'maxpool..layer1', or 'features.0..3' (the shared prefix written once)."""
    if first == last:
        return first
    head, _, tail = first.rpartition(".")
    if head and last.startswith(head + ".") and "." not in last[len(head) + 1:]:
        return f"{first}..{last[len(head) + 1:]}"
    return f"{first}..{last}"


def diff_reports(a: Report, b: Report) -> Diff:
    """Stages face each other by output size when the inputs have one size, else by downsampling step."""
    sa, sb = stages(a), stages(b)
    body_a = [s for s in sa if s.resolution is not None]
    body_b = [s for s in sb if s.resolution is not None]
    if a.input[1:] == b.input[1:]:
        aligned = _by_size(body_a, body_b)
    else:
        aligned = list(itertools.zip_longest(body_a, body_b))
    head_a = next((s for s in sa if s.resolution is None), None)
    head_b = next((s for s in sb if s.resolution is None), None)
    if head_a or head_b:
        aligned.append((head_a, head_b))
    difference = first_difference(a, b)
    return Diff(a=a, b=b, stages=tuple(aligned), summary=tuple(summarize(a, b, difference)), difference=difference)


def _by_size(body_a: list[Stage], body_b: list[Stage]) -> list[tuple[Stage | None, Stage | None]]:
    """Sizes from the largest map down; at each, the models' stages of that size face each other in order."""
    sizes = sorted({s.resolution for s in (*body_a, *body_b)}, key=lambda hw: hw[0] * hw[1], reverse=True)
    aligned = []
    for size in sizes:
        aligned.extend(itertools.zip_longest([s for s in body_a if s.resolution == size],
                                             [s for s in body_b if s.resolution == size]))
    return aligned


def ratio_text(x: int, y: int) -> str:
    """How y compares with x, e.g. '1,011x more' or '3.2x fewer'."""
    if x == y:
        return "same"
    if x == 0 or y == 0:
        return f"{human(y)} vs {human(x)}"
    r = y / x
    if 1 / CLOSE < r < CLOSE:  # "1.0x more" would hide a 4% difference
        return f"{100 * abs(r - 1):.1f}% {'more' if r > 1 else 'fewer'}"
    return f"{r:,.1f}x more" if r >= 1 else f"{1 / r:,.1f}x fewer"


def summarize(a: Report, b: Report, difference: str | None = None) -> list[str]:
    if difference is None:
        return _identical_summary(a, b)
    ta, tb = a.totals, b.totals
    lines = []
    if a.input != b.input:
        lines.append(f"Inputs differ: {a.model} takes {shape(a.input)}, {b.model} takes {shape(b.input)}.")
    elif ta.params == tb.params and ta.macs == tb.macs:
        lines.append(f"Not identical, though the totals agree: at {difference}.")
    lines.append(_compared(a, b, "parameters", ta.params, tb.params, "params"))
    lines.append(_compared(a, b, "multiply-accumulates per batch", ta.macs, tb.macs, "MACs"))
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
    lines.extend(_field_line(a, b))
    return lines


def _compared(a: Report, b: Report, what: str, x: int, y: int, unit: str) -> str:
    """'B has 3.2x more parameters than A (…)', or 'B has as many parameters as A (25.6 M)'."""
    verb = "has" if unit == "params" else "needs"
    if x == y:
        return f"{b.model} {verb} as many {what} as {a.model} ({human(x)} {unit})."
    return f"{b.model} {verb} {ratio_text(x, y)} {what} than {a.model} ({human(y)} vs {human(x)} {unit})."


def _identical_summary(a: Report, b: Report) -> list[str]:
    t = a.totals
    lines = [f"{a.model} and {b.model} are {IDENTICAL} ({len(a.layers)} layers, {human(t.params)} params, "
             f"{human(t.macs)} MACs)."]
    peak_a, peak_b = t.peak_activation_bytes, b.totals.peak_activation_bytes
    if peak_a != peak_b:
        lines.append(f"Peak activation memory still differs: {human(peak_b)}B for {b.model} vs {human(peak_a)}B for "
                     f"{a.model}. The layers being the same, only when each tensor is freed differs"
                     f"{_held_text(a, b)}.")
    lines.extend(_field_line(a, b))
    return lines


def _held_text(a: Report, b: Report) -> str:
    """Why tensors live longer in traced PyTorch code, where exactly one of the two was traced."""
    traced = [r.model for r in (a, b) if r.graph.origin is not None]
    if len(traced) != 1:
        return ""
    return (f": {traced[0]}'s code keeps a module's input alive until the module returns, a spec frees each tensor "
            "at its last use")


def _field_line(a: Report, b: Report) -> list[str]:
    fa, fb = a.totals.last_spatial_field, b.totals.last_spatial_field
    if fa is None or fb is None:
        return []
    if fa.size == fb.size:
        where = f"at {fa.layer}" if fa.layer == fb.layer else f"{a.model}'s {fa.layer}, {b.model}'s {fb.layer}"
        return [f"Receptive field of the last spatial layer: {pair_text(fa.size)} px in both ({where})."]
    return [f"Receptive field of the last spatial layer: {pair_text(fb.size)} px at {fb.layer} for {b.model} vs "
            f"{pair_text(fa.size)} px at {fa.layer} for {a.model}."]
