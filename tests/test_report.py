"""HTML reports: self-contained, escaped, written atomically; the CLI's report and diff --html."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import archviz
from archviz.cli import app
from archviz.output import write_atomic
from archviz.render.html import comparison_report_html, index_html, model_report_html
from archviz.render.html.data import script_json

runner = CliRunner()

HOSTILE = """
    name: "<script>alert('name')</script>"
    description: "quotes \\" and ' and <b>tags</b> & ampersands </script><script>alert(2)</script>"
    input: [3, 16, 16]
    layers:
      - conv2d: {out_channels: 4, kernel_size: 3}
        name: conv1
        note: "<img src=x onerror=alert(3)>"
      - flatten
      - linear: {out_features: 2}
"""


def embedded_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="archviz-data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_model_report_is_self_contained():
    page = model_report_html(archviz.inspect("lenet"))
    assert page.count("<script") == 1 + 3  # the data, plotly once, the diagram's script, the page script
    assert "plotly" in page.lower() and page.count("Plotly.newPlot=") <= 1
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', page)  # no CDN, nothing remote
    data = embedded_data(page)
    assert data["models"][0]["totals"]["params"] == 61_706
    assert data["models"][0]["explanations"]["conv1"]["steps"]


def test_spec_text_is_escaped(write_spec):
    report = archviz.inspect(write_spec(HOSTILE))
    for page in (model_report_html(report), comparison_report_html([report, report]), index_html([report], ["x.html"])):
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "<b>tags</b>" not in page
    page = model_report_html(report)
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in page  # shown as text in the title and header
    assert embedded_data(page)["models"][0]["model"] == "<script>alert('name')</script>"  # intact as data


def test_script_json_cannot_close_the_script_element():
    text = script_json({"a": "</script><!-- & >"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & >"}


def test_report_cli_writes_a_file(tmp_path):
    target = tmp_path / "out" / "lenet.html"
    result = runner.invoke(app, ["report", "lenet", "--no-crosscheck", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(target)
    assert target.stat().st_size > 1_000_000  # plotly is inside
    assert oct(target.stat().st_mode & 0o777) != "0o600"


def test_the_report_holds_the_published_figures_of_a_spec_as_its_source_built_it(tmp_path):
    """`archviz paper`'s rows in the report (issue 21 §2): each figure, published beside archviz's, its verdict and
    its reasons; not for the model at another input, whose figures are not the paper's."""
    from archviz.analysis.papers import paper

    target = tmp_path / "lenet5_1998.html"
    assert runner.invoke(app, ["report", "lenet5_1998", "--no-crosscheck", "-o", str(target)]).exit_code == 0
    section = re.search(r'<section id="published">(.*?)</section>', target.read_text(), re.S).group(1)
    rows = re.findall(r"<tr><td>(.*?)</td><td class=\"num\">(.*?)</td><td class=\"num\">(.*?)</td>"
                      r'<td class="[^"]+">(.*?)</td>', section)
    check = paper("lenet5_1998")
    assert len(rows) == len(check.rows) == 7
    assert rows[-1] == ("params", "60,000", "60,840 (60.8 K)", "differs")
    assert "840 RBF centres" in section and '<a href="#published">' in target.read_text()
    other = tmp_path / "other.html"
    result = runner.invoke(app, ["report", "lenet5_1998", "--no-crosscheck", "--input", "1x36x36", "-o", str(other)])
    assert result.exit_code == 0 and 'id="published"' not in other.read_text()
    assert 'id="published"' not in model_report_html(archviz.inspect("lenet"))


def test_comparison_and_diff_html(tmp_path):
    result = runner.invoke(app, ["report", "lenet", "alexnet", "mlp", "--no-crosscheck", "-o", str(tmp_path / "c.html")])
    assert result.exit_code == 0, result.output
    data = embedded_data((tmp_path / "c.html").read_text())
    assert [m["model"] for m in data["models"]] == ["lenet", "alexnet", "mlp"]
    result = runner.invoke(app, ["diff", "lenet", "alexnet", "--html", str(tmp_path / "d.html")])
    assert result.exit_code == 0
    page = (tmp_path / "d.html").read_text()
    # lenet's 2 and alexnet's 3 blocks, aligned by downsampling step, then the head
    assert "stage-table" in page and len(embedded_data(page)["stages"]) == 4


