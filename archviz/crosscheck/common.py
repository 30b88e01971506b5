"""What the peers share: the report's graph as a torch model, and the shapes each layer sees in a forward pass."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

import torch

from archviz.analysis.report import Report
from archviz.torch_build import to_torch

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerShapes:
    """One layer's tensors in a forward pass, batch included."""

    inputs: tuple[Shape, ...]
    output: Shape


def meta_model(report: Report):
    """The report's graph on the meta device in eval mode: shapes and parameter counts, no weights."""
    return to_torch(report.graph, device="meta").eval()


def batch_shape(report: Report, *, batch: int | None = None, spatial: Shape | None = None) -> Shape:
    """(batch, C, H, W) for the report's input; `spatial` replaces everything after the first non-batch dim."""
    shape = report.input if spatial is None else (report.input[0], *spatial)
    return (report.batch if batch is None else batch, *shape)


def record_shapes(model, shape: Shape, names) -> tuple[dict[str, LayerShapes], list[str]]:
    """Run model on a meta tensor of `shape`; each named layer's shapes and the order the layers ran in."""
    seen: dict[str, LayerShapes] = {}
    order: list[str] = []

    def hook(name):
        def record(module, inputs, output):
            seen[name] = LayerShapes(tuple(tuple(t.shape) for t in inputs), tuple(output.shape))
            order.append(name)

        return record

    handles = [model.get_submodule(name).register_forward_hook(hook(name)) for name in names]
    try:
        with torch.no_grad():
            model(torch.empty(shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return seen, order


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
