"""torchinfo: output shapes, parameters and "Mult-Adds" per layer, converted to our MACs.

What torchinfo 1.8 counts (torchinfo/layer_info.py, LayerInfo.calculate_macs), for every parameter named weight or
bias of a layer, with output_size = [N, C, H, W] including the batch:
  * a layer whose class name contains "Conv": parameter elements x N x H_out x W_out, so a convolution's figure is
    our MACs plus one bias term per output element (N x C_out x H_out x W_out);
  * any other layer: parameter elements x N (the batch only), so a linear layer on a vector is our MACs plus
    N x out_features bias terms, a linear layer on an (L, F) input misses the factor L, and BatchNorm2d gets
    N x 2C (gamma and beta) although a normalisation is no MAC (we count it as other ops).
Layers without parameters get 0.
"""

from __future__ import annotations

import math
import time

import torch

from archviz.analysis.report import Report
from archviz.crosscheck.common import (
    batch_shape, function_layers_note, meta_model, module_groups, not_counted_reason, version,
)
from archviz.crosscheck.result import TOTAL, Figure, PeerResult, Quantity, compare

PEER = "torchinfo"


def check(report: Report) -> PeerResult:
    import torchinfo

    start = time.perf_counter()
    model = meta_model(report)
    shape = batch_shape(report)
    stats = torchinfo.summary(
        model, input_data=[torch.empty(shape, device="meta")], device="meta", verbose=0, depth=100, mode="eval",
        col_names=("output_size", "num_params", "mult_adds"),
    )
    path_of = {id(module): path for path, module in model.named_modules()}
    rows: dict[str, list] = {}  # module path -> its rows, one per call
    for info in stats.summary_list:
        if info.is_leaf_layer:
            rows.setdefault(path_of.get(id(info.module)), []).append(info)
    figures: list[Figure] = []
    converted_macs = 0
    groups = module_groups(report, model)
    for path, layers in groups.items():
        calls = rows.get(path, [])
        if not calls and report.graph.origin is not None:
            continue  # a traced module that holds others: torchinfo rows only leaf modules
        for call, layer in enumerate(layers):
            if call >= len(calls):
                figures.append(compare(PEER, layer.name, Quantity.MACS, layer.macs, None, known=_partly_seen(layer),
                                       checked=not _partly_seen(layer)))
                continue
            info = calls[call]
            out = tuple(info.output_size)
            out_shape = out[1:] if out[:1] == (report.batch,) else out
            figures.append(compare(PEER, layer.name, Quantity.OUT_SHAPE, layer.out_shape, out_shape))
            if call == 0 and layer.shares:  # a module of its own whose weights are another's (tied)
                figures.append(compare(PEER, layer.name, Quantity.PARAMS, layer.params, info.num_params,
                                       known=f"its weights are {layer.shares}'s (tied): archviz counts them once, "
                                             "there; torchinfo at every module holding them", checked=False))
            elif call == 0:  # a shared module's parameters are counted at its first call
                reused = report.graph.node(layer.name).reused
                figures.append(compare(PEER, layer.name, Quantity.PARAMS, layer.params, info.num_params,
                                       info.num_params - reused, conversion=f"minus {reused:,} parameters of a weight "
                                       "tied to an earlier layer's, which archviz counts there"))
            macs, conversion = _to_macs(layer.op, info)
            converted_macs += macs
            known = not_counted_reason([layer])
            figures.append(compare(PEER, layer.name, Quantity.MACS, layer.macs, info.macs, macs,
                                   conversion=conversion, known=known, checked=not known))
    leaf_sum = sum(info.macs for calls in rows.values() for info in calls)
    uncalled = report.graph.origin.uncalled if report.graph.origin is not None else ()
    skipped = sum(count for _, count in uncalled)
    tied = sum(_formula_params(report.graph.node(layer.name)) if layer.shares else report.graph.node(layer.name).reused
               for layer in report.layers if layer.name in groups)
    conversions = []
    if skipped:
        conversions.append(f"minus {skipped:,} parameters of modules that never ran (not in archviz's totals)")
    if tied:
        conversions.append(f"minus {tied:,} tied parameters torchinfo counts again at each module holding them")
    uncounted = "; ".join(filter(None, [not_counted_reason(report.layers), *{_partly_seen(layer) and
                                         "torchinfo does not count attention products (see those layers)"
                                         for layer in report.layers}]))
    totals = (
        compare(PEER, TOTAL, Quantity.PARAMS, report.totals.params, stats.total_params,
                stats.total_params - skipped - tied, conversion="; ".join(conversions)),
        compare(PEER, TOTAL, Quantity.MACS, report.totals.macs, stats.total_mult_adds,
                stats.total_mult_adds - leaf_sum + converted_macs, conversion="the per-layer conversions, summed",
                known=uncounted, checked=not uncounted),
    )
    unmapped = sorted(str(path) for path in rows if path not in groups)
    notes = [
        "output sizes include the batch dimension; compared without it",
        "Mult-Adds count bias terms and, outside convolutions, scale with the batch only "
        "(torchinfo/layer_info.py, LayerInfo.calculate_macs); converted per layer",
    ]
    if unmapped:
        notes.append(f"torchinfo rows that are no layer of ours: {', '.join(unmapped)}")
    notes.extend(function_layers_note(report, groups))
    return PeerResult(
        peer=PEER, version=version("torchinfo"),
        method=f"torchinfo.summary(depth=100, mode='eval') on the meta device, input {'x'.join(map(str, shape))} "
               f"(batch {report.batch}); rows matched to layers through the module objects",
        layers=tuple(figures), totals=totals, notes=tuple(notes), seconds=time.perf_counter() - start,
    )


