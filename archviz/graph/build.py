"""validate(): walk a Spec's layer entries in order, expand blocks and repeats, infer every shape, and freeze a Graph.

A layer entry is one item of a `layers:` list:
    - relu                                     an op with default arguments
    - conv2d: {out_channels: 64, kernel_size: 3}
      name: conv1                              optional: its name (else its index, as in torch's Sequential)
      repeat: 2                                optional: that many copies (with a name: a sequential of them)
      if: $stride != 1                         optional: skipped when false
      note: "..."                              optional: shown by `archviz explain` (errata, paper remarks)
    - my_block: {planes: 64}                   a block from `blocks:`
    - sequential: [...]                        a nested, numbered group (torch nn.Sequential)
    - group: [...]                             layers spliced into the current numbering
    - add: [[...], []]                         branches from one input, summed ([] is the identity)
    - concat: [[...], [...]]                   branches concatenated along channels
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

from archviz.errors import ArchvizError, ShapeError, SpecError, UnknownNameError, UnsupportedOpError, closest
from archviz.graph.ir import INPUT, Graph, Node, Scope, Shape
from archviz.ops import all_names, canonical_name, get_op
from archviz.ops.base import fmt_shape
from archviz.spec.args import MAX_DIMENSION, normalize_args, resolve_value
from archviz.spec.model import REQUIRED_PARAM, STRUCTURAL_HEADS, BlockDef, Spec
from archviz.spec.yaml_loader import LocatedDict, LocatedList

META_KEYS = ("name", "repeat", "if", "note")
MAX_NODES = 100_000  # 200x ResNet-152's layers; bounds the time (seconds) and memory (~1 GB) of any spec
MAX_ENTRIES = 4 * MAX_NODES  # entries expanded, also those that make no layer (`group: []`, a false `if`)
MAX_PATH_CHARS = 1_000  # of a layer path ("layer3.2.conv2"); long names nested deep would fill memory
MAX_NESTING = 64  # blocks inside blocks; also stops a block that uses itself
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")


class Tensor(NamedTuple):
    name: str  # the node that produced it, or INPUT
    shape: Shape


@dataclass(frozen=True)
class Where:
    file: str | None
    line: int | None
    note: str | None = None


class _Namespace:
    """Where new layers get their names: a path prefix and the running index of its children."""

    def __init__(self, path: str):
        self.path = path
        self.count = 0

    def child(self, name: str | None) -> str:
        label = str(self.count) if name is None else name
        self.count += 1
        return f"{self.path}.{label}" if self.path else label


def validate(spec: Spec, *, input_shape=None, overrides: Mapping[str, Any] | None = None) -> Graph:
    """Build the frozen graph of a spec, with every output shape inferred.

    >>> from archviz.spec.zoo import load_zoo
    >>> validate(load_zoo("lenet")).nodes[0].out_shape
    (6, 28, 28)
    """
    params = resolve_params(spec, overrides or {})
    if input_shape is not None:
        shape = parse_input(input_shape)  # the caller's (--input): not the spec file's mistake
    else:
        shape = parse_input(spec.input, file=spec.file)
    builder = _Builder(spec, params)
    out = builder.run_list(spec.layers, Tensor(INPUT, shape), _Namespace(""), params, depth=0)
    if not builder.nodes:
        raise SpecError("spec has no layers (`layers:` is empty or `if` skipped every entry)", file=spec.file,
                        line=getattr(spec.layers, "line", None))
    return Graph(
        name=spec.name, description=spec.description, input_shape=shape, nodes=tuple(builder.nodes),
        scopes=tuple(builder.scopes), output=out.name, params=MappingProxyType(params), source=spec.source,
        torchvision=spec.torchvision,
    )


def resolve_params(spec: Spec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    for key in overrides:
        if key not in spec.params:
            known = ", ".join(spec.params) or "none"
            raise UnknownNameError(f"--set {key}: {spec.name} has no parameter {key!r}{closest(key, spec.params)} (its parameters: {known})")
    merged = {**spec.params, **overrides}
    resolved: dict[str, Any] = {}
    for key, value in merged.items():
        try:
            resolved[key] = resolve_value(value, resolved)
        except SpecError as error:
            raise error.located(file=spec.file, layer=f"params.{key}")
    return resolved


def parse_input(value, *, file: str | None = None) -> Shape:
    """[3, 224, 224], "3x224x224" or "3,224,224" -> (3, 224, 224)."""
    given, line = value, getattr(value, "line", None)
    if value is None:
        raise SpecError("no input shape: add `input: [C, H, W]` to the spec or pass --input CxHxW", file=file)
    if isinstance(value, str):
        parts = re.split(r"[x,\s]+", value.strip().lower())
        try:
            value = [int(p) for p in parts if p]
        except ValueError:
            raise SpecError(f"input shape {value!r} is not like 3x224x224", file=file) from None
    if not isinstance(value, (list, tuple)) or not value:
        raise SpecError(f"input shape {given!r} is not like [3, 224, 224]", file=file, line=line)
    for dim in value:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIMENSION:
            raise SpecError(f"input shape {given!r}: every size must be an integer from 1 to {MAX_DIMENSION:,}",
                            file=file, line=line)
    return tuple(value)


class _Builder:
    def __init__(self, spec: Spec, params: dict[str, Any]):
        self.spec = spec
        self.params = params
        self.nodes: list[Node] = []
        self.scopes: list[Scope] = []
        self.taken: dict[str, int | None] = {INPUT: None}
        self.suffixes: dict[str, int] = {}  # free_name's last suffix per base path: taken names are never freed
        self.entries = 0  # entries expanded so far, nodes or not; see MAX_ENTRIES

    # --- lists and entries ---------------------------------------------------------------------------
    def run_list(self, entries, tensor: Tensor, ns: _Namespace, scope: dict, *, depth: int) -> Tensor:
        if not isinstance(entries, list):
            raise SpecError(f"expected a list of layers, got {entries!r}", file=self.spec.file)
        file = getattr(entries, "file", None) or self.spec.file
        for index, item in enumerate(entries):
            where = Where(file, _line_of(entries, index))
            tensor = self.run_entry(item, tensor, ns, scope, where, depth=depth)
        return tensor

    def run_entry(self, item, tensor: Tensor, ns: _Namespace, scope: dict, where: Where, *, depth: int) -> Tensor:
        self.count_entry(where)
        try:
            head, body, meta = split_entry(item)
            local = {**scope, **tensor_vars(tensor.shape)} if "if" in meta or "repeat" in meta else scope
            if "if" in meta and not _truth(resolve_value(meta["if"], local)):
                return tensor
            name = _check_name(meta.get("name"))
            repeat = _repeat_count(resolve_value(meta.get("repeat", 1), local)) if "repeat" in meta else None
        except ArchvizError as error:
            raise error.located(file=where.file, line=where.line, layer=ns.path or None)
        note = meta.get("note")
        if note is not None and not isinstance(note, str):
            raise SpecError(f"`note` must be text, got {note!r}", file=where.file, line=where.line)
        if note is not None:
            where = Where(where.file, where.line, note)
        if repeat is None:
            return self.run_head(head, body, name, tensor, ns, scope, where, depth=depth)
        target = ns
        if name is not None:
            target = _Namespace(self.claim(ns.child(name), where))
            self.scopes.append(Scope(target.path, "repeat", file=where.file, line=where.line))
        smallest = 0
        for copy in range(repeat):
            self.count_entry(where)
            before = len(self.nodes)
            tensor = self.run_head(head, body, None, tensor, target, {**scope, "i": copy}, where, depth=depth)
            smallest = len(self.nodes) - before if copy == 0 else min(smallest, len(self.nodes) - before)
            if copy >= 1 and len(self.nodes) + smallest * (repeat - copy - 1) > MAX_NODES:  # nested repeats multiply
                raise SpecError(f"repeat: {repeat:,} copies of {smallest:,} layers each would pass {MAX_NODES:,} "
                                "layers in all; archviz stops here", file=where.file, line=where.line)
        return tensor

    def run_head(self, head, body, name, tensor, ns, scope, where, *, depth: int) -> Tensor:
        if depth > MAX_NESTING:
            raise SpecError(f"blocks are nested more than {MAX_NESTING} deep (does a block use itself?)",
                            file=where.file, line=where.line, layer=ns.path.split(".")[0] or None)
        if head in ("sequential", "group"):
            return self.run_sequential(head, body, name, tensor, ns, scope, where, depth=depth)
        if canonical_name(head) in ("add", "concat"):  # also the aliases cat, concatenate
            return self.run_join(head, body, name, tensor, ns, scope, where, depth=depth)
        if head in self.spec.blocks:
            return self.run_block(self.spec.blocks[head], body, name, tensor, ns, scope, where, depth=depth)
        if canonical_name(head) is None:
            choices = [*all_names(), *self.spec.blocks, *STRUCTURAL_HEADS]
            raise UnsupportedOpError(f"unknown layer type {head!r}{closest(head, choices)}", file=where.file,
                                     line=where.line)
        return self.add_node(head, body, name, [tensor], ns, scope, where)

    def run_sequential(self, head, body, name, tensor, ns, scope, where, *, depth: int) -> Tensor:
        if not isinstance(body, list):
            raise SpecError(f"`{head}` takes a list of layers", file=where.file, line=where.line)
        if head == "group":
            if name is not None:
                raise SpecError("a group has no name of its own; use `sequential` for a named one",
                                file=where.file, line=where.line)
            return self.run_list(body, tensor, ns, scope, depth=depth + 1)
        inner = _Namespace(self.claim(ns.child(name), where))
        self.scopes.append(Scope(inner.path, "sequential", file=where.file, line=where.line))
        return self.run_list(body, tensor, inner, scope, depth=depth + 1)

    def run_block(self, block: BlockDef, body, name, tensor, ns, scope, where, *, depth: int) -> Tensor:
        if depth >= MAX_NESTING:  # before its layers reach the general limit in run_head, to name the block
            raise SpecError(f"block {block.name!r} is nested more than {MAX_NESTING} deep (does it use itself?)",
                            file=where.file, line=where.line, layer=ns.path.split(".")[0] or None)
        local = {**scope, **tensor_vars(tensor.shape)}
        bound = bind_block_args(block, body, local, self.params, where)
        inner_scope = {**self.params, **bound}
        if block.inline and name is None:
            return self.run_list(block.layers, tensor, ns, inner_scope, depth=depth + 1)
        inner = _Namespace(self.claim(ns.child(name), where))
        self.scopes.append(Scope(inner.path, "block", block.name, MappingProxyType(bound), where.file, where.line))
        return self.run_list(block.layers, tensor, inner, inner_scope, depth=depth + 1)

    def run_join(self, head, body, name, tensor, ns, scope, where, *, depth: int) -> Tensor:
        args = {}
        branches = body
        if isinstance(body, dict):
            args = {k: v for k, v in body.items() if k != "branches"}
            branches = body.get("branches")
        if not isinstance(branches, list) or len(branches) < 2:
            raise SpecError(f"`{head}` needs a list of at least two branches (a branch is a list of layers; [] passes "
                            "the input through)", file=where.file, line=where.line)
        outputs = []
        for index, branch in enumerate(branches):
            branch_where = Where(where.file, _line_of(branches, index) or where.line)
            if isinstance(branch, list):
                outputs.append(self.run_list(branch, tensor, ns, scope, depth=depth + 1))
                continue
            outputs.append(self.run_entry(branch, tensor, ns, scope, branch_where, depth=depth + 1))
        join_name = name if name is not None else self.free_name(ns, head)
        return self.add_node(head, args, join_name, outputs, ns, scope, where, count=False)

    # --- nodes ---------------------------------------------------------------------------------------
    def add_node(self, head, raw_args, name, inputs: list[Tensor], ns, scope, where, *, count=True) -> Tensor:
        op = get_op(head)
        path = ns.child(name) if count else (f"{ns.path}.{name}" if ns.path else name)
        self.claim(path, where)
        if len(self.nodes) >= MAX_NODES:
            raise SpecError(f"more than {MAX_NODES:,} layers; archviz stops here", file=where.file, line=where.line)
        in_shapes = [t.shape for t in inputs]
        local = {**scope, **tensor_vars(in_shapes[0])} if raw_args else scope
        try:
            attrs = normalize_args(op, raw_args, local)
            attrs = op.resolve(attrs, in_shapes)
            out_shape = tuple(op.infer_shape(attrs, in_shapes))
        except ArchvizError as error:
            raise error.located(file=where.file, line=where.line, layer=path)
        self.nodes.append(Node(
            name=path, op=op.name, attrs=MappingProxyType(attrs), inputs=tuple(t.name for t in inputs),
            in_shapes=tuple(in_shapes), out_shape=out_shape, scope=ns.path, file=where.file, line=where.line,
            note=where.note,
        ))
        return Tensor(path, out_shape)

    def count_entry(self, where: Where) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise SpecError(f"more than {MAX_ENTRIES:,} layer entries to expand (nested repeats multiply); archviz "
                            "stops here", file=where.file, line=where.line)

    def claim(self, path: str, where: Where) -> str:
        if len(path) > MAX_PATH_CHARS:
            raise SpecError(f"layer path {path[:40] + '...'!r} is longer than {MAX_PATH_CHARS:,} characters",
                            file=where.file, line=where.line)
        if path in self.taken:
            first = self.taken[path]
            seen = f" (first on line {first})" if first else ""
            raise SpecError(f"duplicate layer name {path!r}{seen}", file=where.file, line=where.line, layer=path)
        self.taken[path] = where.line
        return path

    def free_name(self, ns: _Namespace, base: str) -> str:
        prefix = f"{ns.path}." if ns.path else ""
        suffix = self.suffixes.get(prefix + base, 0)
        candidate = f"{base}_{suffix}" if suffix else base
        while prefix + candidate in self.taken:
            suffix += 1
            candidate = f"{base}_{suffix}"
        self.suffixes[prefix + base] = suffix
        return candidate


def split_entry(item) -> tuple[str, Any, dict]:
    """(head, body, meta) of one list item; see the module docstring for the forms."""
    if isinstance(item, str):
        return item, None, {}
    if not isinstance(item, dict) or not item:
        raise SpecError(f"a layer entry must be a layer name or a mapping like {{conv2d: {{...}}}}, got {item!r}")
    heads = [k for k in item if k not in META_KEYS]
    if not heads:
        raise SpecError(f"entry {dict(item)!r} has no layer type")
    if len(heads) > 1:
        raise SpecError(f"one layer per list item: found {', '.join(map(repr, heads))} (start each with '- ')")
    meta = {k: item[k] for k in META_KEYS if k in item}
    return str(heads[0]), item[heads[0]], meta


def tensor_vars(shape: Shape) -> dict[str, int]:
    """Names an expression can use for the tensor flowing into an entry."""
    names = {"in_features": shape[-1]}
    if len(shape) == 3:
        names.update(in_channels=shape[0], in_height=shape[1], in_width=shape[2])
    return names


def bind_block_args(block: BlockDef, body, caller_scope: dict, params: dict, where: Where) -> dict[str, Any]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise SpecError(f"arguments of block {block.name!r} must be a mapping, got {body!r}",
                        file=where.file, line=where.line)
    bound: dict[str, Any] = {}
    for key, value in body.items():
        if key not in block.params:
            known = ", ".join(block.params) or "none"
            raise SpecError(f"block {block.name!r} has no parameter {key!r}{closest(key, block.params)} (it takes: {known})",
                            file=where.file, line=body.line_of(key) if isinstance(body, LocatedDict) else where.line)
        bound[key] = resolve_value(value, caller_scope)
    for key, default in block.params.items():
        if key in bound:
            continue
        if default == REQUIRED_PARAM:
            raise SpecError(f"block {block.name!r} needs parameter {key!r}", file=where.file, line=where.line)
        bound[key] = resolve_value(default, {**params, **bound})
    return bound


def _check_name(name) -> str | None:
    if name is None:
        return None
    name = str(name)
    if not NAME_PATTERN.match(name):
        raise SpecError(f"layer name {name!r} may hold only letters, digits and '_'")
    return name


def _repeat_count(value) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NODES:
        raise SpecError(f"repeat must be an integer from 0 to {MAX_NODES:,}, got {value!r}")
    return value


def _truth(value) -> bool:
    if not isinstance(value, (bool, int)):
        raise SpecError(f"`if` must be true or false, got {value!r}")
    return bool(value)


def _line_of(entries, index: int) -> int | None:
    return entries.line_of(index) if isinstance(entries, LocatedList) else None
