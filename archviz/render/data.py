"""Machine-readable output: JSON (a documented, stable interface), CSV and Markdown tables.

JSON layout (schema_version 1): model, description, input [C, H, W], batch, dtype, conventions, totals {params,
trainable_params, non_trainable_params, buffers, param_bytes, macs, flops, other_ops, macs_per_image, flops_per_image,
activation_bytes, peak_activation_bytes, peak_at, depth, layers, uncounted, measured, weight_macs, sized_macs,
last_spatial_field (null where fields are not tracked: {layer, size, out_shape, merged_at, merged_by, covers_input}: the
receptive field of the last map of more than one position, the headline figure), training_memory (null unless --train:
{batch, optimizer, params_bytes, buffers_bytes, optimizer_bytes, input_bytes, grads_bytes, saved_bytes, peak_bytes,
peak_phase, peak_at, peak_activations_bytes, peak_grads_bytes, step_temporary_bytes, uncounted, fits_batch, fit_bytes,
foreach, block_bytes, autocast_device, checkpoint_starts})}, layers [{name, type, kind, summary, input_shapes,
output_shape, params, buffers, macs, flops, other_ops, activation_elements, activation_bytes, receptive_field, jump,
start, line, counted, measured, shares, receptive_field_via; saved_bytes with --train; predicted_seconds, memory_bound
with --device}], latency (null unless --device: {device, device_name, seconds, images_per_second, memory_bound_seconds,
not_predicted}),
crosscheck (null when not run; else {model, input, batch, agrees, skipped, message, conventions, peers [{peer,
version, method, agrees, skipped, message, seconds, notes, totals, layers, differences}]}, each figure {layer,
quantity, ours, reported, converted, status, checked, agrees, reason}; `agrees` is false when any figure of any peer
disagrees, and the peer "module" holds the whole model's params, buffers and macs counted on the module itself). A
layer without a formula has `counted` false: `measured` true when its macs are torch's FlopCounterMode count on its
traced call (listed in totals.measured; its other_ops 0, not counted), else its macs and other_ops are 0, not
counted (totals.uncounted). totals.macs holds the layers', weight_macs (computed from weights alone, once per pass)
and sized_macs (on tensors made from the batch size, not the input); `shares` names the layer whose weights a layer
reuses (its params are counted there). A layer's receptive_field is the largest over every path from the input to
it; receptive_field_via names the input (a layer, or "input") on the path it follows, so a field smaller than the
row above it belongs to another path (a shortcut), never to a field that shrank.
Costs in totals and layers are for the whole batch; shapes exclude the batch, in torch's order.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import re

from archviz.analysis.report import CONVENTIONS, LayerStats, Report
from archviz.format import NOT_TRACKED, shape
from archviz.render.visible import visible

SCHEMA_VERSION = 1
CSV_COLUMNS = ("name", "type", "kind", "output_shape", "params", "buffers", "macs", "flops", "other_ops",
               "activation_bytes", "receptive_field")


def layer_dict(stats: LayerStats) -> dict:
    return {
        "name": stats.name, "type": stats.op, "kind": stats.kind, "summary": stats.summary,
        "input_shapes": [list(s) for s in stats.in_shapes], "output_shape": list(stats.out_shape),
        "params": stats.params, "buffers": stats.buffers, "macs": stats.macs, "flops": stats.flops,
        "other_ops": stats.other_ops, "activation_elements": stats.activation_elements,
        "activation_bytes": stats.activation_bytes, "receptive_field": _listed(stats.receptive_field),
        "jump": _listed(stats.jump), "start": _listed(stats.start), "line": stats.line, "counted": stats.counted,
        "measured": stats.measured, "shares": stats.shares, "receptive_field_via": stats.field_via,
        **({"saved_bytes": stats.saved_bytes} if stats.saved_bytes is not None else {}),
    }


def latency_dict(latency) -> dict:
    from archviz.analysis.devices import Precision

    """The roofline's prediction for a device: whole-model seconds per batch and what it leaves out."""
    device = latency.device
    peaks = {precision.value: device.peak(precision) for precision in Precision if device.peak(precision)}
    return {"device": device.key, "device_name": device.name, "seconds": latency.seconds,
            "images_per_second": latency.images_per_second, "memory_bound_seconds": latency.memory_bound_seconds,
            "not_predicted": list(latency.not_predicted), "peak_flops": peaks,
            "memory_bandwidth": device.memory_bandwidth}


