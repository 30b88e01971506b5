"""Write the input pictures the lessons feed to archviz (docs/lessons/img/), from data bundled with scikit-learn.

    .venv/bin/python scripts/lesson_images.py

digit-7.png: the first 7 of scikit-learn's 8x8 digits, its values 0..16 scaled to 0..255 as `archviz train --dataset
digits` scales them, enlarged to LeNet's 32x32 with the same bilinear resampling. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "lessons" / "img"
SIDE = 32  # LeNet's input side; the lessons' models take 32x32


def first_digit(label: int) -> Image.Image:
    """The first image of that class in the bundled digits, as an 8-bit grey picture of SIDE x SIDE pixels."""
    digits = load_digits()
    pixels = digits.images[list(digits.target).index(label)]  # (8, 8), values 0..16
    grey = np.round(pixels * 255 / 16).astype(np.uint8)
    return Image.fromarray(grey, mode="L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / "digit-7.png"
    first_digit(7).save(path)
    print(f"wrote {path.relative_to(IMAGES.parent.parent.parent)}")


if __name__ == "__main__":
    main()
