"""Ops that move data without computing on it (flatten, dropout, identity) and the joins (add, concat, stack)."""

from __future__ import annotations

from archviz.errors import ShapeError
from archviz.ops.base import (
    NOTHING_SAVED, Arg, ArgKind, Example, Free, Kept, NoMacs, NoWindow, Op, OpKind, SameShape, Saved, SavesNothing,
    Step, fmt_int, fmt_shape, numel,
)
from archviz.ops.base import lazy_torch_classes
from archviz.ops.interop import (
    Mapped, NotRepresentable, Signature, TorchCalls, batch_dim, is_ref, join, module_args, onnx_as, onnx_float,
    onnx_join, onnx_reads_as, onnx_reshape,
)
from archviz.ops.elementwise import reads_number, with_number
from archviz.ops.registry import register


def _flatten(a, out):
    x = a["input"]
    if not is_ref(x):
        return None
    rank = len(x.shape) + 1
    start, end = batch_dim(a["start_dim"], rank), batch_dim(a["end_dim"], rank)
    if not start or end is None:
        return None
    return Mapped("flatten", {"start_dim": start, "end_dim": end}, (x,))


_FLATTEN = Signature(("input", "start_dim", "end_dim"), _flatten, {"start_dim": 0, "end_dim": -1})
_DROPOUT_MODULES = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout")  # identities at inference


def _dropout(a, out):  # F.dropout's `training` flag does not change the figures
    return Mapped("dropout", {"p": a["p"], "inplace": a["inplace"]}, (a["input"],)) if is_ref(a["input"]) else None


def _identity(a, out):
    return Mapped("identity", {}, (a["input"],)) if is_ref(a["input"]) else None


_KEEP = Signature(("input", "memory_format"), _identity, {"memory_format": None})


def _float32(dtype) -> bool:
    import torch  # only while tracing, where torch is loaded

    return dtype is torch.float32


def _to(a, out):
    """x.to(torch.float32) (or dtype=): the dtype archviz traces in, so a copy-free no-op; any other dtype, a device
    or a tensor stays opaque (a cast's bytes and cost depend on the dtypes, which archviz does not follow)."""
    return _identity(a, out) if _float32(a["dtype"]) and not a["copy"] else None


_ADD = Signature(("input", "other", "alpha"), with_number(join("add", "add_param"), "add"), {"alpha": 1})


def _cat(a, out):
    tensors = a["tensors"]
    if not isinstance(tensors, (list, tuple)) or not tensors or not all(is_ref(t) for t in tensors):
        return None
    if len(tensors) == 1:  # DenseNet's first layer of a block concatenates one tensor: itself
        return Mapped("identity", {}, tuple(tensors))
    dim = batch_dim(a["dim"], len(tensors[0].shape) + 1)
    return None if not dim else Mapped("concat", {"dim": dim}, tuple(tensors))


_CAT = Signature(("tensors", "dim"), _cat, {"dim": 0})


def _read_flatten(r):
    rank = len(r.shape(r.activation()))
    axis = r.attrs.get("axis", 1)
    if axis % rank != 1:
        raise NotRepresentable(f"axis {axis} folds the batch into the features")
    return r.layer("flatten", {"start_dim": 1, "end_dim": -1})


def _read_dropout(r):
    ratio = r.attrs.get("ratio", 0.5) if r.opset < 12 else r.constant(1, 0.5)
    return r.layer("dropout", {"p": onnx_float(ratio)})