def report_dict(report: Report, *, layers: bool = True) -> dict:
    from archviz import __version__

    data = {
        "schema_version": SCHEMA_VERSION, "archviz_version": __version__, "model": report.model,
        "description": report.description, "input": list(report.input), "batch": report.batch,
        "dtype": report.dtype.value, "conventions": CONVENTIONS, "totals": dataclasses.asdict(report.totals),
    }
    if layers:
        data["layers"] = [layer_dict(s) for s in report.layers]
        if report.latency is not None:
            for layer, timed in zip(data["layers"], report.latency.layers):
                layer["predicted_seconds"] = timed.seconds if timed.predicted else None
                layer["memory_bound"] = timed.memory_bound if timed.predicted else None
                layer["intensity"] = timed.intensity if timed.predicted else None
    data["latency"] = None if report.latency is None else latency_dict(report.latency)
    check = report.crosscheck
    data["crosscheck"] = check.to_dict() if check is not None else None
    return data


_LAYERS_SLOT = "\u0000layers\u0000"  # a placeholder no report text can contain (specs refuse control characters)


def report_json(report: Report) -> str:
    """The JSON document, indented, with one layer per line.

    json's C encoder runs only without indentation; indenting every layer field by field would take 5 s at
    100,000 layers, so each layer is encoded compactly on its own line.
    """
    data = report_dict(report)
    layers = data.get("layers")
    if layers is None:
        return json.dumps(data, indent=2)
    data["layers"] = _LAYERS_SLOT
    body = ",\n".join("    " + json.dumps(layer) for layer in layers)
    return json.dumps(data, indent=2).replace(json.dumps(_LAYERS_SLOT), f"[\n{body}\n  ]" if layers else "[]", 1)


def _field_shape(pair) -> str:
    """'195x195', or NOT_TRACKED where the input is not an image."""
    return NOT_TRACKED if pair is None else shape(pair)


def _listed(pair) -> list | None:
    return None if pair is None else list(pair)


def report_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in report.layers:
        writer.writerow([s.name, s.op, s.kind, shape(s.out_shape), s.params, s.buffers, s.macs, s.flops, s.other_ops,
                         s.activation_bytes, "" if s.receptive_field is None else _field_shape(s.receptive_field)])
    return buffer.getvalue()


def report_markdown(report: Report) -> str:
    head = "| Layer | Type | Output shape | Params | MACs | Output bytes | RF |"
    lines = [f"### {markdown_text(report.model)}: input {shape(report.input)}, batch {report.batch}", "", head,
             "|---|---|---:|---:|---:|---:|---:|"]
    for s in report.layers:
        kind = markdown_text(f"{s.op} {s.summary}".strip())
        lines.append(f"| {markdown_code(s.name)} | {kind} | {shape(s.out_shape)} | {s.params:,} | {s.macs:,} | "
                     f"{s.activation_bytes:,} | {_field_shape(s.receptive_field)} |")
    t = report.totals
    lines += ["", f"**Total params:** {t.params:,} &nbsp; **MACs:** {t.macs:,} &nbsp; **FLOPs:** {t.flops:,} &nbsp; "
              f"**Peak activation memory:** {t.peak_activation_bytes:,} bytes &nbsp; **Depth:** {t.depth}", "",
              f"_{CONVENTIONS}_"]
    if report.crosscheck is not None:
        lines += ["", _markdown_verdict(report.crosscheck)]
    return "\n".join(lines) + "\n"


def _markdown_verdict(check) -> str:
    """One line: the cross-check's verdict; where the module itself disagrees, each total's reason."""
    if check.skipped:
        return f"**Cross-check skipped:** {markdown_text(check.message)}"
    if check.agrees:
        return "**Cross-check:** every peer agrees after conversion."
    wrong = [f for p in check.peers if p.peer == "module" for f in p.totals if not f.agrees]
    if wrong:
        return "**Cross-check: archviz's totals are not the model's.** " + "".join(
            f"{markdown_text(f.reason)}. " for f in wrong).rstrip()
    if check.unexplained:
        return f"**Cross-check:** {len(check.unexplained)} unexplained difference(s); see --format json."
    skipped = ", ".join(p.peer for p in check.peers if p.skipped)
    return f"**Cross-check: not confirmed:** {markdown_text(skipped)} skipped; see --format json."


# Markdown's marks; an underscore inside a word (local_response_norm) is no emphasis in CommonMark, so stays bare
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]#!~|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def markdown_text(text: str) -> str:
    """Text from a file as Markdown shows it literally, on one line: HTML escaped (no <script> runs where the
    Markdown is rendered), Markdown's own marks escaped, line breaks joined, control characters made visible.

    >>> markdown_text("<script>x</script> *a* | b\\nc")
    '&lt;script&gt;x&lt;/script&gt; \\\\*a\\\\* \\\\| b c'
    """
    one_line = " ".join(visible(str(text)).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def markdown_code(text: str) -> str:
    """A name as an inline code span: its content is never Markdown or HTML; a table's `|` still needs escaping, and
    the fence is one backtick longer than any run of backticks inside."""
    one_line = " ".join(visible(str(text)).split()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", one_line)), default=0) + 1)
    padding = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    return f"{fence}{padding}{one_line}{padding}{fence}"
