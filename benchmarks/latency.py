"""Predicted latency (a roofline per layer, archviz/analysis/latency.py) against measured, on the local CPU.

    .venv/bin/python benchmarks/latency.py [--batches 1 8] [--threads 1] [--clock thread|wall] [--iterations 3]
                                           [--only NAME]... [--results benchmarks/results/latency-cpu.md]

First the CPU is calibrated afresh (archviz.profile.calibrate, 3 s). Then, issue 18's targets:
  * whole model: every zoo model's predicted forward time against its measured one (to_torch's module, eval mode,
    random weights), within 35%;
  * per layer: Spearman's rank correlation between predicted and measured layer times, >= 0.8, for torchvision's
    resnet50, vgg16 and mobilenet_v2 (random init), at each batch.
Clocks: `wall` is archviz.profile.run.measure (perf_counter, the median of the iterations, hooks per leaf module);
`thread` is this script's own loop with the same hooks reading time.thread_time(), the CPU time of the one thread
that runs the model, the least of the iterations (at least --iterations, and as many more as fill a second, so that
a model of a fraction of a millisecond is timed hundreds of times). On a machine whose cores other processes share,
the wall clock counts the time this process waits for a core; the thread clock does not, so with --threads 1
(OpenMP then runs every kernel on the calling thread) it measures what the roofline predicts: the work itself.
"""

from __future__ import annotations

import argparse
import collections
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import archviz  # noqa: E402
from archviz.analysis.latency import ModelLatency, predict_latency  # noqa: E402
from archviz.profile.calibrate import calibrate, cpu_name  # noqa: E402

RANKED = ("resnet50", "vgg16", "mobilenet_v2")
WHOLE_TARGET = 0.35  # |predicted / measured - 1|
SPEARMAN_TARGET = 0.8


@dataclass(frozen=True)
class Row:
    model: str
    batch: int
    predicted_s: float
    measured_s: float
    memory_bound_share: float  # of the predicted time
    spearman: float | None = None
    layers: int = 0

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1


def main() -> None:
    options = _options()
    torch.set_num_threads(options.threads)
    device = calibrate(seconds=3.0)
    print(f"{device.name}: fp32 {device.peaks.fp32 / 1e9:.1f} GFLOP/s, {device.memory_bandwidth / 1e9:.1f} GB/s, "
          f"overhead {device.launch_overhead_s * 1e6:.2f} us", flush=True)
    zoo = [name for name in archviz.zoo_names() if _kept(name, options.only)]
    whole = [_zoo_row(name, batch, device, options) for batch in options.batches for name in zoo]
    ranked = [_torchvision_row(name, batch, device, options) for batch in options.batches for name in RANKED
              if _kept(name, options.only)]
    text = _markdown(device, whole, ranked, options)
    Path(options.results).write_text(text, encoding="utf-8")
    print(text)


MIN_MEASURING_S = 1.0  # per model and batch, for the whole pass and again for the layers


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("thread", "wall"), default="thread")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "latency-cpu.md"))
    return parser.parse_args()


def _kept(name: str, only: list[str]) -> bool:
    return not only or any(part in name for part in only)


def _zoo_row(name: str, batch: int, device, options) -> Row:
    from archviz.profile.run import by_node
    from archviz.torch_build import to_torch

    graph = archviz.load(name)
    predicted = predict_latency(archviz.analyze(graph, batch=batch), device)
    model = to_torch(graph).eval()
    seconds, layers = _measured(model, graph.input_shape, batch, options)
    per_node = {timing.path: timing.forward_s for timing in by_node(
        [_Timing(path, value) for path, value in layers.items()], [node.name for node in graph.nodes])}
    row = _row(name, batch, predicted, seconds, paired(predicted, per_node))
    print(f"{name:14s} b{batch}: predicted {row.predicted_s * 1e3:9.2f} ms, measured {row.measured_s * 1e3:9.2f} ms, "
          f"{row.error:+.0%}, Spearman {_rank_text(row.spearman)}", flush=True)
    return row


