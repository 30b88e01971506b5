"""Trust boundaries (issue 15): the run folder and its checkpoints. A run never writes over files it did not
write, holds its folder against a second run, cleans up after a writer killed mid-write, refuses a tampered
checkpoint naming the first wrong field, and refuses a path it could not write as text, before any work.

Runs are tiny: the mlp on the bundled digits, 2 epochs of 20 batches, one thread.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.errors import ArchvizError
from archviz.output import write_atomic
from archviz.pretrain.loop import pretrain
from archviz.train.loop import train
from archviz.train.run import TrainingInterrupted
from test_train_data import write_mnist

torch = pytest.importorskip("torch")

FAST = dict(dataset="digits", epochs=2, batch_size=64, threads=1, progress=False)
CLI_FAST = ["--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--threads", "1"]
RESUME = dict(threads=1, progress=False, stop=lambda epoch, batch: True)  # a run that resumes stops after a batch
runner = CliRunner()


def _cli(*args: str):
    return runner.invoke(app, list(args))


def _one_line_error(result) -> str:
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("archviz: error: "), result.output
    return lines[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def _interrupted(folder: Path, run=train, model: str = "mlp", at=(1, 3), **options) -> Path:
    with pytest.raises(TrainingInterrupted):
        run(model, output=folder, stop=lambda epoch, batch: (epoch, batch) == at, **options, **FAST)
    return folder


# --- whose folder it is ----------------------------------------------------------------------------------------------

def test_train_refuses_a_folder_of_other_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("report.txt", "metrics.csv", "run.json"):
        (folder / name).write_text(f"the user's {name}\n")
    before = _files(folder)
    line = _one_line_error(_cli("train", "mlp", *CLI_FAST, "-o", str(folder)))
    assert "not a run of archviz" in line and "--overwrite" in line
    assert _files(folder) == before


def test_pretrain_refuses_a_folder_of_other_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "metrics.csv").write_text("the user's figures\n")
    with pytest.raises(ArchvizError, match="not a run of archviz"):
        pretrain("lenet", task="rotation", output=folder, **FAST)
    assert _files(folder) == {"metrics.csv": b"the user's figures\n"}


def test_overwrite_writes_the_run_beside_other_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me\n")
    result = _cli("train", "mlp", *CLI_FAST, "-o", str(folder), "--overwrite")
    assert result.exit_code == 0, result.output
    assert (folder / "notes.txt").read_text() == "keep me\n" and (folder / "last.pt").is_file()


def test_overwrite_never_replaces_a_file_archviz_did_not_write(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.txt").write_text("the user's report\n")
    line = _one_line_error(_cli("train", "mlp", *CLI_FAST, "-o", str(folder), "--overwrite"))
    assert "report.txt" in line and "not written by archviz" in line
    assert _files(folder) == {"report.txt": b"the user's report\n"}


def test_a_finished_run_is_refused_without_overwrite_and_trained_anew_with_it(tmp_path):
    folder = tmp_path / "run"
    assert _cli("train", "mlp", *CLI_FAST, "-o", str(folder)).exit_code == 0
    before = _files(folder)
    line = _one_line_error(_cli("train", "mlp", *CLI_FAST, "-o", str(folder)))
    assert "finished" in line and "--overwrite" in line
    assert _files(folder) == before
    result = _cli("train", "mlp", *CLI_FAST, "--seed", "1", "-o", str(folder), "--overwrite")
    assert result.exit_code == 0, result.output
    assert (folder / "last.pt").read_bytes() != before["last.pt"]


def test_train_refuses_a_run_of_pretrain(tmp_path):
    folder = tmp_path / "other"
    pretrain("lenet", task="rotation", output=folder, **{**FAST, "epochs": 1})
    before = _files(folder)
    with pytest.raises(ArchvizError, match="holds a run of archviz pretrain"):
        train("mlp", output=folder, **FAST)
    assert _files(folder) == before


def test_output_that_is_a_file_is_one_line(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me\n")
    line = _one_line_error(_cli("train", "mlp", *CLI_FAST, "-o", str(target)))
    assert "not a folder" in line and target.read_text() == "keep me\n"


# --- who writes it ---------------------------------------------------------------------------------------------------

def test_a_second_run_on_the_same_folder_is_refused_naming_the_first(tmp_path):
    folder = tmp_path / "run"
    command = [sys.executable, "-m", "archviz.cli", "train", "mlp", "--epochs", "5000", "--batch-size", "64",
               "--threads", "1", "-o", str(folder)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (folder / "last.pt").is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (folder / "last.pt").is_file() and first.poll() is None, first.stderr.read()
        for extra in ([], ["--resume"]):
            line = _one_line_error(_cli("train", "mlp", "--threads", "1", "-o", str(folder), *extra))
            assert f"in use by another run (pid {first.pid}" in line and "train mlp" in line
    finally:
        first.kill()
        first.wait()


# --- what a killed writer leaves -------------------------------------------------------------------------------------

WRITER = """
import os, sys, time
os.fsync = lambda fd: time.sleep(600)  # stops write_atomic after the temporary is written, before its rename
from archviz.output import write_atomic
write_atomic(sys.argv[1], "half")
"""


def _blocked_writer(target: Path) -> tuple[subprocess.Popen, Path]:
    """A process stopped inside write_atomic(target), and its temporary file."""
    before = set(target.parent.glob(f".{target.name}.*.tmp"))
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)])
    deadline = time.monotonic() + 60
    while not set(target.parent.glob(f".{target.name}.*.tmp")) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    new = set(target.parent.glob(f".{target.name}.*.tmp")) - before
    assert len(new) == 1, new
    return process, new.pop()


def test_the_next_write_removes_the_temporary_of_a_writer_killed_mid_write(tmp_path):
    target = tmp_path / "last.pt"
    killed, stale = _blocked_writer(target)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    running, live = _blocked_writer(target)
    try:
        write_atomic(target, "whole")
        assert target.read_text() == "whole"
        assert not stale.exists()  # its writer is gone
        assert live.exists()  # its writer may still rename it
    finally:
        running.kill()
        running.wait()


# --- tampered checkpoints --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run of archviz train stopped in epoch 1 after batch 3 (settings: 2 epochs of 20 batches)."""
    return _interrupted(tmp_path_factory.mktemp("runs") / "cut")


