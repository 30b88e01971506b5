"""validate(): walk a Spec's layer entries in order, expand blocks and repeats, infer every shape, and freeze a Graph.

A layer entry is one item of a `layers:` list:
    - relu                                     an op with default arguments
    - conv2d: {out_channels: 64, kernel_size: 3}
      name: conv1                              optional: its name (else its index, as in torch's Sequential)
      repeat: 2                                optional: that many copies (with a name: a sequential of them)
      if: $stride != 1                         optional: skipped when false
      note: "..."                              optional: shown by `archviz explain` (errata, paper remarks)
      from: conv1                              optional: its input is that earlier layer's output, not the previous
                                               entry's; a list ([conv1, pool]) for an op of several inputs
      shares: conv1                            optional: it reuses that earlier layer's weights (tied weights)
                                               or, for a layer without weights, its module
    - my_block: {planes: 64}                   a block from `blocks:`
    - sequential: [...]                        a nested, numbered group (torch nn.Sequential)
    - group: [...]                             layers spliced into the current numbering
    - add: [[...], []]                         branches from one input, summed ([] is the identity)
    - concat: [[...], [...]]                   branches concatenated along channels (any join op of several inputs
                                               takes branches: add, concat, mul)
    - add: {}                                  a join of earlier layers, named by `from:` (at least two)
      from: [conv3, downsample.1]

A name in `from:` or `shares:` is looked up as Python looks up a variable: first among the layers of the enclosing
group or block ("conv1" inside layer1.0 is layer1.0.conv1), then in each group around it, out to the whole model,
where a full path ("layer1.0.conv1") is found too; `input` is the model's input. Only layers made before the entry
count, so the graph stays acyclic. `from:` with one name sets the input of any entry (an op, a sequential, a block, or
the branches of a join); `from:` with several names feeds an op or join that takes several inputs. With `repeat`, the
first copy takes the `from:` input and each later copy its predecessor's output. `shares:` names a layer of the same
op whose weights have the same shapes; the analysis counts them once, there, and to_torch builds one module for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

from archviz.errors import ArchvizError, SpecError, UnknownNameError, UnsupportedOpError, closest
from archviz.graph.ir import INPUT, Graph, Node, Scope, Shape
from archviz.format import shape as fmt_shape
from archviz.graph.make import made, make_node
from archviz.ops import OpKind, all_names, canonical_name, get_op
from archviz.spec.args import MAX_DIMENSION, resolve_value
from archviz.spec.model import REQUIRED_PARAM, STRUCTURAL_HEADS, BlockDef, Spec
from archviz.spec.yaml_loader import LocatedDict, LocatedList

META_KEYS = ("name", "repeat", "if", "note", "from", "shares")
MAX_NODES = 100_000  # 200x ResNet-152's layers; bounds the time (seconds) and memory (~1 GB) of any spec
MAX_ENTRIES = 4 * MAX_NODES  # entries expanded, also those that make no layer (`group: []`, a false `if`)
MAX_PATH_CHARS = 1_000  # of a layer path ("layer3.2.conv2"); long names nested deep would fill memory
MAX_NESTING = 64  # blocks inside blocks; also stops a block that uses itself
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")  # torch allows any name without a dot; RegNet's are like block1-0


class Tensor(NamedTuple):
    name: str  # the node that produced it, or INPUT
    shape: Shape


@dataclass(frozen=True)
class Where:
    file: str | None
    line: int | None
    note: str | None = None
    shares: Any = None  # the entry's `shares:` value, resolved when its layer is made
    shares_line: int | None = None


class _Namespace:
    """Where new layers get their names: a path prefix and the running index of its children."""

    def __init__(self, path: str):
        self.path = path
        self.count = 0

    def child(self, name: str | None) -> str:
        path = self.peek(name)
        self.count += 1
        return path

    def peek(self, name: str | None) -> str:
        """The path the next child would get, without taking it."""
        label = str(self.count) if name is None else name
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
    builder = _Builder(spec, params, shape)
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
    def __init__(self, spec: Spec, params: dict[str, Any], input_shape: Shape):
        self.spec = spec
        self.params = params
        self.nodes: list[Node] = []
        self.made: dict[str, Node | None] = {INPUT: None}  # layers made so far, by path, for `from:` and `shares:`
        self.input_shape = input_shape
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
        inputs = None  # the tensors named by a `from:` of several layers
        try:
            head, body, meta = split_entry(item)
        except ArchvizError as error:
            raise error.located(file=where.file, line=where.line, layer=ns.path or None)
        if "from" in meta:
            try:
                sources = self.sources(meta["from"], ns)
            except ArchvizError as error:
                raise error.located(file=where.file, line=_key_line(item, "from", where),
                                    layer=_future_path(head, meta.get("name"), ns))
            tensor, inputs = sources[0], (sources if len(sources) > 1 else None)
        try:
            local = {**scope, **tensor_vars(tensor.shape)} if "if" in meta or "repeat" in meta else scope
            if "if" in meta and not _truth(resolve_value(meta["if"], local)):
                return tensor
            name = _check_name(meta.get("name"))
            repeat = _repeat_count(resolve_value(meta.get("repeat", 1), local)) if "repeat" in meta else None
            if inputs is not None and repeat is not None:
                raise SpecError(f"`from:` names {len(inputs)} layers, so the entry cannot repeat (each copy after the "
                                "first takes one input, its predecessor's output)")
        except ArchvizError as error:
            raise error.located(file=where.file, line=where.line, layer=ns.path or None)
        note = meta.get("note")
        if note is not None and not isinstance(note, str):
            raise SpecError(f"`note` must be text, got {note!r}", file=where.file, line=where.line)
        if note is not None or "shares" in meta:
            where = Where(where.file, where.line, note, meta.get("shares"), _key_line(item, "shares", where))
        if repeat is None:
            return self.run_head(head, body, name, tensor, ns, scope, where, depth=depth, inputs=inputs)
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

    def run_head(self, head, body, name, tensor, ns, scope, where, *, depth: int, inputs=None) -> Tensor:
        if depth > MAX_NESTING:
            raise SpecError(f"blocks are nested more than {MAX_NESTING} deep (does a block use itself?)",
                            file=where.file, line=where.line, layer=ns.path.split(".")[0] or None)
        is_join = takes_branches(head)
        if where.shares is not None and (head in ("sequential", "group") or head in self.spec.blocks or is_join):
            what = "a join" if is_join else f"a {head}" if head in ("sequential", "group") else f"block {head!r}"
            raise SpecError(f"`shares:` names the layer whose weights one layer reuses; {what} has no weights of its "
                            "own (put `shares:` on its layers)", file=where.file, line=where.shares_line)
        if inputs is not None and not is_join and (head in ("sequential", "group") or head in self.spec.blocks):
            what = f"a {head}" if head in ("sequential", "group") else f"block {head!r}"
            raise SpecError(f"`from:` names {len(inputs)} layers, but {what} takes one input", file=where.file,
                            line=where.line, layer=ns.peek(name))
        if head in ("sequential", "group"):
            return self.run_sequential(head, body, name, tensor, ns, scope, where, depth=depth)
        if is_join:
            return self.run_join(head, body, name, tensor, ns, scope, where, depth=depth, inputs=inputs)
        if head in self.spec.blocks:
            return self.run_block(self.spec.blocks[head], body, name, tensor, ns, scope, where, depth=depth)
        if canonical_name(head) is None:
            choices = [*all_names(), *self.spec.blocks, *STRUCTURAL_HEADS]
            raise UnsupportedOpError(f"unknown layer type {head!r}{closest(head, choices)}", file=where.file,
                                     line=where.line)
        return self.add_node(head, body, name, inputs or [tensor], ns, scope, where)

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

    def run_join(self, head, body, name, tensor, ns, scope, where, *, depth: int, inputs=None) -> Tensor:
        args = {}
        branches = body
        if isinstance(body, dict):
            args = {k: v for k, v in body.items() if k != "branches"}
            branches = body.get("branches")
        if inputs is not None or (branches is None and body is not None):
            if branches is not None:
                raise SpecError(f"`from:` names {len(inputs)} layers, which are the inputs of `{head}`: give it no "
                                "branches too (or name one layer in `from:`, the input of its branches)",
                                file=where.file, line=where.line, layer=ns.peek(name or head))
            if inputs is None:
                raise SpecError(f"`{head}` without branches needs `from:` naming the layers it joins (at least two)",
                                file=where.file, line=where.line, layer=ns.peek(name or head))
            join_name = name if name is not None else self.free_name(ns, head)
            return self.add_node(head, args, join_name, inputs, ns, scope, where, count=False)
        if not isinstance(branches, list) or len(branches) < 2:
            raise SpecError(f"`{head}` needs a list of at least two branches (a branch is a list of layers; [] passes "
                            "the input through), or `from:` naming the layers it joins", file=where.file,
                            line=where.line)
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
        if not op.min_inputs <= len(inputs) <= op.max_inputs:
            takes = op.min_inputs if op.min_inputs == op.max_inputs else f"{op.min_inputs} to {op.max_inputs}"
            raise SpecError(f"{op.name} takes {takes} input{'s' if takes != 1 else ''}, but `from:` names "
                            f"{len(inputs)}", file=where.file, line=where.line, layer=path)
        in_shapes = [t.shape for t in inputs]
        local = {**scope, **tensor_vars(in_shapes[0])} if raw_args else scope
        try:
            layer = made(op, raw_args, in_shapes, scope=local)
        except ArchvizError as error:
            raise error.located(file=where.file, line=where.line, layer=path)
        shares = None
        if where.shares is not None:
            try:
                shares = self.shared_owner(where.shares, op, layer.attrs, in_shapes, ns)
            except ArchvizError as error:
                raise error.located(file=where.file, line=where.shares_line, layer=path)
        node = make_node(path, layer, [t.name for t in inputs], scope=ns.path, file=where.file, line=where.line,
                         note=where.note, shares=shares)
        self.nodes.append(node)
        self.made[path] = node
        return Tensor(path, layer.out_shape)

    # --- `from:` and `shares:` ---------------------------------------------------------------------------
    def lookup(self, ref, ns: _Namespace, key: str) -> str:
        """The path of the earlier layer `ref` names, seen from ns: its own layers first, then each group around it."""
        if not isinstance(ref, str) or not ref:
            raise SpecError(f"`{key}:` takes a layer name, got {ref!r}")
        prefix = ns.path
        while True:
            path = f"{prefix}.{ref}" if prefix else ref
            if path in self.made:
                return path
            if not prefix:
                break
            prefix = prefix.rpartition(".")[0]
        inside = f"{ns.path}." if ns.path else ""
        nearby = [p[len(inside):] for p in self.made if p.startswith(inside)] if inside else list(self.made)
        raise SpecError(f"`{key}: {ref}`: no earlier layer {ref!r}{closest(ref, nearby)} (a name in this group or one "
                        "around it, or a full path; only layers above this entry count)")

    def sources(self, value, ns: _Namespace) -> list[Tensor]:
        names = value if isinstance(value, list) else [value]
        if not names:
            raise SpecError("`from:` needs a layer name or a list of them, got []")
        paths = [self.lookup(ref, ns, "from") for ref in names]
        return [Tensor(p, self.input_shape if p == INPUT else self.made[p].out_shape) for p in paths]

    def shared_owner(self, ref, op, attrs: dict, in_shapes: list[Shape], ns: _Namespace) -> str:
        """The layer that owns the weights `shares: ref` names, checked to be the same op with weights of one shape.

        A layer without weights may name one too: a module called twice (a ReLU a torch block applies twice) is one
        module in to_torch's model, as in the traced one.
        """
        path = self.lookup(ref, ns, "shares")
        target = self.made[path]
        if target is None:
            raise SpecError(f"`shares: {ref}`: the input has no weights to share")
        if target.op != op.name:
            raise SpecError(f"`shares: {ref}`: {path} is {target.op}, not {op.name}; only a layer of the same type "
                            "can share its weights")
        mine = (op.params(attrs, in_shapes), op.buffers(attrs, in_shapes))
        _same_tensors(ref, path, op.weights(attrs, in_shapes), op.weights(target.attrs, list(target.in_shapes)))
        theirs = (op.params(target.attrs, list(target.in_shapes)), op.buffers(target.attrs, list(target.in_shapes)))
        if mine != theirs:
            raise SpecError(f"`shares: {ref}`: the weights differ in size: {mine[0]:,} parameters and {mine[1]:,} "
                            f"buffers here, {theirs[0]:,} and {theirs[1]:,} in {path}")
        return target.shares or path

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


def takes_branches(head: str) -> bool:
    """Whether an entry head is a join of several inputs (add, concat, mul): written with branches or `from:`, named
    by its op (add, add_1, ...) rather than numbered."""
    name = canonical_name(head)
    if name is None:
        return False
    op = get_op(name)
    return op.kind == OpKind.JOIN and op.max_inputs >= 2


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
        raise SpecError(f"layer name {name!r} may hold only ASCII letters, digits, '_' and '-'")
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


def _same_tensors(ref, path: str, mine, theirs) -> None:
    """Refuse `shares:` between layers whose stored tensors (Op.weights) differ, naming the first that does."""
    for here, there in zip(mine, theirs):
        if (here.name, tuple(here.shape)) != (there.name, tuple(there.shape)):
            raise SpecError(f"`shares: {ref}`: the weights differ in shape: {here.name} is {fmt_shape(here.shape)} "
                            f"here but {fmt_shape(there.shape)} in {path}")
    if len(mine) != len(theirs):
        names = [", ".join(w.name for w in tensors) or "none" for tensors in (mine, theirs)]
        raise SpecError(f"`shares: {ref}`: the weights differ: {names[0]} here, {names[1]} in {path}")


def _future_path(head: str, name, ns: _Namespace) -> str | None:
    """The path an entry's layer would get, for an error in its `from:`, raised before the layer is made."""
    if isinstance(name, (str, int)) and not isinstance(name, bool) and NAME_PATTERN.match(str(name)):
        return ns.peek(str(name))
    return ns.peek(head) if takes_branches(head) else ns.peek(None)


def _key_line(item, key: str, where: Where) -> int | None:
    return item.line_of(key) if isinstance(item, LocatedDict) and key in item else where.line


def _line_of(entries, index: int) -> int | None:
    return entries.line_of(index) if isinstance(entries, LocatedList) else None
