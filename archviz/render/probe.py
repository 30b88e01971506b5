"""The table `archviz probe` prints: test accuracy per block of the pretext backbone, beside the random and the
supervised one; mean and standard deviation over the seed runs."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archviz.pretrain.probe import ProbeResult

HEADINGS = {"pretext": "pretext", "random": "random init", "supervised": "supervised"}


def accuracy_text(values) -> str:
    """'96.4%' for one run, '96.4% ± 0.3' over several (the sample standard deviation, in points)."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1%}"
    return f"{mean:.1%} ± {100 * statistics.stdev(values):.1f}"


def probe_table(result: ProbeResult) -> str:
    runs = len(result.runs)
    title = (f"{result.kind.value} probe of the {result.task} backbone on {result.dataset} ({result.test_split} "
             f"accuracy; {runs} run{'s' if runs != 1 else ''}{', mean ± std in points' if runs > 1 else ''})")
    rows = [["block", "features", *HEADINGS.values()]]
    rows += [[b.block, f"{b.features:,}", *(accuracy_text(b.accuracy[key]) for key in HEADINGS)]
             for b in result.blocks]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title, ""] + ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                                     enumerate(zip(row, widths))).rstrip() for row in rows]
    if result.finetune:
        lines += ["", f"fine-tuned from the pretext weights: {accuracy_text(result.finetune['finetune'])}; "
                      f"supervised from scratch, same budget: {accuracy_text(result.finetune['supervised'])}"]
    lines += ["", f"written to {result.folder}/probe-{result.kind.value}.json"]
    return "\n".join(lines) + "\n"