def _tampered(source: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(source, folder)
    state = torch.load(folder / "last.pt", weights_only=True)
    change(state)
    torch.save(state, folder / "last.pt")
    return folder


def _first_weight(state: dict) -> None:
    state["model"][next(iter(state["model"]))] = torch.zeros(3, 3)


def _one_parameter(state: dict) -> None:
    """The optimiser's state of the first parameter alone, as if the model had one."""
    optimizer = state["optimizer"]
    optimizer["param_groups"][0]["params"] = [0]
    optimizer["state"] = {0: optimizer["state"][0]}


def _set(path: str, value):
    def change(state):
        *parents, last = path.split(".")
        for key in parents:
            state = state[key]
        state[last] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_first_weight, r"model\.\S+ has shape \(3, 3\); expected \(\d+, \d+\)"),
    (lambda state: state.pop("optimizer"), r"optimizer is missing"),
    (_set("rng", {"bogus": 1}), r"rng\.torch is missing"),
    (_set("position.epoch", -7), r"position\.epoch is -7; expected 0\.\.2"),
    (_set("settings.epochs", 10**9), r"settings\.epochs is 1000000000; expected 1\.\.100000"),
    (_set("rng.numpy.keys", torch.zeros(3, dtype=torch.int64)), r"rng\.numpy\.keys has shape \(3,\); expected"),
    (_one_parameter, r"optimizer\.param_groups\[0\]\.params has 1 entries; expected \d+"),
], ids=["weight-shape", "no-optimizer", "bogus-rng", "epoch-minus-7", "epochs-10e9", "numpy-keys", "param-count"])
def test_resume_refuses_a_tampered_checkpoint_naming_the_field(interrupted, tmp_path, change, message):
    folder = _tampered(interrupted, tmp_path, change)
    before = _files(folder)
    with pytest.raises(ArchvizError, match=r"run/last\.pt: " + message):
        train("mlp", output=folder, resume=True, **RESUME)
    assert _files(folder) == before


def test_pretrain_resume_refuses_a_memory_bank_of_another_size(tmp_path):
    cut = _interrupted(tmp_path / "cut", run=pretrain, model="lenet", task="instdisc")
    folder = _tampered(cut, tmp_path, _set("pretext.memory_bank.features", torch.zeros(5, 128)))
    with pytest.raises(ArchvizError, match=r"run/last\.pt: pretext\.memory_bank\.features has shape \(5, 128\)"):
        pretrain("lenet", task="instdisc", output=folder, resume=True, **RESUME)


def test_pretrain_resume_refuses_clusters_of_another_size(tmp_path):
    cut = _interrupted(tmp_path / "cut", run=pretrain, model="lenet", task="deepcluster")
    folder = _tampered(cut, tmp_path, lambda state: state["pretext"].update(
        pseudo_labels=state["pretext"]["pseudo_labels"][:10]))
    with pytest.raises(ArchvizError, match=r"run/last\.pt: pretext\.pseudo_labels has shape \(10,\)"):
        pretrain("lenet", task="deepcluster", output=folder, resume=True, **RESUME)


# --- paths that cannot be written as text ----------------------------------------------------------------------------

def test_cli_refuses_an_output_folder_whose_name_is_not_utf8_before_training(tmp_path):
    folder = os.fsencode(tmp_path) + b"/run-\xff"
    command = [sys.executable, "-m", "archviz.cli", "train", "mlp", *CLI_FAST, "-o", folder]
    done = subprocess.run(command, capture_output=True, timeout=300)
    assert done.returncode == 2 and b"Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(b"archviz: error: ") and b"UTF-8" in done.stderr
    assert not os.path.exists(folder)


def test_a_dataset_path_that_is_not_utf8_is_refused_before_training(tmp_path):
    data = write_mnist(Path(os.fsdecode(os.fsencode(tmp_path) + b"/mnist-\xff")))
    with pytest.raises(ArchvizError, match="UTF-8"):
        train("mlp", dataset=f"mnist:{data}", output=tmp_path / "run", epochs=1, threads=1, progress=False)
    assert not (tmp_path / "run").exists()
