"""Write the input pictures the docs feed to archviz, from data bundled with scikit-learn.

    .venv/bin/python scripts/lesson_images.py

digit-7.png: the first 7 of scikit-learn's 8x8 digits, its values 0..16 scaled to 0..255 as `archviz train --dataset
digits` scales them, enlarged to LeNet's 32x32 with the same bilinear resampling, in docs/lessons/img/.
runs/digits-test/test-I-label-L.png: the first DIGITS_TEST images of the test split `archviz train --dataset digits`
makes, as it stores them (8x8, 0..255), the pictures docs/guide/trained-runs.md's `archviz predict` reads.
Nothing is downloaded; scripts/run_examples.py calls write_digits_test before it reruns the pages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "lessons" / "img"
DIGITS_TEST = ROOT / "runs" / "digits-test"
DIGITS_TEST_IMAGES = 4  # as many as the page's predict example shows
SIDE = 32  # LeNet's input side; the lessons' models take 32x32


def first_digit(label: int) -> Image.Image:
    """The first image of that class in the bundled digits, as an 8-bit grey picture of SIDE x SIDE pixels."""
    digits = load_digits()
    pixels = digits.images[list(digits.target).index(label)]  # (8, 8), values 0..16
    grey = np.round(pixels * 255 / 16).astype(np.uint8)
    return Image.fromarray(grey, mode="L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)


def write_digits_test() -> None:
    """The digits' first test images as PNG files named by their index and label (archviz, thus torch, imported)."""
    from archviz.train.data import load_dataset

    test = load_dataset("digits").test
    DIGITS_TEST.mkdir(parents=True, exist_ok=True)
    for index in range(DIGITS_TEST_IMAGES):
        grey = np.asarray(test.images[index][0], dtype=np.uint8)
        Image.fromarray(grey, mode="L").save(DIGITS_TEST / f"test-{index}-label-{int(test.labels[index])}.png")


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / "digit-7.png"
    first_digit(7).save(path)
    print(f"wrote {path.relative_to(ROOT)}")
    write_digits_test()
    print(f"wrote {DIGITS_TEST.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
