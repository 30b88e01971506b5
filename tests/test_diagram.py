"""Diagrams: folding and merged repeats, edges that keep the graph a graph, DOT ids and escaping, rendering, the CLI.

Rendering tests need Graphviz's `dot` (CI installs it) and are skipped without it; the DOT tests never need it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

import archviz
from archviz.cli import app
from archviz.diagram import collect, draw, fold_state, render, to_dot
from archviz.errors import ArchvizError, MissingDependencyError, UnknownNameError
from archviz.graph.ir import INPUT

runner = CliRunner()
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (CI installs it)")
SCREEN = 60  # boxes a default diagram may draw


def report(model: str, **kwargs):
    return archviz.inspect(model, **kwargs)


def default(model: str):
    return collect(report(model))


def expanded(model: str):
    r = report(model)
    return collect(r, fold_state(r, expand=True))


def node_ids(text: str) -> list[str]:
    """The node statements' ids of a DOT text (edges, graph and legend lines left out)."""
    return re.findall(r'^\s*"([^"]+)" \[id="node:', text, flags=re.M)


# --- folding ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["lenet", "alexnet", "vgg16"])
def test_small_networks_draw_every_layer(model):
    diagram = default(model)
    assert [n.id for n in diagram.nodes] == [INPUT] + [s.name for s in report(model).layers]
    assert not any(n.is_group for n in diagram.nodes)


def test_resnet152_default_fits_and_merges_the_repeated_bottlenecks():
    r = report("resnet152")
    diagram = collect(r)
    assert len(diagram.nodes) < SCREEN
    # the stages open, and the first bottleneck too, so that a skip connection shows
    assert sorted(diagram.expanded) == ["layer1", "layer1.0", "layer2", "layer3", "layer4"]
    run = diagram.node("layer3.1..layer3.35")
    assert run.repeat == 35 and run.is_group and run.type == "bottleneck"
    assert run.groups == tuple(f"layer3.{i}" for i in range(1, 36))
    # the first block of each stage strides and projects: it stays apart
    first = diagram.node("layer3.0")
    assert first.repeat == 1 and "layer3.0.downsample.0" in first.members
    inside = [s for s in r.layers if s.name.startswith("layer3.") and not s.name.startswith("layer3.0.")]
    assert run.params == sum(s.params for s in inside) and run.macs == sum(s.macs for s in inside)
    assert run.layer_count == len(inside) == 35 * 10
    assert run.out_shape == (1024, 14, 14)
    assert "x35" in to_dot(diagram)
    # every layer is drawn by exactly one box
    members = [m for n in diagram.nodes for m in n.members]
    assert sorted(members) == sorted(s.name for s in r.layers)


def test_googlenet_default_fits_and_opens_the_inception_modules():
    diagram = default("googlenet")
    assert len(diagram.nodes) < SCREEN
    assert [c.id for c in diagram.clusters] == [
        "inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
        "inception5a", "inception5b",
    ]
    assert diagram.incoming("inception4a.concat") == [f"inception4a.branch{i}" for i in range(1, 5)]
    assert diagram.node("inception3a.branch2").detail == "conv2d 96 1x1 → conv2d 128 3x3 p1"


@pytest.mark.parametrize("model", ["resnet50", "resnet152", "googlenet", "inception_v3"])
def test_expand_draws_one_box_per_layer(model):
    diagram = expanded(model)
    assert [n.id for n in diagram.nodes] == [INPUT] + [s.name for s in report(model).layers]
    assert not any(n.is_group for n in diagram.nodes)


