"""archviz: take convolutional networks apart. Spec -> validated Graph -> analysis | torch | diagram -> renderers.

>>> import archviz
>>> report = archviz.inspect("vgg16", input=(3, 224, 224))
>>> report.totals.params
138357544
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from archviz.errors import ArchvizError, ShapeError, SpecError, UnknownNameError, UnsupportedOpError

if TYPE_CHECKING:
    from archviz.analysis import DType, Report
    from archviz.graph.ir import Graph

__version__ = "0.1.0"

# Imported on first use, so `archviz --help` and `archviz list` do not load the analysis modules.
_LAZY = {
    "DType": "archviz.analysis", "Report": "archviz.analysis", "analyze": "archviz.analysis",
    "validate": "archviz.graph.build", "Graph": "archviz.graph.ir",
    "load_spec": "archviz.spec.zoo", "zoo_names": "archviz.spec.zoo",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archviz' has no attribute {name!r}")


def load(source: Any, *, input=None, overrides: Mapping[str, Any] | None = None,
         kwargs: Mapping[str, Any] | None = None) -> Graph:
    """Any model as a Graph, every shape inferred:
      * a zoo name ("vgg16") or a spec file ("my_net.yaml"), with `overrides` of its params;
      * "torchvision:resnet50", traced (input 3x224x224 unless given; inception_v3 3x299x299);
      * "timm:convnext_tiny" (needs timm), built by timm.create_model(pretrained=False) with `kwargs` and traced
        (input: the model's pretrained_cfg input_size unless given);
      * "path/to/model.py:Net" or "package.module:make_model": IMPORTS AND RUNS that code, calls the class or factory
        with `kwargs` on the meta device and traces the module (`input` is required);
      * an nn.Module object, traced from a meta copy (the object is not changed; `input` is required);
      * an .onnx file (archviz.onnx), or a state dict (.pth/.pt) whose tensors are a zoo or torchvision model's.

    >>> load("alexnet").node("conv1").out_shape
    (96, 55, 55)
    """
    from archviz.trace.load import is_model_source

    if _is_torch_module(source):
        _only_spec_overrides(overrides, type(source).__name__)
        from archviz.trace import trace_module

        return trace_module(source, input=input)
    text = _checked_source(str(source))
    if is_model_source(text):
        _only_spec_overrides(overrides, text)
        from archviz.trace import trace_source

        return trace_source(text, input=input, kwargs=kwargs)
    if kwargs:
        raise SpecError(f"{text}: kwargs (--kwargs) go to a PyTorch class or factory (torchvision:NAME, timm:NAME, "
                        "FILE.py:Name, module:name); a spec takes --set name=value")
    suffix = Path(text).suffix.lower()
    if suffix == ".onnx":
        return _read_onnx(text, input=input)
    if suffix in (".pth", ".pt"):
        import dataclasses

        from archviz.trace.state_dict import identify

        match = identify(text)
        graph = load(match.source, input=input, overrides=overrides)
        return dataclasses.replace(graph, description=f"{match.message}. {graph.description}".strip())
    from archviz.graph.build import validate
    from archviz.spec.zoo import load_spec

    return validate(load_spec(source), input_shape=input, overrides=overrides)


MAX_SOURCE_CHARS = 4096  # PATH_MAX on Linux: a longer model argument cannot name a file, a module or a zoo model


def _checked_source(text: str) -> str:
    """A model argument that names something: not too long for a path, no NUL byte, no other control character."""
    from archviz.render.visible import has_unsafe

    if len(text) > MAX_SOURCE_CHARS:
        raise UnknownNameError(f"the model argument is {len(text):,} characters long; a zoo name, a file or "
                               f"PyTorch code is named in at most {MAX_SOURCE_CHARS:,}")
    if has_unsafe(text):  # NUL included
        raise UnknownNameError(f"the model argument {text!r} holds a control character; no zoo name or file has one")
    return text


def _is_torch_module(source) -> bool:
    import sys

    torch = sys.modules.get("torch")  # an nn.Module exists only if torch is imported already
    return torch is not None and isinstance(source, torch.nn.Module)


def _only_spec_overrides(overrides, source: str) -> None:
    if overrides:
        raise SpecError(f"{source}: --set changes a spec's params; a PyTorch model takes its constructor's "
                        "arguments as --kwargs '{\"name\": value}'")


def _read_onnx(path: str, *, input=None) -> Graph:
    try:
        from archviz.onnx.read import read_onnx
    except ModuleNotFoundError as error:
        if error.name and error.name.startswith("archviz"):
            raise ArchvizError(f"{path}: this archviz cannot read ONNX files yet") from None
        from archviz.errors import MissingDependencyError

        raise MissingDependencyError(f"{path}: reading ONNX needs {error.name!r}, which is not installed") from None
    return read_onnx(path, input=input)


def inspect(source: Any, *, input=None, overrides: Mapping[str, Any] | None = None,
            kwargs: Mapping[str, Any] | None = None, batch: int = 1, dtype: DType | str = "float32",
            crosscheck: bool = False, fvcore_full: bool = False, optimizer: str | None = None,
            fit_bytes: int | None = None, device: str | None = None, amp: str | None = None,
            checkpointing: int | None = None) -> Report:
    """Every figure of every layer, by formula; with crosscheck=True also the peers' counts (needs torch); with an
    optimizer (sgd, momentum, adam, adamw) one training step's memory predicted, and with fit_bytes the largest batch
    whose step fits in that many bytes, and with amp (bf16, fp16) the step under torch.autocast; with a device
    (h100, a100, t4, ... or cpu: this machine's, calibrated once and cached) each layer's time predicted by a roofline
    (analysis/latency.py), and on a GPU the training step with CUDA's defaults (for-each optimizer kernels,
    512-byte allocator blocks, CUDA's autocast lists); with checkpointing=N the step with activation checkpointing
    in N segments (analysis/checkpointing.py).

    `source` is anything load() reads (a zoo name, a spec file, torchvision:NAME, timm:NAME, FILE.py:Name, an
    nn.Module, ...) or a Graph. fvcore_full lets fvcore run a CPU forward pass at the full input when no smaller one
    runs the same layers.

    >>> inspect("lenet").totals.params
    61706
    """
    import dataclasses

    from archviz.analysis import analyze
    from archviz.analysis.devices import DeviceKind, device_named
    from archviz.analysis.latency import predict_latency
    from archviz.graph.ir import Graph

    graph = source if isinstance(source, Graph) else load(source, input=input, overrides=overrides, kwargs=kwargs)
    target = None if device is None else device_named(device)
    report = analyze(graph, batch=batch, dtype=dtype, optimizer=optimizer, fit_bytes=fit_bytes, amp=amp,
                     on_gpu=target is not None and target.kind == DeviceKind.GPU, checkpointing=checkpointing)
    if target is not None:
        report = dataclasses.replace(report, latency=predict_latency(report, target))
    if crosscheck:
        from archviz.crosscheck import run_crosscheck

        report = run_crosscheck(report, fvcore_full=fvcore_full)
    return report


def diff(a: Any, b: Any, *, input=None, batch: int = 1, dtype: DType | str = "float32",
         kwargs: Mapping[str, Any] | None = None):
    """Two models side by side, as `archviz diff` compares them: a Diff, whose `identical` says whether they have
    the same layers, shapes, params and MACs (shown as a table in Jupyter, as text in a terminal).

    >>> diff("resnet50", "resnet50").identical
    True
    """
    from archviz.analysis.diff import diff_reports

    return diff_reports(*(inspect(m, input=input, batch=batch, dtype=dtype, kwargs=kwargs) for m in (a, b)))


def draw(source: Any, *, depth: int | None = None, expand: bool = False, style: str = "graph", input=None,
         color_by: str | None = None, device: str | None = None):
    """A model's diagram (Graphviz's, or style="paper": the layered figure of the papers), shown as SVG in Jupyter;
    `.save("net.svg")` writes it (.svg, .png, .pdf or .dot). color_by fills each box by its share of the largest
    box's macs, params, memory or time (the roofline's on `device`).

    >>> draw("lenet").data("dot").startswith(b'digraph "lenet"')
    True
    """
    from archviz.render.notebook import Drawing

    report = source if _is_report(source) else inspect(source, input=input, device=device)
    return Drawing(report, depth=depth, expand=expand, style=style, cost=color_by)


def _is_report(value) -> bool:
    from archviz.analysis.report import Report

    return isinstance(value, Report)


__all__ = [
    "ArchvizError", "DType", "Graph", "Report", "ShapeError", "SpecError", "UnknownNameError", "UnsupportedOpError",
    "analyze", "diff", "draw", "inspect", "load", "load_spec", "validate", "zoo_names",
]
