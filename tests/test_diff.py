"""`archviz diff`: the identical verdict decided layer by layer, stages cut at the models' own parts, and the
receptive field of the last spatial layer as the headline (inspect and diff)."""

from __future__ import annotations

import json

import archviz
from archviz.analysis.diff import IDENTICAL, diff_reports, first_difference, stages
from archviz.analysis.receptive import receptive_fields
from archviz.analysis.report import analyze
from archviz.cli import app
from archviz.render.diff import diff_dict, stage_rows


def run(*args):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [str(a) for a in args])

TWO_ACTIVATIONS = """
    name: {name}
    input: [3, 16, 16]
    layers:
      - conv2d: {{out_channels: 4, kernel_size: 3, padding: 1}}
        name: conv1
      - {activation}
      - flatten
      - linear: {{out_features: 5}}
        name: fc
"""


def _report(name: str):
    return analyze(archviz.load(name))


def test_a_model_and_itself_are_identical():
    diff = diff_reports(_report("resnet50"), _report("resnet50"))
    assert diff.identical and diff.difference is None
    assert IDENTICAL in diff.summary[0]
    assert not any("the same" in line or " than " in line for line in diff.summary)


def test_equal_totals_are_not_identity(write_spec):
    relu = archviz.inspect(write_spec(TWO_ACTIVATIONS.format(name="a", activation="relu"), name="a.yaml"))
    tanh = archviz.inspect(write_spec(TWO_ACTIVATIONS.format(name="b", activation="tanh"), name="b.yaml"))
    assert (relu.totals.params, relu.totals.macs) == (tanh.totals.params, tanh.totals.macs)
    diff = diff_reports(relu, tanh)
    assert not diff.identical
    assert diff.difference.startswith("layer 2: ")
    assert any(line.startswith("Not identical, though the totals agree") for line in diff.summary)
    assert any("as many parameters as" in line for line in diff.summary)


def test_first_difference_names_the_layer_count():
    assert first_difference(_report("vgg16"), _report("vgg19")) == "vgg16 has 40 layers, vgg19 46"


def test_resnet_stages_end_at_its_own_groups():
    by_name = {stage.name: stage for stage in stages(_report("resnet50"))}
    assert list(by_name) == ["conv1..maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool..fc"]
    assert (by_name["layer1"].out_channels, by_name["layer1"].resolution) == (256, (56, 56))
    assert (by_name["layer2"].out_channels, by_name["layer2"].resolution) == (512, (28, 28))
    assert by_name["avgpool..fc"].resolution is None


def test_vgg_stages_are_its_blocks_each_ending_at_a_max_pool():
    found = stages(_report("vgg16"))
    assert [stage.name for stage in found] == ["features.0..4", "features.5..9", "features.10..16",
                                               "features.17..23", "features.24..30", "avgpool..classifier.6"]
    assert [stage.resolution for stage in found[:5]] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]


def test_a_model_without_groups_falls_back_to_its_layers():
    assert [stage.name for stage in stages(_report("lenet"))] == ["conv1..pool1", "conv2..pool2", "flatten..fc3"]


def test_stages_align_by_output_size():
    diff = diff_reports(_report("resnet18"), _report("vgg16"))
    names = [(a and a.name, b and b.name) for a, b in diff.stages]
    assert names[0] == (None, "features.0..4")
    assert ("layer2", "features.10..16") in names and ("layer4", "features.24..30") in names
    assert names[-1] == ("avgpool..fc", "avgpool..classifier.6")
    assert len(stage_rows(diff)[0][0]) == 8  # the HTML's columns, without the terminal's parts


def test_diff_json_says_whether_identical():
    data = diff_dict(diff_reports(_report("vgg16"), _report("vgg16")))
    assert data["identical"] is True and data["difference"] is None
    assert data["stages"][0][0]["parts"] == "features.0..4"


