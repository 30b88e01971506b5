"""The bytes of tensors alive at once, counted as torch creates and frees their storages, on any device.

The CPU allocator keeps no statistics, so `LiveMemoryTracker` counts for itself: a TorchDispatchMode sees every tensor
an aten op returns, in the forward pass, in autograd's backward (the engine runs backward's ops under the mode that was
active when backward() was called; tests/test_profile.py checks the gradients are counted) and in optimizer.step().
Each tensor is keyed by its untyped storage, so views and in-place results count once.

Why a weakref to the storage object works in torch 2.14: torch keeps one Python object per live storage and keeps it
alive as long as the C++ storage lives, even with no Python reference to it (PyObject preservation), so
`weakref.ref(tensor.untyped_storage(), callback)` calls back exactly when the storage is freed: a tensor that only
autograd's graph still holds (a saved activation) stays counted until backward releases it. A data_ptr with a
finalizer would need an object whose life follows the storage's; that object is this one.

What it cannot see: workspace a kernel allocates and frees inside one op (oneDNN's scratch, cuBLAS's workspace), and
the allocator's rounding: on CUDA, torch.cuda.max_memory_allocated counts both. Source of the idea: PyTorch's
torch/distributed/_tools/mem_tracker.py (read, not copied).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.module_tracker import ModuleTracker

_GLOBAL = "Global"  # ModuleTracker's name for "outside every module"


@dataclass(frozen=True)
class PeakPlace:
    """Where the peak happened: the aten op whose result reached it, and the innermost module running then (its path
    in the root module, "" for the root itself; None when no module was running)."""

    op: str
    module: str | None
    backward: bool


@dataclass(frozen=True)
class TrackedMemory:
    peak_bytes: int  # the most bytes of tracked storages alive at once, the baseline included
    baseline_bytes: int  # alive when tracking started (parameters, buffers, optimizer state)
    final_bytes: int  # alive when tracking stopped
    peak_place: PeakPlace | None  # None when no op raised the count above where it started


def storages(tensors: Iterable[torch.Tensor]) -> dict[int, torch.UntypedStorage]:
    """The distinct storages behind `tensors` (views of one storage count once), keyed by the storage's identity."""
    found: dict[int, torch.UntypedStorage] = {}
    for tensor in tensors:
        storage = _storage(tensor)
        if storage is not None:
            found.setdefault(id(storage), storage)
    return found


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors`.

    >>> storage_bytes([torch.zeros(3, 4), torch.zeros(2)])  # 4 bytes a float32
    56
    """
    return sum(storage.nbytes() for storage in storages(tensors).values())


def _storage(tensor) -> torch.UntypedStorage | None:
    if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
        return None
    try:
        return tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse, nested or subclassed tensors have no one storage
        return None


class LiveMemoryTracker(TorchDispatchMode):
    """Counts the bytes of live tensor storages while active; `result()` gives the peak and where it happened.

    The baseline is either measured from `baseline` (the tensors alive before: parameters, buffers, optimizer state,
    whose storages are then known, so an in-place update of a parameter adds nothing) or passed in as
    `baseline_bytes` (a figure the caller knows; a storage behind it that an op returns is then counted again).
    `track(*tensors)` adds tensors that exist already but are not baseline (the input batch). The counts stop at
    exit (no callback outlives the tracker), so a tracker is used once.

    >>> linear = torch.nn.Linear(4, 3)
    >>> x = torch.zeros(2, 4)
    >>> with torch.no_grad(), LiveMemoryTracker(baseline=[*linear.parameters()]) as tracker:
    ...     tracker.track(x)
    ...     y = linear(x)
    >>> tracker.result().peak_bytes  # weights (3*4 + 3) + input 2*4 + output 2*3, 4 bytes each
    116
    """

    def __init__(self, *, baseline: Iterable[torch.Tensor] = (), baseline_bytes: int | None = None,
                 modules: bool = True):
        super().__init__()
        self._lock = threading.RLock()  # storages may die on autograd's device threads (CUDA backward)
        self._live: dict[int, tuple[weakref.ref, int]] = {}
        self.current_bytes = 0
        for storage in storages(baseline).values():
            self._add(storage)
        if baseline_bytes is not None:
            self.current_bytes = baseline_bytes
        self.baseline_bytes = self.current_bytes
        self.peak_bytes = self.current_bytes
        self._peak_place: PeakPlace | None = None
        self._modules = ModuleTracker() if modules else None

    def track(self, *tensors: torch.Tensor) -> None:
        """Count tensors that are alive already (not baseline), such as the input batch."""
        for storage in storages(tensors).values():
            self._add(storage)
        self._note_peak("(tracked before the step)")

    def result(self) -> TrackedMemory:
        return TrackedMemory(self.peak_bytes, self.baseline_bytes, self.current_bytes, self._peak_place)

    def __enter__(self):
        if self._modules is not None:
            self._modules.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            if self._modules is not None:
                self._modules.__exit__(*exc)
            with self._lock:
                self._live.clear()  # the weakrefs go, and their callbacks with them: the counts stay as at exit

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        leaves, _ = tree_flatten(out)
        with self._lock:
            for leaf in leaves:
                storage = _storage(leaf)
                if storage is not None:
                    self._add(storage)
            self._note_peak(str(func.overloadpacket.__name__))
        return out

    def _add(self, storage: torch.UntypedStorage) -> None:
        key, size = id(storage), storage.nbytes()
        with self._lock:
            known = self._live.get(key)
            if known is not None:
                if known[1] != size:  # resize_ or set_ grew or shrank it
                    self.current_bytes += size - known[1]
                    self._live[key] = (known[0], size)
                return
            self._live[key] = (weakref.ref(storage, self._freed(key)), size)
            self.current_bytes += size

    def _freed(self, key: int):
        def callback(_ref) -> None:
            with self._lock:
                _, size = self._live.pop(key)
                self.current_bytes -= size

        return callback

    def _note_peak(self, op: str) -> None:
        if self.current_bytes > self.peak_bytes:
            self.peak_bytes = self.current_bytes
            self._peak_place = PeakPlace(op, self._innermost_module(), self._in_backward())

    def _innermost_module(self) -> str | None:
        if self._modules is None:
            return None
        names = [name for name in self._modules.parents if name != _GLOBAL]
        if not names:
            return None
        deepest = max(names, key=lambda name: (name.count("."), name))
        return deepest.partition(".")[2]  # ModuleTracker names the root by its class: "LeNet.conv1" -> "conv1"

    def _in_backward(self) -> bool:
        return bool(self._modules is not None and self._modules.is_bw)
