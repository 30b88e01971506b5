"""Errors a user can act on. The CLI prints any of these as one line and exits with status 2."""

from __future__ import annotations

MAX_MESSAGE_CHARS = 480  # with "archviz: error: " a line stays under 500 characters, whatever value it quotes


class ArchvizError(Exception):
    """Base of every error caused by user input rather than by a bug in archviz."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, layer: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.layer = layer
        super().__init__(self.__str__())

    def where(self) -> str:
        place = display_path(self.file) if self.file else ""
        if self.line is not None:
            place = f"{place}:{self.line}" if place else f"line {self.line}"
        return place

    def __str__(self) -> str:
        """One line of at most MAX_MESSAGE_CHARS: a name from the spec that holds a line break or a control character
        is escaped, and a long quoted value loses its middle."""
        prefix = self.where()
        label = f"layer {self.layer}" if self.layer and self.layer.replace(".", "").isdigit() else self.layer
        layer = f"{label}: " if self.layer and not self.message.startswith(self.layer) else ""
        text = f"{prefix}: {layer}{self.message}" if prefix else f"{layer}{self.message}"
        text = shortened(text)  # before escaping, which is slow on a megabyte of text
        return text if text.isprintable() else shortened("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))

    def located(self, *, file: str | None = None, line: int | None = None, layer: str | None = None) -> "ArchvizError":
        """Fill in whatever part of the location is still unknown."""
        self.file = self.file or file
        self.line = self.line if self.line is not None else line
        self.layer = self.layer or layer
        self.args = (self.__str__(),)
        return self


class SpecError(ArchvizError):
    """The spec file is malformed: bad YAML, unknown key, wrong type, bad expression."""


class ShapeError(ArchvizError):
    """A layer cannot accept the shape it is given."""


class UnsupportedOpError(ArchvizError):
    """An operation the formula engine does not know."""


class UnknownNameError(ArchvizError):
    """An unknown model, layer, block or parameter name."""


class MissingDependencyError(ArchvizError):
    """An optional dependency (torch, graphviz, ...) is not installed."""


def shortened(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """text, or its start and end around " ... " when it is longer than limit."""
    if len(text) <= limit:
        return text
    head = (limit - 5) * 2 // 3  # the start names the place and the problem; the end says what was expected
    return f"{text[:head]} ... {text[len(text) - (limit - 5 - head):]}"


def display_path(file: str) -> str:
    """A path as a user would type it: relative to the working directory when it lies inside it."""
    from pathlib import Path

    try:
        return str(Path(file).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return file


def closest(name: str, candidates, *, limit: int = 3) -> str:
    """' (did you mean: a, b?)' for the candidates closest to name, or '' when none is close."""
    import difflib

    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=limit, cutoff=0.5)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""
