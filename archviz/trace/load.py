"""Getting the PyTorch module behind a source, built on the meta device: no weights are allocated.

Sources (archviz.load dispatches here):
    torchvision:resnet50            a torchvision classification model (input 3x224x224, inception_v3 3x299x299)
    timm:convnext_tiny              a timm model, NAME or NAME.TAG as timm.list_models() / list_pretrained() name it
                                    (input: its pretrained_cfg's input_size), built with pretrained=False
    path/to/model.py:Net            a class or factory in a Python file: IMPORTS AND RUNS THAT FILE
    package.module:make_model       a class or factory in an importable module: IMPORTS AND RUNS IT
    an nn.Module object             (Python API) copied to the meta device; the object itself is never changed
`kwargs` go to the class or factory (timm: to timm.create_model). Running a user's code happens only for the explicit
`file.py:Name` and `module:name` forms, never for a zoo name or a spec file.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import enum
import hashlib
import importlib
import importlib.util
import json
import re
import sys
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from archviz.errors import ArchvizError, MissingDependencyError, UnknownNameError, closest
from archviz.graph.ir import Origin, Shape

TORCHVISION_PREFIX = "torchvision:"
TORCHVISION_INPUT = (3, 224, 224)  # what torchvision's classification weights are evaluated at (its crop size)
TORCHVISION_INPUTS = MappingProxyType({"inception_v3": (3, 299, 299)})  # the exceptions
TIMM_PREFIX = "timm:"
TIMM_INSTALL_HINT = "pip install 'archviz[timm]'"
# create_model's arguments that load weights or fetch a config (from a file or the Hugging Face Hub): archviz builds
# every model without weights, on the meta device, and never downloads anything.
TIMM_WEIGHT_ARGUMENTS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SUFFIXES = (".py",)
_NOT_CODE = (".yaml", ".yml", ".onnx", ".pth", ".pt")


class SourceKind(enum.StrEnum):
    TORCHVISION = "torchvision"  # torchvision:NAME
    TIMM = "timm"  # timm:NAME or timm:NAME.TAG
    FILE = "file"  # path/to/file.py:Name
    MODULE = "module"  # package.module:name
    OBJECT = "object"  # an nn.Module handed to the Python API


@dataclass(frozen=True)
class ModelSource:
    """A parsed model source. location: the torchvision builder, the timm model name, the file's path or the
    module's name."""

    text: str
    kind: SourceKind
    location: str
    attribute: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def name(self) -> str:
        """The model's name in reports: as typed, with a file's folders left out."""
        if self.kind == SourceKind.FILE:
            return f"{Path(self.location).name}:{self.attribute}"
        return self.text


def _is_path(text: str) -> bool:
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # a name too long for a file, or holding a NUL byte
        return False


def is_model_source(source) -> bool:
    """Whether `source` names PyTorch code (torchvision:, timm:, file.py:Name, module:name) rather than a zoo name or
    spec.

    >>> is_model_source("torchvision:resnet50"), is_model_source("timm:resnet18"), is_model_source("vgg16")
    (True, True, False)
    >>> is_model_source("models/net.py:Net")
    True
    """
    if not isinstance(source, str):
        return False
    if source.startswith((TORCHVISION_PREFIX, TIMM_PREFIX)):
        return True
    if source.lower().endswith(_NOT_CODE) or _is_path(source):  # a spec, ONNX or weights file named "a:b.yaml"
        return False
    left, sep, right = source.rpartition(":")
    return bool(sep and right and (left.endswith(_SUFFIXES) or _MODULE_NAME.match(left)))


def parse_source(text: str, *, kwargs: Mapping[str, Any] | None = None) -> ModelSource:
    """The kind, location and attribute of a source string (see the module docstring)."""
    frozen = MappingProxyType(dict(kwargs or {}))
    if text.startswith(TORCHVISION_PREFIX):
        return ModelSource(text, SourceKind.TORCHVISION, text[len(TORCHVISION_PREFIX):], kwargs=frozen)
    if text.startswith(TIMM_PREFIX):
        return ModelSource(text, SourceKind.TIMM, text[len(TIMM_PREFIX):], kwargs=frozen)
    left, _, right = text.rpartition(":")
    if not _MODULE_NAME.match(right):
        raise ArchvizError(f"{text!r}: {right!r} is not a class or function name (expected FILE.py:Name or "
                           "package.module:name)")
    kind = SourceKind.FILE if left.endswith(_SUFFIXES) else SourceKind.MODULE
    return ModelSource(text, kind, left, right, frozen)


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """--kwargs: a JSON object of keyword arguments for the model's class or factory.

    >>> parse_kwargs('{"num_classes": 10}')
    {'num_classes': 10}
    """
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ArchvizError(f"--kwargs {text!r} is not JSON ({error.msg} at character {error.pos}); expected an "
                           """object such as '{"num_classes": 10}'""") from None
    if not isinstance(value, dict):
        raise ArchvizError(f"--kwargs {text!r} must be a JSON object of keyword arguments, such as "
                           """'{"num_classes": 10}'""")
    return value


