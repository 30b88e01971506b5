"""Turning DOT text into SVG, PNG or PDF with Graphviz's `dot`, through the graphviz Python package.

graphviz is imported inside the functions that need it, so `archviz --help` and the formula path stay light, and
DOT output works without Graphviz installed.
"""

from __future__ import annotations

import enum
from typing import Iterable

from archviz.analysis.report import Report
from archviz.errors import MissingDependencyError


class DiagramFormat(enum.StrEnum):
    SVG = "svg"
    PNG = "png"
    PDF = "pdf"
    DOT = "dot"  # the DOT text itself: needs no Graphviz


FORMATS = tuple(f.value for f in DiagramFormat)
INSTALL_DOT = "install Graphviz (apt-get install graphviz, brew install graphviz, or graphviz.org/download)"


def render(dot_text: str, fmt: DiagramFormat | str) -> bytes:
    """The diagram as a file's bytes in the format asked for; DOT is returned as it is, without Graphviz.

    >>> render('digraph { a -> b }', "dot")
    b'digraph { a -> b }'
    """
    fmt = DiagramFormat(fmt)
    if fmt == DiagramFormat.DOT:
        return dot_text.encode("utf-8")
    try:
        import graphviz
    except ImportError:
        raise MissingDependencyError(
            f"writing {fmt.value} needs the graphviz Python package: pip install graphviz (or pip install "
            f"'archviz[report]'), and Graphviz's dot program; a .dot file needs neither"
        ) from None
    try:
        return graphviz.Source(dot_text, engine="dot").pipe(format=fmt.value)
    except graphviz.ExecutableNotFound:
        raise MissingDependencyError(
            f"writing {fmt.value} needs Graphviz's `dot` program, which is not on PATH: {INSTALL_DOT}; "
            "or write DOT text with -o NAME.dot"
        ) from None


def draw(report: Report, fmt: DiagramFormat | str = DiagramFormat.SVG, *, depth: int | None = None,
         expand: bool = False, expanded: Iterable[str] = (), collapsed: Iterable[str] = (),
         rankdir: str = "TB", cost: str | None = None) -> bytes:
    """One call from a Report to a file's bytes: fold state, collect, DOT (boxes filled by kind, or by `cost`:
    macs, params, memory or time), render.

    >>> from archviz import inspect
    >>> draw(inspect("lenet"), "dot").startswith(b'digraph "lenet"')
    True
    """
    from archviz.diagram.collect import collect, fold_state
    from archviz.diagram.dot import to_dot

    state = fold_state(report, depth=depth, expand=expand, expanded=expanded, collapsed=collapsed)
    return render(to_dot(collect(report, state), rankdir=rankdir, cost=cost), fmt)
