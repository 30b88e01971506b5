"""What a run shows while it trains: a rich progress bar per batch on a terminal, plain lines in a log.

On a terminal: one bar for the current epoch with its loss, accuracy, images/s and the ETA of the whole run, and a
line per epoch above it. Anywhere else (a pipe, a file, CI): the same per-epoch lines only, no control characters.
Work that is not an epoch (archviz probe's features and classifiers) shows as a phase: a bar of its steps, or one
line as it starts.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from archviz.render.visible import safe_console, visible


class Reporter(Protocol):
    def epoch_start(self, epoch: int, epochs: int, batches: int, done: int) -> None: ...

    def batch(self, done: int, loss: float, accuracy: float, images_per_second: float, eta_seconds: float) -> None: ...

    def line(self, text: str) -> None: ...

    def phase(self, name: str, total: int) -> None: ...

    def step(self, done: int) -> None: ...

    def close(self) -> None: ...


class Silent:
    def epoch_start(self, epoch, epochs, batches, done):
        pass

    def batch(self, done, loss, accuracy, images_per_second, eta_seconds):
        pass

    def line(self, text):
        pass

    def phase(self, name, total):
        pass

    def step(self, done):
        pass

    def close(self):
        pass


class Lines(Silent):
    """Plain lines, flushed one by one so that a log shows each epoch as it ends."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def line(self, text):
        stream = self.stream or sys.stdout
        stream.write(visible(text) + "\n")
        stream.flush()

    def phase(self, name, total):
        self.line(f"{name} ({total} steps)")


class Bar:
    """rich's live progress bar; epoch lines print above it."""

    def __init__(self, console=None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), console=console or safe_console(markup=False),
                                 transient=True)
        self.task = None
        self.progress.start()

    def epoch_start(self, epoch, epochs, batches, done):
        self.phase(f"epoch {epoch}/{epochs}", batches, done)

    def phase(self, name, total, done=0):
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total, completed=done, stats="")

    def step(self, done):
        self.progress.update(self.task, completed=done)

    def batch(self, done, loss, accuracy, images_per_second, eta_seconds):
        stats = (f"loss {loss:.4f}  acc {accuracy:.1%}  {images_per_second:,.0f} img/s  "
                 f"ETA {format_seconds(eta_seconds)}")
        self.progress.update(self.task, completed=done, stats=stats)

    def line(self, text):
        self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def close(self):
        self.progress.stop()


def reporter(show: bool | None, *, stream: TextIO | None = None) -> Reporter:
    """show=None: a bar on a terminal, lines elsewhere; True: lines at least; False: nothing."""
    if show is False:
        return Silent()
    out = stream or sys.stdout
    if show is None and out.isatty():
        return Bar(safe_console(file=out, markup=False))
    return Lines(out)


def format_seconds(seconds: float) -> str:
    """
    >>> format_seconds(3725.2)
    '1:02:05'
    """
    if seconds != seconds or seconds == float("inf"):  # NaN or infinite: no estimate yet
        return "-:--"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
