"""Datasets for `archviz train`, read from local files only (nothing is ever downloaded), decoded once into arrays.

Every dataset becomes three splits of uint8 images (N, C, H, W) and int64 labels, held in memory: preloading the
decoded images is about 20x faster than reading files every epoch on a 2-core machine, and needs no loader workers.

- `digits`: scikit-learn's bundled 8x8 handwritten digits (1,797 images, values 0..16; the UCI "optdigits" set,
  E. Alpaydin and C. Kaynak 1998), split 70/10/20 into train/val/test, stratified, with a fixed seed.
- `mnist:PATH`: the published idx files (Y. LeCun et al., http://yann.lecun.com/exdb/mnist/), gzipped or not; the
  last 10% of each class of the training set (fixed seed, stratified) is the validation split, t10k the test split.
- `cifar10:PATH`: the published python batches (A. Krizhevsky, "Learning Multiple Layers of Features from Tiny
  Images", 2009): data_batch_1..5 (validation carved from them as for MNIST), test_batch, batches.meta.
- `folder:PATH`: one subfolder per class of images read with Pillow (torchvision's ImageFolder layout); `train/` and
  `val/` (and `test/`) subfolders are used when present, else fixed-seed stratified validation and test splits.
"""

from __future__ import annotations

import enum
import gzip
import importlib.util
import math
import pickle
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archviz.errors import ArchvizError, MissingDependencyError, display_path

if TYPE_CHECKING:
    import numpy as np

SPLIT_SEED = 0  # the data split never depends on --seed: every run of a dataset is tested on the same images
VAL_FRACTION = 0.1  # of the whole set (digits, folder) or of the training files (mnist, cifar10)
TEST_FRACTION = 0.2  # where the files hold no test split (digits, folder)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
TRAIN_HINT = "pip install 'archviz[train]'"


class DatasetKind(enum.StrEnum):
    DIGITS = "digits"
    MNIST = "mnist"
    CIFAR10 = "cifar10"
    FOLDER = "folder"


