"""Trust boundaries (issue 15): whatever a spec or a dataset file holds, archviz gives one `archviz: error:` line of
at most a few hundred characters, and never hangs, fills memory, blocks on a file or runs code on the way.

A case that hung before its fix runs in a subprocess with a generous timeout and a memory limit: a hang fails the
test instead of stopping the suite. The time is a guard only; no test checks how long anything takes.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.train.data import DatasetError, load_dataset, read_idx
from test_train_data import idx_bytes, write_cifar, write_folder, write_mnist

HANG_GUARD_S = 120  # a fixed case takes a few seconds even on a loaded machine; the hangs were endless
GUARD_MEMORY = 2**30  # address space of the guarded process: inspect --no-crosscheck needs about 200 MB
LINE_LIMIT = 500  # characters of an error line, "archviz: error: " included

_GUARDED = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
from typer.testing import CliRunner
from archviz.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({{"exit_code": result.exit_code, "stderr": result.stderr, "output": result.output,
                  "exception": repr(result.exception)}}))
"""


def guarded_error(folder, *argv: str) -> str:
    """The one error line of a command run in a subprocess that may not hang or take more than GUARD_MEMORY."""
    try:
        done = subprocess.run([sys.executable, "-c", _GUARDED.format(memory=GUARD_MEMORY), *argv], cwd=folder,
                              capture_output=True, text=True, timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"archviz {' '.join(argv)} still ran after {HANG_GUARD_S} s: a hang")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return _one_line(result["exit_code"], result["stderr"], result["output"] + result["exception"])


def cli_error(*argv: str) -> str:
    """The one error line of a command run here, with no warning of a library on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(app, list(argv))
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, DeprecationWarning)]
    assert not shown, shown
    return _one_line(result.exit_code, result.stderr, result.output + repr(result.exception))


def _one_line(exit_code: int, stderr: str, everything: str) -> str:
    lines = stderr.splitlines()
    assert exit_code == 2 and len(lines) == 1 and lines[0].startswith("archviz: error: "), everything[-3000:]
    assert "Traceback" not in everything and "Warning" not in everything, everything[-3000:]
    assert len(lines[0]) < LINE_LIMIT, f"{len(lines[0])} characters: {lines[0][:200]}..."
    return lines[0]


def conv_spec(folder, out_channels: str):
    path = folder / "net.yaml"
    path.write_text(f"input: [3, 8, 8]\nlayers:\n  - conv2d: {{out_channels: {json.dumps(out_channels)}, "
                    "kernel_size: 1}\n")
    return path


# --- expressions and messages ----------------------------------------------------------------------------------

@pytest.mark.parametrize("expression", [
    "$[[[1] * 10000] * 10000] * 10000",  # three shared lists: a repr of 10**12 items filled memory
    "$[[[1] * 10000] * 10000] * 10000 == [[[1] * 10000] * 10000] * 10000",  # 10**12 comparisons, deaf to Ctrl-C
], ids=["repetition", "comparison"])
def test_an_expression_cannot_build_a_huge_value(tmp_path, expression):
    conv_spec(tmp_path, expression)
    line = guarded_error(tmp_path, "inspect", "net.yaml", "--no-crosscheck")
    assert "net.yaml:3:" in line and "result is longer than 10,000" in line


@pytest.mark.parametrize("value", [
    "$([7] * 9000)['a']",  # the message quoted the 9,000 items of the list
    "x" * 50_000,  # quoted as the value of out_channels
], ids=["expression", "literal"])
def test_a_message_quoting_a_long_value_is_short(tmp_path, value):
    line = cli_error("inspect", str(conv_spec(tmp_path, value)), "--no-crosscheck")
    assert "net.yaml:3:" in line and " ... " in line


# --- mnist -----------------------------------------------------------------------------------------------------

def _gzip_stream(header: bytes, zeros: int) -> bytes:
    """header, then that many zero bytes, gzipped without holding them in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    parts = [packer.compress(header)]
    chunk = bytes(2**20)
    for _ in range(zeros // len(chunk)):
        parts.append(packer.compress(chunk))
    return b"".join(parts) + packer.flush()


@pytest.mark.parametrize("sizes, message", [
    ((10, 28, 28), r"holds more data than its header announces \(10x28x28 = 7,840 bytes\)"),
    ((2**31 - 1, 28, 28), r"announces 2147483647x28x28 = .* more than the 1,073,741,824"),  # MAX_IDX_BYTES
], ids=["more than announced", "announced past the limit"])
def test_a_gzip_bomb_is_refused_before_it_is_inflated(tmp_path, sizes, message):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(_gzip_stream(bytes([0, 0, 8, 3]) + struct.pack(">3i", *sizes), 64 * 2**20))
    assert bomb.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError) as refused:
            read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"{peak:,} bytes allocated to read a 64 MB bomb"
    assert re.search(message, str(refused.value)), refused.value