@register
class Flatten(SavesNothing, NoWindow, Free, Op):
    """Flatten dimensions start_dim..end_dim into one (torch counting: the batch is dim 0). No cost."""

    name = "flatten"
    returns_view = True
    takes_folded_batch = True
    examples = (Example({}, ((3, 4, 5),)), Example({"start_dim": 2}, ((3, 4, 5),)))
    kind = OpKind.RESHAPE
    torch_class = "nn.Flatten"
    torch_calls = TorchCalls(modules={"torch.nn.Flatten": module_args("flatten", "start_dim", "end_dim")},
                             functions={"torch.flatten": _FLATTEN, "Tensor.flatten": _FLATTEN})

    def merges_positions(self, attrs, in_shapes):
        return len(in_shapes[0]) == 3

    def write_onnx(self, e, node, x):
        first, stop = self.span(node.attrs, node.in_shapes[0])
        if first == 0 and stop == len(node.in_shapes[0]):
            e.add("Flatten", x[:1], node.name, node.name, axis=1)
        else:
            onnx_reshape(e, node, x, node.out_shape)

    onnx_reads = {"Flatten": _read_flatten}
    keras_class = "Flatten"
    args = (Arg("start_dim", ArgKind.INT, 1), Arg("end_dim", ArgKind.SIGNED_INT, -1))

    def span(self, attrs, in_shape) -> tuple[int, int]:
        rank = len(in_shape) + 1
        start, end = attrs["start_dim"], attrs["end_dim"] % rank if attrs["end_dim"] < 0 else attrs["end_dim"]
        if not 1 <= start <= end < rank:
            raise ShapeError(f"cannot flatten dims {start}..{attrs['end_dim']} of a {rank}-d tensor (batch is dim 0)")
        return start - 1, end  # as a slice of the batch-free shape

    def infer_shape(self, attrs, in_shapes):
        first, stop = self.span(attrs, in_shapes[0])
        shape = in_shapes[0]
        return (*shape[:first], numel(shape[first:stop]), *shape[stop:])

    def explain(self, attrs, in_shapes, out_shape):
        first, stop = self.span(attrs, in_shapes[0])
        dims = "*".join(str(d) for d in in_shapes[0][first:stop])
        return [Step("output shape", f"{dims} = {fmt_int(numel(in_shapes[0][first:stop]))}", fmt_shape(out_shape))]

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.Flatten(attrs["start_dim"], attrs["end_dim"])


@register
class Dropout(SameShape, Free, Op):
    """Dropout: zeroes elements at random while training, the identity at inference. No cost counted."""

    def saved(self, attrs, in_shapes, out_shape):
        """Its mask, in the activations' dtype (torch on the CPU multiplies by a float mask; on CUDA it keeps one
        byte an element); with p = 0 nothing: torch hands the input back."""
        return Saved(made=(Kept(numel(in_shapes[0])),)) if attrs["p"] else NOTHING_SAVED

    def output_is_input(self, attrs):
        return attrs["p"] == 0

    name = "dropout"
    takes_folded_batch = True
    examples = (Example({}, ((3, 4, 5),)), Example({"p": 0.2}, ((10,),)), Example({"p": 0.0}, ((3, 4, 5),)))
    kind = OpKind.REGULARIZATION
    torch_class = "nn.Dropout"
    torch_calls = TorchCalls(
        modules={f"torch.nn.{name}": module_args("dropout", "p", "inplace") for name in _DROPOUT_MODULES},
        functions={"torch.nn.functional.dropout": Signature(("input", "p", "training", "inplace"), _dropout,
                                                            {"p": 0.5, "training": True, "inplace": False})})

    def write_onnx(self, e, node, x):
        ratio = e.constant(f"{node.name}/ratio", node.attrs["p"])
        e.add("Dropout", [x[0], ratio], node.name, node.name)

    onnx_reads = {"Dropout": _read_dropout}
    keras_class = "Dropout"
    args = (Arg("p", ArgKind.FLOAT, 0.5, aliases=("rate",)), Arg("inplace", ArgKind.BOOL, False))
    inplace_capable = True

    def summary(self, attrs):
        return f"p={attrs['p']}"

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.Dropout(attrs["p"], inplace=attrs["inplace"])


