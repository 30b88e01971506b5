"""A run's result and the run folder's claim: RunResult, the closing summary, the default folder name, and
`claimed`, which holds a folder for one run and refuses what is not a run of archviz. What the folder's files are
called and hold is archviz/train/run_folder.py's.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archviz.errors import ArchvizError
from archviz.output import is_temporary
from archviz.train.metrics import ClassReport
from archviz.train.run_folder import (LAST, LOCK_FILE, RUN_FILES, RUN_JSON, SUMMARY_FILES, looks_like_record,
                                      run_kind)
from archviz.train.settings import Settings

if TYPE_CHECKING:
    from archviz.graph.ir import Graph


class TrainingInterrupted(Exception):
    """The run was stopped (Ctrl-C) after saving a checkpoint it can resume from; the CLI exits with status 130."""

    def __init__(self, message: str, *, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


class TrainingDiverged(ArchvizError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class RunResult:
    """What a finished run reached; the same figures are in the folder's run.json."""

    folder: Path
    model: str
    dataset: str
    settings: Settings
    params: int
    changes: tuple[str, ...]  # model and input adaptations, in words
    history: tuple[dict, ...]  # metrics.json's rows
    best_epoch: int
    best_val_accuracy: float
    test_split: str
    test_accuracy: float  # of best.pt, the epoch of lowest validation loss
    last_test_accuracy: float  # of the final weights
    report: ClassReport  # of best.pt on the test split
    train_seconds: float
    images_per_second: float
    graph: Graph  # the fitted graph that was trained: archviz.inspect(result.graph) gives its params and MACs
    stopped_early: str | None = None  # why fewer epochs ran than asked (the time budget), else None
    peak_memory_bytes: int = 0  # tensors alive at once: CUDA over the run, the CPU in a training step (memory.py)
    peak_memory: str = ""  # how peak_memory_bytes was measured, in words
    rank: int = 0  # this process's rank under torchrun; only rank 0 wrote the folder
    world_size: int = 1  # processes that trained the model together


def default_folder(model: str, dataset: str, suffix: str = "") -> Path:
    """runs/<model>-<dataset>[-<suffix>]-<timestamp>, the model a zoo name or a spec file's stem."""
    from archviz.format import slug

    stem = slug(Path(model).stem if model.endswith((".yaml", ".yml")) else model)
    kind = slug(dataset.partition(":")[0], fallback="data")
    return Path("runs") / f"{stem}-{kind}{f'-{slug(suffix)}' if suffix else ''}-{time.strftime('%Y%m%d-%H%M%S')}"


def summary_text(result: RunResult) -> str:
    """The closing lines of a run: test accuracy, the per-class report and where the files are."""
    from archviz.format import size_bytes

    last = result.history[-1] if result.history else {}
    lines = [
        f"{result.test_split} accuracy {result.test_accuracy:.2%} ({result.report.support:,} images) with best.pt "
        f"(epoch {result.best_epoch}, lowest val loss; val accuracy {result.best_val_accuracy:.2%}); final weights "
        f"{result.last_test_accuracy:.2%}",
        f"trained {len(result.history)} epochs in {result.train_seconds:.1f} s, {result.images_per_second:,.0f} "
        f"images/s" + (f"; final train loss {last['train_loss']:.4f}" if last else "")
        + (f"; peak memory {size_bytes(result.peak_memory_bytes)}" if result.peak_memory_bytes else ""),
        "",
        result.report.text().rstrip("\n"),
        "",
        f"run folder {result.folder}: {', '.join(SUMMARY_FILES)}",
    ]
    return "\n".join(lines) + "\n"


# --- the run folder: whose it is, and who writes it ------------------------------------------------------------------

def check_text_path(option: str, path) -> None:
    """Refuse a path whose name is not valid UTF-8, before any work: a run writes its paths as text (run.json,
    report.txt, the lines it prints), and a file name's stray bytes cannot be written so."""
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        byte = ord(text[error.start]) - 0xDC00  # os.fsdecode keeps an undecodable byte as a lone surrogate
        raise ArchvizError(f"{option} {text!r}: the name is not valid UTF-8 (byte 0x{byte:02x}); archviz writes "
                           "paths into the run's records as text: rename it") from None


