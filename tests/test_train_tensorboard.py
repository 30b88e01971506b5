"""`archviz train --log tensorboard` (issue 20 §2.5): the event files read back with tensorboard's own reader."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.train.loop import train
from archviz.train.run import TrainingInterrupted

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")
TINY = dict(dataset="digits", batch_size=64, threads=1, progress=False)


def _read(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0})
    return events.Reload()


def test_tensorboard_events_read_back(tmp_path):
    result = train("lenet", output=tmp_path / "r", epochs=2, log="tensorboard", **TINY)
    events = _read(tmp_path / "r")
    tags = events.Tags()
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr", "images_per_second"} <= \
        set(tags["scalars"])
    for key, tag in (("val_loss", "loss/val"), ("lr", "lr"), ("train_accuracy", "accuracy/train")):
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars(tag)] == \
            [(row["epoch"], row[key]) for row in result.history]
    assert "weights/conv1.weight" in tags["histograms"] and len(events.Histograms("weights/fc3.bias")) == 2
    assert tags["graph"] and json.loads((tmp_path / "r" / "run.json").read_text())["runtime"]["log"] == "tensorboard"


def test_a_resumed_run_appends_without_repeating_an_epoch(tmp_path):
    options = dict(output=tmp_path / "r", epochs=2, log="tensorboard", **TINY)
    with pytest.raises(TrainingInterrupted):
        train("mlp", stop=lambda epoch, batch: (epoch, batch) == (2, 3), **options)
    train("mlp", resume=True, **{**options, "epochs": None})
    assert [e.step for e in _read(tmp_path / "r").Scalars("loss/val")] == [1, 2]


def test_csv_stays_the_default(tmp_path):
    result = CliRunner().invoke(app, ["train", "mlp", "--epochs", "1", "--threads", "1", "-o", str(tmp_path / "r")])
    assert result.exit_code == 0 and not (tmp_path / "r" / "tensorboard").exists()
    assert (tmp_path / "r" / "metrics.csv").is_file()
