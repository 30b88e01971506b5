"""The chains of ONNX nodes torch writes for one module, recognised so that they read as that module's one layer.

torch.onnx.export (TorchScript) writes, below opset 17, nn.LayerNorm over the last k dims as
    m = ReduceMean(x, axes=last k), d = Sub(x, m), v = ReduceMean(Pow(d, 2), axes=last k),
    y = Div(d, Sqrt(Add(v, eps))), then Mul(y, weight) and Add(., bias) where it is affine
(torch/onnx/symbolic_opset9.py, native_layer_norm), and at every opset below 20 nn.GELU() (erf form) as
    Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)
(symbolic_opset9.py, gelu). Each matcher starts at the chain's first node, checks that every intermediate tensor is
read by the chain alone, and returns the layer with the later nodes' indices as `absorbed`; None where the chain
differs in any way (then each node reads as itself).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from archviz.ops.interop import OnnxLayer, is_close, onnx_float
from archviz.onnx.model import DEFAULT_DOMAINS

if TYPE_CHECKING:
    from archviz.onnx.convert import NodeReader
    from archviz.onnx.model import ModelView


def layer_norm(r: NodeReader, op: str) -> OnnxLayer | None:
    """The decomposed layer norm starting at this ReduceMean, as one layer of `op` (the registry's layer norm)."""
    view, x = r.view, r.node.input[0]
    axes = _trailing_axes_of(r, r.node)
    if axes is None:
        return None
    sub = _next(view, r.output, "Sub")
    if sub is None or list(sub[1].input) != [x, r.output]:
        return None
    centred = sub[1].output[0]
    users = [view.graph.node[i] for i in view.consumers.get(centred, [])]
    if len(users) != 2 or centred in view.outputs or sorted(u.op_type for u in users) != ["Div", "Pow"]:
        return None
    chain = [sub]
    pow_index = view.consumers[centred][[u.op_type for u in users].index("Pow")]
    if _number(view, view.graph.node[pow_index], 1) != 2:
        return None
    chain.append((pow_index, view.graph.node[pow_index]))
    for op_type in ("ReduceMean", "Add", "Sqrt", "Div"):
        step = _next(view, chain[-1][1].output[0], op_type)
        if step is None:
            return None
        chain.append(step)
    (_, variance), (_, add_eps), (_, root), (_, div) = chain[2:]
    eps = _number(view, add_eps, 1)
    if _trailing_axes_of(r, variance) != axes or eps is None or list(div.input) != [centred, root.output[0]]:
        return None
    normalized = list(view.shape(x)[-len(axes):])
    args = {"normalized_shape": normalized, "eps": onnx_float(eps), "elementwise_affine": False, "bias": False}
    stored: tuple[str, ...] = ()
    scale = _affine(view, div.output[0], "Mul", normalized)
    if scale is not None:
        chain.append(scale[0])
        stored += (scale[1],)
        args["elementwise_affine"] = True
        shift = _affine(view, scale[0][1].output[0], "Add", normalized)
        if shift is not None:
            chain.append(shift[0])
            stored += (shift[1],)
            args["bias"] = True
    return OnnxLayer(op, args, (x,), chain[-1][1].output[0], tuple(i for i, _ in chain), stored=stored)


def gelu(r: NodeReader, op: str) -> OnnxLayer | None:
    """The erf form of GELU starting at this Div by sqrt(2), as one layer of `op` (the registry's GELU)."""
    view, x = r.view, r.node.input[0]
    if not r.computed(0) or not _is(_number(view, r.node, 1), math.sqrt(2)):  # torch writes 1.4142135
        return None
    chain = []
    for op_type in ("Erf", "Add", "Mul", "Mul"):
        step = _next(view, chain[-1][1].output[0] if chain else r.output, op_type)
        if step is None:
            return None
        chain.append(step)
    (_, _), (_, add), (_, times_x), (_, half) = chain
    if not _is(_number(view, add, 1 - list(add.input).index(chain[0][1].output[0])), 1.0):
        return None
    if sorted(times_x.input) != sorted([x, add.output[0]]):
        return None
    if not _is(_number(view, half, 1 - list(half.input).index(times_x.output[0])), 0.5):
        return None
    return OnnxLayer(op, {"approximate": "none"}, (x,), half.output[0], tuple(i for i, _ in chain))


def _next(view: ModelView, tensor: str, op_type: str):
    """(index, node) of the one node reading tensor, where it is of op_type; else None."""
    index = view.sole_consumer(tensor)
    if index is None:
        return None
    node = view.graph.node[index]
    return (index, node) if node.op_type == op_type and node.domain in DEFAULT_DOMAINS else None


def _number(view: ModelView, node, position: int) -> float | None:
    """The node's input `position` as a number, where it is a one-element constant."""
    if len(node.input) <= position or not node.input[position]:
        return None
    value = view.value(node.input[position])
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _is(value: float | None, target: float) -> bool:
    return value is not None and is_close(value, target)


def _trailing_axes_of(r: NodeReader, node) -> tuple[int, ...] | None:
    """The ReduceMean's axes as negative numbers, where they are the last k dims (not the batch); else None."""
    from archviz.onnx.model import attributes

    shape = r.view.shape(r.node.input[0])  # the file's own axes count the file's dims
    if shape is None:
        return None
    rank, attrs = len(shape), attributes(node)
    if r.opset < 18:
        axes = attrs.get("axes")
    else:
        value = r.view.value(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        axes = None if value is None else value.reshape(-1).tolist()
    if not axes or not attrs.get("keepdims", 1):
        return None
    axes = tuple(sorted(a % rank - rank for a in ([axes] if isinstance(axes, int) else axes)))
    if axes != tuple(range(-len(axes), 0)) or len(axes) >= rank:
        return None
    return axes


def _affine(view: ModelView, tensor: str, op_type: str, normalized: list[int]):
    """((index, node), stored name) of a Mul or Add of tensor by a stored weight of the normalised shape."""
    step = _next(view, tensor, op_type)
    if step is None or len(step[1].input) != 2:
        return None
    other = step[1].input[1] if step[1].input[0] == tensor else step[1].input[0]
    weight, shape = view.weight(other), view.shape(other)
    if other == tensor or weight is None or shape is None:
        return None
    return (step, weight) if list(shape) == normalized and list(view.stored[weight]) == normalized else None
