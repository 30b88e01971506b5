"""Activation checkpointing: what it saves and what it costs, predicted and measured.

    .venv/bin/python benchmarks/checkpointing.py                       # the default models, batch 8 and 32
    .venv/bin/python benchmarks/checkpointing.py --models lenet --batches 2 --segments 2 -o /tmp/out
    .venv/bin/python benchmarks/checkpointing.py --resume              # keep the results file's models

For each model and batch, on this machine's CPU, one SGD training step in float32 of archviz's torch build
(torch_build.ArchvizModel, random weights), without checkpointing and with N segments (analysis/checkpointing.py):
  * predicted: `archviz inspect MODEL --train --optimizer sgd --batch B --checkpointing N`'s peak;
  * measured: archviz/profile's live-storage tracker over one steady-state step (`archviz profile MODEL --train
    --checkpointing N`), and the median step time over --iterations steps (without the tracker);
  * saving and cost: the measured peak and the median step time over those of the same model and batch without
    checkpointing, measured in the same run of this script through the same build.
Results: benchmarks/results/checkpointing.md (and .json), with the CPU's name, rewritten after each model.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from statistics import median_high

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archviz.profile.calibrate import cpu_name  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

MODELS = ("torchvision:resnet18", "torchvision:mobilenet_v2", "resnet50", "torchvision:densenet121", "vgg11")
BATCHES = (8, 32)
SEGMENTS = (2, 4, 8)
TARGET = 0.10  # every training step's: within 10% of the measured peak


def one_run(source: str, batch: int, segments: int | None, *, input_shape, iterations: int) -> dict:
    """Predicted and measured peak, step time and segment starts of one step; segments=None is no checkpointing."""
    import archviz
    from archviz.profile.run import measure_graph

    graph = archviz.load(source, input=input_shape)
    memory = archviz.inspect(source, input=input_shape, batch=batch, optimizer="sgd",
                             checkpointing=segments).totals.training_memory
    # the same build with and without segments, so the saving is checkpointing's alone
    measured = measure_graph(graph, checkpointing=segments, batch=batch, train=True, optimizer="sgd",
                             iterations=iterations, warmup=1, per_layer=False)
    return {"model": source, "input": "x".join(map(str, graph.input_shape)), "batch": batch,
            "segments": segments, "made": len(measured.checkpoint_starts) + 1 if segments else 1,
            "starts": list(measured.checkpoint_starts), "predicted_starts": list(memory.checkpoint_starts),
            "predicted": memory.peak_bytes, "measured": measured.peak_bytes,
            "error": (memory.peak_bytes - measured.peak_bytes) / measured.peak_bytes,
            "seconds": measured.seconds, "iterations": iterations,
            "predicted_at": f"{memory.peak_phase} {memory.peak_at}".strip(),
            "measured_at": _place(measured.peak_place, modules_followed=segments is None)}


def _place(place, *, modules_followed: bool) -> str:
    """The tracker's peak: the aten op, and the phase and module where the tracker followed modules (it does not in
    a checkpointed step, whose module hooks would keep the tensors a segment makes again in backward)."""
    if place is None:
        return ""
    if not modules_followed:
        return place.op
    return " ".join(part for part in ("backward" if place.backward else "forward", place.op, place.module) if part)


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row with its saving and cost against the run without checkpointing of the same model and batch."""
    plain = {(r["model"], r["batch"]): r for r in rows if r["segments"] is None}
    out = []
    for row in rows:
        base = plain.get((row["model"], row["batch"]))
        ratios = {} if base is None or row["segments"] is None else {"peak_ratio": row["measured"] / base["measured"],
                                          "predicted_ratio": row["predicted"] / base["predicted"],
                                          "time_ratio": row["seconds"] / base["seconds"]}
        out.append({**row, **ratios})
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="these sources (default: %(default)s)")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="default: %(default)s")
    parser.add_argument("--segments", type=int, nargs="+", default=list(SEGMENTS),
                        help="segment counts besides no checkpointing (default: %(default)s)")
    parser.add_argument("--input", help="CxHxW for every model (default: each model's own)")
    parser.add_argument("--iterations", type=int, default=3, help="timed steps per run, the median kept (default 3)")
    parser.add_argument("--resume", action="store_true", help="keep the results file's models and measure the rest")
    parser.add_argument("--note", default="", help="a sentence for the results' header (what was left out, why)")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS, help="results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.iterations < 2:
        parser.error("--iterations: at least 2, so the step time is a median of steps")
    warnings.simplefilter("ignore")
    args.output.mkdir(parents=True, exist_ok=True)
    rows, skipped = _kept(args.output) if args.resume else ([], [])
    done = {row["model"] for row in rows}
    for source in args.models:
        if source in done:
            continue
        for batch in args.batches:
            for segments in (None, *args.segments):
                try:
                    row = one_run(source, batch, segments, input_shape=args.input, iterations=args.iterations)
                except Exception as error:  # out of memory, a model with no cut: said in the results, not fatal
                    skipped.append(f"{source} at batch {batch}, {segments or 'no'} segments: "
                                   f"{str(error).strip().splitlines()[0][:120]}")
                    continue
                rows.append(row)
                print(f"{source} b{batch} segments {segments or '-'}: {row['error']:+.2%}, {row['seconds']:.2f} s",
                      flush=True)
        done.add(source)
        _write(args.output, rows, skipped, note=args.note, done=len(done), of=len(done | set(args.models)))
    return 0