def test_depth_levels():
    r = report("resnet50")
    top = collect(r, fold_state(r, depth=1))
    assert [n.id for n in top.nodes] == [INPUT, "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                         "layer4", "avgpool", "flatten", "fc"]
    assert top.node("layer3").detail == "6 x bottleneck" and top.node("layer3").layer_count == 6 * 10 + 2
    assert [n.id for n in collect(r, fold_state(r, depth=2)).nodes] == \
        [n.id for n in collect(r, fold_state(r, collapsed=["layer1.0"])).nodes]  # the default, its open block aside
    three = collect(r, fold_state(r, depth=3))
    assert "layer1.0.downsample" in [n.id for n in three.nodes]  # the fourth level stays folded
    assert len(collect(r, fold_state(r, depth=9)).nodes) == len(r.layers) + 1
    with pytest.raises(ArchvizError, match="exclude each other"):
        fold_state(r, depth=2, expand=True)


@pytest.mark.parametrize("model, opened", [
    ("resnet50", "layer1.0"), ("inception_v3", "Mixed_5b"), ("torchvision:densenet121", "features.denseblock1"),
])
def test_a_model_with_branches_opens_one_block_to_show_them(model, opened):
    """Folding to fit the screen would hide every skip (resnet50), branch (inception_v3) or dense connection
    (densenet121): the default opens the first block holding one, so that some box takes two inputs."""
    r = report(model)
    diagram = collect(r)
    assert opened in diagram.expanded
    assert any(len(set(diagram.incoming(node.id))) > 1 for node in diagram.nodes)


def test_a_chain_opens_nothing_more():
    assert "features.0" not in fold_state(report("vgg16")).expanded


def test_only_identical_chained_groups_merge(write_spec):
    """Two equal blocks side by side in a concat are parallel, not a repeat; equal blocks in a row merge."""
    path = write_spec("""
        name: par
        input: [3, 8, 8]
        blocks:
          unit:
            params: {w: required}
            layers:
              - conv2d: {out_channels: $w, kernel_size: 1}
                name: conv
              - relu: {}
                name: relu
        layers:
          - concat:
              - unit: {w: 4}
                name: left
              - unit: {w: 4}
                name: right
            name: cat
          - unit: {w: 8}
            name: u1
          - unit: {w: 8}
            name: u2
          - unit: {w: 8}
            name: u3
          - unit: {w: 6}
            name: u4
    """)
    r = report(path)
    diagram = collect(r, fold_state(r, depth=1))
    assert [n.id for n in diagram.nodes] == [INPUT, "left", "right", "cat", "u1..u3", "u4"]
    assert diagram.node("u1..u3").repeat == 3
    assert diagram.incoming("cat") == ["left", "right"]
    assert diagram.incoming("u4") == ["u1..u3"]


def test_inception_v3_merges_only_equal_arguments():
    ids = [n.id for n in default("inception_v3").nodes]
    assert "Mixed_6c..Mixed_6d" in ids and "Mixed_6b" in ids and "Mixed_6e" in ids  # channels_7x7 128, 160, 160, 192


def test_fold_state_for_a_clicked_group():
    """The HTML report asks for the default view with one more group open; ids stay the same across views."""
    r = report("resnet152")
    base = collect(r)
    opened = collect(r, fold_state(r, expanded={"layer3.1..layer3.35"}))  # a merged run opens its first block
    ids = {n.id for n in opened.nodes}
    assert "layer3.1.conv2" in ids and "layer3.2..layer3.35" in ids and "layer3.0" in ids
    assert {n.id for n in base.nodes} - ids == {"layer3.1..layer3.35"}
    assert "layer3.1" in [c.id for c in opened.clusters]
    nested = fold_state(r, depth=1, expanded=["layer2.0.downsample"])  # opens the enclosing groups too
    assert {"layer2", "layer2.0", "layer2.0.downsample"} <= nested.expanded
    folded = collect(r, fold_state(r, collapsed=["layer3"]))
    assert "layer3" in [n.id for n in folded.nodes]
    with pytest.raises(UnknownNameError, match="did you mean: layer3"):
        fold_state(r, expanded=["layer33"])


# --- edges --------------------------------------------------------------------------------------------------------

def test_residual_adds_keep_two_inputs():
    diagram = expanded("resnet50")
    adds = [s.name for s in report("resnet50").layers if s.op == "add"]
    assert len(adds) == 16
    for name in adds:
        assert len(diagram.incoming(name)) == 2, name
    assert diagram.incoming("layer1.0.add") == ["layer1.0.bn3", "layer1.0.downsample.1"]
    assert diagram.incoming("layer1.1.add") == ["layer1.1.bn3", "layer1.0.relu3"]  # the identity skip


def test_concats_keep_four_inputs():
    diagram = expanded("googlenet")
    concats = [s.name for s in report("googlenet").layers if s.op == "concat"]
    assert len(concats) == 9
    for name in concats:
        assert len(diagram.incoming(name)) == 4, name


def test_folded_edges_are_deduplicated_and_never_loop():
    diagram = default("resnet152")
    pairs = [(e.src, e.dst) for e in diagram.edges]
    assert len(pairs) == len(set(pairs)) and all(src != dst for src, dst in pairs)
    assert diagram.incoming("layer3.1..layer3.35") == ["layer3.0"]
    assert diagram.incoming("layer4.0") == ["layer3.1..layer3.35"]
    assert diagram.incoming("conv1") == [INPUT]
    # a folded block with a skip inside is still one box fed by one edge; opened, its add has two inputs
    r = report("resnet152")
    opened = collect(r, fold_state(r, expanded=["layer2.1"]))
    assert opened.incoming("layer2.1.add") == ["layer2.1.bn3", "layer2.0"]


# --- DOT ----------------------------------------------------------------------------------------------------------

def test_dot_ids_are_paths_and_output_is_deterministic():
    r = report("resnet50")
    text = to_dot(collect(r))
    assert text == to_dot(collect(report("resnet50")))
    ids = node_ids(text)
    assert ids == [n.id for n in collect(r).nodes]
    assert '"layer3.0" [id="node:layer3.0", class="group"' in text
    assert '"conv1" [id="node:conv1", class="layer conv"' in text
    assert '"layer3.1..layer3.5" [id="node:layer3.1..layer3.5"' in text
    assert 'subgraph "cluster:layer3" {' in text
    assert '"layer3.0" -> "layer3.1..layer3.5" [id="edge:layer3.0->layer3.1..layer3.5"];' in text
    assert "rankdir=TB" in text and "rankdir=LR" in to_dot(collect(r), rankdir="lr")
    with pytest.raises(ArchvizError, match="rankdir must be TB or LR"):
        to_dot(collect(r), rankdir="BT")
    assert "tooltip=" in text and "conv" in text.split('"archviz:legend"')[1]


def test_branches_are_ordered_as_in_the_spec():
    """dot reorders nodes inside a cluster; an invisible row on one rank keeps branch1 ... branch4 in spec order."""
    text = to_dot(default("googlenet"))
    row = " -> ".join(f'"inception3a.branch{i}"' for i in range(1, 5))
    assert f"{{rank=same; {row} [style=invis];}}" in text
    # a residual add is deeper than the first conv of its block: it is not pulled onto that conv's rank
    r = report("resnet18")
    rows = [line.strip() for line in to_dot(collect(r, fold_state(r, depth=3))).splitlines() if "rank=same" in line]
    assert rows == [f'{{rank=same; "layer{i}.0.conv1" -> "layer{i}.0.downsample" [style=invis];}}' for i in (2, 3, 4)]
    assert all(".add" not in line for line in to_dot(expanded("resnet18")).splitlines() if "rank=same" in line)


def test_dot_golden(golden):
    r = report("tests/data/tiny_resnet.yaml")
    golden("tiny_resnet.depth2.dot", to_dot(collect(r, fold_state(r, depth=2))))


ODD = r"""
    name: 'my "net" <1> & co'
    description: 'a <b>bold</b> "claim" & more \ backslash'
    input: [3, 8, 8]
    blocks:
      'odd<block>&"name"':
        params: {width: required}
        layers:
          - conv2d: {out_channels: $width, kernel_size: 3, padding: 1}
            name: conv
          - relu
    layers:
      - 'odd<block>&"name"': {width: 4}
        name: b1
      - 'odd<block>&"name"': {width: 4}
        name: b2
      - flatten
      - linear: {out_features: 2}
        name: fc
        note: 'see "paper" <here> & there'
"""


def test_everything_from_the_spec_is_escaped(write_spec):
    r = report(write_spec(ODD))
    for diagram in (collect(r), collect(r, fold_state(r, depth=1))):
        text = to_dot(diagram)
        assert text.startswith('digraph "my \\"net\\" <1> & co" {')
        assert "<B>my &quot;net&quot; &lt;1&gt; &amp; co</B>" in text
        assert "a &lt;b&gt;bold&lt;/b&gt; &quot;claim&quot; &amp; more \\ backslash" in text
        assert "odd&lt;block&gt;&amp;&quot;name&quot;" in text
        assert 'odd<block>&\\"name\\"' in text  # in tooltips: a quoted string, quotes escaped
        # outside quoted strings no raw spec text: drop them, and no spec character is left
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
        assert "<block>" not in bare and "<b>" not in bare and "<1>" not in bare
    assert 'see \\"paper\\" <here> & there' in to_dot(collect(r))


@needs_dot
def test_escaped_spec_renders_to_valid_svg(write_spec):
    svg = draw(report(write_spec(ODD)), "svg", depth=1)
    root = ET.fromstring(svg)
    texts = [e.text for e in root.iter("{http://www.w3.org/2000/svg}text")]
    assert 'my "net" <1> & co' in texts
    assert any(t and 'odd<block>&"name"' in t for t in texts)


# --- rendering ----------------------------------------------------------------------------------------------------

@needs_dot
def test_render_svg_png_pdf():
    r = report("resnet50")
    svg = draw(r, "svg")
    root = ET.fromstring(svg)
    groups = {g.get("id"): g.get("class") for g in root.iter("{http://www.w3.org/2000/svg}g")}
    assert groups["node:layer3.0"] == "node group"
    assert groups["node:conv1"] == "node layer conv"
    assert groups["cluster:layer3"] == "cluster expanded"
    assert draw(r, "png").startswith(b"\x89PNG\r\n\x1a\n")
    assert draw(r, "pdf").startswith(b"%PDF")


@needs_dot
def test_rendered_branches_left_to_right():
    svg = draw(report("googlenet"), "svg").decode()
    xs = []
    for i in range(1, 5):
        block = svg.split(f'<g id="node:inception4a.branch{i}"')[1]
        xs.append(float(re.search(r'<text[^>]* x="([-\d.]+)"', block).group(1)))
    assert xs == sorted(xs)


def test_missing_dot_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on it
    text = to_dot(default("lenet"))
    with pytest.raises(MissingDependencyError, match="apt-get install graphviz"):
        render(text, "svg")
    assert render(text, "dot") == text.encode()


# --- CLI ----------------------------------------------------------------------------------------------------------

def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_dot_output(tmp_path):
    out = tmp_path / "sub" / "r.dot"
    result = run("diagram", "resnet152", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    text = out.read_text()
    assert text == to_dot(default("resnet152")) and '"layer3.1..layer3.35"' in text


def test_cli_options(tmp_path):
    out = tmp_path / "r.dot"
    assert run("diagram", "resnet50", "-o", out, "--rankdir", "LR", "--expand").exit_code == 0
    text = out.read_text()
    assert "rankdir=LR" in text and len(node_ids(text)) == len(report("resnet50").layers) + 1
    assert run("diagram", "resnet50", "-o", out, "--depth", "1").exit_code == 0
    assert '"layer3" [id="node:layer3"' in out.read_text()
    assert run("diagram", "resnet50", "-o", out, "--unfold", "layer3.1", "--set", "num_classes=10").exit_code == 0
    text = out.read_text()
    assert '"layer3.1.conv2"' in text and "10 units" in text
    assert run("diagram", "lenet", "-o", out, "--input", "1x64x64").exit_code == 0
    assert "input 1x64x64" in out.read_text()


@pytest.mark.parametrize("args, message", [
    (["resnet50", "-o", "x.jpg"], "cannot tell the format"),
    (["resnet50", "--depth", "2", "--expand"], "exclude each other"),
    (["resnet50", "--unfold", "layer9"], "no group 'layer9'"),
    (["resnet5O"], "unknown model"),
])
def test_cli_errors(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run("diagram", *args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_cli_without_dot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run("diagram", "lenet")
    assert result.exit_code == 2
    assert "archviz: error:" in result.stderr and "apt-get install graphviz" in result.stderr
    assert "-o NAME.dot" in result.stderr and not (tmp_path / "reports" / "lenet.svg").exists()
    assert run("diagram", "lenet", "-o", "lenet.dot").exit_code == 0
    assert (tmp_path / "lenet.dot").read_text().startswith('digraph "lenet"')


@needs_dot
def test_cli_default_name_and_formats(tmp_path, monkeypatch, write_spec):
    monkeypatch.chdir(tmp_path)
    result = run("diagram", "resnet152")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "reports/resnet152.svg"  # where report writes reports/resnet152.html
    ET.fromstring((tmp_path / "reports" / "resnet152.svg").read_bytes())
    spec = write_spec("name: renamed\ninput: [1, 8, 8]\nlayers:\n  - flatten\n", name="my_net.yaml")
    assert run("diagram", spec).stdout.strip() == "reports/my_net.svg"
    assert run("diagram", "lenet", "-o", "l.PNG").exit_code == 0
    assert (tmp_path / "l.PNG").read_bytes().startswith(b"\x89PNG")


def test_diagram_path_imports_no_graphviz():
    code = ("import sys, archviz; from archviz.diagram import collect, to_dot; "
            "to_dot(collect(archviz.inspect('resnet50'))); import archviz.cli; "
            "assert 'graphviz' not in sys.modules, 'graphviz imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_node_lines():
    node = default("resnet152").node("layer3.1..layer3.35")
    assert node.lines[0] == "layer3.1 ... layer3.35  bottleneck x35"
    assert node.lines[2] == "1024x14x14" and node.lines[3].endswith("350 layers")


@pytest.mark.parametrize("cost", ["macs", "params", "memory", "time"])
def test_boxes_filled_by_their_share_of_the_largest_cost(cost):
    """--color-by: the box with the largest cost gets the darkest step, a box with none stays white, and the legend
    names the cost and the largest value."""
    from archviz.diagram import Cost, collect, to_dot
    from archviz.diagram.dot import COST_PALETTE, cost_of

    r = archviz.inspect("resnet18", device="h100")
    diagram = collect(r)
    text = to_dot(diagram, cost=cost)
    largest = max(diagram.nodes, key=lambda node: cost_of(node, Cost(cost)))
    assert re.search(rf'"{re.escape(largest.id)}" \[[^\n]*fillcolor="{COST_PALETTE[-1]}"', text)
    assert re.search(r'"flatten" \[[^\n]*fillcolor="#ffffff"', text) or cost in ("memory", "time")
    assert "share of the largest box" in text


def test_colouring_by_time_needs_a_device():
    from archviz.diagram import collect, to_dot

    with pytest.raises(ArchvizError, match="needs a device"):
        to_dot(collect(archviz.inspect("lenet")), cost="time")
    result = CliRunner().invoke(app, ["diagram", "lenet", "--color-by", "time", "-o", "x.svg"])
    assert result.exit_code == 2 and "--device" in result.output


def test_the_cli_cost_choices_are_the_diagrams():
    from archviz.cli import CostChoice
    from archviz.diagram import Cost

    assert [c.value for c in CostChoice] == [c.value for c in Cost]
