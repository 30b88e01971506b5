"""The peak memory of a training run, as `archviz compare` shows it: per process, from the run's start to its end.

On CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats, the tensors' bytes (the caching allocator
reserves more). On the CPU: how far the process's resident set rose above its size when the run started, less the
library code paged in meanwhile (file-backed pages: RssFile), so what is left is the weights, gradients, optimiser
state, activations and batches. Three things keep it the run's own: Linux resets the high-water mark (VmHWM) when "5"
is written to /proc/self/clear_refs; glibc's malloc_trim hands memory freed by earlier runs back first (else a run
reuses it unseen); and one tiny training step, once a process, sets up torch's one-time buffers (thread pools, the
autograd engine, tens of MB) before the first meter starts. Measured for lenet on the digits: 17 MB as the first
run of a process, 9-11 MB after others. Without /proc, getrusage's lifetime maximum is used, which cannot be reset:
a run after a larger one in the same process then shows 0.
"""

from __future__ import annotations

import enum
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


class Method(enum.StrEnum):
    CUDA = "cuda"  # torch.cuda.max_memory_allocated
    HIGH_WATER = "vmhwm"  # /proc/self/status VmHWM, reset at the start
    LIFETIME = "getrusage"  # ru_maxrss, never reset


DESCRIPTIONS = {
    Method.CUDA: "CUDA tensors at their peak (torch.cuda.max_memory_allocated)",
    Method.HIGH_WATER: "rise of the resident set over its size at the start (VmHWM, reset)",
    Method.LIFETIME: "rise of the process's lifetime maximum resident set (getrusage)",
}


@dataclass(frozen=True)
class PeakMemory:
    """A meter started at a run's start; peak_bytes() is the growth since then."""

    device: object  # torch.device
    start_bytes: int
    method: Method

    @classmethod
    def start(cls, device) -> PeakMemory:
        if device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(device)
            return cls(device, 0, Method.CUDA)
        warm_up()
        _release_free_memory()
        if _reset_high_water_mark():
            return cls(device, _status_bytes("VmRSS") - _status_bytes("RssFile"), Method.HIGH_WATER)
        return cls(device, _lifetime_max_rss(), Method.LIFETIME)

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.method]

    def peak_bytes(self) -> int:
        if self.method == Method.CUDA:
            import torch

            return int(torch.cuda.max_memory_allocated(self.device))
        if self.method == Method.HIGH_WATER:  # less the library code paged in meanwhile (file-backed pages)
            return max(0, _status_bytes("VmHWM") - _status_bytes("RssFile") - self.start_bytes)
        return max(0, _lifetime_max_rss() - self.start_bytes)


@functools.cache  # once a process: what it sets up stays
def warm_up() -> None:
    """One training step of a tiny network, so that torch's one-time buffers (thread pools, the autograd engine, kernel
    caches: tens of MB) are in place before the meter starts rather than charged to the first run. The training
    itself is unchanged: a run seeds every random generator after this."""
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 2))
    optimizer = torch.optim.AdamW(net.parameters())
    loss = torch.nn.functional.cross_entropy(net(torch.zeros(2, 1, 8, 8)), torch.zeros(2, dtype=torch.int64))
    loss.backward()
    optimizer.step()


def _release_free_memory() -> None:
    """Hand the memory freed by earlier runs back to the system (glibc's malloc_trim), so that this run's rise is its
    own and not hidden by reused free memory."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


def _reset_high_water_mark() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        return _status_bytes("VmHWM") > 0
    except OSError:  # not Linux, or /proc is read-only here
        return False


def _status_bytes(field: str) -> int:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # the file says kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _lifetime_max_rss() -> int:
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kilobytes on Linux
