"""Every figure of one layer with its arithmetic written out, e.g. `(227 - 11 + 2*0)/4 + 1 = 55`; and a group's
(a block, sequential or repeat: `inception3a`, `layer3`) totals as the sums of its parts."""

from __future__ import annotations

import math

from dataclasses import dataclass

from archviz.analysis.names import find_layer
from archviz.errors import UnknownNameError
from archviz.analysis.receptive import receptive_fields
from archviz.analysis.report import LayerStats, Report, tracks_fields
from archviz.graph.ir import INPUT, Scope
from archviz.ops import Step, get_op
from archviz.ops.base import fmt_int, fmt_shape
from archviz.format import pair_text


@dataclass(frozen=True)
class Explanation:
    model: str
    layer: LayerStats
    op_doc: str
    inputs: tuple[str, ...]
    steps: tuple[Step, ...]
    file: str | None
    line: int | None
    note: str | None = None


def explain_layer(report: Report, name: str, *, fields: dict | None = None) -> Explanation:
    """One layer's figures with their arithmetic. `fields` (receptive_fields of the graph) saves recomputing them when
    explaining many layers.

    >>> import archviz
    >>> steps = explain_layer(archviz.inspect("alexnet"), "conv1").steps
    >>> [s.arithmetic for s in steps if s.quantity == "params"]
    ['(11*11*3 + 1)*96']
    """
    stats = find_layer(report, name)
    if fields is None:
        fields = receptive_fields(report.graph) if tracks_fields(report.graph) else {}
    node = report.graph.node(stats.name)
    op = get_op(node.op)
    in_shapes = list(node.in_shapes)
    steps = [Step("input shape", " , ".join(fmt_shape(s) for s in in_shapes), "")]
    steps += op.explain(node.attrs, in_shapes, node.out_shape)
    steps += _cost_steps(op, node, stats, report)
    steps += _field_steps(op, node, fields)
    return Explanation(
        model=report.model, layer=stats, op_doc=op.doc, inputs=node.inputs, steps=tuple(steps), file=node.file,
        line=node.line, note=node.note,
    )


def _cost_steps(op, node, stats: LayerStats, report: Report) -> list[Step]:
    batch = report.batch
    per = f" x batch {batch}" if batch > 1 else ""
    steps = []
    if batch > 1 and stats.macs:
        steps.append(Step("MACs for the batch", f"{fmt_int(stats.macs // batch)} per image x {batch}", fmt_int(stats.macs)))
    if stats.macs:
        steps.append(Step("FLOPs", f"2 x {fmt_int(stats.macs)} MACs (multiply and add counted apart)", fmt_int(stats.flops)))
    other = op.explain_other_ops(node.attrs, list(node.in_shapes), node.out_shape)
    if other is not None:
        steps.append(Step(other.quantity, other.arithmetic + per, fmt_int(stats.other_ops)))
    steps.append(Step(
        "output memory",
        f"{fmt_shape(node.out_shape)} = {fmt_int(stats.activation_elements // batch)} values x {report.dtype.bytes} bytes"
        f" ({report.dtype.value}){per}",
        f"{fmt_int(stats.activation_bytes)} bytes",
    ))
    return steps


def _field_steps(op, node, fields: dict) -> list[Step]:
    if node.name not in fields:
        return [Step("receptive field", "not tracked: the input is not a C x H x W image", "-")]
    here = fields[node.name]
    source = max((fields[name] for name in node.inputs), key=lambda f: f.size[0] * f.size[1])
    window = op.window(node.attrs, list(node.in_shapes))
    origin = "the input image" if node.inputs == (INPUT,) else "its input"
    if window is None and here == source:
        return [Step("receptive field", f"unchanged from {origin}: {pair_text(here.size)} pixels", pair_text(here.size))]
    if window is None:
        extent = node.in_shapes[0][1:]
        arithmetic = f"{source.size[0]} + ({extent[0]} - 1)*{source.jump[0]} (every unit sees the whole map)"
    else:
        k, j = window.kernel[0], source.jump[0]
        arithmetic = f"{source.size[0]} + ({k} - 1)*{j}"
    whole = tuple(math.ceil(size) for size in here.size)
    if whole != tuple(here.size):  # after an upsampling op: units reach a whole number of pixels, at most this
        arithmetic += f" = {pair_text(here.size)}, so at most {pair_text(whole)} whole pixels"
    return [
        Step("receptive field", arithmetic, f"{pair_text(whole)} pixels"),
        Step("jump (effective stride)", f"{source.jump[0]} x {window.stride[0] if window else 1}", pair_text(here.jump)),
    ]


