"""The formula path's speed against a baseline commit: validate() and analyze() of zoo models, in-process.

    .venv/bin/python benchmarks/formula_path.py --baseline REV [--repeat 40] [--results benchmarks/results/formula_path.md]

The baseline is checked out with `git worktree` into a temporary folder; each tree runs in its own interpreter (the
same .venv), alternating (which tree goes first alternates too), and each reports its best time over --repeat
passes; the ratio is current / baseline (below 1: faster). Four rounds, so a busy moment on the machine shows as a
spread between them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("resnet152", "inception_v3", "vgg19", "googlenet", "alexnet", "lenet")
ROUNDS = 4

CHILD = """
import json, sys, time
import archviz
from archviz.analysis import analyze
from archviz.graph.build import validate
from archviz.spec.zoo import load_zoo
specs = [load_zoo(name) for name in {models!r}]
graphs = [validate(spec) for spec in specs]
best_validate = best_analyze = float("inf")
for _ in range({repeat}):
    start = time.perf_counter()
    for spec in specs:
        validate(spec)
    best_validate = min(best_validate, time.perf_counter() - start)
    start = time.perf_counter()
    for graph in graphs:
        analyze(graph)
    best_analyze = min(best_analyze, time.perf_counter() - start)
layers = sum(len(graph.nodes) for graph in graphs)
print(json.dumps({{"validate_s": best_validate, "analyze_s": best_analyze, "layers": layers,
                  "module": archviz.__file__}}))
"""


def timed(tree: Path, repeat: int) -> dict:
    code = CHILD.format(models=MODELS, repeat=repeat)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, check=True)
    figures = json.loads(done.stdout)
    assert figures["module"].startswith(str(tree)), figures["module"]  # the tree asked for, not the installed one
    return figures


def _round(baseline: Path, repeat: int, *, current_first: bool) -> tuple[dict, dict]:
    """(baseline, current) figures, timed in the order given: rounds alternate which tree runs first, so that a
    machine warming up or slowing down does not favour one tree."""
    if current_first:
        now = timed(ROOT, repeat)
        return timed(baseline, repeat), now
    then = timed(baseline, repeat)
    return then, timed(ROOT, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/formula_path.md")
    args = parser.parse_args()
    revision = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    current = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as folder:
        baseline = Path(folder) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(baseline), revision], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            rounds = [_round(baseline, args.repeat, current_first=bool(i % 2)) for i in range(ROUNDS)]
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=True)
    rows = []
    for stage in ("validate_s", "analyze_s"):
        ratios = [now[stage] / then[stage] for then, now in rounds]
        then = min(r[0][stage] for r in rounds)
        now = min(r[1][stage] for r in rounds)
        rows.append(f"| {stage.removesuffix('_s')} | {then * 1000:.2f} | {now * 1000:.2f} | "
                    f"{now / then:.3f} | {min(ratios):.3f} .. {max(ratios):.3f} |")
    layers = rounds[0][1]["layers"]
    text = "\n".join([
        f"# Formula path: working tree of {current} against {revision}",
        "",
        f"validate() and analyze() of {', '.join(MODELS)} ({layers:,} layers), in-process, best of {args.repeat} "
        f"passes per tree, {ROUNDS} alternating rounds (benchmarks/formula_path.py).",
        "",
        "| stage | baseline ms | current ms | ratio (best) | ratio per round |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ])
    args.results.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
