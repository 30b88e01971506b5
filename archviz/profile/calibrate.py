"""The local CPU as a roofline Device, measured: GEMM FLOP/s, streaming bandwidth and eager PyTorch's cost per op.

Measurements in a few seconds, at the thread count torch uses now (each the least time over repeated calls; with one
thread, the calling thread's CPU time, which every kernel then runs on, so that a machine shared with other
processes does not count the time this one waits for a core):
  * peak FLOP/s: fp32 square matmuls of a few sizes, the best rate (2 n^3 FLOPs each), as a roofline's compute roof
    is the best a kernel reaches (Williams, Waterman, Patterson 2009 measure theirs with tuned kernels too);
  * memory bandwidth: a copy (reads n, writes n) and an add (reads 2n, writes n) of tensors far larger than the
    caches, the best rate (the STREAM benchmark's copy and add, J. McCalpin); the same copy and add on tensors
    filling a quarter of the last-level cache give the cache's bandwidth (the cache-aware roofline, Ilic et al. 2014);
  * per-op overhead: the median time of one call of a module on a one-element tensor, over a convolution, a linear
    layer, a batch norm, a ReLU and a max pool: what every layer of an eagerly run model pays before it touches its
    data.
  * pooling ceilings: the time per output of a 2x2 and a 4x4 stride-2 max pool, and of the same average pools, on a
    cache-resident NCHW tensor: a fixed part and a part per window element (torch's CPU pooling runs far below the
    memory roof, a max pool 3x slower);
  * transcendental ceiling: elements per second of tanh over a cache-resident tensor (exp-like activations are
    compute-bound on a CPU);
  * convolution overheads: the least time of one call of a one-channel 3 x 3 convolution on one 3 x 3 image (torch's
    native kernel) and on two (oneDNN, which torch takes for more than one image: analysis/latency.onednn_conv),
    about 5x the native one's;
  * depthwise ceiling: FLOP/s of a 3x3 depthwise conv (64 channels, 56x56, batch 1), which oneDNN runs with a direct
    kernel far below the GEMM peak;
  * fresh memory: the time to fill a newly allocated tensor of 64 MiB (past glibc's largest mmap threshold, 32 MiB
    on 64-bit: mallopt(3), so always freshly mapped) less the time to fill it again, per byte: the page faults.
The cache's size is read from Linux's sysfs, and the fp32 SIMD lanes from torch's CPU capability (AVX-512: 16).
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

from archviz.analysis.devices import Device, DeviceKind, Peaks, PoolCost
from archviz.cache import cache_dir
from archviz.errors import ArchvizError
from archviz.output import write_atomic

CALIBRATION_FORMAT = 10  # bump when what is measured or stored changes
GEMM_SIZES = (256, 512, 1024)
POOL_WINDOWS = (2, 4)  # pools' time per output is measured at two windows: a fixed part and one per element
STREAM_BYTES = 256 * 2**20  # per tensor: far past any CPU's last-level cache
SHORT_STREAM_BYTES = 64 * 2**20  # for a calibration under a second (tests): still past most last-level caches
SHARES = {"gemm": 0.27, "stream": 0.22, "cache": 0.1, "overhead": 0.08, "conv": 0.06, "pool": 0.08, "depthwise": 0.06,
          "fresh": 0.1, "transcendental": 0.03}
FRESH_BYTES = 64 * 2**20
GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20  # 64-bit glibc: a block this large is always mmap()ed afresh (mallopt(3))
LANES = {"AVX512": 16, "AVX2": 8}  # fp32 lanes per vector, by torch.backends.cpu.get_cpu_capability()


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
    cache_bytes = last_level_cache_bytes()
    cache_bandwidth = None if cache_bytes is None else \
        _best_stream_bandwidth(seconds * SHARES["cache"], cache_bytes // 4)
    overhead = _op_overhead(seconds * SHARES["overhead"])
    max_pool = _pool_cost(torch.nn.MaxPool2d, seconds * SHARES["pool"] / 2)
    mean_pool = _pool_cost(torch.nn.AvgPool2d, seconds * SHARES["pool"] / 2)
    native_conv, onednn_conv = _conv_overheads(seconds * SHARES["conv"])
    transcendental = _transcendental_per_s(seconds * SHARES["transcendental"])
    fresh = _fresh_memory_s_per_byte(seconds * SHARES["fresh"])
    depthwise = _depthwise_flops(seconds * SHARES["depthwise"])
    threads = torch.get_num_threads()
    return Device(
        key="cpu", name=f"{cpu_name()} ({threads} thread{'s' if threads > 1 else ''})", kind=DeviceKind.CPU,
        peaks=Peaks(fp32=peak), memory_bandwidth=bandwidth, launch_overhead_s=overhead, memory_bytes=None,
        cache_bytes=cache_bytes, cache_bandwidth=cache_bandwidth,
        vector_lanes=LANES.get(torch.backends.cpu.get_cpu_capability()), max_pool=max_pool,
        mean_pool=mean_pool, native_conv_overhead_s=native_conv,
        onednn_conv_overhead_s=onednn_conv, reorders_conv_weights=True, threads=threads, depthwise_flops=depthwise,
        transcendental_per_s=transcendental, packs_gemm_weights=True,
        fresh_memory_s_per_byte=fresh, fresh_memory_from_bytes=GLIBC_MMAP_THRESHOLD_MAX,
        source=f"measured by archviz.profile.calibrate: best fp32 matmul of sizes {GEMM_SIZES}, best tensor copy/add "
               f"of {stream_bytes // 2**20} MiB, torch {torch.__version__}",
        overhead_source="measured: median time of one module call on a one-element tensor (conv, linear, batch norm, "
                        "ReLU, max pool)",
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


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache's size (Linux sysfs), or None where it cannot be read."""
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = entry.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        if text[:-1].isdigit() and text[-1] in units:
            sizes.append(int(text[:-1]) * units[text[-1]])
        elif text.isdigit():
            sizes.append(int(text))
    return max(sizes) if sizes else None


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
    one = torch.ones(1, 1, 1, 1)
    modules = (torch.nn.Conv2d(1, 1, 1), torch.nn.Linear(1, 1), torch.nn.BatchNorm2d(1).eval(), torch.nn.ReLU(),
               torch.nn.MaxPool2d(1))
    times = []
    for module in modules:  # the wall clock's median: a thread-CPU-time read is a system call as long as the op
        times += _times(lambda: module(one), budget_s / len(modules), clock=time.perf_counter)
    return statistics.median(times)


