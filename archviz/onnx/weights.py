"""The weights `archviz export` writes: each layer's tensors named and shaped as in the PyTorch state dict of
archviz.torch_build.to_torch ("layer1.0.conv1.weight"), filled as torch initialises them or from a checkpoint.

torch's defaults (torch/nn/modules/conv.py and linear.py, reset_parameters): kaiming_uniform_(a=sqrt(5)) for
conv and linear weights, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for their biases; batch
norm starts at weight 1, bias 0, running mean 0, running variance 1; layer norm at weight 1, bias 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from archviz.errors import ArchvizError
from archviz.graph.ir import Graph, Node
from archviz.ops import get_op
from archviz.ops.base import Fill, numel

IGNORED_KEYS = ("num_batches_tracked",)  # batch norm's step counter: not a weight, and ONNX has no use for it


@dataclass(frozen=True)
class WeightSpec:
    """One stored tensor of a layer: its state-dict key, shape and torch's initial fill."""

    key: str
    shape: tuple[int, ...]
    fill: Fill
    fan_in: int = 1


def layer_weights(node: Node) -> list[WeightSpec]:
    """The stored tensors of one layer, as its op declares them (Op.weights) and to_torch's module holds them."""
    op = get_op(node.op)
    return [WeightSpec(f"{node.name}.{w.name}", tuple(w.shape), w.fill, w.fan_in)
            for w in op.weights(node.attrs, list(node.in_shapes))]


def graph_weights(graph: Graph) -> list[WeightSpec]:
    """Every stored tensor of the graph, in layer order; a layer sharing another's weights adds none."""
    return [spec for node in graph.nodes if node.shares is None for spec in layer_weights(node)]


def initial_values(specs: list[WeightSpec], *, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """(key, value) as torch would initialise them (numpy's random stream, seeded, so files are reproducible), made
    one at a time so that only one tensor is held besides the file being built."""
    rng = np.random.default_rng(seed)
    for spec in specs:
        if spec.fill == Fill.UNIFORM:
            value = rng.random(spec.shape, dtype=np.float32)  # U(0, 1), made U(-bound, bound) in place
            value *= np.float32(2 / np.sqrt(spec.fan_in))
            value -= np.float32(1 / np.sqrt(spec.fan_in))
        else:
            value = (np.ones if spec.fill == Fill.ONES else np.zeros)(spec.shape, dtype=np.float32)
        yield spec.key, value


def checkpoint_values(specs: list[WeightSpec], path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """The tensors of a PyTorch state dict (torch.save(model.state_dict(), path)), checked against the graph."""
    from archviz.torch_build import import_torch

    torch = import_torch()
    file = str(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchvizError("no such checkpoint file", file=file) from None
    except Exception as error:  # torch raises pickle, zip and runtime errors of many kinds for a bad file
        raise ArchvizError(f"cannot read the checkpoint: {type(error).__name__}: {error}".splitlines()[0],
                           file=file) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint that holds the state dict beside other things
    if not isinstance(state, Mapping):
        raise ArchvizError(f"the checkpoint holds a {type(state).__name__}, not a state dict", file=file)
    return state_dict_values(specs, state, file=file)


def state_dict_values(specs: list[WeightSpec], state: Mapping, *, file: str) -> Iterator[tuple[str, np.ndarray]]:
    """The tensors of a state dict already in memory, checked against the graph; `file` names it in errors."""
    from archviz.torch_build import import_torch

    torch = import_torch()
    wanted = {spec.key: spec for spec in specs}
    given = {k: v for k, v in state.items() if not str(k).endswith(IGNORED_KEYS)}
    missing = [k for k in wanted if k not in given]
    unexpected = [k for k in given if k not in wanted]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise ArchvizError(f"the checkpoint's keys do not match the model's layers: {'; '.join(parts)}", file=file)
    for key, spec in wanted.items():
        tensor = given[key]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != spec.shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ArchvizError(f"{key} has shape {shape} in the checkpoint, the model needs {spec.shape}", file=file)
    return ((key, given[key].detach().to(torch.float32).numpy()) for key in wanted)


def byte_count(specs: list[WeightSpec]) -> int:
    return sum(numel(spec.shape) for spec in specs) * 4  # float32


def _few(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
