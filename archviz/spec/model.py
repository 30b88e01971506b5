"""The spec as read from YAML: top-level keys checked, `extends` merged, a variant's parameters applied.

Layer entries stay as located YAML data; graph/build.py walks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archviz.errors import SpecError, closest
from archviz.spec.published import Published, read_published
from archviz.spec.yaml_loader import LocatedDict, LocatedList, load_yaml_file, load_yaml_text

TOP_LEVEL_KEYS = ("name", "description", "source", "extends", "input", "params", "blocks", "layers", "variants",
                  "torchvision", "published")
BLOCK_KEYS = ("description", "params", "layers", "inline")
VARIANT_KEYS = ("description", "params", "input", "torchvision")
REQUIRED_PARAM = "required"  # a block parameter written `planes: required` has no default
MAX_EXTENDS_DEPTH = 8


@dataclass(frozen=True)
class BlockDef:
    """A named, parameterised group of layers, defined once in `blocks:` and used like a layer."""

    name: str
    params: dict[str, Any]
    layers: LocatedList
    inline: bool = False  # inline blocks splice their layers into the caller's numbering (torch Sequential)
    description: str = ""
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    params: dict[str, Any]
    input: Any = None
    torchvision: str | None = None


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    input: Any
    params: dict[str, Any]
    blocks: dict[str, BlockDef]
    layers: LocatedList
    file: str | None = None
    source: str = ""
    torchvision: str | None = None
    variants: dict[str, Variant] = field(default_factory=dict)
    published: tuple[Published, ...] = ()  # the source's own figures (archviz paper); not inherited by `extends`


def read_spec(path: Path, *, variant: str | None = None) -> Spec:
    """Read a spec file (following `extends`) and, if named, apply one of its variants."""
    spec = _read(Path(path), depth=0)
    if variant is None or variant == spec.name:
        return spec
    chosen = spec.variants[variant]
    return Spec(
        name=chosen.name,
        description=chosen.description or spec.description,
        input=chosen.input if chosen.input is not None else spec.input,
        params={**spec.params, **chosen.params},
        blocks=spec.blocks,
        layers=spec.layers,
        file=spec.file,
        source=spec.source,
        torchvision=chosen.torchvision,
        variants=spec.variants,
    )


def read_spec_text(text: str, *, origin: str) -> Spec:
    """A spec held as text inside another file (a run's checkpoint): plain data, read without touching the file
    system, so `extends` is refused. `origin` names where the text came from, for messages.

    >>> read_spec_text("name: tiny\\ninput: [1, 4, 4]\\nlayers: [flatten]", origin="last.pt").name
    'tiny'
    """
    data = load_yaml_text(text, file=origin)
    if isinstance(data, LocatedDict) and "extends" in data:
        raise SpecError("a spec stored in a run is self-contained: `extends` is not followed", file=origin,
                        line=data.line_of("extends"))
    return _from_data(data, file=origin, stem=Path(origin).stem, base=None)


def _read(path: Path, *, depth: int) -> Spec:
    data = load_yaml_file(path)
    file = str(path)
    base = _extended(data, path, file, depth) if isinstance(data, LocatedDict) else None
    return _from_data(data, file=file, stem=path.stem, base=base)


def _extended(data: LocatedDict, path: Path, file: str, depth: int) -> Spec | None:
    """The spec that `extends:` names, relative to the extending file's folder; None without `extends`."""
    if "extends" not in data:
        return None
    if depth >= MAX_EXTENDS_DEPTH:
        raise SpecError(f"`extends` is nested more than {MAX_EXTENDS_DEPTH} deep", file=file, line=data.line_of("extends"))
    target = data["extends"]
    if not isinstance(target, str):
        raise SpecError("`extends` must be a file name", file=file, line=data.line_of("extends"))
    try:
        base_path = (path.parent / target).resolve()
        found = base_path.exists()
    except (OSError, ValueError) as error:  # a name too long for the system, a NUL byte
        reason = error.strerror if isinstance(error, OSError) else error
        raise SpecError(f"`extends` names {target!r}, which cannot be a file name ({reason})", file=file,
                        line=data.line_of("extends")) from None
    if not found:
        raise SpecError(f"`extends` names {target!r}, which does not exist", file=file, line=data.line_of("extends"))
    return _read(base_path, depth=depth + 1)


def _from_data(data, *, file: str, stem: str, base: Spec | None) -> Spec:
    if not isinstance(data, LocatedDict):
        raise SpecError("a spec must be a mapping with at least `layers:`", file=file, line=getattr(data, "line", 1))
    _check_keys(data, TOP_LEVEL_KEYS, "top-level key", file)
    name = data.get("name", base.name if base and "layers" not in data else stem)
    if not isinstance(name, str) or not name:
        raise SpecError("`name` must be a non-empty string", file=file, line=data.line_of("name"))
    layers = data.get("layers", base.layers if base else None)
    if layers is None and "layers" not in data:  # a library of blocks for `extends`; validate() refuses to build it
        layers = LocatedList()
    if not isinstance(layers, LocatedList):
        raise SpecError("`layers` must be a list of layer entries", file=file, line=data.line_of("layers"))
    params = {**(base.params if base else {}), **_mapping(data, "params", file)}
    blocks = {**(base.blocks if base else {}), **_blocks(data, file)}
    return Spec(
        name=name,
        description=_string(data, "description", file, base.description if base else ""),
        input=data.get("input", base.input if base else None),
        params=params,
        blocks=blocks,
        layers=layers,
        file=file,
        source=_string(data, "source", file, base.source if base else ""),
        torchvision=data.get("torchvision"),
        variants=_variants(data, file),
        published=read_published(data.get("published"), file=file),
    )


def _check_keys(mapping: LocatedDict, allowed, what: str, file: str | None) -> None:
    for key in mapping:
        if key not in allowed:
            raise SpecError(f"unknown {what} {key!r}{closest(key, allowed)}", file=file, line=mapping.line_of(key))


def _mapping(data: LocatedDict, key: str, file: str | None) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"`{key}` must be a mapping", file=file, line=data.line_of(key))
    return dict(value)


