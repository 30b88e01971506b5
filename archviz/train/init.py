"""`archviz train --init` and `--freeze`: a run that starts from weights already trained, and keeps some fixed.

--init takes a run folder of archviz train (its best.pt), a checkpoint, a state dict (.pth) whose names are the
model's layer paths, or `torchvision`: for a zoo model built like a torchvision network (its spec's `torchvision:`
key), the weights torchvision's DEFAULT entry names, from torch hub's cache on this machine (torch.hub.get_dir() /
checkpoints). Nothing is downloaded: a missing file is an error naming where to put it.

The head, the output layer, is fitted anew when its shape differs (other classes): its tensors keep the seeded
initialisation. Every other tensor must be in the file with its shape. --freeze takes layer paths (comma-separated;
a path holds every layer under it) whose parameters are not trained, or `backbone`: all but the head (a linear probe).
Frozen parameters get no gradient, so no optimiser step (nor weight decay) moves them; batch norm's running
statistics inside a frozen block are still updated in training mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archviz.errors import ArchvizError, display_path

TORCHVISION = "torchvision"
BACKBONE = "backbone"
LISTED = 4  # names shown in a message before "..."


@dataclass(frozen=True)
class Started:
    """What --init and --freeze did, for the run's header."""

    source: str  # the file the weights came from, in words
    loaded: int  # tensors loaded
    new_head: tuple[str, ...]  # tensors fitted anew (other classes)
    frozen: int  # parameters frozen (elements)

    def lines(self) -> list[str]:
        lines = [f"init: {self.loaded} tensors from {self.source}"]
        if self.new_head:
            lines.append(f"init: a new head (other classes): {', '.join(self.new_head)} from the seed")
        if self.frozen:
            lines.append(f"frozen: {self.frozen:,} parameters are not trained")
        return lines


def start_from(net, *, init: str | None, freeze: str | None, graph, load: bool = True) -> Started | None:
    """Load --init's tensors into net (load=False: a resumed run, whose checkpoint holds the weights) and freeze
    --freeze's parameters; None when neither is given."""
    if init is None and freeze is None:
        return None
    head = _head_names(net, graph)
    source, loaded, new_head = "", 0, ()
    if init is not None:
        path = weights_path(init, graph)
        source = display_path(str(path))
        if load:
            loaded, new_head = _load(net, _tensors(path), head=head, path=path)
    frozen = _freeze(net, freeze, head=head) if freeze is not None else 0
    return Started(source, loaded, new_head, frozen)


def weights_path(init: str, graph) -> Path:
    """The file --init names: a run folder's best.pt (else last.pt), a file, or torchvision's cached weights."""
    if init == TORCHVISION:
        return _torchvision_file(graph)
    from archviz.train.run_folder import weights_file

    return weights_file(Path(init))


def _torchvision_file(graph) -> Path:
    name = getattr(graph, "torchvision", None)
    if not name:
        raise ArchvizError(f"--init torchvision: {graph.name} is not built like a torchvision network (its spec has "
                           "no torchvision: key); give a run folder or a state dict file")
    import torch
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise ArchvizError(f"--init torchvision: {display_path(str(path))} is not on this machine; archviz never "
                           f"downloads: fetch {weights.url} there yourself, or give the file's path to --init")
    return path


def _tensors(path: Path) -> dict:
    """The model's tensors in a checkpoint of archviz train or a state dict file (weights only, never unpickled)."""
    from archviz.inside.trained import tensors_of
    from archviz.train.checkpoint import is_checkpoint, read_weights_only

    state = read_weights_only(path)
    return tensors_of(state["model"] if is_checkpoint(state) else state, path)


def _head_names(net, graph) -> set[str]:
    """The output layer's tensors: those a model with other classes has in other shapes."""
    prefix = f"{graph.output}."
    return {name for name in net.state_dict() if name.startswith(prefix)}


def _load(net, tensors: dict, *, head: set[str], path: Path) -> tuple[int, tuple[str, ...]]:
    own = net.state_dict()
    missing = [name for name in own if name not in tensors]
    misshapen = [name for name in own if name in tensors and tuple(tensors[name].shape) != tuple(own[name].shape)]
    new_head = tuple(name for name in misshapen if name in head)
    problems = [f"{len(names)} {kind} ({', '.join(names[:LISTED])}{', ...' if len(names) > LISTED else ''})"
                for kind, names in (("missing", missing),
                                    ("misshapen", [n for n in misshapen if n not in head])) if names]
    if problems:
        raise ArchvizError(f"--init {display_path(str(path))}: these weights do not fit the model: "
                           f"{'; '.join(problems)}")
    if new_head and len(new_head) != len(head):
        raise ArchvizError(f"--init {display_path(str(path))}: the head fits in part ({', '.join(new_head)} differ)")
    kept = {name: tensors[name] for name in own if name not in new_head}
    net.load_state_dict(kept, strict=False)
    return len(kept), new_head


def _freeze(net, freeze: str, *, head: set[str]) -> int:
    names = [part.strip() for part in freeze.split(",") if part.strip()]
    if not names:
        raise ArchvizError(f"--freeze {freeze!r}: give layer paths (features,layer1) or {BACKBONE}")
    parameters = dict(net.named_parameters())
    if names == [BACKBONE]:
        chosen = [name for name in parameters if name not in head]
    else:
        chosen = []
        for path in names:
            found = [name for name in parameters if name == path or name.startswith(f"{path}.")]
            if not found:
                layers = sorted({name.rsplit(".", 1)[0] for name in parameters})
                raise ArchvizError(f"--freeze {path!r}: no layer of the model has that path; its layers with "
                                   f"parameters: {', '.join(layers[:8])}{', ...' if len(layers) > 8 else ''}")
            chosen += found
    for name in chosen:
        parameters[name].requires_grad_(False)
    return sum(parameters[name].numel() for name in set(chosen))
