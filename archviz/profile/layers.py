"""Per-layer time: each call of each leaf module, forward and backward, timed with hooks in iterations of their own.

A training step's module hooks (forward pre and post) time the forward pass; the backward pass is timed in other
iterations with tensor hooks only, rather than register_full_backward_pre_hook/_hook: full backward hooks wrap a
module's inputs and outputs in views made by a custom Function, and torchvision's in-place ReLU and `out += identity`
then raise "Output 0 of BackwardHookFunction is a view and is being modified inplace" (resnet18, torch 2.14;
tests/test_profile.py shows it). Every clock reading is synchronised on CUDA.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils._pytree import tree_flatten


@dataclass(frozen=True)
class LayerTiming:
    """Median seconds of one leaf module (or Graph node) per iteration; backward_s is None when not training."""

    path: str
    forward_s: float
    backward_s: float | None


def _leaves(module) -> list[tuple[str, torch.nn.Module]]:
    return [(path, child) for path, child in module.named_modules() if path and not next(child.children(), None)] \
        or [("", module)]


def layer_times(run, iterations: int) -> tuple[LayerTiming, ...]:
    """`run` is one iteration (run.py's _Step: callable, with module, train, sync() and after_backward).

    Per call of each leaf module, named as archviz's trace names calls: "layer1.0.relu", then "layer1.0.relu_1"
    for the same module's second call; rows in the order of the calls. A leaf never called has no row."""
    leaves = _leaves(run.module)
    forward_clock = _ForwardClock(leaves, run.sync)
    forward = _per_iteration(run, iterations, forward_clock)
    if not run.train:
        return tuple(LayerTiming(name, _median(forward, name), None) for name in forward_clock.calls.order)
    backward = _per_iteration(run, iterations, _BackwardClock(leaves, run.sync))
    return tuple(LayerTiming(name, _median(forward, name), _median(backward, name))
                 for name in forward_clock.calls.order)


def _median(per_iteration: list[dict[str, float]], name: str) -> float:
    return statistics.median(seconds.get(name, 0.0) for seconds in per_iteration)


def _per_iteration(run, iterations: int, clock) -> list[dict[str, float]]:
    """Seconds per call name in each of `iterations` iterations, with the clock's hooks on only meanwhile."""
    handles = clock.attach()
    run.after_backward = clock.backward_done
    try:
        totals = []
        for _ in range(iterations):
            clock.reset()
            run()
            run.sync()
            totals.append(clock.seconds())
    finally:
        run.after_backward = lambda: None
        for handle in handles:
            handle.remove()
    return totals


class _Calls:
    """Names each call of a module within an iteration: its path, then path_1, path_2, ...; a stack per path pairs a
    forward post hook with its pre hook. `order`: every name in the order first called, kept across iterations."""

    def __init__(self):
        self.order: list[str] = []
        self._count: dict[str, int] = defaultdict(int)
        self._open: dict[str, list[str]] = defaultdict(list)

    def enter(self, path: str) -> str:
        count = self._count[path]
        self._count[path] += 1
        name = f"{path}_{count}" if count else path
        if name not in self.order:
            self.order.append(name)
        self._open[path].append(name)
        return name

    def leave(self, path: str) -> str:
        return self._open[path].pop()

    def reset(self) -> None:
        self._count.clear()
        self._open.clear()


class _ForwardClock:
    """Forward pre/post hooks on each leaf: the seconds between them, synchronised on CUDA, per call."""

    def __init__(self, leaves, sync: Callable[[], None]):
        self.leaves, self.sync = leaves, sync
        self.calls = _Calls()
        self.started: dict[str, float] = {}
        self.totals: dict[str, float] = defaultdict(float)

    def attach(self) -> list:
        handles = []
        for path, module in self.leaves:
            handles.append(module.register_forward_pre_hook(self._start(path)))
            handles.append(module.register_forward_hook(self._stop(path), always_call=True))
        return handles

    def _start(self, path):
        def hook(_module, _args):
            self.sync()
            self.started[self.calls.enter(path)] = time.perf_counter()

        return hook

    def _stop(self, path):
        def hook(_module, _args, _output):
            self.sync()
            name = self.calls.leave(path)
            self.totals[name] += time.perf_counter() - self.started.pop(name)

        return hook

    def reset(self) -> None:
        self.calls.reset()
        self.started.clear()
        self.totals.clear()

    def backward_done(self) -> None:
        pass

    def seconds(self) -> dict[str, float]:
        return dict(self.totals)


class _BackwardClock:
    """A leaf's backward runs from the moment the gradient of its output is ready (a hook on the output tensor, set
    in a forward hook) until the gradient of its input is ready (a hook on the input tensor), or until another
    call's backward starts, or backward ends, whichever comes first. Autograd runs the most recently recorded node
    first, so after a module's output gradient arrives its own nodes (and its weights' AccumulateGrad) run next.
    A hook set on a tensor before an in-place op sees the gradient of the value before it (autograd's documented
    rule), so in-place ReLU and `+=` are timed as written. A module that returns its input as it is (nn.Identity)
    shares that tensor's hooks with the module before it, which then shows no backward time of its own."""

    def __init__(self, leaves, sync: Callable[[], None]):
        self.leaves, self.sync = leaves, sync
        self.calls = _Calls()
        self.events: list[tuple[float, str, bool]] = []  # (time, call name, True: its backward starts / False: ends)

    def attach(self) -> list:
        handles = []
        for path, module in self.leaves:
            handles.append(module.register_forward_pre_hook(self._on_inputs(path)))
            handles.append(module.register_forward_hook(self._on_outputs(path), always_call=True))
        return handles

    def _on_inputs(self, path):
        def hook(_module, args):
            self._hook_tensors(args, self.calls.enter(path), starts=False)

        return hook

    def _on_outputs(self, path):
        def hook(_module, _args, output):
            self._hook_tensors(output, self.calls.leave(path), starts=True)

        return hook

    def _hook_tensors(self, value, name: str, *, starts: bool) -> None:
        if not torch.is_grad_enabled():
            return
        for tensor in tree_flatten(value)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
                tensor.register_hook(self._event(name, starts))

    def _event(self, name: str, starts: bool):
        def hook(_grad):
            self.sync()
            self.events.append((time.perf_counter(), name, starts))

        return hook

    def reset(self) -> None:
        self.calls.reset()
        self.events.clear()

    def backward_done(self) -> None:
        self.sync()
        self.events.append((time.perf_counter(), "", True))

    def seconds(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for index, (start, name, starts) in enumerate(self.events):
            if not starts or not name:
                continue
            end = next((when for when, other, other_starts in self.events[index + 1:]
                        if (other_starts and other != name) or (other == name and not other_starts)), start)
            totals[name] += end - start
        return dict(totals)
