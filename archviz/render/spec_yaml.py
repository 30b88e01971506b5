"""graph_to_spec(): any Graph (from a spec, a PyTorch trace or an ONNX file) written back as a spec in our language.

The spec validates to the same graph: the same layer paths, ops, attributes, inputs and shapes, so every figure is
the same. Structure is recognised on the way, so the text reads like a hand-written spec:

  * layer paths become the nesting: a group of paths ("layer1.0.conv1", "layer1.0.bn1") is a `sequential:` named
    "layer1.0"; a layer is named only where its name is not its index (torch's Sequential numbering);
  * a join (add, concat) whose inputs are branches from one tensor is written `add: [[...], []]`, branches inside
    branches too (Inception's split 1x3 | 3x1 convolutions); any input that is neither the previous layer's output
    nor a branch is named with `from:`, and tied weights with `shares:`;
  * groups with the same layers (same ops, names and non-integer arguments) become one block in `blocks:`: its
    integer arguments that differ between uses are its parameters (`planes`, `stride`, ...), an argument that is a
    multiple of another is written `$planes * 4`, and a run of identical uses is one entry with `repeat:`. A block
    used once is written in place. Names come from the source where it has them (a spec's block and parameter
    names), else from the layers (`channels`, `stride`).

Only arguments that differ from the op's default are written, and the arguments a layer takes from its input
(in_channels, num_features, in_features) are left out, so blocks are independent of their input width.

>>> import archviz
>>> print(graph_to_spec(archviz.load("lenet"), origin="lenet", when=None).splitlines()[1])
name: lenet
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import yaml

from archviz.errors import ArchvizError, SpecError
from archviz.graph.build import NAME_PATTERN
from archviz.graph.ir import INPUT, Graph, Node
from archviz.ops import ArgKind, all_names, canonical_name, get_op
from archviz.spec.args import normalize_args
from archviz.spec.model import REQUIRED_PARAM, STRUCTURAL_HEADS

JOINS = ("add", "concat")  # the joins the spec language writes with branches
MIN_BLOCK_LAYERS = 2  # a group of one layer reads better as that layer than as a block
RESERVED = frozenset({"in_channels", "in_height", "in_width", "in_features", "i", "True", "False", "None",
                      "min", "max", "int", "round", "abs", "ceil", "floor"})  # names expressions already give meaning


class ExportError(ArchvizError):
    """A graph the spec language cannot write (a layer name it cannot hold, layers of one group apart)."""


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
    spaces = _Spaces(graph)
    root = spaces.root
    _Parser(graph, spaces).parse(root, INPUT)
    shapes = _Shapes(graph, spaces)
    blocks = _mine_blocks(graph, spaces, shapes)
    writer = _Writer(graph, spaces, shapes, blocks)
    layers = writer.entries(root.entries, _Context.concrete(graph, shapes), root.path)
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


# --- the groups of layers, from their paths -------------------------------------------------------------

@dataclass(eq=False)
class _Space:
    """A group of layers: the layers and groups whose paths it prefixes directly, in graph order."""

    path: str
    units: list = field(default_factory=list)  # Node | _Space
    inputs: dict = field(default_factory=dict)  # tensors made outside it that its layers read, in order (a set)
    first: int = 0  # graph index of its first layer
    last: str = ""  # its last layer: the output of the sequential it becomes
    size: int = 0  # layers in it, at any depth
    entries: list = field(default_factory=list)  # its layer entries, once parsed

    @property
    def short(self) -> str:
        return self.path.rsplit(".", 1)[-1]


class _Spaces:
    def __init__(self, graph: Graph):
        self.root = _Space("")
        self.by_path: dict[str, _Space] = {"": self.root}
        self.index = {node.name: i for i, node in enumerate(graph.nodes)}
        closed: set[str] = set()
        chain: list[_Space] = [self.root]
        for i, node in enumerate(graph.nodes):
            parts = node.name.split(".")
            for part in parts:
                if not NAME_PATTERN.match(part):
                    raise ExportError(f"layer {node.name!r}: a spec name holds only letters, digits and '_', and "
                                      "dots between the levels", layer=node.name)
            new_chain = [self.root]
            for depth in range(1, len(parts)):
                path = ".".join(parts[:depth])
                space = self.by_path.get(path)
                if space is None:
                    if path in self.index:
                        raise ExportError(f"{path!r} is both a layer and a group of layers ({node.name!r})",
                                          layer=node.name)
                    space = self.by_path[path] = _Space(path, first=i)
                    new_chain[-1].units.append(space)
                elif path in closed:
                    raise ExportError(f"the layers of group {path!r} are not consecutive ({node.name!r} comes after "
                                      "layers outside it), so one `sequential:` cannot hold them", layer=node.name)
                new_chain.append(space)
            if node.name in self.by_path:
                raise ExportError(f"{node.name!r} is both a layer and a group of layers", layer=node.name)
            closed.update(s.path for s in chain if s not in new_chain)
            chain = new_chain
            chain[-1].units.append(node)
            for space in chain:
                space.size += 1
                space.last = node.name
            for source in node.inputs:
                for space in reversed(chain[1:]):
                    if source != INPUT and source.startswith(space.path + "."):
                        break
                    space.inputs.setdefault(source, None)
        if graph.nodes and graph.output != graph.nodes[-1].name:
            raise ExportError(f"the output of {graph.name} is {graph.output!r}, not its last layer "
                              f"{graph.nodes[-1].name!r}; a spec's output is its last layer")


# --- entries: chains, branches and joins -----------------------------------------------------------------

@dataclass(eq=False)
class _Entry:
    """One item of a `layers:` list: a layer (kind "node"), a join with branches, or a group (kind "space")."""

    kind: str
    node: Node | None = None
    space: _Space | None = None
    source: tuple[str, ...] | None = None  # tensors named by `from:`; None: the previous entry's output
    branches: list[list[_Entry]] | None = None
    first: int = 0  # graph index of the first layer it makes (names made before it can be referred to)

    @property
    def out(self) -> str:
        return self.space.last if self.space is not None else self.node.name


@dataclass(eq=False)
class _Seq:
    start: str  # the tensor entering the list
    entries: list[_Entry] = field(default_factory=list)

    @property
    def cur(self) -> str:
        return self.entries[-1].out if self.entries else self.start

    def position(self, tensor: str) -> int | None:
        """-1 for the start, the index of the entry that makes the tensor, or None."""
        if tensor == self.start:
            return -1
        for index in range(len(self.entries) - 1, -1, -1):
            if self.entries[index].out == tensor:
                return index
        return None


@dataclass(eq=False)
class _Fork:
    tensor: str  # the tensor every branch starts from
    branches: list[list[_Entry]]


class _Parser:
    """Reads a group's layers in graph order into entries. A layer that reads an earlier tensor than the previous
    layer's output opens a branch from it; a join whose inputs are the ends of the open branches closes them."""

    def __init__(self, graph: Graph, spaces: _Spaces):
        self.graph = graph
        self.spaces = spaces

    def parse(self, space: _Space, start: str) -> None:
        stack: list = [_Seq(start)]
        for unit in space.units:
            if isinstance(unit, _Space):
                top = stack[-1]
                tensor = top.cur if top.cur in unit.inputs else next(iter(unit.inputs))
                self.parse(unit, tensor)
                self.place(stack, _Entry("space", space=unit, first=unit.first), tensor)
                continue
            entry = _Entry("node", node=unit, first=self.spaces.index[unit.name])
            if canonical_name(unit.op) in JOINS and len(unit.inputs) >= 2 and self.join(stack, unit):
                continue
            if len(unit.inputs) == 1:
                self.place(stack, entry, unit.inputs[0])
            else:
                entry.source = unit.inputs
                stack[-1].entries.append(entry)
        space.entries = self.close(stack)

    def place(self, stack: list, entry: _Entry, tensor: str) -> None:
        top = stack[-1]
        if tensor == top.cur:
            top.entries.append(entry)
            return
        at = top.position(tensor)
        if at is None:  # made further out: named, not a branch
            entry.source = (tensor,)
            top.entries.append(entry)
            return
        if at == -1 and len(stack) > 1 and stack[-2].tensor == tensor:  # one more branch from the open fork
            stack[-2].branches.append(top.entries)
            stack[-1] = _Seq(tensor, [entry])
            return
        branch = top.entries[at + 1:]
        del top.entries[at + 1:]
        stack += [_Fork(tensor, [branch]), _Seq(tensor, [entry])]

    def join(self, stack: list, node: Node) -> bool:
        """Close branches into the join `node` if its inputs are their ends; False if they are not."""
        top = stack[-1]
        entry = _Entry("join", node=node, first=self.spaces.index[node.name])
        if len(stack) > 1:
            fork = stack[-2]
            branches = _match(node.inputs, fork.tensor, [*fork.branches, top.entries])
            if branches is not None:
                del stack[-2:]
                entry.branches, entry.first = branches, _first(branches, entry.first)
                stack[-1].entries.append(entry)
                return True
        for tensor in dict.fromkeys(node.inputs):
            at = top.position(tensor)
            if at is None:
                continue
            tail = top.entries[at + 1:]
            branches = _match(node.inputs, tensor, [tail] if tail else [])
            if branches is not None:
                del top.entries[at + 1:]
                entry.branches, entry.first = branches, _first(branches, entry.first)
                top.entries.append(entry)
                return True
        return False

    @staticmethod
    def close(stack: list) -> list[_Entry]:
        """Branches no join closed are written one after another, each after the first naming its start."""
        while len(stack) > 1:
            seq, fork = stack.pop(), stack.pop()
            for index, branch in enumerate([*fork.branches, seq.entries]):
                if index and branch and branch[0].source is None:
                    branch[0].source = (fork.tensor,)
                stack[-1].entries.extend(branch)
        return stack[0].entries


