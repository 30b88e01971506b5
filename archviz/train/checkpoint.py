"""Checkpoints that load with `torch.load(path, weights_only=True)`: only tensors, numbers, strings, lists, tuples and
dicts, so loading one runs no code. Each records what is needed to continue the run exactly: the weights, the
optimiser and scheduler, the RNG states (torch, CUDA, numpy, Python) and the data-order and augmentation
generators; and what is needed to know what it is: the model source, settings, dataset, thread count and versions.

Written through io.BytesIO and archviz.output.write_atomic, so a run killed mid-write keeps the previous file.
"""

from __future__ import annotations

import io
import math
import platform
import random
from pathlib import Path

from archviz.errors import ArchvizError, display_path
from archviz.output import write_atomic

FORMAT = "archviz-train/1"


def save_checkpoint(path: Path, state: dict) -> bytes:
    """Write state to path atomically; the bytes are returned so best.pt can be the same file without a second save."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    write_atomic(path, data)
    return data


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by save_checkpoint, loaded weights-only onto the CPU, its structure checked."""
    if not path.is_file():
        raise ArchvizError(f"no checkpoint {display_path(str(path))} to resume from; --resume continues the run in "
                           "the -o folder, which holds last.pt")
    state = read_weights_only(path)
    if not is_checkpoint(state):
        raise ArchvizError(f"{display_path(str(path))}: not a checkpoint of archviz train ({FORMAT})")
    check_structure(state, path)
    return state


def is_checkpoint(state) -> bool:
    return isinstance(state, dict) and state.get("format") == FORMAT


def read_weights_only(path: Path):
    """What torch.load(path, weights_only=True) gives, on the CPU; a corrupt or foreign file is an ArchvizError.
    A pickled Python object is refused by name, without torch's advice to load it with weights_only=False (which
    would run the pickle's code)."""
    import pickle
    import warnings

    from archviz.torch_build import import_torch

    torch = import_torch()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's warnings about pickles repeat the advice archviz does not give
            return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, MemoryError) as error:
        raise ArchvizError(f"{display_path(str(path))}: cannot load it ({_load_failure(error)})") from None


def _load_failure(error: Exception) -> str:
    """What is wrong with the file, in a few words (torch's message is mostly advice on running pickles)."""
    import re

    if isinstance(error, EOFError):
        return "the file is empty or cut short"
    text = str(error)
    named = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if named:
        return (f"a pickled Python object that names {named.group(1)}, not a file of tensors; archviz will not "
                "unpickle it, since that runs code: save the weights with torch.save(model.state_dict(), PATH)")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            detail = line.partition("WeightsUnpickler error:")[2].strip() or " ".join(lines[index + 1:index + 2])
            return f"not a file of tensors that loads without running code: {detail}"
    if "Weights only load failed" in text:
        return "not a file of tensors that loads without running code; archviz will not unpickle it"
    return next((line for line in lines if "error" in line.lower()), lines[0] if lines else type(error).__name__)


def rng_state() -> dict:
    """The global random states: torch (CPU and every CUDA device), numpy's legacy global and Python's."""
    import numpy as np
    import torch

    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, words, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "words": list(words), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state["numpy"]
    np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["position"],
                         saved["has_gauss"], saved["gauss"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["words"]), python["gauss_next"]))


def versions() -> dict[str, str]:
    """The versions that decide the numbers: Python, archviz, torch, numpy (and CUDA and cuDNN when present)."""
    import numpy as np
    import torch

    import archviz

    found = {"python": platform.python_version(), "archviz": archviz.__version__, "torch": str(torch.__version__),
             "numpy": np.__version__}  # str(): torch's version is a TorchVersion, which weights-only loading refuses
    if torch.version.cuda:
        found["cuda"] = torch.version.cuda
    if torch.backends.cudnn.is_available():
        found["cudnn"] = str(torch.backends.cudnn.version())
    return found



# --- the structure of a checkpoint, checked before any of it is used -------------------------------------------------

MT_WORDS = 624  # a Mersenne Twister's state: numpy's keys, and Python's words (then its position, a 625th)
WORD_MAX = 2**32 - 1


