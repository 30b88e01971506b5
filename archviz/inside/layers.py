"""Which layers to look at: names checked against the graph, kernels found, and the layer a class-activation map uses.

The automatic CAM layer is the last layer with a spatial output (more than one position), stepping back over pooling,
dropout and reshapes to the layer that made the map: pooling only coarsens the same map, so Grad-CAM on the last
convolution's activation sees the same evidence at a finer grid (Selvaraju et al. 2017 use VGG16's last conv layer).
"""

from __future__ import annotations

from archviz.errors import UnknownNameError, closest
from archviz.graph.ir import Graph, Node
from archviz.ops import OpKind, get_op

RESAMPLING_KINDS = (OpKind.POOL, OpKind.REGULARIZATION, OpKind.RESHAPE)  # kinds that move or thin a map, unlearned
HANDS_ON = (OpKind.CONV, OpKind.NORM, OpKind.JOIN)  # what a block hands on: an activation after these is worth seeing


def find_layer(graph: Graph, name: str) -> Node:
    if name in graph.by_name:
        return graph.by_name[name]
    raise UnknownNameError(f"{graph.name} has no layer {name!r}{closest(name, graph.by_name)}; `archviz inspect "
                           f"{graph.name}` lists its layers")


def is_spatial(node: Node) -> bool:
    """An output (C, H, W) with more than one position."""
    shape = node.out_shape
    return len(shape) == 3 and shape[1] * shape[2] > 1


def kernel_layers(graph: Graph) -> list[Node]:
    """The convolutions, in graph order: the layers whose weights are images."""
    return [node for node in graph.nodes if get_op(node.op).draws_kernels]


def kernel_layer(graph: Graph, name: str | None) -> Node:
    """The named convolution, or the first one when name is None."""
    kernels = kernel_layers(graph)
    if not kernels:
        raise UnknownNameError(f"{graph.name} has no convolution, so no kernels to draw")
    if name is None:
        return kernels[0]
    node = find_layer(graph, name)
    if not get_op(node.op).draws_kernels:
        names = [k.name for k in kernels]
        raise UnknownNameError(f"{name} is a {node.op} layer, not a convolution; its kernels are not images. "
                               f"Convolutions: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''}",
                               layer=name)
    return node


def auto_cam_layer(graph: Graph) -> Node:
    """The last spatial layer, stepped back over pooling, dropout and reshapes (see the module's docstring)."""
    spatial = [node for node in graph.nodes if is_spatial(node)]
    if not spatial:
        raise UnknownNameError(f"{graph.name} has no layer with a spatial output (C x H x W, more than one "
                               "position), so no class-activation map")
    node = spatial[-1]
    while get_op(node.op).kind in RESAMPLING_KINDS and len(node.inputs) == 1 and node.inputs[0] in graph.by_name:
        before = graph.by_name[node.inputs[0]]
        if not is_spatial(before):
            break
        node = before
    return node


def default_activation_layers(graph: Graph, count: int = 3) -> list[Node]:
    """About `count` layers from early to late: the first convolution's activation, the CAM layer, and between them
    evenly spaced activations that follow convolutions."""
    last = auto_cam_layer(graph)
    order = {node.name: index for index, node in enumerate(graph.nodes)}
    seen = [node for node in graph.nodes if is_spatial(node) and _after_convolution(graph, node)
            and order[node.name] <= order[last.name]]
    if not seen:
        return [last]
    if len(seen) <= count:
        return seen if seen[-1] is last else [*seen[:count - 1], last]
    step = (len(seen) - 1) / (count - 1)
    picked = [seen[round(i * step)] for i in range(count - 1)] + [last]
    return [node for index, node in enumerate(picked) if node.name not in {p.name for p in picked[:index]}]


def _after_convolution(graph: Graph, node: Node) -> bool:
    """An activation whose input is a convolution or a batch norm of one (what a block hands on)."""
    if get_op(node.op).kind != OpKind.ACTIVATION or len(node.inputs) != 1:
        return False
    before = graph.by_name.get(node.inputs[0])
    return before is not None and get_op(before.op).kind in HANDS_ON