def _match(inputs: tuple[str, ...], fork: str, branches: list[list[_Entry]]) -> list[list[_Entry]] | None:
    """The join's branches in input order ([] for the fork itself), or None if its inputs are not the branch ends."""
    ends = [branch[-1].out for branch in branches]
    if [tensor for tensor in inputs if tensor != fork] != ends:
        return None
    rest = iter(branches)
    return [[] if tensor == fork else next(rest) for tensor in inputs]


def _first(branches: list[list[_Entry]], default: int) -> int:
    return min((branch[0].first for branch in branches if branch), default=default)


# --- arguments, structure and the integers that vary ----------------------------------------------------

class _Shapes:
    """Each group's structure (ops, names, non-integer arguments, references) and its integer slots, in one order."""

    def __init__(self, graph: Graph, spaces: _Spaces):
        self.graph = graph
        self.spaces = spaces
        self.ids: dict[tuple, int] = {}
        self.known: dict[Any, tuple[tuple[str, ...], frozenset[str]]] = {}  # explicit() by op, attributes, shapes
        self.canonical: dict[str, dict[str, Any]] = {}  # layer -> canonical_attrs
        self.shape: dict[str, int] = {}  # group path -> structure id
        self.slots: dict[str, list[tuple[str, str]]] = {}  # group path -> (layer, argument) of each integer
        self._walk(spaces.root)

    def attrs(self, node: Node) -> dict[str, Any]:
        if node.name not in self.canonical:
            self.canonical[node.name] = canonical_attrs(node.op, node.attrs)
        return self.canonical[node.name]

    def explicit(self, node: Node) -> tuple[tuple[str, ...], frozenset[str]]:
        """_explicit(node), computed once for layers alike (a ResNet repeats a few dozen kinds of layer)."""
        try:
            key = (node.op, tuple(node.attrs.items()), node.in_shapes)
            hash(key)
        except TypeError:  # a list among the attributes
            return _explicit(node)
        if key not in self.known:
            self.known[key] = _explicit(node)
        return self.known[key]

    def _walk(self, space: _Space) -> None:
        slots: list[tuple[str, str]] = []
        key = self._entries(space.entries, space.path, slots)
        self.shape[space.path] = self.ids.setdefault(key, len(self.ids))
        self.slots[space.path] = slots

    def _entries(self, entries: list[_Entry], path: str, slots: list) -> tuple:
        return tuple(self._entry(entry, path, slots) for entry in entries)

    def _entry(self, entry: _Entry, path: str, slots: list) -> tuple:
        source = self.source_text(entry, path)
        if entry.kind == "space":
            self._walk(entry.space)
            slots += self.slots[entry.space.path]
            return ("space", entry.space.short, self.shape[entry.space.path], source)
        node = entry.node
        arguments = []
        for name in self.explicit(node)[0]:
            value = self.attrs(node)[name]
            if _is_slot(value):
                slots.append((node.name, name))
                value = "#"
            arguments.append((name, value))
        branches = None
        if entry.branches is not None:
            branches = tuple(self._entries(branch, path, slots) for branch in entry.branches)
        shares = self.ref(node.shares, path, entry.first) if node.shares else None
        return (entry.kind, _head(node), node.short_name, tuple(arguments), branches, source, shares, node.note)

    def source_text(self, entry: _Entry, path: str):
        if entry.source is None:
            return None
        return tuple(self.ref(tensor, path, entry.first) for tensor in entry.source)

    def ref(self, target: str, path: str, before: int) -> str:
        """The shortest name that finds target from group `path`, among the layers made before graph index `before`."""
        index = self.spaces.index
        prefixes = [path]
        while prefixes[-1]:
            prefixes.append(prefixes[-1].rpartition(".")[0])
        for at, prefix in enumerate(prefixes):
            if target == INPUT:
                if prefix:
                    continue
                relative = INPUT
            elif not prefix:
                relative = target
            elif target.startswith(prefix + "."):
                relative = target[len(prefix) + 1:]
            else:
                continue
            nearer = (f"{p}.{relative}" if p else relative for p in prefixes[:at])
            if not any(index.get(name, before) < before for name in nearer):
                return relative
        raise ExportError(f"cannot name {target!r} from {path!r}: a nearer layer has the same name", layer=path)


