"""What an ONNX file holds beside what its layers count, said in the graph's description: stored weights read more
than once or by no layer, and products computed from stored tensors alone. A file has no original module to compare
with, so these lines are how a user reconciles the file's initializers with archviz's params, buffers and MACs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from archviz.ops import has_formula
from archviz.ops.base import numel
from archviz.ops.interop import OnnxLayer
from archviz.onnx.model import DEFAULT_DOMAINS, ModelView

if TYPE_CHECKING:
    import onnx


def file_notes(view: ModelView, layers: list[tuple[onnx.NodeProto, OnnxLayer]]) -> list[str]:
    """The notes for the file whose layers (each with the node it starts at) are given; none where nothing differs."""
    return [note for note in (_stored_note(view, layers), _static_products_note(view)) if note]


def _stored_note(view: ModelView, layers: list[tuple[onnx.NodeProto, OnnxLayer]]) -> str:
    """What the file stores beside what the layers count, where they differ: the params and buffers are counted by
    each layer's formula, so a tensor read several times (torch's exporter stores equal tensors once, as a fresh
    model's zero biases and unit scales are) counts at each read, and a tensor no layer reads as its own (a weight
    computed from stored copies, as torch's constant folding writes weight standardisation) counts for none. An
    opaque layer counts only what no layer counted before it; a tied conv or linear weight counts once (shares)."""
    floats = [name for name in view.stored if view.weight(name) == name]
    reads: dict[str, int] = {}
    tied: set[str] = set()
    for first, layer in layers:
        if not has_formula(layer.op):
            reads.update({name: reads.get(name, 1) for name in layer.stored})
            continue
        nodes = [first, *(view.graph.node[i] for i in layer.absorbed)]
        for name in (view.weight(t) for node in nodes for t in node.input if t):
            if name is None or name == layer.weight and name in tied:
                continue
            tied.update({name} & {layer.weight})
            reads[name] = reads.get(name, 0) + 1
    shared = [name for name in floats if reads.get(name, 0) > 1]
    unread = [name for name in floats if name not in reads]
    if not shared and not unread:
        return ""
    said = [f"the file stores {sum(numel(view.stored[n]) for n in floats):,} weight elements"]
    if shared:
        again = sum((reads[n] - 1) * numel(view.stored[n]) for n in shared)
        said.append(f"{sum(numel(view.stored[n]) for n in shared):,} of them in {len(shared)} tensors read more than "
                    f"once, each read counting: {again:,} counted again (a weight the model reads twice, or equal "
                    "weights torch stored once)")
    if unread:
        said.append(f"{sum(numel(view.stored[n]) for n in unread):,} in {len(unread)} tensors no layer reads as a "
                    f"weight of its own ({_few(unread)}: read only where nodes compute from stored tensors alone, "
                    "as a weight's copies or a position encoding, or unused)")
    return ", ".join(said)


PRODUCT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum")  # the ONNX ops that multiply-accumulate


def _static_products_note(view: ModelView) -> str:
    """The multiply-accumulating nodes that compute from stored tensors alone (EdgeNeXt's position encoding, made
    from the input's size only): no layers, so their MACs are in no total; said, not left out silently."""
    static = [node for node in view.graph.node if node.op_type in PRODUCT_OPS and node.domain in DEFAULT_DOMAINS
              and node.output and node.output[0] in view.static]
    if not static:
        return ""
    kinds = ", ".join(f"{sum(n.op_type == t for n in static)} {t}" for t in dict.fromkeys(n.op_type for n in static))
    which = "1 node computes" if len(static) == 1 else f"{len(static)} nodes compute"
    return (f"{which} products from stored tensors alone, the same at every pass ({kinds}: "
            f"{_few([n.name or n.output[0] for n in static])}): not layers, their MACs not counted")


def _few(names: list[str], shown: int = 2) -> str:
    return ", ".join(repr(n) for n in names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