class DatasetError(ArchvizError):
    """A dataset is missing, incomplete or corrupt."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, C, H, W) uint8
    labels: np.ndarray  # (N,) int64, indices into Dataset.classes

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    """A dataset decoded into memory: three splits and what was done to make them."""

    kind: DatasetKind
    path: str | None  # the folder it was read from; None for digits
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    test_split: str  # the split the final report is computed on: "test", or "val" when there is no test split
    flips: bool  # whether a mirror image keeps its label (photos: yes; digits: no)
    notes: tuple[str, ...]  # how the splits were made, in words

    @property
    def name(self) -> str:
        return self.kind.value if self.path is None else f"{self.kind.value}:{self.path}"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def describe(self) -> str:
        shape = "x".join(map(str, self.image_shape))
        return (f"{self.name}: {len(self.classes)} classes, {shape} images; train {len(self.train):,}, "
                f"val {len(self.val):,}, {self.test_split} {len(self.test):,}")


LAYOUTS = {
    DatasetKind.MNIST: "a folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                       "t10k-labels-idx1-ubyte (each may end in .gz)",
    DatasetKind.CIFAR10: "a folder with the python batches data_batch_1 ... data_batch_5, test_batch and batches.meta "
                         "(cifar-10-batches-py)",
    DatasetKind.FOLDER: "a folder with one subfolder of images per class (cats/, dogs/, ...), or train/ and val/ "
                        "folders laid out that way",
}


def parse_dataset(dataset: str, data: str | Path | None = None) -> tuple[DatasetKind, Path | None]:
    """'mnist:PATH' or ('mnist', PATH) -> (kind, path); digits takes no path.

    >>> parse_dataset("digits")
    (<DatasetKind.DIGITS: 'digits'>, None)
    """
    name, sep, rest = dataset.partition(":")
    try:
        kind = DatasetKind(name.strip().lower())
    except ValueError:
        known = ", ".join(k.value for k in DatasetKind)
        raise DatasetError(f"--dataset {dataset!r}: unknown dataset {name!r}; expected one of {known} "
                           "(digits, or mnist:PATH, cifar10:PATH, folder:PATH)") from None
    if sep and data is not None:
        raise DatasetError(f"--dataset {dataset!r} already names a folder; leave out --data {str(data)!r}")
    path = Path(rest) if sep else (Path(data) if data is not None else None)
    if kind == DatasetKind.DIGITS:
        if path is not None:
            raise DatasetError("--dataset digits is bundled with scikit-learn and takes no folder")
        return kind, None
    if path is None or not str(path):
        raise DatasetError(f"--dataset {kind.value} needs a folder: --dataset {kind.value}:PATH or --data PATH, "
                           f"{LAYOUTS[kind]}")
    if not path.is_dir():
        raise DatasetError(f"{kind.value}: no folder {str(path)!r}; expected {LAYOUTS[kind]}")
    return kind, path


def load_dataset(dataset: str, data: str | Path | None = None, *, image_size: tuple[int, int] | None = None,
                 channels: int | None = None, val_fraction: float = VAL_FRACTION) -> Dataset:
    """Read a dataset into memory. image_size and channels are used only by folder datasets, whose images differ in
    size: they are decoded at that size (default: the first image's) and mode (default: the first image's).
    val_fraction: the share held out for validation (of the whole set for digits and a folder without val/, of the
    training files for mnist and cifar10; a folder's own val/ is used as it is).

    >>> load_dataset("digits").describe()
    'digits: 10 classes, 1x8x8 images; train 1,259, val 179, test 359'
    """
    kind, path = parse_dataset(dataset, data)
    if not 0 < val_fraction < 1 - TEST_FRACTION:
        raise DatasetError(f"--val-fraction {val_fraction!r}: a fraction above 0 and below {1 - TEST_FRACTION:g}")
    if kind == DatasetKind.DIGITS:
        return _digits(val_fraction)
    if kind == DatasetKind.MNIST:
        return _mnist(path, val_fraction)
    if kind == DatasetKind.CIFAR10:
        return _cifar10(path, val_fraction)
    return _folder(path, image_size=image_size, channels=channels, val_fraction=val_fraction)


# --- splits --------------------------------------------------------------------------------------------------------

def stratified_split(labels, fraction: float, *, seed: int = SPLIT_SEED):
    """(kept, held_out) index arrays: round(fraction * n_c) images of each class c held out, chosen with a fixed seed.

    Every class with at least two images keeps one and holds out at least one.
    """
    import numpy as np

    rng = np.random.RandomState(seed)
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        count = int(round(fraction * len(members)))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        held.append(members[:count])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[held_out] = False
    return np.flatnonzero(mask), held_out


def _take(images, labels, index) -> Split:
    import numpy as np

    return Split(np.ascontiguousarray(images[index]), labels[index].astype(np.int64))


def _three_way(images, labels, *, where: str, val_fraction: float) -> tuple[Split, Split, Split]:
    rest, test = stratified_split(labels, TEST_FRACTION)
    train, val = stratified_split(labels[rest], val_fraction / (1 - TEST_FRACTION))
    _refuse_empty(where, len(labels), {"training": rest[train], "validation": rest[val], "test": test})
    return _take(images, labels, rest[train]), _take(images, labels, rest[val]), _take(images, labels, test)


def _two_way(images, labels, *, where: str, val_fraction: float) -> tuple[Split, Split]:
    train, val = stratified_split(labels, val_fraction)
    _refuse_empty(where, len(labels), {"training": train, "validation": val})
    return _take(images, labels, train), _take(images, labels, val)


def _refuse_empty(where: str, total: int, splits: dict) -> None:
    """An empty split would train on nothing, or report an accuracy of 0% on 0 images and exit as if all went well."""
    empty = [name for name, index in splits.items() if len(index) == 0]
    if empty:
        raise DatasetError(f"{where}: splitting its {total:,} images leaves the {' and '.join(empty)} "
                           f"split{'s' if len(empty) > 1 else ''} empty; each class needs at least {len(splits)} "
                           f"images (one per split)")


# --- digits --------------------------------------------------------------------------------------------------------

def _split_note(val_fraction: float) -> str:
    """How a three-way split divides the set: "70/10/20" by default."""
    return f"{1 - TEST_FRACTION - val_fraction:.0%}/{val_fraction:.0%}/{TEST_FRACTION:.0%}".replace("%", "")


def _digits(val_fraction: float) -> Dataset:
    import numpy as np

    table = _digits_table()
    labels = table[:, -1].astype(np.int64)
    # values are 0..16 (counts of set pixels in 4x4 blocks of a 32x32 bitmap); scaled to 0..255 like the others
    images = np.round(table[:, :-1].reshape(-1, 1, 8, 8) * (255 / 16)).astype(np.uint8)
    train, val, test = _three_way(images, labels, where="digits", val_fraction=val_fraction)
    notes = (f"split {_split_note(val_fraction)} into train/val/test, stratified, seed {SPLIT_SEED}",
             "pixel values 0..16 scaled to 0..255")
    return Dataset(DatasetKind.DIGITS, None, tuple(str(d) for d in range(10)), train, val, test, "test", False, notes)


def _digits_table():
    """The 1797 x 65 table of scikit-learn's digits.csv.gz (64 pixels, then the label), read without importing
    sklearn.datasets (2 s of imports); sklearn's own loader when the file is not where it has always been."""
    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"--dataset digits is bundled with scikit-learn, which is not installed: "
                                     f"{TRAIN_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        return np.loadtxt(path, delimiter=",", dtype=np.float64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.concatenate([bunch.data, bunch.target[:, None]], axis=1)


# --- mnist ---------------------------------------------------------------------------------------------------------

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08  # the idx type code of unsigned bytes; the only one MNIST uses
# EMNIST, the largest MNIST-like set, holds 697,932 images of 28x28 (547 MB): a header announcing more is corrupt or
# hostile (a gzip bomb), and is refused before anything is inflated
MAX_IDX_BYTES = 2**30


def _mnist(path: Path, val_fraction: float) -> Dataset:
    arrays = {key: read_idx(_find_idx(path, stem)) for key, stem in MNIST_FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"{display_path(str(path))}: {part} images {images.shape} and labels {labels.shape} "
                               f"do not match; expected {LAYOUTS[DatasetKind.MNIST]}")
        if labels.size and labels.max() > 9:
            raise DatasetError(f"{display_path(str(_find_idx(path, MNIST_FILES[part + '_labels'])))}: label "
                               f"{int(labels.max())} is not a digit 0..9")
    train, val = _two_way(arrays["train_images"][:, None], arrays["train_labels"],
                          where=f"mnist:{display_path(str(path))}", val_fraction=val_fraction)
    test = _take(arrays["test_images"][:, None], arrays["test_labels"], slice(None))
    notes = (f"validation: {val_fraction:.0%} of the training files, stratified, seed {SPLIT_SEED}",)
    return Dataset(DatasetKind.MNIST, str(path), tuple(str(d) for d in range(10)), train, val, test, "test", False,
                   notes)


def _find_idx(folder: Path, stem: str) -> Path:
    dotted = stem.replace("-idx", ".idx")  # a common re-upload names them train-images.idx3-ubyte
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DatasetError(f"mnist: no {stem} (or {stem}.gz) in {display_path(str(folder))}; expected "
                       f"{LAYOUTS[DatasetKind.MNIST]}")


def read_idx(path: Path):
    """An idx file (gzipped or not) as a uint8 array: magic 0x0000 TT DD, DD big-endian int32 sizes, then the data.

    Inflated as a stream: the header is checked first, and never more than one byte past the size it announces is
    read, so a gzip bomb costs no more memory than an honest file of the size its header announces.
    """
    import numpy as np

    where = display_path(str(path))
    try:
        with path.open("rb") as stream:
            zipped = stream.read(2) == b"\x1f\x8b"
        with (gzip.open if zipped else open)(path, "rb") as stream:
            sizes = _idx_sizes(stream, where)
            array = np.empty(sizes, dtype=np.uint8)  # filled in place: no second copy of a large file
            filled = stream.readinto(memoryview(array.reshape(-1)))
            more = stream.read(1)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{where}: cannot read it ({error}); expected an idx file, gzipped or not") from None
    shape = "x".join(map(str, sizes))
    if more:
        raise DatasetError(f"{where}: holds more data than its header announces ({shape} = {array.size:,} bytes): "
                           "corrupt, or not an idx file")
    if filled < array.size:
        raise DatasetError(f"{where}: its header announces {shape} = {array.size:,} bytes of data but it holds "
                           f"{filled:,} (truncated or corrupt)")
    return array


def _idx_sizes(stream, where: str) -> tuple[int, ...]:
    """The sizes an idx header announces, once they are known to be sane."""
    head = stream.read(4)
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] != IDX_UBYTE or not 1 <= head[3] <= 4:
        raise DatasetError(f"{where}: not an idx file of unsigned bytes (its first bytes are {head.hex()!r}, "
                           "expected 00000801 for labels or 00000803 for images)")
    raw = stream.read(4 * head[3])
    if len(raw) < 4 * head[3]:
        raise DatasetError(f"{where}: the file ends inside its header (truncated?)")
    sizes = struct.unpack(f">{head[3]}i", raw)
    shape = "x".join(map(str, sizes))
    if min(sizes) < 1:
        raise DatasetError(f"{where}: its header announces sizes {shape}; each must be at least 1 (an empty or "
                           "corrupt file)")
    if math.prod(sizes) > MAX_IDX_BYTES:
        raise DatasetError(f"{where}: its header announces {shape} = {math.prod(sizes):,} bytes of data, more than "
                           f"the {MAX_IDX_BYTES:,} an MNIST-like file may hold (corrupt?)")
    return sizes


