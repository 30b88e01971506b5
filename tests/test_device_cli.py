"""`inspect --device` (a roofline time per layer and for the model) and `archviz calibrate`, through the CLI."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from archviz import inspect
from archviz.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_a_datasheet_device_times_every_layer_and_the_model():
    result = run("inspect", "resnet18", "--device", "a100", "--no-crosscheck")
    assert result.exit_code == 0, result.output
    assert "Time (a100)" in result.output and "Forward time on a100 (predicted)" in result.output


def test_the_json_holds_each_layers_time_and_their_sum():
    data = json.loads(run("inspect", "resnet18", "--device", "h100", "--format", "json", "--no-crosscheck").output)
    latency = data["latency"]
    assert latency["device"] == "h100" and latency["not_predicted"] == []
    assert math.isclose(sum(layer["predicted_seconds"] for layer in data["layers"]), latency["seconds"])
    assert math.isclose(latency["images_per_second"], 1 / latency["seconds"])


def test_without_a_device_nothing_is_predicted():
    data = json.loads(run("inspect", "lenet", "--format", "json", "--no-crosscheck").output)
    assert data["latency"] is None and "predicted_seconds" not in data["layers"][0]


def test_an_unknown_device_is_one_line_and_status_2():
    result = run("inspect", "lenet", "--device", "h1000", "--no-crosscheck")
    assert result.exit_code == 2
    assert "unknown device 'h1000'" in result.output and "h100" in result.output and "cpu" in result.output


def test_a_layer_without_a_formula_is_not_given_a_time():
    report = inspect("lenet", device="t4")
    assert report.latency.not_predicted == ()
    assert report.latency.seconds == pytest.approx(sum(layer.seconds for layer in report.latency.layers))


def test_calibrate_prints_the_measured_cpu(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("ARCHVIZ_CACHE_DIR", str(tmp_path))
    import archviz.profile.calibrate as calibrate

    real = calibrate.calibrate
    monkeypatch.setattr(calibrate, "calibrate", lambda seconds=3.0: real(seconds=0.3))  # a short measurement
    result = run("calibrate")
    assert result.exit_code == 0, result.output
    assert "Peak fp32" in result.output and "Memory bandwidth" in result.output
    assert (tmp_path / "cpu-calibration.json").exists()
