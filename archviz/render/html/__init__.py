"""HTML reports: self-contained pages for one model, a comparison, and an index of the zoo."""

from archviz.render.html.page import DiagramViews, comparison_report_html, index_html, model_report_html

__all__ = ["DiagramViews", "comparison_report_html", "index_html", "model_report_html"]