class Field:
    """One value of a loaded checkpoint and its dotted name ("position.epoch"). Each check returns the value, or
    raises an ArchvizError naming the file, the field, its value and what was expected."""

    def __init__(self, path: Path, name: str, value):
        self.path, self.name, self.value = path, name, value

    def wrong(self, expected: str, *, what: str | None = None) -> ArchvizError:
        return ArchvizError(f"{self.name} {what or f'is {_shown(self.value)}'}; expected {expected}",
                            file=str(self.path))

    def __getitem__(self, key) -> Field:
        if key not in self.mapping():
            raise ArchvizError(f"{self._child(key)} is missing", file=str(self.path))
        return Field(self.path, self._child(key), self.value[key])

    def get(self, key) -> Field | None:
        """The child, or None where the key is absent or None (an optional field)."""
        return self[key] if self.mapping().get(key) is not None else None

    def _child(self, key) -> str:
        return f"{self.name}.{key}" if self.name else str(key)

    def mapping(self) -> dict:
        if not isinstance(self.value, dict):
            raise self.wrong("a dict")
        return self.value

    def children(self) -> list[Field]:
        return [self[key] for key in self.mapping()]

    def items(self, length: int | None = None) -> list[Field]:
        if not isinstance(self.value, (list, tuple)):
            raise self.wrong("a list")
        if length is not None and len(self.value) != length:
            raise self.wrong(f"{length}", what=f"has {len(self.value)} entries")
        return [Field(self.path, f"{self.name}[{index}]", item) for index, item in enumerate(self.value)]

    def integer(self, low: int = 0, high: float = math.inf) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not low <= self.value <= high:
            raise self.wrong(f"{low}..{high}" if math.isfinite(high) else f"a whole number, at least {low}")
        return self.value

    def number(self, low: float = 0.0) -> float:
        """A finite int or float, at least low."""
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
            raise self.wrong("a finite number" + (f", at least {low:g}" if math.isfinite(low) else ""))
        return value

    def integers(self, low: int = 0) -> list[int]:
        return [item.integer(low) for item in self.items()]

    def numbers(self, low: float = 0.0) -> list[float]:
        return [item.number(low) for item in self.items()]

    def texts(self) -> list[str]:
        return [item.text() for item in self.items()]

    def bound(self, bound) -> float:
        """A setting within its Bound (archviz.train.settings.BOUNDS)."""
        if not bound.holds(self.value):
            raise self.wrong(bound.describe())
        return self.value

    def text(self, choices=None) -> str:
        if not isinstance(self.value, str) or (choices is not None and self.value not in choices):
            raise self.wrong("a string" if choices is None else f"one of {', '.join(choices)}")
        return self.value

    def flag(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.wrong("true or false")
        return self.value

    def tensor(self, shape: tuple | None = None, *, dtype=None):
        import torch

        value = self.value
        if not isinstance(value, torch.Tensor):
            raise self.wrong("a tensor" if shape is None else f"a tensor of shape {_shape(shape)}")
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise self.wrong(_shape(shape), what=f"has shape {_shape(value.shape)}")
        if dtype is not None and value.dtype != dtype:
            raise self.wrong(str(dtype), what=f"holds {value.dtype}")
        return value


def _shape(shape) -> str:
    return f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"


def _shown(value) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {_shape(value.shape)}"
    if isinstance(value, dict):
        return f"a dict of {len(value)} keys"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...{text[-15:]}"


def check_structure(state: dict, path: Path) -> None:
    """Every field of a checkpoint that --resume and the loading of best.pt read: keys, types, the settings within
    the bounds the CLI holds its options to (settings.BOUNDS), the position within those settings, well-formed
    random states. What depends on the model built from it (weight shapes, the optimiser's parameters) is
    check_against's. The first wrong field is an ArchvizError: "runs/x/last.pt: position.epoch is -7; expected 0..2".
    """
    root = Field(path, "", state)
    settings = check_settings_field(root["settings"])
    _check_position(root["position"], epochs=settings["epochs"])
    _check_records(root)
    for weight in root["model"].children():
        weight.tensor()
    _check_optimizer(root["optimizer"])
    _check_scheduler(root["scheduler"])
    _generator(root["order_generator"])
    _check_own_states(root)
    world = root["runtime"]["world_size"].integer(1) if root["runtime"].get("world_size") is not None else 1
    if world > 1 or root.get("ranks") is not None:
        for rank in root["ranks"].items(world):
            _check_own_states(rank)


def check_settings_field(settings: Field) -> dict:
    from archviz.train.choices import Adapt, Augment, Normalize, Optimizer, Schedule
    from archviz.train.settings import BOUNDS, LATER_SETTINGS, OPTIONAL_BOUNDS, TEXT_SETTINGS, Settings

    defaults = Settings().as_dict()
    found = {name: settings[name].bound(bound) if name not in LATER_SETTINGS or settings.get(name) is not None
             else defaults[name] for name, bound in BOUNDS.items()}
    found.update({name: None if settings.get(name) is None else settings[name].bound(bound)
                  for name, bound in OPTIONAL_BOUNDS.items()})
    for name, kind in (("optimizer", Optimizer), ("schedule", Schedule), ("adapt", Adapt)):
        found[name] = settings[name].text([choice.value for choice in kind])
    augment = settings["augment"]
    found["augment"] = augment.flag() if isinstance(augment.value, bool) else augment.text([a.value for a in Augment])
    found["normalize"] = settings["normalize"].text([n.value for n in Normalize]) \
        if settings.get("normalize") is not None else Normalize.DATASET.value
    found.update({name: None if settings.get(name) is None else settings[name].text() for name in TEXT_SETTINGS})
    return found


def _check_position(position: Field, *, epochs: int) -> None:
    epoch = position["epoch"].integer(0, epochs)
    if position["batch"].integer(0) and epoch == epochs:
        raise position["batch"].wrong(f"0 after the last epoch ({epochs})")
    position["loss_sum"].number(-math.inf)
    position["seen"].integer(position["correct"].integer(0))
    position["seconds"].number()
    for number, row in enumerate(position["history"].items(epoch), 1):
        check_history_row(row, number)
    best = position["best"]
    if (best.value is None) != (epoch == 0):
        raise best.wrong("none before the first epoch ends, and the best epoch's figures after it")
    if best.value is not None:
        best["epoch"].integer(1, epoch)
        best["val_accuracy"].number()
        best["val_loss"].number(-math.inf)


def check_history_row(row: Field, number: int) -> None:
    """A row of metrics.json: its epoch's number, then METRIC_COLUMNS and the run's own figures, all numbers."""
    from archviz.train.run_folder import METRIC_COLUMNS

    row["epoch"].integer(number, number)
    for key in (*METRIC_COLUMNS, *row.mapping()):
        row[key].number(-math.inf)


def _check_records(root: Field) -> None:
    """What the checkpoint says it is: its source, graph, dataset, runtime and versions."""
    for key in ("model", "kind", "spec_file", "spec_text"):
        root["source"][key].text()
    graph = root["graph"]
    graph["name"].text()
    graph["input_shape"].integers(1)
    graph["changes"].texts()
    graph["params"].integer(0)
    if graph.get("spec") is not None:  # written since the graph is rebuilt from it (archviz.train.model)
        graph["spec"].text()
    dataset = root["dataset"]
    dataset["name"].text()
    dataset["classes"].texts()
    dataset["image_shape"].integers(1)
    for size in dataset["sizes"].children():
        size.integer(0)
    dataset["notes"].texts()
    dataset["input_steps"].texts()
    dataset["normalize"]["mean"].numbers(-math.inf)
    dataset["normalize"]["std"].numbers()
    root["runtime"]["device"].text()
    root["runtime"]["threads"].integer(1)
    root["runtime"]["compile"].flag()
    for version in root["versions"].children():
        version.text()


def _check_optimizer(optimizer: Field) -> None:
    groups = optimizer["param_groups"].items()
    ids = [param for group in groups for param in group["params"].integers(0)]
    if len(set(ids)) != len(ids):
        raise optimizer["param_groups"].wrong("each parameter once", what="lists a parameter twice")
    for group in groups:
        group["lr"].number()
    for key in optimizer["state"].mapping():
        if key not in ids or isinstance(key, bool):
            raise optimizer["state"].wrong(f"the states of the parameters of param_groups ({len(ids)})",
                                           what=f"holds an entry {_shown(key)}")
        for value in optimizer["state"][key].children():
            if value.value is not None and not isinstance(value.value, (int, float)):
                value.tensor()


def _check_scheduler(scheduler: Field) -> None:
    scheduler["base_lrs"].numbers()
    scheduler["_last_lr"].numbers()
    scheduler["last_epoch"].integer(0)
    for function in scheduler["lr_lambdas"].items():
        if function.value is not None:
            raise function.wrong("None (the schedule is a plain function: its state is not saved)")


def _check_own_states(own: Field) -> None:
    """A rank's random states: its augmentation generator and the global RNGs (rng_state's)."""
    import torch

    _generator(own["augment_generator"])
    rng = own["rng"]
    rng["torch"].tensor((torch.get_rng_state().numel(),), dtype=torch.uint8)
    for device in rng["cuda"].items():
        device.tensor(dtype=torch.uint8)
    numpy = rng["numpy"]
    numpy["kind"].text(["MT19937"])
    keys = numpy["keys"].tensor((MT_WORDS,), dtype=torch.int64)
    if bool(((keys < 0) | (keys > WORD_MAX)).any()):
        raise numpy["keys"].wrong(f"words of 0..{WORD_MAX}", what="holds a value out of range")
    numpy["position"].integer(0, MT_WORDS)
    numpy["has_gauss"].integer(0, 1)
    numpy["gauss"].number(-math.inf)
    python = rng["python"]
    python["version"].integer(3, 3)
    *words, index = python["words"].items(MT_WORDS + 1)
    for word in words:
        word.integer(0, WORD_MAX)
    index.integer(0, MT_WORDS)
    if python.get("gauss_next") is not None:
        python["gauss_next"].number(-math.inf)


def _generator(field: Field):
    """A torch.Generator's state, as get_state gives it."""
    import torch

    return field.tensor((torch.Generator().get_state().numel(),), dtype=torch.uint8)


def check_against(state: dict, path: Path, *, model: dict, param_shapes: list[list[tuple]], scheduler: dict,
                  batches: int) -> None:
    """A checkpoint that passed check_structure against what its settings built: the weights' names and shapes
    (model: the net's state_dict), the optimiser's groups and each parameter's state tensors (param_shapes: each
    group's parameter shapes), the scheduler's keys (scheduler: ours, for its keys), and the position within an
    epoch of `batches` batches, which the scheduler's step count must match."""
    root = Field(path, "", state)
    check_model(state, path, model)
    _check_optimizer_against(root["optimizer"], param_shapes)
    unknown = [key for key in root["scheduler"].mapping() if key not in scheduler]
    if unknown:
        raise root["scheduler"][unknown[0]].wrong(f"only the keys of torch's LambdaLR state ({', '.join(scheduler)})",
                                                  what="is not a key of the scheduler's state")
    steps = root["position"]["epoch"].value * batches + root["position"]["batch"].integer(0, batches)
    root["scheduler"]["last_epoch"].integer(steps, steps)


def check_model(state: dict, path: Path, model: dict) -> None:
    """The checkpoint's weights have the names and shapes of model (a state_dict)."""
    weights = Field(path, "", state)["model"]
    for name, tensor in model.items():
        weights[name].tensor(tuple(tensor.shape))
    extra = [name for name in weights.mapping() if name not in model]
    if extra:
        raise weights[extra[0]].wrong(f"only the model's {len(model)} weights", what="is not a weight of the model")


def _check_optimizer_against(saved: Field, param_shapes: list[list[tuple]]) -> None:
    """torch pairs the saved parameters with ours by position: as many groups and parameters, and each state tensor
    (Adam's moments, SGD's momentum) of its parameter's shape."""
    shapes = {}
    for group, ours in zip(saved["param_groups"].items(len(param_shapes)), param_shapes):
        group["params"].items(len(ours))
        shapes.update(zip(group["params"].value, ours))
    for key in saved["state"].mapping():
        for value in saved["state"][key].children():
            if value.value is not None and not isinstance(value.value, (int, float)) and value.value.dim() > 0:
                value.tensor(shapes[key])