def _rank_text(spearman: float | None) -> str:
    return "n/a (under 3 layers)" if spearman is None else f"{spearman:.3f}"


def _torchvision_row(name: str, batch: int, device, options) -> Row:
    import torchvision

    graph = archviz.load(f"torchvision:{name}")
    predicted = predict_latency(archviz.analyze(graph, batch=batch), device)
    model = torchvision.models.get_model(name, weights=None).eval()
    seconds, layers = _measured(model, graph.input_shape, batch, options)
    row = _row(f"torchvision:{name}", batch, predicted, seconds, paired(predicted, layers))
    print(f"{row.model:24s} b{batch}: predicted {row.predicted_s * 1e3:9.2f} ms, measured "
          f"{row.measured_s * 1e3:9.2f} ms, {row.error:+.0%}, Spearman {_rank_text(row.spearman)} over {row.layers} "
          "layers",
          flush=True)
    return row


@dataclass(frozen=True)
class _Timing:
    path: str
    forward_s: float
    backward_s: float | None = None


def _row(name: str, batch: int, predicted: ModelLatency, seconds: float, pairs: list[tuple[float, float]]) -> Row:
    return Row(model=name, batch=batch, predicted_s=predicted.seconds, measured_s=seconds,
               memory_bound_share=predicted.memory_bound_seconds / predicted.seconds,
               spearman=spearman([p for p, _ in pairs], [m for _, m in pairs]) if len(pairs) > 2 else None,
               layers=len(pairs))


def paired(predicted: ModelLatency, measured: dict[str, float]) -> list[tuple[float, float]]:
    """(predicted, measured) seconds per measured module. A module called several times (torchvision's ReLU in a
    Bottleneck) is one measured row, archviz's relu, relu_1, relu_2: their predictions add up. Layers without a
    module of their own (a functional add or flatten) have no measured row and are left out."""
    sums: dict[str, float] = collections.defaultdict(float)
    for layer in predicted.layers:
        if not layer.predicted:
            continue
        path = layer.name if layer.name in measured else re.sub(r"_\d+$", "", layer.name)
        if path in measured:
            sums[path] += layer.seconds
    return [(sums[path], measured[path]) for path in sums]


def _measured(model, input_shape, batch: int, options) -> tuple[float, dict[str, float]]:
    """(whole-model seconds, seconds per leaf module path), by the chosen clock."""
    if options.clock == "wall":
        from archviz.profile.run import measure

        measurement = measure(model, input_shape, batch=batch, iterations=options.iterations)
        return measurement.seconds, {layer.path: layer.forward_s for layer in measurement.layers}
    inputs = torch.randn(batch, *input_shape)
    return _thread_seconds(model, inputs, options.iterations), _thread_layers(model, inputs, options.iterations)


def _repeats(iterations: int):
    """At least `iterations` passes, and more until MIN_MEASURING_S have gone by: a model of a fraction of a
    millisecond needs hundreds of passes for its least time to stand clear of the clock's and the machine's jitter."""
    deadline = time.perf_counter() + MIN_MEASURING_S
    done = 0
    while done < iterations or time.perf_counter() < deadline:
        yield done
        done += 1


def _thread_seconds(model, inputs, iterations: int) -> float:
    with torch.inference_mode():
        model(inputs)
        times = []
        for _ in _repeats(iterations):
            start = time.thread_time()
            model(inputs)
            times.append(time.thread_time() - start)
    return min(times)


