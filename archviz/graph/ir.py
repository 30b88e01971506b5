"""The validated graph: the one representation every later stage reads (analysis, torch, diagram, renderers).

Every node knows its input and output shapes; they are inferred once, when the graph is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping

from archviz.errors import UnknownNameError, closest

Shape = tuple[int, ...]
INPUT = "input"  # the name of the graph's input tensor; no node has it


@dataclass(frozen=True)
class Node:
    """One layer. name is its path ("layer3.2.conv2"), unique in the graph and the torch module name."""

    name: str
    op: str
    attrs: Mapping[str, Any]
    inputs: tuple[str, ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    scope: str = ""
    file: str | None = None
    line: int | None = None
    note: str | None = None  # the spec's `note:` for this layer (errata, remarks from the paper)
    shares: str | None = None  # the earlier layer whose weights this one reuses (tied weights): counted once, there
    reused: int = 0  # parameters of some of its weights that an earlier layer holds too (one tied weight): counted there

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Scope:
    """A named group of layers: a sequential, a block invocation, or the copies of a repeat."""

    path: str
    kind: str  # "sequential", "block" or "repeat"
    block: str | None = None  # the block's name when kind is "block"
    args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    file: str | None = None
    line: int | None = None

    @property
    def depth(self) -> int:
        return self.path.count(".") + 1


@dataclass(frozen=True)
class Origin:
    """Where a graph traced from PyTorch code came from: enough to build the original module again, on the meta
    device, for the cross-check (archviz/trace/load.py, meta_module), and what the trace could not place."""

    source: str  # as given: "torchvision:resnet50", "models/net.py:Net", "pkg.models:make_model", "<Net object>"
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # for the constructor/factory
    module: Any = field(default=None, compare=False, repr=False)  # an nn.Module given to the Python API; never changed
    method: str = "fx"  # "fx": torch.fx symbolic trace; "eager": the calls of one eager pass (archviz/trace/eager.py)
    uncalled: tuple[tuple[str, int], ...] = ()  # (module path, parameters) of weights no traced layer uses
    weight_macs: int = 0  # MACs of calls on weights alone (a position-bias MLP): once per forward pass, any batch
    sized_macs: int = 0  # MACs per sample of calls on tensors made from the batch size alone (a position encoding)
    # (layer, the last layer it stays alive through) where the model's code holds a layer's tensor in a local name
    # past its last use (archviz/trace/frames.py): for the memory walks
    held_locals: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Graph:
    """A frozen DAG of nodes in topological (spec) order."""

    name: str
    description: str
    input_shape: Shape
    nodes: tuple[Node, ...]
    scopes: tuple[Scope, ...]
    output: str
    params: Mapping[str, Any]
    source: str | None = None
    torchvision: str | None = None
    origin: Origin | None = None  # set on graphs traced from PyTorch code (archviz/trace); None for specs

    @cached_property
    def by_name(self) -> Mapping[str, Node]:
        return MappingProxyType({node.name: node for node in self.nodes})

    def node(self, name: str) -> Node:
        try:
            return self.by_name[name]
        except KeyError:
            raise UnknownNameError(f"no layer {name!r} in {self.name}{closest(name, self.by_name)}") from None

    def shape_of(self, tensor: str) -> Shape:
        return self.input_shape if tensor == INPUT else self.by_name[tensor].out_shape

    @cached_property
    def consumers(self) -> Mapping[str, tuple[str, ...]]:
        users: dict[str, list[str]] = {INPUT: []}
        for node in self.nodes:
            users.setdefault(node.name, [])
            for source in node.inputs:
                users[source].append(node.name)
        return MappingProxyType({k: tuple(v) for k, v in users.items()})
