"""How many CPU threads a run uses by default, and how torch's OpenMP threads wait: chosen for a machine that others
use too.

On a 2-core machine at load 4-8, "every core" trained 14x slower than one thread: OpenMP's threads spin while they
wait for each other, and on a busy machine the spinning thread's partner is not running. So the default is the cores
actually free (the cores this process may use, less the load average, at least 1), and OMP_WAIT_POLICY=PASSIVE (a
waiting thread sleeps) is set before torch is loaded, unless the user set it (benchmarks/threads.py measures both;
results in benchmarks/results/threads.md). An explicit --threads N is used as given.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

OMP_WAIT_POLICY = "OMP_WAIT_POLICY"


@dataclass(frozen=True)
class ThreadChoice:
    """The default thread count and why."""

    cores: int  # the cores this process may run on
    load: float  # the 1-minute load average when the run started
    threads: int

    def describe(self) -> str:
        return (f"chosen from {self.cores} core{'s' if self.cores != 1 else ''} at load {self.load:.1f}: "
                f"{self.threads} free")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return 0.0


def choose_threads(*, share: int = 1) -> ThreadChoice:
    """The cores free now (cores - load, rounded to the nearest, at least 1), split between `share` processes of
    this machine."""
    cores, load = usable_cores(), load_average()
    free = max(1, math.floor(cores - load + 0.5))  # a load of 0.6 on 2 cores leaves 1 free; 0.4 leaves 2
    return ThreadChoice(cores, load, max(1, free // share))


def passive_openmp() -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE for torch's OpenMP runtime when torch is not loaded yet and the user has not set
    it; returns whether the policy torch will use is passive."""
    if OMP_WAIT_POLICY not in os.environ and "torch" not in sys.modules:
        os.environ[OMP_WAIT_POLICY] = "PASSIVE"
    return os.environ.get(OMP_WAIT_POLICY, "").upper() == "PASSIVE"
