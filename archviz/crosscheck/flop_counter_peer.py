"""torch.utils.flop_counter.FlopCounterMode: FLOPs per module on the meta device, halved to MACs.

FlopCounterMode counts 2 FLOPs per multiply-accumulate of aten.convolution (2 x N x C_out x H_out x W_out x
C_in/groups x k_h x k_w), aten.addmm/mm/bmm (2 x M x N x K) and attention; bias adds, normalisation, pooling and
activations count 0. So each layer's FLOPs / 2 is our MACs, with no other conversion.
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from archviz.analysis.report import Report
from archviz.crosscheck.common import (
    batch_shape, function_layers_note, meta_model, module_groups, not_counted_reason, version, without_gradients,
)
from archviz.crosscheck.result import TOTAL, PeerResult, Quantity, compare

PEER = "flop_counter"
HALVE = "FlopCounterMode counts 2 FLOPs per multiply-accumulate; halved"


def check(report: Report) -> PeerResult:
    start = time.perf_counter()
    model = without_gradients(meta_model(report))
    shape = batch_shape(report)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(shape, device="meta"))
    counts = counter.get_flop_counts()
    prefix = type(model).__name__  # ModuleTracker names modules "<root class>.<path>"
    figures = []
    groups = module_groups(report, model)
    for path, layers in groups.items():
        flops = sum(counts.get(f"{prefix}.{path}", {}).values())
        ours = sum(layer.macs for layer in layers)  # a module called twice: FlopCounterMode adds up its calls
        known = not_counted_reason(layers)
        figures.append(compare(PEER, layers[0].name, Quantity.MACS, ours, flops, _half(flops), conversion=HALVE,
                               known=known, checked=not known))
    total = counter.get_total_flops()
    uncounted = not_counted_reason(report.layers)
    by_op = ", ".join(f"{op}: {flops:,}" for op, flops in counts.get("Global", {}).items()) or "none"
    return PeerResult(
        peer=PEER, version=version("torch"),
        method=f"torch.utils.flop_counter.FlopCounterMode around a forward pass on the meta device, input "
               f"{'x'.join(map(str, shape))} (batch {report.batch}); FLOPs per module / 2",
        layers=tuple(figures),
        totals=(compare(PEER, TOTAL, Quantity.MACS, report.totals.macs, total, _half(total), conversion=HALVE,
                        known=uncounted, checked=not uncounted),),
        notes=(HALVE, f"FLOPs by aten op: {by_op}", *function_layers_note(report, groups)),
        seconds=time.perf_counter() - start,
    )


def _half(flops: int) -> int | float:
    return flops // 2 if flops % 2 == 0 else flops / 2
