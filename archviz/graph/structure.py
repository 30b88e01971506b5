"""Recognising a graph's structure, for writing it as a spec (render/spec_yaml.py): any Graph, from a spec, a PyTorch
trace or an ONNX file, whose layers know only their paths, inputs and attributes.

  * Groups: layer paths give the nesting; "layer1.0.conv1" and "layer1.0.bn1" are in group "layer1.0".
  * Entries: a group's layers in graph order become a list of entries. A layer that reads an earlier tensor than
    the previous layer's output opens a branch from it; a join (add, concat, mul) whose inputs are the ends of the
    open branches closes them, branches inside branches too (Inception's 1x3 | 3x1 split). Any other input is named
    (`from:` in the spec).
  * Structure: each group's ops, names, non-numeric arguments and references, with its numbers (integer and float
    arguments, integer pairs) as slots in one order. Arguments taken from the input (in_channels, num_features,
    in_features) are not part of it, so a block does not depend on the width it is given.
  * Blocks: groups of one structure, used in two places or more, with layers of their own. Numbers that differ
    between uses are parameters; one that is a multiple of another in every use is written `$planes * 4`. Names come
    from the source where it has them (a spec's block and parameter names, a traced module's class), else from the
    layers (`channels`, `stride`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from archviz.errors import ArchvizError
from archviz.graph.build import NAME_PATTERN, takes_branches
from archviz.graph.ir import INPUT, Graph, Node
from archviz.graph.make import made
from archviz.ops import ArgKind, all_names, get_op
from archviz.spec.model import STRUCTURAL_HEADS

MIN_BLOCK_LAYERS = 2  # a group of one layer reads better as that layer than as a block
RESERVED = frozenset({"in_channels", "in_height", "in_width", "in_features", "i", "True", "False", "None",
                      "min", "max", "int", "round", "abs", "ceil", "floor"})  # names expressions already give meaning


class ExportError(ArchvizError):
    """A graph the spec language cannot write (a layer name it cannot hold, the layers of one group apart)."""


@dataclass(frozen=True)
class Recognised:
    groups: Groups
    structure: Structure
    blocks: dict[str, Block]  # group path -> the block it is a use of


def recognise(graph: Graph) -> Recognised:
    """The groups, entries, structure and blocks of a graph.

    >>> import archviz
    >>> found = recognise(archviz.load("resnet18"))
    >>> found.blocks["layer1.0"].name, [p.name for p in found.blocks["layer1.0"].params]
    ('basic_block', ['planes'])
    """
    groups = Groups(graph)
    _Parser(groups).parse(groups.root, INPUT)
    structure = Structure(graph, groups)
    return Recognised(groups, structure, mine_blocks(graph, groups, structure))


# --- the groups of layers, from their paths -------------------------------------------------------------

@dataclass(eq=False)
class Group:
    """A group of layers: the layers and groups whose paths it prefixes directly, in graph order."""

    path: str
    units: list = field(default_factory=list)  # Node | Group
    inputs: dict = field(default_factory=dict)  # tensors made outside it that its layers read, in order (a set)
    first: int = 0  # graph index of its first layer
    last: str = ""  # its last layer: the output of the sequential it becomes
    size: int = 0  # layers in it, at any depth
    entries: list = field(default_factory=list)  # its layer entries, once parsed

    @property
    def short(self) -> str:
        return self.path.rsplit(".", 1)[-1]


class Groups:
    """The groups of a graph's layers, each a sequential in the spec: so its layers must be consecutive, and no
    layer's path may be a group's too (a spec claims a group's path for the group)."""

    def __init__(self, graph: Graph):
        self.root = Group("")
        self.by_path: dict[str, Group] = {"": self.root}
        self.index = {node.name: i for i, node in enumerate(graph.nodes)}
        closed: set[str] = set()
        chain: list[Group] = [self.root]
        for i, node in enumerate(graph.nodes):
            parts = node.name.split(".")
            for part in parts:
                if not NAME_PATTERN.match(part):
                    raise ExportError(f"layer {node.name!r}: a spec name holds only letters, digits, '_' and '-', "
                                      "and dots between the levels", layer=node.name)
            new_chain = [self.root]
            for level in range(1, len(parts)):
                path = ".".join(parts[:level])
                space = self.by_path.get(path)
                if space is None:
                    if path in self.index:
                        raise ExportError(f"{path!r} is both a layer and the group of layer {node.name!r}; a spec "
                                          "cannot give one path to both", layer=node.name)
                    space = self.by_path[path] = Group(path, first=i)
                    new_chain[-1].units.append(space)
                elif path in closed:
                    raise ExportError(f"the layers of group {path!r} are not consecutive ({node.name!r} comes after "
                                      "layers outside it), so one `sequential:` cannot hold them", layer=node.name)
                new_chain.append(space)
            if node.name in self.by_path:
                raise ExportError(f"{node.name!r} is both a layer and a group of layers; a spec cannot give one path "
                                  "to both", layer=node.name)
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
class Entry:
    """One item of a `layers:` list: a layer (kind "node"), a join with branches, or a group (kind "space")."""

    kind: str
    node: Node | None = None
    space: Group | None = None
    source: tuple[str, ...] | None = None  # tensors named by `from:`; None: the previous entry's output
    branches: list[list[Entry]] | None = None
    first: int = 0  # graph index of the first layer it makes (names made before it can be referred to)

    @property
    def out(self) -> str:
        return self.space.last if self.space is not None else self.node.name


@dataclass(eq=False)
class _Seq:
    start: str  # the tensor entering the list
    entries: list[Entry] = field(default_factory=list)

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
    branches: list[list[Entry]]


class _Parser:
    """Reads a group's layers in graph order into entries. A layer that reads an earlier tensor than the previous
    layer's output opens a branch from it; a join whose inputs are the ends of the open branches closes them."""

    def __init__(self, groups: Groups):
        self.spaces = groups

    def parse(self, space: Group, start: str) -> None:
        stack: list = [_Seq(start)]
        for unit in space.units:
            if isinstance(unit, Group):
                top = stack[-1]
                tensor = top.cur if top.cur in unit.inputs else next(iter(unit.inputs))
                self.parse(unit, tensor)
                self.place(stack, Entry("space", space=unit, first=unit.first), tensor)
                continue
            entry = Entry("node", node=unit, first=self.spaces.index[unit.name])
            if takes_branches(unit.op) and len(unit.inputs) >= 2 and self.join(stack, unit):
                continue
            if len(unit.inputs) == 1:
                self.place(stack, entry, unit.inputs[0])
            else:
                entry.source = unit.inputs
                stack[-1].entries.append(entry)
        space.entries = self.close(stack)

    def place(self, stack: list, entry: Entry, tensor: str) -> None:
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
        entry = Entry("join", node=node, first=self.spaces.index[node.name])
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
    def close(stack: list) -> list[Entry]:
        """Branches no join closed are written one after another, each after the first naming its start."""
        while len(stack) > 1:
            seq, fork = stack.pop(), stack.pop()
            for index, branch in enumerate([*fork.branches, seq.entries]):
                if index and branch and branch[0].source is None:
                    branch[0].source = (fork.tensor,)
                stack[-1].entries.extend(branch)
        return stack[0].entries


def _match(inputs: tuple[str, ...], fork: str, branches: list[list[Entry]]) -> list[list[Entry]] | None:
    """The join's branches in input order ([] for the fork itself), or None if its inputs are not the branch ends."""
    ends = [branch[-1].out for branch in branches]
    if [tensor for tensor in inputs if tensor != fork] != ends:
        return None
    rest = iter(branches)
    return [[] if tensor == fork else next(rest) for tensor in inputs]


def _first(branches: list[list[Entry]], default: int) -> int:
    return min((branch[0].first for branch in branches if branch), default=default)


# --- arguments, structure and the numbers that vary -----------------------------------------------------

class Structure:
    """Each group's structure (ops, names, non-numeric arguments, references) and its numbers (slots), in one order."""

    def __init__(self, graph: Graph, groups: Groups):
        self.graph = graph
        self.spaces = groups
        self.ids: dict[tuple, int] = {}
        self.known: dict[Any, tuple[tuple[str, ...], frozenset[str]]] = {}  # explicit() by op, attributes, shapes
        self.canonical: dict[str, dict[str, Any]] = {}  # layer -> canonical_attrs
        self.shape: dict[str, int] = {}  # group path -> structure id
        self.slots: dict[str, list[tuple[str, str]]] = {}  # group path -> (layer, argument) of each number
        self._walk(groups.root)

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

    def _walk(self, space: Group) -> None:
        slots: list[tuple[str, str]] = []
        key = self._entries(space.entries, space.path, slots)
        self.shape[space.path] = self.ids.setdefault(key, len(self.ids))
        self.slots[space.path] = slots

    def _entries(self, entries: list[Entry], path: str, slots: list) -> tuple:
        return tuple(self._entry(entry, path, slots) for entry in entries)

    def _entry(self, entry: Entry, path: str, slots: list) -> tuple:
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
        return (entry.kind, entry_head(node), node.short_name, tuple(arguments), branches, source, shares, node.note)

    def source_text(self, entry: Entry, path: str):
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
    """A number or a list of integers: what a block can take as a parameter."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, (tuple, list)) and bool(value) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


def entry_head(node: Node) -> str:
    """The op's name; for a join, the alias its default name is made from ("cat" for a layer named cat_1)."""
    op = get_op(node.op)
    base = re.sub(r"_[0-9]+$", "", node.short_name)
    return base if takes_branches(op.name) and base in (op.name, *op.aliases) else op.name


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
        raw = {n: plain(attrs[n]) for n in names if n != name}
        try:
            return canonical_attrs(node.op, dict(made(op, raw, node.in_shapes).attrs)) == attrs
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
class Ref:
    """A block parameter in an argument, times a factor: `$planes * 4`."""

    param: str
    factor: int = 1

    def text(self) -> str:
        return f"${self.param}" if self.factor == 1 else f"${self.param} * {self.factor}"


@dataclass
class Param:
    """A block parameter: a number that differs between the block's uses."""

    name: str
    column: list  # its value in each use
    slot: int  # the first slot it fills: its arguments there are the block's arguments
    default: Any = None  # None: required


@dataclass
class Block:
    """A group structure used in several places, written once in `blocks:`; `uses` in graph order, the first is the
    one its text is written from."""

    name: str
    shape: int
    uses: list[Group]
    params: list[Param]
    values: list  # per slot: a literal, the same in every use, or a Ref


def mine_blocks(graph: Graph, spaces: Groups, shapes: Structure) -> dict[str, Block]:
    """Groups of one structure used twice or more, by the path of each use. A block is a group with layers of its
    own; a block used in one place only (all its uses inside one place of another block) is written in place."""
    by_shape: dict[int, list[Group]] = {}
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


def _count_sites(space: Group, shapes: Structure, groups: dict, sites: Counter, seen: set) -> Counter:
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


def _walk_entries(entries: list[Entry]) -> Iterable[Entry]:
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
            own = [_unit_name(u) for u in uses[0].units]
            extra = [name for name in own if name not in others and not name.isdigit()]
            name = f"{base}_{extra[0]}" if extra else base
        names.append(_fresh(name, taken))
    return names


def _unit_name(unit) -> str:
    return unit.short if isinstance(unit, Group) else unit.short_name


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
    if name in forbidden:  # a group named like an op ("conv"): its block is conv_block
        name = f"{name}_block"
    candidate, number = name, 1
    while candidate in taken or candidate in forbidden:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate


def _parameterise(graph: Graph, name: str, shape: int, uses: list[Group], shapes: Structure, scopes) -> Block:
    """Each slot is a literal where all uses agree, else a parameter: an earlier one, a multiple of one, or new."""
    table = [[shapes.attrs(graph.by_name[layer])[arg] for layer, arg in shapes.slots[use.path]] for use in uses]
    params: list[Param] = []
    values = []
    taken: set[str] = set()
    for slot, (layer, arg) in enumerate(shapes.slots[uses[0].path]):
        column = [row[slot] for row in table]
        if all(value == column[0] for value in column):
            values.append(column[0])
            continue
        op = graph.by_name[layer].op
        values.append(_existing(column, params) or _new_param(column, slot, op, arg, uses, params, taken, scopes))
    return Block(name, shape, uses, params, values)


def _existing(column: list, params: list[Param]) -> Ref | None:
    for param in params:
        if param.column == column:
            return Ref(param.name)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in column):
        return None
    for param in params:
        if all(isinstance(v, int) and v > 0 for v in param.column):
            factors = {value // base if value % base == 0 else None for value, base in zip(column, param.column)}
            if len(factors) == 1 and (factor := factors.pop()) is not None and factor > 1:
                return Ref(param.name, factor)
    return None


_ARG_WORDS = {"out_channels": "channels", "out_features": "features"}


def _new_param(column, slot, op_name, arg, uses, params, taken, scopes) -> Ref:
    """A new parameter for a column of values: named as the source's block parameter of the same values, if any."""
    name = None
    hints = [scopes[u.path].args if u.path in scopes else {} for u in uses]
    for key in hints[0]:
        if (isinstance(key, str) and key.isidentifier() and key not in taken and key not in RESERVED
                and all(plain(h.get(key)) == plain(v) for h, v in zip(hints, column))):
            name = key
            break
    if name is None:
        name = _fresh(_ARG_WORDS.get(arg, arg), taken | RESERVED)
    taken.add(name)
    default = None
    op_arg = next((a for a in get_op(op_name).args if a.name == arg), None)
    common = plain(Counter(column).most_common(1)[0][0])
    if op_arg is not None and not op_arg.required and op_arg.default is not None and common == plain(op_arg.default):
        default = common
    params.append(Param(name, column, slot, default))
    return Ref(name)


def plain(value):
    """Tuples as lists: what a spec holds."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
