"""The default thread count of `archviz train` before and after issue 20 §3, on this machine as it is now (busy or
not): lenet on the bundled digits, each configuration in its own process, interleaved over several rounds.

    before    every core this process may use, OpenMP's default wait policy (threads spin a while before sleeping)
    passive   every core, OMP_WAIT_POLICY=PASSIVE
    new       the new default: the cores free (cores less the load average, at least 1), OMP_WAIT_POLICY=PASSIVE
    one       --threads 1, OpenMP's default wait policy

    .venv/bin/python benchmarks/threads.py [--rounds 3] [--epochs 2]

Writes benchmarks/results/threads.json and threads.md: the median images/s of each and its ratio to `before`, with
the load average each run started at. Ratios, not times, are the result: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = {
    "before": "every core, OpenMP's default wait policy (the default before)",
    "passive": "every core, OMP_WAIT_POLICY=PASSIVE",
    "new": "the cores free, OMP_WAIT_POLICY=PASSIVE (the new default)",
    "one": "--threads 1, OpenMP's default wait policy",
}
CHILD = """
import json, sys
config, epochs, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
from archviz.train.threads import choose_threads, load_average, passive_openmp, usable_cores
load = load_average()
if config in ("passive", "new"):
    passive_openmp()
import torch  # loaded now: OpenMP has read its wait policy
from archviz.train.loop import train
threads = {"before": usable_cores(), "passive": usable_cores(), "new": None, "one": 1}[config]
result = train("lenet", dataset="digits", epochs=epochs, threads=threads, output=folder, progress=False)
record = json.load(open(folder + "/run.json"))
print(json.dumps({"config": config, "threads": record["runtime"]["threads"], "load": load,
                  "images_per_second": result.images_per_second, "train_seconds": result.train_seconds}))
"""


def run_one(config: str, epochs: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, "-c", CHILD, config, str(epochs), str(Path(folder) / "run")],
                              env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    runs = []
    for round_ in range(args.rounds):
        for config in CONFIGS:
            run = run_one(config, args.epochs)
            runs.append(run)
            print(f"round {round_ + 1} {config:8} {run['threads']} threads  load {run['load']:.1f}  "
                  f"{run['images_per_second']:8,.0f} images/s", file=sys.stderr)
    summary = {}
    for config in CONFIGS:
        mine = [run for run in runs if run["config"] == config]
        summary[config] = {"median_images_per_second": statistics.median(r["images_per_second"] for r in mine),
                           "threads": sorted({r["threads"] for r in mine}),
                           "loads": [round(r["load"], 2) for r in mine]}
    base = summary["before"]["median_images_per_second"]
    for values in summary.values():
        values["ratio_to_before"] = values["median_images_per_second"] / base
    from archviz.train.threads import usable_cores

    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": usable_cores(), "rounds": args.rounds,
            "epochs": args.epochs, "model": "lenet", "dataset": "digits", "python": sys.version.split()[0]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "threads.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1)
                                          + "\n")
    lines = [f"# archviz train's default thread count, before and after (issue 20 §3)", "",
             f"{meta['date']}: lenet on digits, {args.epochs} epochs, {args.rounds} rounds interleaved, "
             f"{meta['cores']} cores shared with other work (the load average each run started at is listed).", "",
             "| configuration | threads | median images/s | vs before | loads |", "|---|---|---|---|---|"]
    for config, values in summary.items():
        lines.append(f"| {CONFIGS[config]} | {', '.join(map(str, values['threads']))} | "
                     f"{values['median_images_per_second']:,.0f} | {values['ratio_to_before']:.2f}x | "
                     f"{', '.join(f'{load:.1f}' for load in values['loads'])} |")
    (RESULTS / "threads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
