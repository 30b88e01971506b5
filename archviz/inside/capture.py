"""Forward hooks that keep chosen layers' outputs for one forward pass, and are removed afterwards, even on error.

The hooks sit on the modules that to_torch placed at the layers' paths; the model is neither rebuilt nor changed.
A layer's output is copied as it leaves the layer, because a later in-place op (ReLU(inplace=True)) overwrites the
tensor in place: the copy is what the layer produced.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable


@contextmanager
def forward_hooks(net, hooks: dict[str, Callable]):
    """Register hook(module, inputs, output) on each named layer's module for the duration of the block."""
    handles = []
    try:
        for name, hook in hooks.items():
            handles.append(net.get_submodule(name).register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture_outputs(net, names: list[str], x) -> tuple[dict[str, Any], Any]:
    """({layer: a copy of its output}, the model's output) for one pass of x, without gradients."""
    import torch

    kept: dict[str, Any] = {}

    def keeper(name: str):
        def keep(module, inputs, output):
            kept[name] = output.detach().clone()

        return keep

    with forward_hooks(net, {name: keeper(name) for name in names}), torch.no_grad():
        result = net(x)
    return kept, result


def output_with_gradient(net, name: str, x) -> tuple[Any, Any]:
    """(the layer's output, the model's output) for one pass with gradients, so that the model's output can be
    differentiated with respect to the layer's output (torch.autograd.grad). The rest of the network runs on a copy,
    which an in-place op after the layer may overwrite without touching the kept tensor or its gradient."""
    import torch

    kept: dict[str, Any] = {}

    def keep(module, inputs, output):
        kept["output"] = output
        return output.clone()

    with forward_hooks(net, {name: keep}), torch.enable_grad():
        result = net(x)
    return kept["output"], result
