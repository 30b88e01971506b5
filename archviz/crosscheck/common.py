"""What the peers share: the report's graph as a torch model, and the shapes each layer sees in a forward pass."""

from __future__ import annotations

import contextlib
import sys
import types
from dataclasses import dataclass
from importlib import metadata

import torch

from archviz.analysis.report import LayerStats, Report
from archviz.ops import get_op, has_formula
from archviz.torch_build import to_torch

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerShapes:
    """One layer's tensors in a forward pass, batch included."""

    inputs: tuple[Shape, ...]
    output: Shape


def meta_model(report: Report):
    """The report's model on the meta device in eval mode: shapes and parameter counts, no weights.

    A graph traced from PyTorch code is checked on its original module, built again from its source (its graph may
    hold opaque layers, which have no torch module of archviz's); a spec's graph is built by archviz.torch_build. A
    graph with no original module and opaque layers (read from an ONNX file) has no whole model in torch: each layer
    archviz can rebuild runs alone (_layer_by_layer), so the peers check those and excuse the opaque ones.
    """
    origin = report.graph.origin
    if origin is not None:
        from archviz.trace.load import meta_module

        model = meta_module(origin)
    elif unbuilt_layers(report):
        model = _layer_by_layer(report.graph)
    else:
        model = to_torch(report.graph, device="meta").eval()
    _shape_only_batch_norm(model)
    return model


def unbuilt_layers(report: Report) -> list[str]:
    """The layers of a graph without an original module that archviz cannot rebuild in torch (no formula)."""
    if report.graph.origin is not None:
        return []
    return [node.name for node in report.graph.nodes if not has_formula(node.op)]


class _LayerByLayer(torch.nn.Module):
    """The layers archviz can rebuild, each under its layer path, each run alone on an empty tensor of the shapes it
    has in the graph (batch first): per-layer shapes, params and MACs. The layers it cannot build are not run; their
    stored tensors are held (_Stored), so that totals of params compare."""

    def __init__(self, calls: list[tuple[str, tuple[Shape, ...]]]):
        super().__init__()
        self.calls = calls

    def forward(self, x):
        outputs = [self.get_submodule(path)(*(torch.empty((x.shape[0], *shape), device=x.device) for shape in shapes))
                   for path, shapes in self.calls]
        return (x, *outputs)  # every output used: a traced graph (fvcore's) drops what nothing returns


UNBUILT = "_unbuilt"  # no layer path starts with "_" (archviz/onnx/names.py), so no peer takes these for layers


class _Stored(torch.nn.Module):
    """An opaque layer's stored tensors, as one flat parameter of their element count."""

    def __init__(self, elements: int):
        super().__init__()
        self.stored = torch.nn.Parameter(torch.empty(elements))


def _layer_by_layer(graph) -> torch.nn.Module:
    calls, built = [], {}
    model = _LayerByLayer(calls)
    with torch.device("meta"):
        for node in graph.nodes:
            if not has_formula(node.op):  # never run; its stored tensors' elements held apart from the layer paths
                if node.attrs.get("params"):
                    _place(model, f"{UNBUILT}.{len(calls)}", _Stored(node.attrs["params"]))
                continue
            owner = node.shares if node.shares in built and dict(node.attrs) == dict(built[node.shares]) else None
            if owner is None:
                _place(model, node.name, get_op(node.op).build_torch(node.attrs, list(node.in_shapes)))
                built[node.name] = node.attrs
            calls.append((owner or node.name, node.in_shapes))
    return model.eval()


def _place(model, path: str, module) -> None:
    *parents, leaf = path.split(".")
    owner = model
    for part in parents:
        if part not in owner._modules:
            owner.add_module(part, torch.nn.Module())
        owner = owner._modules[part]
    owner.add_module(leaf, module)


def without_gradients(model):
    """The model with no parameter requiring grad, for a pass under FlopCounterMode.

    FlopCounterMode's ModuleTracker hooks the gradient of every tensor that requires grad as it enters a module; a
    parameter passed as it is into a submodule's forward (timm's PiT and CaiT hand their class token on) has no
    gradient function under no_grad, and torch 2.x raises "Expected gradient function to be set". Counting needs no
    gradients; parameters() still yields every parameter.
    """
    return model.requires_grad_(False)


def _shape_only_batch_norm(model) -> None:
    """On meta tensors, batch norm runs torch's Python decomposition, ~3 ms a call (4.5 s for 1,000 layers), to make
    a tensor of its input's shape. No peer reads its values and its output shape is its input's by definition, so
    each batch-norm module's forward returns an empty tensor of that shape (hooks still fire: peers see the module
    run). real_batch_norm() undoes it before a pass on real tensors (fvcore's CPU trace, which counts the op).
    """
    for module in model.modules():  # only torch's own forward: timm's BatchNormAct2d also runs its act and drop
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) \
                and type(module).forward is torch.nn.modules.batchnorm._BatchNorm.forward:
            module.forward = types.MethodType(_empty_like_input, module)


