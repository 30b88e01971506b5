"""The devices a latency prediction can be made for: peak dense FLOP/s per precision and memory bandwidth.

Every GPU figure is the vendor's datasheet figure for dense math (NVIDIA prints tensor-core figures "with sparsity",
twice the dense rate: the dense half is what a convolution or GEMM can reach), each entry naming its source. The
local CPU has no datasheet entry: archviz.profile.calibrate measures it (GEMM FLOP/s, streaming bandwidth and the
per-op overhead of eager PyTorch) and returns the same record. Pure Python: no torch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from archviz.errors import UnknownNameError, closest

TERA = 10**12
GB = 10**9  # vendors state bandwidth and memory in decimal gigabytes
GPU_LAUNCH_S = 5e-6  # a typical CUDA kernel launch: a few microseconds; stated, not measured (eager PyTorch adds more)
GPU_LAUNCH_SOURCE = "typical CUDA kernel launch latency (about 5 us; not measured on the card)"


class DeviceKind(enum.StrEnum):
    GPU = "gpu"
    CPU = "cpu"


class Precision(enum.StrEnum):
    """The math a layer runs in: FP32 on the plain FP32 units, TF32/FP16/BF16 on tensor cores (FP32 accumulate)."""

    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"


@dataclass(frozen=True)
class Peaks:
    """Peak dense FLOP/s per precision; None where the device has no such math (a T4 has no TF32 or BF16 units)."""

    fp32: float
    tf32: float | None = None
    fp16: float | None = None
    bf16: float | None = None

    def of(self, precision: Precision) -> float | None:
        return getattr(self, Precision(precision).value)


@dataclass(frozen=True)
class PoolCost:
    """A CPU pooling kernel's time per output: a fixed part, and a part per element of its window, from two measured
    windows (torch 2.14's NCHW max pool here: about 13 ns + 2 ns per element, 21 ns at 2 x 2, 91 at 7 x 7; an
    average pool about 6 ns + 0.35 ns per element)."""

    per_output_s: float
    per_element_s: float

    def seconds(self, outputs: int, window_elements: int) -> float:
        return outputs * (self.per_output_s + self.per_element_s * window_elements)

    @classmethod
    def through(cls, small: tuple[int, float], large: tuple[int, float]) -> PoolCost:
        """The line through two (window elements, seconds per output) measurements; never falling with the window,
        never below zero at no window."""
        (n1, t1), (n2, t2) = small, large
        per_element = max((t2 - t1) / (n2 - n1), 0.0)
        return cls(per_output_s=max(t1 - per_element * n1, 0.0), per_element_s=per_element)


@dataclass(frozen=True)
class Device:
    """One device's roofline: its peaks, its memory bandwidth (bytes/s) and a fixed cost per launched op (seconds)."""

    key: str
    name: str
    kind: DeviceKind
    peaks: Peaks
    memory_bandwidth: float  # bytes/s
    launch_overhead_s: float
    memory_bytes: int | None  # the card's memory; None for a CPU (the machine's RAM is not a device figure)
    source: str  # where the peaks and bandwidth come from
    overhead_source: str  # where launch_overhead_s comes from
    # The cache-aware roofline (A. Ilic, F. Pratas, L. Sousa, "Cache-aware Roofline model", IEEE Computer
    # Architecture Letters 13(1), 2014): a layer whose bytes fit in half the last-level cache streams at the cache's
    # bandwidth. Measured for the local CPU; None for the datasheet GPUs (their L2 is not modelled).
    cache_bytes: int | None = None
    cache_bandwidth: float | None = None  # bytes/s
    # fp32 SIMD lanes (16 for AVX-512): oneDNN blocks output channels by the vector width (its nChw16c layouts), so
    # a conv with 6 output channels computes 16 and wastes 10/16 of its multiplies. None: not modelled (the GPUs).
    vector_lanes: int | None = None
    # Measured CPU ceilings for what the two roofs miss (archviz.profile.calibrate): torch's NCHW max pool costs tens
    # of nanoseconds per output, far below the memory roof; a depthwise conv runs at a fraction of the GEMM peak; an
    # output written to freshly mapped memory pays a page fault per 4 KiB page (glibc mmap()s a block of 32 MiB or
    # more afresh each time). None: not modelled.
    max_pool: PoolCost | None = None
    mean_pool: PoolCost | None = None  # an average (or sum) pool's, about a third of a max pool's on a CPU
    # torch runs a CPU convolution through oneDNN or through its own native kernels, by a rule of the shapes
    # (analysis/latency.py, onednn_conv); the fixed cost of a call on each path, measured on a one-channel 3 x 3
    # convolution (torch 2.14 here: 8 us native, about 40 us through oneDNN), and whether oneDNN copies the weights
    # into its blocked layout at every call (it does for NCHW tensors: the copy streams them from memory first).
    # None: launch_overhead_s, no copy (the GPUs)
    native_conv_overhead_s: float | None = None
    onednn_conv_overhead_s: float | None = None
    reorders_conv_weights: bool = False
    threads: int | None = None  # torch's CPU threads when calibrated (the oneDNN rule reads it)
    # elements per second of an exp-like activation (tanh, sigmoid, GELU, softmax: Op.transcendental), compute-bound
    # on a CPU (about 2.5 ns an element here, where a ReLU streams at the memory roof); None: not modelled
    transcendental_per_s: float | None = None
    # a CPU's BLAS (MKL, oneDNN) copies a linear layer's weight matrix into its blocked layout at every call that has
    # more than one row (a GEMV, one row, reads it as it is): the copy streams the weights from memory before the
    # multiply starts. False: not modelled (the GPUs)
    packs_gemm_weights: bool = False
    depthwise_flops: float | None = None  # FLOP/s of a depthwise conv: a direct kernel, not a GEMM, on a CPU
    fresh_memory_s_per_byte: float | None = None
    fresh_memory_from_bytes: int | None = None  # outputs at least this large are always fresh memory

    def peak(self, precision: Precision) -> float | None:
        return self.peaks.of(precision)

    def conv_overhead_s(self, *, onednn: bool) -> float:
        """The fixed cost of a convolution call on the path torch takes (launch_overhead_s where not measured)."""
        measured = self.onednn_conv_overhead_s if onednn else self.native_conv_overhead_s
        return self.launch_overhead_s if measured is None else measured

    def bandwidth_for(self, bytes_moved: int) -> float:
        """The roof a layer moving `bytes_moved` streams at: the cache's when they fit in half of it, else memory's."""
        if self.cache_bytes is not None and self.cache_bandwidth is not None and 2 * bytes_moved <= self.cache_bytes:
            return self.cache_bandwidth
        return self.memory_bandwidth

    @property
    def ridge_intensity(self) -> float:
        """FLOPs per byte where the FP32 compute roof meets the memory roof (Williams et al. 2009)."""
        return self.peaks.fp32 / self.memory_bandwidth


