"""Published ImageNet-1K top-1 accuracies of torchvision's classification weights, read from its installed source.

torchvision states each weights' figures in its models/*.py as `Weights(url=..., transforms=partial(
ImageClassification, crop_size=224, ...), meta={**_COMMON_META, "num_params": ..., "recipe": ..., "_metrics":
{"ImageNet-1K": {"acc@1": 80.858, ...}}, "_docs": ...})` inside a `WeightsEnum` class, and a builder
`def resnet50(*, weights: Optional[ResNet50_Weights] = None, ...)` names its enum. Those files are parsed with `ast`,
never imported: importing torchvision's models takes seconds and runs torch. No torch, no numpy here.

timm's installed pretrained configs carry no accuracy (url, input_size, paper_ids, ... but no top-1), so timm models
have none here: nothing is invented or copied in by hand.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

IMAGENET = "ImageNet-1K"  # the key of torchvision's `_metrics` whose `acc@1` is the published top-1
NO_TIMM_ACCURACY = "no published top-1 in timm's installed configs"


@dataclass(frozen=True)
class PublishedAccuracy:
    """One set of published weights' ImageNet-1K accuracy, with what it was measured at and where it is stated."""

    builder: str  # torchvision's builder: resnet50
    weights: str  # the enum member: ResNet50_Weights.IMAGENET1K_V2
    top1: float  # percent, as printed in torchvision's source
    top5: float | None
    crop_size: int | None  # the evaluation crop (the weights' transforms); the accuracy is at this size
    num_params: int | None
    recipe: str  # the training recipe's address, torchvision's citation for the figure
    source: str  # the file it was read from: torchvision/models/resnet.py

    @property
    def citation(self) -> str:
        """'torchvision ResNet50_Weights.IMAGENET1K_V2 (crop 224), recipe: https://...'."""
        crop = f" (crop {self.crop_size})" if self.crop_size else ""
        recipe = f", recipe: {self.recipe}" if self.recipe else ""
        return f"torchvision {self.weights}{crop}{recipe}"


def torchvision_models_dir() -> Path | None:
    """torchvision's installed models/ folder, found without importing torchvision; None when not installed."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


def torchvision_accuracies(folder: Path | None = None) -> dict[str, tuple[PublishedAccuracy, ...]]:
    """Every classification builder in torchvision's models/*.py (not its detection, segmentation, video or
    quantized subfolders) -> its weights' published top-1, best first. Builders in name order; {} without torchvision.

    >>> torchvision_accuracies()["resnet50"][0].weights
    'ResNet50_Weights.IMAGENET1K_V2'
    """
    folder = folder or torchvision_models_dir()
    if folder is None:
        return {}
    found: dict[str, tuple[PublishedAccuracy, ...]] = {}
    for path in sorted(folder.glob("*.py")):
        found.update(read_weights_file(path, source=f"torchvision/models/{path.name}"))
    return dict(sorted(found.items()))


def read_weights_file(path: Path, *, source: str = "") -> dict[str, tuple[PublishedAccuracy, ...]]:
    """One torchvision models file: each registered builder -> its weights with an ImageNet-1K top-1, best first."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return {}
    scope = _module_values(tree)
    enums = {node.name: _weights_of(node, scope, source or path.name) for node in tree.body
             if isinstance(node, ast.ClassDef) and any(getattr(base, "id", "") == "WeightsEnum" for base in node.bases)}
    builders = {}
    for node in tree.body:
        enum_name = _builder_weights(node) if isinstance(node, ast.FunctionDef) and _registered(node) else None
        weights = enums.get(enum_name, ())
        if weights:
            builders[node.name] = tuple(PublishedAccuracy(builder=node.name, **fields) for fields in weights)
    return builders


_UNKNOWN = object()  # a value the parser cannot read without running the code (an imported name, a call)


def _module_values(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level `NAME = value` and `NAME: type = value`, for resolving `**_COMMON_META` in a weights' meta."""
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = node.value
    return values


def _value(node: ast.expr, scope: dict[str, ast.expr], depth: int = 0):
    """A literal (dicts with ** spreads of module-level dicts included), or _UNKNOWN."""
    if depth > 8:  # a name bound to itself through others: not a literal
        return _UNKNOWN
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return _value(scope[node.id], scope, depth + 1) if node.id in scope else _UNKNOWN
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_value(item, scope, depth + 1) for item in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand, scope, depth + 1)
        return -inner if isinstance(inner, (int, float)) else _UNKNOWN
    if isinstance(node, ast.Dict):
        return _dict_value(node, scope, depth)
    return _UNKNOWN


def _dict_value(node: ast.Dict, scope: dict[str, ast.expr], depth: int) -> dict:
    result = {}
    for key, item in zip(node.keys, node.values):
        value = _value(item, scope, depth + 1)
        if key is None:  # **spread
            if isinstance(value, dict):
                result.update(value)
            continue
        name = _value(key, scope, depth + 1)
        if isinstance(name, str) and value is not _UNKNOWN:
            result[name] = value
    return result


def _weights_of(enum: ast.ClassDef, scope: dict[str, ast.expr], source: str) -> list[dict]:
    """The fields of each `NAME = Weights(...)` in a WeightsEnum that publishes an ImageNet-1K top-1, best first."""
    found = []
    for node in enum.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "Weights"):
            continue
        arguments = {keyword.arg: keyword.value for keyword in node.value.keywords if keyword.arg}
        meta = _value(arguments["meta"], scope) if "meta" in arguments else {}
        metrics = meta.get("_metrics", {}).get(IMAGENET, {}) if isinstance(meta, dict) else {}
        top1 = metrics.get("acc@1") if isinstance(metrics, dict) else None
        if not isinstance(top1, (int, float)):
            continue
        top5 = metrics.get("acc@5")
        found.append({
            "weights": f"{enum.name}.{node.targets[0].id}", "top1": float(top1),
            "top5": float(top5) if isinstance(top5, (int, float)) else None,
            "crop_size": _crop_size(arguments.get("transforms"), scope),
            "num_params": meta.get("num_params") if isinstance(meta.get("num_params"), int) else None,
            "recipe": meta.get("recipe") if isinstance(meta.get("recipe"), str) else "", "source": source,
        })
    return sorted(found, key=lambda fields: -fields["top1"])


def _crop_size(transforms: ast.expr | None, scope: dict[str, ast.expr]) -> int | None:
    """crop_size of `partial(ImageClassification, crop_size=224, ...)`; None where it is not written so."""
    if not isinstance(transforms, ast.Call):
        return None
    for keyword in transforms.keywords:
        if keyword.arg == "crop_size":
            value = _value(keyword.value, scope)
            return value if isinstance(value, int) else None
    return None


def _registered(node: ast.FunctionDef) -> bool:
    """Decorated with torchvision's @register_model() (its list of builders)."""
    return any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "register_model" for d in node.decorator_list)


def _builder_weights(node: ast.FunctionDef) -> str | None:
    """The enum a builder's `weights` argument takes: `weights: Optional[ResNet50_Weights] = None` -> its name."""
    for argument in (*node.args.kwonlyargs, *node.args.args):
        if argument.arg != "weights" or argument.annotation is None:
            continue
        annotation = argument.annotation
        if isinstance(annotation, ast.Subscript):  # Optional[X]
            annotation = annotation.slice
        if isinstance(annotation, ast.BinOp):  # X | None
            annotation = annotation.left
        return annotation.id if isinstance(annotation, ast.Name) else None
    return None