def default_input(source: ModelSource) -> Shape | None:
    """The input torchvision's and timm's models are made for; None where only the user can say.

    timm: the model's pretrained_cfg input_size (C, H, W), with the channels and image size of the `in_chans` and
    `img_size` kwargs where they are given (timm's ViTs and Swins take img_size; every timm model takes in_chans).
    """
    if source.kind == SourceKind.TORCHVISION:
        return TORCHVISION_INPUTS.get(source.location, TORCHVISION_INPUT)
    if source.kind == SourceKind.TIMM:
        channels, height, width = timm_pretrained_cfg(source).input_size
        size = source.kwargs.get("img_size")
        if isinstance(size, int):
            height = width = size
        elif isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(n, int) for n in size):
            height, width = size
        channels = source.kwargs.get("in_chans", channels)
        return (channels, height, width) if isinstance(channels, int) else None
    return None


def torchvision_names() -> list[str]:
    """torchvision's classification models (torchvision.models, not detection, segmentation or video)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def timm_names() -> list[str]:
    """timm's model architectures, as timm.list_models() names them (without a pretrained tag)."""
    return _timm().list_models()


def timm_pretrained_cfg(source: ModelSource):
    """The timm.models.PretrainedCfg of timm:NAME or timm:NAME.TAG (NAME alone: its default tag); an
    UnknownNameError with the closest names for a name or tag timm does not have."""
    timm = _timm()
    name = source.location
    architecture, _, tag = name.partition(".")
    names = timm_names()
    if architecture not in names:
        raise UnknownNameError(f"{source.text}: timm has no model {architecture!r}{closest(architecture, names)}")
    tagged = timm.list_pretrained(f"{architecture}.*")
    if tag and name not in tagged:
        known = f"; its tags: {', '.join(t.partition('.')[2] for t in tagged)}" if tagged else "; it has no tags"
        raise UnknownNameError(f"{source.text}: timm's {architecture} has no pretrained tag {tag!r}"
                               f"{closest(name, tagged)}{known}")
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.input_size:
        raise ArchvizError(f"{source.text}: timm gives no input size for it; give one with --input CxHxW")
    return cfg


def _timm():
    try:
        import timm
    except ImportError:
        raise MissingDependencyError(f"timm models need timm, which is not installed: {TIMM_INSTALL_HINT}") from None
    return timm


def _timm_factory(source: ModelSource):
    """timm.create_model for the name, without weights: pretrained=False, and no argument that loads any."""
    timm_pretrained_cfg(source)  # the name and tag exist (create_model would say so with a traceback)
    given = [key for key in TIMM_WEIGHT_ARGUMENTS if key in source.kwargs]
    if given:
        raise ArchvizError(f"{source.text}: --kwargs {', '.join(given)}: archviz builds timm models without weights "
                           "(pretrained=False, on the meta device) and never loads or downloads any")
    create_model = _timm().create_model

    def factory(**kwargs):
        return create_model(source.location, pretrained=False, **kwargs)

    return factory, source.text


def build_meta(source: ModelSource):
    """A fresh module for the source on the meta device, in eval mode."""
    torch = _torch()
    factory, label = model_factory(source)
    if isinstance(factory, torch.nn.Module):  # `module:model`, an instance made on import
        return meta_copy(factory)
    with warnings.catch_warnings():
        if source.kind == SourceKind.TORCHVISION:  # GoogLeNet and Inception v3 warn of a future default init
            warnings.simplefilter("ignore", FutureWarning)
        model = _construct(factory, dict(source.kwargs), label, torch)
    if not isinstance(model, torch.nn.Module):
        raise ArchvizError(f"{label}(...) returned a {type(model).__name__}, not a torch.nn.Module")
    return _scrub(model.to("meta")).eval()


def meta_module(origin: Origin):
    """The original module of a traced graph, built again on the meta device (for the cross-check)."""
    if origin.module is not None:
        return meta_copy(origin.module)
    return build_meta(parse_source(origin.source, kwargs=origin.kwargs))


def meta_copy(module):
    """A deep copy of `module` whose parameters and buffers are meta tensors of the same shapes, hooks removed, in
    eval mode. The module itself is not touched: its weights are not copied (the copy's memo maps each to a meta
    tensor), its training flag, hooks and devices stay as they are.
    """
    torch = _torch()
    memo: dict[int, Any] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in memo:
            meta = torch.empty_like(tensor, device="meta")
            if isinstance(tensor, torch.nn.Parameter):
                meta = torch.nn.Parameter(meta, requires_grad=tensor.requires_grad)
            memo[id(tensor)] = meta
    for submodule in module.modules():  # a dozen empty hook tables each, which deepcopy rebuilds slowly
        for value in vars(submodule).values():
            if type(value) in _EMPTY_COPIED and not value:
                memo[id(value)] = type(value)()
    try:
        duplicate = copy.deepcopy(module, memo)
    except Exception as error:  # a module holding something that cannot be copied (a lock, a file)
        raise ArchvizError(f"cannot copy {type(module).__name__} to trace it without changing it: "
                           f"{type(error).__name__}: {error}") from None
    return _scrub(duplicate).eval()  # every parameter and buffer is a meta tensor already (the memo's)


