"""benchmarks/gpu.py, issue 18's prepared GPU check, run on the CPU: CI never has a GPU, so every path runs here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from script_module import load_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    return load_script(SCRIPT, "gpu_benchmark")


@pytest.fixture(scope="module")
def cpu_run(gpu, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu")
    status = gpu.main(["--device", "cpu", "--models", "lenet", "--batches", "2", "--amp", "none", "bf16",
                       "--iterations", "1", "--results", str(folder)])
    return status, folder


def test_cpu_run_writes_the_table_and_the_rows(cpu_run):
    status, folder = cpu_run
    assert status == 0
    results = json.loads((folder / "gpu-cpu.json").read_text())
    assert results["device_key"] == "cpu" and results["targets"] == {"memory_error": 0.10, "spearman": 0.8}
    assert [(row["model"], row["batch"], row["amp"]) for row in results["rows"]] == [("lenet", 2, "fp32"),
                                                                                       ("lenet", 2, "bf16")]
    for row in results["rows"]:
        assert row["predicted_peak_bytes"] > 0 and row["measured_peak_bytes"] > 0
        assert row["memory_error"] == pytest.approx(row["predicted_peak_bytes"] / row["measured_peak_bytes"] - 1)
        assert row["predicted_ms"] > 0 and row["measured_ms"] > 0
        assert row["layers_paired"] >= 3 and -1 <= row["spearman"] <= 1
    # the CPU has no bf16 math units in the calibrated roofline: bf16's pass is put on the float32 peak, and says so
    assert [row["roofline_dtype"] for row in results["rows"]] == ["float32", "float32"]
    table = (folder / "gpu-cpu.md").read_text()
    assert "| lenet | 2 | fp32 |" in table and "| lenet | 2 | bf16 |" in table
    assert "roofline in float32: no bf16 peak on this device" in table


def test_a_run_that_fails_is_a_row(gpu, tmp_path, monkeypatch):
    import archviz.profile

    def out_of_memory(*_args, **_kwargs):
        raise gpu.torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore lines")

    monkeypatch.setattr(archviz.profile, "measure_model", out_of_memory)
    assert gpu.main(["--device", "cpu", "--models", "lenet", "--batches", "2", "--amp", "none",
                     "--results", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "gpu-cpu.json").read_text())["rows"]
    failure = "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert row == {"model": "lenet", "batch": 2, "amp": "fp32", "memory_failed": failure, "latency_failed": failure}
    assert "runs failed or skipped: 1 of 1" in (tmp_path / "gpu-cpu.md").read_text()


def test_a_run_not_started_in_time_is_a_row(gpu, tmp_path):
    status = gpu.main(["--device", "cpu", "--models", "lenet", "--batches", "1", "--amp", "none", "--iterations", "1",
                       "--max-seconds", "0", "--results", str(tmp_path / "out.md")])
    assert status == 0
    rows = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert rows == [{"model": "lenet", "batch": 1, "amp": "fp32", "skipped": "not started: past --max-seconds 0"}]
    assert "not started: past --max-seconds 0" in (tmp_path / "out.md").read_text()


def test_cuda_without_a_gpu_is_one_line_and_status_2(gpu, tmp_path):
    if gpu.torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    done = subprocess.run([sys.executable, str(SCRIPT), "--models", "lenet", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no CUDA GPU" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_model_is_one_line_and_status_2(gpu, tmp_path, capsys):
    assert gpu.main(["--device", "cpu", "--models", "no_such_net", "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(("name", "memory_gb", "key"), [
    ("NVIDIA H100 80GB HBM3", 85, "h100"),
    ("NVIDIA H100 PCIe", 85, "h100-pcie"),
    ("NVIDIA H200", 150, "h200"),
    ("NVIDIA A100-SXM4-40GB", 42, "a100-40gb"),
    ("NVIDIA A100-SXM4-80GB", 85, "a100"),
    ("NVIDIA L4", 24, "l4"),
    ("Tesla T4", 16, "t4"),
    ("NVIDIA GeForce RTX 4090", 25, "rtx4090"),
    ("NVIDIA GeForce RTX 3090", 25, "rtx3090"),
    ("NVIDIA L40S", 48, None),  # not an L4
    ("NVIDIA GH200 480GB", 102, None),  # not an H200
    ("NVIDIA GeForce RTX 4080", 17, None),
])
def test_the_card_maps_to_its_datasheet_entry_or_to_none(gpu, name, memory_gb, key):
    from archviz.analysis.devices import DEVICES

    assert gpu.datasheet_key(name, memory_gb * 10**9) == key
    assert key is None or key in DEVICES


def test_the_card_slug_names_the_files(gpu):
    assert gpu.card_slug("NVIDIA H100 80GB HBM3") == "h100-80gb-hbm3"
