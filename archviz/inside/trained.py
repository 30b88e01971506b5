"""A network with weights to look inside: its graph, its torch module in eval mode, and how its inputs are prepared.

The weights come from
- an archviz checkpoint (best.pt or last.pt of `archviz train`, or the run folder, meaning its best.pt): the graph is
  fitted again as the run fitted it (classes, added head, input size), and the run's dataset, class names and
  normalisation come with it;
- a state dict (.pth/.pt: a dict of tensors, or one under "state_dict" or "model") whose keys are the graph's layer
  paths; for the zoo's torchvision models these are torchvision's own names, so torchvision's ImageNet weights load;
- nothing: random initialisation from a seed, the picture to compare a trained network against.

The weights are checked against the graph up front (missing, unexpected and misshapen tensors, by name), so a file
for another network is one clear error rather than torch's page of key lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archviz.errors import ArchvizError, display_path
from archviz.graph.ir import Graph
from archviz.train.batches import Stats
from archviz.train.run_folder import weights_file

IMAGENET_STATS = Stats(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # torchvision's weights' preprocessing
PLAIN_STATS = 0.5, 0.25  # mean and std for other inputs: 0..1 pixels to roughly -2..2
STATE_DICT_KEYS = ("state_dict", "model")  # where training scripts commonly nest the tensors
LISTED = 3  # names shown per kind of mismatch


@dataclass(frozen=True)
class Trained:
    """A graph with its weights loaded into the module built from it."""

    graph: Graph
    net: Any  # torch.nn.Module, in eval mode, on the CPU
    classes: tuple[str, ...]  # one name per output score
    stats: Stats  # the per-channel normalisation the weights were trained with
    weights: str  # where the weights came from, in words
    dataset: str | None = None  # the run's dataset ("digits", "mnist:/data/mnist") when the weights are a run's
    dataset_classes: tuple[str, ...] = ()  # the names of its labels (a pretrained backbone has no classes of its own)
    dataset_image_shape: tuple[int, ...] = ()  # (C, H, W) its images were decoded at, before the model's input steps

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.graph.input_shape)

    def initial(self, seed: int) -> Trained:
        """The same network with the weights torch gives it from `seed`: for a run, the weights it started from
        (archviz train seeds torch with --seed just before building the model)."""
        from dataclasses import replace

        from archviz.torch_build import import_torch, to_torch

        torch = import_torch()
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
            torch.manual_seed(seed)
            net = to_torch(self.graph, device="cpu").eval()
        return replace(self, net=net, weights=f"initial weights (random, seed {seed})")


def load_trained(model: str, weights: str | Path | None = None, *, seed: int = 0) -> Trained:
    """`model` (anything archviz.load reads, or a run folder) with the weights in `weights`, or random ones. A run
    folder, checkpoint or state dict file given as `model` alone is read for its weights, never replaced by random ones.

    >>> trained = load_trained("lenet", seed=0)
    >>> trained.weights
    'random initialisation (seed 0)'
    """
    _check_libraries()
    if weights is None and Path(model).is_dir():
        model, weights = None, model
    elif weights is None and Path(model).suffix.lower() in (".pt", ".pth") and Path(model).is_file():
        weights = model  # archviz.load names the model whose tensors a state dict holds
    if weights is None:
        return _random(model, seed)
    path = weights_file(Path(weights))
    from archviz.train.checkpoint import check_structure, is_checkpoint, read_weights_only

    state = read_weights_only(path)
    if is_checkpoint(state):
        check_structure(state, path)  # every field it is read for, before any is used
        return _from_checkpoint(None if model == weights else model, path, state)
    if model is None:
        raise ArchvizError(f"{display_path(str(path))} is a state dict, not a run's checkpoint: name the model it "
                           "belongs to (archviz filters resnet18 --weights FILE)")
    return _from_state_dict(model, path, state)


def _check_libraries() -> None:
    """torch runs the network and Pillow draws it: say up front, in one line, if either is missing."""
    import importlib.util

    from archviz.errors import MissingDependencyError
    from archviz.torch_build import import_torch

    import_torch()
    if importlib.util.find_spec("PIL") is None:
        raise MissingDependencyError("pictures are drawn with Pillow, which is not installed: pip install "
                                     "'archviz[train]'")


def _random(model: str, seed: int) -> Trained:
    from dataclasses import replace

    import archviz

    graph = archviz.load(model)
    blank = Trained(graph, None, _class_names(graph), _stats_for(graph), "")
    return replace(blank.initial(seed), weights=f"random initialisation (seed {seed})")


def _from_checkpoint(model: str | None, path: Path, state: dict) -> Trained:
    """The run's network rebuilt from the checkpoint's data, or `model` (named by the user) fitted as the run was."""
    from archviz.torch_build import to_torch
    from archviz.train.model import checkpoint_graph, fit_model

    dataset = state["dataset"]
    source = state["source"]["model"]  # a label only: never loaded or imported
    pretext = state.get("pretext")
    tensors, classes, command = state["model"], tuple(dataset["classes"]), "train"
    if model is None:  # for archviz pretrain, the stored graph is the backbone already
        graph = checkpoint_graph(state, origin=display_path(str(path)))
    else:
        graph = fit_model(model, classes=len(classes), image_shape=tuple(dataset["image_shape"]),
                          adapt=state["settings"]["adapt"]).graph
        if pretext is not None:
            from archviz.pretrain.objectives import task_backbone

            graph = task_backbone(pretext["task"], graph)
    if pretext is not None:  # archviz pretrain: the backbone's tensors, without the task's head
        classes, command = (), f"pretrain --task {pretext['task']}"
        tensors = {name.removeprefix("backbone."): t for name, t in tensors.items() if name.startswith("backbone.")}
    net = to_torch(graph, device="cpu")
    _load_into(net, tensors, path=path, model=model or source, trained_from=source)
    epoch = state["position"]["epoch"]
    described = f"{display_path(str(path))} (archviz {command} {source} on {dataset['name']}, after epoch {epoch})"
    stats = Stats(tuple(dataset["normalize"]["mean"]), tuple(dataset["normalize"]["std"]))
    return Trained(graph, net.eval(), classes, stats, described, dataset["name"], tuple(dataset["classes"]),
                   tuple(dataset["image_shape"]))


def _from_state_dict(model: str, path: Path, state) -> Trained:
    import archviz
    from archviz.torch_build import to_torch

    tensors = tensors_of(state, path)
    graph = archviz.load(model)
    net = to_torch(graph, device="cpu")
    _load_into(net, tensors, path=path, model=model)
    return Trained(graph, net.eval(), _class_names(graph), _stats_for(graph), f"{display_path(str(path))} (state dict)")


def tensors_of(state, path: Path) -> dict:
    """The tensors of a loaded state dict, unwrapped from the keys training scripts nest them under; one clear
    error naming `path` for anything else."""
    import torch

    for key in STATE_DICT_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArchvizError(f"{display_path(str(path))}: neither a checkpoint of archviz train nor a state dict "
                           "(a dict of tensors)")
    return state


def _load_into(net, tensors: dict, *, path: Path, model: str, trained_from: str | None = None) -> None:
    """Load tensors into net, or say by name what does not fit."""
    own = net.state_dict()
    missing = [name for name in own if name not in tensors]
    unexpected = [name for name in tensors if name not in own]
    misshapen = [f"{name} is {_dims(tensors[name])} in the file, {_dims(own[name])} in the model"
                 for name in own if name in tensors and tuple(tensors[name].shape) != tuple(own[name].shape)]
    problems = [f"{len(names)} {kind} ({', '.join(names[:LISTED])}{', ...' if len(names) > LISTED else ''})"
                for kind, names in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen))
                if names]
    if problems:
        origin = f" (trained from {trained_from!r})" if trained_from and trained_from != model else ""
        raise ArchvizError(f"{display_path(str(path))}{origin}: these weights do not fit {model}: "
                           f"{'; '.join(problems)}")
    net.load_state_dict(tensors)


def _dims(tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "a scalar"


def _class_names(graph: Graph) -> tuple[str, ...]:
    """ImageNet's class names for a 1000-way output when torchvision is installed; otherwise the indices."""
    out_shape = graph.by_name[graph.output].out_shape
    count = out_shape[0] if len(out_shape) == 1 else 0
    names = imagenet_categories() if count == 1000 else None
    return names or tuple(str(i) for i in range(count))


def imagenet_categories() -> tuple[str, ...] | None:
    """The 1000 ImageNet class names torchvision ships in models/_meta.py, read from the file: importing torchvision's
    models takes seconds (it imports torch._dynamo). None when torchvision is not installed."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    meta = Path(next(iter(spec.submodule_search_locations))) / "models" / "_meta.py"
    try:
        tree = ast.parse(meta.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and any(getattr(t, "id", "") == "_IMAGENET_CATEGORIES"
                                                     for t in statement.targets):
            names = ast.literal_eval(statement.value)
            return tuple(names) if len(names) == 1000 else None
    return None


def _stats_for(graph: Graph) -> Stats:
    channels = graph.input_shape[0] if len(graph.input_shape) == 3 else 1
    if channels == 3:
        return IMAGENET_STATS
    mean, std = PLAIN_STATS
    return Stats((mean,) * channels, (std,) * channels)
