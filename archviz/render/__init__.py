"""Renderers: read a Report (or Graph) and write it out as a terminal table, Keras layout, JSON, CSV, Markdown or HTML."""
