"""The architecture zoo: every `specs/*.yaml` (and each of its variants) by name.

Files whose name starts with `_` hold shared blocks for `extends` and are not models themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from archviz.cache import cached_json, content_key
from archviz.errors import ArchvizError, UnknownNameError, closest

if TYPE_CHECKING:
    from archviz.spec.model import Spec


def zoo_dir() -> Path:
    """specs/ of a source checkout or editable install; archviz/_specs inside a built wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_specs", package.parent / "specs"):
        if candidate.is_dir():
            return candidate
    return package.parent / "specs"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    path: Path
    variant: str | None


@lru_cache(maxsize=1)
def zoo_index() -> dict[str, ZooEntry]:
    """Every model and variant name of the zoo, with its file; cached on disk by the files' content."""
    folder = zoo_dir()
    files = sorted(folder.glob("*.yaml"))
    rows = cached_json("zoo-index", content_key(files), lambda: _index_rows(files))
    return {name: ZooEntry(name, folder / file, variant) for name, file, variant in rows}


def _index_rows(files: list[Path]) -> list[tuple[str, str, str | None]]:
    from archviz.spec.model import read_spec

    rows = []
    for path in files:
        if path.name.startswith("_"):
            continue
        try:
            spec = read_spec(path)
        except ArchvizError:  # a broken file must not hide the rest of the zoo; loading it reports the error
            rows.append((path.stem, path.name, None))
            continue
        rows.append((spec.name, path.name, None))
        rows.extend((variant, path.name, variant) for variant in spec.variants)
    return rows


def zoo_names() -> list[str]:
    return list(zoo_index())


def load_zoo(name: str) -> Spec:
    from archviz.spec.model import read_spec

    direct = zoo_dir() / f"{name}.yaml"
    if not name.startswith("_") and direct.is_file():  # most names are their file's: no need to index the zoo
        spec = read_spec(direct)
        if spec.name == name:
            return spec
    index = zoo_index()
    if name not in index:
        raise UnknownNameError(f"unknown model {name!r}{closest(name, index)}; `archviz list` shows the zoo")
    entry = index[name]
    return read_spec(entry.path, variant=entry.variant)


def load_spec(source: str | Path) -> Spec:
    """A zoo name ("vgg16") or the path of a spec file ("my_net.yaml")."""
    from archviz.spec.model import read_spec

    text = str(source)
    if text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        return read_spec(Path(text))
    return load_zoo(text)