def _is_slot(value) -> bool:
    """An integer or a list of integers: what a block can take as a parameter."""
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, (tuple, list)) and bool(value) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


def _head(node: Node) -> str:
    """The op's name; for a join, the alias its default name is made from ("cat" for a layer named cat_1)."""
    op = get_op(node.op)
    base = re.sub(r"_[0-9]+$", "", node.short_name)
    return base if op.name in JOINS and base in (op.name, *op.aliases) else op.name


_PAIRS = (ArgKind.PAIR, ArgKind.NONNEG_PAIR, ArgKind.PADDING, ArgKind.OPTIONAL_PAIR)


def canonical_attrs(op_name: str, attrs) -> dict[str, Any]:
    """Attributes as a spec writes them: a pair of equal sides, (3, 3), as one integer, 3: the same layer.

    >>> canonical_attrs("conv2d", {"kernel_size": (3, 3), "padding": (0, 1)})
    {'kernel_size': 3, 'padding': (0, 1)}
    """
    kinds = {arg.name: arg.kind for arg in get_op(op_name).args}
    return {key: _one_side(value) if kinds.get(key) in _PAIRS else value for key, value in attrs.items()}


def _one_side(value):
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1] and value[0] is not None:
        return value[0]
    return value


def _explicit(node: Node) -> tuple[tuple[str, ...], frozenset[str]]:
    """(the arguments a spec writes, those of them equal to what leaving them out gives) for one layer.

    Left out altogether: arguments taken from the input (in_channels, num_features, in_features: integers whose
    default, None, means "from the input") where leaving them out gives the same attributes.
    """
    op = get_op(node.op)
    given = [arg for arg in op.args if arg.name in node.attrs]
    attrs = canonical_attrs(node.op, node.attrs)

    def same_without(name: str, names: Iterable[str]) -> bool:
        raw = {n: _plain(attrs[n]) for n in names if n != name}
        try:
            made = op.resolve(normalize_args(op, raw, {}), list(node.in_shapes))
            return canonical_attrs(node.op, made) == attrs
        except (ArchvizError, TypeError, ValueError, KeyError):
            return False

    everything = [arg.name for arg in given]
    inferred = {arg.name for arg in given
                if arg.default is None and arg.kind == ArgKind.INT and same_without(arg.name, everything)}
    written = tuple(name for name in everything if name not in inferred)
    optional = {arg.name for arg in given if not arg.required and arg.name in written}
    removable = frozenset(name for name in optional if same_without(name, written))
    return written, removable


