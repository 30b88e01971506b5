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
    if device.native_conv_overhead_s is not None and device.onednn_conv_overhead_s is not None:
        table.add_row("Conv overhead", f"native {seconds_text(device.native_conv_overhead_s)}, oneDNN "
                      f"{seconds_text(device.onednn_conv_overhead_s)}"
                      + (" and its weight copy" if device.reorders_conv_weights else ""))
    if device.depthwise_flops is not None:
        table.add_row("Depthwise conv", f"{device.depthwise_flops / 1e9:.3g} GFLOP/s")
    if device.max_pool is not None:
        table.add_row("Max pool", _pool_text(device.max_pool))
    if device.transcendental_per_s is not None:
        table.add_row("tanh, sigmoid, GELU", f"{device.transcendental_per_s / 1e6:.3g} M elements/s")
    if device.mean_pool is not None:
        table.add_row("Average pool", _pool_text(device.mean_pool))
    table.add_row("Ridge (FP32)", f"{device.ridge_intensity:.3g} FLOPs per byte")
    table.add_row("Source", device.source)
    return table


def _pool_text(cost) -> str:
    return (f"{cost.per_output_s * 1e9:.3g} ns per output + {cost.per_element_s * 1e9:.3g} ns per window element "
            f"(3x3: {cost.seconds(1, 9) * 1e9:.3g} ns)")
