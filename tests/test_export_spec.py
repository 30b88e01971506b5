"""`archviz export-spec`: graph_to_spec() writes any graph as a spec whose validate() gives the same graph.

Round trips of every zoo model, of graphs only `from:`, `shares:` and `name: .` can say (growing concatenations,
opaque layers of several inputs, tied weights), and of traced torchvision models; the text's readability (blocks,
repeats, no default arguments); the errors of the new keys, each naming the file, line and layer.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

import archviz
from archviz.cli import app
from archviz.errors import ArchvizError, SpecError
from archviz.graph.ir import Graph
from archviz.graph.structure import ExportError
from archviz.ops import get_op
from archviz.render.spec_yaml import canonical_attrs, graph_to_spec
from archviz.spec.schema import spec_schema
from archviz.spec.yaml_loader import load_yaml_text


def export_and_load(graph: Graph, tmp_path) -> tuple[str, Graph]:
    text = graph_to_spec(graph, when=None)
    path = tmp_path / f"{re.sub(r'[^A-Za-z0-9_]+', '_', graph.name)}.yaml"
    path.write_text(text)
    return text, archviz.load(path)


def assert_same_graph(source: Graph, back: Graph, *, exact: bool = True) -> None:
    """Layer for layer: name, op, attributes, inputs, shapes, tied weights, note; params and MACs by formula."""
    assert [n.name for n in back.nodes] == [n.name for n in source.nodes]
    assert back.input_shape == source.input_shape and back.output == source.output
    for a, b in zip(source.nodes, back.nodes):
        assert (b.op, b.inputs, b.in_shapes, b.out_shape, b.shares, b.note) == \
            (a.op, a.inputs, a.in_shapes, a.out_shape, a.shares, a.note), a.name
        if exact:
            assert dict(b.attrs) == dict(a.attrs), a.name
        else:  # a traced (3, 3) is written 3: the same layer
            assert canonical_attrs(b.op, b.attrs) == canonical_attrs(a.op, a.attrs), a.name
        op, shapes = get_op(a.op), list(a.in_shapes)
        assert op.params(b.attrs, shapes) == op.params(a.attrs, shapes), a.name
        assert op.macs(b.attrs, shapes, b.out_shape) == op.macs(a.attrs, shapes, a.out_shape), a.name


def layered_scopes(graph: Graph) -> set[str]:
    """Scope paths that hold layers (a spec's blocks and repeats come back as blocks, repeats or sequentials)."""
    names = {n.name for n in graph.nodes}
    return {s.path for s in graph.scopes if any(name.startswith(s.path + ".") for name in names)}


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(spec_schema())


# --- round trips: the zoo ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", archviz.zoo_names())
def test_zoo_model_round_trips(name, tmp_path, validator):
    graph = archviz.load(name)
    text, back = export_and_load(graph, tmp_path)
    assert_same_graph(graph, back)
    assert layered_scopes(back) == layered_scopes(graph)
    source, again = archviz.inspect(graph).totals, archviz.inspect(back).totals
    assert (again.params, again.buffers, again.macs, again.other_ops, again.peak_activation_bytes) == \
        (source.params, source.buffers, source.macs, source.other_ops, source.peak_activation_bytes)
    assert [error.message for error in validator.iter_errors(load_yaml_text(text))] == []
    assert graph_to_spec(back, when=None).split("\n", 2)[2] == text.split("\n", 2)[2]  # a fixed point


# --- round trips: graphs only the new keys can write -------------------------------------------------------

DENSE = """\
    # DenseNet's growing concatenations: each layer reads all earlier outputs of its block
    name: dense
    input: [8, 16, 16]
    blocks:
      dense_layer:
        params: {growth: 4}
        layers:
          - batchnorm2d
          - relu
          - conv2d: {out_channels: $growth, kernel_size: 3, padding: 1, bias: false}
            name: conv
    layers:
      - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
        name: stem
      - sequential:
          - dense_layer: {}
            name: layer1
          - concat: {}
            from: [stem, layer1.conv]
          - dense_layer: {}
            name: layer2
          - concat: {}
            from: [stem, layer1.conv, layer2.conv]
            name: out
        name: block
      - global_avgpool2d
"""

OPAQUE = """\
    name: opaque_net
    input: [3, 8, 8]
    layers:
      - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
        name: conv
      - opaque: {target: torch.nn.GELU, out_shape: [4, 8, 8]}
        name: gelu
      - opaque: {target: my.fuse, out_shape: [4, 8, 8], params: 12, buffers: 3}
        from: [conv, gelu, input]
        name: fuse
      - relu
"""

TIED = (Path(__file__).parent / "data" / "tied.yaml").read_text()  # shared with test_profile.py

CROSSING = """\
    # inputs that are neither the previous output nor a branch: a U-Net-like skip across groups, a concat of
    # branches in the other order, and a branch no join closes (a side output)
    name: crossing
    input: [3, 16, 16]
    layers:
      - sequential:
          - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
          - relu
        name: down
      - maxpool2d: {kernel_size: 2}
        name: pool
      - conv2d: {out_channels: 8, kernel_size: 1}
        name: side
      - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
        from: pool
        name: mid
      - concat: {}
        from: [mid, side]
        name: swapped
      - conv2d: {out_channels: 8, kernel_size: 1}
        name: squeeze
      - adaptive_avgpool2d: {output_size: 16}
        name: up
      - add: {}
        from: [up, down.1, up]
        name: skip
"""


@pytest.mark.parametrize("text", [DENSE, OPAQUE, TIED, CROSSING], ids=["dense", "opaque", "tied", "crossing"])
def test_graphs_of_the_new_keys_round_trip(text, write_spec, tmp_path, validator):
    graph = archviz.load(write_spec(text))
    exported, back = export_and_load(graph, tmp_path)
    assert_same_graph(graph, back)
    assert [error.message for error in validator.iter_errors(load_yaml_text(exported))] == []


def test_growing_concatenations_are_written_with_from(write_spec, tmp_path):
    text, _ = export_and_load(archviz.load(write_spec(DENSE)), tmp_path)
    assert "from: [stem, layer1.conv, layer2.conv]" in text  # names relative to the group, outward
    assert "dense_layer: {}" in text  # the source's block, used twice, with its name


def test_branches_in_another_order_and_side_outputs_are_named(write_spec, tmp_path):
    text, _ = export_and_load(archviz.load(write_spec(CROSSING)), tmp_path)
    assert "from: [mid, side]" in text and "from: [up, down.1, up]" in text
    assert "from: pool" in text  # after the side output `side`, mid reads pool again


def test_tied_weights_are_counted_once_and_built_once(write_spec, tmp_path):
    torch = pytest.importorskip("torch")
    from archviz.torch_build import to_torch, weight_elements

    graph = archviz.load(write_spec(TIED))
    assert [n.shares for n in graph.nodes if n.shares] == ["conv1", "conv1"]  # the owner, through conv2
    report = archviz.inspect(graph)
    conv = 4 * 4 * 9 + 4
    assert report.totals.params == conv + (4 * 12 * 12 + 1) * 10 == weight_elements(graph)
    model = to_torch(graph)
    assert model.conv2 is model.conv1  # the same arguments: the same module
    assert model.wide is not model.conv1 and model.wide.weight is model.conv1.weight  # other padding: tied
    assert sum(p.numel() for p in model.parameters()) == report.totals.params
    assert model(torch.randn(2, 4, 12, 12)).shape == (2, 10)
    _, back = export_and_load(graph, tmp_path)
    assert archviz.inspect(back).totals.params == report.totals.params


# --- readability --------------------------------------------------------------------------------------------

def test_resnet50_is_blocks_with_repeats(tmp_path):
    text = graph_to_spec(archviz.load("resnet50"), when=None)
    assert len(text.splitlines()) < 110
    blocks = load_yaml_text(text)["blocks"]
    assert set(blocks) == {"bottleneck", "bottleneck_downsample"}
    assert blocks["bottleneck"]["params"] == {"planes": "required"}  # the spec's own parameter name
    assert "conv2d: {out_channels: $planes * 4, kernel_size: 1, bias: false}" in text
    assert "- bottleneck: {planes: 256}\n        repeat: 5\n" in text
    assert "bottleneck_downsample: {planes: 128, stride: 2}" in text


def test_googlenet_is_one_inception_block_used_nine_times():
    text = graph_to_spec(archviz.load("googlenet"), when=None)
    assert len(text.splitlines()) < 90
    assert text.count("- inception: {ch1x1:") == 9
    assert len(re.findall(r"^  \w+:$", text, flags=re.M)) == 2  # blocks: basic_conv and inception


def test_only_arguments_that_differ_from_the_default_are_written():
    text = graph_to_spec(archviz.load("resnet18"), when=None)
    for default in ("dilation", "groups", "in_channels", "num_features", "eps", "momentum", "stride: 1,", "padding: 0"):
        assert default not in text
    assert "- maxpool2d: {kernel_size: 3, stride: 2, padding: 1}" in text


def test_export_of_resnet18_reads_as_written(golden):
    golden("resnet18.export-spec.yaml", graph_to_spec(archviz.load("resnet18"), when=None))


def test_header_says_where_and_when():
    from datetime import datetime, timezone

    text = graph_to_spec(archviz.load("lenet"), origin="specs/lenet.yaml",
                         when=datetime(2025, 1, 2, 3, 4, tzinfo=timezone.utc))
    assert text.startswith("# Exported by `archviz export-spec` from specs/lenet.yaml on 2025-01-02 03:04 UTC.\n")


# --- what cannot be written -----------------------------------------------------------------------------

def renamed(graph: Graph, names: dict[str, str], *, output: str | None = None) -> Graph:
    """The graph with layers renamed (and the inputs that read them), or another output."""
    nodes = tuple(
        dataclasses.replace(n, name=names.get(n.name, n.name), inputs=tuple(names.get(i, i) for i in n.inputs))
        for n in graph.nodes)
    return dataclasses.replace(graph, nodes=nodes, output=output or names.get(graph.output, graph.output))


def test_a_group_whose_layers_are_apart_is_refused():
    graph = renamed(archviz.load("lenet"), {"conv1": "block.conv1", "pool1": "block.pool1"})
    with pytest.raises(ExportError, match="the layers of group 'block' are not consecutive"):
        graph_to_spec(graph)


def test_a_layer_whose_path_is_also_a_group_is_refused():
    graph = renamed(archviz.load("lenet"), {"conv1": "stem", "tanh1": "stem.act"})
    with pytest.raises(ExportError, match="'stem' is both a layer and the group of layer 'stem.act'"):
        graph_to_spec(graph)


def test_a_name_a_spec_cannot_hold_is_refused():
    graph = renamed(archviz.load("lenet"), {"conv2": "conv 2"})
    with pytest.raises(ExportError, match="'conv 2'.*only letters, digits, '_' and '-'"):
        graph_to_spec(graph)


def test_an_output_that_is_not_the_last_layer_is_refused():
    graph = renamed(archviz.load("lenet"), {}, output="fc2")
    with pytest.raises(ExportError, match="the output of lenet is 'fc2', not its last layer 'fc3'"):
        graph_to_spec(graph)


# --- the new keys in specs ---------------------------------------------------------------------------------

def test_from_finds_names_in_the_group_first_then_outward(write_spec):
    graph = archviz.load(write_spec("""\
        input: [3, 8, 8]
        layers:
          - conv2d: {out_channels: 4, kernel_size: 1}
            name: conv
          - sequential:
              - conv2d: {out_channels: 4, kernel_size: 1}
                name: conv
              - relu: {}
                name: a
              - relu: {}
                from: conv
                name: b
              - relu: {}
                from: outer.conv
                name: c
              - relu: {}
                from: input
                name: d
            name: outer
    """))
    assert [graph.node(f"outer.{n}").inputs for n in "abcd"] == [("outer.conv",), ("outer.conv",), ("outer.conv",),
                                                                  ("input",)]


def test_mul_takes_branches(write_spec):
    graph = archviz.load(write_spec("""\
        input: [8, 4, 4]
        layers:
          - mul:
              - []
              - - global_avgpool2d
                - conv2d: {out_channels: 8, kernel_size: 1}
                - sigmoid
    """))
    assert graph.nodes[-1].name == "mul" and graph.nodes[-1].inputs == ("input", "2")


def test_names_may_hold_dashes_as_torch_names_do(write_spec):
    graph = archviz.load(write_spec("""\
        input: [3, 8, 8]
        layers:
          - sequential: [relu]
            name: block1-0
          - relu: {}
            from: block1-0.0
    """))
    assert graph.nodes[1].inputs == ("block1-0.0",)


# --- errors in the new keys: file, line, layer, the bad value -----------------------------------------------

def spec_error(write_spec, text: str) -> tuple[str, str]:
    path = write_spec(text)
    with pytest.raises(SpecError) as info:
        archviz.load(path)
    return str(path), str(info.value)


HEAD = "input: [3, 8, 8]\nlayers:\n      - conv2d: {out_channels: 3, kernel_size: 1}\n        name: conv1\n"
FROM_ERRORS = [
    ("      - relu: {}\n        from: conv9\n        name: act\n",
     ":6: act: `from: conv9`: no earlier layer 'conv9' (did you mean: conv1?"),
    ("      - relu: {}\n        from: later\n      - relu: {}\n        name: later\n",
     ":6: layer 1: `from: later`: no earlier layer 'later'"),
    ("      - relu: {}\n        from: [conv1, input]\n        name: act\n",
     ":5: act: relu takes 1 input, but `from:` names 2"),
    ("      - add: [[], []]\n        from: [conv1, input]\n",
     ":5: add: `from:` names 2 layers, which are the inputs of `add`: give it no branches too"),
    ("      - add: {}\n        name: sum\n", ":5: sum: `add` without branches needs `from:`"),
    ("      - relu: {}\n        from: [conv1, conv1]\n        repeat: 2\n",
     ":5: `from:` names 2 layers, so the entry cannot repeat"),
    ("      - sequential: [relu]\n        from: [conv1, input]\n        name: grp\n",
     ":5: grp: `from:` names 2 layers, but a sequential takes one input"),
    ("      - relu: {}\n        from: []\n", ":6: layer 1: `from:` needs a layer name or a list of them, got []"),
    ("      - relu: {}\n        from: 3\n", ":6: layer 1: `from:` takes a layer name, got 3"),
]


@pytest.mark.parametrize("entry, expected", FROM_ERRORS, ids=[
    "unknown", "later", "too-many-inputs", "list-and-branches", "join-without-inputs", "repeat", "sequential",
    "empty", "not-a-name"])
def test_from_errors(write_spec, entry, expected):
    file, message = spec_error(write_spec, HEAD + entry)
    assert message.startswith(file) and expected in message, message


SHARES_ERRORS = [
    ("      - relu: {}\n        shares: conv9\n",
     ":6: layer 1: `shares: conv9`: no earlier layer 'conv9' (did you mean: conv1?"),
    ("      - linear: {out_features: 3}\n        shares: conv1\n        name: fc\n",
     ":6: fc: `shares: conv1`: conv1 is conv2d, not linear; only a layer of the same type can share its weights"),
    ("      - conv2d: {out_channels: 5, kernel_size: 1}\n        shares: conv1\n        name: conv2\n",
     ":6: conv2: `shares: conv1`: the weights differ in shape: weight is 5x3x1x1 here but 3x3x1x1 in conv1"),
    ("      - sequential: [relu]\n        shares: conv1\n",
     ":6: `shares:` names the layer whose weights one layer reuses; a sequential has no weights of its own"),
    ("      - conv2d: {out_channels: 3, kernel_size: 1}\n        shares: input\n        name: conv2\n",
     ":6: conv2: `shares: input`: the input has no weights to share"),
]


@pytest.mark.parametrize("entry, expected", SHARES_ERRORS, ids=["unknown", "other-op", "other-shape", "group", "input"])
def test_shares_errors(write_spec, entry, expected):
    file, message = spec_error(write_spec, HEAD + entry)
    assert message.startswith(file) and expected in message, message


def test_a_name_with_a_dot_is_refused(write_spec):
    file, message = spec_error(write_spec, "input: [3, 8, 8]\nlayers:\n  - relu: {}\n    name: a.b\n")
    assert message.startswith(f"{file}:3:") and "layer name 'a.b' may hold only ASCII letters, digits, '_' and '-'" in message


# --- the command ------------------------------------------------------------------------------------------

def test_cli_writes_stdout_or_a_file(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export-spec", "resnet18"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Exported by `archviz export-spec` from resnet18 on ")
    target = tmp_path / "out" / "resnet18.yaml"
    result = runner.invoke(app, ["export-spec", "resnet18", "-o", str(target)])
    assert result.exit_code == 0 and result.stdout.strip() == str(target)
    again = runner.invoke(app, ["export-spec", "resnet18"]).stdout
    assert target.read_text().split("\n", 1)[1] == again.split("\n", 1)[1]  # the same text, but for the time
    assert archviz.inspect(str(target)).totals.macs == archviz.inspect("resnet18").totals.macs


@pytest.mark.parametrize("args, expected", [
    (["export-spec", "resnet81"], "unknown model 'resnet81'"),
    (["export-spec", "specs/resnet18.yaml", "-o", "specs/resnet18.yaml"], "would replace the model read"),
])
def test_cli_bad_input_is_one_line_and_status_2(args, expected, monkeypatch):

    monkeypatch.chdir(Path(__file__).parent.parent)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- graphs read from ONNX files -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_graph_read_from_onnx_round_trips(name, tmp_path):
    pytest.importorskip("onnx")
    from archviz.onnx import export_onnx

    path = export_onnx(archviz.load(name), tmp_path / f"{name}.onnx")
    graph = archviz.load(path)
    _, back = export_and_load(graph, tmp_path)
    assert_same_graph(graph, back, exact=False)


# --- traced torchvision models ----------------------------------------------------------------------------

# what each shows: the zoo's classics; inception joins inside joins; DenseNet's growing concatenations; a
# squeeze-excitation mul; RegNet's block1-0 names; shuffles (reshape, permute, narrow); layer norms and learned
# scales; opaque layers (attention)
TRACED = ["resnet18", "googlenet", "inception_v3", "mobilenet_v2", "densenet121", "efficientnet_b0",
          "regnet_x_400mf", "shufflenet_v2_x0_5", "convnext_tiny", "squeezenet1_0", "vit_b_16", "swin_t"]


@pytest.fixture(scope="module")
def traced():
    """archviz.load of torchvision:NAME, or a skip where torchvision or the tracer is missing."""
    pytest.importorskip("torchvision")
    try:
        archviz.load("torchvision:resnet18")
    except ArchvizError as error:
        pytest.skip(f"tracing torchvision models does not work here: {error}")
    return lambda name: archviz.load(f"torchvision:{name}")


@pytest.mark.parametrize("name", TRACED)
def test_traced_torchvision_model_round_trips(name, traced, tmp_path, validator):
    graph = traced(name)
    text, back = export_and_load(graph, tmp_path)
    assert_same_graph(graph, back, exact=False)
    assert [error.message for error in validator.iter_errors(load_yaml_text(text))] == []
    if name == "resnet18":
        assert "- basic_block: {channels: 64}\n    name: layer1\n    repeat: 2" in text
    if name == "googlenet":
        assert text.count("- inception: {") == 9
    if name == "vit_b_16":
        assert "- opaque: {target:" in text
