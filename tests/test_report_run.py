"""`archviz report MODEL --run FOLDER`: the report of the network a run trained, with the run's curves, confusion
matrix, per-class report, filters, activations and class-activation maps; and its errors."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("PIL")

from archviz.cli import app  # noqa: E402

runner = CliRunner()
PNG_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    from archviz.train import train

    folder = tmp_path_factory.mktemp("run") / "lenet"
    train("lenet", dataset="digits", epochs=2, lr=0.02, output=folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def page(run_folder, tmp_path_factory):
    target = tmp_path_factory.mktemp("report") / "lenet.html"
    result = invoke("report", "lenet", "--run", run_folder, "--no-crosscheck", "-o", target)
    assert result.exit_code == 0, result.output
    return target.read_text(encoding="utf-8")


def page_data(page: str) -> dict:
    text = re.search(r'<script type="application/json" id="archviz-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(text)


def test_run_sections_are_in_the_report(page):
    for anchor in ("training", "filters", "activations", "cams"):
        assert f'<section id="{anchor}">' in page
        assert f'href="#{anchor}"' in page
    assert page.count('class="look"') == 4  # what to look for: filters, activations, maps, confusion matrix


def test_run_data_matches_the_run_files(page, run_folder):
    run = page_data(page)["run"]
    history = json.loads((run_folder / "metrics.json").read_text())
    assert [row["epoch"] for row in run["history"]] == [row["epoch"] for row in history] == [1, 2]
    assert run["history"][-1]["val_loss"] == history[-1]["val_loss"]
    table = list(csv.reader(io.StringIO((run_folder / "confusion.csv").read_text())))
    assert run["classes"] == table[0][1:]
    assert run["confusion"] == [[int(c) for c in row[1:]] for row in table[1:]]
    assert sum(map(sum, run["confusion"])) == 359  # the digits test split


def test_report_is_of_the_trained_graph(page):
    model = page_data(page)["models"][0]
    assert model["totals"]["params"] == 61706  # lenet with 10 classes, as trained


def test_pictures_are_inline_pngs(page):
    from PIL import Image

    pngs = [base64.b64decode(data) for data in PNG_URI.findall(page)]
    # conv1 and conv2 each after training and initial; 3 activation stacks; 3 class-activation maps
    assert len(pngs) == 2 * 2 + 3 + 3
    for png in pngs:
        assert Image.open(io.BytesIO(png)).format == "PNG"


def test_trained_and_initial_filters_differ(run_folder):
    from archviz.inside.run import look_inside_run

    view = look_inside_run(run_folder)
    trained, initial = view.filters[0]
    assert trained.title == initial.title
    assert any((a != b).any() for a, b in zip(trained.tiles, initial.tiles))
    assert "initial weights" in initial.note
    labels = {sample.image.label for sample in view.samples}
    assert len(labels) == len(view.samples) == 3  # one validation image per class


def test_initial_weights_are_the_runs_own(run_folder):
    """The run seeds torch with --seed just before building the model: rebuilding from the seed gives its start."""
    import torch

    from archviz.inside.trained import load_trained
    from archviz.torch_build import to_torch

    trained = load_trained("lenet", run_folder)
    torch.manual_seed(0)
    expected = to_torch(trained.graph, device="cpu").state_dict()
    initial = trained.initial(0).net.state_dict()
    assert all(torch.equal(expected[name], initial[name]) for name in expected)


@pytest.mark.parametrize("extra", [["--zoo"], ["--input", "1x32x32"], ["alexnet"]])
def test_run_refuses_other_options(run_folder, tmp_path, extra):
    result = invoke("report", "lenet", "--run", run_folder, "-o", tmp_path / "x.html", *extra)
    assert result.exit_code == 2
    assert "--run goes with one model" in result.output
    assert not (tmp_path / "x.html").exists()


def test_missing_run_folder(tmp_path):
    result = invoke("report", "lenet", "--run", tmp_path / "nowhere", "-o", tmp_path / "x.html")
    assert result.exit_code == 2
    assert "no such folder" in result.output and "Traceback" not in result.output


def test_unfinished_run_folder(run_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_folder, copy)
    (copy / "report.json").unlink()
    result = invoke("report", "lenet", "--run", copy, "-o", tmp_path / "x.html")
    assert result.exit_code == 2
    assert "no report.json" in result.output
    assert not (tmp_path / "x.html").exists()


def test_run_of_another_model(run_folder, tmp_path):
    result = invoke("report", "alexnet", "--run", run_folder, "--no-crosscheck", "-o", tmp_path / "x.html")
    assert result.exit_code == 2
    assert "do not fit alexnet" in result.output and "trained from 'lenet'" in result.output


def test_a_runs_report_never_overwrites_the_plain_report(run_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = invoke("report", "lenet", "--no-crosscheck")
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.strip() == "reports/lenet.html"
    before = (tmp_path / "reports" / "lenet.html").read_bytes()
    result = invoke("report", "lenet", "--run", run_folder, "--no-crosscheck")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"reports/lenet-{run_folder.name}.html"  # reports/NAME-RUN.html
    assert (tmp_path / "reports" / "lenet.html").read_bytes() == before
    assert "reports/NAME-RUN.html" in " ".join(invoke("report", "--help").output.split())
