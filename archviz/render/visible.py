"""Text from files, shown safely: control characters made visible in plain text, removed from rich's output.

A name, description or note read from a spec, an ONNX file, a checkpoint or a module's class names can hold
terminal control sequences: ESC[2J clears the screen, an OSC sequence retitles the window, a bidi override
(U+202E) shows text in another order than it is. Every renderer's output passes through here:
- plain text (Keras layout, CSV, Markdown, progress lines, notes): each such character becomes its escape, `\\x1b`;
- rich's renderables (the tables of inspect, explain, diff, list, the training bar): each is removed, segment by
  segment, after layout. Rich counts these characters as zero cells wide, so removing them keeps columns aligned,
  and rich's own styling, which is not in the text, is untouched.

Unsafe: C0 controls but newline and tab, DEL, C1 controls (0x80-0x9f; 0x9b opens a sequence like ESC [), and the
bidi controls of Unicode's Bidi_Control property.
"""

from __future__ import annotations

import re

BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{BIDI_CONTROLS}\u2028\u2029]")


def visible(text: str) -> str:
    """Each control character of `text` written as its escape; newlines and tabs kept.

    >>> visible("a\\x1b[2Jb\\u202ec\\n")
    'a\\\\x1b[2Jb\\\\u202ec\\n'
    """
    return _UNSAFE.sub(lambda match: repr(match.group())[1:-1], text) if _UNSAFE.search(text) else text


def removed(text: str) -> str:
    """`text` without its control characters (newlines and tabs kept).

    >>> removed("a\\x1b]0;title\\x07b")
    'a]0;titleb'
    """
    return _UNSAFE.sub("", text)


def has_unsafe(text: str) -> bool:
    return _UNSAFE.search(text) is not None


class _Visible:
    """A renderable drawn as `inner` is, with control characters removed from its text (not from rich's own
    control segments: cursor moves of a live progress bar)."""

    def __init__(self, inner):
        self.inner = inner

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        for segment in console.render(self.inner, options):
            if segment.control or not _UNSAFE.search(segment.text):
                yield segment
            else:
                yield Segment(removed(segment.text), segment.style)

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement

        return Measurement.get(console, options, self.inner)


def safe_console(**options):
    """A rich Console whose every print passes through _Visible; options as rich.console.Console's."""
    from rich.console import Console, RenderHook

    class _Hook(RenderHook):
        def process_renderables(self, renderables):
            return [_Visible(renderable) for renderable in renderables]

    console = Console(**options)
    console.push_render_hook(_Hook())
    return console