@register
class Identity(SavesNothing, SameShape, Free, Op):
    """Passes its input through unchanged. No cost.

    Traced from nn.Identity, contiguous/clone/detach, and the casts that are no-ops in the float32 model archviz
    traces: x.float() and x.to(torch.float32) (torch returns the tensor itself when the dtype is already the target,
    Tensor.to docs). Casts to other dtypes, to a device, and x.type_as(y) (y's dtype is not followed; a model tensor y
    would be counted by no formula) stay opaque.
    """

    name = "identity"
    returns_view = True
    takes_folded_batch = True
    examples = (Example({}, ((3, 4, 5),)),)
    kind = OpKind.RESHAPE
    torch_class = "nn.Identity"
    torch_calls = TorchCalls(modules={"torch.nn.Identity": module_args("identity")},
                             functions={"Tensor.contiguous": _KEEP, "Tensor.clone": _KEEP,
                                        "Tensor.detach": Signature(("input",), _identity),
                                        "Tensor.float": _KEEP,
                                        "Tensor.to": Signature(("input", "dtype", "non_blocking", "copy"), _to,
                                                               {"non_blocking": False, "copy": False})})
    write_onnx = onnx_as("Identity")
    onnx_reads = {"Identity": onnx_reads_as("identity")}
    keras_class = "Identity"

    def build_torch(self, attrs, in_shapes):
        from torch import nn

        return nn.Identity()


@register
class Add(SavesNothing, NoWindow, NoMacs, Op):
    """Element-wise sum of two or more tensors of one rank (the residual join), broadcast as torch does (torch docs,
    "Broadcasting semantics": each dim equal, or 1 on all but one side), as mul is.

    Other ops: (inputs - 1) adds per output element.
    """

    def scratch(self, attrs, in_shapes, out_shape):
        """Three or more inputs add in turn: the running sum before the last add is held while that add runs."""
        return (Kept(numel(self.infer_shape(attrs, in_shapes[:-1]))),) if len(in_shapes) > 2 else ()

    name = "add"
    takes_folded_batch = True
    examples = (Example({}, ((3, 4, 5), (3, 4, 5))), Example({}, ((3, 4, 5), (3, 4, 5), (3, 4, 5))),
                Example({}, ((3, 4, 5), (3, 1, 1))), Example({}, ((1, 4, 5), (3, 4, 1), (3, 1, 5))))
    kind = OpKind.JOIN
    keras_class = "Add"
    torch_class = "archviz Add"
    torch_calls = TorchCalls(functions={
        name: _ADD for name in ("operator.add", "operator.iadd", "torch.add", "Tensor.add", "Tensor.add_",
                                "Tensor.__add__", "Tensor.__iadd__", "Tensor.__radd__")})

    def write_onnx(self, e, node, x):
        e.add("Add" if len(x) == 2 else "Sum", x, node.name, node.name)

    onnx_reads = {"Add": reads_number(onnx_join("add", "add_param"), "add"), "Sum": onnx_join("add")}
    min_inputs, max_inputs = 2, 64

    def infer_shape(self, attrs, in_shapes):
        first, out = in_shapes[0], list(in_shapes[0])
        for other in in_shapes[1:]:
            bad = len(other) != len(first) or any(a != b and 1 not in (a, b) for a, b in zip(out, other))
            if bad:
                raise ShapeError(f"shapes {fmt_shape(first)} and {fmt_shape(other)} differ")  # and do not broadcast
            out = [max(a, b) for a, b in zip(out, other)]
        return tuple(out)

    def other_ops(self, attrs, in_shapes, out_shape):
        return (len(in_shapes) - 1) * numel(out_shape)

    def explain(self, attrs, in_shapes, out_shape):
        shapes = " + ".join(fmt_shape(s) for s in in_shapes)
        how = "element-wise" if len(set(in_shapes)) == 1 else "element-wise, broadcast"
        return [Step("output shape", f"{shapes} ({how})", fmt_shape(out_shape))]

    def explain_other_ops(self, attrs, in_shapes, out_shape):
        value = self.other_ops(attrs, in_shapes, out_shape)
        return Step("other ops", f"({len(in_shapes)} inputs - 1) adds x {fmt_shape(out_shape)}", fmt_int(value))

    def build_torch(self, attrs, in_shapes):
        from archviz.torch_build import AddJoin

        return AddJoin()


