"""The default thread count and OpenMP's wait policy (issue 20 §3): the cores free, said in the run header, kept on
resume; OMP_WAIT_POLICY=PASSIVE set before torch loads unless the user set it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.train import threads
from archviz.train.loop import train
from archviz.train.run import TrainingInterrupted

torch = pytest.importorskip("torch")
TINY = dict(dataset="digits", batch_size=64, progress=False)


@pytest.mark.parametrize("cores, load, share, expected", [
    (2, 6.5, 1, 1), (2, 0.0, 1, 2), (2, 0.6, 1, 1), (4, 0.3, 1, 4), (8, 2.4, 2, 3), (1, 0.0, 4, 1)])
def test_the_default_is_the_cores_free(monkeypatch, cores, load, share, expected):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "load_average", lambda: load)
    choice = threads.choose_threads(share=share)
    assert choice.threads == expected
    if share == 1:
        assert choice.describe() == f"chosen from {cores} core{'s' * (cores > 1)} at load {load:.1f}: {expected} free"


def _policy(env: dict) -> str:
    code = ("from archviz.train.threads import passive_openmp; passive_openmp(); import os; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_openmp_waits_passively_unless_the_user_says_otherwise():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _policy(env) == "PASSIVE"
    assert _policy({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


def test_the_header_says_the_choice(monkeypatch, tmp_path):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "load_average", lambda: 6.5)
    result = CliRunner().invoke(app, ["train", "mlp", "--epochs", "1", "--batch-size", "64", "-o",
                                      str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "device: cpu, 1 CPU thread (chosen from 2 cores at load 6.5: 1 free)" in result.output
    assert json.loads((tmp_path / "r" / "run.json").read_text())["runtime"]["threads"] == 1


def test_a_resumed_run_keeps_its_thread_count(monkeypatch, tmp_path):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "load_average", lambda: 0.0)
    with pytest.raises(TrainingInterrupted):
        train("mlp", output=tmp_path / "r", epochs=2, stop=lambda epoch, batch: (epoch, batch) == (1, 3), **TINY)
    monkeypatch.setattr(threads, "load_average", lambda: 5.0)  # the default would now be 1
    train("mlp", output=tmp_path / "r", resume=True, **TINY)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["runtime"]["threads"] == 2