def _formula_params(node) -> int:
    from archviz.ops import get_op

    return get_op(node.op).params(node.attrs, list(node.in_shapes))


def _partly_seen(layer) -> str:
    """Why torchinfo has no row for a layer it sees only part of (ops/base.py TorchinfoMacs.PARTIAL), else ''."""
    from archviz.ops import get_op
    from archviz.ops.base import TorchinfoMacs

    if get_op(layer.op).torchinfo_macs != TorchinfoMacs.PARTIAL:
        return ""
    return (f"torchinfo rows leaf modules only: it counts the output projection inside {layer.name}, not its input "
            "projections or attention products")


def _to_macs(op: str, info) -> tuple[int, str]:
    """torchinfo's Mult-Adds of one layer in our MACs, and how, by the op's stated convention (ops/base.py
    TORCHINFO_MACS; see the module docstring)."""
    from archviz.ops import get_op
    from archviz.ops.base import TorchinfoMacs

    convention = get_op(op).torchinfo_macs
    module, out = info.module, list(info.output_size)
    bias = getattr(module, "bias", None)
    bias_elements = bias.numel() if isinstance(bias, torch.Tensor) else 0
    if convention == TorchinfoMacs.CONV:
        positions = math.prod(out[:1] + out[2:])  # N x H_out x W_out
        return info.macs - bias_elements * positions, (
            f"torchinfo adds one bias term per output element for a convolution: minus {bias_elements} bias x "
            f"{positions:,} positions (N x H_out x W_out) = {bias_elements * positions:,}"
        )
    if convention == TorchinfoMacs.TRANSPOSED_CONV:
        positions = math.prod(out[:1] + out[2:])  # N x H_out x W_out, as for a convolution
        inputs = math.prod(info.input_size[:1] + info.input_size[2:])  # N x H_in x W_in
        weight_elements = (info.macs - bias_elements * positions) // positions if positions else 0
        return weight_elements * inputs, (
            f"torchinfo counts a transposed convolution as a convolution, (weights + bias) x {positions:,} output "
            f"positions (N x H_out x W_out); each input element meets each weight once: {weight_elements:,} weights "
            f"x {inputs:,} input positions (N x H_in x W_in)"
        )
    if convention == TorchinfoMacs.LINEAR:
        rows = math.prod(out[1:-1])  # the leading dims torchinfo leaves out
        macs = (info.macs - bias_elements * out[0]) * rows
        text = f"torchinfo counts (weights + bias) x N: minus {bias_elements} bias x N={out[0]}"
        return macs, text + (f", times the {rows} rows of each sample that it leaves out" if rows > 1 else "")
    if convention == TorchinfoMacs.NORMALISATION:
        return 0, (
            f"torchinfo counts {op}'s scale and shift times N ({info.num_params} x {out[0]}) as Mult-Adds; a "
            "normalisation is no MAC (archviz counts it as other ops)"
        )
    if convention == TorchinfoMacs.NO_MACS:
        return 0, (f"torchinfo counts {op}'s parameters times N ({info.num_params} x {out[0]}) as Mult-Adds; {op} "
                   "multiply-accumulates nothing (a row looked up, a parameter added or scaling)")
    return info.macs, "torchinfo counts parameters x N for layers other than convolutions"