@contextmanager
def claimed(folder: Path, *, kind: str, resume: bool, overwrite: bool, hold: bool = True):
    """The run folder, held for this run while the block runs (hold=False: by another rank, which does the checks).

    Refused: a file; a non-empty folder that is not a run of archviz, unless overwrite (and then still if it holds
    a file of a run's names, RUN_FILES, which archviz did not write); a run of the other kind (kind: "train" or
    "pretrain") or a run with a last.pt, unless resume or overwrite; a folder another run holds (LOCK_FILE, taken
    with flock, names the holder). Nothing of the user's is deleted or replaced: a run replaces only its own files.
    """
    if resume and overwrite:
        raise ArchvizError("--resume continues the run in -o and --overwrite starts a new one there: give one of them")
    if not hold:
        yield
        return
    if folder.exists() and not folder.is_dir():
        raise ArchvizError(f"-o {folder}: a file, not a folder; -o names the run folder: choose another")
    if resume and not folder.is_dir():  # nothing to hold: load_checkpoint says there is no run to resume
        yield
        return
    if not resume:
        _refuse_foreign(folder, overwrite=overwrite)
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArchvizError(f"cannot make the run folder {folder}: {error.strerror}") from None
    try:
        with _locked(folder):
            if not resume:
                _refuse_foreign(folder, overwrite=overwrite)
                _refuse_run(folder, kind=kind, overwrite=overwrite)
            yield
    except BaseException:
        if made and not _names(folder):  # a run that failed before writing anything leaves no empty folder
            try:
                folder.rmdir()
            except OSError:
                pass
        raise


def _names(folder: Path) -> list[str]:
    """The folder's entries, less the lock file and write_atomic's temporaries ([] when there is no folder)."""
    if not folder.is_dir():
        return []
    return sorted(name for name in os.listdir(folder) if name != LOCK_FILE and not is_temporary(name))


def _refuse_foreign(folder: Path, *, overwrite: bool) -> None:
    """Refuse a non-empty folder without a run.json or last.pt (_refuse_run judges those), as _foreign says."""
    names = _names(folder)
    if not names or RUN_JSON in names or LAST in names:
        return
    error = _foreign(folder, names, overwrite=overwrite)
    if error is not None:
        raise error

def _refuse_run(folder: Path, *, kind: str, overwrite: bool) -> None:
    """Refuse a folder whose run.json or last.pt archviz did not write (as _foreign says), a run of the other kind
    or a run with a last.pt, unless overwrite (a new run replaces the run's files)."""
    names = _names(folder)
    if RUN_JSON not in names and LAST not in names:
        return
    found = run_kind(folder)
    error = _foreign(folder, names, overwrite=overwrite) if found is None else None
    if error is not None:
        raise error
    if overwrite:
        return
    if found != kind:
        raise ArchvizError(f"-o {folder} holds a run of archviz {found}; choose another folder, or add --overwrite "
                           f"to replace its files with this run's")
    if (folder / LAST).is_file():
        finished = (looks_like_record(folder) or {}).get("status") == "finished"
        advice = "" if finished else "add --resume to continue it, "
        raise ArchvizError(f"{folder} already holds a run (last.pt){' that finished' if finished else ''}; {advice}"
                           "add --overwrite to train it anew, or choose another folder with -o")


def _foreign(folder: Path, names: list[str], *, overwrite: bool) -> ArchvizError | None:
    """Why a run may not write into a non-empty folder that is not a run of archviz: always, unless overwrite; and
    with overwrite, when one of the folder's files has the name of a run's file (RUN_FILES), which a run would
    replace. None when it may."""
    if not overwrite:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return ArchvizError(f"-o {folder}: the folder holds files that are not a run of archviz ({shown}); choose a "
                            "new or empty folder, or add --overwrite to write the run beside them")
    taken = [name for name in RUN_FILES if name in names]
    if taken:
        return ArchvizError(f"-o {folder}: {taken[0]} there was not written by archviz, and a run would replace "
                            "it; --overwrite never replaces such a file: move it away, or choose another folder")
    return None


@contextmanager
def _locked(folder: Path):
    """LOCK_FILE held with flock while the block runs; a run holding it already is an ArchvizError naming it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    lock = folder / LOCK_FILE
    handle = _lock(lock, fcntl)
    try:
        os.ftruncate(handle, 0)
        os.write(handle, _holder().encode("utf-8", "surrogateescape"))
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held: a process that opens it from now on sees it gone (_lock)
        os.close(handle)


def _lock(lock: Path, fcntl) -> int:
    """An open handle on lock, flock-ed; the file it locks is the one at that name (not one unlinked meanwhile)."""
    while True:
        try:
            handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ArchvizError(f"cannot write the run folder {lock.parent}: {error.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 4096).decode("utf-8", "replace").strip() or "a run that is starting"
            os.close(handle)
            raise ArchvizError(f"{lock.parent} is in use by another run ({holder}); wait for it to end, or choose "
                               "another folder with -o") from None
        try:
            if os.path.samestat(os.fstat(handle), os.stat(lock)):
                return handle
        except FileNotFoundError:
            pass
        os.close(handle)  # its holder finished and removed it as this process opened it: lock the new one


def _holder() -> str:
    """Who holds the folder, as the lock file says: process id, start time, command line."""
    return f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(sys.argv)}"
