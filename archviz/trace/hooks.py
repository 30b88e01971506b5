"""Where torch.fx cannot trace (data-dependent control flow, Python it cannot follow): forward hooks on the leaf
modules during one eager forward pass on the meta device.

A hook sees each leaf module's input and output tensors as the pass runs. A layer's input is wired to the layer that
produced that very tensor when one did; a tensor made outside any layer (an addition, a reshape, a concatenation in
forward) has no producer, so such an input is wired to the layer that ran just before: the wiring is by execution
order there, and those operations are neither shown nor counted. The hooks are put on archviz's own meta copy of the
model and removed after the pass.
"""

from __future__ import annotations

import torch

from archviz.trace.assemble import Call, Ref, Traced
from archviz.trace.fx import BATCH, _Tracer, batch_free
from archviz.trace.mapping import map_module, qualified_name

NOTE = ("torch.fx could not trace this model ({reason}), so its layers were recorded by forward hooks in the order "
        "they ran; operations outside modules (additions, concatenations, reshapes in forward) are not shown or "
        "counted, and a layer whose input came from one is wired to the layer that ran before it")


def leaves(model) -> list[tuple[str, object]]:
    """The modules a hook records: torch's own layers, mapped classes and childless modules, none inside another."""
    tracer = _Tracer()
    chosen: list[tuple[str, object]] = []
    for path, module in model.named_modules():
        if not path or any(path.startswith(f"{outer}.") for outer, _ in chosen):
            continue
        if tracer.is_leaf_module(module, path) or not any(True for _ in module.children()):
            chosen.append((path, module))
    return chosen


def trace_hooks(model, input_shape: tuple[int, ...], *, reason: str) -> Traced:
    """The leaf modules' calls in the order they ran, for one input of `input_shape` (batch left out)."""
    calls: list[Call] = []
    made: dict[int, int] = {}  # id(tensor) -> the call that returned it
    keep: list = []  # every tensor seen stays alive, so that no id is reused during the pass
    times: dict[str, int] = {}
    image = torch.empty((BATCH, *input_shape), device="meta")
    keep.append(image)

    def record(path):
        def hook(module, args, kwargs, output):
            tensors = [t for t in _tensors((args, kwargs))]
            keep.extend(tensors)
            refs = []
            for tensor in tensors:
                if tensor is image:
                    refs.append(Ref(None, tuple(tensor.shape[1:])))
                elif id(tensor) in made:
                    refs.append(Ref(made[id(tensor)], tuple(tensor.shape[1:])))
                elif calls:  # made outside any layer: wired to the layer that ran last
                    refs.append(Ref(len(calls) - 1, tuple(tensor.shape[1:])))
            if not refs:
                refs.append(Ref(len(calls) - 1 if calls else None, tuple(image.shape[1:])))
            results = [t for t in _tensors(output)]
            if not results:
                return
            keep.extend(results)
            first = results[0]
            count = times.get(path, 0)
            times[path] = count + 1
            key = path if count == 0 else f"{path}@{count}"
            shape = batch_free(first, f"{qualified_name(type(module))} at {path}")
            call = Call("module", path, key, (), type(module).__name__,
                        qualified_name(type(module)), tuple(refs), shape, map_module(module, tuple(refs)),
                        (*module.parameters(), *module.buffers()))
            calls.append(call)
            for tensor in results:
                made.setdefault(id(tensor), len(calls) - 1)

        return hook

    handles = [module.register_forward_hook(record(path), with_kwargs=True) for path, module in leaves(model)]
    try:
        result = model(image)
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        raise ValueError("no layer ran")
    returned = [t for t in _tensors(result)]
    output = made.get(id(returned[0]), len(calls) - 1) if returned else len(calls) - 1
    return Traced(tuple(calls), output, "hooks", (NOTE.format(reason=reason),))


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
