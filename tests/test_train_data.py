"""Datasets of `archviz train`, written in their published formats into tmp_path: idx (plain and gzipped), CIFAR-10
python batches, image folders; each way a dataset can be missing or corrupt gives one clear error."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.train.data import DatasetError, load_dataset, parse_dataset, read_idx, stratified_split

CLASSES = 10


def pattern_images(count_per_class: int, *, side: int = 28, channels: int = 1, classes: int = CLASSES, seed: int = 0):
    """uint8 (N, C, side, side) images a small net learns in a few steps: class k is a bright square at a place of
    its own, on noise."""
    rng = np.random.RandomState(seed)
    labels = np.repeat(np.arange(classes), count_per_class)
    images = rng.randint(0, 60, size=(len(labels), channels, side, side)).astype(np.uint8)
    block = side // 4
    for index, label in enumerate(labels):
        row, col = divmod(int(label) % 9, 3)
        top, left = 2 + row * (side - block - 4) // 2, 2 + col * (side - block - 4) // 2
        images[index, :, top:top + block, left:left + block] = 255 if label < 9 else 150
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx format: 0x0000, type 0x08 (unsigned byte), the number of dimensions, big-endian int32 sizes, data."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()


def write_mnist(folder, *, per_class: int = 20, test_per_class: int = 5, gz: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = pattern_images(per_class, seed=1)
    test_x, test_y = pattern_images(test_per_class, seed=2)
    files = {"train-images-idx3-ubyte": train_x[:, 0], "train-labels-idx1-ubyte": train_y.astype(np.uint8),
             "t10k-images-idx3-ubyte": test_x[:, 0], "t10k-labels-idx1-ubyte": test_y.astype(np.uint8)}
    for name, array in files.items():
        data = idx_bytes(np.ascontiguousarray(array))
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(folder, *, per_class: int = 2):
    """The python batches as published: dicts with bytes keys, data (N, 3072) uint8 rows of R, G, B planes."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        images, labels = pattern_images(per_class, side=32, channels=3, seed=index)
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
                 b"data": images.reshape(len(images), -1), b"filenames": [b"x.png"] * len(labels)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_folder(folder, *, classes=("cat", "dog", "panda"), per_class: int = 10, size=(20, 16), mode="RGB"):
    from PIL import Image

    images, labels = pattern_images(per_class, side=max(size), channels=3, classes=len(classes))
    for index, (image, label) in enumerate(zip(images, labels)):
        target = folder / classes[label]
        target.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image.transpose(1, 2, 0)).resize(size).convert(mode)
        picture.save(target / f"{index:03d}.png")
    return folder


# --- digits ----------------------------------------------------------------------------------------------------

def test_digits_is_split_stratified_and_fixed():
    pytest.importorskip("sklearn")
    first, second = load_dataset("digits"), load_dataset("digits")
    assert first.image_shape == (1, 8, 8) and first.classes == tuple("0123456789")
    assert len(first.train) + len(first.val) + len(first.test) == 1797
    assert np.array_equal(first.test.labels, second.test.labels)
    assert np.array_equal(first.test.images, second.test.images)
    counts = np.bincount(first.test.labels)
    assert counts.min() >= 35 and counts.max() <= 37  # about 20% of each class's ~180
    assert first.train.images.dtype == np.uint8 and first.train.images.max() == 255


def test_stratified_split_holds_out_every_class():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    kept, held = stratified_split(labels, 0.2)
    assert sorted(np.bincount(labels[held]).tolist()) == [1, 2, 2]
    assert len(set(kept) & set(held)) == 0 and len(kept) + len(held) == len(labels)


# --- mnist -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files(tmp_path, gz):
    data = load_dataset(f"mnist:{write_mnist(tmp_path / 'mnist', gz=gz)}")
    assert data.image_shape == (1, 28, 28)
    assert len(data.train) + len(data.val) == 200 and len(data.val) == 20 and len(data.test) == 50
    expected, _ = pattern_images(5, seed=2)
    assert np.array_equal(data.test.images, expected)


def test_mnist_with_data_option(tmp_path):
    folder = write_mnist(tmp_path / "m")
    assert load_dataset("mnist", folder).name == f"mnist:{folder}"


def test_read_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    assert np.array_equal(read_idx(tmp_path / "a"), array)


def test_mnist_missing_file(tmp_path):
    folder = write_mnist(tmp_path / "m")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"no t10k-labels-idx1-ubyte \(or t10k-labels-idx1-ubyte.gz\).*expected a "
                                           r"folder with train-images-idx3-ubyte"):
        load_dataset(f"mnist:{folder}")


def test_mnist_bad_magic(tmp_path):
    folder = write_mnist(tmp_path / "m")
    (folder / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: not an idx file .*'504b0304'"):
        load_dataset(f"mnist:{folder}")


def test_mnist_truncated(tmp_path):
    folder = write_mnist(tmp_path / "m")
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"announces 200x28x28 = 156,800 bytes of data but it holds 156,700"):
        load_dataset(f"mnist:{folder}")


def test_mnist_corrupt_gzip(tmp_path):
    folder = write_mnist(tmp_path / "m", gz=True)
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:12])
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: cannot read it"):
        load_dataset(f"mnist:{folder}")


def test_mnist_counts_differ(tmp_path):
    folder = write_mnist(tmp_path / "m")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, dtype=np.uint8)))
    with pytest.raises(DatasetError, match=r"test images \(50, 28, 28\) and labels \(7,\) do not match"):
        load_dataset(f"mnist:{folder}")


