"""graph_to_spec(): any Graph (from a spec, a PyTorch trace or an ONNX file) written back as a spec in our language,
for `archviz export-spec`.

validate() of the text gives the same graph: the same layer paths, ops, attributes (a pair of equal sides, (3, 3),
written 3), inputs and shapes, so every figure is the same. The structure comes from graph/structure.py: groups
become `sequential:`s, joins with branches `add: [[...], []]`, repeated groups blocks with parameters and
`repeat:`, other inputs `from:`, tied weights `shares:`. A layer is named only where its name is not the one
validate() would give it (its index, or add, add_1, ... for a join), and only arguments that differ from the op's
default are written.

>>> import archviz
>>> print(graph_to_spec(archviz.load("lenet"), when=None).splitlines()[2])
name: lenet
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import yaml

from archviz.graph.ir import INPUT, Graph, Node
from archviz.graph.structure import (
    Block, Entry, Group, Ref, Structure, canonical_attrs, entry_head, plain, recognise,
)
from archviz.graph.build import takes_branches
from archviz.spec.model import REQUIRED_PARAM


def graph_to_spec(graph: Graph, *, origin: str | None = None, when: datetime | None = ...) -> str:
    """The graph as spec YAML text; `origin` (default: the graph's name) and `when` (default: now; None: no date)
    go in the header comment.

    >>> import archviz
    >>> text = graph_to_spec(archviz.load("resnet18"), when=None)
    >>> "repeat: 2" in text and "basic_block" in text
    True
    """
    if when is ...:
        when = datetime.now(timezone.utc)
    found = recognise(graph)
    writer = _Writer(graph, found.structure, found.blocks)
    layers = writer.entries(found.groups.root.entries, _Context.concrete(graph, found.structure), "")
    stamp = f" on {when.strftime('%Y-%m-%d %H:%M UTC')}" if when is not None else ""
    lines = [f"# Exported by `archviz export-spec` from {origin or graph.name}{stamp}.",
             f"# {len(graph.nodes):,} layers; `archviz inspect` of this file gives the figures of the source."]
    lines.append(f"name: {_block_scalar(graph.name)}")
    for key in ("description", "source", "torchvision"):
        if getattr(graph, key):
            lines.append(f"{key}: {_block_scalar(getattr(graph, key))}")
    lines.append(f"input: {_flow(list(graph.input_shape))}")
    if writer.defined:
        lines += ["", "blocks:"]
        for block, body in writer.defined.values():
            lines.append(f"  {block.name}:")
            if block.params:
                params = {p.name: REQUIRED_PARAM if p.default is None else p.default for p in block.params}
                lines.append(f"    params: {_flow(params)}")
            lines.append("    layers:")
            lines += _indent(body, 6)
    lines += ["", "layers:", *_indent(layers, 2)]
    return "\n".join(lines) + "\n"


# --- writing --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Context:
    """How the layers of one place are written: with their own values (the model's layers, or a group written in
    place), or as the body of a block, whose slots hold literals and parameters and whose uses are `prefixes`."""

    graph: Graph
    shapes: Structure
    rep: str  # the path of the group the text is written from
    prefixes: tuple[str, ...]  # the same group in every use the text stands for
    values: dict | None = None  # (layer, argument) -> literal or Ref; None: the layers' own values

    @classmethod
    def concrete(cls, graph: Graph, shapes: Structure) -> _Context:
        return cls(graph, shapes, "", ("",))

    def value(self, layer: str, arg: str):
        if self.values is not None and (layer, arg) in self.values:
            return self.values[layer, arg]
        return self.shapes.attrs(self.graph.by_name[layer])[arg]

    def aligned(self, layer: str) -> list[Node]:
        """The layer in every use this text stands for."""
        tail = layer[len(self.rep):]
        return [self.graph.by_name[prefix + tail] for prefix in self.prefixes]


class _Names:
    """The names validate() gives unnamed entries of one group: its running index, and free names for joins."""

    def __init__(self, root: bool):
        self.count = 0
        self.taken: set[str] = {INPUT} if root else set()
        self.suffixes: dict[str, int] = {}

    def default_join(self, base: str) -> tuple[str, int]:
        suffix = self.suffixes.get(base, 0)
        candidate = f"{base}_{suffix}" if suffix else base
        while candidate in self.taken:
            suffix += 1
            candidate = f"{base}_{suffix}"
        return candidate, suffix


class _Writer:
    def __init__(self, graph: Graph, shapes: Structure, blocks: dict[str, Block]):
        self.graph = graph
        self.shapes = shapes
        self.blocks = blocks
        self.defined: dict[str, tuple[Block, list[str]]] = {}

    # one list of entries, with a repeat for a run of identical block uses
    def entries(self, entries: list[Entry], ctx: _Context, path: str, names: _Names | None = None) -> list[str]:
        names = names or _Names(root=not path)
        lines: list[str] = []
        index = 0
        while index < len(entries):
            entry = entries[index]
            run = self.run(entries, index, ctx, names.count)
            if run > 1:
                block, args = self.use(entry.space, ctx)
                lines += _item([f"{block.name}: {_flow(args)}" if args else f"{block.name}: {{}}", f"repeat: {run}"])
                for _ in range(run):
                    names.taken.add(str(names.count))
                    names.count += 1
                index += run
                continue
            lines += _item(self.entry(entry, ctx, path, names))
            index += 1
        return lines

    def run(self, entries: list[Entry], index: int, ctx: _Context, count: int) -> int:
        """How many entries from index are uses of one block with the same arguments, unnamed and chained."""
        first = entries[index]
        if first.kind != "space" or first.source is not None or first.space.path not in self.blocks:
            return 1
        block, args = self.use(first.space, ctx)
        length = 0
        for entry in entries[index:]:
            if (entry.kind != "space" or entry.source is not None or entry.space.short != str(count + length)
                    or self.blocks.get(entry.space.path) is not block or self.use(entry.space, ctx)[1] != args):
                break
            length += 1
        return length

    def entry(self, entry: Entry, ctx: _Context, path: str, names: _Names) -> list[str]:
        meta: dict[str, Any] = {}
        if entry.kind == "space":
            lines = self.space(entry.space, ctx, meta)
            if "name" not in meta and entry.space.short != str(names.count):
                meta["name"] = entry.space.short
            names.taken.add(entry.space.short)
            names.count += 1
        else:
            node = entry.node
            head = entry_head(node)
            args = self.args(node, ctx)
            if entry.kind == "join":
                body = self.branches(entry.branches, ctx, path, names)
                lines = [f"{head}:", *_indent(body, 2)]
                if args:
                    lines = [f"{head}:", *_indent([f"{k}: {_value(v)}" for k, v in args.items()], 2), "  branches:",
                             *_indent(body, 4)]
            if takes_branches(node.op):
                default, suffix = names.default_join(head)
                if default == node.short_name:
                    names.suffixes[head] = suffix
                else:
                    meta["name"] = node.short_name
            else:
                if node.short_name != str(names.count):
                    meta["name"] = node.short_name
                names.count += 1
            names.taken.add(node.short_name)
            if node.shares:
                meta["shares"] = self.shapes.ref(node.shares, path, entry.first)
            if node.note is not None:
                meta["note"] = node.note
        if entry.source is not None:
            refs = self.shapes.source_text(entry, path)
            meta["from"] = refs[0] if len(refs) == 1 else list(refs)
        if entry.kind == "node":
            lines = [f"{head}: {_flow(args)}" if args or meta else head]
        order = ("name", "repeat", "from", "shares", "note")
        return [*lines, *(f"{key}: {_value(meta[key])}" for key in order if key in meta)]

    def branches(self, branches: list[list[Entry]], ctx: _Context, path: str, names: _Names) -> list[str]:
        lines = []
        for branch in branches:
            if not branch:
                lines += _item(["[]"])
            elif len(branch) == 1:
                lines += _item(self.entry(branch[0], ctx, path, names))
            else:
                lines += _item(self.entries(branch, ctx, path, names))
        return lines

    def space(self, space: Group, ctx: _Context, meta: dict) -> list[str]:
        """A group: a use of its block, a repeat of one block that fills it, or a sequential written in place."""
        if space.path in self.blocks:
            block, args = self.use(space, ctx)
            return [f"{block.name}: {_flow(args)}" if args else f"{block.name}: {{}}"]
        entries = space.entries
        if len(entries) > 1 and self.run(entries, 0, ctx, 0) == len(entries):
            block, args = self.use(entries[0].space, ctx)
            meta["name"], meta["repeat"] = space.short, len(entries)
            return [f"{block.name}: {_flow(args)}" if args else f"{block.name}: {{}}"]
        return ["sequential:", *_indent(self.entries(entries, ctx, space.path), 2)]

    def use(self, space: Group, ctx: _Context) -> tuple[Block, dict]:
        """The block a group is a use of, and its arguments there (defaults left out); defines the block once."""
        block = self.blocks[space.path]
        slots = self.shapes.slots[space.path]
        args = {}
        for param in block.params:
            layer, arg = slots[param.slot]
            value = ctx.value(layer, arg)
            if param.default is None or isinstance(value, Ref) or plain(value) != param.default:
                args[param.name] = value
        if block.name not in self.defined:
            self.defined[block.name] = (block, [])  # first, so that a block is listed before those it uses
            rep = block.uses[0]
            values = {slot: value for slot, value in zip(self.shapes.slots[rep.path], block.values)}
            body_ctx = _Context(self.graph, self.shapes, rep.path, tuple(use.path for use in block.uses), values)
            self.defined[block.name] = (block, self.entries(rep.entries, body_ctx, rep.path))
        return block, args

    def args(self, node: Node, ctx: _Context) -> dict:
        """The arguments written for a layer: left out where every use of the text gets its value from the default."""
        written, _ = self.shapes.explicit(node)
        removable = set(written)
        for other in ctx.aligned(node.name):
            removable &= self.shapes.explicit(other)[1]
        args = {}
        for name in written:
            value = ctx.value(node.name, name)
            if name in removable and not isinstance(value, Ref):
                continue
            args[name] = value
        return args


# --- YAML text ------------------------------------------------------------------------------------------

def _item(lines: list[str]) -> list[str]:
    """Lines of one list item: '- ' before the first, two spaces before the rest."""
    return [f"- {lines[0]}", *(f"  {line}" for line in lines[1:])]


def _indent(lines: list[str], width: int) -> list[str]:
    pad = " " * width
    return [pad + line for line in lines]


def _value(value) -> str:
    if isinstance(value, Ref):
        return value.text()
    if isinstance(value, (list, tuple, dict)):
        return _flow(value)
    return _scalar(value)


def _flow(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_value(v)}" for key, v in value.items()) + "}"
    return "[" + ", ".join(_value(v) for v in value) + "]"


def _block_scalar(value: str) -> str:
    """A top-level value: quoted only where YAML would misread it (`: `, a leading `-`, `yes`)."""
    text = yaml.safe_dump(value, default_flow_style=False, width=10**9, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...")


def _scalar(value) -> str:
    return _scalar_text(type(value), value)


@functools.lru_cache(maxsize=4096)
def _scalar_text(kind: type, value) -> str:
    """One value as YAML reads it back, quoted only where needed (inside a flow collection: commas, braces)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**9, allow_unicode=True).strip()
    return text[1:-1]


__all__ = ["canonical_attrs", "graph_to_spec"]
