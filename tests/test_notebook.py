"""archviz in Jupyter and in a terminal REPL: Reports, Diffs and drawings show themselves (archviz/render/notebook.py),
and the example notebook runs top to bottom in a fresh kernel, so it never rots."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

import archviz
from script_module import load_script

ROOT = Path(__file__).resolve().parent.parent


def test_a_report_prints_as_its_folded_table_and_totals_in_a_terminal():
    text = repr(archviz.inspect("resnet18"))
    assert "layer1" in text and "Params" in text and "11,689,512" in text
    assert "layer1.0.conv1" not in text  # folded to the top-level groups
    assert "Report(" not in text


def test_a_report_shows_its_totals_its_groups_as_folds_and_its_diagram_in_jupyter():
    page = archviz.inspect("resnet18")._repr_html_()
    assert "11,689,512" in page and "<details>" in page
    assert 'title="layer1"' in page and 'title="layer1.0.conv1"' in page  # the group's line, then its layers
    assert "<svg" in page  # the diagram, where Graphviz is installed (scripts/setup.sh installs it)


def test_a_diff_says_identical_in_both_forms():
    same = archviz.diff("resnet50", "torchvision:resnet50")
    assert same.identical
    assert "identical" in repr(same) and "identical" in same._repr_html_()
    other = archviz.diff("vgg16", "vgg19")
    assert not other.identical and "not identical" in other._repr_html_()


@pytest.mark.parametrize("style", ["graph", "paper"])
def test_a_drawing_is_svg_and_saves_by_its_extension(style, tmp_path):
    drawing = archviz.draw("lenet", style=style)
    assert ElementTree.fromstring(drawing._repr_svg_().encode()).tag.endswith("svg")
    written = drawing.save(tmp_path / "lenet.svg")
    assert written.read_text().count("<svg") == 1


def test_a_drawing_refuses_an_unknown_extension(tmp_path):
    with pytest.raises(archviz.ArchvizError, match="extension"):
        archviz.draw("lenet").save(tmp_path / "lenet.jpeg")


def test_the_example_notebook_runs_and_every_model_shows_itself():
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    script = load_script(ROOT / "scripts" / "update_notebooks.py", "update_notebooks")
    notebook = script.executed(ROOT / "examples" / "tour.ipynb")
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    shown = [set(output.get("data", {})) for output in outputs]
    assert sum("text/html" in kinds for kinds in shown) == 2  # the report and the diff
    assert sum("image/svg+xml" in kinds for kinds in shown) == 2  # the two drawings
