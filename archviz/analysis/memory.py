"""Peak forward activation memory: the most bytes held by tensors alive at once during one forward pass.

Walking the nodes in order, a tensor is alive from the node that makes it until the last node that reads it.
The input counts for the whole pass (the caller holds it); the final output stays alive. While a layer runs, it
also holds what its op's scratch() says (max pool's indices, checked against torch by the registry's oracle). An
in-place op, a view and a regularisation write nothing new (see _writes_in_place). This is what inference needs;
what training keeps is analysis/training.py's.
"""

from __future__ import annotations

from archviz.graph.ir import INPUT, Graph
from archviz.ops import OpKind, get_op
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
    for name, step in held_by_callers(graph).items():
        last_use[buffer_of[name]] = max(last_use[buffer_of[name]], step)

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


def held_by_callers(graph: Graph) -> dict[str, int]:
    """In a model traced from PyTorch code, the tensors its Python code holds past their last use, and the step
    through which each stays alive: a module's arguments until its last layer runs, since the caller's frame holds
    them until the call returns (torchvision's InvertedResidual runs self.conv(x) with x alive throughout), and a
    tensor bound to a local name until its function returns or rebinds the name (Origin.held_locals). archviz's own
    torch build of a spec frees each tensor at its last use, so a spec's graph has none."""
    if graph.origin is None or graph.origin.method not in ("fx", "eager"):
        return {}
    step_of = {node.name: step for step, node in enumerate(graph.nodes)}
    paths = {scope.path for scope in graph.scopes}

    def enclosing(name: str) -> list[str]:
        parts = name.split(".")
        return [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in paths]

    last_step: dict[str, int] = {}
    for step, node in enumerate(graph.nodes):
        for path in enclosing(node.name):
            last_step[path] = step
    held: dict[str, int] = {}
    for node in graph.nodes:
        inside = enclosing(node.name)
        for source in node.inputs:
            outside = set(inside) - set(enclosing(source)) if source != INPUT else set(inside)
            for path in outside:
                held[source] = max(held.get(source, -1), last_step[path])
    for name, until in graph.origin.held_locals:
        if name in step_of and until in step_of:  # a graph edited after its trace may have lost either
            held[name] = max(held.get(name, -1), step_of[until])
    return held


def _scratch_bytes(node, batch: int, dtype_bytes: int) -> int:
    kept = get_op(node.op).scratch(node.attrs, list(node.in_shapes), node.out_shape)
    return sum(k.bytes(batch=batch, activation_itemsize=dtype_bytes) for k in kept)


def _writes_in_place(node) -> bool:
    """Whether the layer's output is its input's storage in an inference pass: an in-place op, a view (flatten,
    identity), or a regularisation, which hands its input back outside training (dropout, stochastic depth)."""
    op = get_op(node.op)
    if len(node.inputs) != 1:
        return False
    in_place = op.inplace_capable and bool(node.attrs.get("inplace"))
    return in_place or op.output_is_input(node.attrs) or op.kind == OpKind.REGULARIZATION
