"""to_torch(): a validated Graph as a torch nn.Module, its submodules named by the layer paths.

Node "layer1.0.conv1" lives at model.layer1[0].conv1, so `model.get_submodule("layer1.0.conv1")` finds it and the
state_dict keys ("layer1.0.conv1.weight") are torchvision's for the zoo models. forward(x) runs the nodes in graph
order, looking each input up by name, and returns the graph's output. Every layer's module comes from its op's
`build_torch` (archviz/ops); this module only wires them together. A layer that shares another's weights
(`Node.shares`, `shares:` in a spec) is that layer's module, placed at a second path, or, where its other arguments
differ (another stride or padding), a module of its own whose parameters and buffers are the owner's tensors: either
way the model holds those weights once.

torch is imported inside the functions, so importing this module stays cheap; the torch classes (AddJoin,
ConcatJoin, Scope, ArchvizModel) are made on first use and read as attributes of this module.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from archviz.errors import ArchvizError, MissingDependencyError
from archviz.graph.ir import INPUT, Graph
from archviz.ops import get_op

INSTALL_HINT = "pip install 'archviz[torch]'"
RAM_FRACTION = 0.75  # of physical memory: leaves room for the OS, the activations and the Python process
GPU_FRACTION = 0.9  # of the GPU's free memory: the CUDA context and allocator keep some for themselves
_CLASS_NAMES = ("AddJoin", "ConcatJoin", "Scope", "ArchvizModel")


def import_torch():
    """torch, or a MissingDependencyError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(f"this needs PyTorch, which is not installed: {INSTALL_HINT}") from None
    return torch


def to_torch(graph: Graph, *, device: Any = None, memory_limit: int | None = None):
    """The graph as an nn.Module on `device` (torch's default device when None), in training mode as torch builds it.

    On device "meta" no weights are allocated. Otherwise the parameters and buffers are first counted by formula and
    the build is refused, with an ArchvizError, when they would not fit in `memory_limit` bytes (default: 75% of
    physical memory, or 90% of the free memory of a CUDA device).

    >>> import archviz
    >>> model = to_torch(archviz.load("lenet"), device="meta")
    >>> model.get_submodule("conv1").weight.shape
    torch.Size([6, 1, 5, 5])
    """
    torch = import_torch()
    device = torch.device(device) if device is not None else torch.empty(0).device
    if device.type != "meta":
        _check_memory(graph, device, memory_limit, torch)
    classes = _classes()
    model = classes["ArchvizModel"](graph)
    built = {}
    with torch.device(device):
        for node in graph.nodes:
            if node.shares is not None and dict(node.attrs) == dict(graph.node(node.shares).attrs):
                module = built[node.shares]
            else:
                module = get_op(node.op).build_torch(node.attrs, list(node.in_shapes))
                if node.shares is not None:
                    _tie(module, built[node.shares])
            built[node.name] = module
            _place(model, node.name, module, classes["Scope"])
    return model


def _tie(module, owner) -> None:
    """Make module use owner's parameters and buffers (the same tensors), dropping the ones it was built with."""
    for name, parameter in owner.named_parameters(recurse=True):
        *path, leaf = name.split(".")
        module.get_submodule(".".join(path)).register_parameter(leaf, parameter)
    for name, buffer in owner.named_buffers(recurse=True):
        *path, leaf = name.split(".")
        module.get_submodule(".".join(path)).register_buffer(leaf, buffer)


def weight_elements(graph: Graph) -> int:
    """Parameters and buffers of every layer, by formula (BatchNorm's one-element step counters not included); a layer
    that shares another's weights adds none."""
    total = 0
    for node in graph.nodes:
        if node.shares is not None:
            continue
        op = get_op(node.op)
        total += op.params(node.attrs, list(node.in_shapes)) + op.buffers(node.attrs, list(node.in_shapes))
    return total


