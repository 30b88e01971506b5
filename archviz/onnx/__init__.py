"""ONNX in and out: read_onnx() reads an .onnx file into the same Graph a spec gives (archviz/onnx/read.py), and
export_onnx() writes a Graph as an .onnx file for Netron and ONNX runtimes (archviz/onnx/export.py).

Both need the `onnx` package (pip install 'archviz[onnx]'); it is imported inside them, so importing this package
costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from archviz.graph.ir import Graph


def read_onnx(path: str | Path, input=None) -> Graph:
    """The ONNX model at path as a Graph; see archviz.onnx.read.read_onnx."""
    from archviz.onnx.read import read_onnx as read

    return read(path, input)


def export_onnx(graph: Graph, path: str | Path, **options) -> Path:
    """Write graph as an ONNX file; see archviz.onnx.export.export_onnx."""
    from archviz.onnx.read import import_onnx

    import_onnx()  # a MissingDependencyError saying how to install it, before the modules that import onnx
    from archviz.onnx.export import export_onnx as export

    return export(graph, path, **options)
