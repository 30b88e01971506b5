"""The CLI through typer's CliRunner: exit codes, formats, errors; and the light paths that must not import torch."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from archviz.cli import app

runner = CliRunner()

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


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_inspect_table(write_spec):
    result = run("inspect", write_spec(SMALL), "--no-crosscheck")
    assert result.exit_code == 0, result.output
    assert "conv1" in result.output and "Total params" in result.output
    assert f"{(27 + 1) * 4 + (4 * 8 * 8 + 1) * 5:,}" in result.output


def test_inspect_json_is_only_json(write_spec):
    result = run("inspect", write_spec(SMALL), "--no-crosscheck", "--format", "json", "--batch", "2")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["model"] == "small" and data["input"] == [3, 16, 16] and data["batch"] == 2
    assert set(data["totals"]) >= {"params", "trainable_params", "macs", "flops", "activation_bytes"}
    first = data["layers"][0]
    assert first["name"] == "conv1" and first["output_shape"] == [4, 16, 16]
    assert first["macs"] == 2 * 16 * 16 * 4 * 27 and first["flops"] == 2 * first["macs"]
    assert first["receptive_field"] == [3, 3]
    assert data["crosscheck"] is None


def test_set_and_input_override(write_spec):
    result = run("inspect", write_spec(SMALL), "--no-crosscheck", "-f", "json", "--set", "num_classes=10",
                 "--input", "3x32x32")
    data = json.loads(result.stdout)
    assert data["input"] == [3, 32, 32]
    assert data["layers"][-1]["output_shape"] == [10]
    assert data["layers"][-1]["params"] == (4 * 16 * 16 + 1) * 10


def test_keras_csv_markdown(write_spec):
    keras = run("inspect", write_spec(SMALL), "--no-crosscheck", "-f", "keras").stdout
    assert "conv2d_1 (Conv2D)" in keras and "(None, 16, 16, 4)" in keras and f"Total params: {(27 + 1) * 4 + (4 * 8 * 8 + 1) * 5:,}" in keras
    csv_text = run("inspect", write_spec(SMALL), "--no-crosscheck", "-f", "csv").stdout
    assert csv_text.splitlines()[0].startswith("name,type,kind,output_shape,params")
    assert len(csv_text.splitlines()) == 1 + 5
    markdown = run("inspect", write_spec(SMALL), "--no-crosscheck", "-f", "markdown").stdout
    assert "| `conv1` | conv2d 4 3x3 p1 | 4x16x16 | 112 |" in markdown


def test_explain(write_spec):
    result = run("explain", write_spec(SMALL), "conv1")
    assert result.exit_code == 0
    assert "(16 - 3 + 2*1) + 1 = 16" in result.output
    assert "(3*3*3 + 1)*4" in result.output


def test_diff_json(write_spec):
    small = write_spec(SMALL)
    wider = write_spec(SMALL.replace("out_channels: 4", "out_channels: 8"), "wider.yaml")
    result = run("diff", small, wider, "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["a"]["model"] == "small" and data["b"]["totals"]["params"] > data["a"]["totals"]["params"]
    assert data["summary"]


def test_diff_table(write_spec):
    small = write_spec(SMALL)
    result = run("diff", small, small)
    assert result.exit_code == 0 and "Stages" in result.output


def test_user_errors_exit_2_without_traceback(write_spec, tmp_path):
    cases = [
        ("inspect", "vgg61"),
        ("inspect", tmp_path / "missing.yaml"),
        ("inspect", write_spec(SMALL), "--set", "num_clases=3"),
        ("inspect", write_spec(SMALL), "--input", "3xbad"),
        ("inspect", write_spec(SMALL), "--set", "novalue"),
        ("explain", write_spec(SMALL), "conv9"),
    ]
    for args in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert result.stderr.startswith("archviz: error:"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_model_suggests_close_names():
    result = run("inspect", "lenett")
    assert result.exit_code == 2 and "lenet" in result.stderr


def test_list_and_schema():
    listing = run("list")
    assert listing.exit_code == 0 and "lenet" in listing.output
    schema = run("schema")
    assert schema.exit_code == 0 and json.loads(schema.stdout)["$schema"].startswith("https://json-schema.org")


def test_help_and_formula_path_do_not_import_torch(write_spec):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from archviz.cli import app\n"
        "r = CliRunner()\n"
        "assert r.invoke(app, ['--help']).exit_code == 0\n"
        f"assert r.invoke(app, ['inspect', {str(write_spec(SMALL))!r}, '--no-crosscheck']).exit_code == 0\n"
        "assert r.invoke(app, ['list']).exit_code == 0\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'torchvision') if m in sys.modules)\n"
        "print(heavy)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_inspect_without_torch_says_crosscheck_skipped(write_spec):
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if torch were not installed\n"
        "from typer.testing import CliRunner\n"
        "from archviz.cli import app\n"
        f"result = CliRunner().invoke(app, ['inspect', {str(write_spec(SMALL))!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'Cross-check skipped' in result.output, result.output\n"
        "assert 'pip install' in result.output, result.output\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_long_tables_are_cut_for_the_terminal(write_spec):
    spec = write_spec("""
        name: long
        input: [2, 4, 4]
        layers:
          - group: [relu]
            repeat: 2500
    """)
    result = run("inspect", spec, "--no-crosscheck")
    assert result.exit_code == 0
    assert "500 rows not shown" in result.output
    assert "2499" in result.output  # the last layers are still shown
    csv_rows = run("inspect", spec, "--no-crosscheck", "-f", "csv").stdout.splitlines()
    assert len(csv_rows) == 1 + 2500


def test_inspect_prints_one_cross_check_line_when_every_peer_agrees():
    result = run("inspect", "lenet")
    assert result.exit_code == 0, result.output
    verdict = [line for line in result.stdout.splitlines() if line.startswith("Cross-check")]
    assert len(verdict) == 1 and "4 peers agree after conversion" in verdict[0] and "detail: -v" in verdict[0]
    assert "how:" not in result.stdout and "torchinfo 1." not in result.stdout


def test_inspect_verbose_prints_every_peer():
    result = run("inspect", "lenet", "--verbose")
    assert result.exit_code == 0, result.output
    assert "every peer agrees after conversion" in result.stdout
    assert result.stdout.count("how:") == 4


def test_a_disagreement_is_printed_in_full_without_verbose():
    import dataclasses

    import archviz
    from archviz.crosscheck.result import Quantity, compare
    from archviz.render.crosscheck import crosscheck_text

    report = archviz.inspect("lenet", crosscheck=True)
    check = report.crosscheck
    wrong = compare("torchinfo", "conv1", Quantity.PARAMS, 156, 157)
    peers = tuple(dataclasses.replace(p, layers=(*p.layers, wrong)) if p.peer == "torchinfo" else p
                  for p in check.peers)
    text = crosscheck_text(dataclasses.replace(report, crosscheck=dataclasses.replace(check, peers=peers))).plain
    assert "1 unexplained difference(s)" in text and "how:" in text
    assert "conv1: unexplained: torchinfo reports 157 where archviz has 156" in text
