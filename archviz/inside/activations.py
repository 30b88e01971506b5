"""Feature maps: what chosen layers make of one input, each layer as a grid of its most active channels.

A layer's channels share one scale, so that a weak channel looks weak: 0..max of the shown maps for an output that is
never negative (after ReLU), otherwise -max|a|..+max|a| on the diverging scale. The caption of each tile is its
channel's index; the title gives the layer's output shape and its receptive field, the input window one position
of the map sees (archviz's formula, archviz/analysis/receptive.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archviz.errors import ArchvizError
from archviz.inside.images import Input
from archviz.inside.layers import find_layer
from archviz.inside.trained import Trained

MAX_CHANNELS = 32  # maps per layer; the most active ones by mean |activation|
VECTOR_ROW = 32  # values per row when a layer's output is a vector


@dataclass(frozen=True)
class LayerMaps:
    layer: str
    maps: Any  # numpy (C, H, W): the layer's whole output for the input
    receptive_field: tuple[int, int]


def capture_maps(trained: Trained, image: Input, layers: list[str]) -> tuple[list[LayerMaps], Any]:
    """Each named layer's output for the image, and the model's output (logits)."""
    from archviz.analysis.report import analyze
    from archviz.inside.capture import capture_outputs

    if not layers:
        raise ArchvizError("no layer named to show; --layers takes comma-separated names, e.g. conv1,relu1")
    nodes = [find_layer(trained.graph, name) for name in layers]
    outputs, logits = capture_outputs(trained.net, [node.name for node in nodes], image.tensor)
    fields = {layer.name: layer.receptive_field for layer in analyze(trained.graph).layers}
    return [LayerMaps(node.name, outputs[node.name][0].float().numpy(), fields[node.name]) for node in nodes], logits


def activation_grid(maps: LayerMaps, *, limit: int = MAX_CHANNELS):
    """The Grid (render/pictures.py) of one layer's most active channels."""
    import numpy as np

    from archviz.render.pictures import Grid

    if maps.maps.ndim != 3:
        return _vector_grid(maps)
    values = maps.maps
    order = np.argsort(-np.abs(values).mean(axis=(1, 2)), kind="stable")[:limit] if len(values) > limit else \
        np.arange(len(values))
    shown = values[order]
    negative = bool((shown < 0).any())
    peak = float(np.abs(shown).max()) or 1.0
    channels, height, width = values.shape
    seen = "x".join(map(str, maps.receptive_field))
    title = f"{maps.layer}: {channels}x{height}x{width}, each position sees {seen} pixels of the input"
    chosen = f"the {len(order)} most active of {channels} channels (mean |activation|)" if channels > limit else \
        f"all {channels} channels"
    return Grid(tiles=tuple(shown / peak), title=title, captions=tuple(str(int(c)) for c in order),
                note=f"{chosen}, one scale for the layer", **_scale(negative, peak))


def _vector_grid(maps: LayerMaps):
    """A layer without maps (a linear layer's output): its values in rows of VECTOR_ROW, the rest padded grey."""
    import numpy as np

    from archviz.render.pictures import Grid

    values = maps.maps.reshape(-1)
    peak = float(np.abs(values).max()) or 1.0
    rows = -(-len(values) // VECTOR_ROW)
    padded = np.full(rows * VECTOR_ROW, np.nan)
    padded[:len(values)] = values / peak
    negative = bool((values < 0).any())
    return Grid(tiles=(padded.reshape(rows, VECTOR_ROW),), title=f"{maps.layer}: {len(values)} values (no spatial "
                f"maps)", note=f"values in rows of {VECTOR_ROW}, in order; grey: padding", **_scale(negative, peak))


def _scale(negative: bool, peak: float) -> dict:
    """Values divided by peak: diverging -peak..+peak when any is negative, else sequential 0..peak."""
    from archviz.render.pictures import Scale

    if negative:
        return {"scale": Scale.DIVERGING, "scale_labels": (f"-{peak:.3g}", "0", f"+{peak:.3g}")}
    return {"scale": Scale.SEQUENTIAL, "scale_labels": ("0", "", f"{peak:.3g}")}
