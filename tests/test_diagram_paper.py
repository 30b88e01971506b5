"""Paper-style figures (archviz/diagram/paper.py): boxes sized by their shapes, every layer drawn or folded into a
drawn block, skips as arrows, SVG that parses, PNG through Chromium, from a Graph alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

import archviz
from archviz.cli import app
from archviz.diagram import fold_state
from archviz.diagram.paper import SIDE_MIN, box_size, draw_paper, layout, to_svg
from archviz.graph.ir import INPUT

SVG = "{http://www.w3.org/2000/svg}"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def boxes_of(svg: str) -> list[ET.Element]:
    return [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "box"]


def arrows_of(svg: str, css: str) -> list[ET.Element]:
    return [p for p in ET.fromstring(svg).iter(f"{SVG}path") if p.get("class") == css]


def drawn_members(figure) -> set[str]:
    return {member for box in figure.boxes for member in box.members}


# --- sizes --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", ["channels", "height", "width"])
def test_box_sizes_grow_with_each_dimension(axis):
    sizes = [1, 2, 3, 7, 14, 28, 56, 112, 224, 2048]
    shapes = {"channels": [(n, 28, 28) for n in sizes], "height": [(64, n, 28) for n in sizes],
              "width": [(64, 28, n) for n in sizes]}[axis]
    measure = {"channels": "thickness", "height": "height", "width": "depth"}[axis]
    drawn = [getattr(box_size(shape), measure) for shape in shapes]
    assert all(a < b for a, b in zip(drawn, drawn[1:]))


def test_a_one_by_one_map_and_a_short_vector_stay_visible():
    one = box_size((512, 1, 1))
    assert one.height >= SIDE_MIN and one.depth > 0 and one.thickness > 0
    assert 0 < box_size((10,)).height < box_size((4096,)).height


def test_sizes_are_log_scaled():
    """Doubling a side adds the same length: a 224 map is not 8 times a 28 map's height."""
    heights = [box_size((3, n, n)).height for n in (28, 56, 112, 224)]
    steps = {round(b - a, 6) for a, b in zip(heights, heights[1:])}
    assert len(steps) == 1 and heights[-1] < 3 * heights[0]


# --- what is drawn ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["lenet", "alexnet", "vgg16", "resnet18", "resnet50", "googlenet"])
def test_every_layer_is_drawn_or_folded_into_a_drawn_block(model):
    graph = archviz.load(model)
    figure = layout(graph)
    assert drawn_members(figure) == {INPUT} | {node.name for node in graph.nodes}
    svg = to_svg(figure)
    assert [g.get("id") for g in boxes_of(svg)] == [f"box:{box.id}" for box in figure.boxes]


def test_lenet_draws_its_feature_maps_with_their_shapes():
    figure = layout(archviz.load("lenet"))
    assert [box.id for box in figure.boxes] == ["input", "conv1", "pool1", "conv2", "pool2", "fc1", "fc2", "fc3"]
    assert figure.box("conv1").label == ("conv2d 6 5x5", "+ tanh", "6x28x28")
    texts = [t.text for t in ET.fromstring(to_svg(figure)).iter(f"{SVG}text")]
    for shape in ("1x32x32", "6x28x28", "6x14x14", "16x10x10", "16x5x5", "120", "84", "10"):
        assert shape in texts
    assert figure.box("conv1").kernel.source == "input" and figure.box("conv2").kernel.source == "pool1"
    assert figure.box("fc1").size.thickness < figure.box("conv1").size.thickness  # a linear layer is a bar


def test_repeated_blocks_fold_into_one_drawn_copy():
    report = archviz.inspect("resnet50")
    figure = layout(report.graph)
    assert [(b.groups[0], b.groups[-1], b.label.split("  ")[0]) for b in figure.brackets] == [
        ("layer1.1", "layer1.2", "bottleneck x2"), ("layer2.1", "layer2.3", "bottleneck x3"),
        ("layer3.1", "layer3.5", "bottleneck x5"), ("layer4.1", "layer4.2", "bottleneck x2")]
    assert not any(box.id.startswith(("layer1.2.", "layer3.4.")) for box in figure.boxes)
    assert len(figure.boxes) < len(report.layers) / 3


