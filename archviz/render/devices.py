"""A roofline device's figures as a table: what `archviz calibrate` measured, or a datasheet's."""

from __future__ import annotations

from rich.table import Table

from archviz.analysis.devices import Device, Precision
from archviz.format import seconds_text, size_bytes


def device_table(device: Device) -> Table:
    table = Table(title=f"{device.name} ({device.key})", title_justify="left", box=None, show_header=False,
                  pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for precision in Precision:
        peak = device.peak(precision)
        if peak is not None:
            table.add_row(f"Peak {precision.value}", f"{peak / 1e12:.3g} TFLOP/s")
    table.add_row("Memory bandwidth", f"{device.memory_bandwidth / 1e9:.3g} GB/s")
    if device.cache_bytes is not None and device.cache_bandwidth is not None:
        table.add_row("Cache", f"{size_bytes(device.cache_bytes)} at {device.cache_bandwidth / 1e9:.3g} GB/s")
    table.add_row("Per-op overhead", seconds_text(device.launch_overhead_s))
    if device.conv_overheads:
        table.add_row("Conv overhead", ", ".join(f"{size}x{size} {seconds_text(seconds)}"
                                                 for size, seconds in device.conv_overheads))
    if device.depthwise_flops is not None:
        table.add_row("Depthwise conv", f"{device.depthwise_flops / 1e9:.3g} GFLOP/s")
    if device.pool_outputs_per_s is not None:
        table.add_row("Max pool", f"{device.pool_outputs_per_s / 1e6:.3g} M outputs/s")
    if device.transcendental_per_s is not None:
        table.add_row("tanh, sigmoid, GELU", f"{device.transcendental_per_s / 1e6:.3g} M elements/s")
    if device.mean_pool_outputs_per_s is not None:
        table.add_row("Average pool", f"{device.mean_pool_outputs_per_s / 1e6:.3g} M outputs/s")
    table.add_row("Ridge (FP32)", f"{device.ridge_intensity:.3g} FLOPs per byte")
    table.add_row("Source", device.source)
    return table