def _gpu(key: str, name: str, *, fp32: float, tf32: float | None, fp16: float | None, bf16: float | None,
         bandwidth_gb: float, memory_gb: int, source: str) -> Device:
    """A datasheet entry: FLOP/s in dense TFLOPS, bandwidth in GB/s, memory in GB."""
    peaks = Peaks(fp32=fp32 * TERA, tf32=None if tf32 is None else tf32 * TERA,
                  fp16=None if fp16 is None else fp16 * TERA, bf16=None if bf16 is None else bf16 * TERA)
    return Device(key=key, name=name, kind=DeviceKind.GPU, peaks=peaks, memory_bandwidth=bandwidth_gb * GB,
                  launch_overhead_s=GPU_LAUNCH_S, memory_bytes=memory_gb * GB, source=source,
                  overhead_source=GPU_LAUNCH_SOURCE)


_H100 = "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100), dense = half the sparse figure"
_H200 = "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200), dense = half the sparse figure"
_A100 = "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100), dense figures"
_L4 = "NVIDIA L4 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/l4), dense = half the sparse figure"
_T4 = "NVIDIA T4 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/tesla-t4): FP16 mixed precision"
_ADA = ("NVIDIA Ada GPU Architecture whitepaper v2.1, Table 2 (GeForce RTX 4090): tensor FP16/BF16 with FP32 "
        "accumulate, dense")
_GA102 = ("NVIDIA Ampere GA102 GPU Architecture whitepaper v2, Table 9 (GeForce RTX 3090): tensor FP16/BF16 with "
          "FP32 accumulate, dense")

DEVICES: dict[str, Device] = {device.key: device for device in (
    _gpu("h100", "NVIDIA H100 SXM5 80 GB", fp32=67, tf32=494.5, fp16=989.5, bf16=989.5, bandwidth_gb=3350,
         memory_gb=80, source=_H100),
    _gpu("h100-pcie", "NVIDIA H100 PCIe 80 GB", fp32=51, tf32=378, fp16=756, bf16=756, bandwidth_gb=2000,
         memory_gb=80, source=_H100),
    _gpu("h200", "NVIDIA H200 SXM 141 GB", fp32=67, tf32=494.5, fp16=989.5, bf16=989.5, bandwidth_gb=4800,
         memory_gb=141, source=_H200),
    _gpu("a100-40gb", "NVIDIA A100 SXM4 40 GB", fp32=19.5, tf32=156, fp16=312, bf16=312, bandwidth_gb=1555,
         memory_gb=40, source=_A100),
    _gpu("a100", "NVIDIA A100 SXM4 80 GB", fp32=19.5, tf32=156, fp16=312, bf16=312, bandwidth_gb=2039,
         memory_gb=80, source=_A100),
    _gpu("l4", "NVIDIA L4 24 GB", fp32=30.3, tf32=60, fp16=121, bf16=121, bandwidth_gb=300, memory_gb=24,
         source=_L4),
    _gpu("t4", "NVIDIA T4 16 GB", fp32=8.1, tf32=None, fp16=65, bf16=None, bandwidth_gb=320, memory_gb=16,
         source=_T4),
    _gpu("rtx4090", "NVIDIA GeForce RTX 4090 24 GB", fp32=82.6, tf32=82.6, fp16=165.2, bf16=165.2,
         bandwidth_gb=1008, memory_gb=24, source=_ADA),
    _gpu("rtx3090", "NVIDIA GeForce RTX 3090 24 GB", fp32=35.6, tf32=35.6, fp16=71, bf16=71, bandwidth_gb=936,
         memory_gb=24, source=_GA102),
)}


def device_named(key: str) -> Device:
    """A datasheet device, or "cpu": this machine's CPU as archviz/profile/calibrate.py measured it (needs torch; a
    first call measures for a few seconds, then the figures are cached)."""
    if str(key).lower() == "cpu":
        from archviz.profile.calibrate import local_device

        return local_device()
    return get_device(key)


def get_device(key: str) -> Device:
    """A datasheet device by its short key.

    >>> get_device("a100").memory_bandwidth
    2039000000000
    """
    try:
        return DEVICES[key.lower()]
    except (KeyError, AttributeError):
        choices = ", ".join(DEVICES)
        raise UnknownNameError(f"unknown device {key!r}{closest(str(key), list(DEVICES))}; choose one of {choices}"
                               ", or cpu (this machine, calibrated once)") from None