def test_a_fold_state_draws_closed_groups_as_one_box():
    report = archviz.inspect("resnet50")
    figure = layout(report.graph, state=fold_state(report, depth=2))
    groups = [box for box in figure.boxes if box.kind == "group"]
    assert [box.title for box in groups] == ["bottleneck", "bottleneck x2", "bottleneck", "bottleneck x3",
                                             "bottleneck", "bottleneck x5", "bottleneck", "bottleneck x2"]
    assert drawn_members(figure) == {INPUT} | {s.name for s in report.layers}


def test_skips_are_arrows_over_the_boxes():
    """resnet18 draws four identity blocks (layer1's two folded into one, then layer2.1, 3.1, 4.1): four skips; the
    projection blocks' shortcut is a branch under the main path. vgg16 has none."""
    resnet = to_svg(layout(archviz.load("resnet18")))
    assert sorted(p.get("data-dst") for p in arrows_of(resnet, "skip")) == [
        "layer1.0.add", "layer2.1.add", "layer3.1.add", "layer4.1.add"]
    assert arrows_of(to_svg(layout(archviz.load("vgg16"))), "skip") == []
    figure = layout(archviz.load("resnet18"))
    shortcut, main = figure.box("layer2.0.downsample.0"), figure.box("layer2.0.conv1")
    assert shortcut.column == main.column and shortcut.y > main.bottom


def test_inception_branches_stack_in_one_column_and_join_on_the_main_lane():
    figure = layout(archviz.load("googlenet"))
    firsts = [figure.box(name) for name in ("inception3a.branch1.conv", "inception3a.branch2.0.conv",
                                            "inception3a.branch3.0.conv", "inception3a.branch4.0")]
    assert len({box.column for box in firsts}) == 1 and len({box.lane for box in firsts}) == 4
    assert [box.lane for box in firsts] == sorted(box.lane for box in firsts)
    assert figure.box("inception3a.concat").lane == figure.box("maxpool2").lane == 0


def test_draws_a_traced_torchvision_model():
    pytest.importorskip("torchvision")
    graph = archviz.load("torchvision:resnet18")
    figure = layout(graph)
    assert drawn_members(figure) == {INPUT} | {node.name for node in graph.nodes}
    assert len(arrows_of(to_svg(figure), "skip")) == 4


def test_needs_neither_torch_nor_graphviz():
    code = ("import sys; sys.modules.update(torch=None, graphviz=None); import archviz; "
            "from archviz.diagram.paper import draw_paper; print(len(draw_paper(archviz.load('googlenet'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 10_000


# --- files and the CLI --------------------------------------------------------------------------------------------

@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh installs it)")
def test_png_is_a_real_png(tmp_path):
    pytest.importorskip("playwright")
    out = tmp_path / "lenet.png"
    result = CliRunner().invoke(app, ["diagram", "lenet", "--style", "paper", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 1000 and height > 200  # drawn at twice the SVG's size


def test_cli_writes_svg_and_refuses_other_formats(tmp_path):
    out = tmp_path / "vgg16.svg"
    result = CliRunner().invoke(app, ["diagram", "vgg16", "--style", "paper", "-o", str(out)])
    assert result.exit_code == 0 and out.read_bytes() == draw_paper(archviz.load("vgg16"))
    refused = CliRunner().invoke(app, ["diagram", "vgg16", "--style", "paper", "-o", str(tmp_path / "v.pdf")])
    assert refused.exit_code == 2 and "--style paper writes .svg or .png" in refused.stderr


@pytest.mark.parametrize("model", ["lenet", "alexnet", "vgg16", "resnet18"])
def test_the_documented_figures_are_current(model):
    """docs/guide/diagram.md shows reports/NAME-paper.svg (docs/reports links to reports/); scripts/paper_figures.py
    redraws them."""
    from pathlib import Path

    root = Path(__file__).parent.parent
    assert f"](../reports/{model}-paper.svg)" in (root / "docs/guide/diagram.md").read_text()
    assert (root / "reports" / f"{model}-paper.svg").read_bytes() == draw_paper(archviz.load(model)), \
        "run: .venv/bin/python scripts/paper_figures.py"
