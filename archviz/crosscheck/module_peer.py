"""The module itself: the whole model's parameters, buffers and MACs counted on the nn.Module, apart from archviz's
graph, and compared with the report's totals strictly: a gap is a disagreement, whatever layers archviz could not
count (the other peers compare per layer and excuse a layer without a formula; this one excuses nothing).

The module is the user's original one built again on the meta device for a traced graph, archviz.torch_build's for a
spec (common.meta_model). One forward pass at the report's input and batch, on the meta device, gives:
  * params: `sum(p.numel() for p in module.parameters())`; parameters() yields a tensor shared by several modules
    once (torch.nn.Module.named_parameters, remove_duplicate=True), as archviz counts tied weights once;
  * buffers: the same over module.buffers(), less BatchNorm's one-element step counter num_batches_tracked, which
    archviz does not count (archviz/trace/assemble.py NOT_STORED);
  * MACs: torch.utils.flop_counter.FlopCounterMode's total FLOPs / 2 (it counts 2 per multiply-accumulate of
    convolutions, matrix products and attention, 0 for everything else).
Both archviz and this count only weights the forward pass uses: tensors that no aten op read during the pass (a
module that never ran, such as an auxiliary head in eval mode) are taken out, measured by a TorchDispatchMode that
records every tensor an op receives. A batch-norm module runs shape-only here (common._shape_only_batch_norm), so
its own tensors count as read when it ran.
"""

from __future__ import annotations

import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from archviz.analysis.report import Report
from archviz.crosscheck.common import batch_shape, meta_model, version, without_gradients
from archviz.crosscheck.result import TOTAL, Figure, PeerResult, Quantity, compare
from archviz.trace.assemble import NOT_STORED

PEER = "module"
SHOWN = 3  # names listed in a reason before "and N more"


class _ReadTensors(TorchDispatchMode):
    """Records the identity of every tensor an aten op receives while the mode is on."""

    def __init__(self):
        super().__init__()
        self.ids: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ids.update(id(leaf) for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor))
        return func(*args, **kwargs)