def test_mnist_label_out_of_range(tmp_path):
    folder = write_mnist(tmp_path / "m")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(50, 12, dtype=np.uint8)))
    with pytest.raises(DatasetError, match=r"label 12 is not a digit 0..9"):
        load_dataset(f"mnist:{folder}")


# --- cifar-10 --------------------------------------------------------------------------------------------------

def test_cifar10_batches(tmp_path):
    data = load_dataset(f"cifar10:{write_cifar(tmp_path / 'c')}")
    assert data.classes == tuple(CIFAR_NAMES) and data.image_shape == (3, 32, 32)
    assert len(data.train) + len(data.val) == 5 * 20 and len(data.test) == 20
    expected, _ = pattern_images(2, side=32, channels=3, seed=5)
    assert np.array_equal(data.test.images, expected)  # rows of R, G, B planes back to (3, 32, 32)
    assert data.flips


def test_cifar10_missing_batch(tmp_path):
    folder = write_cifar(tmp_path / "c")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"cifar10: no data_batch_3 in .*expected a folder with the python batches"):
        load_dataset(f"cifar10:{folder}")


def test_cifar10_corrupt_batch(tmp_path):
    folder = write_cifar(tmp_path / "c")
    (folder / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DatasetError, match=r"test_batch: not a CIFAR-10 python batch"):
        load_dataset(f"cifar10:{folder}")


def test_cifar10_wrong_row_length(tmp_path):
    folder = write_cifar(tmp_path / "c")
    batch = {b"labels": [0, 1], b"data": np.zeros((2, 100), dtype=np.uint8)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_1: data is uint8 \(2, 100\) with 2 labels; expected uint8 "
                                           r"\(N, 3072\)"):
        load_dataset(f"cifar10:{folder}")


class _Sneaky:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_cifar10_pickle_runs_no_code(tmp_path):
    folder = write_cifar(tmp_path / "c")
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": _Sneaky()}))
    with pytest.raises(DatasetError, match=r"refusing to load posix.getcwd"):
        load_dataset(f"cifar10:{folder}")


# --- image folders ---------------------------------------------------------------------------------------------

def test_folder_without_split(tmp_path):
    data = load_dataset(f"folder:{write_folder(tmp_path / 'pets')}")
    assert data.classes == ("cat", "dog", "panda") and data.image_shape == (3, 16, 20)
    assert (len(data.train), len(data.val), len(data.test)) == (21, 3, 6)
    assert "stratified" in data.notes[0]


def test_folder_decoded_at_the_models_size(tmp_path):
    data = load_dataset(f"folder:{write_folder(tmp_path / 'pets')}", image_size=(32, 32), channels=1)
    assert data.image_shape == (1, 32, 32)


def test_folder_with_train_and_val(tmp_path):
    write_folder(tmp_path / "faces" / "train", classes=("closed", "open"), per_class=6)
    write_folder(tmp_path / "faces" / "val", classes=("closed", "open"), per_class=2, mode="L")
    data = load_dataset(f"folder:{tmp_path / 'faces'}")
    assert (len(data.train), len(data.val)) == (12, 4) and data.test_split == "val"
    assert data.image_shape == (3, 16, 20)  # the first training image's mode and size for every split


def test_folder_with_no_class_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"has no class subfolders; expected a folder with one subfolder"):
        load_dataset(f"folder:{tmp_path / 'empty'}")


def test_folder_with_an_empty_class(tmp_path):
    folder = write_folder(tmp_path / "pets")
    (folder / "zebra").mkdir()
    with pytest.raises(DatasetError, match=r"the class folder .*zebra has no images"):
        load_dataset(f"folder:{folder}")


def test_folder_with_a_corrupt_image(tmp_path):
    folder = write_folder(tmp_path / "pets")
    (folder / "dog" / "005.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match=r"dog/005.png: cannot read this image"):
        load_dataset(f"folder:{folder}")


def test_folder_val_class_not_in_train(tmp_path):
    write_folder(tmp_path / "f" / "train", classes=("a", "b"), per_class=3)
    write_folder(tmp_path / "f" / "val", classes=("a", "b", "c"), per_class=1)
    with pytest.raises(DatasetError, match=r"classes c are not in train/"):
        load_dataset(f"folder:{tmp_path / 'f'}")


# --- naming a dataset ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset, data, message", [
    ("imagenet", None, r"unknown dataset 'imagenet'; expected one of digits, mnist, cifar10, folder"),
    ("mnist", None, r"--dataset mnist needs a folder: --dataset mnist:PATH or --data PATH"),
    ("digits:x", None, r"digits is bundled with scikit-learn and takes no folder"),
    ("mnist:/no/such/folder", None, r"mnist: no folder '/no/such/folder'; expected a folder with train-images"),
    ("mnist:a", "b", r"already names a folder; leave out --data 'b'"),
])
def test_dataset_names(dataset, data, message):
    with pytest.raises(DatasetError, match=message):
        parse_dataset(dataset, data)


def test_cli_missing_dataset_is_one_line_and_status_2(tmp_path):
    result = CliRunner().invoke(app, ["train", "lenet", "--dataset", f"cifar10:{tmp_path}", "-o", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "archviz: error: cifar10: no batches.meta in" in result.output and "expected a folder" in result.output
    assert not (tmp_path / "r").exists()
