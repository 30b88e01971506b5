"""Layer paths for the layers read from an ONNX file: unique, stable, and torch's module paths where the file has them.

Where a name comes from, best first:
  1. a weight named like a PyTorch state-dict key, "layer1.0.conv1.weight": the module path is the key's stem;
  2. a node name with scopes, as the TorchScript exporter writes them, "/layer1/layer1.0/conv1/Conv": the scopes
     before the last part, each either a child name ("conv1") or a full path ("layer1.0"), give "layer1.0.conv1"
     (tf2onnx's "model/dense/MatMul" gives "model.dense");
  3. any other node name, its characters outside [A-Za-z0-9_] made "_" (dots separate path components);
  4. the op type, lower case, for a node without a name.
A name that several layers would get, or that is the group of other layers' names (googlenet's "/conv1/Relu" beside
"/conv1/conv/Conv"), takes its op type as one more component ("conv1.relu", "layer1.0.add"); what still collides
gets a suffix "_1", "_2", ... in graph order, so the same file always gives the same paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from archviz.graph.ir import INPUT

_OUTSIDE = re.compile(r"[^A-Za-z0-9_]+")
WEIGHT_SUFFIXES = (".weight", ".bias", ".running_mean", ".running_var")  # PyTorch state-dict keys of a layer
MAX_COMPONENT = 100  # characters of one path component; longer generated names are cut (the suffix keeps them unique)


@dataclass(frozen=True)
class NameHint:
    """What one layer offers for its name: its ONNX node name, op type, and the names of its stored weights."""

    node_name: str
    op_type: str
    weights: tuple[str, ...] = ()


def layer_paths(hints: list[NameHint]) -> list[str]:
    """One path per hint, in order: unique, none the group (a prefix) of another, each component [A-Za-z0-9_]+.

    >>> layer_paths([NameHint("/layer1/layer1.0/conv1/Conv", "Conv"), NameHint("/layer1/layer1.0/Add", "Add"),
    ...              NameHint("", "Relu"), NameHint("", "Relu")])
    ['layer1.0.conv1', 'layer1.0.add', 'relu', 'relu_1']
    """
    scoped = [_candidate(hint) for hint in hints]
    plain = [".".join(module) if module else leaf for module, leaf in scoped]
    counts: dict[str, int] = {}
    for path in plain:
        counts[path] = counts.get(path, 0) + 1
    groups = {path[:i] for path in plain for i in range(len(path)) if path[i] == "."}
    wanted = []
    for (module, leaf), path in zip(scoped, plain):
        if module and (counts[path] > 1 or path in groups):
            path = ".".join((*module, leaf))
        wanted.append(path)
    return _unique(wanted)


def _candidate(hint: NameHint) -> tuple[tuple[str, ...], str]:
    """(module path components, leaf) for one layer; the leaf is used alone when there is no module path."""
    leaf = _component(hint.op_type.lower()) or "layer"
    for weight in hint.weights:
        for suffix in WEIGHT_SUFFIXES:
            if weight.endswith(suffix):
                module = _components(weight[: -len(suffix)])
                if module:
                    return module, leaf
    name = hint.node_name
    scopes = [part for part in name.split("/") if part]
    if len(scopes) > 1:  # "/layer1/layer1.0/conv1/Conv" (torch), "model/dense/MatMul" (tf2onnx), "conv1/7x7_s2"
        return _scope_path(scopes[:-1]), _component(scopes[-1].lower()) or leaf
    if name.startswith("/"):  # "/Flatten": torch names a node outside any module by its op type
        return (), _component(name.lower()) or leaf
    return _components(name), leaf


def _scope_path(scopes: list[str]) -> tuple[str, ...]:
    """["layer1", "layer1.0", "conv1"] -> ("layer1", "0", "conv1"): a scope that extends the path so far replaces it."""
    path: list[str] = []
    for scope in scopes:
        so_far = ".".join(path)
        if path and scope.startswith(so_far + "."):
            path = scope.split(".")
        else:
            path.extend(scope.split("."))
    return _components(".".join(path))


def _components(name: str) -> tuple[str, ...]:
    return tuple(part for part in (_component(p) for p in name.split(".")) if part)


def _component(text: str) -> str:
    return _OUTSIDE.sub("_", text).strip("_")[:MAX_COMPONENT]


def _unique(wanted: list[str]) -> list[str]:
    """The paths with "_1", "_2", ... added where one is taken or is the group of another path."""
    taken: set[str] = {INPUT}
    groups = {path[:i] for path in wanted for i in range(len(path)) if path[i] == "."}
    out = []
    for path in wanted:
        candidate, suffix = path, 0
        while candidate in taken or candidate in groups:
            suffix += 1
            candidate = f"{path}_{suffix}"
        taken.add(candidate)
        out.append(candidate)
    return out
