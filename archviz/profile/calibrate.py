"""The local CPU as a roofline Device, measured: GEMM FLOP/s, streaming bandwidth and eager PyTorch's cost per op.

Three measurements in a few seconds, at the thread count torch uses now:
  * peak FLOP/s: fp32 square matmuls of a few sizes, the best rate (2 n^3 FLOPs each), as a roofline's compute roof
    is the best a kernel reaches (Williams, Waterman, Patterson 2009 measure theirs with tuned kernels too);
  * memory bandwidth: a copy (reads n, writes n) and an add (reads 2n, writes n) of tensors far larger than the
    caches, the best rate (the STREAM benchmark's copy and add, J. McCalpin);
  * per-op overhead: the median time of one call of a module on a one-element tensor, which is what every layer of
    an eagerly run model pays before it touches its data.
The result is cached in archviz's cache folder (archviz/cache.py), keyed by the CPU's model name, torch's version and
the thread count, so a machine calibrates once.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

from archviz.analysis.devices import Device, DeviceKind, Peaks
from archviz.cache import cache_dir
from archviz.errors import ArchvizError
from archviz.output import write_atomic

CALIBRATION_FORMAT = 1  # bump when what is measured or stored changes
GEMM_SIZES = (256, 512, 1024)
STREAM_BYTES = 256 * 2**20  # per tensor: far past any CPU's last-level cache
SHORT_STREAM_BYTES = 64 * 2**20  # for a calibration under a second (tests): still past most last-level caches
SHARES = {"gemm": 0.45, "stream": 0.4, "overhead": 0.15}  # of the time budget


def local_device(*, recalibrate: bool = False) -> Device:
    """The local CPU's Device: the cached calibration for this CPU, torch and thread count, else a fresh one.

    >>> local_device().kind  # doctest: +SKIP
    <DeviceKind.CPU: 'cpu'>

    (skipped in the doctests: a first call measures for about 3 seconds)
    """
    path = cache_dir() / "cpu-calibration.json"
    key = calibration_key()
    if not recalibrate:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("key") == key:
                return _from_json(stored["device"])
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            pass
    device = calibrate()
    try:
        write_atomic(path, json.dumps({"key": key, "device": _to_json(device)}))
    except ArchvizError:  # a read-only cache folder: the figures were measured anyway
        pass
    return device


def calibrate(*, seconds: float = 3.0) -> Device:
    """Measure the local CPU for about `seconds` (see the module docstring); nothing is cached here."""
    if not seconds > 0:
        raise ArchvizError(f"calibration seconds must be positive, got {seconds!r}")
    peak = _best_gemm_flops(seconds * SHARES["gemm"])
    stream_bytes = STREAM_BYTES if seconds >= 1 else SHORT_STREAM_BYTES
    bandwidth = _best_stream_bandwidth(seconds * SHARES["stream"], stream_bytes)
    overhead = _op_overhead(seconds * SHARES["overhead"])
    threads = torch.get_num_threads()
    return Device(
        key="cpu", name=f"{cpu_name()} ({threads} thread{'s' if threads > 1 else ''})", kind=DeviceKind.CPU,
        peaks=Peaks(fp32=peak), memory_bandwidth=bandwidth, launch_overhead_s=overhead, memory_bytes=None,
        source=f"measured by archviz.profile.calibrate: best fp32 matmul of sizes {GEMM_SIZES}, best tensor copy/add "
               f"of {stream_bytes // 2**20} MiB, torch {torch.__version__}",
        overhead_source="measured: median time of one module call on a one-element tensor",
    )


def calibration_key() -> str:
    return f"format {CALIBRATION_FORMAT}; {cpu_name()}; torch {torch.__version__}; {torch.get_num_threads()} threads"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _best_gemm_flops(budget_s: float) -> float:
    best = 0.0
    for size in GEMM_SIZES:
        a, b = torch.randn(size, size), torch.randn(size, size)
        out = torch.empty(size, size)
        best = max(best, 2 * size**3 / _best_time(lambda: torch.mm(a, b, out=out), budget_s / len(GEMM_SIZES)))
    return best


def _best_stream_bandwidth(budget_s: float, stream_bytes: int) -> float:
    elements = stream_bytes // 4
    a, b, out = torch.ones(elements), torch.ones(elements), torch.empty(elements)
    copy_bytes, add_bytes = 2 * stream_bytes, 3 * stream_bytes
    copy_s = _best_time(lambda: out.copy_(a), budget_s / 2)
    add_s = _best_time(lambda: torch.add(a, b, out=out), budget_s / 2)
    return max(copy_bytes / copy_s, add_bytes / add_s)


def _op_overhead(budget_s: float) -> float:
    module, tiny = torch.nn.ReLU(), torch.ones(1)
    times = _times(lambda: module(tiny), budget_s)
    return statistics.median(times)


def _best_time(call, budget_s: float) -> float:
    return min(_times(call, budget_s))


def _times(call, budget_s: float, *, at_least: int = 3) -> list[float]:
    """Times of repeated calls (after one warm-up) until the budget is spent, and at least `at_least` of them."""
    call()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    with torch.inference_mode():
        while len(times) < at_least or time.perf_counter() < deadline:
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return times


def _to_json(device: Device) -> dict:
    return {"name": device.name, "peak_fp32": device.peaks.fp32, "memory_bandwidth": device.memory_bandwidth,
            "launch_overhead_s": device.launch_overhead_s, "source": device.source,
            "overhead_source": device.overhead_source}


def _from_json(entry: dict) -> Device:
    return Device(key="cpu", name=entry["name"], kind=DeviceKind.CPU, peaks=Peaks(fp32=float(entry["peak_fp32"])),
                  memory_bandwidth=float(entry["memory_bandwidth"]),
                  launch_overhead_s=float(entry["launch_overhead_s"]), memory_bytes=None, source=entry["source"],
                  overhead_source=entry["overhead_source"])