_EMPTY_COPIED = (collections.OrderedDict, set, dict)


def _scrub(model):
    """No hooks on a module archviz made or copied: a user's hook must not run (or keep state) during a trace."""
    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
                      module._forward_hooks_with_kwargs, module._forward_pre_hooks_with_kwargs):
            hooks.clear()
    return model


def _torch():
    from archviz.torch_build import import_torch

    return import_torch()


def model_factory(source: ModelSource):
    """The class or function to call (or a module instance), and how to name it in messages."""
    if source.kind == SourceKind.TIMM:
        return _timm_factory(source)
    if source.kind == SourceKind.TORCHVISION:
        try:
            names = torchvision_names()
        except ImportError:
            from archviz.torch_build import INSTALL_HINT

            raise ArchvizError(f"{source.text}: torchvision is not installed ({INSTALL_HINT})") from None
        if source.location not in names:
            raise UnknownNameError(f"{source.text}: torchvision has no classification model "
                                   f"{source.location!r}{closest(source.location, names)}")
        import torchvision

        return torchvision.models.get_model_builder(source.location), f"torchvision.models.{source.location}"
    if source.kind == SourceKind.FILE:
        module = _import_file(source.location)
        where = source.location
    else:
        module = _import_module(source.location)
        where = source.location
    target: Any = module
    for part in source.attribute.split("."):
        if not hasattr(target, part):
            choices = [name for name in dir(target) if not name.startswith("_")]
            raise ArchvizError(f"{where}: no attribute {source.attribute!r}{closest(part, choices)}"
                               + _model_hint(module))
        target = getattr(target, part)
    torch = _torch()
    if not callable(target) and not isinstance(target, torch.nn.Module):
        raise ArchvizError(f"{where}: {source.attribute} is a {type(target).__name__}, not a torch.nn.Module class "
                           "or a function returning one")
    return target, f"{Path(where).name if source.kind == SourceKind.FILE else where}:{source.attribute}"


def _model_hint(module) -> str:
    """'; it defines: Net, make_model' for the nn.Module classes and public functions of a user's module."""
    torch = _torch()
    names = [name for name, value in vars(module).items() if not name.startswith("_")
             and getattr(value, "__module__", None) == module.__name__
             and ((isinstance(value, type) and issubclass(value, torch.nn.Module)) or callable(value))]
    return f"; it defines: {', '.join(names)}" if names else ""


def _import_file(path: str):
    file = Path(path)
    if not file.is_file():
        raise ArchvizError(f"{path}: no such file" if not file.exists() else f"{path}: not a file")
    resolved = file.resolve()
    return _import_file_cached(str(resolved), resolved.stat().st_mtime_ns, path)


@lru_cache(maxsize=16)
def _import_file_cached(resolved: str, mtime_ns: int, shown: str):
    """Import a Python file as a module of its own (once per content: the cross-check builds the model again)."""
    digest = hashlib.sha256(f"{resolved} {mtime_ns}".encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", Path(resolved).stem)
    name = f"archviz_user_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ArchvizError(f"{shown}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look classes up by their module's name
    with _on_path(str(Path(resolved).parent)):  # the file may import its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise ArchvizError(f"{shown}: importing it raised {type(error).__name__}: {error}") from None
    return module


def _import_module(name: str):
    with _on_path(str(Path.cwd())):  # as `python -m` would: the working directory's packages are importable
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and name.startswith(error.name):
                raise ArchvizError(f"{name}: no such module (is its package installed, or in the current folder?)"
                                   ) from None
            raise ArchvizError(f"{name}: importing it raised ModuleNotFoundError: {error}") from None
        except Exception as error:
            raise ArchvizError(f"{name}: importing it raised {type(error).__name__}: {error}") from None


@contextlib.contextmanager
def _on_path(folder: str):
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _construct(factory, kwargs: dict, label: str, torch):
    """factory(**kwargs) on the meta device; a constructor that computes sizes with tensors (torchvision's RegNet
    calls .tolist() on one) is run again on the CPU, each weight moved to the meta device as it is registered."""
    try:
        with torch.device("meta"):
            return factory(**kwargs)
    except Exception:
        pass
    try:
        with _weights_to_meta(torch):
            return factory(**kwargs)
    except Exception as error:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ArchvizError(f"{label}({shown}) raised {type(error).__name__}: {error}") from None


@contextlib.contextmanager
def _weights_to_meta(torch):
    """While a model is constructed, every parameter and buffer is moved to the meta device as it is registered, so
    no more than one weight is ever allocated (as accelerate's init_empty_weights)."""
    nn = torch.nn
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self, name, tensor, persistent=True):
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer
