"""The architecture zoo: every `specs/*.yaml` (and each of its variants) by name.

Files whose name starts with `_` hold shared blocks for `extends` and are not models themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from archviz.errors import ArchvizError, UnknownNameError, closest
from archviz.spec.model import Spec, read_spec


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
    index: dict[str, ZooEntry] = {}
    for path in sorted(zoo_dir().glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        try:
            spec = read_spec(path)
        except ArchvizError:  # a broken file must not hide the rest of the zoo; loading it reports the error
            index[path.stem] = ZooEntry(path.stem, path, None)
            continue
        index[spec.name] = ZooEntry(spec.name, path, None)
        for variant in spec.variants:
            index[variant] = ZooEntry(variant, path, variant)
    return index


def zoo_names() -> list[str]:
    return list(zoo_index())


def load_zoo(name: str) -> Spec:
    index = zoo_index()
    if name not in index:
        raise UnknownNameError(f"unknown model {name!r}{closest(name, index)}; `archviz list` shows the zoo")
    entry = index[name]
    return read_spec(entry.path, variant=entry.variant)


def load_spec(source: str | Path) -> Spec:
    """A zoo name ("vgg16") or the path of a spec file ("my_net.yaml")."""
    text = str(source)
    if text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        return read_spec(Path(text))
    return load_zoo(text)