# --- blocks ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ref:
    """A block parameter in an argument, times a factor: `$planes * 4`."""

    param: str
    factor: int = 1

    def text(self) -> str:
        return f"${self.param}" if self.factor == 1 else f"${self.param} * {self.factor}"


@dataclass
class _Param:
    name: str
    column: list  # its value in each use
    slot: int  # the first slot it fills: its arguments there are the block's arguments
    default: Any = None  # None: required


@dataclass
class _Block:
    name: str
    shape: int
    uses: list[_Space]
    params: list[_Param]
    values: list  # per slot: a literal, the same in every use, or a _Ref

    def column_of(self, space: _Space) -> int:
        return self.uses.index(space)


def _mine_blocks(graph: Graph, spaces: _Spaces, shapes: _Shapes) -> dict[str, _Block]:
    """Groups of one structure used twice or more, by the path of each use. A block is a group with layers of its
    own; a block used in one place only (all its uses inside one place of another block) is written in place."""
    by_shape: dict[int, list[_Space]] = {}
    for space in spaces.by_path.values():
        # a group of groups only (a ResNet stage, a branch of two convs) reads better written out: a sequential of
        # its blocks' uses, or one block's repeat
        own = any(isinstance(unit, Node) for unit in space.units)
        if space.path and space.size >= MIN_BLOCK_LAYERS and own:
            by_shape.setdefault(shapes.shape[space.path], []).append(space)
    groups = {shape: uses for shape, uses in by_shape.items() if len(uses) > 1}
    while True:
        sites = _count_sites(spaces.root, shapes, groups, Counter(), set())
        single = [shape for shape in groups if sites[shape] < 2]
        if not single:
            break
        for shape in single:
            del groups[shape]
    scopes = {scope.path: scope for scope in graph.scopes}
    taken: set[str] = set()
    blocks = []
    order = sorted(groups.items(), key=lambda item: (-len(item[1]), item[1][0].first))
    names = _block_names(order, scopes, taken)
    for (shape, uses), name in zip(order, names):
        blocks.append(_parameterise(graph, name, shape, uses, shapes, scopes))
    return {use.path: block for block in blocks for use in block.uses}


