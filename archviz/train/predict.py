"""archviz predict: a trained run's class probabilities for image files.

Each image is prepared as the run's training prepared its images, by the same functions: decoded as a folder dataset
decodes its files (data.decode_image: the dataset's mode and image size, Pillow's bilinear resize when it differs),
then the model's input steps and the run's normalisation (batches.BatchMaker, which made every training, validation
and test batch). An image written in the dataset's own format (an 8x8 digit, a 28x28 MNIST digit, a 32x32 CIFAR-10
photo) therefore gives the probabilities the run gave that image of its dataset.

The weights are the run's best.pt (lowest validation loss, the one its test figures are for) or its last.pt.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from archviz.errors import ArchvizError, display_path
from archviz.inside.trained import Trained, load_trained
from archviz.train.choices import Device
from archviz.train.data import IMAGE_SUFFIXES, decode_image, image_mode
from archviz.train.run_folder import BEST, LAST

BATCH = 256  # images scored at a time: no gradients are kept, so memory is the activations of one batch
TOP = 5


class Checkpoint(enum.StrEnum):
    BEST = "best"
    LAST = "last"


@dataclass(frozen=True)
class Guess:
    index: int  # the model's output index
    name: str  # its class name
    probability: float  # softmax of the logits


@dataclass(frozen=True)
class Prediction:
    image: str  # the file, as given or found in a folder
    top: tuple[Guess, ...]  # most probable first


@dataclass(frozen=True)
class Predictions:
    weights: str  # where the weights came from, in words
    classes: tuple[str, ...]
    rows: tuple[Prediction, ...]  # one per image, in the order given (a folder's images sorted)


def load_run(run: str | Path, *, checkpoint: Checkpoint | None = None) -> Trained:
    """The run's network with best.pt's weights (or last.pt's); RUN may also be a checkpoint file of a run."""
    path = Path(run)
    if path.is_dir():
        name = LAST if checkpoint == Checkpoint.LAST else BEST
        if not (path / name).is_file():
            raise ArchvizError(f"{display_path(str(path))}: no {name} in this folder; expected a run folder of "
                               "archviz train")
        path = path / name
    elif checkpoint is not None:
        raise ArchvizError(f"--checkpoint {checkpoint.value}: {display_path(str(path))} is a checkpoint file "
                           "already; --checkpoint chooses one in a run folder")
    elif not path.is_file():
        raise ArchvizError(f"no run folder or checkpoint {display_path(str(path))}")
    trained = load_trained(str(path))
    if trained.dataset is None:
        raise ArchvizError(f"{display_path(str(path))} is a state dict, not a run of archviz train: it holds no "
                           "classes or preparation of the images")
    if not trained.classes:
        raise ArchvizError(f"{display_path(str(path))} is a run of archviz pretrain: its backbone has no classifier "
                           "(archviz probe --finetune trains one)")
    return trained


def image_files(paths: list[str | Path]) -> list[Path]:
    """The files named, and the images in the folders named (all depths, sorted by path; other files skipped)."""
    files: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(given).parts))
            if not found:
                raise ArchvizError(f"{display_path(str(given))}: no images in this folder "
                                   f"({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif given.is_file():
            files.append(given)
        else:
            raise ArchvizError(f"no image file or folder {display_path(str(given))}")
    return files


def decode_images(trained: Trained, files: list[Path]):
    """uint8 (N, C, H, W): every file decoded as the run's dataset decoded its images; the first unreadable file is
    a DatasetError naming it, before anything is scored."""
    import numpy as np

    channels, height, width = trained.dataset_image_shape
    mode = image_mode(channels)
    if mode is None:
        raise ArchvizError(f"the run's images have {channels} channels; image files decode to 1 (gray) or 3 (RGB)")
    return np.stack([decode_image(file, size=(width, height), mode=mode) for file in files])


def probabilities(trained: Trained, images, *, batch: int = BATCH, device: Device = Device.CPU):
    """Softmax of the logits, float64 (N, classes), of uint8 images (N, C, h, w) prepared as training batches are."""
    import torch

    logits = scores(trained, images, batch=batch, device=device)
    return torch.softmax(logits.double(), dim=1)


def scores(trained: Trained, images, *, batch: int = BATCH, device: Device = Device.CPU):
    """The logits (N, classes), on the CPU, of uint8 images (N, C, h, w): each batch made by the run's BatchMaker, as
    training made its validation and test batches (no augmentation), and scored in eval mode without gradients on
    `device` (auto: CUDA when available)."""
    import torch

    from archviz.train.batches import BatchMaker
    from archviz.train.setup import pick_device

    target = pick_device(device, torch)
    make_batch = BatchMaker(input_shape=trained.input_shape, stats=trained.stats, device=target,
                            channels_last=False, augment=False, flips=False)
    pixels = torch.as_tensor(images)
    net = trained.net.to(target).eval()
    with torch.no_grad():
        parts = [net(make_batch(pixels[first:first + batch])).cpu() for first in range(0, len(pixels), batch)]
    return torch.cat(parts) if parts else torch.zeros(0, len(trained.classes))


def predict(run: str | Path, images: list[str | Path], *, top: int = TOP,
            checkpoint: Checkpoint | None = None, device: Device = Device.CPU) -> Predictions:
    """The `top` most probable classes of each image (files, or folders of them).

    >>> result = predict("runs/lenet", ["seven.png"], top=2)  # doctest: +SKIP
    >>> result.rows[0].top[0].name  # doctest: +SKIP
    '7'
    """
    if top < 1:
        raise ArchvizError(f"--top {top}: at least 1")
    trained = load_run(run, checkpoint=checkpoint)
    files = image_files(images)
    chances = probabilities(trained, decode_images(trained, files), device=device)
    count = min(top, len(trained.classes))
    values, indices = chances.topk(count, dim=1)
    rows = tuple(Prediction(str(file), tuple(Guess(int(i), trained.classes[int(i)], float(p))
                                             for i, p in zip(index_row, value_row)))
                 for file, index_row, value_row in zip(files, indices.tolist(), values.tolist()))
    return Predictions(trained.weights, trained.classes, rows)


# --- output -----------------------------------------------------------------------------------------------------

def predictions_dict(result: Predictions) -> dict:
    return {"weights": result.weights, "classes": list(result.classes),
            "images": [{"image": row.image, "top": [{"class": g.name, "index": g.index, "probability": g.probability}
                                                    for g in row.top]} for row in result.rows]}


def predictions_csv(result: Predictions) -> str:
    """One row per image: image, then class_K and probability_K for each of the top K."""
    import csv
    import io

    count = max((len(row.top) for row in result.rows), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", *(f"{name}_{k}" for k in range(1, count + 1) for name in ("class", "probability"))])
    for row in result.rows:
        writer.writerow([row.image, *(value for g in row.top for value in (g.name, f"{g.probability:.6g}"))])
    return buffer.getvalue()


def predictions_text(result: Predictions) -> str:
    """A plain table: the image, then each of its top classes with its probability in percent."""
    width = max((len(row.image) for row in result.rows), default=5)
    lines = [f"weights: {result.weights}"]
    for row in result.rows:
        guesses = "  ".join(f"{g.name} {g.probability:6.1%}" for g in row.top)
        lines.append(f"{row.image:<{width}}  {guesses}")
    return "\n".join(lines) + "\n"
