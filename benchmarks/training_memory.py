"""Training and inference memory: archviz's prediction against the measured peak, and torchinfo's estimate beside.

    .venv/bin/python benchmarks/training_memory.py              # every zoo model and the named library models
    .venv/bin/python benchmarks/training_memory.py --quick      # batch 1 and 8 only
    .venv/bin/python benchmarks/training_memory.py --changed    # re-predict the results file's runs; measure again
                                                                # those whose prediction moved by more than 0.1%

For each model, batch (1, 8, 32) and optimizer (SGD, AdamW), on this machine's CPU:
  * predicted: `archviz inspect MODEL --train --optimizer OPT --batch N` (analysis/training.py): one step's peak;
  * measured: archviz/profile's live-storage tracker over one steady-state training step of the real module
    (random weights, cross-entropy, backward, optimizer step): every tensor torch holds, the weights included;
  * torchinfo: its "Estimated Total Size" (input + forward/backward pass size + params) at the same batch, which
    has no optimizer, so it is held to the SGD step;
  * inference: archviz's parameters + buffers + peak activation memory (analysis/memory.py) against the tracker over
    a forward pass under torch.no_grad.
A run whose predicted peak is above --max-bytes is skipped (this machine's memory), and listed.
Results: benchmarks/results/training_memory.md (and .json), with the CPU's name.
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

LIBRARY = ("torchvision:resnet50", "torchvision:mobilenet_v2", "torchvision:mobilenet_v3_large",
           "torchvision:efficientnet_b0", "torchvision:convnext_tiny", "torchvision:densenet121",
           "torchvision:regnet_y_400mf", "torchvision:shufflenet_v2_x1_0", "torchvision:squeezenet1_1",
           "torchvision:vit_b_16", "timm:resnet18d", "timm:efficientnet_b0")
OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = (None, "bf16")  # float32, and the step under torch.autocast to bfloat16
TARGET = 0.10  # the issue's: within 10% of the measured peak


def zoo_models() -> list[str]:
    from archviz.spec.zoo import zoo_names

    return [name for name in zoo_names() if not name.startswith("_")]


def one_run(source: str, batch: int, optimizer: str, amp: str | None = None) -> dict:
    import archviz
    from archviz.profile import measure_model

    report = archviz.inspect(source, batch=batch, optimizer=optimizer, amp=amp)
    memory = report.totals.training_memory
    measured = measure_model(source, batch=batch, train=True, optimizer=optimizer, amp=amp, iterations=1, warmup=1,
                             per_layer=False)
    return {"model": source, "batch": batch, "optimizer": optimizer, "amp": amp or "", "predicted": memory.peak_bytes,
            "measured": measured.peak_bytes, "phase": memory.peak_phase, "at": memory.peak_at,
            "measured_at": str(measured.peak_place.module if measured.peak_place else ""),
            "uncounted": len(memory.uncounted), "error": (memory.peak_bytes - measured.peak_bytes) / measured.peak_bytes}


def inference_run(source: str, batch: int) -> dict:
    import archviz
    from archviz.profile import measure_model

    totals = archviz.inspect(source, batch=batch).totals
    predicted = totals.param_bytes + totals.peak_activation_bytes
    measured = measure_model(source, batch=batch, train=False, iterations=1, warmup=1, per_layer=False).peak_bytes
    return {"model": source, "batch": batch, "predicted": predicted, "measured": measured,
            "error": (predicted - measured) / measured}


def torchinfo_estimate(source: str, batch: int) -> int | None:
    """torchinfo's Estimated Total Size in bytes at `batch`, or None where it cannot run the model."""
    import torch
    import torchinfo

    import archviz
    from archviz.profile.run import library_module
    from archviz.torch_build import to_torch
    from archviz.trace.load import is_model_source, parse_source

    try:
        graph = archviz.load(source)
        module = library_module(parse_source(source)) if is_model_source(source) else to_torch(graph)
        module.train()
        stats = torchinfo.summary(module, input_size=(batch, *graph.input_shape), verbose=0, device="cpu")
        return int(stats.total_input + stats.total_output_bytes + stats.total_param_bytes)
    except Exception:
        return None
    finally:
        torch.set_grad_enabled(True)


