"""Safe YAML loading that remembers where each mapping and list came from.

PyYAML's SafeLoader builds no objects beyond plain data; on top of it we reject duplicate keys
(PyYAML silently keeps the last one) and anchors/aliases (the door to "billion laughs" expansion;
blocks are the spec language's way to reuse structure).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from archviz.errors import SpecError

MAX_SPEC_BYTES = 5_000_000  # a hand-written spec is a few KB; this bounds parse time and memory
MAX_YAML_DEPTH = 200  # lists and mappings inside each other; a spec needs a few dozen, Python's stack about 300


class LocatedDict(dict):
    """A mapping that knows its file, the line it started on and the line of each key."""

    file: str | None = None
    line: int | None = None
    key_lines: dict

    def line_of(self, key) -> int | None:
        return getattr(self, "key_lines", {}).get(key, self.line)


class LocatedList(list):
    """A list that knows its file, the line it started on and the line of each item."""

    file: str | None = None
    line: int | None = None
    item_lines: list

    def line_of(self, index: int) -> int | None:
        lines = getattr(self, "item_lines", [])
        return lines[index] if index < len(lines) else self.line


LIBYAML = yaml.__with_libyaml__  # libyaml's scanner and parser: ~4x faster than PyYAML's own
_PARSER = (yaml.cyaml.CParser,) if LIBYAML else (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)


class _SpecLoader(yaml.composer.Composer, *_PARSER, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """SafeLoader's parts, parsing with libyaml where PyYAML has it; composing stays in Python (below)."""

    spec_file: str | None = None
    depth = 0

    def __init__(self, text: str):
        if LIBYAML:
            yaml.cyaml.CParser.__init__(self, text)
        else:
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise SpecError(
                f"YAML alias *{event.anchor} is not supported; define a block and use it instead",
                line=event.start_mark.line + 1,
            )
        if self.depth >= MAX_YAML_DEPTH:  # PyYAML composes and constructs recursively: [[[[...]]]] ends the stack
            raise SpecError(f"YAML is nested more than {MAX_YAML_DEPTH} deep", line=event.start_mark.line + 1)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node, deep=False):
        if not isinstance(node, yaml.ScalarNode):
            return super().construct_object(node, deep)
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, LookupError, AttributeError) as error:  # PyYAML's `!!float abc`, `!!bool x`
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(None, None, f"{shown!r} is not a valid {tag}",
                                                    node.start_mark) from error

    def construct_mapping(self, node, deep=False):
        _expect(node, yaml.MappingNode)
        mapping = LocatedDict()
        mapping.file = self.spec_file
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise SpecError(f"mapping key {key!r} must be a plain name", line=key_node.start_mark.line + 1)
            if key in mapping:
                raise SpecError(
                    f"duplicate key {key!r} (first on line {mapping.key_lines[key]})",
                    line=key_node.start_mark.line + 1,
                )
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = key_node.start_mark.line + 1
        return mapping

    def construct_sequence(self, node, deep=False):
        _expect(node, yaml.SequenceNode)
        items = LocatedList(self.construct_object(child, deep=True) for child in node.value)
        items.file = self.spec_file
        items.line = node.start_mark.line + 1
        items.item_lines = [child.start_mark.line + 1 for child in node.value]
        return items


def _expect(node, kind) -> None:
    """PyYAML's own check, which the constructors above replace: `!!set x` or `!!seq x` tag a plain scalar."""
    if not isinstance(node, kind):
        expected = "mapping" if kind is yaml.MappingNode else "list"
        raise yaml.constructor.ConstructorError(None, None, f"expected a {expected}, found a {node.id}",
                                                node.start_mark)


_SpecLoader.add_constructor("tag:yaml.org,2002:map", _SpecLoader.construct_mapping)
_SpecLoader.add_constructor("tag:yaml.org,2002:seq", _SpecLoader.construct_sequence)


def load_yaml_text(text: str, *, file: str | None = None):
    """Parse YAML text into LocatedDict/LocatedList/scalars, turning every YAML problem into a SpecError."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"spec is {len(text):,} bytes; the limit is {MAX_SPEC_BYTES:,}", file=file)
    try:
        loader = _SpecLoader(text)  # derives from SafeLoader: plain data only, never objects
    except yaml.reader.ReaderError as error:  # PyYAML's reader refuses control characters before parsing
        raise _bad_character(error, text, file) from None
    loader.spec_file = file
    try:
        return loader.get_single_data()
    except SpecError as error:
        raise error.located(file=file)
    except yaml.reader.ReaderError as error:  # libyaml's reader, while parsing
        raise _bad_character(error, text, file) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        problem = error.problem or error.context or "invalid YAML"
        if problem == "exceeded maximum nesting depth":  # libyaml's own limit (1,000), above ours
            raise SpecError(f"YAML is nested more than {MAX_YAML_DEPTH} deep", file=file, line=line) from None
        if problem.startswith("could not determine a constructor for the tag"):  # !!python/object and the like
            tag = problem.split("'")[1].replace("tag:yaml.org,2002:", "!!")
            raise SpecError(f"YAML tag {tag} is not allowed: a spec holds plain data only", file=file,
                            line=line) from None
        if error.context and error.context_mark and error.problem_mark and error.context_mark.line != mark.line:
            problem += f" ({error.context} that starts on line {error.context_mark.line + 1})"
        raise SpecError(f"invalid YAML: {problem}", file=file, line=line) from None
    except yaml.YAMLError as error:
        raise SpecError(f"invalid YAML: {error}", file=file) from None
    except RecursionError:
        raise SpecError("YAML is nested too deeply", file=file) from None
    finally:
        loader.dispose()


def _bad_character(error: yaml.reader.ReaderError, text: str, file: str | None) -> SpecError:
    line = text[:error.position].count("\n") + 1
    character = chr(error.character) if isinstance(error.character, int) else error.character
    return SpecError(f"invalid YAML: character {character!r} is not allowed", file=file, line=line)


def load_yaml_file(path: Path):
    """Read and parse a spec file; a missing or unreadable file, or one that is not a regular file, is a SpecError
    naming it."""
    try:
        raw = _read_regular(path)
    except FileNotFoundError:
        raise SpecError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a spec file", file=str(path)) from None
    except OSError as error:
        raise SpecError(f"cannot read file: {error.strerror}", file=str(path)) from None
    except ValueError:  # os.open refuses a NUL byte in a path
        raise SpecError("cannot read file: its name holds a NUL byte", file=str(path)) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"spec is more than {MAX_SPEC_BYTES:,} bytes, the limit", file=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise SpecError(f"not UTF-8 text: byte {raw[error.start]:#04x} at offset {error.start}", file=str(path),
                        line=line) from None
    return load_yaml_text(text, file=str(path))


def _read_regular(path: Path) -> bytes:
    """The first MAX_SPEC_BYTES + 1 bytes of a regular file. Opened without blocking and checked before reading:
    a FIFO waits forever for a writer, /dev/zero never ends, a terminal waits for input."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as stream:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError
        if not stat.S_ISREG(mode):
            kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise SpecError(f"is {kind}, not a regular file; a spec is read from a file only", file=str(path))
        os.set_blocking(fd, True)
        return stream.read(MAX_SPEC_BYTES + 1)
