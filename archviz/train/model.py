"""The model a run trains: a spec's graph fitted to a dataset, every change stated in words and recorded.

- The classes: a spec with a `num_classes` parameter gets the dataset's count through it.
- The input: with Adapt.INPUT the images are resized and their channels converted to the spec's input (done per
  batch in loop.py; described here); with Adapt.MODEL the spec is validated at the images' own shape.
- A final softmax is left out: the cross-entropy loss takes logits (argmax, and so accuracy, is unchanged).
- A graph whose output is not one score per class (the course's basic_cnn ends at its last convolution) gets a
  head: flatten, then a linear layer to the classes, as nodes `head_flatten` and `head_fc` of the same graph, so
  `archviz.inspect(graph)` counts them too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from archviz.errors import ArchvizError, ShapeError
from archviz.graph.ir import Graph
from archviz.ops import get_op
from archviz.ops.linear import Linear
from archviz.ops.structure import Flatten

HEAD_NAMES = ("head_flatten", "head_fc")


@dataclass(frozen=True)
class ModelSource:
    """What was asked for (a zoo name or a spec file) and the spec file's text, recorded in every checkpoint."""

    model: str  # as given: "lenet", "nets/my_net.yaml" or "torchvision:mobilenet_v2"
    kind: str  # "zoo", "file" or "code" (PyTorch code, recorded as the spec it traces to)
    spec_file: str
    spec_text: str

    def as_dict(self) -> dict:
        return {"model": self.model, "kind": self.kind, "spec_file": self.spec_file, "spec_text": self.spec_text}


@dataclass(frozen=True)
class FittedModel:
    graph: Graph
    source: ModelSource
    input_shape: tuple[int, ...]  # (C, H, W) the model takes; batches are adapted to it
    changes: tuple[str, ...]  # every change to the spec, in words


def model_source(model: str | Path) -> ModelSource:
    from archviz.spec.zoo import load_spec
    from archviz.trace.load import is_model_source

    if is_model_source(model):  # its spec text comes from the traced graph, once fitted (fit_model)
        return ModelSource(str(model), "code", "", "")
    spec = load_spec(model)
    path = Path(spec.file) if spec.file else None
    text = path.read_text(encoding="utf-8") if path is not None and path.is_file() else ""
    is_file = str(model).endswith((".yaml", ".yml")) or "/" in str(model) or Path(str(model)).is_file()
    return ModelSource(str(model), "file" if is_file else "zoo", str(path or ""), text)


def source_input(model: str | Path) -> tuple[int, ...] | None:
    """The input a model takes by default: its spec's, or for PyTorch code torchvision's default (else None)."""
    from archviz.spec.zoo import load_spec
    from archviz.trace.load import default_input, is_model_source, parse_source

    if is_model_source(model):
        return default_input(parse_source(str(model)))
    return tuple(spec_input(load_spec(model)))


def _fit_code(model: str, *, classes: int, image_shape: tuple[int, int, int], adapt: str):
    """A traced model and what changed: torchvision's models take num_classes; others get a head if needed."""
    import archviz
    from archviz.trace.load import SourceKind, parse_source

    shape = tuple(image_shape) if adapt == "model" else source_input(model)
    if shape is None:
        raise ArchvizError(f"{model}: archviz does not know this model's input size; train it with --adapt model "
                           "(it then takes the images' own shape)")
    changes, kwargs = [], {}
    if parse_source(model).kind == SourceKind.TORCHVISION:
        kwargs["num_classes"] = classes
        changes.append(f"num_classes={classes} given to {model} (the dataset's classes)")
    if adapt == "model":
        changes.append(f"model input {'x'.join(map(str, shape))} (the images' own shape)")
    return archviz.load(model, input=shape, kwargs=kwargs), changes


def fit_model(model: str | Path, *, classes: int, image_shape: tuple[int, int, int], adapt: str) -> FittedModel:
    """The spec's graph fitted to `classes` classes and, with adapt="model", to images of image_shape.

    >>> fitted = fit_model("basic_cnn", classes=10, image_shape=(1, 8, 8), adapt="input")
    >>> fitted.graph.output, fitted.graph.nodes[-1].out_shape
    ('head_fc', (10,))
    """
    from archviz.spec.zoo import load_spec
    from archviz.trace.load import is_model_source

    source = model_source(model)
    if is_model_source(model):
        from archviz.render.spec_yaml import graph_to_spec

        graph, changes = _fit_code(str(model), classes=classes, image_shape=image_shape, adapt=adapt)
        return _finish(graph, replace(source, spec_text=graph_to_spec(graph, when=None)), changes, classes)
    graph, changes = fit_spec(load_spec(model), classes=classes, image_shape=image_shape, adapt=adapt)
    return _finish(graph, source, changes, classes)


def fit_spec(spec, *, classes: int, image_shape: tuple[int, int, int], adapt: str) -> tuple[Graph, list[str]]:
    """A spec's graph with `classes` through its num_classes parameter and, with adapt="model", the images' shape."""
    from archviz.graph.build import validate

    changes: list[str] = []
    overrides = {}
    current = spec.params.get("num_classes")
    if "num_classes" in spec.params and current != classes:
        overrides["num_classes"] = classes
        changes.append(f"num_classes {current} -> {classes} (the dataset's classes)")
    shape = tuple(image_shape) if adapt == "model" else None
    try:
        graph = validate(spec, input_shape=shape, overrides=overrides)
    except ShapeError as error:
        if shape is None:
            raise
        raise ShapeError(f"--adapt model: {spec.name} cannot take the dataset's {'x'.join(map(str, shape))} images: "
                         f"{error}; --adapt input resizes the images to its input instead") from None
    if shape is not None and tuple(spec_input(spec)) != shape:
        changes.append(f"model input {'x'.join(map(str, spec_input(spec)))} -> {'x'.join(map(str, shape))} "
                       "(the images' own shape)")
    return graph, changes