def predicted_peak(source: str, batch: int, optimizer: str) -> int:
    import archviz

    return archviz.inspect(source, batch=batch, optimizer=optimizer).totals.training_memory.peak_bytes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 1 and 8 only")
    parser.add_argument("--batches", type=int, nargs="+", help="these batch sizes (default 1 8 32)")
    parser.add_argument("--resume", action="store_true", help="keep the results file's models and measure the rest")
    parser.add_argument("--models", nargs="+", help="these sources only")
    parser.add_argument("--max-bytes", type=float, default=6e9, help="skip runs predicted above this (default 6e9)")
    parser.add_argument("--changed", action="store_true", help="re-predict every run of the results file; measure "
                        "again only those whose prediction moved by more than 0.1%%, and keep the others' measured "
                        "bytes (the tracker's count of a module's tensors does not depend on archviz's prediction, "
                        "and is the same run after run)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.changed:
        return _remeasure_changed()
    batches = args.batches or ((1, 8) if args.quick else (1, 8, 32))
    models = args.models or [*zoo_models(), *LIBRARY]
    rows, inference, skipped = [], [], []
    if args.resume and (RESULTS / "training_memory.json").exists():
        kept = json.loads((RESULTS / "training_memory.json").read_text())
        rows, inference, skipped = kept["rows"], kept["inference"], kept["skipped"]
    measured = {row["model"] for row in rows}
    for source in models:
        if source in measured:
            continue
        for batch in batches:
            if predicted_peak(source, batch, "adamw") > args.max_bytes:
                skipped.append(f"{source} at batch {batch} (predicted above {args.max_bytes / 1e9:.0f} GB)")
                continue
            for optimizer in OPTIMIZERS:
                for amp in PRECISIONS:
                    try:
                        row = one_run(source, batch, optimizer, amp)
                    except Exception as error:  # a model that will not train at this batch (batch norm at batch 1)
                        skipped.append(f"{source} at batch {batch}, {optimizer} {amp or ''}: "
                                       f"{str(error).splitlines()[0][:120]}")
                        continue
                    if optimizer == "sgd" and amp is None:
                        row["torchinfo"] = torchinfo_estimate(source, batch)
                    rows.append(row)
                    print(f"{source} b{batch} {optimizer} {amp or 'fp32'}: {row['error']:+.2%}", flush=True)
            try:
                inference.append(inference_run(source, batch))
            except Exception as error:
                skipped.append(f"{source} at batch {batch}, inference: {str(error).splitlines()[0][:120]}")
        # after each model; with --resume the count holds the results file's models too
        _write(rows, inference, skipped, done=len(measured | set(models[:models.index(source) + 1])),
               of=len(measured | set(models)))
    return 0


def _remeasure_changed() -> int:
    kept = json.loads((RESULTS / "training_memory.json").read_text())
    rows, inference = [], []
    for row in kept["rows"]:
        import archviz

        memory = archviz.inspect(row["model"], batch=row["batch"], optimizer=row["optimizer"],
                                 amp=row["amp"] or None).totals.training_memory
        if _moved(memory.peak_bytes, row["predicted"]):
            fresh = one_run(row["model"], row["batch"], row["optimizer"], row["amp"] or None)
            print(f"{row['model']} b{row['batch']} {row['optimizer']} {row['amp'] or 'fp32'}: predicted "
                  f"{row['predicted']:,} -> {fresh['predicted']:,}, {row['error']:+.2%} -> {fresh['error']:+.2%}",
                  flush=True)
            row = {**fresh, **({"torchinfo": row["torchinfo"]} if row.get("torchinfo") else {})}
        else:
            row = {**row, "predicted": memory.peak_bytes, "phase": memory.peak_phase, "at": memory.peak_at,
                   "error": (memory.peak_bytes - row["measured"]) / row["measured"]}
        rows.append(row)
    for row in kept["inference"]:
        import archviz

        totals = archviz.inspect(row["model"], batch=row["batch"]).totals
        predicted = totals.param_bytes + totals.peak_activation_bytes
        if _moved(predicted, row["predicted"]):
            fresh = inference_run(row["model"], row["batch"])
            print(f"{row['model']} b{row['batch']} inference: {row['error']:+.2%} -> {fresh['error']:+.2%}", flush=True)
            row = fresh
        else:
            row = {**row, "predicted": predicted, "error": (predicted - row["measured"]) / row["measured"]}
        inference.append(row)
    _write(rows, inference, kept["skipped"], done=kept["models_done"], of=kept["models"])
    return 0


def _moved(now: int, before: int) -> bool:
    return abs(now - before) > 0.001 * before


def _write(rows, inference, skipped, *, done: int, of: int) -> None:
    """The results so far (an interrupted run leaves the models it finished, and says how many)."""
    (RESULTS / "training_memory.json").write_text(json.dumps({"rows": rows, "inference": inference,
                                                              "skipped": skipped, "models_done": done,
                                                              "models": of}, indent=1))
    text = markdown(rows, inference, skipped)
    if done < of:
        text = text.replace("\n\n", f"\n\nPartial: {done} of {of} models measured so far.\n\n", 1)
    (RESULTS / "training_memory.md").write_text(text)


def markdown(rows, inference, skipped) -> str:
    def pct(value):
        return f"{value:+.1%}"

    within = sum(abs(r["error"]) <= TARGET for r in rows)
    with_torchinfo = [r for r in rows if r.get("torchinfo")]
    errors = [abs(r["error"]) for r in rows]
    torchinfo_errors = [abs(r["torchinfo"] - r["measured"]) / r["measured"] for r in with_torchinfo]
    inference_errors = [abs(r["error"]) for r in inference]
    lines = [
        "# Training memory: predicted against measured (CPU)", "",
        f"Machine: {platform.processor() or platform.machine()}, {cpu_name()}; {time.strftime('%Y-%m-%d')}; "
        "float32 and bf16 autocast. Measured: the live-storage tracker (archviz/profile/tracker.py) over one "
        "steady-state training step (forward, cross-entropy, backward, optimizer step). Predicted: `archviz inspect "
        "MODEL --train`.", "",
        f"- training steps: {len(rows)}; predicted within {TARGET:.0%} of the measured peak: {within} "
        f"({within / max(len(rows), 1):.0%}); largest error {max(errors, default=0):.1%}; "
        f"median |error| {median_high(errors or [0.0]):.2%}",
        f"- torchinfo's Estimated Total Size against the same SGD steps ({len(with_torchinfo)} runs): median |error| "
        f"{median_high(torchinfo_errors or [0.0]):.1%}, largest {max(torchinfo_errors, default=0):.1%}",
        f"- inference (forward under no_grad): {len(inference)} runs, median |error| "
        f"{median_high(inference_errors or [0.0]):.2%}, largest {max(inference_errors, default=0):.1%}",
        "- on the CPU, torch's defaults: for-loop optimizers, no allocator rounding, the CPU's autocast lists (a GPU's "
        "for-each optimizers, 512-byte blocks and CUDA's autocast lists are predicted by `--device <gpu>` and not "
        "measured here; which ops CUDA's lists widen is checked on fake CUDA tensors by tests/test_op_registry.py)",
        "",
        "| model | batch | optimizer | autocast | predicted | measured | error | torchinfo (error) | predicted peak at | "
        "measured peak at |",
        "|---|---:|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        info = (f"{r['torchinfo']:,} ({pct((r['torchinfo'] - r['measured']) / r['measured'])})"
                if r.get("torchinfo") else "")
        lines.append(f"| {r['model']} | {r['batch']} | {r['optimizer']} | {r.get('amp', '')} | {r['predicted']:,} | "
                     f"{r['measured']:,} | "
                     f"{pct(r['error'])} | {info} | {r['phase']} {r['at']} | {r['measured_at']} |")
    lines += ["", "## Inference", "", "| model | batch | predicted | measured | error |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['batch']} | {r['predicted']:,} | {r['measured']:,} | {pct(r['error'])} |"
              for r in inference]
    lines += ["", "## Skipped", ""] + ([f"- {s}" for s in skipped] or ["none"])
    return "\n".join(lines) + "\n"




if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