@dataclass(frozen=True)
class Part:
    """One direct part of a group: a layer, or a group within it, with its totals."""

    name: str
    what: str  # the layer's op and summary, or "N layers"
    out_shape: tuple[int, ...]
    params: int
    macs: int
    other_ops: int


@dataclass(frozen=True)
class GroupExplanation:
    model: str
    path: str
    what: str  # "block inception", "sequential", "repeat"
    parts: tuple[Part, ...]
    steps: tuple[Step, ...]
    file: str | None
    line: int | None


def explain(report: Report, name: str, *, fields: dict | None = None) -> Explanation | GroupExplanation:
    """A layer's explanation, or a group's where the name is a group's path (or the unique last part of one)."""
    paths = {s.name for s in report.layers}
    scope = None if name in paths else find_group(report, name)
    if scope is not None:
        return explain_group(report, scope.path)
    return explain_layer(report, name, fields=fields)


def find_group(report: Report, name: str) -> Scope | None:
    scopes = {scope.path: scope for scope in report.graph.scopes}
    if name in scopes:
        return scopes[name]
    try:
        find_layer(report, name)
        return None
    except UnknownNameError:
        tail = [scope for path, scope in scopes.items() if path.rsplit(".", 1)[-1] == name]
        return tail[0] if len(tail) == 1 else None


def explain_group(report: Report, path: str) -> GroupExplanation:
    """A group's totals from its parts: params, MACs and other ops as sums, its input and output shapes.

    >>> import archviz
    >>> steps = explain_group(archviz.inspect("resnet18"), "layer1").steps
    >>> [s.arithmetic for s in steps if s.quantity == "params"]
    ['layer1.0 73,984 + layer1.1 73,984']
    """
    scope = next(scope for scope in report.graph.scopes if scope.path == path)
    layers = [s for s in report.layers if s.name.startswith(path + ".")]
    children: dict[str, list[LayerStats]] = {}
    for stats in layers:
        children.setdefault(stats.name[len(path) + 1:].split(".", 1)[0], []).append(stats)
    parts = tuple(_part(f"{path}.{child}", members) for child, members in children.items())
    batch = report.batch
    first, last = report.graph.node(layers[0].name), layers[-1]
    per = f" (batch {batch})" if batch > 1 else ""
    steps = [Step("input shape", " , ".join(fmt_shape(s) for s in first.in_shapes), ""),
             Step("output shape", f"the output of {last.name}", fmt_shape(last.out_shape))]
    for quantity, value in (("params", lambda p: p.params), ("MACs", lambda p: p.macs),
                            ("other ops", lambda p: p.other_ops)):
        counted = [p for p in parts if value(p)]
        arithmetic = " + ".join(f"{_short(p.name, path)} {fmt_int(value(p))}" for p in counted) \
            or "none of its parts has any"
        steps.append(Step(quantity, arithmetic + (per if quantity != "params" else ""),
                          fmt_int(sum(value(p) for p in parts))))
    if scope.kind == "block":
        what = f"block {scope.block}" + (f" ({_arguments(scope)})" if scope.args else "")
    else:
        what = scope.kind
    return GroupExplanation(model=report.model, path=path, what=what, parts=parts, steps=tuple(steps),
                            file=scope.file, line=scope.line)


def _short(name: str, path: str) -> str:
    """A part's name within its group ('branch2'), whole where it is a copy's number ('layer1.0')."""
    short = name[len(path) + 1:]
    return name if short.isdigit() else short


def _part(name: str, members: list[LayerStats]) -> Part:
    if len(members) == 1 and members[0].name == name:
        only = members[0]
        return Part(name, f"{only.op} {only.summary}".rstrip(), only.out_shape, only.params, only.macs, only.other_ops)
    return Part(name, f"{len(members)} layers", members[-1].out_shape, sum(s.params for s in members),
                sum(s.macs for s in members), sum(s.other_ops for s in members))


def _arguments(scope: Scope) -> str:
    return ", ".join(f"{key}: {value}" for key, value in scope.args.items())
