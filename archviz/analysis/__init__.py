import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archviz.analysis.report import CONVENTIONS, DType, LayerStats, Report, Totals, analyze


def __getattr__(name: str):  # on first use: `archviz list` reads its cached figures without the analysis modules
    if name in __all__:
        return getattr(importlib.import_module("archviz.analysis.report"), name)
    raise AttributeError(f"module 'archviz.analysis' has no attribute {name!r}")


__all__ = ["CONVENTIONS", "DType", "LayerStats", "Report", "Totals", "analyze"]