def _conv_overheads(budget_s: float) -> tuple[float, float]:
    """(native, oneDNN): a one-channel 3 x 3 convolution's least time per call on one image (torch's native kernel)
    and on two (oneDNN: more than one image), by the wall clock, as _op_overhead's."""
    conv = torch.nn.Conv2d(1, 1, 3)
    return tuple(min(_times(lambda: conv(one), budget_s / 2, clock=time.perf_counter))
                 for one in (torch.ones(1, 1, 3, 3), torch.ones(2, 1, 3, 3)))


def _transcendental_per_s(budget_s: float) -> float:
    inputs = torch.randn(2**18)  # 1 MiB: in cache, so the rate is tanh's arithmetic, not the memory's
    return inputs.numel() / _best_time(lambda: torch.tanh(inputs), budget_s)


def _pool_cost(pool_class, budget_s: float) -> PoolCost:
    """Through a 2 x 2 and a 4 x 4 window, both at stride 2 (the common pools' stride), on a cache-resident input."""
    inputs, measured = torch.randn(1, 64, 56, 56), []
    for size in POOL_WINDOWS:
        pool = pool_class(size, stride=2)
        outputs = pool(inputs).numel()
        measured.append((size * size, _best_time(lambda: pool(inputs), budget_s / len(POOL_WINDOWS)) / outputs))
    return PoolCost.through(*measured)


