"""The peak memory of a training run, as `archviz compare` shows it: the most bytes of tensors alive at once in a
training step, per run.

On CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats, the tensors' bytes over the whole run (the
caching allocator reserves more). On the CPU, whose allocator keeps no statistics: the run's first training step
counted by archviz's live-storage tracker (archviz/profile/tracker.py: every tensor storage torch creates and frees,
the weights, optimizer state, batch, activations and gradients included), so the figure is this run's tensors
alone, not the process's resident memory, which keeps what earlier runs and libraries left (369 MB for a LeNet
whose step peaks under 1 MB). The steps after the first are the same step again; only the first pays the
tracker's cost (about a third more time for that one step).
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass


class Method(enum.StrEnum):
    CUDA = "cuda"  # torch.cuda.max_memory_allocated
    TRACKED_STEP = "tracked step"  # the live-storage tracker over the run's first training step


DESCRIPTIONS = {
    Method.CUDA: "CUDA tensors at their peak (torch.cuda.max_memory_allocated)",
    Method.TRACKED_STEP: "tensors alive at once in a training step (counted by archviz's live-storage tracker)",
}


@dataclass
class PeakMemory:
    """A run's meter: started with the run; on the CPU it counts the first training step run through `step`."""

    device: object  # torch.device
    method: Method
    tracked_bytes: int = 0
    tracked: bool = False

    @classmethod
    def start(cls, device) -> PeakMemory:
        if device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(device)
            return cls(device, Method.CUDA)
        return cls(device, Method.TRACKED_STEP)

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.method]

    @contextlib.contextmanager
    def step(self, alive, batch):
        """Around one training step: the first on the CPU is counted, what `alive()` returns (weights, optimizer
        state) as the baseline and `batch` (its tensors) as already made."""
        if self.method != Method.TRACKED_STEP or self.tracked:
            yield
            return
        from archviz.profile.tracker import LiveMemoryTracker

        with LiveMemoryTracker(baseline=alive(), modules=False) as tracker:
            tracker.track(*batch)
            yield
        self.tracked_bytes, self.tracked = tracker.result().peak_bytes, True

    def peak_bytes(self) -> int:
        if self.method == Method.CUDA:
            import torch

            return int(torch.cuda.max_memory_allocated(self.device))
        return self.tracked_bytes