@register
class Concat(SavesNothing, Free, Op):
    """Concatenation along a dimension (dim=1, channels, by default; torch counting with the batch as 0). No cost."""

    name = "concat"
    takes_folded_batch = True
    examples = (Example({}, ((3, 4, 5), (2, 4, 5))), Example({"dim": -1}, ((3, 4, 5), (3, 4, 2))))
    kind = OpKind.JOIN
    aliases = ("cat", "concatenate")
    keras_class = "Concatenate"
    torch_class = "archviz Concat"
    torch_calls = TorchCalls(functions={"torch.cat": _CAT, "torch.concat": _CAT, "torch.concatenate": _CAT})
    write_onnx = onnx_as("Concat", lambda a: {"axis": a["dim"]})
    onnx_reads = {"Concat": onnx_join("concat", args=lambda r: {"dim": r.attrs["axis"]})}
    min_inputs, max_inputs = 2, 64
    args = (Arg("dim", ArgKind.SIGNED_INT, 1),)

    def window(self, attrs, in_shapes):
        """None: along the channels each position comes from the same position of one input; along a height or
        width the inputs sit side by side, each position from one position of one input (a field's size is kept)."""
        return None

    def axis(self, attrs, in_shape) -> int:
        rank = len(in_shape) + 1
        dim = attrs["dim"] % rank if attrs["dim"] < 0 else attrs["dim"]
        if not 1 <= dim < rank:
            raise ShapeError(f"cannot concatenate along dim {attrs['dim']} of a {rank}-d tensor (batch is dim 0)")
        return dim - 1

    def infer_shape(self, attrs, in_shapes):
        axis = self.axis(attrs, in_shapes[0])
        first = in_shapes[0]
        for other in in_shapes[1:]:
            rest = lambda s: s[:axis] + s[axis + 1:]  # noqa: E731
            if len(other) != len(first) or rest(other) != rest(first):
                raise ShapeError(
                    f"shapes {fmt_shape(first)} and {fmt_shape(other)} differ outside the concatenated dim {attrs['dim']}"
                )
        return (*first[:axis], sum(s[axis] for s in in_shapes), *first[axis + 1:])

    def explain(self, attrs, in_shapes, out_shape):
        axis = self.axis(attrs, in_shapes[0])
        parts = " + ".join(str(s[axis]) for s in in_shapes)
        return [Step("output shape", f"{parts} = {out_shape[axis]} along dim {attrs['dim']}", fmt_shape(out_shape))]

    def build_torch(self, attrs, in_shapes):
        from archviz.torch_build import ConcatJoin

        return ConcatJoin(attrs["dim"])


def _stack(a, out):
    """torch.stack(tensors, dim): traced tensors of one shape along a new non-batch dim (dim 0 would come before the
    batch)."""
    tensors = a["tensors"]
    if not isinstance(tensors, (list, tuple)) or not tensors or not all(is_ref(t) for t in tensors):
        return None
    dim = batch_dim(a["dim"], len(tensors[0].shape) + 2)
    if not dim:
        return None
    if len(tensors) == 1:  # one tensor stacked: a new dim of size 1, a reshape
        return Mapped("reshape", {"shape": list(out)}, tuple(tensors))
    return Mapped("stack", {"dim": dim}, tuple(tensors))


def _read_stack(r):
    """The function archviz writes: the new dim is its Unsqueeze's axes (the input after the tensors)."""
    tensors = r.activations()
    dim = r.constant(len(tensors))
    dim = dim[0] if isinstance(dim, list) and len(dim) == 1 else dim
    if not isinstance(dim, int) or dim < 1:
        raise NotRepresentable("its axes are not one non-batch dim")
    return r.layer("stack", {"dim": dim}, inputs=tensors)


MAX_STACKED = 64


