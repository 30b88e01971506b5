"""archviz export of a trained network: a run folder (its best.pt), a run's checkpoint, or a model with --weights
RUN, written as ONNX, TorchScript or a state dict.

The network is the run's, as load_trained rebuilds it (fitted to the run's classes and input, its weights loaded and
checked by name), so `export lenet --weights runs/X` writes the 10-class lenet the run trained, not the zoo's.
ONNX goes through the same writer as an untrained model (archviz.onnx.export_onnx, the weights from memory), with
the run's class names and normalisation in the file's metadata (a runtime must normalise its input the same way:
the file starts at the normalised (N, C, H, W) input the run's batches were). TorchScript is torch.jit.trace of
the module in eval mode; the state dict is the module's tensors under to_torch's keys.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path

from archviz.errors import ArchvizError, display_path
from archviz.inside.trained import Trained
from archviz.output import write_atomic


class ExportFormat(enum.StrEnum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    STATE_DICT = "state_dict"


SUFFIXES = {ExportFormat.ONNX: ".onnx", ExportFormat.TORCHSCRIPT: ".pt", ExportFormat.STATE_DICT: ".pth"}


def is_run_weights(path: str | Path) -> bool:
    """Whether --weights names a run: a folder (of archviz train), or a checkpoint file of archviz train."""
    from archviz.train.checkpoint import is_checkpoint, read_weights_only

    path = Path(path)
    if path.is_dir():
        return True
    if not path.is_file():
        return False
    try:
        return is_checkpoint(read_weights_only(path))
    except ArchvizError:
        return False  # not a checkpoint torch reads: the state-dict reader says what is wrong with it


def metadata(trained: Trained) -> dict[str, str]:
    """What a runtime needs besides the weights: the class names and the input's normalisation (JSON texts)."""
    return {"archviz.weights": trained.weights, "archviz.classes": json.dumps(list(trained.classes)),
            "archviz.normalize": json.dumps({"mean": list(trained.stats.mean), "std": list(trained.stats.std)}),
            "archviz.dataset": trained.dataset or ""}


def export_trained(trained: Trained, path: str | Path, *, format: ExportFormat = ExportFormat.ONNX) -> Path:
    """Write the trained network to `path` (through a temporary file: nothing half-written); return the path.

    >>> from archviz.inside.trained import load_trained
    >>> export_trained(load_trained("runs/lenet"), "lenet.onnx")  # doctest: +SKIP
    PosixPath('lenet.onnx')
    """
    if format == ExportFormat.ONNX:
        from archviz.onnx import export_onnx

        return export_onnx(trained.graph, path, state_dict=trained.net.state_dict(), origin=trained.weights,
                           properties=metadata(trained))
    import io

    import torch

    buffer = io.BytesIO()
    if format == ExportFormat.STATE_DICT:
        torch.save(trained.net.state_dict(), buffer)
    else:
        _save_traced(trained, buffer)
    return write_atomic(path, buffer.getvalue())


def _save_traced(trained: Trained, buffer) -> None:
    import warnings

    import torch

    example = torch.zeros(1, *trained.input_shape)
    with warnings.catch_warnings():
        # recent torch marks torch.jit deprecated (FutureWarning); TorchScript is still what LibTorch (C++) loads
        warnings.simplefilter("ignore", FutureWarning)
        try:
            traced = torch.jit.trace(trained.net.eval(), example)
        except Exception as error:  # tracing fails in many ways for code it cannot follow
            raise ArchvizError(f"torch.jit.trace cannot trace {trained.graph.name}: {error}".splitlines()[0]) \
                from None
        torch.jit.save(traced, buffer)


def default_output(source: str, format: ExportFormat) -> str:
    """RUN-FOLDER-NAME.onnx (.pt, .pth) in the current folder, for a run; MODEL.onnx for a model."""
    from archviz.format import slug

    path = Path(source)
    stem = path.name if path.is_dir() else (path.parent.name if path.suffix in (".pt", ".pth") else path.stem)
    name = slug(stem) + SUFFIXES[format]
    if Path(name).resolve() == path.resolve():
        raise ArchvizError(f"writing {name!r} would replace {display_path(source)}; name another file with -o")
    return name