@pytest.mark.parametrize("sizes", [(0, 28, 28), (0, 28, -28), (65536, 65536, 65536, 65536)],
                         ids=["zero", "negative", "overflow"])
def test_idx_sizes_that_are_zero_negative_or_overflow_are_one_line(tmp_path, sizes):
    """Zero images printed numpy's RuntimeWarnings; -28 made numpy's reshape guess a size and 65536**4 overflowed
    numpy's product to 0: both were ValueError's traceback."""
    folder = write_mnist(tmp_path / "m")
    (folder / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, len(sizes)]) + struct.pack(f">{len(sizes)}i",
                                                                                                 *sizes))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(sizes[0], dtype=np.uint8)))
    line = cli_error("train", "lenet", "--dataset", f"mnist:{folder}", "-o", str(tmp_path / "run"))
    assert "train-images-idx3-ubyte: its header announces" in line
    assert not (tmp_path / "run").exists()


# --- image folders ---------------------------------------------------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A PNG that announces width x height gray pixels and holds none: Pillow judges its size before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(
        b"IEND", b"")


@pytest.mark.parametrize("side", [20_000, 10_000], ids=["past twice the limit", "past the limit"])
def test_a_decompression_bomb_image_is_one_line_naming_it(tmp_path, side):
    """20000x20000 was DecompressionBombError's traceback; 10000x10000 printed DecompressionBombWarning."""
    folder = write_folder(tmp_path / "pets", per_class=4)
    (folder / "cat" / "000.png").write_bytes(png_header(side, side))
    line = cli_error("train", "lenet", "--dataset", f"folder:{folder}", "-o", str(tmp_path / "run"))
    assert "cat/000.png: refusing to decode this image" in line and f"{side * side} pixels" in line


def test_a_split_left_empty_is_refused(tmp_path):
    """Two images trained on both and reported 'test accuracy 0.00% (0 images)' with exit status 0."""
    folder = write_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=1)
    line = cli_error("train", "lenet", "--dataset", f"folder:{folder}", "-o", str(tmp_path / "run"))
    assert "splitting its 2 images leaves the validation and test splits empty" in line
    assert "each class needs at least 3 images" in line
    assert not (tmp_path / "run").exists()


# --- cifar-10 --------------------------------------------------------------------------------------------------

class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_batches_pickled_with_the_highest_protocol_load_and_still_run_no_code(tmp_path, monkeypatch):
    original = pickle.dumps
    monkeypatch.setattr(pickle, "dumps", lambda value, protocol=None: original(value, pickle.HIGHEST_PROTOCOL))
    folder = write_cifar(tmp_path / "c")
    monkeypatch.undo()
    data = load_dataset(f"cifar10:{folder}")
    assert len(data.train) + len(data.val) == 100 and data.image_shape == (3, 32, 32)

    marker = tmp_path / "ran"
    batch = {b"data": np.zeros((1, 3072), dtype=np.uint8), b"labels": [_System(marker)]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(DatasetError, match=r"test_batch: not a CIFAR-10 python batch \(refusing to load posix.system"):
        load_dataset(f"cifar10:{folder}")
    assert not marker.exists()


# --- spec files ------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_extends_naming_a_fifo_is_refused_without_blocking(tmp_path):
    """Opening a FIFO waits for a writer: forever."""
    os.mkfifo(tmp_path / "base.yaml")
    (tmp_path / "net.yaml").write_text("extends: base.yaml\nlayers: [relu]\n")
    line = guarded_error(tmp_path, "inspect", "net.yaml", "--no-crosscheck")
    assert "base.yaml: is a named pipe (FIFO), not a regular file" in line


def test_cifar_labels_saved_as_numpy_integers_load(tmp_path):
    folder = write_cifar(tmp_path / "c")
    for path in folder.glob("*_batch*"):
        batch = pickle.loads(path.read_bytes())
        batch[b"labels"] = [np.int64(label) for label in batch[b"labels"]]
        path.write_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    data = load_dataset(f"cifar10:{folder}")
    assert sorted(set(data.train.labels.tolist())) == list(range(10))
