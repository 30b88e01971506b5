"""One input for a network: an image file, or an image of the run's dataset, prepared as the run prepared its batches.

The image gets the model's channels (gray <-> colour as archviz train converts them) and size (bilinear, antialiased
when shrinking; no crop), then the weights' normalisation. The picture kept for drawing is the same image before
normalisation, 0..1, at the model's input size, so maps drawn over it line up pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archviz.errors import ArchvizError, display_path
from archviz.inside.trained import Trained

SAMPLE_SPLIT = "val"  # --sample N: the run's validation images, which the weights were chosen on but not fitted to


@dataclass(frozen=True)
class Input:
    tensor: Any  # (1, C, H, W) float32, normalised: what the model takes
    picture: Any  # numpy (H, W) or (H, W, 3), 0..1: the input before normalisation, to draw on
    source: str  # where it came from, in words
    label: int | None = None  # the true class of a dataset image


def read_image(trained: Trained, path: str | Path) -> Input:
    """An image file (anything Pillow reads) as the model's input: decoded as the run's dataset decoded its images
    (data.fit_image, as archviz predict decodes them), then adapted to the model as its batches were; for weights
    that are not a run, converted to the model's channels and adapted to its size directly."""
    import numpy as np

    from archviz.train.data import fit_image, image_mode, open_image

    path = Path(path)
    if not path.is_file():
        raise ArchvizError(f"no image file {display_path(str(path))}")
    image = open_image(path)
    sizes = [image.size]  # (width, height) at each step
    mode = image_mode(trained.dataset_image_shape[0]) if trained.dataset_image_shape else None
    if mode is not None:
        sizes.append(tuple(reversed(trained.dataset_image_shape[1:])))
        pixels = fit_image(image, size=sizes[-1], mode=mode)
    else:
        pixels = np.asarray(image.convert("L" if trained.input_shape[0] == 1 else "RGB"), dtype=np.uint8)
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, h, w)
    sizes.append(tuple(reversed(trained.input_shape[1:])))
    return _prepared(trained, pixels, f"{display_path(str(path))}{_resizes(sizes, run=mode is not None)}")


def _resizes(sizes: list[tuple[int, int]], *, run: bool) -> str:
    """", resized 20x20 -> 8x8 (the run's images) -> 32x32" for the sizes that differ; "" when none does."""
    steps = [f"{sizes[0][0]}x{sizes[0][1]}"]
    for index, size in enumerate(sizes[1:], start=1):
        if size != sizes[index - 1]:
            steps.append(f"{size[0]}x{size[1]}" + (" (the run's images)" if run and index == 1 else ""))
    return f", resized {' -> '.join(steps)}" if len(steps) > 1 else ""


def dataset_sample(trained: Trained, index: int) -> Input:
    """Image `index` of the run's validation split."""
    split = _sample_split(trained)
    if not 0 <= index < len(split):
        raise ArchvizError(f"--sample {index}: the {SAMPLE_SPLIT} split of {trained.dataset} has {len(split)} images "
                           f"(0 to {len(split) - 1})")
    label = int(split.labels[index])
    source = f"{trained.dataset} {SAMPLE_SPLIT} image {index} (true class {trained.dataset_classes[label]})"
    return _prepared(trained, split.images[index], source, label)


def dataset_samples(trained: Trained, count: int) -> list[Input]:
    """The first image of each class in turn, up to count images: a few validation images of different classes."""
    split = _sample_split(trained)
    firsts = [int(i) for i in _first_of_each_class(split.labels)]
    return [dataset_sample(trained, index) for index in firsts[:count]]


def _first_of_each_class(labels):
    import numpy as np

    _, first = np.unique(labels, return_index=True)
    return sorted(first)


def _sample_split(trained: Trained):
    from archviz.train.data import load_dataset

    if trained.dataset is None:
        raise ArchvizError("--sample takes an image of the run's dataset; these weights are not a run of archviz "
                           "train, so give --image FILE")
    shape = trained.input_shape
    data = load_dataset(trained.dataset, image_size=tuple(shape[1:]), channels=shape[0]) \
        if trained.dataset.startswith("folder:") else load_dataset(trained.dataset)
    return getattr(data, SAMPLE_SPLIT)


def _prepared(trained: Trained, pixels, source: str, label: int | None = None) -> Input:
    """uint8 (C, h, w) -> the model's normalised (1, C, H, W) input and the 0..1 picture at the model's size."""
    import torch

    from archviz.train.batches import BatchMaker

    maker = BatchMaker(input_shape=trained.input_shape, stats=trained.stats, device=torch.device("cpu"),
                       channels_last=False, augment=False, flips=False)
    adapted = maker.adapt(torch.tensor(pixels)[None])  # (1, C, H, W) in 0..1; a copy: the array may be read-only
    tensor = (adapted - maker.mean) / maker.std
    picture = adapted[0].permute(1, 2, 0).numpy()  # (H, W, C)
    return Input(tensor, picture[..., 0] if picture.shape[-1] == 1 else picture, source, label)