def default_memory_limit(device, torch) -> int | None:
    """Bytes the weights may take on device: a share of physical RAM, or of a GPU's free memory; None if unknown."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * GPU_FRACTION)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * RAM_FRACTION)
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name: do not guess
        return None


def _check_memory(graph: Graph, device, memory_limit: int | None, torch) -> None:
    element_bytes = torch.get_default_dtype().itemsize
    needed = weight_elements(graph) * element_bytes
    limit = memory_limit if memory_limit is not None else default_memory_limit(device, torch)
    if limit is not None and needed > limit:
        raise ArchvizError(
            f"{graph.name}: its parameters and buffers need {needed:,} bytes ({needed / 2**30:.1f} GiB at "
            f"{element_bytes} bytes each), more than the {limit:,} bytes allowed on {device}; "
            "build it on device='meta' to inspect it without weights"
        )


def _place(model, path: str, module, scope_class) -> None:
    """Attach module at its dotted path, making the scopes above it on the way."""
    *parents, leaf = path.split(".")
    owner = model
    for part in parents:
        child = owner._modules.get(part)
        if child is None:
            child = scope_class()
            _add(owner, part, child, path)
        owner = child
    _add(owner, leaf, module, path)


def _add(owner, name: str, module, path: str) -> None:
    if name in owner._modules:
        raise ArchvizError(f"two layers are placed at {path!r}", layer=path)
    try:
        owner.add_module(name, module)
    except KeyError:  # torch refuses names of existing attributes ("training", "forward", ...)
        raise ArchvizError(
            f"layer name {name!r} clashes with an attribute of torch.nn.Module; rename the layer", layer=path
        ) from None


def __getattr__(name: str):
    if name in _CLASS_NAMES:
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _classes() -> dict[str, type]:
    """The nn.Module classes, made once torch is wanted; named as module attributes so that they pickle."""
    torch = import_torch()
    nn = torch.nn
    from torch.utils.checkpoint import checkpoint

    class AddJoin(nn.Module):
        """Element-wise sum of its inputs (the residual join)."""

        def forward(self, *tensors):
            total = tensors[0]
            for tensor in tensors[1:]:
                total = total + tensor
            return total

    class ConcatJoin(nn.Module):
        """Concatenation of its inputs along `dim` (torch counting: the batch is dim 0)."""

        def __init__(self, dim: int = 1):
            super().__init__()
            self.dim = dim

        def forward(self, *tensors):
            return torch.cat(tensors, dim=self.dim)

        def extra_repr(self) -> str:
            return f"dim={self.dim}"

    class Scope(nn.Module):
        """A named group of layers (a sequential, block or repeat): it holds submodules and is never called.

        Indexing reads a child by name, so torchvision-style paths read the same: model.layer1[0].conv1.
        """

        def __getitem__(self, key):
            try:
                return self._modules[str(key)]
            except KeyError:
                raise KeyError(f"no layer {key!r} in this scope; it holds: {', '.join(self._modules)}") from None

        def __len__(self) -> int:
            return len(self._modules)

    class ArchvizModel(nn.Module):
        """A Graph's layers as submodules named by their paths; forward runs them in graph order."""

        def __init__(self, graph: Graph):
            super().__init__()
            self.graph_name = graph.name
            self.steps = tuple((node.name, node.inputs) for node in graph.nodes)
            self.paths = tuple(tuple(node.name.split(".")) for node in graph.nodes)  # forward's lookups, per step
            self.output = graph.output
            last_use = {INPUT: -1}
            for index, (name, inputs) in enumerate(self.steps):
                for source in inputs:
                    last_use[source] = index
                last_use.setdefault(name, index)  # a branch nothing reads (an auxiliary head): freed once made
            last_use[self.output] = len(self.steps)
            self.last_use = last_use
            # after step i, the tensors no later step reads are dropped, so memory follows the live set
            self.release = tuple(
                tuple(name for name, last in last_use.items() if last == index) for index in range(len(self.steps))
            )

            self.checkpoint_starts: tuple[int, ...] = ()  # set by checkpoint(): where segments after the first start
            self.crossing: dict[int, str] = {}  # a start -> the one tensor crossing into it

        def checkpoint(self, segments) -> None:
            """Run every segment but the last (analysis/checkpointing.Segments, or None: no checkpointing) under
            torch.utils.checkpoint when gradients are recorded: what its layers save for backward is made again in
            the backward pass from the one tensor it starts from, which alone is kept. As with torch's checkpoint
            itself, batch norm's running statistics are updated again when a segment runs again (profile measures
            memory with it; archviz train does not checkpoint)."""
            self.checkpoint_starts = () if segments is None else tuple(segments.starts)
            self.crossing = {step: self._crossing(step) for step in self.checkpoint_starts}

        def forward(self, x):
            values = {INPUT: x}
            bounds = (0, *self.checkpoint_starts, len(self.steps))
            for start, stop in zip(bounds, bounds[1:]):
                if stop == len(self.steps) or not torch.is_grad_enabled():
                    self._run(values, start, stop)
                    continue
                ((name, value),) = values.items()  # a cut: one tensor alone crosses it
                output = checkpoint(self._segment, start, stop, name, value, use_reentrant=False)
                values = {self.crossing[stop]: output}
            return values[self.output]

        def _segment(self, start: int, stop: int, name: str, value):
            values = {name: value}
            self._run(values, start, stop)
            ((_, output),) = values.items()
            return output

        def _crossing(self, step: int) -> str:
            """The one tensor made before `step` and read at or after it."""
            made_before = {INPUT} | {name for name, _ in self.steps[:step]}
            (name,) = [n for n in made_before if self.last_use[n] >= step]
            return name

        def _run(self, values: dict, start: int, stop: int) -> None:
            for index in range(start, stop):
                (name, inputs), path, done = self.steps[index], self.paths[index], self.release[index]
                module = self
                for part in path:  # get_submodule's walk without its checks: a few microseconds a layer less
                    module = module._modules[part]
                args = [values[source] for source in inputs]
                if module.__dict__.get("inplace", False):  # getattr would raise and catch inside nn.Module: slow
                    args = [self._private(tensor, values, index) for tensor in args]
                values[name] = module(*args)
                for source in done:
                    del values[source]

        def _private(self, tensor, values, index: int):
            """The tensor, or a copy where an in-place layer would change what a later layer reads.

            A branch's input is read by every branch, and identity, dropout and flatten hand on their input itself or
            a view of it, so any live tensor sharing the storage counts; on the meta device there are no values.
            """
            if tensor.is_meta:
                return tensor
            storage = tensor.untyped_storage().data_ptr()
            for name, value in values.items():
                if self.last_use[name] > index and value.untyped_storage().data_ptr() == storage:
                    return tensor.clone()
            return tensor

        def extra_repr(self) -> str:
            return f"graph={self.graph_name!r}"

    classes = {"AddJoin": AddJoin, "ConcatJoin": ConcatJoin, "Scope": Scope, "ArchvizModel": ArchvizModel}
    for name, cls in classes.items():
        cls.__module__, cls.__qualname__ = __name__, name
    return classes
