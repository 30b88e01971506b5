"""`archviz train` on the CPU with tiny data: a real run whose loss falls, the run folder and its checkpoints,
exact resume, Ctrl-C in a subprocess, the NaN stop, the model fitted to the data, and the per-class report against
scikit-learn's."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.errors import ArchvizError, ShapeError
from archviz.train.loop import lr_factor, train
from archviz.train.metrics import class_report
from archviz.train.model import fit_model
from archviz.train.run import TrainingDiverged, TrainingInterrupted
from archviz.train.settings import Schedule
from test_train_data import write_cifar, write_folder, write_mnist

torch = pytest.importorskip("torch")

FAST = dict(epochs=3, batch_size=16, threads=1, progress=False)  # 180 training images: 12 batches an epoch
SMALL = """
    name: small
    input: [3, 16, 16]
    params: {num_classes: 5}
    layers:
      - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
        name: conv1
      - relu
      - maxpool2d: {kernel_size: 2}
      - flatten
      - linear: {out_features: $num_classes}
        name: fc
"""

DROPNET = """
    name: dropnet
    input: [1, 28, 28]
    params: {num_classes: 10}
    layers:
      - conv2d: {out_channels: 6, kernel_size: 5, stride: 2}
      - batchnorm2d
      - relu
      - flatten
      - dropout: {p: 0.3}
      - linear: {out_features: $num_classes}
