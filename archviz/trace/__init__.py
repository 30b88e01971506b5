"""Any PyTorch model in: torchvision:NAME, timm:NAME, file.py:Name, package.module:name or an nn.Module object,
traced into the same frozen Graph a spec becomes, so every later stage (analysis, diagrams, diff, reports) works on it
unchanged.

    load.py       the module behind a source, built on the meta device (no weights allocated)
    fx.py         torch.fx symbolic trace + a run on meta tensors -> Calls
    eager.py      where fx cannot trace: one eager pass, every call recorded as the fx graph fx.py walks
    mapping.py    module / function / method -> registry op and arguments
    assemble.py   Calls -> Graph: names, scopes, the shape check, parameters counted once
    state_dict.py a .pth file: which zoo or torchvision model its tensors are
The user's own module is never changed: archviz traces a meta copy of it (load.meta_copy).
Importing this package does not import torch.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Mapping

from archviz.errors import SpecError
from archviz.graph.ir import Graph, Origin
from archviz.trace.load import SourceKind, is_model_source, parse_kwargs, parse_source

__all__ = ["is_model_source", "parse_kwargs", "trace_module", "trace_source"]


def trace_source(source: str, *, input=None, kwargs: Mapping[str, Any] | None = None) -> Graph:
    """The Graph of a torchvision:, timm:, file.py:Name or module:name source (see archviz/trace/load.py).

    >>> trace_source("torchvision:resnet18").node("layer1.0.add").inputs
    ('layer1.0.bn2', 'maxpool')
    """
    from archviz.graph.build import parse_input
    from archviz.trace.load import build_meta, default_input

    parsed = parse_source(source, kwargs=kwargs)
    if input is None:
        input = default_input(parsed)
        if input is None:
            raise SpecError(f"{source}: give the input shape with --input CxHxW (archviz cannot know what a model of "
                            "your own takes)")
    shape = parse_input(input)
    model = build_meta(parsed)
    arguments = ", ".join(f"{k}={v!r}" for k, v in parsed.kwargs.items())
    return _trace(model, shape, name=parsed.name, description=_built_with(parsed, arguments),
                  origin=Origin(source, parsed.kwargs),
                  torchvision=parsed.location if parsed.kind == SourceKind.TORCHVISION else None)


def _built_with(parsed, arguments: str) -> str:
    """How the module was made, as Python: torchvision.models.resnet50(), timm.create_model('resnet18', ...)."""
    if parsed.kind == SourceKind.TORCHVISION:
        return f"torchvision.models.{parsed.location}({arguments})"
    if parsed.kind == SourceKind.TIMM:
        return f"timm.create_model({', '.join(filter(None, [repr(parsed.location), 'pretrained=False', arguments]))})"
    return f"{parsed.name}({arguments})"


def trace_module(module, *, input, name: str | None = None) -> Graph:
    """The Graph of an nn.Module object; the module itself is left exactly as it was (weights, device, hooks, mode).

    >>> import torch
    >>> trace_module(torch.nn.Conv2d(3, 8, 3), input=(3, 32, 32)).nodes[0].out_shape
    (8, 30, 30)
    """
    from archviz.graph.build import parse_input
    from archviz.trace.load import meta_copy

    if input is None:
        raise SpecError(f"give the input shape of the {type(module).__name__} (input=(C, H, W)); archviz cannot know "
                        "what a model of your own takes")
    shape = parse_input(input)
    label = name or type(module).__name__
    with collector_paused():
        model = meta_copy(module)
    return _trace(model, shape, name=label, description=f"a {type(module).__name__} object",
                  origin=Origin(f"<{type(module).__name__} object>", module=module))


@contextlib.contextmanager
def collector_paused():
    """Python's cycle collector off while archviz copies or traces a model. Both make tens of thousands of objects
    that live until they end, and each full collection that triggers walks every object of torch and timm (0.3 s
    with timm imported: more than a whole trace of a ViT); the trace's garbage is collected after it instead."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _trace(model, shape, *, name: str, description: str, origin: Origin, torchvision: str | None = None) -> Graph:
    import torch

    from archviz.crosscheck.common import without_dynamo_import
    from archviz.errors import ArchvizError
    from archviz.trace.assemble import assemble
    from archviz.trace.fx import Untraceable, trace_fx
    from archviz.trace.eager import trace_eager
    from archviz.trace.mapping import function_table, module_table

    function_table(), module_table()  # before the stand-in for torch._dynamo, which torchvision.ops' import needs
    with without_dynamo_import(), torch.no_grad(), collector_paused():
        try:
            traced = trace_fx(model, shape)
            how = "traced with torch.fx on the meta device"
        except Untraceable as reason:
            try:
                traced = trace_eager(model, shape, reason=str(reason).split("\n")[0][:200])
            except ArchvizError:
                raise
            except Exception as error:
                first_line = str(error).strip().split("\n")[0][:300]
                raise ArchvizError(f"{name} does not run on an input of {'x'.join(map(str, shape))} on the meta "
                                   f"device (no weights): {type(error).__name__}: {first_line}") from None
            how = "recorded from an eager forward pass on the meta device"
    with collector_paused():
        return assemble(model, traced, name=name, description=f"{description}, {how}.", input_shape=shape,
                        origin=origin, torchvision=torchvision)