def _finish(graph: Graph, source: ModelSource, changes: list[str], classes: int) -> FittedModel:
    """Drop a final softmax and add a classifier head where the output is not one score per class."""
    last = graph.by_name[graph.output]
    if get_op(last.op).normalises_logits and len(last.inputs) == 1 and len(graph.consumers[graph.output]) == 0:
        graph = replace(graph, nodes=graph.nodes[:-1], output=last.inputs[0])
        changes.append(f"final {last.op} {last.name!r} left out: the cross-entropy loss takes logits")
    out_shape = graph.by_name[graph.output].out_shape
    if tuple(out_shape) != (classes,):
        graph = add_head(graph, classes)
        changes.append(f"head added: flatten {'x'.join(map(str, out_shape))} -> linear to {classes} classes "
                       f"({HEAD_NAMES[0]}, {HEAD_NAMES[1]}); the spec ends without a {classes}-way classifier")
    return FittedModel(graph, source, tuple(graph.input_shape), tuple(changes))


def checkpoint_graph(state: dict, *, origin: str) -> Graph:
    """The graph a checkpoint's run trained, rebuilt from what the checkpoint holds as data.

    A checkpoint is data: the model it names ("evil.py:Net") is never imported. It holds the exported spec of the
    graph it trained (graph.spec; for archviz pretrain, the backbone). Checkpoints written before that key existed
    are rebuilt from their zoo name, or from the spec text they recorded.
    """
    from archviz.graph.build import validate
    from archviz.spec.model import read_spec_text

    stored = state.get("graph", {}).get("spec")
    if isinstance(stored, str) and stored:
        return validate(read_spec_text(stored, origin=f"{origin} (graph.spec)"))
    dataset, classes = state["dataset"], len(state["dataset"]["classes"])
    graph, changes = fit_spec(_recorded_spec(state["source"], origin=origin), classes=classes,
                              image_shape=tuple(dataset["image_shape"]), adapt=state["settings"]["adapt"])
    graph = _finish(graph, ModelSource(origin, "file", "", ""), changes, classes).graph
    pretext = state.get("pretext")
    if pretext is not None:  # archviz pretrain trained the backbone, without the classifier
        from archviz.pretrain.objectives import task_backbone

        graph = task_backbone(pretext["task"], graph)
    return graph


def _recorded_spec(source: dict, *, origin: str):
    """An older checkpoint's model as data: its zoo spec, or the spec text it recorded."""
    from archviz.spec.model import read_spec_text
    from archviz.spec.zoo import load_zoo, zoo_names

    if source.get("kind") == "zoo" and source.get("model") in zoo_names():
        return load_zoo(source["model"])
    if not isinstance(source.get("spec_text"), str) or not source["spec_text"]:
        raise ArchvizError(f"{origin}: the checkpoint holds neither the spec of its graph nor a zoo name; archviz "
                           "does not import the code a checkpoint names")
    return read_spec_text(source["spec_text"], origin=f"{origin} (source.spec_text)")


def spec_input(spec) -> tuple[int, ...]:
    from archviz.graph.build import parse_input

    return parse_input(spec.input, file=spec.file)


def add_head(graph: Graph, classes: int) -> Graph:
    """The graph with flatten and linear(classes) appended after its output."""
    from archviz.graph.make import made, make_node

    for name in HEAD_NAMES:
        if name in graph.by_name:
            raise ArchvizError(f"{graph.name} already has a layer {name!r}; cannot add a classifier head", layer=name)
    nodes = list(graph.nodes)
    tensor, shape = graph.output, graph.by_name[graph.output].out_shape
    layers = [(HEAD_NAMES[0], Flatten.name, {})] if len(shape) > 1 else []
    layers.append((HEAD_NAMES[1], Linear.name, {"out_features": classes}))
    for name, op_name, raw in layers:
        layer = made(op_name, raw, [shape])
        nodes.append(make_node(name, layer, (tensor,), note="added by archviz train"))
        tensor, shape = name, layer.out_shape
    return replace(graph, nodes=tuple(nodes), output=tensor)


def describe_input_adaptation(image_shape: tuple[int, int, int], input_shape: tuple[int, ...]) -> tuple[str, ...]:
    """How each batch is changed to fit the model's input, in words; () when nothing changes."""
    if len(input_shape) != 3:
        raise ShapeError(f"the model takes {'x'.join(map(str, input_shape))} inputs; archviz train feeds images, "
                         "CxHxW")
    (c, h, w), (mc, mh, mw) = image_shape, input_shape
    steps = []
    if c != mc:
        if (c, mc) == (1, 3):
            steps.append("channels 1 -> 3 (the gray image repeated)")
        elif (c, mc) == (3, 1):
            steps.append("channels 3 -> 1 (luma: 0.299 R + 0.587 G + 0.114 B)")
        else:
            raise ShapeError(f"the model takes {mc}-channel images and the dataset has {c} channels; only 1 <-> 3 "
                             "converts (--adapt model gives the model the dataset's shape)")
    if (h, w) != (mh, mw):
        steps.append(f"resized {h}x{w} -> {mh}x{mw} (bilinear{', antialiased' if mh < h or mw < w else ''})")
    return tuple(steps)