def _thread_layers(model, inputs, iterations: int) -> dict[str, float]:
    """Seconds per leaf module (calls of one module in one pass add up), the least over the iterations."""
    started: dict[str, list[float]] = collections.defaultdict(list)
    totals: dict[str, float] = collections.defaultdict(float)
    handles = []
    for path, module in model.named_modules():
        if path and not next(module.children(), None):
            handles.append(module.register_forward_pre_hook(
                lambda _m, _a, path=path: started[path].append(time.thread_time())))
            handles.append(module.register_forward_hook(
                lambda _m, _a, _o, path=path: totals.__setitem__(path, totals[path] + time.thread_time()
                                                                 - started[path].pop())))
    passes = []
    try:
        with torch.inference_mode():
            model(inputs)
            for _ in _repeats(iterations):
                totals.clear()
                model(inputs)
                passes.append(dict(totals))
    finally:
        for handle in handles:
            handle.remove()
    return {path: min(one.get(path, 0.0) for one in passes) for path in passes[0]}


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks, ties given their average rank."""
    rx, ry = _ranks(xs), _ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5 if vx and vy else float("nan")


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for index in order[start:end + 1]:
            ranks[index] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _ceilings(device) -> str:
    parts = []
    if device.cache_bandwidth is not None:
        cache_mib = device.cache_bytes / 2**20
        parts.append(f"cache {device.cache_bandwidth / 1e9:.1f} GB/s within half of {cache_mib:.0f} MiB")
    if device.vector_lanes is not None:
        parts.append(f"{device.vector_lanes} fp32 SIMD lanes")
    if device.depthwise_flops is not None:
        parts.append(f"depthwise conv {device.depthwise_flops / 1e9:.1f} GFLOP/s")
    if device.max_pool is not None:
        parts.append(f"max pool {device.max_pool.per_output_s * 1e9:.1f} ns per output + "
                     f"{device.max_pool.per_element_s * 1e9:.2f} ns per window element")
    if device.fresh_memory_s_per_byte is not None:
        parts.append(f"page faults {device.fresh_memory_s_per_byte * 4096 * 1e6:.2f} us per 4 KiB page of outputs from "
                     f"{(device.fresh_memory_from_bytes or 0) / 2**20:.0f} MiB")
    return ", ".join(parts) or "no CPU ceilings"


def _markdown(device, whole: list[Row], ranked: list[Row], options) -> str:
    within = sum(abs(row.error) <= WHOLE_TARGET for row in whole)
    good = sum(row.spearman is not None and row.spearman >= SPEARMAN_TARGET for row in ranked)
    lines = [
        "# Latency predicted by a roofline per layer, against measured (CPU)",
        "",
        f"Machine: {cpu_name()}, {options.threads} torch thread(s) of {torch.get_num_threads()} used, "
        f"torch {torch.__version__}, Python {platform.python_version()}; clock: {options.clock} "
        f"(at least {options.iterations} iterations after a warm-up, more to fill {MIN_MEASURING_S:g} s on the thread "
        "clock). `benchmarks/latency.py` with "
        f"`--batches {' '.join(map(str, options.batches))} --threads {options.threads} --clock {options.clock}`.",
        "",
        f"Calibration (measured, archviz.profile.calibrate): fp32 GEMM {device.peaks.fp32 / 1e9:.1f} GFLOP/s, "
        f"streaming bandwidth {device.memory_bandwidth / 1e9:.1f} GB/s, per-op overhead "
        f"{device.launch_overhead_s * 1e6:.2f} us; {_ceilings(device)}.",
        "",
        f"Whole model, zoo: {within} of {len(whole)} within {WHOLE_TARGET:.0%} (target: all). "
        f"Per layer: {good} of {len(ranked)} with Spearman >= {SPEARMAN_TARGET} (target: all).",
        "",
        "| model | batch | predicted ms | measured ms | error | memory-bound share | Spearman (layers) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in whole + ranked:
        rho = "" if row.spearman is None else f"{row.spearman:.3f} ({row.layers})"
        lines.append(f"| {row.model} | {row.batch} | {row.predicted_s * 1e3:.2f} | {row.measured_s * 1e3:.2f} | "
                     f"{row.error:+.0%} | {row.memory_bound_share:.0%} | {rho} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