def _count_sites(space: _Space, shapes: _Shapes, groups: dict, sites: Counter, seen: set) -> Counter:
    """How many entries of the written spec use each block (a block's own layers are written once)."""
    for entry in _walk_entries(space.entries):
        inner = entry.space
        shape = shapes.shape[inner.path]
        if shape in groups:
            sites[shape] += 1
            if shape in seen:
                continue
            seen.add(shape)
            inner = groups[shape][0]
        _count_sites(inner, shapes, groups, sites, seen)
    return sites


def _walk_entries(entries: list[_Entry]) -> Iterable[_Entry]:
    """The group entries of a list, into branches but not into the groups."""
    for entry in entries:
        if entry.kind == "space":
            yield entry
        for branch in entry.branches or ():
            yield from _walk_entries(branch)


def _block_names(order, scopes, taken: set[str]) -> list[str]:
    """A name per block: its spec block's name where the source has one (resnet's basic_block), else the words its
    groups' names share (inception3a, inception3b: inception). Two blocks of one name are told apart by a layer only
    one of them has (bottleneck, bottleneck_downsample), else by a number."""
    bases = []
    for _, uses in order:
        kinds = {scopes[u.path].block if u.path in scopes else None for u in uses}
        hint = kinds.pop() if len(kinds) == 1 else None
        bases.append(_snake(hint) if hint else _common_name(u.short for u in uses))
    names = []
    for (_, uses), base in zip(order, bases):
        name = base
        if name in taken:
            others = set().union(*({_unit_name(u) for u in grp[0].units} for (_, grp), b in zip(order, bases)
                                   if b == base and grp is not uses))
            extra = [_unit_name(u) for u in uses[0].units if _unit_name(u) not in others and not _unit_name(u).isdigit()]
            name = f"{base}_{extra[0]}" if extra else base
        names.append(_fresh(name, taken))
    return names


