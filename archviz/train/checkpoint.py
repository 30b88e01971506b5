"""Checkpoints that load with `torch.load(path, weights_only=True)`: only tensors, numbers, strings, lists, tuples and
dicts, so loading one runs no code. Each records what is needed to continue the run exactly: the weights, the
optimiser and scheduler, the RNG states (torch, CUDA, numpy, Python) and the data-order and augmentation
generators; and what is needed to know what it is: the model source, settings, dataset, thread count and versions.

Written through io.BytesIO and archviz.output.write_atomic, so a run killed mid-write keeps the previous file.
"""

from __future__ import annotations

import io
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
    """A checkpoint written by save_checkpoint, loaded weights-only onto the CPU."""
    if not path.is_file():
        raise ArchvizError(f"no checkpoint {display_path(str(path))} to resume from; --resume continues the run in "
                           "the -o folder, which holds last.pt")
    state = read_weights_only(path)
    if not is_checkpoint(state):
        raise ArchvizError(f"{display_path(str(path))}: not a checkpoint of archviz train ({FORMAT})")
    return state


def is_checkpoint(state) -> bool:
    return isinstance(state, dict) and state.get("format") == FORMAT


def read_weights_only(path: Path):
    """What torch.load(path, weights_only=True) gives, on the CPU; a corrupt or foreign file is an ArchvizError."""
    import pickle

    from archviz.torch_build import import_torch

    torch = import_torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as error:
        raise ArchvizError(f"{display_path(str(path))}: cannot load this checkpoint ({_load_failure(error)})") from None


def _load_failure(error: Exception) -> str:
    """The part of torch's message that says what is wrong with the file (its first lines are advice on pickles)."""
    if isinstance(error, EOFError):
        return "the file is empty or cut short"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            detail = line.partition("WeightsUnpickler error:")[2].strip() or " ".join(lines[index + 1:index + 2])
            return f"not a file of tensors that loads without running code: {detail}"
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