def _kept(folder: Path) -> tuple[list[dict], list[str]]:
    path = folder / "checkpointing.json"
    if not path.exists():
        return [], []
    kept = json.loads(path.read_text())
    return [{k: v for k, v in row.items() if not k.endswith("_ratio")} for row in kept["rows"]], kept["skipped"]


def _write(folder: Path, rows: list[dict], skipped: list[str], *, note: str, done: int, of: int) -> None:
    """The results so far (an interrupted run leaves the models it finished, and says how many)."""
    rows = with_ratios(rows)
    header = _header(note)
    (folder / "checkpointing.json").write_text(json.dumps({**header, "summary": summary(rows), "rows": rows,
                                                           "skipped": skipped, "models_done": done, "models": of},
                                                          indent=1))
    text = markdown(rows, skipped, header)
    if done < of:
        text = text.replace("\n\n", f"\n\nPartial: {done} of {of} models measured so far.\n\n", 1)
    (folder / "checkpointing.md").write_text(text)


def _header(note: str) -> dict:
    import torch

    return {"machine": f"{platform.processor() or platform.machine()}, {cpu_name()}", "threads":
            torch.get_num_threads(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "note": note}


def summary(rows: list[dict]) -> dict:
    errors = [abs(r["error"]) for r in rows]
    checkpointed = [r for r in rows if r["segments"] and "peak_ratio" in r]
    return {"runs": len(rows), "within_target": sum(e <= TARGET for e in errors),
            "largest_error": max(errors, default=0.0), "median_error": median_high(errors or [0.0]),
            "peak_ratio": _span([r["peak_ratio"] for r in checkpointed]),
            "time_ratio": _span([r["time_ratio"] for r in checkpointed]),
            "starts_agree": sum(r["starts"] == r["predicted_starts"] for r in rows)}


def markdown(rows: list[dict], skipped: list[str], header: dict) -> str:
    total = summary(rows)
    low_peak, high_peak = total["peak_ratio"] or (0.0, 0.0)
    low_time, high_time = total["time_ratio"] or (0.0, 0.0)
    lines = [
        "# Activation checkpointing: predicted against measured (CPU)", "",
        f"Machine: {header['machine']}; {header['threads']} threads; torch {header['torch']}; {header['date']}. "
        "One SGD training step in float32 of archviz's torch build. Predicted: `archviz inspect MODEL --train "
        "--checkpointing N`. Measured: the live-storage tracker (`archviz profile MODEL --train --checkpointing N`) "
        "and the median step time. Saving and cost: over the same model and batch without checkpointing, measured "
        "in the same run." + (f" {header['note']}" if header["note"] else ""), "",
        f"- {total['within_target']} of {total['runs']} runs predicted within {TARGET:.0%} of the measured peak; "
        f"largest |error| {total['largest_error']:.2%}, median {total['median_error']:.2%}; segment starts as "
        f"predicted in {total['starts_agree']} of {total['runs']}",
        f"- checkpointed peak {low_peak:.2f}x to {high_peak:.2f}x the peak without; step time {low_time:.2f}x to "
        f"{high_time:.2f}x (times on a shared machine: read them as rough)", "",
        "| model | input | batch | segments | predicted | measured | error | peak ÷ none (predicted) | time ÷ none | "
        "step s | segments start at | predicted peak at | measured peak at |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        asked = f"{r['segments']}" + (f" ({r['made']} made)" if r["segments"] and r["made"] != r["segments"] else "")
        ratio = (f"{r['peak_ratio']:.2f} ({r['predicted_ratio']:.2f})" if "peak_ratio" in r else "")
        time_ratio = f"{r['time_ratio']:.2f}" if "time_ratio" in r else ""
        starts = ", ".join(r["starts"]) + ("" if r["starts"] == r["predicted_starts"] else
                                           f" (predicted: {', '.join(r['predicted_starts'])})")
        lines.append(f"| {r['model']} | {r['input']} | {r['batch']} | {asked if r['segments'] else 'none'} | "
                     f"{r['predicted']:,} | {r['measured']:,} | {r['error']:+.2%} | {ratio} | {time_ratio} | "
                     f"{r['seconds']:.2f} | {starts} | {r['predicted_at']} | {r['measured_at']} |")
    lines += ["", "## Skipped", ""] + ([f"- {s}" for s in skipped] or ["none"])
    return "\n".join(lines) + "\n"


def _span(values: list[float]) -> list[float] | None:
    return [min(values), max(values)] if values else None




if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
