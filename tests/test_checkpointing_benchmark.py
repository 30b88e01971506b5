"""benchmarks/checkpointing.py on a tiny config: the files it writes and the figures in them (no timings checked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from script_module import load_script

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "checkpointing.py"


@pytest.fixture(scope="module")
def benchmark():
    return load_script(SCRIPT, "checkpointing_benchmark")


@pytest.fixture(scope="module")
def tiny_run(benchmark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpointing")
    status = benchmark.main(["--models", "lenet", "--batches", "2", "--segments", "2", "--iterations", "2", "-o",
                             str(folder)])
    return status, folder


def test_the_run_writes_one_row_per_segment_count_with_the_prediction_within_target(tiny_run, benchmark):
    status, folder = tiny_run
    assert status == 0
    results = json.loads((folder / "checkpointing.json").read_text())
    rows = results["rows"]
    assert [(r["model"], r["batch"], r["segments"]) for r in rows] == [("lenet", 2, None), ("lenet", 2, 2)]
    assert all(abs(r["predicted"] - r["measured"]) / r["measured"] == pytest.approx(abs(r["error"])) for r in rows)
    assert all(abs(r["error"]) <= benchmark.TARGET for r in rows)
    plain, checkpointed = rows
    assert plain["starts"] == [] and "peak_ratio" not in plain
    assert checkpointed["starts"] == checkpointed["predicted_starts"] and len(checkpointed["starts"]) == 1
    assert checkpointed["made"] == 2 and checkpointed["iterations"] == 2
    assert checkpointed["peak_ratio"] == checkpointed["measured"] / plain["measured"]
    assert checkpointed["time_ratio"] == checkpointed["seconds"] / plain["seconds"]
    assert results["summary"]["runs"] == 2 and results["summary"]["within_target"] == 2
    assert results["models_done"] == results["models"] == 1 and results["skipped"] == []
    assert results["machine"] and results["date"]


def test_the_table_has_the_summary_and_a_line_per_run(tiny_run):
    _, folder = tiny_run
    text = (folder / "checkpointing.md").read_text()
    assert "2 of 2 runs predicted within 10% of the measured peak" in text
    assert "Partial" not in text
    rows = [line for line in text.splitlines() if line.startswith("| lenet |")]
    assert len(rows) == 2 and "| none |" in rows[0] and "| 2 |" in rows[1]


def test_resume_keeps_the_models_already_measured(tiny_run, benchmark):
    _, folder = tiny_run
    before = json.loads((folder / "checkpointing.json").read_text())
    assert benchmark.main(["--models", "lenet", "--batches", "2", "--resume", "-o", str(folder)]) == 0
    after = json.loads((folder / "checkpointing.json").read_text())
    assert [r["measured"] for r in after["rows"]] == [r["measured"] for r in before["rows"]]


def test_a_single_timed_step_is_refused(benchmark, capsys):
    with pytest.raises(SystemExit) as stopped:
        benchmark.main(["--iterations", "1"])
    assert stopped.value.code == 2 and "at least 2" in capsys.readouterr().err
