"""What each pretext task teaches LeNet on the digits, measured by `archviz probe` (GitHub issue 10's targets).

    .venv/bin/python benchmarks/pretext_probe.py                                  # rotation, simclr, jigsaw; 10 seeds
    .venv/bin/python benchmarks/pretext_probe.py --tasks rotation --seeds 2 --epochs 3   # a quick look

For each task: `archviz pretrain lenet --task T --seeds N --epochs E --threads 1` into benchmarks/runs/T, then
`archviz probe` (a logistic regression on each block's frozen features; the same architecture at its random
initialisation and trained with the labels under the same budget beside it). The supervised runs depend only on
the model, the dataset, the settings and the seed, so the first task's are copied to the others instead of being
trained again. Writes benchmarks/results/pretext.{json,md}: per task and block the mean and standard deviation over
the seeds, and the difference to the random initialisation, against the issue's figures (measured there with a
plain PyTorch LeNet: random init 96.4% at the last block, 120-d, and 97.7% at the previous one, 400-d; rotation
+0.6 / +0.4 points, simclr +1.5 / +1.1, jigsaw -7.7 at the last block while the previous one holds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ISSUE_DELTAS = {"rotation": (0.6, 0.4), "simclr": (1.5, 1.1), "jigsaw": (-7.7, 0.0)}  # (last, previous) block
ISSUE_RANDOM = (96.4, 97.7)


def archviz(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "archviz.cli", *args], check=True, cwd=ROOT)


def pretrain_and_probe(task: str, *, seeds: int, epochs: int, runs: Path, supervised_from: Path | None,
                       model: str = "lenet") -> dict:
    folder = runs / task
    started = time.perf_counter()
    if not all((folder / f"seed-{k}" / "run.json").is_file() for k in range(seeds)):
        shutil.rmtree(folder, ignore_errors=True)
        archviz("pretrain", model, "--task", task, "--seeds", str(seeds), "--epochs", str(epochs), "--threads", "1",
                "-o", str(folder))
    pretrain_seconds = time.perf_counter() - started
    if supervised_from is not None:
        for k in range(seeds):
            target = folder / f"seed-{k}" / "supervised"
            if not target.exists():
                shutil.copytree(supervised_from / f"seed-{k}" / "supervised", target)
    archviz("probe", str(folder))
    probe = json.loads((folder / "probe-linear.json").read_text())
    return {"task": task, "model": model, "seeds": seeds, "epochs": epochs, "pretrain_seconds": pretrain_seconds,
            "blocks": probe["blocks"]}


def summary(result: dict) -> list[dict]:
    rows = []
    for block in result["blocks"]:
        pretext, random = (100 * statistics.fmean(block["accuracy"][k]) for k in ("pretext", "random"))
        deltas = [100 * (p - r) for p, r in zip(block["accuracy"]["pretext"], block["accuracy"]["random"])]
        rows.append({"block": block["block"], "features": block["features"], "pretext": pretext, "random": random,
                     "supervised": 100 * statistics.fmean(block["accuracy"]["supervised"]),
                     "delta": statistics.fmean(deltas),
                     "delta_std": statistics.stdev(deltas) if len(deltas) > 1 else 0.0})
    return rows


def markdown(results: list[dict]) -> str:
    lines = ["# Pretext tasks on LeNet / digits: linear probe per block (1 thread)", "",
             "| task | seeds | epochs | block | features | pretext % | random init % | supervised % | "
             "pretext - random (points) | issue's figure |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        rows = summary(result)
        for index, row in enumerate(rows):
            expected = ISSUE_DELTAS.get(result["task"])
            position = len(rows) - 1 - index  # 0: the last block, 1: the one before
            issue = f"{expected[position]:+.1f}" if expected and position < 2 else ""
            lines.append(f"| {result['task']} | {result['seeds']} | {result['epochs']} | {row['block']} | "
                         f"{row['features']} | {row['pretext']:.1f} | "
                         f"{row['random']:.1f} | {row['supervised']:.1f} | {row['delta']:+.1f} ± "
                         f"{row['delta_std']:.1f} | {issue} |")
    lines += ["", f"The issue's random-init figures: {ISSUE_RANDOM[0]}% (last block, 120-d) and {ISSUE_RANDOM[1]}% "
              "(previous block, 400-d). ± is the standard deviation over the seeds of the per-seed difference."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="rotation,simclr,jigsaw")
    parser.add_argument("--model", default="lenet", help="a zoo name or spec file, e.g. benchmarks/plain_lenet.yaml")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs"))
    parser.add_argument("--results", default=str(RESULTS), help="the folder of pretext.json and pretext.md")
    parser.add_argument("--supervised-from", help="a task folder whose seed-K/supervised runs serve again")
    args = parser.parse_args()
    results_dir = Path(args.results)
    saved = results_dir / "pretext.json"
    stored = json.loads(saved.read_text()) if saved.is_file() else {"results": []}
    earlier = [{"seeds": stored.get("seeds"), "epochs": stored.get("epochs"), **r} for r in stored["results"]]
    tasks = args.tasks.split(",")
    results = [r for r in earlier if r["task"] not in tasks]
    # the supervised runs depend only on the model, dataset, settings and seed: an earlier task's serve again
    first = Path(args.supervised_from) if args.supervised_from else next(
        (Path(args.runs) / r["task"] for r in results if r["seeds"] >= args.seeds and r["epochs"] == args.epochs), None)
    for task in tasks:
        results.append(pretrain_and_probe(task, seeds=args.seeds, epochs=args.epochs, runs=Path(args.runs),
                                          supervised_from=first, model=args.model))
        first = first or Path(args.runs) / task
        results_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"results": results}, indent=1) + "\n")
        (results_dir / "pretext.md").write_text(markdown(results))
    sys.stdout.write((results_dir / "pretext.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