def _string(data: LocatedDict, key: str, file: str | None, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise SpecError(f"`{key}` must be a string", file=file, line=data.line_of(key))
    return value


def _blocks(data: LocatedDict, file: str | None) -> dict[str, BlockDef]:
    blocks = {}
    raw = data.get("blocks") or LocatedDict()
    if not isinstance(raw, LocatedDict):
        raise SpecError("`blocks` must map block names to definitions", file=file, line=data.line_of("blocks"))
    from archviz.ops import canonical_name

    for name, body in raw.items():
        line = raw.line_of(name)
        if canonical_name(str(name)) or name in STRUCTURAL_HEADS:
            raise SpecError(f"block name {name!r} is already a layer type", file=file, line=line)
        if not isinstance(body, LocatedDict):
            raise SpecError(f"block {name!r} must be a mapping with `layers:`", file=file, line=line)
        _check_keys(body, BLOCK_KEYS, f"key in block {name!r}", file)
        layers = body.get("layers")
        if not isinstance(layers, LocatedList):
            raise SpecError(f"block {name!r} needs a `layers:` list", file=file, line=line)
        inline = body.get("inline", False)
        if not isinstance(inline, bool):
            raise SpecError(f"`inline` of block {name!r} must be true or false", file=file, line=body.line_of("inline"))
        blocks[name] = BlockDef(
            name=name, params=_mapping(body, "params", file), layers=layers, inline=inline,
            description=_string(body, "description", file, ""), file=file, line=line,
        )
    return blocks


def _variants(data: LocatedDict, file: str | None) -> dict[str, Variant]:
    raw = data.get("variants") or LocatedDict()
    if not isinstance(raw, LocatedDict):
        raise SpecError("`variants` must map names to parameter sets", file=file, line=data.line_of("variants"))
    variants = {}
    for name, body in raw.items():
        if not isinstance(body, LocatedDict):
            raise SpecError(f"variant {name!r} must be a mapping", file=file, line=raw.line_of(name))
        _check_keys(body, VARIANT_KEYS, f"key in variant {name!r}", file)
        variants[name] = Variant(
            name=name, description=_string(body, "description", file, ""), params=_mapping(body, "params", file),
            input=body.get("input"), torchvision=body.get("torchvision"),
        )
    return variants


# Entry heads that are structure, not ops or blocks (see graph/build.py).
STRUCTURAL_HEADS = ("sequential", "group", "add", "concat")
