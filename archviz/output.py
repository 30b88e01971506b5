"""Writing output files atomically: a temporary file beside the target, flushed to disk, then renamed over it.

A run killed mid-write leaves the previous file intact (rename is atomic on POSIX), and no half-written file ever
carries the target's name. A writer killed before its rename (kill -9) leaves its temporary behind: the next write to
the same target removes it (stale_temporaries states the rule).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import zlib
from pathlib import Path

from archviz.errors import ArchvizError

OUTPUT_FOLDER = Path("reports")  # where report and diagram write without -o (default_output)


def default_output(names: list[str], suffix: str, *, run: str | Path | None = None) -> Path:
    """Where report and diagram write without -o, the one rule (stated in their --help): reports/ under the current
    folder; the models' names (slugs, joined by -vs-), then for a report of a run the run folder's name.

    >>> default_output(["lenet"], ".html"), default_output(["lenet"], ".html", run="runs/lenet-digits-1")
    (PosixPath('reports/lenet.html'), PosixPath('reports/lenet-lenet-digits-1.html'))
    >>> default_output(["../a", "/b"], ".html"), default_output(["resnet50"], ".svg")
    (PosixPath('reports/a-vs-b.html'), PosixPath('reports/resnet50.svg'))
    """
    from archviz.format import slug

    stem = "-vs-".join(slug(name) for name in names)
    if run is not None:
        stem = f"{stem}-{slug(Path(run).resolve().name)}"
    return OUTPUT_FOLDER / f"{slug(stem)}{suffix}"


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write data to path through a temporary file and a rename; parent folders are created, and the temporaries
    of earlier writers to path that are gone are removed (stale_temporaries).

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> write_atomic(target, "hello").read_text()
    'hello'
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in stale_temporaries(target):
            stale.unlink(missing_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.{_writer()}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise ArchvizError(f"cannot write {str(target)!r}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ArchvizError(f"cannot write {str(target)!r}: {error.strerror}") from None
        raise
    return target


def stale_temporaries(target: Path) -> list[Path]:
    """The temporaries write_atomic left beside target whose writer is gone.

    A temporary is named .NAME.PID-HOST.RANDOM.tmp: the writer's process id, a tag of its machine's host name and
    mkstemp's 8 random characters. It is stale when it was written on this machine by a process that no longer runs; one of
    a running process (or of another machine, whose processes this one cannot see) is kept. Files of any other name
    are never touched.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)-([0-9a-f]{{8}})\.[a-z0-9_]{{8}}\.tmp")
    host = _host_tag()
    found = []
    with os.scandir(target.parent) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match and match[2] == host and not _running(int(match[1])) and entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
    return found


def is_temporary(name: str) -> bool:
    """Whether a file name is of write_atomic's temporaries (of any target)."""
    return re.fullmatch(r"\..+\.\d+-[0-9a-f]{8}\.[a-z0-9_]{8}\.tmp", name) is not None


def _writer() -> str:
    return f"{os.getpid()}-{_host_tag()}"


def _host_tag() -> str:
    """8 hex digits of the host name: a folder shared between machines holds temporaries of other machines' pids."""
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'surrogateescape')):08x}"


def _running(pid: int) -> bool:
    """Whether process pid runs; when that cannot be told, it counts as running, so its file is kept."""
    if os.name != "posix":  # os.kill on Windows terminates the process rather than probing it
        return True
    if not 0 < pid < 2**31:  # no process has this id (and os.kill(0, ...) would probe our own process group)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


def _mode_for(target: Path) -> int:
    """The existing file's mode, or what a plain open() would give (mkstemp makes files private: 0600)."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