def check(report: Report) -> PeerResult:
    start = time.perf_counter()
    model = without_gradients(meta_model(report))
    shape = batch_shape(report)
    read = _ReadTensors()
    handles = [module.register_forward_hook(_mark_own_tensors(read)) for module in model.modules()
               if "forward" in vars(module)]  # the shape-only batch norms, which read nothing
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter, read:
            model(torch.empty(shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    built = "the original module, built again" if report.graph.origin is not None else "archviz.torch_build's module"
    return PeerResult(
        peer=PEER, version=version("torch"),
        method=f"{built} on the meta device: its parameters and buffers, and FlopCounterMode's FLOPs / 2 in one "
               f"forward pass at {'x'.join(map(str, shape))} (batch {report.batch}); totals only, no layer excused",
        totals=(_params(report, model, read.ids), _buffers(report, model, read.ids),
                _macs(report, counter, prefix=type(model).__name__,
                      modules={path for path, _ in model.named_modules()})),
        notes=_measured_note(report), seconds=time.perf_counter() - start,
    )


def _measured_note(report: Report) -> tuple[str, ...]:
    """What of archviz's MACs total is FlopCounterMode's own measurement, which this comparison cannot confirm."""
    measured = [layer for layer in report.layers if layer.measured]
    in_layers = sum(layer.macs for layer in measured)
    if not in_layers and not report.totals.weight_macs:
        return ()
    parts = [f"{in_layers:,} in layers without a formula ({_listed(layer.name for layer in measured)})"] \
        if measured else []
    if report.totals.weight_macs:
        parts.append(f"{report.totals.weight_macs:,} on weights alone")
    return (f"of archviz's MACs, {' and '.join(parts)} are FlopCounterMode's own measurement, not a formula: "
            "the total agreeing does not confirm them",)


def _mark_own_tensors(read: _ReadTensors):
    def mark(module, inputs, output):
        read.ids.update(id(t) for t in (*module.parameters(recurse=False), *module.buffers(recurse=False)))

    return mark


def _params(report: Report, model, read: set[int]) -> Figure:
    named = list(model.named_parameters())
    held = sum(p.numel() for _, p in named)
    unread = _by_module((name, p.numel()) for name, p in named if id(p) not in read)
    conversions = [_unread_text(unread, "parameters")] if unread else []
    figure = _total(Quantity.PARAMS, report.totals.params, held, held - sum(unread.values()), conversions)
    if figure.agrees:
        return figure
    lost = _lost_params(report, named, read)
    return _gap(figure, f"params: {report.totals.params:,} counted, the module holds {held:,}", "parameters",
                conversions, where=f"in tensors no layer of archviz's holds: {lost}" if lost else "")


def _buffers(report: Report, model, read: set[int]) -> Figure:
    named = list(model.named_buffers())
    held = sum(b.numel() for _, b in named)
    steps = sum(b.numel() for name, b in named if name.endswith(NOT_STORED))
    unread = _by_module((name, b.numel()) for name, b in named if id(b) not in read and not name.endswith(NOT_STORED))
    conversions = [f"minus {steps:,} elements of BatchNorm's step counter {NOT_STORED}, which archviz does not "
                   "count"] if steps else []
    conversions += [_unread_text(unread, "buffer elements")] if unread else []
    figure = _total(Quantity.BUFFERS, report.totals.buffers, held, held - steps - sum(unread.values()), conversions)
    if figure.agrees:
        return figure
    return _gap(figure, f"buffers: {report.totals.buffers:,} counted, the module holds {held:,}", "buffer elements",
                conversions, where=_lost_buffers(report, named, read))


def _lost_buffers(report: Report, named, read: set[int]) -> str:
    """Where the buffers the forward pass read may be that archviz did not count: modules that hold no layer of
    archviz's, else the modules that read them and are no layer themselves ('' when there are none)."""
    used = _by_module((name, b.numel()) for name, b in named if id(b) in read and not name.endswith(NOT_STORED))
    unseen = _unseen_modules(report, _with_children(used))
    if unseen:
        return f"in modules that hold no layer of archviz's: {_listed(_counted(unseen))}"
    # a buffer that a function call inside a module reads (an index table) is counted only where the trace placed it
    layers = {layer.name for layer in report.layers}
    loose = {path: count for path, count in used.items() if path not in layers}
    return f"read by the forward pass in modules that are no layer themselves: {_listed(_counted(loose))}" \
        if loose else ""


def _macs(report: Report, counter: FlopCounterMode, *, prefix: str, modules: set[str]) -> Figure:
    flops = counter.get_total_flops()
    measured = flops // 2 if flops % 2 == 0 else flops / 2
    ours = report.totals.macs
    figure = compare(PEER, TOTAL, Quantity.MACS, ours, flops, measured,
                     conversion="FlopCounterMode counts 2 FLOPs per multiply-accumulate; halved")
    if figure.agrees:
        return figure
    if measured <= ours:
        return _unexplained(figure, f"macs: {ours:,} counted, torch measured {measured:,}: archviz counts "
                                    f"{ours - measured:,} more")
    where = []
    short = _short_modules(report, _module_macs(counter, prefix), modules)
    if short:
        where.append(f"torch measured more than archviz counts in {_listed(_counted(short))}")
    if report.totals.uncounted:
        where.append(f"layers without a formula: {_listed(report.totals.uncounted)}")
    return _unexplained(figure, f"macs: {ours:,} counted, torch measured {measured:,}: {measured - ours:,} MACs "
                                f"torch measured that archviz did not count" + "".join(f"; {w}" for w in where))


def _module_macs(counter: FlopCounterMode, prefix: str) -> dict[str, int]:
    """Module path -> the MACs FlopCounterMode measured in it, children included, in the order it met them."""
    macs = {}
    for key, by_op in counter.get_flop_counts().items():
        if key.startswith(f"{prefix}."):  # ModuleTracker names modules "<root class>.<path>"
            macs[key.removeprefix(f"{prefix}.")] = sum(by_op.values()) // 2
    return macs


def _short_modules(report: Report, measured: dict[str, int], modules: set[str]) -> dict[str, int]:
    """Where torch measured more MACs than archviz's layers hold: module path -> the MACs missing there, going down
    the module tree to a layer, a module that holds no layer, or a module none of whose children is short.

    measured: module path -> FlopCounterMode's MACs in it, children included. A layer's MACs are counted in its own
    module and every module above it; a later call of a shared module (named "relu_1") in the module it calls.
    """
    ours: dict[str, int] = {}
    for layer in report.layers:
        key = layer.shares if layer.shares and layer.name not in modules else layer.name
        for depth in range(key.count(".") + 1):
            ancestor = key.rsplit(".", depth)[0]
            ours[ancestor] = ours.get(ancestor, 0) + layer.macs
    short = {path: macs - ours.get(path, 0) for path, macs in measured.items() if macs > ours.get(path, 0)}
    layers = {layer.name for layer in report.layers}

    def above(path: str, among) -> bool:
        return any(path.startswith(f"{outer}.") for outer in among)

    found: dict[str, int] = {}
    for path in sorted(short, key=lambda p: p.count(".")):
        if above(path, found):
            continue
        children = [other for other in short if other.startswith(f"{path}.")]
        if path in layers or path not in ours or not children:
            found[path] = short[path]
    return {path: found[path] for path in short if path in found}  # in the order torch met them


def _unseen_modules(report: Report, counts: dict[str, int]) -> dict[str, int]:
    """The outermost module paths, with their counts, that are no layer of the report, hold none and are held by
    none (a module inside a layer ran as part of it).

    counts: module path -> a count that includes the module's children (as FlopCounterMode's does).
    """
    layers = {layer.name for layer in report.layers}
    seen = {name.rsplit(".", depth)[0] for name in layers for depth in range(name.count(".") + 1)}

    def inside_a_layer(path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:depth]) in layers for depth in range(1, len(parts)))

    unseen = [path for path, count in counts.items() if count and path not in seen and not inside_a_layer(path)]
    return {path: counts[path] for path in unseen
            if not any(path.startswith(f"{outer}.") for outer in unseen)}


