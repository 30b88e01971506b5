"""Issue 18's prepared GPU check: training memory and forward latency, archviz's prediction against the card's.

    bash benchmarks/gpu.sh                              # on a lent GPU machine: the whole check, results in $OUT
    .venv/bin/python benchmarks/gpu.py                  # the same on this machine's CUDA GPU
    .venv/bin/python benchmarks/gpu.py --device cpu --models lenet --batches 2   # the same path on the CPU

For each model, batch and autocast (default: torchvision's resnet50, vgg16, mobilenet_v3_large and convnext_tiny,
random weights, batch 32 and 128, float32 and bf16 autocast):
  * memory: `archviz.inspect(MODEL, optimizer=, amp=, device=<the card's datasheet key>)`'s training-step peak (on
    a GPU with CUDA's defaults: for-each optimizer kernels, 512-byte allocator blocks, CUDA's autocast lists) against
    the measured peak of one steady-state training step (archviz.profile.measure_model: on CUDA
    torch.cuda.max_memory_allocated, on the CPU the live-storage tracker). Target: within 5% on CUDA (the suite's
    10% on the CPU, benchmarks/training_memory.py's);
  * latency: the roofline's forward time per layer (archviz/analysis/latency.py, on the card's datasheet figures;
    on the CPU the calibrated ones) against the measured forward time per leaf module in eval mode, paired by layer
    name as benchmarks/latency.py pairs them: Spearman's rank correlation (target >= 0.9 on CUDA, latency.py's 0.8
    on the CPU), and the whole model's predicted / measured time (reported, no target).
A run that fails (out of memory at batch 128, say) is a row that says so. Runs not started within --max-seconds are
rows marked skipped, so the check ends inside a device session's budget. Results: gpu-<card>.md and gpu-<card>.json
in benchmarks/results/ (or the folder, or .md path, that --results names), rewritten after every model.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import archviz  # noqa: E402
from archviz.errors import ArchvizError  # noqa: E402
from archviz.profile.calibrate import cpu_name  # noqa: E402
from latency import SPEARMAN_TARGET as CPU_SPEARMAN_TARGET, paired, spearman  # noqa: E402
from training_memory import TARGET as CPU_MEMORY_TARGET  # noqa: E402

MODELS = ("torchvision:resnet50", "torchvision:vgg16", "torchvision:mobilenet_v3_large", "torchvision:convnext_tiny")
NO_AMP = "none"
AMP_DTYPES = {NO_AMP: "float32", "bf16": "bfloat16", "fp16": "float16"}  # the dtype the roofline is given
A100_80GB_FROM = 60 * 10**9  # bytes of card memory: an A100 40 GB reports about 42e9, an 80 GB one about 85e9


@dataclass(frozen=True)
class Targets:
    memory_error: float  # |predicted / measured - 1|
    spearman: float


CUDA_TARGETS = Targets(memory_error=0.05, spearman=0.9)  # issue 18's, on a GPU
CPU_TARGETS = Targets(memory_error=CPU_MEMORY_TARGET, spearman=CPU_SPEARMAN_TARGET)


@dataclass(frozen=True)
class Card:
    name: str  # torch.cuda.get_device_name(), or the CPU's model name
    key: str  # archviz's device key: a datasheet entry of archviz.analysis.devices, or "cpu" (calibrated)
    slug: str  # the results' file names: gpu-<slug>.md


def main(argv: list[str]) -> int:
    options = _options(argv)
    try:
        card = the_card(options.device)
        graphs = {source: archviz.load(source) for source in options.models}
    except ArchvizError as error:
        print(f"gpu.py: {error}", file=sys.stderr)
        return 2
    markdown_path, json_path = result_paths(options.results, card)
    targets = CUDA_TARGETS if options.device == "cuda" else CPU_TARGETS
    deadline = time.monotonic() + options.max_seconds
    rows = []
    for batch in options.batches:
        for source, graph in graphs.items():
            for amp in options.amp:
                if time.monotonic() > deadline:
                    rows.append(_row_head(source, batch, amp) | {"skipped": f"not started: past --max-seconds "
                                                                            f"{options.max_seconds:g}"})
                    continue
                rows.append(one_row(graph, source, batch=batch, amp=amp, card=card, options=options))
                print(_progress(rows[-1]), flush=True)
            _write(rows, card, targets, options, markdown_path, json_path)
    print(f"wrote {markdown_path} and {json_path}")
    return 0


def _options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="sources as archviz inspect takes them")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--amp", nargs="+", choices=tuple(AMP_DTYPES), default=[NO_AMP, "bf16"],
                        help="none: float32; bf16, fp16: the step under torch.autocast")
    parser.add_argument("--optimizer", choices=("sgd", "momentum", "adam", "adamw"), default="sgd")
    parser.add_argument("--iterations", type=int, default=3, help="timed forward passes, whole and per layer")
    parser.add_argument("--max-seconds", type=float, default=420.0,
                        help="start no run after this many seconds (default 420: the check ends inside a 10-minute "
                             "device command)")
    parser.add_argument("--results", help="a folder (gpu-<card>.md and .json are written in it) or a .md path "
                                          "(the .json beside it); default benchmarks/results/")
    options = parser.parse_args(argv)
    if min(options.batches) < 1 or options.iterations < 1:
        parser.error("--batches and --iterations take integers >= 1")
    return options


def the_card(device: str) -> Card:
    """The device the check runs on, with archviz's key for it; an ArchvizError where there is none to run on."""
    if device == "cpu":
        return Card(name=cpu_name(), key="cpu", slug="cpu")
    if not torch.cuda.is_available():
        raise ArchvizError("--device cuda: this machine has no CUDA GPU that torch can use (--device cpu runs the "
                           "same check on the CPU)")
    name = torch.cuda.get_device_name()
    key = datasheet_key(name, torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    if key is None:
        from archviz.analysis.devices import DEVICES

        raise ArchvizError(f"GPU {name!r} matches no datasheet entry of archviz.analysis.devices ({', '.join(DEVICES)})"
                           ": add its figures there first")
    return Card(name=name, key=key, slug=card_slug(name))


def datasheet_key(name: str, memory_bytes: int) -> str | None:
    """archviz.analysis.devices' key for the card torch calls `name`, matched by whole words; None for an unlisted
    card (an L40 is not an L4, a GH200 not an H200: no guess)."""
    words = set(re.findall(r"[A-Z0-9]+", name.upper()))
    if "H100" in words:
        return "h100-pcie" if "PCIE" in words else "h100"
    if "A100" in words:
        return "a100" if memory_bytes >= A100_80GB_FROM else "a100-40gb"
    for word, key in (("H200", "h200"), ("L4", "l4"), ("T4", "t4"), ("4090", "rtx4090"), ("3090", "rtx3090")):
        if word in words:
            return key
    return None


def card_slug(name: str) -> str:
    """"NVIDIA H100 80GB HBM3" -> "h100-80gb-hbm3"."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug.removeprefix("nvidia-") or "gpu"


def result_paths(results: str | None, card: Card) -> tuple[Path, Path]:
    target = Path(results) if results else ROOT / "benchmarks" / "results"
    if target.suffix != ".md":
        target.mkdir(parents=True, exist_ok=True)
        target = target / f"gpu-{card.slug}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    return target, target.with_suffix(".json")


def one_row(graph, source: str, *, batch: int, amp: str, card: Card, options) -> dict:
    row = _row_head(source, batch, amp)
    row |= _memory(graph, source, batch=batch, amp=amp, card=card, options=options)
    _free_memory(options.device)
    row |= _latency(graph, source, batch=batch, amp=amp, card=card, options=options)
    _free_memory(options.device)
    return row


def _row_head(source: str, batch: int, amp: str) -> dict:
    return {"model": source, "batch": batch, "amp": "fp32" if amp == NO_AMP else amp}


def _memory(graph, source: str, *, batch: int, amp: str, card: Card, options) -> dict:
    """One training step's peak: predicted, measured, and the error."""
    from archviz.profile import measure_model

    autocast = None if amp == NO_AMP else amp
    left_before = torch.cuda.memory_allocated() if options.device == "cuda" else 0
    try:
        predicted = archviz.inspect(graph, batch=batch, optimizer=options.optimizer, amp=autocast,
                                    device=card.key).totals.training_memory.peak_bytes
        measured = measure_model(source, batch=batch, train=True, optimizer=options.optimizer, amp=autocast,
                                 device=options.device, per_layer=False, iterations=1, warmup=1)
    except Exception as error:  # out of memory at batch 128, a model that will not train: a row, not the end
        return {"memory_failed": _one_line(error)}
    return {"predicted_peak_bytes": predicted, "measured_peak_bytes": measured.peak_bytes,
            "memory_error": predicted / measured.peak_bytes - 1, "memory_method": str(measured.method),
            "allocated_before_bytes": left_before}


def _latency(graph, source: str, *, batch: int, amp: str, card: Card, options) -> dict:
    """A forward pass in eval mode: the whole model's predicted and measured time, and the per-layer Spearman."""
    from archviz.profile import measure_model

    dtype = roofline_dtype(amp, card)
    try:
        predicted = archviz.inspect(graph, batch=batch, dtype=dtype, device=card.key).latency
        measured = measure_model(source, batch=batch, train=False, amp=None if amp == NO_AMP else amp,
                                 device=options.device, per_layer=True, iterations=options.iterations, warmup=1)
    except Exception as error:  # as _memory's
        return {"latency_failed": _one_line(error)}
    pairs = paired(predicted, {layer.path: layer.forward_s for layer in measured.layers})
    rho = spearman([p for p, _ in pairs], [m for _, m in pairs]) if len(pairs) > 2 else None
    rho = None if rho is not None and rho != rho else rho  # NaN: every layer measured alike, no ranking
    return {"predicted_ms": predicted.seconds * 1e3, "measured_ms": measured.seconds * 1e3,
            "time_ratio": predicted.seconds / measured.seconds, "spearman": rho, "layers_paired": len(pairs),
            "roofline_dtype": dtype}


def roofline_dtype(amp: str, card: Card) -> str:
    """The dtype the roofline is given for a pass under `amp`: autocast's, where the device has math units for it;
    else float32 (a CPU without bf16 units, a T4 under bf16: the roofline has no peak to put the layers on)."""
    from archviz.analysis.devices import device_named

    if amp == NO_AMP or device_named(card.key).peaks.of(amp) is not None:
        return AMP_DTYPES[amp]
    return AMP_DTYPES[NO_AMP]


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160] if text else ''}"


