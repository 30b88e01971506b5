"""The layout of Keras `model.summary()`, as in the course's tables, so a student can hold one against the other.

Keras conventions kept on purpose: shapes are (None, H, W, C); an activation right after a conv or dense layer is
part of that layer (Keras's `activation=` argument), so it has no row; batch norm's moving mean and variance are
"non-trainable params". Graphs with branches get Keras's "Connected to" column.
"""

from __future__ import annotations

from archviz.analysis.names import keras_rows
from archviz.analysis.report import Report

WIDTHS = (46, 26, 12)
CONNECTED_WIDTH = 30


def keras_shape(dims) -> str:
    """(64, 224, 224) -> '(None, 224, 224, 64)'; (4096,) -> '(None, 4096)'."""
    order = (*dims[1:], dims[0]) if len(dims) == 3 else tuple(dims)
    return "(" + ", ".join(["None", *map(str, order)]) + ")"


def keras_summary(report: Report) -> str:
    rows, _ = keras_rows(report)
    branched = any(len(row.inputs) != 1 for row in rows) or len({r.inputs for r in rows}) < len(rows)
    widths = (*WIDTHS, CONNECTED_WIDTH) if branched else WIDTHS
    thin, thick = "_" * sum(widths), "=" * sum(widths)
    header = ["Layer (type)", "Output Shape", "Param #", *(("Connected to",) if branched else ())]
    out = [f'Model: "{report.model}"', thin, _cells(header, widths), thick]
    for index, row in enumerate(rows):
        cells = [f"{row.name} ({row.keras_class})", keras_shape(row.out_shape), str(row.params)]
        if branched:
            cells.append(", ".join(row.inputs))
        out.append(_cells(cells, widths))
        out.append(thin if index < len(rows) - 1 else thick)
    trainable, non_trainable = report.totals.trainable_params, report.totals.buffers
    out += [
        f"Total params: {trainable + non_trainable:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {non_trainable:,}",
        thin,
    ]
    if non_trainable:
        out.append("Non-trainable: batch-norm moving mean and variance, as Keras counts them (torch calls them buffers).")
    return "\n".join(out)


def _cells(values, widths) -> str:
    return "".join(f" {v:<{w - 1}}" for v, w in zip(values, widths)).rstrip()