def _depthwise_flops(budget_s: float) -> float:
    conv, inputs = torch.nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), torch.randn(1, 64, 56, 56)
    flops = 2 * 64 * 9 * 56 * 56
    with torch.inference_mode():
        return flops / _best_time(lambda: conv(inputs), budget_s)


def _fresh_memory_s_per_byte(budget_s: float) -> float:
    elements = FRESH_BYTES // 4
    fresh = _best_time(lambda: torch.empty(elements).fill_(1.0), budget_s / 2)
    again = torch.empty(elements)
    reused = _best_time(lambda: again.fill_(1.0), budget_s / 2)
    return max(fresh - reused, 0.0) / FRESH_BYTES


def _best_time(call, budget_s: float) -> float:
    return min(_times(call, budget_s))


def _times(call, budget_s: float, *, at_least: int = 3, clock=None) -> list[float]:
    """Times of repeated calls (after one warm-up) until the budget is spent, and at least `at_least` of them."""
    clock = clock or (time.thread_time if torch.get_num_threads() == 1 else time.perf_counter)
    call()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    with torch.inference_mode():
        while len(times) < at_least or time.perf_counter() < deadline:
            start = clock()
            call()
            times.append(clock() - start)
    return times


def _to_json(device: Device) -> dict:
    return {"name": device.name, "peak_fp32": device.peaks.fp32, "memory_bandwidth": device.memory_bandwidth,
            "launch_overhead_s": device.launch_overhead_s, "source": device.source,
            "overhead_source": device.overhead_source, "cache_bytes": device.cache_bytes,
            "cache_bandwidth": device.cache_bandwidth, "vector_lanes": device.vector_lanes,
            "max_pool": _pool_json(device.max_pool), "mean_pool": _pool_json(device.mean_pool),
            "native_conv_overhead_s": device.native_conv_overhead_s,
            "onednn_conv_overhead_s": device.onednn_conv_overhead_s,
            "reorders_conv_weights": device.reorders_conv_weights, "threads": device.threads,
            "transcendental_per_s": device.transcendental_per_s, "packs_gemm_weights": device.packs_gemm_weights,
            "fresh_memory_s_per_byte": device.fresh_memory_s_per_byte,
            "fresh_memory_from_bytes": device.fresh_memory_from_bytes, "depthwise_flops": device.depthwise_flops}


def _from_json(entry: dict) -> Device:
    return Device(key="cpu", name=entry["name"], kind=DeviceKind.CPU, peaks=Peaks(fp32=float(entry["peak_fp32"])),
                  memory_bandwidth=float(entry["memory_bandwidth"]),
                  launch_overhead_s=float(entry["launch_overhead_s"]), memory_bytes=None, source=entry["source"],
                  overhead_source=entry["overhead_source"], cache_bytes=entry["cache_bytes"],
                  cache_bandwidth=entry["cache_bandwidth"], vector_lanes=entry["vector_lanes"],
                  max_pool=_pool_from_json(entry["max_pool"]), mean_pool=_pool_from_json(entry["mean_pool"]),
                  native_conv_overhead_s=entry["native_conv_overhead_s"],
                  onednn_conv_overhead_s=entry["onednn_conv_overhead_s"],
                  reorders_conv_weights=bool(entry["reorders_conv_weights"]), threads=entry["threads"],
                  transcendental_per_s=entry["transcendental_per_s"],
                  packs_gemm_weights=bool(entry["packs_gemm_weights"]),
                  fresh_memory_s_per_byte=entry["fresh_memory_s_per_byte"],
                  fresh_memory_from_bytes=entry["fresh_memory_from_bytes"], depthwise_flops=entry["depthwise_flops"])


def _pool_json(cost: PoolCost | None) -> list[float] | None:
    return None if cost is None else [cost.per_output_s, cost.per_element_s]


def _pool_from_json(entry) -> PoolCost | None:
    return None if entry is None else PoolCost(float(entry[0]), float(entry[1]))
