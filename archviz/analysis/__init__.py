from archviz.analysis.report import CONVENTIONS, DType, LayerStats, Report, Totals, analyze

__all__ = ["CONVENTIONS", "DType", "LayerStats", "Report", "Totals", "analyze"]
