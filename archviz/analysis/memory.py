"""Peak forward activation memory: the most bytes held by tensors alive at once during one forward pass.

Walking the nodes in order, a tensor is alive from the node that makes it until the last node that reads it.
The input counts for the whole pass (the caller holds it); the final output stays alive. While a layer runs, it
also holds what its op's scratch() says (max pool's indices, checked against torch by the registry's oracle). An in-place op (inplace: true) writes into its input and
allocates nothing new. This is what inference needs; training keeps every output for the backward pass,
which is the sum of all outputs (Report.totals.activation_bytes).
"""

from __future__ import annotations

from archviz.graph.ir import INPUT, Graph
from archviz.ops import get_op
from archviz.ops.base import numel


def peak_activation_bytes(graph: Graph, *, batch: int, dtype_bytes: int) -> tuple[int, str]:
    """(bytes alive at the peak, the node running at that moment): the tensors alive, and what the running layer
    holds beyond them while it runs (Op.scratch: a max pool's int64 indices, a normalisation's statistics)."""
    buffer_of = {INPUT: INPUT}
    size = {INPUT: numel(graph.input_shape) * batch * dtype_bytes}
    last_use: dict[str, int] = {INPUT: -1}
    for step, node in enumerate(graph.nodes):
        if _writes_in_place(node):
            buffer_of[node.name] = buffer_of[node.inputs[0]]
        else:
            buffer_of[node.name] = node.name
            size[node.name] = numel(node.out_shape) * batch * dtype_bytes
        for source in node.inputs:
            last_use[buffer_of[source]] = step
        last_use.setdefault(buffer_of[node.name], step)
    last_use[buffer_of[graph.output]] = len(graph.nodes)
    last_use[INPUT] = len(graph.nodes)

    alive = size[INPUT]
    peak, peak_at = alive, INPUT
    freed_after: dict[int, list[str]] = {}
    for buffer, step in last_use.items():
        freed_after.setdefault(step, []).append(buffer)
    for step, node in enumerate(graph.nodes):
        if buffer_of[node.name] == node.name:
            alive += size[node.name]
        held = _scratch_bytes(node, batch, dtype_bytes)
        if alive + held > peak:
            peak, peak_at = alive + held, node.name
        for buffer in freed_after.get(step, ()):
            alive -= size[buffer]
    return peak, peak_at


def _scratch_bytes(node, batch: int, dtype_bytes: int) -> int:
    kept = get_op(node.op).scratch(node.attrs, list(node.in_shapes), node.out_shape)
    return sum(k.elements * (batch if k.per_sample else 1) * (k.itemsize or dtype_bytes) for k in kept)


def _writes_in_place(node) -> bool:
    return get_op(node.op).inplace_capable and bool(node.attrs.get("inplace")) and len(node.inputs) == 1
