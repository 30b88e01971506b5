"""A small on-disk cache of JSON results, keyed by the content they were computed from.

`archviz list` would otherwise parse and analyse every zoo model on each call. An entry is used only when its key,
a hash of the files it came from (and of archviz's own code, for computed figures), is unchanged, so it never goes
stale; anything wrong with the cache (unwritable folder, corrupt file) means computing afresh, never an error.
The folder is $ARCHVIZ_CACHE_DIR, else $XDG_CACHE_HOME/archviz, else ~/.cache/archviz.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

CACHE_FORMAT = 1  # bump when the shape of what is cached changes


def cache_dir() -> Path:
    if os.environ.get("ARCHVIZ_CACHE_DIR"):
        return Path(os.environ["ARCHVIZ_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archviz"


def content_key(files: Iterable[Path], *, with_code: bool = False) -> str:
    """A hash of the files' names and bytes; with_code adds every archviz module's size and modification time."""
    digest = hashlib.sha256(f"format {CACHE_FORMAT}".encode())
    for path in sorted(files):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    if with_code:
        for module in sorted(Path(__file__).parent.rglob("*.py")):
            stat = module.stat()
            digest.update(f"{module.relative_to(Path(__file__).parent)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached_json(name: str, key: str, compute: Callable[[], Any]) -> Any:
    """compute()'s result, read from the cache when it was stored under the same key, else computed and stored."""
    path = cache_dir() / f"{name}.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("key") == key:
            return stored["value"]
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    value = compute()
    _store(path, {"key": key, "value": value})
    return value


def _store(path: Path, entry: dict) -> None:
    from archviz.errors import ArchvizError
    from archviz.output import write_atomic

    try:
        write_atomic(path, json.dumps(entry))
    except ArchvizError:  # a read-only home: the figures were computed anyway
        pass