def _free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _progress(row: dict) -> str:
    head = f"{row['model']} b{row['batch']} {row['amp']}:"
    memory = row.get("memory_failed") or f"memory {row['memory_error']:+.2%}"
    latency = row.get("latency_failed") or (f"time x{row['time_ratio']:.2f}, Spearman {_rho_text(row)}")
    return f"{head} {memory}; {latency}"


def _rho_text(row: dict) -> str:
    return "n/a" if row.get("spearman") is None else f"{row['spearman']:.3f} ({row['layers_paired']} layers)"


def _write(rows: list[dict], card: Card, targets: Targets, options, markdown_path: Path, json_path: Path) -> None:
    header = {"card": card.name, "device_key": card.key, "device": options.device, "torch": torch.__version__,
              "cuda": torch.version.cuda, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
              "optimizer": options.optimizer, "iterations": options.iterations,
              "targets": {"memory_error": targets.memory_error, "spearman": targets.spearman}}
    json_path.write_text(json.dumps(header | {"rows": rows}, indent=1) + "\n", encoding="utf-8")
    markdown_path.write_text(markdown(rows, header, options), encoding="utf-8")


def markdown(rows: list[dict], header: dict, options) -> str:
    memory_rows = [row for row in rows if "memory_error" in row]
    ranked_rows = [row for row in rows if row.get("spearman") is not None]
    memory_target, spearman_target = header["targets"]["memory_error"], header["targets"]["spearman"]
    within = sum(abs(row["memory_error"]) <= memory_target for row in memory_rows)
    ranked = sum(row["spearman"] >= spearman_target for row in ranked_rows)
    incomplete = sum(any(key in row for key in ("memory_failed", "latency_failed", "skipped")) for row in rows)
    where = f"CUDA {header['cuda']}" if header["device"] == "cuda" else "on the CPU"
    lines = [
        f"# Training memory and forward latency on {header['card']}: predicted against measured (issue 18)", "",
        f"Device: {header['card']} (archviz device `{header['device_key']}`), torch {header['torch']} {where}, "
        f"Python {header['python']}; {header['date']}. `benchmarks/gpu.py --device {options.device} --models "
        f"{' '.join(options.models)} --batches {' '.join(map(str, options.batches))} --amp {' '.join(options.amp)} "
        f"--optimizer {options.optimizer} --iterations {options.iterations}`.", "",
        f"- memory: the predicted peak of one training step ({options.optimizer}) against the measured one "
        f"({memory_rows[0]['memory_method'] if memory_rows else 'none measured'}); within {memory_target:.0%}: "
        f"{within} of {len(memory_rows)}",
        f"- latency: forward pass in eval mode, the roofline per layer against the measured time per leaf module "
        f"(median of {options.iterations}); Spearman >= {spearman_target}: {ranked} of {len(ranked_rows)}; "
        "predicted / measured whole-model time reported, no target",
        f"- runs failed or skipped: {incomplete} of {len(rows)}", "",
        "| model | batch | autocast | predicted peak | measured peak | error | memory | predicted ms | measured ms | "
        "predicted / measured | Spearman (layers) | rank | notes |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    lines += [_table_line(row, memory_target, spearman_target) for row in rows]
    return "\n".join(lines) + "\n"


def _table_line(row: dict, memory_target: float, spearman_target: float) -> str:
    cells = [row["model"], str(row["batch"]), row["amp"]]
    if "memory_error" in row:
        cells += [f"{row['predicted_peak_bytes']:,}", f"{row['measured_peak_bytes']:,}", f"{row['memory_error']:+.2%}",
                  _mark(abs(row["memory_error"]) <= memory_target)]
    else:
        cells += [""] * 4
    if "time_ratio" in row:
        rho = row["spearman"]
        cells += [f"{row['predicted_ms']:.3f}", f"{row['measured_ms']:.3f}", f"{row['time_ratio']:.2f}",
                  _rho_text(row), "" if rho is None else _mark(rho >= spearman_target)]
    else:
        cells += [""] * 5
    notes = [row[key] for key in ("skipped", "memory_failed", "latency_failed") if key in row]
    if row.get("roofline_dtype") not in (None, AMP_DTYPES.get(row["amp"], "float32")):
        notes.append(f"roofline in {row['roofline_dtype']}: no {row['amp']} peak on this device")
    cells.append("; ".join(note.replace("|", "/") for note in notes))
    return "| " + " | ".join(cells) + " |"


def _mark(passed: bool) -> str:
    return "pass" if passed else "FAIL"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