def test_cli_diff_says_identical():
    result = run("diff", "resnet18", "resnet18")
    assert result.exit_code == 0, result.output
    assert IDENTICAL in result.stdout
    assert "the same" not in result.stdout and "same parameters than" not in result.stdout


def test_cli_diff_json_not_identical():
    result = run("diff", "lenet", "alexnet", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["identical"] is False and data["difference"].startswith("the inputs differ")


# published receptive fields (Araujo et al. 2019, "Computing receptive fields of convolutional neural networks",
# table 1), at the last spatial layer
PUBLISHED_FIELDS = {"alexnet": 195, "vgg16": 212, "vgg19": 268}


def test_headline_field_is_the_last_spatial_layers():
    for name, published in PUBLISHED_FIELDS.items():
        spatial = _report(name).totals.last_spatial_field
        assert spatial.size == (published, published), name
        assert spatial.covers_input and spatial.merged_at == "flatten"
    vgg = _report("vgg16").totals.last_spatial_field
    assert (vgg.layer, vgg.out_shape) == ("features.30", (512, 7, 7))  # the 7x7 adaptive pool after it is passed over


def test_resnet50_field_is_that_of_torchvisions_layout():
    """The published 483 px is ResNet-50 as He et al. built it, stride 2 in each stage's first 1x1 convolution:
    11 + 3*8 (layer1) + 4*16 + 6*32 + 3*64 = 483. torchvision's (v1.5) moves the stride to the 3x3 convolution, so
    each stage's first 3x3 runs on the finer grid, widening by half as much: 483 - (8 + 16 + 32) = 427."""
    spatial = _report("resnet50").totals.last_spatial_field
    assert (spatial.layer, spatial.size) == ("layer4.2.relu3", (427, 427))
    assert (spatial.merged_at, spatial.merged_by) == ("avgpool", "global pooling")
    assert 11 + 3 * 8 + 4 * 16 + 6 * 32 + 3 * 64 - (8 + 16 + 32) == 427


def test_fields_never_shrink_along_a_path():
    """A layer's field is the largest over the paths into it: at least each input's, and via names the widest."""
    for name in ("resnet50", "googlenet"):
        graph = archviz.load(name)
        fields = receptive_fields(graph)
        for node in graph.nodes:
            here = fields[node.name]
            widest = max(fields[i].size[0] * fields[i].size[1] for i in node.inputs)
            assert all(here.size[k] >= fields[i].size[k] for i in node.inputs for k in (0, 1)), node.name
            via = fields[here.via]
            assert here.via in node.inputs and via.size[0] * via.size[1] == widest, node.name


def test_cli_inspect_headline_field():
    result = run("inspect", "vgg16", "--no-crosscheck")
    assert result.exit_code == 0, result.output
    assert "212 px at features.30 (512x7x7); after flattening every output sees the whole input" in result.stdout
    assert "404 pixels at the output" not in result.stdout


def test_inspect_json_keeps_the_layer_field_and_adds_the_headline():
    result = run("inspect", "resnet50", "--no-crosscheck", "--format", "json")
    data = json.loads(result.stdout)
    assert data["totals"]["last_spatial_field"]["layer"] == "layer4.2.relu3"
    assert data["totals"]["last_spatial_field"]["size"] == [427, 427]
    assert data["layers"][-1]["receptive_field"] == [619, 619]
    shortcut = next(layer for layer in data["layers"] if layer["name"] == "layer1.0.downsample.0")
    assert shortcut["receptive_field_via"] == "maxpool"


def test_the_layer_table_marks_a_field_on_another_path():
    result = run("inspect", "resnet50", "--no-crosscheck")
    rows = [line for line in result.stdout.splitlines() if line.rstrip().endswith("*")]
    assert len(rows) == 4 and all("conv2d" in row and "1x1" in row for row in rows)  # the four downsample shortcuts
    assert "RF*: narrower than the layer above, on another path" in result.stdout
    assert "RF*" not in run("inspect", "vgg16", "--no-crosscheck").stdout
