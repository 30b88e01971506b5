"""A convolution's kernels as a picture grid, each filter scaled to its own largest |weight| so that its pattern shows
whatever its size (grey or white = 0).

- 3 input channels (a first layer on colour images): one colour tile per filter, 0.5 + 0.5 * w / max|w| per channel.
- 1 input channel: one tile per filter on the diverging scale (blue negative, red positive).
- more: by default each filter averaged over its input channels (said in the title), or with per_channel one tile
  per filter and input channel, a filter per row.
"""

from __future__ import annotations

from archviz.graph.ir import Node
from archviz.inside.layers import kernel_layer
from archviz.inside.trained import Trained

MAX_FILTERS = 64  # tiles beyond this make a grid too fine to read
MAX_CHANNELS = 16  # input channels per row with per_channel


def kernel_weights(trained: Trained, layer: str | None = None):
    """(the convolution's node, its weight as a numpy array (out, in/groups, kh, kw))."""
    node = kernel_layer(trained.graph, layer)
    return node, trained.net.get_submodule(node.name).weight.detach().float().numpy()


def filter_grid(trained: Trained, layer: str | None = None, *, per_channel: bool = False,
                limit: int = MAX_FILTERS):
    """The Grid (render/pictures.py) of the named convolution's kernels, or the first convolution's."""
    from archviz.render.pictures import Grid, Scale

    node, weight = kernel_weights(trained, layer)
    shown = weight[:limit]
    colour = weight.shape[1] == 3 and not per_channel
    if colour:
        tiles = [0.5 + 0.5 * kernel.transpose(1, 2, 0) / _peak(kernel) for kernel in shown]
        captions = [str(i) for i in range(len(shown))]
    elif per_channel:
        tiles, captions = _per_channel_tiles(shown)
    else:
        tiles = [_averaged(kernel) for kernel in shown]
        captions = [str(i) for i in range(len(shown))]
    return Grid(
        tiles=tuple(tiles), scale=Scale.RGB if colour else Scale.DIVERGING, title=_title(node, weight),
        captions=tuple(captions), columns=min(weight.shape[1], MAX_CHANNELS) if per_channel else None,
        scale_labels=() if colour else ("-max", "0", "+max"),
        note=_note(weight, limit, colour, per_channel, trained.weights))


def smoothness(weight) -> float:
    """The mean correlation of horizontally and vertically neighbouring weights over all kernels: near 0 for random
    initialisation, higher for the smooth edge and blob detectors first layers learn."""
    import numpy as np

    kernels = weight.reshape(-1, *weight.shape[-2:])
    pairs = [(kernels[:, :, :-1], kernels[:, :, 1:]), (kernels[:, :-1, :], kernels[:, 1:, :])]
    left = np.concatenate([a.reshape(len(kernels), -1) for a, _ in pairs], axis=1)
    right = np.concatenate([b.reshape(len(kernels), -1) for _, b in pairs], axis=1)
    left = left - left.mean(axis=1, keepdims=True)
    right = right - right.mean(axis=1, keepdims=True)
    norms = np.sqrt((left ** 2).sum(axis=1) * (right ** 2).sum(axis=1))
    return float(np.mean((left * right).sum(axis=1) / np.where(norms > 0, norms, 1)))


def _per_channel_tiles(shown):
    tiles, captions = [], []
    for f, kernel in enumerate(shown):
        for c, channel in enumerate(kernel[:MAX_CHANNELS]):
            tiles.append(channel / _peak(kernel))
            captions.append(f"{f}/{c}")
    return tiles, captions


def _averaged(kernel):
    mean = kernel.mean(axis=0)
    return mean / _peak(mean)


def _peak(values) -> float:
    peak = float(abs(values).max())
    return peak if peak > 0 else 1.0


def _title(node: Node, weight) -> str:
    out, inputs, kh, kw = weight.shape
    return f"{node.name}: {out} filters {kh}x{kw} over {inputs} input channel{'s' if inputs != 1 else ''}"


def _note(weight, limit: int, colour: bool, per_channel: bool, weights: str) -> str:
    out, inputs = weight.shape[:2]
    parts = [f"weights: {weights}"] + ([f"first {limit} of {out} filters"] if out > limit else [])
    if colour:
        parts.append("each filter scaled to its own largest |weight|, its 3 input channels as red, green, blue; "
                     "grey = 0")
    elif per_channel:
        parts.append("one row per filter, one tile per input channel (filter/channel)"
                     + (f", first {MAX_CHANNELS} of {inputs} channels" if inputs > MAX_CHANNELS else ""))
        parts.append("each filter scaled to its own largest |weight|")
    else:
        parts.append("each filter " + ("averaged over its input channels, then " if inputs > 1 else "")
                     + "scaled to its own largest |weight|")
    return "; ".join(parts)
