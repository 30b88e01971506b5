"""The options of issue 20 §2 on tiny runs (the mlp on the bundled digits, one thread): early stopping, label
smoothing, gradient clipping, the validation share, several seeds (mean ± std) and compare's ranking within noise;
a run.json or checkpoint from before these settings still reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.train import run_folder
from archviz.train.compare import Row, noise_note, ranking, within_noise
from archviz.train.loop import train

torch = pytest.importorskip("torch")
runner = CliRunner()
TINY = dict(dataset="digits", batch_size=64, threads=1, progress=False)


def test_patience_stops_at_the_epochs_without_a_lower_validation_loss(tmp_path, monkeypatch):
    import archviz.train.loop as loop

    real, losses = loop.evaluate, iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9])  # epoch 2 is the lowest

    def evaluate(setup, split, **kwargs):
        loss, accuracy, predicted = real(setup, split, **kwargs)
        return (next(losses), accuracy, predicted) if split == "val" else (loss, accuracy, predicted)

    monkeypatch.setattr(loop, "evaluate", evaluate)
    result = train("mlp", output=tmp_path / "r", epochs=6, patience=2, **TINY)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4] and result.best_epoch == 2
    assert result.stopped_early.startswith("no lower validation loss in the 2 epochs after epoch 2")
    assert json.loads((tmp_path / "r" / "run.json").read_text())["stopped_early"] == result.stopped_early
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=True)
    assert best["position"]["epoch"] == 2 and best["settings"]["patience"] == 2


def test_label_smoothing_and_clipping_reach_the_step(tmp_path, monkeypatch):
    import archviz.train.loop as loop

    smoothing, norms = [], []
    real_loss, real_clip = loop.loss_function, torch.nn.utils.clip_grad_norm_

    def loss(logits, labels, **kwargs):
        if torch.is_grad_enabled():
            smoothing.append(kwargs.get("label_smoothing", 0.0))
        return real_loss(logits, labels, **kwargs)

    def clip(parameters, max_norm, **kwargs):
        norms.append(max_norm)
        return real_clip(parameters, max_norm, **kwargs)

    monkeypatch.setattr(loop, "loss_function", loss)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    result = train("mlp", output=tmp_path / "r", epochs=1, label_smoothing=0.1, clip_grad=0.5, **TINY)
    batches = 1259 // 64 + 1
    assert smoothing == [0.1] * batches and norms == [0.5] * batches
    settings = json.loads((tmp_path / "r" / "run.json").read_text())["settings"]
    assert settings["label_smoothing"] == 0.1 and settings["clip_grad"] == 0.5 and result.settings.clip_grad == 0.5


def test_val_fraction_sets_the_split(tmp_path):
    train("mlp", output=tmp_path / "r", epochs=1, val_fraction=0.2, **TINY)
    dataset = json.loads((tmp_path / "r" / "run.json").read_text())["dataset"]
    assert dataset["sizes"] == {"train": 1079, "val": 359, "test": 359}  # 60/20/20 of 1797
    assert dataset["notes"][0].startswith("split 60/20/20 into train/val/test")


@pytest.mark.parametrize("option, value, message", [
    ("--patience", "0", "--patience: 0 is not in the range 1<=x"),
    ("--val-fraction", "0.9", "--val-fraction 0.9: a number above 0 and at most 0.75"),
    ("--clip-grad", "0", "--clip-grad 0.0: a positive number"),
])
def test_bad_new_options(option, value, message, tmp_path):
    result = runner.invoke(app, ["train", "mlp", option, value, "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_run_from_before_these_settings_still_reads(tmp_path):
    from archviz.train.checkpoint import check_structure

    folder = tmp_path / "r"
    train("mlp", output=folder, epochs=1, **TINY)
    record = json.loads((folder / "run.json").read_text())
    for key in ("patience", "label_smoothing", "clip_grad", "val_fraction"):
        record["settings"].pop(key)
    (folder / "run.json").write_text(json.dumps(record))
    assert run_folder.read_record(folder).settings["epochs"] == 1
    state = torch.load(folder / "last.pt", weights_only=True)
    for key in ("patience", "label_smoothing", "clip_grad", "val_fraction"):
        state["settings"].pop(key)
    check_structure(state, folder / "last.pt")


def test_train_seeds_gives_mean_and_std(tmp_path):
    result = runner.invoke(app, ["train", "mlp", "--epochs", "1", "--batch-size", "64", "--threads", "1",
                                 "--seeds", "2", "--seed", "3", "-o", str(tmp_path / "s")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    accuracies = [json.loads((tmp_path / "s" / f"seed-{seed}" / "run.json").read_text())["final"]["test_accuracy"]
                  for seed in (3, 4)]
    mean = sum(accuracies) / 2
    std = abs(accuracies[0] - accuracies[1]) / 2 ** 0.5  # the sample standard deviation of two
    assert f"{mean * 100:.2f} ± {std * 100:.2f}%" in result.output and "mean of 2" in result.output


def _row(name: str, accuracy: float, *, seeds: int = 1, std: float = 0.0) -> Row:
    return Row(name, 1, 1, 1, 0.9, 0.3, accuracy, accuracy, 1.0, 1.0, 0, "", {}, seeds=seeds,
               stds={"test_accuracy": std}, test_images=359)


def test_ranking_says_when_models_are_within_noise():
    mlp, lenet = _row("mlp", 352 / 359), _row("lenet", 353 / 359)  # one test image apart
    assert within_noise(mlp, lenet) and ranking([mlp, lenet]) == ["1=", "1"]
    far = _row("far", 300 / 359)
    assert not within_noise(far, lenet) and ranking([far, mlp, lenet]) == ["3", "1=", "1"]
    # with seeds, a wide spread keeps two models within noise that one seed's test split alone would tell apart
    a, b = _row("a", 0.95, seeds=3), _row("b", 0.90, seeds=3)
    assert not within_noise(a, b)
    assert within_noise(_row("a", 0.95, seeds=3, std=0.06), _row("b", 0.90, seeds=3, std=0.06))
    assert "within noise" in noise_note([a, b]) and "3 seeds" in noise_note([a, b])


def test_compare_cli_ranks_with_seeds(tmp_path):
    result = runner.invoke(app, ["compare", "mlp", "lenet", "--epochs", "1", "--batch-size",
                                 "64", "--threads", "1", "--seeds", "2", "-o", str(tmp_path / "c"), "--html",
                                 str(tmp_path / "c.html")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "rank" in result.output and "±" in result.output and "within noise" in result.output
    rows = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert [row["seeds"] for row in rows] == [2, 2] and all("test_accuracy" in row["stds"] for row in rows)
    assert {p.name for p in (tmp_path / "c" / "lenet").iterdir()} == {"seed-0", "seed-1"}


def test_sweep_with_seeds_averages_each_point(tmp_path):
    from archviz.train.compare import sweep

    rows = sweep("mlp", lrs=[1e-2], batch_sizes=[64], output=tmp_path / "s", announce=lambda text: None, epochs=1,
                 seeds=2, **{k: v for k, v in TINY.items() if k != "batch_size"})
    assert rows[0].seeds == 2 and Path(rows[0].folder).name == "lr0.01-batch64"
    assert {p.name for p in (tmp_path / "s" / "lr0.01-batch64").iterdir()} == {"seed-0", "seed-1"}
