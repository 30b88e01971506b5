"""Trace every torchvision classification model and check it against torch, outside pytest.

    .venv/bin/python fuzz/trace_torchvision.py                   # every model of list_models(torchvision.models)
    .venv/bin/python fuzz/trace_torchvision.py resnet50 vit_b_16

For each model, built on the meta device with its default arguments: archviz traces it (archviz.load
"torchvision:NAME") and the figures are compared with the model itself:
  * params: the graph's total plus the parameters of modules that never ran = sum(p.numel()) of the model;
  * MACs: FlopCounterMode's FLOPs / 2 on meta at batch 1, equal to ours (an opaque layer's MACs are measured by
    FlopCounterMode on its own call; one that could not be measured is in `uncounted` and fails the row).
Prints one row per model: how it was traced (fx or eager), its layers, the opaque ones (what ran) and OK/FAIL; exits
1 if any check fails. tests/test_trace.py runs the same checks on a representative subset.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    layers: int
    opaque: Counter
    params_ok: bool
    macs_ours: int
    macs_torch: int
    uncalled: int
    seconds: float
    error: str = ""

    @property
    def macs_ok(self) -> bool:
        return self.macs_ours == self.macs_torch

    @property
    def ok(self) -> bool:
        return not self.error and self.params_ok and self.macs_ok


def check(name: str) -> Row:
    """Trace torchvision:NAME and compare its params and MACs with the model's own (see the module docstring)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import archviz
    from archviz.crosscheck.common import without_dynamo_import
    from archviz.trace.load import build_meta, parse_source

    start = time.perf_counter()
    try:
        report = archviz.inspect(f"torchvision:{name}")
    except Exception as error:  # a row for the table, not a crash of the whole run
        return Row(name, "-", 0, Counter(), False, 0, 0, 0, time.perf_counter() - start,
                   f"{type(error).__name__}: {str(error)[:120]}")
    graph = report.graph
    model = build_meta(parse_source(f"torchvision:{name}"))
    uncalled = sum(count for _, count in graph.origin.uncalled)
    params_ok = report.totals.params + uncalled == sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with without_dynamo_import(), torch.no_grad(), counter:
        model(torch.empty((1, *graph.input_shape), device="meta"))
    opaque = Counter(node.attrs["target"] for node in graph.nodes if node.op == "opaque")
    return Row(name, graph.origin.method, len(graph.nodes), opaque, params_ok, report.totals.macs,
               counter.get_total_flops() // 2, uncalled, time.perf_counter() - start)


def main(argv: list[str]) -> int:
    import torchvision

    warnings.simplefilter("ignore")
    names = argv or sorted(torchvision.models.list_models(module=torchvision.models))
    print(f"{'model':22} {'trace':5} {'layers':>6} {'params':6} {'MACs (ours / torch)':>31}  {'status':6} opaque ops")
    failed = 0
    for name in names:
        row = check(name)
        failed += not row.ok
        status = "OK" if row.ok else "FAIL"
        if row.error:
            print(f"{name:22} {'-':5} {'-':>6} {'-':6} {'-':>31}  {status:6} {row.error}")
            continue
        macs = f"{row.macs_ours:,} / {row.macs_torch:,}"
        opaque = ", ".join(f"{target} x{n}" for target, n in row.opaque.most_common()) or "none (fully supported)"
        note = f"; {row.uncalled:,} params never run" if row.uncalled else ""
        print(f"{name:22} {row.method:5} {row.layers:6} {'ok' if row.params_ok else 'DIFF':6} {macs:>31}  "
              f"{status:6} {opaque}{note}  ({row.seconds:.1f} s)", flush=True)
    supported = len(names) - failed
    print(f"\n{len(names)} models, {supported} OK, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
