"""The backbone a pretext task trains, and the blocks a probe reads: both cut from the graph, without torch.

The backbone is the model without its classifier: everything up to the first fully connected block after the last
spatial layer (its linear layer and the activation after it), unless that linear layer is the model's output, in
which case the backbone ends before it. So LeNet keeps fc1 (120 features; fc2 and fc3 classify), AlexNet and VGG keep
fc6 (4096), ResNet and GoogLeNet end at their pooled, flattened features (512, 1024): the layers self-supervised
papers evaluate (Noroozi and Favaro 2016 and Gidaris et al. 2018 probe AlexNet's conv and fc6 features).

Probe blocks are the outputs that end a stage: layers that every path goes through (no residual connection jumps
over them) where the next such layer at least halves the map's height, or has no map; and the backbone's output.
A map whose pooling is itself a stage end gives way to it. LeNet: tanh1 (6x28x28), pool2 (16x5x5 = 400), tanh3
(120); ResNet: the stem's relu, the ends of layer1 to layer4, and the pooled features.
"""

from __future__ import annotations

from dataclasses import replace

from archviz.errors import ArchvizError, UnknownNameError, closest
from archviz.graph.ir import INPUT, Graph, Node
from archviz.ops import OpKind, get_op


def backbone_end(graph: Graph) -> Node:
    """The last layer of the backbone (see the module docstring)."""
    order = list(graph.nodes)
    spatial = [i for i, node in enumerate(order) if len(node.out_shape) == 3]
    if not spatial:
        raise ArchvizError(f"{graph.name} has no layer with a spatial output: a pretext task needs a convolutional "
                           "backbone")
    after = order[spatial[-1] + 1:]
    linears = [node for node in after if get_op(node.op).kind == OpKind.LINEAR]
    if not linears or linears[0].name == graph.output:
        before = order.index(linears[0]) - 1 if linears else len(order) - 1
        return _skip_back_over(order, before, (OpKind.REGULARIZATION,))
    first = order.index(linears[0])
    end = first
    while end + 1 < len(order) and get_op(order[end + 1].op).pointwise:
        end += 1
    return order[end]


def _skip_back_over(order: list[Node], index: int, kinds: tuple[str, ...]) -> Node:
    while index > 0 and get_op(order[index].op).kind in kinds:
        index -= 1
    return order[index]


def cut(graph: Graph, end: str) -> Graph:
    """The part of the graph that computes `end`: its ancestors, in order, with `end` as the output."""
    if end not in graph.by_name:
        raise UnknownNameError(f"{graph.name} has no layer {end!r}{closest(end, graph.by_name)}")
    needed, stack = set(), [end]
    while stack:
        name = stack.pop()
        if name == INPUT or name in needed:
            continue
        needed.add(name)
        stack.extend(graph.by_name[name].inputs)
        shares = graph.by_name[name].shares
        if shares:
            stack.append(shares)
    nodes = tuple(node for node in graph.nodes if node.name in needed)
    kept_scopes = tuple(scope for scope in graph.scopes
                        if any(node.name == scope.path or node.name.startswith(scope.path + ".") for node in nodes))
    return replace(graph, nodes=nodes, scopes=kept_scopes, output=end)


def backbone(graph: Graph) -> Graph:
    """The graph without its classifier."""
    return cut(graph, backbone_end(graph).name)


def probe_blocks(graph: Graph) -> list[str]:
    """The layers whose outputs a probe reads: the stage ends (see the module docstring) and the graph's output."""
    cuts = [graph.by_name[name] for name in _single_paths(graph)]
    ends = {node.name: after for node, after in zip(cuts, cuts[1:]) if _ends_stage(node, after)}
    # a map followed by a pooling that is itself a stage end adds nothing the pooled map does not show
    blocks = [name for name, after in ends.items() if not (after.name in ends and get_op(after.op).kind == "pool")]
    return blocks + [graph.output] if graph.output not in blocks else blocks


def _single_paths(graph: Graph) -> list[str]:
    """The layers every path from the input to the output goes through, in order: no edge jumps over them (a
    residual connection jumps over the layers inside its block)."""
    position = {node.name: index for index, node in enumerate(graph.nodes)}
    reach = max((position[user] for user in graph.consumers[INPUT]), default=-1)  # furthest layer an edge reaches
    found = []
    for index, node in enumerate(graph.nodes):
        if reach <= index:
            found.append(node.name)
        reach = max([reach, *(position[user] for user in graph.consumers[node.name])])
    return found


def _ends_stage(node: Node, after: Node) -> bool:
    """A map whose next single-path layer has no map, or at most half its height."""
    return _is_map(node.out_shape) and (not _is_map(after.out_shape) or 2 * after.out_shape[1] <= node.out_shape[1])


def _is_map(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[1] * shape[2] > 1