"""  # dropout draws from torch's global RNG, batch norm keeps running statistics: both must resume exactly


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("data") / "mnist")


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# --- a real run ------------------------------------------------------------------------------------------------

def test_run_learns_and_writes_its_folder(mnist, tmp_path):
    result = train("lenet", dataset=f"mnist:{mnist}", output=tmp_path / "run", **FAST)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0] / 2, losses
    assert result.test_accuracy > 0.5 and result.report.support == 50  # chance is 0.1
    folder = tmp_path / "run"
    names = {p.name for p in folder.iterdir()}
    assert names == {"metrics.csv", "metrics.json", "report.txt", "report.json", "confusion.csv", "best.pt",
                     "last.pt", "run.json"}
    with (folder / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and float(rows[0]["val_accuracy"]) <= 1
    assert json.loads((folder / "metrics.json").read_text()) == list(result.history)
    assert "precision    recall  f1-score   support" in (folder / "report.txt").read_text()
    confusion = list(csv.reader((folder / "confusion.csv").open()))
    assert confusion[0][0] == "true\\predicted" and sum(int(v) for row in confusion[1:] for v in row[1:]) == 50
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "finished" and record["runtime"]["threads"] == 1
    assert record["final"]["test_accuracy"] == result.test_accuracy
    assert record["dataset"]["input_steps"] == ["resized 28x28 -> 32x32 (bilinear)"]
    assert not list(folder.glob(".*.tmp"))  # write_atomic leaves no temporary file behind


def test_checkpoints_load_weights_only_and_record_the_run(mnist, tmp_path):
    train("lenet", dataset=f"mnist:{mnist}", output=tmp_path / "run", **{**FAST, "epochs": 1})
    state = load(tmp_path / "run" / "last.pt")
    assert set(state["model"]) >= {"conv1.weight", "fc3.bias"}
    assert state["source"]["model"] == "lenet" and "conv2d" in state["source"]["spec_text"]
    assert state["settings"]["optimizer"] == "adamw" and state["settings"]["seed"] == 0
    assert state["dataset"]["name"] == f"mnist:{mnist}" and state["dataset"]["sizes"]["train"] == 180
    assert state["runtime"]["threads"] == 1
    assert {"python", "torch", "numpy", "archviz"} <= set(state["versions"])
    assert {"torch", "numpy", "python"} <= set(state["rng"]) and state["optimizer"]["state"]
    assert state["scheduler"]["last_epoch"] == 12 and state["position"]["epoch"] == 1
    assert isinstance(state["order_generator"], torch.Tensor)
    best = load(tmp_path / "run" / "best.pt")
    assert all(torch.equal(best["model"][k], v) for k, v in state["model"].items())


@pytest.mark.parametrize("dataset, model, adapt, expected", [
    ("cifar10", "lenet", "input", ["channels 3 -> 1 (luma: 0.299 R + 0.587 G + 0.114 B)"]),
    ("folder", "SMALL", "model", ["num_classes 5 -> 3 (the dataset's classes)",
                                   "model input 3x16x16 -> 3x16x20 (the images' own shape)"]),
    ("mnist", "basic_cnn", "input", ["head added: flatten 64x3x3 -> linear to 10 classes (head_flatten, head_fc); "
                                     "the spec ends without a 10-way classifier"]),
])
def test_each_format_trains(tmp_path, write_spec, dataset, model, adapt, expected):
    folder = {"cifar10": write_cifar, "folder": write_folder, "mnist": write_mnist}[dataset](tmp_path / dataset)
    source = write_spec(SMALL) if model == "SMALL" else model
    result = train(source, dataset=f"{dataset}:{folder}", adapt=adapt, output=tmp_path / "run",
                   **{**FAST, "epochs": 1})
    assert [c for c in result.changes if "resized" not in c] == expected
    assert math.isfinite(result.history[0]["train_loss"])


# --- exact resume ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stop_at", [(2, 5), (1, 12)], ids=["mid-epoch", "before-validation"])
def test_resume_ends_with_the_same_weights(mnist, tmp_path, write_spec, stop_at):
    net = write_spec(DROPNET)
    options = dict(dataset=f"mnist:{mnist}", **FAST)
    whole = train(net, output=tmp_path / "whole", **options)
    with pytest.raises(TrainingInterrupted, match=f"interrupted in epoch {stop_at[0]} after batch {stop_at[1]} of 12"):
        train(net, output=tmp_path / "cut", stop=lambda epoch, batch: (epoch, batch) == stop_at, **options)
    saved = load(tmp_path / "cut" / "last.pt")
    assert (saved["position"]["epoch"], saved["position"]["batch"]) == (stop_at[0] - 1, stop_at[1])
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["status"] == "interrupted"
    resumed = train(net, output=tmp_path / "cut", resume=True, **options)
    a, b = load(tmp_path / "whole" / "last.pt"), load(tmp_path / "cut" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)
    assert _same_but_time(resumed.history, whole.history)
    assert resumed.test_accuracy == whole.test_accuracy


def _same_but_time(first, second) -> bool:
    drop = ("seconds", "images_per_second")
    return [{k: v for k, v in row.items() if k not in drop} for row in first] == \
           [{k: v for k, v in row.items() if k not in drop} for row in second]


def test_resume_keeps_the_runs_settings(mnist, tmp_path):
    with pytest.raises(TrainingInterrupted):
        train("lenet", dataset=f"mnist:{mnist}", output=tmp_path / "r", stop=lambda e, b: True, **FAST)
    with pytest.raises(ArchvizError, match=r"continues .* with its own settings; leave out: --lr 0.1 \(the run has "
                                           r"0.003\)"):
        train("lenet", dataset=f"mnist:{mnist}", output=tmp_path / "r", resume=True, lr=0.1, progress=False)
    with pytest.raises(ArchvizError, match=r"is a run of 'lenet', not 'mlp'"):
        train("mlp", dataset=f"mnist:{mnist}", output=tmp_path / "r", resume=True, progress=False)
    with pytest.raises(ArchvizError, match=r"already holds a run \(last.pt\); add --resume"):
        train("lenet", dataset=f"mnist:{mnist}", output=tmp_path / "r", progress=False)


def test_resume_without_a_checkpoint(tmp_path):
    with pytest.raises(ArchvizError, match=r"no checkpoint .*last.pt to resume from"):
        train("lenet", output=tmp_path / "none", resume=True, progress=False)


# --- stopping --------------------------------------------------------------------------------------------------

def test_ctrl_c_saves_a_checkpoint_and_exits_130(mnist, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "archviz.cli", "train", "lenet", "--dataset", f"mnist:{mnist}", "--epochs",
               "500", "--batch-size", "8", "--threads", "1", "-o", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("epoch   1/500") or not line:
            break
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=60)
    assert process.returncode == 130, (lines, rest, err)
    assert "Traceback" not in err and "archviz: interrupted " in err and "--resume -o" in err
    assert all(c == "\n" or c.isprintable() for c in "".join(lines) + rest)  # plain lines: no control characters
    state = load(out / "last.pt")
    position = state["position"]
    assert position["epoch"] >= 1 and json.loads((out / "run.json").read_text())["status"] == "interrupted"
    with pytest.raises(TrainingInterrupted):  # it continues from there: one more batch, then stop again
        train("lenet", dataset=f"mnist:{mnist}", output=out, resume=True, threads=1, progress=False,
              stop=lambda epoch, batch: True)
    after = load(out / "last.pt")["position"]
    assert (after["epoch"], after["batch"]) == (position["epoch"], position["batch"] + 1) or \
           (after["epoch"], after["batch"]) == (position["epoch"] + 1, 1)


def _nan_at(monkeypatch, call: int):
    import archviz.train.loop as loop

    real = loop.loss_function
    calls = []

    def loss(logits, labels):
        value = real(logits, labels)
        if torch.is_grad_enabled():  # training batches only
            calls.append(1)
            if len(calls) == call:
                return value * float("nan")
        return value

    monkeypatch.setattr(loop, "loss_function", loss)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(mnist, tmp_path, monkeypatch):
    _nan_at(monkeypatch, 12 + 3)
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at epoch 2, batch 3 of 12 \(lr .*\); training "
                                               r"stopped and last.pt keeps epoch 1, the last good one"):
        train("lenet", dataset=f"mnist:{mnist}", output=tmp_path / "run", **FAST)
    assert load(tmp_path / "run" / "last.pt")["position"]["epoch"] == 1
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "diverged"


def test_nan_loss_in_the_cli_is_status_2(mnist, tmp_path, monkeypatch):
    _nan_at(monkeypatch, 2)
    result = CliRunner().invoke(app, ["train", "lenet", "--dataset", f"mnist:{mnist}", "--threads", "1",
                                      "-o", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "archviz: error: the loss became nan at epoch 1, batch 2" in result.output
    assert "no epoch completed, so there is no checkpoint" in result.output


def test_cli_run_prints_plain_lines_and_the_report(mnist, tmp_path):
    result = CliRunner().invoke(app, ["train", "lenet", "--dataset", "mnist", "--data", str(mnist), "--epochs", "2",
                                      "--batch-size", "16", "--threads", "1", "--augment", "none", "-o",
                                      str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\r" not in result.output
    assert "epoch 1/2  train loss" in result.output and "no augmentation" in result.output
    assert "test accuracy" in result.output and "weighted avg" in result.output


@pytest.mark.parametrize("option, message", [
    (["--lr", "0"], "--lr 0.0: a positive number"),
    (["--weight-decay", "-1"], "--weight-decay -1.0: 0 or more"),
    (["--device", "cuda"], "--device cuda: torch sees no CUDA device"),
])
def test_cli_bad_settings(option, message, tmp_path):
    if option[-1] == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(app, ["train", "lenet", *option, "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and message in result.output, result.output


# --- the model fitted to the data ------------------------------------------------------------------------------

def test_final_softmax_is_left_out():
    fitted = fit_model("lenet_keras", classes=10, image_shape=(1, 8, 8), adapt="input")
    assert fitted.graph.output == "dense_3" and "final softmax 'dense_3_softmax' left out" in fitted.changes[0]


def test_adapt_model_that_cannot_take_the_images():
    with pytest.raises(ShapeError, match=r"--adapt model: lenet cannot take the dataset's 1x8x8 images: .*--adapt "
                                         r"input resizes"):
        fit_model("lenet", classes=10, image_shape=(1, 8, 8), adapt="model")


def test_head_counts_in_the_analysis():
    import archviz

    fitted = fit_model("basic_cnn", classes=3, image_shape=(1, 28, 28), adapt="input")
    assert archviz.inspect(fitted.graph).totals.params == 55_744 + (576 + 1) * 3


# --- figures ---------------------------------------------------------------------------------------------------

def test_class_report_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.RandomState(0)
    true = rng.randint(0, 4, 200)
    predicted = np.where(rng.rand(200) < 0.7, true, rng.randint(0, 4, 200))
    predicted[predicted == 3] = 2  # a class never predicted: precision 0 by zero_division=0
    names = ["cat", "dog", "panda", "zebra"]
    report = class_report(true, predicted, names)
    assert report.text() == metrics.classification_report(true, predicted, labels=range(4), target_names=names,
                                                           zero_division=0)
    assert report.text(digits=4) == metrics.classification_report(true, predicted, labels=range(4),
                                                                   target_names=names, zero_division=0, digits=4)
    assert np.array_equal(np.array(report.confusion), metrics.confusion_matrix(true, predicted, labels=range(4)))


def test_cosine_schedule():
    steps, epochs = 10, 4
    factors = [lr_factor(s, schedule=Schedule.COSINE, steps_per_epoch=steps, epochs=epochs) for s in range(40)]
    assert factors[:10] == [(s + 1) / 10 for s in range(10)]  # warm-up over the first epoch
    assert factors[10] == 1.0 and factors[25] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert lr_factor(25, schedule=Schedule.STEP, steps_per_epoch=steps, epochs=epochs) == pytest.approx(0.1)
    assert lr_factor(35, schedule=Schedule.STEP, steps_per_epoch=steps, epochs=epochs) == pytest.approx(0.01)
    assert lr_factor(35, schedule=Schedule.NONE, steps_per_epoch=steps, epochs=epochs) == 1.0


# --- compare and sweep -----------------------------------------------------------------------------------------

def test_compare_two_models_on_digits(tmp_path):
    from archviz.train.compare import compare

    rows = compare(["mlp", "lenet"], dataset="digits", output=tmp_path / "c", announce=lambda text: None,
                   **{**FAST, "epochs": 1, "batch_size": 64})
    assert [row.run for row in rows] == ["mlp", "lenet"]
    assert [row.params for row in rows] == [338_610, 61_706]
    assert rows[1].macs == 416_520 and all(row.test_accuracy > 0.3 for row in rows)  # lenet's MACs at 1x32x32
    assert [r["run"] for r in json.loads((tmp_path / "c" / "compare.json").read_text())] == ["mlp", "lenet"]
    assert (tmp_path / "c" / "lenet" / "best.pt").is_file()
    assert all(row.peak_memory_bytes > 0 for row in rows)
    assert json.loads((tmp_path / "c" / "lenet" / "run.json").read_text())["final"]["peak_memory_bytes"] == \
        rows[1].peak_memory_bytes
    pytest.importorskip("plotly")
    page = (tmp_path / "c" / "compare.html").read_text()
    data = json.loads(page.split('<script type="application/json" id="archviz-data">')[1].split("</script>")[0])
    assert [m["name"] for m in data["models"]] == ["mlp", "lenet"]
    assert data["models"][1]["macs"] == 416_520 and data["models"][1]["test_accuracy"] == rows[1].test_accuracy
    assert [h["val_accuracy"] for h in data["models"][0]["history"]] == [rows[0].best_val_accuracy]
    for row in rows:  # the results table and each per-class report, as text
        assert f"<td>{row.run}</td>" in page and f"<h3>{row.run}</h3>" in page
        assert f'<td class="num">{row.params:,}</td>' in page
    report = json.loads((tmp_path / "c" / "lenet" / "report.json").read_text())
    assert f'<td class="num">{report["classes"]["7"]["precision"]:.3f}</td>' in page
    for chart in ("chart-accuracy-macs", "chart-accuracy-params", "chart-val-accuracy", "chart-loss"):
        assert f'id="{chart}"' in page
    assert "Plotly" in page and "<script src" not in page  # plotly inline: the page works offline
    architectures = (tmp_path / "c" / "compare-architectures.html").read_text()
    assert 'href="compare.html"' in architectures and 'href="compare-architectures.html"' in page


def test_compare_page_escapes_every_name():
    from dataclasses import replace

    from archviz.render.html.compare_runs import training_comparison_html
    from archviz.train.compare import Row
    from archviz.train.run import RunResult
    from archviz.train.settings import Settings

    hostile = "<script>alert(1)</script>"
    report = class_report([0, 1, 1], [0, 1, 0], [hostile, "a&b"])
    history = ({"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 0.9, "val_accuracy": 0.6, "lr": 0.1,
                "seconds": 1.0, "images_per_second": 10.0},)
    result = RunResult(folder="runs/x", model=hostile, dataset="folder:<img src=x onerror=alert(2)>",
                       settings=Settings(), params=1, changes=(), history=history, best_epoch=1,
                       best_val_accuracy=0.6, test_split="test", test_accuracy=0.5, last_test_accuracy=0.5,
                       report=report, train_seconds=1.0, images_per_second=10.0, graph=None)
    row = Row(hostile, 1, 2, 1, 0.6, 0.9, 0.5, 0.5, 1.0, 10.0, 1024, "runs/<x>", {})
    page = training_comparison_html([row, replace(row, run="b")], [result, result])
    assert hostile not in page and "<img" not in page and "runs/<x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a&amp;b" in page
    assert "\\u003cscript\\u003ealert(1)" in page  # in the JSON the script reads


def test_time_budget_ends_the_run_early(tmp_path):
    result = train("mlp", dataset="digits", output=tmp_path / "r", time_budget=0, **{**FAST, "batch_size": 64})
    assert len(result.history) == 1 and "allowed 1 of 3 epochs" in result.stopped_early
    assert json.loads((tmp_path / "r" / "run.json").read_text())["stopped_early"] == result.stopped_early


def test_sweep_sorts_and_names_the_best_command(tmp_path):
    from archviz.train.compare import parse_list, sweep, train_command
    from archviz.train.options import TrainOptions

    rows = sweep("mlp", dataset="digits", lrs=parse_list("1e-3,1e-2", float, "--lr"), batch_sizes=[64],
                 output=tmp_path / "s", announce=lambda text: None, epochs=1, threads=1, progress=False)
    assert [row.best_val_loss for row in rows] == sorted(row.best_val_loss for row in rows)
    command = train_command("mlp", rows[0], TrainOptions(epochs=1, threads=1))
    assert command == (f"archviz train mlp --dataset digits --epochs 1 --batch-size 64 --lr {rows[0].options['lr']:g} "
                       "--threads 1")
    assert {p.name for p in (tmp_path / "s").iterdir()} == {"lr0.001-batch64", "lr0.01-batch64", "sweep.csv",
                                                             "sweep.json"}


def test_train_compare_and_sweep_take_the_same_options():
    """One declaration (cli.TRAIN_OPTIONS) gives the three commands the same options: same flags, types, defaults
    and help; sweep declares --lr and --batch-size itself, as comma-separated grids."""
    import inspect

    from archviz import cli

    def options(command):
        return {name: (p.annotation, p.default) for name, p in inspect.signature(command).parameters.items()}

    train_, compare_, sweep_ = options(cli.train), options(cli.compare), options(cli.sweep)
    shared = {name: train_[name] for name in cli.TRAIN_OPTIONS}
    assert shared == {name: compare_[name] for name in cli.TRAIN_OPTIONS}
    assert {k: v for k, v in shared.items() if k not in ("lr", "batch_size")} == \
        {name: sweep_[name] for name in cli.TRAIN_OPTIONS if name not in ("lr", "batch_size")}
    assert {"lr", "batch_size"} <= set(sweep_) and set(train_) - set(shared) == {"model", "output", "resume",
                                                                               "overwrite"}


def test_sweep_cli_prints_every_option_in_the_best_command(tmp_path):
    from typer.testing import CliRunner

    from archviz.cli import app

    result = CliRunner().invoke(app, ["sweep", "mlp", "--lr", "1e-2", "--batch-size", "64", "--epochs", "1",
                                      "--threads", "1", "--augment", "none", "--weight-decay", "0.01", "-o",
                                      str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == ("best: archviz train mlp --dataset digits --epochs 1 --batch-size 64 "
                                              "--lr 0.01 --weight-decay 0.01 --augment none --threads 1")


def test_sweep_bad_list():
    from archviz.train.compare import parse_list

    with pytest.raises(ArchvizError, match=r"--batch-size '32,x': 'x' is not an integer"):
        parse_list("32,x", int, "--batch-size")


GRAY_NET = '''
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))
'''


def test_a_model_of_your_own_code_trains_and_records_its_traced_spec(mnist, tmp_path):
    """`train FILE.py:Name`: traced like `inspect` does, built from the graph, recorded as the spec it traces to."""
    code = tmp_path / "gray_net.py"
    code.write_text(GRAY_NET)
    train(f"{code}:Net", dataset=f"mnist:{mnist}", adapt="model", output=tmp_path / "run", **{**FAST, "epochs": 1})
    import torch

    assert json.loads((tmp_path / "run" / "run.json").read_text())["source"]["kind"] == "code"

    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["source"]["kind"] == "code"
    assert "conv2d: {out_channels: 4" in state["source"]["spec_text"]