def _unit_name(unit) -> str:
    return unit.short if isinstance(unit, _Space) else unit.short_name


def _snake(name: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    text = re.sub(r"[^a-z0-9_]+", "_", text).strip("_")
    return text if text and not text[0].isdigit() else f"block_{text}"


def _common_name(shorts: Iterable[str]) -> str:
    """"inception" for inception3a, inception3b; "block" where the names share no word."""
    shorts = list(shorts)
    prefix = shorts[0]
    for short in shorts[1:]:
        while not short.startswith(prefix):
            prefix = prefix[:-1]
    prefix = re.sub(r"[0-9_]+$", "", prefix.lower())
    return _snake(prefix) if len(prefix) >= 3 else "block"


def _fresh(name: str, taken: set[str]) -> str:
    forbidden = set(all_names()) | set(STRUCTURAL_HEADS) | RESERVED
    candidate, number = name, 1
    while candidate in taken or candidate in forbidden:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate


def _parameterise(graph: Graph, name: str, shape: int, uses: list[_Space], shapes: _Shapes, scopes) -> _Block:
    """Each slot is a literal where all uses agree, else a parameter: an earlier one, a multiple of one, or new."""
    table = [[shapes.attrs(graph.by_name[layer])[arg] for layer, arg in shapes.slots[use.path]] for use in uses]
    params: list[_Param] = []
    values = []
    taken: set[str] = set()
    for slot, (layer, arg) in enumerate(shapes.slots[uses[0].path]):
        column = [row[slot] for row in table]
        if all(value == column[0] for value in column):
            values.append(column[0])
            continue
        op = graph.by_name[layer].op
        values.append(_existing(column, params) or _new_param(column, slot, op, arg, uses, params, taken, scopes))
    return _Block(name, shape, uses, params, values)


def _existing(column: list, params: list[_Param]) -> _Ref | None:
    for param in params:
        if param.column == column:
            return _Ref(param.name)
    if not all(isinstance(v, int) for v in column):
        return None
    for param in params:
        if all(isinstance(v, int) and v > 0 for v in param.column):
            factors = {value // base if value % base == 0 else None for value, base in zip(column, param.column)}
            if len(factors) == 1 and (factor := factors.pop()) is not None and factor > 1:
                return _Ref(param.name, factor)
    return None


_ARG_WORDS = {"out_channels": "channels", "out_features": "features"}


def _new_param(column, slot, op_name, arg, uses, params, taken, scopes) -> _Ref:
    """A new parameter for a column of values: named as the source's block parameter of the same values, if any."""
    name = None
    hints = [scopes[u.path].args if u.path in scopes else {} for u in uses]
    for key in hints[0]:
        if (isinstance(key, str) and NAME_PATTERN.match(key) and key not in taken and key not in RESERVED
                and all(_plain(h.get(key)) == _plain(v) for h, v in zip(hints, column))):
            name = key
            break
    if name is None:
        name = _fresh(_ARG_WORDS.get(arg, arg), taken | RESERVED)
    taken.add(name)
    default = None
    op_arg = next((a for a in get_op(op_name).args if a.name == arg), None)
    common = _plain(Counter(column).most_common(1)[0][0])
    if op_arg is not None and not op_arg.required and op_arg.default is not None and common == _plain(op_arg.default):
        default = common
    params.append(_Param(name, column, slot, default))
    return _Ref(name)


# --- writing --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Context:
    """How the layers of one place are written: with their own values (the model's layers, or a group written in
    place), or as the body of a block, whose slots hold literals and parameters and whose uses are `prefixes`."""

    graph: Graph
    shapes: _Shapes
    rep: str  # the path of the group the text is written from
    prefixes: tuple[str, ...]  # the same group in every use the text stands for
    values: dict | None = None  # (layer, argument) -> literal or _Ref; None: the layers' own values

    @classmethod
    def concrete(cls, graph: Graph, shapes: _Shapes) -> _Context:
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
    def __init__(self, graph: Graph, spaces: _Spaces, shapes: _Shapes, blocks: dict[str, _Block]):
        self.graph = graph
        self.spaces = spaces
        self.shapes = shapes
        self.blocks = blocks
        self.defined: dict[str, tuple[_Block, list[str]]] = {}

    # one list of entries, with a repeat for a run of identical block uses
    def entries(self, entries: list[_Entry], ctx: _Context, path: str, names: _Names | None = None) -> list[str]:
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

    def run(self, entries: list[_Entry], index: int, ctx: _Context, count: int) -> int:
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

    def entry(self, entry: _Entry, ctx: _Context, path: str, names: _Names) -> list[str]:
        meta: dict[str, Any] = {}
        if entry.kind == "space":
            lines = self.space(entry.space, ctx, meta)
            if "name" not in meta and entry.space.short != str(names.count):
                meta["name"] = entry.space.short
            names.taken.add(entry.space.short)
            names.count += 1
        else:
            node = entry.node
            head = _head(node)
            args = self.args(node, ctx)
            if entry.kind == "join":
                body = self.branches(entry.branches, ctx, path, names)
                lines = [f"{head}:", *_indent(body, 2)]
                if args:
                    lines = [f"{head}:", *_indent([f"{k}: {_value(v)}" for k, v in args.items()], 2), "  branches:",
                             *_indent(body, 4)]
            if canonical_name(node.op) in JOINS:
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

    def branches(self, branches: list[list[_Entry]], ctx: _Context, path: str, names: _Names) -> list[str]:
        lines = []
        for branch in branches:
            if not branch:
                lines += _item(["[]"])
            elif len(branch) == 1:
                lines += _item(self.entry(branch[0], ctx, path, names))
            else:
                lines += _item(self.entries(branch, ctx, path, names))
        return lines

    def space(self, space: _Space, ctx: _Context, meta: dict) -> list[str]:
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

    def use(self, space: _Space, ctx: _Context) -> tuple[_Block, dict]:
        """The block a group is a use of, and its arguments there (defaults left out); defines the block once."""
        block = self.blocks[space.path]
        slots = self.shapes.slots[space.path]
        args = {}
        for param in block.params:
            layer, arg = slots[param.slot]
            value = ctx.value(layer, arg)
            if param.default is None or isinstance(value, _Ref) or _plain(value) != param.default:
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
            if name in removable and not isinstance(value, _Ref):
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


def _plain(value):
    """Tuples as lists: what a spec holds."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _value(value) -> str:
    if isinstance(value, _Ref):
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


__all__ = ["ExportError", "canonical_attrs", "graph_to_spec"]