@register
class Stack(SavesNothing, NoWindow, Free, Op):
    """Tensors of one shape joined along a new dim (torch.stack; dim counted in the output, the batch 0). No cost:
    data is placed, not computed. Output: the inputs' shape with the number of inputs inserted at `dim`.

    ONNX has no stack: written as the model-local function archviz.Stack<n> (each input unsqueezed at `dim`, reshaped
    to N x A x 1 x B, concatenated along axis 2 and reshaped to the output), read back as one stack.
    """

    name = "stack"
    takes_folded_batch = True
    examples = (Example({"dim": 1}, ((4, 5), (4, 5))), Example({"dim": 3}, ((4, 5), (4, 5), (4, 5))),
                Example({"dim": 2}, ((3, 4, 5), (3, 4, 5))), Example({"dim": 4}, ((2, 3, 4), (2, 3, 4))))
    kind = OpKind.JOIN
    keras_class = "Stack"
    torch_class = "archviz Stack"
    torch_calls = TorchCalls(functions={"torch.stack": Signature(("tensors", "dim"), _stack, {"dim": 0})})
    onnx_reads = {f"archviz::Stack{n}": _read_stack for n in range(2, MAX_STACKED + 1)}
    min_inputs, max_inputs = 2, MAX_STACKED
    args = (Arg("dim", ArgKind.INT, 1, doc="the new dim's place in the output, torch counting (the batch is 0)"),)

    def resolve(self, attrs, in_shapes):
        first = in_shapes[0]
        for other in in_shapes[1:]:
            if other != first:
                raise ShapeError(f"shapes {fmt_shape(first)} and {fmt_shape(other)} differ: stack needs one shape")
        if not 1 <= attrs["dim"] <= len(first) + 1:
            raise ShapeError(f"dim {attrs['dim']} is not a place for a new dim after the batch of a "
                             f"{fmt_shape(first)} input (1..{len(first) + 1})")
        return attrs

    def infer_shape(self, attrs, in_shapes):
        shape, at = in_shapes[0], attrs["dim"] - 1
        return (*shape[:at], len(in_shapes), *shape[at:])

    def explain(self, attrs, in_shapes, out_shape):
        return [Step("output shape", f"{len(in_shapes)} tensors of {fmt_shape(in_shapes[0])} along a new dim "
                                     f"{attrs['dim']}", fmt_shape(out_shape))]

    def summary(self, attrs):
        return f"dim {attrs['dim']}"

    def write_onnx(self, e, node, x):
        n, shape, at = len(x), node.in_shapes[0], node.attrs["dim"] - 1
        names = [f"X{i}" for i in range(n)]
        body = [("Unsqueeze", [name, "axes"], [f"U{i}"]) for i, name in enumerate(names)]
        body += [("Reshape", [f"U{i}", "parts"], [f"R{i}"]) for i in range(n)]
        body += [("Concat", [f"R{i}" for i in range(n)], ["C"], {"axis": 2}), ("Reshape", ["C", "out"], ["Y"])]
        e.function(f"Stack{n}", [*names, "axes", "parts", "out"], ["Y"], body,
                   doc=f"torch.stack of {n} tensors: each unsqueezed at `axes`, concatenated along the new dim")
        axes = e.constant(f"{node.name}/axes", [node.attrs["dim"]], "int64")
        parts = e.constant(f"{node.name}/parts", [0, numel(shape[:at]), 1, numel(shape[at:])], "int64")
        out = e.constant(f"{node.name}/out", [0, *node.out_shape], "int64")
        e.add(f"Stack{n}", [*x, axes, parts, out], node.name, node.name, domain=e.domain)

    def build_torch(self, attrs, in_shapes):
        return __getattr__("StackJoin")(attrs["dim"])


# --- the torch modules that rebuild the ops above (made on first use: importing the registry never imports torch;
# they are attributes of this module, read through __getattr__, so models holding them pickle) ---------------------

_MODULE_NAMES = ("StackJoin",)


def _torch_modules() -> dict[str, type]:
    from archviz.torch_build import import_torch

    torch = import_torch()

    class StackJoin(torch.nn.Module):
        """torch.stack of its inputs along `dim` (torch counting, in the output: the batch is dim 0)."""

        def __init__(self, dim: int):
            super().__init__()
            self.dim = dim

        def forward(self, *tensors):
            return torch.stack(tensors, self.dim)

        def extra_repr(self) -> str:
            return f"dim={self.dim}"

    return {"StackJoin": StackJoin}


__getattr__ = lazy_torch_classes(__name__, _MODULE_NAMES, _torch_modules)
