"""archviz: take convolutional networks apart. Spec -> validated Graph -> analysis | torch | diagram -> renderers.

>>> import archviz
>>> report = archviz.inspect("vgg16", input=(3, 224, 224))
>>> report.totals.params
138357544
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from archviz.analysis import DType, Report, analyze
from archviz.errors import ArchvizError, ShapeError, SpecError, UnknownNameError, UnsupportedOpError
from archviz.graph.build import validate
from archviz.graph.ir import Graph
from archviz.spec.zoo import load_spec, zoo_names

__version__ = "0.1.0"


def load(source: str | Path, *, input=None, overrides: Mapping[str, Any] | None = None) -> Graph:
    """A zoo name or spec file, validated into a Graph (every shape inferred).

    >>> load("alexnet").node("conv1").out_shape
    (96, 55, 55)
    """
    return validate(load_spec(source), input_shape=input, overrides=overrides)


def inspect(source: str | Path | Graph, *, input=None, overrides: Mapping[str, Any] | None = None, batch: int = 1,
            dtype: DType | str = DType.FLOAT32, crosscheck: bool = False) -> Report:
    """Every figure of every layer, by formula; with crosscheck=True also the peers' counts (needs torch).

    >>> inspect("lenet").totals.params
    61706
    """
    graph = source if isinstance(source, Graph) else load(source, input=input, overrides=overrides)
    report = analyze(graph, batch=batch, dtype=dtype)
    if crosscheck:
        from archviz.crosscheck import run_crosscheck

        report = run_crosscheck(report)
    return report


__all__ = [
    "ArchvizError", "DType", "Graph", "Report", "ShapeError", "SpecError", "UnknownNameError", "UnsupportedOpError",
    "analyze", "inspect", "load", "load_spec", "validate", "zoo_names",
]
