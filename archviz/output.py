"""Writing output files atomically: a temporary file beside the target, flushed to disk, then renamed over it.

A run killed mid-write leaves the previous file intact (rename is atomic on POSIX), and no half-written file ever
carries the target's name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from archviz.errors import ArchvizError


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write data to path through a temporary file and a rename; parent folders are created.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> write_atomic(target, "hello").read_text()
    'hello'
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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


def _mode_for(target: Path) -> int:
    """The existing file's mode, or what a plain open() would give (mkstemp makes files private: 0600)."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
