"""Write scikit-learn's bundled digits in MNIST's and CIFAR-10's file formats, for lesson 7's commands to read offline.

    .venv/bin/python scripts/lesson_datasets.py

runs/lessons/digits-as-mnist/ gets the four idx files of MNIST (28x28 grey images), runs/lessons/digits-as-cifar10/
the python batches of CIFAR-10 (32x32, the grey copied into red, green and blue). They are stand-ins with the real
files' layout, not MNIST or CIFAR-10: 1,797 digits of 8x8 pixels, enlarged, split 80/20 into the training and test
files (stratified, seed 0). `archviz train --dataset mnist --data runs/lessons/digits-as-mnist` reads them exactly as
it reads the published files. Nothing is downloaded.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

RUNS = Path(__file__).resolve().parent.parent / "runs" / "lessons"
MNIST = RUNS / "digits-as-mnist"
CIFAR10 = RUNS / "digits-as-cifar10"
MNIST_SIDE, CIFAR_SIDE = 28, 32  # the published datasets' image sides
CIFAR_TRAIN_BATCHES = 5  # data_batch_1 .. data_batch_5


def digits_at(side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training images, training labels, test images, test labels: uint8 (N, side, side), values 0..255."""
    digits = load_digits()
    grey = [Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), mode="L") for image in digits.images]
    images = np.stack([np.asarray(image.resize((side, side), Image.Resampling.BILINEAR)) for image in grey])
    train_x, test_x, train_y, test_y = train_test_split(images, digits.target.astype(np.uint8), test_size=0.2,
                                                        stratify=digits.target, random_state=0)
    return train_x, train_y, test_x, test_y


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file: magic 0x0000, type 0x08 (unsigned byte), the number of dimensions, big-endian int32 sizes, data."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()


def write_mnist() -> None:
    train_x, train_y, test_x, test_y = digits_at(MNIST_SIDE)
    MNIST.mkdir(parents=True, exist_ok=True)
    files = {"train-images-idx3-ubyte": train_x, "train-labels-idx1-ubyte": train_y,
             "t10k-images-idx3-ubyte": test_x, "t10k-labels-idx1-ubyte": test_y}
    for name, array in files.items():
        (MNIST / name).write_bytes(idx_bytes(array))


def cifar_batch(images: np.ndarray, labels: np.ndarray) -> dict:
    rows = np.repeat(images.reshape(len(images), 1, -1), 3, axis=1).reshape(len(images), -1)  # 1024 R, G, B each
    return {b"data": rows, b"labels": [int(label) for label in labels]}


def write_cifar10() -> None:
    train_x, train_y, test_x, test_y = digits_at(CIFAR_SIDE)
    CIFAR10.mkdir(parents=True, exist_ok=True)
    parts = zip(np.array_split(train_x, CIFAR_TRAIN_BATCHES), np.array_split(train_y, CIFAR_TRAIN_BATCHES))
    batches = {f"data_batch_{i + 1}": cifar_batch(x, y) for i, (x, y) in enumerate(parts)}
    batches["test_batch"] = cifar_batch(test_x, test_y)
    batches["batches.meta"] = {b"label_names": [str(digit).encode() for digit in range(10)]}
    for name, batch in batches.items():
        (CIFAR10 / name).write_bytes(pickle.dumps(batch, protocol=2))


def main() -> None:
    write_mnist()
    write_cifar10()
    for folder in (MNIST, CIFAR10):
        print(f"wrote {folder.relative_to(RUNS.parent.parent)}")


if __name__ == "__main__":
    main()
