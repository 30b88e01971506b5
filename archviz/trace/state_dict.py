"""A state dict (.pth/.pt) holds weights, not a graph: archviz names the zoo or torchvision model whose tensors it
holds, exactly (every name and shape), and analyses that model.

The file is read with torch.load(weights_only=True), which unpickles tensors and plain containers only, never code.
Checkpoints that wrap the weights ({"state_dict": ...}, {"model": ...}) and DataParallel's "module." prefix are
unwrapped. Candidates are the zoo first (its spec is analysed), then torchvision's classification models with their
default arguments (built on the meta device; their names and shapes are cached on disk per torch/torchvision version).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from archviz.errors import ArchvizError

Signature = dict[str, tuple[int, ...]]  # tensor name -> shape
WRAPPERS = ("state_dict", "model", "model_state_dict", "net", "weights")  # keys checkpoints keep the weights under
CLOSEST = 3  # candidates named when nothing matches


@dataclass(frozen=True)
class Match:
    """The model a state dict belongs to: a source archviz.load reads, and the sentence that says so."""

    source: str
    message: str


def read_signature(path: str | Path) -> Signature:
    """The names and shapes of the tensors in a state dict file; an ArchvizError naming the file if it is none."""
    from archviz.torch_build import import_torch

    torch = import_torch()
    shown = str(path)
    if not Path(path).is_file():
        raise ArchvizError(f"{shown}: no such file")
    from archviz.train.checkpoint import read_weights_only

    data = read_weights_only(Path(path))
    if isinstance(data, Mapping) and not all(isinstance(v, torch.Tensor) for v in data.values()):
        for key in WRAPPERS:  # a checkpoint: the weights and other things (epoch, optimizer state)
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        what = f"a {type(data).__name__}" if not isinstance(data, Mapping) else "a mapping that holds other things too"
        raise ArchvizError(f"{shown}: not a state dict (it holds {what}, not names mapped to tensors)")
    keys = [str(k) for k in data]
    prefix = "module."  # nn.DataParallel's wrapper
    if all(k.startswith(prefix) for k in keys):
        keys = [k[len(prefix):] for k in keys]
    return {k: tuple(v.shape) for k, v in zip(keys, data.values())}


def identify(path: str | Path, *, candidates: Callable[[], Iterable[tuple[str, Signature]]] | None = None) -> Match:
    """The zoo or torchvision model whose tensors (names and shapes) the file holds exactly; else an ArchvizError
    naming the closest candidates (most tensors matching)."""
    ours = read_signature(path)
    scored = []
    for source, theirs in (candidates or all_candidates)():
        if theirs == ours:
            return Match(source, f"{path}: a state dict (no graph); its {len(ours)} tensors match {source} exactly: "
                                 f"analysing {source}")
        same = sum(1 for key, shape in ours.items() if theirs.get(key) == shape)
        scored.append((same, source, len(theirs)))
    scored.sort(key=lambda item: -item[0])
    near = [f"{source} ({same} of its {total} tensors)" for same, source, total in scored[:CLOSEST] if same]
    closest = f"; closest: {', '.join(near)}" if near else "; none of them shares a tensor name and shape with it"
    raise ArchvizError(f"{path}: a state dict (no graph) of {len(ours)} tensors, and no zoo or torchvision model has "
                       f"exactly these names and shapes{closest}")


def all_candidates() -> Iterator[tuple[str, Signature]]:
    """The zoo's models, then torchvision's classification models, with the names and shapes of their tensors."""
    yield from zoo_signatures()
    yield from torchvision_signatures()


def zoo_signatures() -> Iterator[tuple[str, Signature]]:
    import archviz
    from archviz.spec.zoo import zoo_names
    from archviz.torch_build import to_torch

    for name in zoo_names():
        model = to_torch(archviz.load(name), device="meta")
        yield name, {k: tuple(v.shape) for k, v in model.state_dict().items()}


def torchvision_signatures() -> Iterator[tuple[str, Signature]]:
    try:
        import torchvision
    except ImportError:
        return
    import torch

    from archviz.cache import cached_json

    key = f"torch {torch.__version__} torchvision {torchvision.__version__} signatures 1"
    rows = cached_json("torchvision-state-dicts", key, _torchvision_rows)
    for name, pairs in rows:
        yield f"torchvision:{name}", {k: tuple(shape) for k, shape in pairs}


def _torchvision_rows() -> list:
    from archviz.trace.load import build_meta, parse_source, torchvision_names

    rows = []
    for name in torchvision_names():
        model = build_meta(parse_source(f"torchvision:{name}"))
        rows.append([name, [[k, list(v.shape)] for k, v in model.state_dict().items()]])
    return rows
