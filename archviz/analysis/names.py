"""Other names a layer is known by: Keras's `conv2d_1` numbering (as in the course's model.summary() tables),
and finding a layer from whichever name the user typed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from archviz.analysis.report import LayerStats, Report
from archviz.errors import UnknownNameError, closest
from archviz.graph.ir import INPUT
from archviz.ops import OpKind, get_op


@dataclass(frozen=True)
class KerasRow:
    """One row of a Keras summary: a layer of ours, with any activation that Keras would fuse into it."""

    name: str  # 'conv2d_1'
    keras_class: str  # 'Conv2D'
    layer: str  # our layer path
    out_shape: tuple[int, ...]
    params: int  # Keras counts batch-norm moving statistics as (non-trainable) params
    inputs: tuple[str, ...]  # Keras names of the rows feeding it


def keras_layer_name(keras_class: str) -> str:
    """'MaxPooling2D' -> 'max_pooling2d', as Keras names layers."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", keras_class).lower()
    return snake.replace("2_d", "2d")


def keras_rows(report: Report) -> tuple[list[KerasRow], dict[str, str]]:
    """The rows Keras would print, and our layer path -> Keras name ('conv2d_1', 'dense_3').

    Keras numbers layers per type from 1; an activation right after a conv or dense layer is that layer's
    `activation=` argument in Keras, so it shares the row (and the name) of the layer before it.
    """
    counters: dict[str, int] = {}
    rows: list[KerasRow] = []
    names: dict[str, str] = {INPUT: "input"}
    previous_kind = None
    for stats in report.layers:
        op = get_op(stats.op)
        node = report.graph.node(stats.name)
        fused = op.pointwise and previous_kind in (OpKind.CONV, OpKind.LINEAR)
        previous_kind = op.kind
        if fused and len(report.graph.consumers[node.inputs[0]]) == 1:
            names[stats.name] = names[node.inputs[0]]
            continue
        base = keras_layer_name(op.keras_class or op.name)
        counters[base] = counters.get(base, 0) + 1
        names[stats.name] = f"{base}_{counters[base]}"
        rows.append(KerasRow(
            name=names[stats.name], keras_class=op.keras_class or op.name, layer=stats.name,
            out_shape=stats.out_shape, params=stats.params + stats.buffers,
            inputs=tuple(names[i] for i in node.inputs),
        ))
    return rows, names


def keras_names(report: Report) -> dict[str, str]:
    """Our layer path -> Keras-style name; fused activations share their layer's name."""
    return {path: name for path, name in keras_rows(report)[1].items() if path != INPUT}


def find_layer(report: Report, name: str) -> LayerStats:
    """A layer by its path ('layer3.2.conv2'), its Keras-style name ('conv2d_3') or a unique last component."""
    by_path = {s.name: s for s in report.layers}
    if name in by_path:
        return by_path[name]
    keras = {}
    for path, keras_name in keras_names(report).items():
        keras.setdefault(keras_name, path)
    if name in keras:
        return by_path[keras[name]]
    tail = [s for s in report.layers if s.name.rsplit(".", 1)[-1] == name]
    if len(tail) == 1:
        return tail[0]
    if len(tail) > 1:
        options = ", ".join(s.name for s in tail[:6])
        raise UnknownNameError(f"{name!r} is ambiguous in {report.model}: {options}")
    raise UnknownNameError(
        f"no layer {name!r} in {report.model}{closest(name, [*by_path, *keras])}; `archviz inspect {report.model}` lists them"
    )
