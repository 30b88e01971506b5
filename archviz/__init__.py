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


def load(source: str | Path, *, input=None, overrides: Mapping[str, Any] | None = None) -> Graph:
    """A zoo name or spec file, validated into a Graph (every shape inferred).

    >>> load("alexnet").node("conv1").out_shape
    (96, 55, 55)
    """
    from archviz.graph.build import validate
    from archviz.spec.zoo import load_spec

    return validate(load_spec(source), input_shape=input, overrides=overrides)


def inspect(source: str | Path | Graph, *, input=None, overrides: Mapping[str, Any] | None = None, batch: int = 1,
            dtype: DType | str = "float32", crosscheck: bool = False, fvcore_full: bool = False) -> Report:
    """Every figure of every layer, by formula; with crosscheck=True also the peers' counts (needs torch).

    fvcore_full lets fvcore run a CPU forward pass at the full input when no smaller one runs the same layers.

    >>> inspect("lenet").totals.params
    61706
    """
    from archviz.analysis import analyze
    from archviz.graph.ir import Graph

    graph = source if isinstance(source, Graph) else load(source, input=input, overrides=overrides)
    report = analyze(graph, batch=batch, dtype=dtype)
    if crosscheck:
        from archviz.crosscheck import run_crosscheck

        report = run_crosscheck(report, fvcore_full=fvcore_full)
    return report


__all__ = [
    "ArchvizError", "DType", "Graph", "Report", "ShapeError", "SpecError", "UnknownNameError", "UnsupportedOpError",
    "analyze", "inspect", "load", "load_spec", "validate", "zoo_names",
]
