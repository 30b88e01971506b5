"""The run folder's format (archviz/train/run_folder.py): run.json round-trips through RunRecord with its version,
folders written before the version key still read, and a corrupt or hostile file is refused with one line naming
the file (exit 2 through the CLI), a pickled object in a checkpoint never unpickled.

One tiny run: the mlp on the bundled digits, 1 epoch, one thread.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.errors import ArchvizError
from archviz.train import run_folder
from archviz.train.run_folder import RUN_FORMAT, RunRecord

torch = pytest.importorskip("torch")
runner = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    from archviz.train.loop import train

    folder = tmp_path_factory.mktemp("runs") / "mlp"
    train("mlp", dataset="digits", epochs=1, batch_size=64, threads=1, progress=False, output=folder)
    return folder


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _edit_record(folder: Path, change) -> None:
    record = json.loads((folder / "run.json").read_text())
    change(record)
    (folder / "run.json").write_text(json.dumps(record))


def _one_line(result) -> str:
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("archviz: error: "), result.output
    return lines[0]


def test_run_json_round_trips_with_its_version(finished, tmp_path):
    written = json.loads((finished / "run.json").read_text())
    record = run_folder.read_record(finished)
    assert written["format"] == RUN_FORMAT == record.format and record.finished and record.kind == "train"
    assert record.as_dict() == written and list(record.as_dict()) == list(written)  # the same keys, in order
    run_folder.write_record(tmp_path, record)
    assert run_folder.read_record(tmp_path) == record
    history = run_folder.read_history(finished)
    assert [row["epoch"] for row in history] == [1] and history == tuple(json.loads((finished / "metrics.json")
                                                                                   .read_text()))
    report = run_folder.read_class_report(finished)
    assert report.accuracy == record.final["test_accuracy"] and len(report.confusion) == 10


def test_a_run_json_written_before_the_version_key_still_reads(copy):
    _edit_record(copy, lambda record: record.pop("format"))
    assert run_folder.read_record(copy).format == RUN_FORMAT


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(format="archviz-run/9"), "format is 'archviz-run/9'; expected archviz-run/1"),
    (lambda r: r.update(status="done"), "status is 'done'; expected one of finished, interrupted, diverged"),
    (lambda r: r["settings"].update(lr=-1), "settings.lr is -1; expected a positive number"),
    (lambda r: r.update(epochs_done=7), "epochs_done is 7; expected 0..1"),
    (lambda r: r.pop("dataset"), "dataset is missing"),
    (lambda r: r["final"].update(test_accuracy="high"), "final.test_accuracy is 'high'; expected a finite number"),
])
def test_a_wrong_run_json_is_refused_naming_the_field(copy, change, message):
    _edit_record(copy, change)
    with pytest.raises(ArchvizError, match="run.json") as error:
        run_folder.read_record(copy)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("text", ["{not json", "[" * 100_000, "[1, 2]", "\udcff"])
def test_a_corrupt_or_hostile_run_json_is_one_line(copy, text):
    (copy / "run.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ArchvizError, match="run.json") as error:
        run_folder.read_record(copy)
    assert "\n" not in str(error.value)
    assert run_folder.maybe_record(copy) is None and not run_folder.is_finished(copy)


def test_a_wrong_metrics_or_confusion_file_is_one_line(copy):
    (copy / "metrics.json").write_text('[{"epoch": 1, "train_loss": "low"}]')
    with pytest.raises(ArchvizError, match=r"metrics.json.*\[0\]"):
        run_folder.read_history(copy)
    (copy / "confusion.csv").write_text("true,0\n0,x\n")
    with pytest.raises(ArchvizError, match="confusion.csv"):
        run_folder.read_class_report(copy)


def test_a_checkpoint_holding_a_pickled_object_is_never_unpickled(copy, tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (copy / "best.pt").write_bytes(pickle.dumps({"format": "archviz-train/1", "model": Evil()}))
    with pytest.raises(ArchvizError, match="best.pt: cannot load it"):
        run_folder.load_best(copy)
    assert not marker.exists()


def test_the_cli_refuses_a_damaged_run_folder_with_one_line(copy):
    (copy / "run.json").write_text("{not json")
    line = _one_line(runner.invoke(app, ["report", "mlp", "--run", str(copy), "-o", str(copy / "r.html")]))
    assert "run.json" in line and "not JSON" in line
    (copy / "best.pt").write_bytes(b"\x80\x04garbage")
    line = _one_line(runner.invoke(app, ["filters", str(copy)]))
    assert "best.pt" in line


def test_record_fields_are_the_json_keys():
    from dataclasses import fields

    assert {f.name for f in fields(RunRecord)} >= {"status", "model", "settings", "best", "final", "pretext"}