# --- cifar-10 ------------------------------------------------------------------------------------------------------

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_SIDE = 32


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR batches hold (dicts, lists, bytes and numpy arrays): no other code runs."""

    # how numpy rebuilds an array: _reconstruct up to protocol 4, _frombuffer from protocol 5 (the data travels as
    # bytes, never as code), and a scalar (labels saved as numpy integers); numpy 2 renamed numpy.core to numpy._core
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core.") and importlib.util.find_spec("numpy._core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # the old name warns in numpy 2
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as stream:
            value = _ArrayUnpickler(stream, encoding="bytes").load()
    except FileNotFoundError:
        raise DatasetError(f"cifar10: no {path.name} in {display_path(str(path.parent))}; expected "
                           f"{LAYOUTS[DatasetKind.CIFAR10]}") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as error:
        raise DatasetError(f"{display_path(str(path))}: not a CIFAR-10 python batch ({error}); expected "
                           f"{LAYOUTS[DatasetKind.CIFAR10]}") from None
    if not isinstance(value, dict):
        raise DatasetError(f"{display_path(str(path))}: holds a {type(value).__name__}, not the dict of a CIFAR batch")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in value.items()}


def _cifar_batch(path: Path):
    import numpy as np

    batch = _unpickle(path)
    if "data" not in batch or "labels" not in batch:
        raise DatasetError(f"{display_path(str(path))}: a CIFAR batch needs 'data' and 'labels'; it has "
                           f"{', '.join(map(str, batch)) or 'nothing'}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * CIFAR_SIDE**2 or len(data) != len(labels):
        raise DatasetError(f"{display_path(str(path))}: data is {data.dtype} {data.shape} with {len(labels)} labels; "
                           f"expected uint8 (N, 3072) rows (1024 red, 1024 green, 1024 blue) and N labels")
    return data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), labels


def _cifar10(path: Path, val_fraction: float) -> Dataset:
    import numpy as np

    meta = _unpickle(path / "batches.meta")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    if not names:
        raise DatasetError(f"{display_path(str(path / 'batches.meta'))}: no label_names")
    parts = [_cifar_batch(path / name) for name in CIFAR_TRAIN]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = _cifar_batch(path / "test_batch")
    for name, values in (("data_batch_*", labels), ("test_batch", test_labels)):
        if values.size and (values.min() < 0 or values.max() >= len(names)):
            raise DatasetError(f"cifar10: a label of {name} is outside 0..{len(names) - 1} (batches.meta names "
                               f"{len(names)} classes)")
    train, val = _two_way(images, labels, where=f"cifar10:{display_path(str(path))}", val_fraction=val_fraction)
    test = _take(test_images, test_labels, slice(None))
    notes = (f"validation: {val_fraction:.0%} of data_batch_1..5, stratified, seed {SPLIT_SEED}",)
    return Dataset(DatasetKind.CIFAR10, str(path), tuple(names), train, val, test, "test", True, notes)


# --- image folders -------------------------------------------------------------------------------------------------

SPLIT_FOLDERS = ("train", "val", "test")


def _folder(path: Path, *, image_size: tuple[int, int] | None, channels: int | None,
            val_fraction: float = VAL_FRACTION) -> Dataset:

    on_disk = {name: path / name for name in SPLIT_FOLDERS if (path / name).is_dir()}
    if "train" in on_disk and "val" in on_disk:
        classes = _class_folders(on_disk["train"])
        first = _first_image(on_disk["train"], classes)
        size, mode = _decode_format(first, image_size, channels)
        splits = {name: _read_split(folder, classes, size, mode) for name, folder in on_disk.items()}
        for name, folder in on_disk.items():
            extra = sorted(set(_class_folders(folder, allow_empty=True)) - set(classes))
            if extra:
                raise DatasetError(f"{display_path(str(folder))}: classes {', '.join(extra)} are not in train/")
        test_split = "test" if "test" in splits else "val"
        notes = ("splits from the train/, val/" + (" and test/" if "test" in splits else "") + " folders",)
        if test_split == "val":
            notes += ("no test/ folder: the final report is on val/",)
        train, val = splits["train"], splits["val"]
        test = splits.get("test", val)
    else:
        classes = _class_folders(path)
        first = _first_image(path, classes)
        size, mode = _decode_format(first, image_size, channels)
        whole = _read_split(path, classes, size, mode)
        train, val, test = _three_way(whole.images, whole.labels, where=f"folder:{display_path(str(path))}",
                                      val_fraction=val_fraction)
        test_split = "test"
        notes = (f"no train/ and val/ folders: split {_split_note(val_fraction)} into train/val/test, stratified, seed {SPLIT_SEED}",)
    notes += (f"images decoded as {mode} at {size[1]}x{size[0]} (width x height)",)
    return Dataset(DatasetKind.FOLDER, str(path), tuple(classes), train, val, test, test_split, True, notes)


def _class_folders(path: Path, *, allow_empty: bool = False) -> list[str]:
    names = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names and not allow_empty:
        raise DatasetError(f"folder: {display_path(str(path))} has no class subfolders; expected "
                           f"{LAYOUTS[DatasetKind.FOLDER]}")
    return names


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _first_image(path: Path, classes: list[str]) -> Path:
    for name in classes:
        images = _images_in(path / name)
        if images:
            return images[0]
    raise DatasetError(f"folder: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of "
                       f"{display_path(str(path))}")


def _decode_format(first: Path, image_size, channels) -> tuple[tuple[int, int], str]:
    """(width, height) and Pillow mode to decode every image at; by default those of the first image."""
    image = open_image(first)
    mode = image_mode(channels) if channels else ("L" if image.mode in ("1", "L", "I;16", "I") else "RGB")
    if mode is None:
        raise DatasetError(f"folder: cannot decode images with {channels} channels; 1 (gray) or 3 (RGB)")
    size = (image_size[1], image_size[0]) if image_size else image.size
    return size, mode


def image_mode(channels: int) -> str | None:
    """The Pillow mode images of `channels` channels are decoded in: L (gray) or RGB; None for other counts."""
    return {1: "L", 3: "RGB"}.get(channels)


def decode_image(file: Path, *, size: tuple[int, int], mode: str):
    """An image file as a folder dataset decodes it: uint8 (C, H, W) in `mode`, resized (bilinear, Pillow) to `size`
    (width, height) when it differs; archviz predict, cam, activations and walkthrough decode a run's inputs with it."""
    return fit_image(open_image(file), size=size, mode=mode)


def fit_image(image, *, size: tuple[int, int], mode: str):
    """decode_image's work on an opened Pillow image."""
    import numpy as np
    from PIL import Image

    image = image.convert(mode)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)


def open_image(file: Path):
    """The decoded image; one past Pillow's limit of pixels (a decompression bomb) is refused, not warned about."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise MissingDependencyError(f"--dataset folder reads images with Pillow, which is not installed: "
                                     f"{TRAIN_HINT}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                image.load()
                return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DatasetError(f"{display_path(str(file))}: refusing to decode this image: {error}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{display_path(str(file))}: cannot read this image ({error})") from None


def _read_split(folder: Path, classes: list[str], size: tuple[int, int], mode: str) -> Split:
    import numpy as np

    images, labels = [], []
    for label, name in enumerate(classes):
        files = _images_in(folder / name) if (folder / name).is_dir() else []
        if not files:
            raise DatasetError(f"folder: the class folder {display_path(str(folder / name))} has no images "
                               f"({', '.join(IMAGE_SUFFIXES)})")
        for file in files:
            images.append(decode_image(file, size=size, mode=mode))
            labels.append(label)
    return Split(np.stack(images), np.asarray(labels, dtype=np.int64))
