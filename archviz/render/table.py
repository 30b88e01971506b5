"""The terminal table of `archviz inspect`: one row per layer (groups indented, folded below --depth), then totals."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from archviz.analysis.fold import rows
from archviz.analysis.report import CONVENTIONS, Report
from archviz.render.crosscheck import crosscheck_text
from archviz.format import exact, exact_and_human, field_text, human, pair_text, seconds_text, shape, size_bytes
from archviz.ops import OpKind, get_op, has_formula

MAX_ROWS = 2_000  # a table longer than this is for a file, not a terminal
TAIL_ROWS = 200  # the output end of a long table is shown too

KIND_STYLES = {
    OpKind.CONV: "cyan", OpKind.LINEAR: "magenta", OpKind.POOL: "green", OpKind.NORM: "yellow",
    OpKind.ACTIVATION: "dim", OpKind.JOIN: "bold blue", OpKind.RESHAPE: "dim", OpKind.REGULARIZATION: "dim",
}


def layer_table(report: Report, *, depth: int | None = None) -> Table:
    batch = f" (batch {report.batch})" if report.batch > 1 else ""
    table = Table(
        title=f"{report.model}: input {shape(report.input)}{batch}", box=box.SIMPLE_HEAD, title_justify="left",
        caption=report.description or None, caption_justify="left",
    )
    table.add_column("Layer", no_wrap=True)
    table.add_column("Type")
    table.add_column("Output shape", justify="right", no_wrap=True)
    table.add_column("Params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("Output memory", justify="right")
    training = report.totals.training_memory is not None
    if training:
        table.add_column("Kept for backward", justify="right")
    timed = report.latency is not None
    if timed:
        table.add_column(f"Time ({report.latency.device.key})", justify="right")
    table.add_column("RF", justify="right", header_style="bold")

    shown = rows(report, depth=depth)
    if len(shown) > MAX_ROWS:  # rich takes about a millisecond a row: 10^5 rows would take minutes
        omitted = len(shown) - MAX_ROWS
        head, tail = shown[:MAX_ROWS - TAIL_ROWS], shown[-TAIL_ROWS:]
        shown = [*head, None, *tail]
    above, other_path = None, False
    for row in shown:
        if row is None:
            table.add_row(Text("...", style="yellow"), Text(f"{omitted:,} rows not shown", style="yellow"),
                          *[""] * (5 + training + timed))
            table.caption = f"{omitted:,} rows not shown: use --depth, or --format csv|json for every layer"
            continue
        indent = "  " * row.depth
        if row.is_group:
            name = Text(f"{indent}{row.name.rsplit('.', 1)[-1]}", style="bold")
            kind = Text(f"{row.label} ({row.summary})", style="bold")
        else:
            name = Text(f"{indent}{row.name.rsplit('.', 1)[-1]}")
            style = KIND_STYLES.get(get_op(row.label).kind.value, "")
            kind = Text(row.label, style=style) + Text(f" {row.summary}" if row.summary else "")
        kept = (_kept_cell(row),) if training else ()
        time = (_time_cell(row),) if timed else ()
        narrower = not row.is_group and _narrower(row.receptive_field, above)  # a group row shows its widest
        other_path = other_path or narrower
        above = above if row.is_group else row.receptive_field
        table.add_row(
            name, kind, shape(row.out_shape), exact(row.params) if row.params else "-",
            _macs_cell(row), size_bytes(row.activation_bytes), *kept, *time,
            field_text(row.receptive_field) + ("*" if narrower else ""),
        )
    if other_path:
        table.caption = "\n".join(filter(None, [table.caption, OTHER_PATH_NOTE]))
    return table


OTHER_PATH_NOTE = ("RF*: narrower than the layer above, on another path (a shortcut or a parallel branch); each "
                   "layer's field is the largest over the paths into it, so it never shrinks along a path")


def _narrower(field, above) -> bool:
    """Whether a layer's field is smaller than the layer above's: the two lie on different paths."""
    return field is not None and above is not None and field[0] * field[1] < above[0] * above[1]


def _time_cell(row) -> str:
    if not row.is_group and row.predicted_seconds == 0.0 and not has_formula(row.label):
        return "?"
    return seconds_text(row.predicted_seconds)


def _kept_cell(row) -> str:
    """What autograd keeps of a layer for backward; '?' for a layer without a formula (not known)."""
    if not row.is_group and not has_formula(row.label):
        return "?"
    return size_bytes(row.saved_bytes) if row.saved_bytes else "-"


def _macs_cell(row) -> str:
    if not row.is_group and not has_formula(row.label) and not row.measured:
        return "?"
    return human(row.macs) if row.macs else "-"


def totals_table(report: Report) -> Table:
    t = report.totals
    per_image = f" ({human(t.macs_per_image)} per image)" if report.batch > 1 else ""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Total params", _against_module(report, "params", exact_and_human(t.params)))
    table.add_row("Trainable params", exact(t.trainable_params))
    table.add_row("Non-trainable params", exact(t.non_trainable_params))
    if t.buffers:
        table.add_row("Buffers", _against_module(report, "buffers", f"{exact(t.buffers)} (saved state that is not "
                                                 "trained: batch-norm running statistics, index tables)"))
    table.add_row(f"Param memory ({report.dtype.value})", size_bytes(t.param_bytes))
    table.add_row("MACs", _against_module(report, "macs", f"{exact_and_human(t.macs)}{per_image}"))
    table.add_row("FLOPs", exact_and_human(t.flops))
    table.add_row("Other ops", exact_and_human(t.other_ops))
    if t.sized_macs:
        table.add_row("  from the batch size", f"{exact_and_human(t.sized_macs)} on tensors made from the batch size, "
                      "not the image (a position encoding), measured by torch's FlopCounterMode")
    if t.weight_macs:
        table.add_row("  from weights alone", f"{exact_and_human(t.weight_macs)} once per forward pass, whatever the "
                      "batch (computed from weights, not from the image), measured by torch's FlopCounterMode")
    if t.uncounted:
        table.add_row(Text("Not counted", style="bold yellow"),
                      Text(f"MACs and other ops of {_layers(t.uncounted)} without a formula: {_listed(t.uncounted)}",
                           style="yellow"))
    if t.measured:
        table.add_row(Text("Measured", style="bold yellow"),
                      Text(f"MACs of {_layers(t.measured)} without a formula, measured by torch's FlopCounterMode "
                           f"(their other ops not counted): {_listed(t.measured)}", style="yellow"))
    table.add_row("Peak activation memory", f"{size_bytes(t.peak_activation_bytes)} (inference, at {t.peak_at})")
    table.add_row("All outputs (training)", size_bytes(t.activation_bytes))
    if t.training_memory is not None:
        _training_rows(table, t.training_memory)
    if report.latency is not None:
        _latency_rows(table, report.latency)
    table.add_row("Depth", f"{t.depth} weight layers, {t.layers} layers in all")
    table.add_row("Receptive field", field_headline(report))
    return table


def field_headline(report: Report) -> str:
    """'212 px at features.30 (512x7x7); after flattening every output sees the whole input': the field of the last
    spatial layer, never the field of a vector after global pooling (archviz/analysis/receptive.py)."""
    spatial = report.totals.last_spatial_field
    if spatial is None:
        field = report.layers[-1].receptive_field
        return ("not tracked: the input is not a C x H x W image" if field is None
                else f"{pair_text(field)} px: the input is flattened first, so every output sees all of it")
    text = f"{pair_text(spatial.size)} px at {spatial.layer} ({shape(spatial.out_shape)})"
    if spatial.merged_at is None:
        return f"{text}, the output"
    seen = "the whole input" if spatial.covers_input else "every position of that map"
    return f"{text}; after {spatial.merged_by} every output sees {seen}"


def _latency_rows(table: Table, latency) -> None:
    """The roofline's forward-pass time on a device: the sum of its layers' predicted times, and what it leaves out."""
    device = latency.device
    bound = latency.memory_bound_seconds / latency.seconds if latency.seconds else 0.0
    table.add_row(f"Forward time on {device.key} (predicted)",
                  f"{seconds_text(latency.seconds)} per batch of {latency.batch}, "
                  f"{latency.images_per_second:,.0f} images/s; {bound:.0%} of it in memory-bound layers "
                  f"(roofline: {device.name})")
    if latency.not_predicted:
        table.add_row(Text("  not predicted", style="bold yellow"),
                      Text(f"{_layers(latency.not_predicted)} without a formula (so the time is a lower bound): "
                           f"{_listed(latency.not_predicted)}", style="yellow"))


def _training_rows(table: Table, memory) -> None:
    """One training step's memory, predicted: the peak, when it comes, what it holds; the batch that fits."""
    where = f"{memory.peak_phase} at {memory.peak_at}" if memory.peak_at else memory.peak_phase
    amp = f", autocast {memory.amp}" if memory.amp else ""
    table.add_row("Training step (predicted)", f"{size_bytes(memory.peak_bytes)} at its peak ({where}), "
                  f"{memory.optimizer}{amp}, batch {memory.batch}")
    if memory.foreach or memory.block_bytes > 1:
        lists = ", its autocast lists" if memory.amp and memory.autocast_device == "cuda" else ""
        table.add_row("  on the GPU", f"CUDA's defaults: for-each optimizer kernels, {memory.block_bytes}-byte "
                                      f"allocator blocks{lists} (not yet checked on a GPU)")
    parts = [("params", memory.params_bytes), ("buffers", memory.buffers_bytes),
             ("optimizer state", memory.optimizer_bytes), ("gradients so far", memory.peak_grads_bytes),
             ("activations, their gradients and the batch", memory.peak_activations_bytes + memory.input_bytes)]
    if memory.peak_phase == "optimizer step":
        parts[-1] = ("the batch and the step's temporary", memory.input_bytes + memory.step_temporary_bytes)
    table.add_row("  at the peak", ", ".join(f"{name} {size_bytes(value)}" for name, value in parts if value))
    table.add_row("  kept for backward", f"{size_bytes(memory.saved_bytes)} at the end of the forward pass")
    if memory.checkpoint_starts:
        table.add_row("  checkpointing", f"{len(memory.checkpoint_starts) + 1} segments, starting at "
                                         f"{', '.join(memory.checkpoint_starts)}: every segment but the last keeps "
                                         "only its input and runs its forward again in backward")
    if memory.fit_bytes is not None:
        answer = (f"batch {exact(memory.fits_batch)} at most" if memory.fits_batch
                  else "not even batch 1")
        table.add_row(f"  fits in {size_bytes(memory.fit_bytes)}", answer)
    if memory.uncounted:
        table.add_row(Text("  not counted", style="bold yellow"),
                      Text(f"what {_layers(memory.uncounted)} without a formula keep for backward (so the peak is "
                           f"a lower bound): {_listed(memory.uncounted)}", style="yellow"))


def inspect_view(report: Report, *, depth: int | None = None, verbose: bool = False) -> Group:
    """The layer table, the totals, the cross-check (one line where every peer agrees, unless verbose), the
    conventions."""
    parts = [layer_table(report, depth=depth), totals_table(report)]
    parts.append(crosscheck_text(report, verbose=verbose))
    parts.append(Text(f"Conventions: {CONVENTIONS}", style="dim"))
    return Group(*parts)


def _layers(names) -> str:
    return f"{len(names)} layer{'s' if len(names) > 1 else ''}"


def _listed(names) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _against_module(report: Report, quantity: str, text: str) -> Text:
    """A total as counted, and in red what the module itself holds where the cross-check's module peer disagrees."""
    check = report.crosscheck
    peer = next((p for p in check.peers if p.peer == "module"), None) if check is not None else None
    figure = next((f for f in peer.totals if f.quantity.value == quantity), None) if peer is not None else None
    if figure is None or figure.agrees:
        return Text(text)
    return Text(text) + Text(f"  - not the model's: the module holds {exact(figure.converted)}", style="bold red")