def _empty_like_input(module, input):
    return torch.empty_like(input)


def real_batch_norm(model) -> None:
    for module in model.modules():
        if "forward" in vars(module):
            del module.forward


def module_groups(report: Report, model) -> dict[str, list[LayerStats]]:
    """Module path -> the layers that ran it, first call first: each layer named by a module path, with the later
    calls of a shared module (named "relu_1", sharing "relu"). Layers that are function calls (a traced "add")
    belong to no module of the model, so to no group; in a spec's graph every layer is its own module.
    """
    modules = {path for path, _ in model.named_modules()}
    groups: dict[str, list[LayerStats]] = {}
    for layer in report.layers:
        if layer.name in modules:
            groups.setdefault(layer.name, []).insert(0, layer)
        elif layer.shares in modules:
            groups.setdefault(layer.shares, []).append(layer)
    return groups


def function_layers_note(report: Report, groups: dict[str, list[LayerStats]]) -> list[str]:
    """A note naming the traced layers that are function calls, which no peer reports per layer."""
    grouped = {layer.name for layers in groups.values() for layer in layers}
    loose = [layer.name for layer in report.layers if layer.name not in grouped]
    if not loose:
        return []
    shown = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
    if report.graph.origin is None:  # a graph read from a file, checked layer by layer (_layer_by_layer)
        return [f"{len(loose)} layers archviz cannot rebuild in torch ({shown}): not run, no per-layer figure"]
    return [f"{len(loose)} layers are function calls in forward, not modules ({shown}): no per-layer figure; "
            "their costs are in the totals"]


def not_counted_reason(layers) -> str:
    """Why a peer's MACs exceed ours for layers without a formula ('' when every layer is counted)."""
    opaque = [layer.name for layer in layers if not layer.counted]
    if not opaque:
        return ""
    shown = ", ".join(opaque[:3]) + (f" and {len(opaque) - 3} more" if len(opaque) > 3 else "")
    return f"archviz has no formula for {shown}: not counted (the totals list them)"


def batch_shape(report: Report, *, batch: int | None = None, spatial: Shape | None = None) -> Shape:
    """(batch, C, H, W) for the report's input; `spatial` replaces everything after the first non-batch dim."""
    shape = report.input if spatial is None else (report.input[0], *spatial)
    return (report.batch if batch is None else batch, *shape)


def record_shapes(model, shape: Shape, names) -> tuple[dict[str, LayerShapes], list[str]]:
    """Run model on a meta tensor of `shape`; each named layer's shapes and the order the layers ran in."""
    seen: dict[str, LayerShapes] = {}
    order: list[str] = []

    def hook(name):
        def record(module, inputs, output):
            if isinstance(output, (tuple, list)):  # a module returning several tensors (attention and its weights)
                output = next(t for t in output if isinstance(t, torch.Tensor))
            tensors = (t for t in inputs if isinstance(t, torch.Tensor))
            seen[name] = LayerShapes(tuple(tuple(t.shape) for t in tensors), tuple(output.shape))
            order.append(name)

        return record

    handles = [model.get_submodule(name).register_forward_hook(hook(name)) for name in names]
    try:
        with torch.no_grad():
            model(torch.empty(shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return seen, order


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def without_dynamo_import():
    """Run meta-device forward passes without importing torch._dynamo (0.7-2 s, a third of the cross-check).

    On the meta device torch runs Python decompositions (addmm, batch_norm) whose helpers are wrapped by
    torch._compile._disable_dynamo, which imports torch._dynamo on first call only to mark them "do not compile".
    Nothing is being compiled here, so for the duration a stand-in `torch._dynamo.disable` returns each helper as it
    is; afterwards the stand-in and the marks it left are removed, and a later torch.compile imports the real module.
    Where torch._dynamo is already imported this does nothing.
    """
    if "torch._dynamo" in sys.modules:
        yield
        return
    marked = []

    def disable(fn, recursive=True, wrapping=True):
        marked.append(fn)
        return fn

    stand_in = types.ModuleType("torch._dynamo", "archviz's stand-in while a cross-check runs on meta tensors")
    stand_in.disable = disable
    sys.modules["torch._dynamo"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("torch._dynamo") is stand_in:
            del sys.modules["torch._dynamo"]
        if vars(torch).get("_dynamo") is stand_in:  # not getattr: torch's module __getattr__ would import it
            del torch._dynamo
        for fn in marked:
            with contextlib.suppress(AttributeError):
                del fn.__dynamo_disable


def unreturned_layers(graph) -> frozenset[str]:
    """The layers no path leads from to the model's output (an auxiliary classifier at inference): a tracer that
    follows what the model returns (torch.jit, which fvcore reads) leaves them out."""
    reached, pending = set(), [graph.output]
    by_name = {node.name: node for node in graph.nodes}
    while pending:
        name = pending.pop()
        if name in reached or name not in by_name:
            continue
        reached.add(name)
        pending.extend(by_name[name].inputs)
    return frozenset(node.name for node in graph.nodes if node.name not in reached)
