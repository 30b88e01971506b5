"""`archviz profile`'s output, read from a Measurement only: the per-layer table, the totals, and the JSON document.

Every figure here is measured on this machine; the table says so in its title and the JSON keeps it under "measured".
A predicted column goes beside a measured one by adding a column to `layer_table` and a key to `measurement_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from archviz.format import shape, size_bytes

if TYPE_CHECKING:
    from archviz.profile.run import LayerTiming, Measurement


@dataclass(frozen=True)
class Prediction:
    """archviz's prediction of the same run, by formula (`inspect --train`, or the inference peak), or why none."""

    peak_bytes: int | None
    note: str = ""  # what the prediction leaves out, or why there is none
    seconds: float | None = None  # the forward pass's roofline time on this CPU (inspect --device cpu)
    layer_seconds: Mapping[str, float] = field(default_factory=dict)  # each layer's forward roofline time

    def error(self, measured: int) -> float | None:
        return None if self.peak_bytes is None or not measured else (self.peak_bytes - measured) / measured


def measurement_view(measurement: Measurement, *, model: str, predicted: Prediction | None = None) -> Group:
    header = Text(f"{model}: measured, {_what(measurement)}", style="bold")
    if not measurement.layers:
        return Group(header, totals_table(measurement, predicted=predicted))
    return Group(header, layer_table(measurement, predicted=predicted), totals_table(measurement, predicted=predicted))


def _what(measurement: Measurement) -> str:
    step = f"training step ({measurement.optimizer})" if measurement.train else "forward (no_grad)"
    amp = f", autocast {measurement.amp}" if measurement.amp else ""
    segments = len(measurement.checkpoint_starts) + 1
    checkpointing = f", checkpointing in {segments} segments" if measurement.checkpoint_starts else ""
    return (f"{step}{amp}{checkpointing}, batch {measurement.batch}, input {shape(measurement.input_shape)}, on "
            f"{measurement.device}")


def layer_table(measurement: Measurement, *, predicted: Prediction | None = None) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("Layer", no_wrap=True)
    table.add_column("Forward ms", justify="right")
    timed = predicted is not None and bool(predicted.layer_seconds)
    if timed:
        table.add_column("Predicted forward ms", justify="right")
        table.add_column("Error", justify="right")
    if measurement.train:
        table.add_column("Backward ms", justify="right")
    for layer in measurement.layers:
        cells = [layer.path or "(model)", _ms(layer.forward_s)]
        if timed:
            forecast = predicted.layer_seconds.get(layer.path)
            cells += [_ms(forecast), _error(forecast, layer.forward_s)]
        if measurement.train:
            cells.append(_ms(layer.backward_s))
        table.add_row(*cells)
    if measurement.layers:
        totals = ["sum of layers", _ms(sum(layer.forward_s for layer in measurement.layers))]
        if timed:
            forecast = sum(predicted.layer_seconds.get(layer.path, 0.0) for layer in measurement.layers)
            totals += [_ms(forecast), _error(forecast, sum(layer.forward_s for layer in measurement.layers))]
        if measurement.train:
            totals.append(_ms(sum(layer.backward_s or 0.0 for layer in measurement.layers)))
        table.add_section()
        table.add_row(*totals, style="bold")
    return table


def totals_table(measurement: Measurement, *, predicted: Prediction | None = None) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Peak memory", f"{size_bytes(measurement.peak_bytes)} ({measurement.peak_bytes:,} bytes, measured: "
                                 f"{measurement.method})")
    if predicted is not None:
        table.add_row("  predicted", _predicted_text(predicted, measurement.peak_bytes))
    table.add_row("Before the step", f"{size_bytes(measurement.baseline_bytes)} (parameters, buffers, optimizer "
                                     "state)")
    if measurement.peak_place is not None:
        place = measurement.peak_place
        where = f" in {place.module}" if place.module else ""
        outside = "" if measurement.checkpoint_starts else " (outside the modules: loss or optimizer step)"
        phase = " (backward)" if place.backward else "" if place.module else outside
        table.add_row("Peak at", f"{place.op}{where}{phase}")
    table.add_row("Time per iteration", f"{_ms(measurement.seconds)} ms (median, measured without hooks)")
    if predicted is not None and predicted.seconds is not None and not measurement.train:
        error = (predicted.seconds - measurement.seconds) / measurement.seconds
        table.add_row("  predicted", f"{_ms(predicted.seconds)} ms (roofline on this CPU, calibrated: {error:+.0%})")
    table.add_row("Images/s", f"{measurement.images_per_s:,.1f}")
    if measurement.layers:
        table.add_row("Layer times", f"medians of {measurement.iterations} iteration(s) with hooks on every leaf "
                                     "module, run apart from the two above")
    if measurement.checkpoint_starts:
        table.add_row("Checkpointing", f"segments starting at {', '.join(measurement.checkpoint_starts)}: every "
                                       "segment but the last runs its forward again in backward, so no layer times "
                                       "and no layer at the peak (module hooks would keep what it makes)")
    return table


def _predicted_text(predicted: Prediction, measured: int) -> str:
    if predicted.peak_bytes is None:
        return f"not predicted: {predicted.note}"
    note = f"; {predicted.note}" if predicted.note else ""
    return (f"{size_bytes(predicted.peak_bytes)} ({predicted.peak_bytes:,} bytes, by formula: "
            f"{predicted.error(measured):+.1%} against the measured peak{note})")


def _error(predicted: float | None, measured: float | None) -> str:
    return "-" if predicted is None or not measured else f"{(predicted - measured) / measured:+.0%}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def measurement_dict(measurement: Measurement, *, model: str, predicted: Prediction | None = None) -> dict:
    place = measurement.peak_place
    prediction = None if predicted is None else {
        "peak_bytes": predicted.peak_bytes, "error": predicted.error(measurement.peak_bytes), "note": predicted.note,
        "seconds": predicted.seconds}
    return {
        "model": model,
        "device": measurement.device,
        "input": list(measurement.input_shape),
        "batch": measurement.batch,
        "train": measurement.train,
        "optimizer": None if measurement.optimizer is None else str(measurement.optimizer),
        "amp": None if measurement.amp is None else str(measurement.amp),
        "iterations": measurement.iterations,
        "checkpoint_starts": list(measurement.checkpoint_starts),
        "measured": {
            "peak_bytes": measurement.peak_bytes,
            "baseline_bytes": measurement.baseline_bytes,
            "method": str(measurement.method),
            "peak_op": place.op if place else None,
            "peak_module": place.module if place else None,
            "peak_in_backward": place.backward if place else None,
            "seconds": measurement.seconds,
            "images_per_s": measurement.images_per_s,
        },
        "predicted": prediction,
        "layers": [_layer_dict(layer, predicted) for layer in measurement.layers],
    }


def _layer_dict(layer: LayerTiming, predicted: Prediction | None = None) -> dict:
    backward = layer.backward_s
    forward = None if predicted is None else predicted.layer_seconds.get(layer.path)
    return {"name": layer.path, "measured_forward_seconds": layer.forward_s, "measured_backward_seconds": backward,
            "measured_seconds": layer.forward_s + (backward or 0.0), "predicted_seconds": forward}


def measurement_json(measurement: Measurement, *, model: str, predicted: Prediction | None = None) -> str:
    return json.dumps(measurement_dict(measurement, model=model, predicted=predicted), indent=2) + "\n"
