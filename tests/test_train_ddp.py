"""`archviz train` data-parallel: two gloo processes on the CPU, on the bundled digits.

The processes run a small driver (written to tmp_path) that records every file its rank writes (archviz writes
through write_atomic, which ends in os.replace) and then runs what is asked: the CLI under torchrun, or a training
run whose rank 1 raises. Checked: the run completes and its loss falls, only rank 0 writes and prints, the
checkpoint loads weights-only into the model, a run stopped mid-epoch and resumed ends with the same weights as one
that was not, and a failing rank stops the other within seconds (well inside the collective timeout).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")

ARGS = ["lenet", "--dataset", "digits", "--epochs", "2", "--batch-size", "32", "--threads", "1"]
DRIVER = """
    import json, os, sys

    written = []
    replace = os.replace


    def logged(source, target, *args, **kwargs):  # write_atomic's last step: the file now exists under its name
        written.append(os.fspath(target))
        return replace(source, target, *args, **kwargs)


    os.replace = logged
    logs = sys.argv[1]
    rank = os.environ["RANK"]
    import atexit

    atexit.register(lambda: open(os.path.join(logs, f"rank{rank}.json"), "w").write(json.dumps(written)))
    mode, args = sys.argv[2], sys.argv[3:]
    if mode == "fail":  # rank 1 raises in its third training batch
        import torch
        import archviz.train.loop as loop

        real, calls = loop.loss_function, []

        def loss(logits, labels):
            if torch.is_grad_enabled() and rank == "1":
                calls.append(1)
                if len(calls) == 3:
                    raise RuntimeError("injected failure on rank 1")
            return real(logits, labels)

        loop.loss_function = loss
    if mode == "resume":  # stopped after batch 5 of epoch 1, then resumed in the same processes
        from archviz.train import TrainingInterrupted, train

        options = dict(dataset="digits", epochs=2, batch_size=32, threads=1, progress=False)
        try:
            train("lenet", output=args[0], stop=lambda epoch, batch: (epoch, batch) == (1, 5), **options)
        except TrainingInterrupted:
            pass
        train("lenet", output=args[0], resume=True, **options)
    else:
        from archviz.cli import app

        app(["train", *args], prog_name="archviz")
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "driver.py"
    path.write_text(textwrap.dedent(DRIVER))
    return path


def _written(logs: Path) -> dict[int, list[str]]:
    return {rank: json.loads((logs / f"rank{rank}.json").read_text()) for rank in (0, 1)}


def _environment() -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")])
    return env


def _torchrun(driver: Path, logs: Path, mode: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(driver), str(logs), mode, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=_environment())


@pytest.fixture(scope="module")
def whole_run(driver, tmp_path_factory):
    """The CLI under torchrun, 2 epochs uninterrupted: (its output, its folder, the files each rank wrote)."""
    logs = tmp_path_factory.mktemp("logs")
    out = tmp_path_factory.mktemp("whole") / "run"
    done = _torchrun(driver, logs, "cli", *ARGS, "-o", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return done, out, _written(logs)


def test_two_gloo_processes_train_and_only_rank_0_writes(whole_run):
    done, out, written = whole_run
    history = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"] and history[1]["val_loss"] < history[0]["val_loss"]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["final"]["test_accuracy"] > 0.5  # chance is 0.1
    assert record["runtime"]["world_size"] == 2 and record["runtime"]["backend"] == "gloo"
    assert written[1] == []  # rank 1 wrote nothing
    assert {Path(p).name for p in written[0]} == {"metrics.csv", "metrics.json", "report.txt", "report.json",
                                                  "confusion.csv", "best.pt", "last.pt", "run.json"}
    assert done.stdout.count("test accuracy") == 1 and done.stdout.count("epoch 2/2") == 1  # rank 0 alone prints
    assert "data-parallel: 2 processes (gloo), each training on a share of 630 images" in done.stdout  # 1,259 / 2

    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert state["runtime"]["world_size"] == 2 and len(state["ranks"]) == 2
    assert not torch.equal(state["ranks"][0]["augment_generator"], state["ranks"][1]["augment_generator"])
    import archviz
    from archviz.torch_build import to_torch

    net = to_torch(archviz.load("lenet"))
    net.load_state_dict(state["model"])  # strict: the keys are the model's, not DDP's "module." ones


def test_resume_under_two_processes_is_exact(driver, whole_run, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    cut = _torchrun(driver, logs, "resume", str(tmp_path / "cut"))
    assert cut.returncode == 0, cut.stderr[-3000:]
    assert _written(logs)[1] == []
    a = torch.load(whole_run[1] / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [row["val_loss"] for row in a["position"]["history"]] == [row["val_loss"] for row in
                                                                      b["position"]["history"]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_failing_rank_stops_the_other(driver, tmp_path):
    """Started without torchrun (which would also stop the survivor): our own handling ends rank 0."""
    logs = tmp_path / "logs"
    logs.mkdir()
    port = str(_free_port())
    started = time.monotonic()
    processes = []
    for rank in (0, 1):
        env = {**_environment(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
               "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"}
        processes.append(subprocess.Popen(
            [sys.executable, str(driver), str(logs), "fail", *ARGS, "-o", str(tmp_path / "run")], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    ended = {}  # rank -> when it exited (their output is a few lines: the pipes cannot fill up)
    while len(ended) < 2 and time.monotonic() - started < 240:
        for rank, process in enumerate(processes):
            if rank not in ended and process.poll() is not None:
                ended[rank] = time.monotonic()
        time.sleep(0.05)
    outputs = [process.communicate(timeout=10) for process in processes]
    assert processes[1].returncode == 1 and "injected failure on rank 1" in outputs[1][1]
    assert processes[0].returncode == 2, outputs[0][1][-3000:]
    assert "rank 0 of 2: another process of the run failed or stopped (Connection closed by peer" in outputs[0][1]
    from archviz.train.distributed import COLLECTIVE_TIMEOUT_SECONDS

    waited = ended[0] - ended[1]
    assert waited < min(30, COLLECTIVE_TIMEOUT_SECONDS)  # the survivor stopped at once, not at the timeout
    assert not (tmp_path / "run" / "last.pt").exists()  # it failed in epoch 1, before any checkpoint