def _total(quantity: Quantity, ours: int, held: int, converted: int, conversions: list[str]) -> Figure:
    return compare(PEER, TOTAL, quantity, ours, held, converted, conversion="; ".join(conversions))


def _gap(figure: Figure, head: str, unit: str, conversions: list[str], *, where: str = "") -> Figure:
    gap = figure.converted - figure.ours
    converted = f" ({'; '.join(conversions)}: {figure.converted:,})" if conversions else ""
    if gap > 0:
        tail = f"{gap:,} {unit} archviz did not count" + (f", {where}" if where else "")
    else:
        tail = f"archviz counts {-gap:,} {unit} more than that"
    return _unexplained(figure, f"{head}{converted}: {tail}")


def _unexplained(figure: Figure, reason: str) -> Figure:
    return Figure(figure.layer, figure.quantity, figure.ours, figure.reported, figure.converted, reason,
                  checked=True, explained=False)


def _by_module(named_counts) -> dict[str, int]:
    """Module path ('(top)' for the root) -> elements, in the model's order."""
    grouped: dict[str, int] = {}
    for name, count in named_counts:
        path = name.rpartition(".")[0] or "(top)"
        grouped[path] = grouped.get(path, 0) + count
    return grouped


def _unread_text(unread: dict[str, int], unit: str) -> str:
    shown = _listed(_counted(unread))
    return (f"minus {sum(unread.values()):,} {unit} no op read in the forward pass (a module or branch that did not "
            f"run): {shown}")


def _lost_params(report: Report, named, read: set[int]) -> str:
    """Where the parameters the forward pass read but archviz did not count are: modules that hold no layer of
    archviz's, and for a traced graph the weights its trace could not place (Origin.uncalled) held by a module that
    does hold layers (a class token on the model itself)."""
    used = _by_module((name, p.numel()) for name, p in named if id(p) in read)
    unseen = _unseen_modules(report, _with_children(used))
    unplaced = {path or "(top)" for path, _ in report.graph.origin.uncalled} if report.graph.origin else set()
    held = {path: count for path, count in used.items() if path in unplaced
            and not any(path == outer or path.startswith(f"{outer}.") for outer in unseen)}
    return _listed(_counted({**held, **unseen}))


def _with_children(counts: dict[str, int]) -> dict[str, int]:
    """Module path -> its own count plus every descendant's (paths from _by_module; '(top)' is the root)."""
    total: dict[str, int] = {}
    for path, count in counts.items():
        if path == "(top)":
            continue
        parts = path.split(".")
        for depth in range(1, len(parts) + 1):
            ancestor = ".".join(parts[:depth])
            total[ancestor] = total.get(ancestor, 0) + count
    return total


def _counted(counts: dict[str, int]) -> list[str]:
    return [f"{path} ({count:,})" for path, count in counts.items()]


def _listed(names) -> str:
    names = list(names)
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