def test_report_errors_exit_2(tmp_path):
    result = runner.invoke(app, ["report"])
    assert result.exit_code == 2 and "name a model" in result.stderr
    result = runner.invoke(app, ["report", "lenett", "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 2 and "lenet" in result.stderr
    assert not (tmp_path / "x.html").exists()


def test_atomic_write_keeps_the_old_file_when_killed(tmp_path):
    """A writer killed mid-write leaves the previous file intact and nothing half-written under its name."""
    target = tmp_path / "report.html"
    target.write_text("previous report")
    child = (
        "import os, sys, time\n"
        "import archviz.output as out\n"
        "real_fsync = os.fsync\n"
        "def slow_fsync(fd):\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        "out.os.fsync = slow_fsync\n"
        f"out.write_atomic({str(target)!r}, 'x' * 50_000_000)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"  # the payload is being written
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert target.read_text() == "previous report"


def test_atomic_write_replaces(tmp_path):
    target = tmp_path / "a.txt"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_zoo_reports_and_index(tmp_path, monkeypatch):
    import archviz.spec.zoo as zoo

    monkeypatch.setattr(zoo, "zoo_names", lambda: ["lenet", "alexnet", "resnet18"])
    result = runner.invoke(app, ["report", "--zoo", "--no-crosscheck", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alexnet.html", "index.html", "lenet.html", "plotly.min.js",
                                                          "resnet18.html"]
    assert '<script src="plotly.min.js"></script>' in (tmp_path / "lenet.html").read_text()  # one shared copy
    index = (tmp_path / "index.html").read_text()
    for name in ("lenet", "alexnet", "resnet18"):
        assert f'href="{name}.html"' in index
    assert "<script" not in index  # the index is a plain page
    assert 'class="diagram-view"' in (tmp_path / "resnet18.html").read_text()


def test_the_diagrams_costs_are_fills_per_view_computed_once():
    """Colour by a cost swaps the fills of the SVG drawn by kind: each view's fills are the ones
    `archviz diagram --color-by` draws, time only when the report has a device."""
    from archviz.diagram import collect, fold_state
    from archviz.diagram.dot import COST_PALETTE, cost_fills
    from archviz.render.html.build import diagram_views

    report = archviz.inspect("resnet18", crosscheck=False)
    views = diagram_views(report)
    assert sorted(views.costs) == ["macs", "memory", "params"]
    default = views.costs["macs"]["views"][views.default]
    assert default["fills"] == cost_fills(collect(report, fold_state(report)), "macs")
    assert set(default["fills"].values()) <= {*COST_PALETTE, "#ffffff"} and default["fills"]["input"] == "#ffffff"
    assert default["title"].startswith("MACs, share of the largest box's") and default["key"][0] == ["#ffffff", "none"]
    assert set(views.costs["macs"]["views"]) == set(views.svgs)
    assert views.svgs[views.default].count("<svg") == 1  # one drawing per view, not one per cost
    with_device = diagram_views(archviz.inspect("lenet", crosscheck=False, device="a100"))
    assert "time" in with_device.costs


def edges_into(svg: str) -> dict[str, set[str]]:
    import html

    edges = re.findall(r'id="edge:([^"]+)"', svg)
    into: dict[str, set[str]] = {}
    for edge in map(html.unescape, edges):
        src, dst = edge.split("->")
        into.setdefault(dst, set()).add(src)
    return into


@pytest.mark.parametrize("model, opened", [
    ("resnet50", "layer1.0"), ("googlenet", "inception3a"), ("torchvision:inception_v3", "Mixed_5b"),
    ("torchvision:densenet121", "features.denseblock1"),
])
def test_the_reports_first_view_shows_a_block_with_branches_opened(model, opened):
    """The report opens on the diagram's default (collect.fold_state's show_a_join): one representative block
    drawn open, so some box takes two inputs (a skip, inception's branches, a dense connection)."""
    from archviz.render.html.build import diagram_views

    views = diagram_views(archviz.inspect(model, crosscheck=False))
    first = views.svgs[views.default]
    assert f'id="cluster:{opened}"' in first
    assert any(len(sources) > 1 for sources in edges_into(first).values())
