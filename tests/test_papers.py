"""The papers' networks as published (issue 21 §1) and `archviz paper` (§2): each network's totals and per-layer rows
against the figures as printed, written as the source printed them (with their rounding, read by parse_printed);
our own expected values written as formulas. Then the verdicts and reasons `paper` gives for resnet50, inception_v3,
googlenet and vgg16, and `explain` of a group."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import archviz
from archviz.analysis.explain import GroupExplanation, explain
from archviz.analysis.papers import Verdict, classify, measure, paper
from archviz.cli import app
from archviz.errors import ArchvizError, SpecError
from archviz.graph.build import validate
from archviz.spec.model import read_spec_text
from archviz.spec.published import Quantity, parse_printed
from archviz.spec.zoo import load_spec, zoo_names

runner = CliRunner()


def within(computed: int, printed: str) -> bool:
    return classify(computed, parse_printed(printed)) != Verdict.DIFFERS


def params(model: str, layer: str | None = None) -> int:
    return measure(archviz.inspect(model), Quantity.PARAMS, layer=layer)


def macs(model: str, layer: str | None = None) -> int:
    return measure(archviz.inspect(model), Quantity.MACS, layer=layer)


# --- reading a figure as printed -----------------------------------------------------------------------------

@pytest.mark.parametrize("printed, inside, outside", [
    ("25,557,032", 25_557_032, 25_557_033),
    ("3.8 x 10^9", 3_849_000_000, 3_857_973_248),
    ("15.3 billion", 15_346_630_656, 15_470_264_320),
    ("2.7K", 2_749, 9_472),
    ("60,000", 60_840, 65_001),          # trailing zeros: to the nearest ten thousand
    ("102.23 MB", 102_228_128, 102_440_608),
    ("138 million", 138_357_544, 138_500_001),
])
def test_a_printed_figure_carries_its_rounding(printed, inside, outside):
    assert within(inside, printed) and not within(outside, printed)


def test_a_figure_marked_exact_is_held_to_every_digit():
    """LeNet-5's "60,000 trainable free parameters" is the sum of its per-layer counts, not a rounding: archviz's
    60,840 (the output units' 840 fixed centres counted) differs from it, and says so."""
    from archviz.analysis.papers import paper

    total = next(row for row in paper("lenet5_1998").rows if row.layer is None)
    assert total.computed == 60_840 and total.verdict == Verdict.DIFFERS


def test_exact_only_where_equal():
    assert classify(760, parse_printed("760")) == Verdict.EXACT
    assert classify(4_089_184_256, parse_printed("4.09 G")) == Verdict.ROUNDING


@pytest.mark.parametrize("entry, message", [
    ("{quantity: params, value: 12}", "needs 'source'"),
    ("{quantity: parameters, value: 12, source: x}", "not a valid Quantity"),
    ("{quantity: params, value: twelve, source: x}", "not a number as printed"),
    ("{quantity: params, value: 12, source: x, sorce: y}", "unknown key 'sorce'"),
    ("{quantity: params, value: 12, source: x, exact: yes please}", "exact must be true or false"),
    ("{quantity: params, value: 2.5, source: x, exact: true}", "is not a whole number"),
])
def test_a_bad_published_entry_is_one_spec_error(entry, message):
    with pytest.raises(SpecError, match=message):
        read_spec_text(f"name: t\ninput: [1, 4, 4]\nlayers: [flatten]\npublished:\n  - {entry}\n", origin="t.yaml")


# --- §1: the papers' networks --------------------------------------------------------------------------------

def test_lenet5_1998_layer_by_layer_as_the_paper_counts():
    """LeCun et al. 1998, section II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164; the RBF output 84*10."""
    expected = {
        "c1": (5*5*1 + 1)*6,                                 # "156 trainable parameters"
        "s2": 6 + 6,                                         # a coefficient and a bias per map: "12"
        "c3": (25*3 + 1)*6 + (25*4 + 1)*9 + (25*6 + 1),      # Table I's connections: "1,516"
        "s4": 16 + 16,                                       # "32"
        "c5": (5*5*16 + 1)*120,                              # "48,120 trainable connections"
        "f6": (120 + 1)*84,                                  # "10,164"
        "output_rbf": 84*10,                                 # Euclidean RBF units, no bias
    }
    printed = {"c1": "156", "s2": "12", "c3": "1,516", "s4": "32", "c5": "48,120", "f6": "10,164"}
    for layer, gt in expected.items():
        assert params("lenet5_1998", layer) == gt
        if layer in printed:
            assert classify(gt, parse_printed(printed[layer])) == Verdict.EXACT
    total = params("lenet5_1998")
    assert total == sum(expected.values()) == 60_840 and within(total, "60,000")
    # "60,000 trainable free parameters" is exact: the printed per-layer counts, without the hand-set RBF centres
    assert sum(int(p.replace(",", "")) for p in printed.values()) == total - expected["output_rbf"] == 60_000


def test_lenet5_c3_connection_table():
    """C3 sees 3, 4 or 6 of S2's maps (Table I); its paper "connections" are its params at each of 10*10 positions."""
    graph = archviz.load("lenet5_1998")
    c3 = graph.node("c3")
    assert [len(maps) for maps in c3.attrs["connections"]] == [3]*6 + [4]*9 + [6]
    assert c3.out_shape == (16, 10, 10)
    stats = archviz.inspect("lenet5_1998").layer("c3")
    assert stats.macs == 10*10 * 25 * (3*6 + 4*9 + 6)
    assert stats.params * 10*10 == 151_600  # the paper's "151,600 connections"
    steps = {s.quantity: s for s in explain(archviz.inspect("lenet5_1998"), "c3").steps}
    assert steps["params"].value == "1,516" and "5*5*60 + 16" in steps["params"].arithmetic


def test_a_connection_table_must_name_input_maps_that_exist():
    spec = read_spec_text("name: t\ninput: [2, 6, 6]\nlayers:\n  - partial_conv2d: {kernel_size: 3, "
                          "connections: [[0, 1], [2]]}\n", origin="t.yaml")
    with pytest.raises(ArchvizError, match=r"connections\[1\] names input map 2"):
        validate(spec)


def test_alexnet_paper_two_towers():
    """Grouped conv2, conv4, conv5 (5x5x48, 3x3x192 kernels); the paper's neurons per layer."""
    report = archviz.inspect("alexnet_paper")
    gt = ((11*11*3 + 1)*96 + (5*5*48 + 1)*256 + (3*3*256 + 1)*384 + (3*3*192 + 1)*384 + (3*3*192 + 1)*256
          + (9216 + 1)*4096 + (4096 + 1)*4096 + (4096 + 1)*1000)
    assert report.totals.params == gt == 60_965_224 and within(gt, "60 million")
    neurons = "253,440-186,624-64,896-64,896-43,264-4096-4096-1000".split("-")  # section 3.5, as printed
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    ours = [measure(report, Quantity.OUTPUTS, layer=name) for name in layers]
    assert ours[0] == 55*55*96 != 253_440 == 55*48*96  # the paper's slip
    assert [classify(n, parse_printed(p)) for n, p in zip(ours[1:], neurons[1:])] == [Verdict.EXACT] * 7
    assert archviz.inspect("alexnet_paper_224").totals.params == gt
    assert archviz.load("alexnet_paper_224").node("conv1").out_shape == (96, 55, 55)


def test_googlenet_paper_table1_ops_and_aux():
    """Table 1's ops (multiply-adds), where they add up, within their rounding; the aux heads only with aux=true."""
    printed_ops = {"conv2": "360M", "inception3a": "128M", "inception3b": "304M", "inception4b": "88M",
                   "inception4c": "100M", "inception4d": "119M", "inception4e": "170M", "inception5b": "71M",
                   "fc": "1M"}
    for layer, printed in printed_ops.items():
        assert within(macs("googlenet_paper", layer), printed), layer
    assert macs("googlenet_paper", "inception3a") == 28*28*(192*64 + 192*96 + 9*96*128 + 192*16 + 25*16*32 + 192*32)
    assert params("googlenet_paper", "conv1") == (7*7*3 + 1)*64  # printed 2.7K: does not add up
    plain = archviz.inspect("googlenet_paper").totals.params
    aux = archviz.inspect("googlenet_paper", overrides={"aux": True}).totals.params
    head = (5 * 0 + (512 + 1)*128 + (528 + 1)*128 + 2*((2048 + 1)*1024 + (1024 + 1)*1000))
    assert aux - plain == head


@pytest.mark.parametrize("depth, printed", [(18, "1.8 x 10^9"), (101, "7.6 x 10^9"), (152, "11.3 x 10^9")])
def test_resnet_v1_flops_round_to_table1(depth, printed):
    assert within(macs(f"resnet{depth}_v1"), printed)


def test_resnet_v1_strides_the_first_1x1():
    v1, v15 = archviz.load("resnet50_v1"), archviz.load("resnet50")
    assert v1.node("layer2.0.conv1").out_shape == (128, 28, 28) and v15.node("layer2.0.conv1").out_shape == (128, 56, 56)
    assert params("resnet50_v1") == params("resnet50") == 25_557_032
    assert macs("resnet50") - macs("resnet50_v1") == 231_211_008
    assert macs("resnet18_v1") == macs("resnet18")  # basic blocks: v1 and v1.5 are one network


def test_resnet34_table1_is_option_a():
    """3.6 x 10^9: the 34-layer net without its three 1x1 projections (option A); with them it rounds to 3.7."""
    projections = 28*28*128*64 + 14*14*256*128 + 7*7*512*256
    assert not within(macs("resnet34_v1"), "3.6 x 10^9")
    assert within(macs("resnet34_v1") - projections, "3.6 x 10^9")


@pytest.mark.parametrize("model, printed", [("vgg11_lrn", "133 million"), ("vgg16_c", "134 million"),
                                            ("vgg11", "133 million"), ("vgg16", "138 million"),
                                            ("vgg19", "144 million")])
def test_vgg_table2_parameters(model, printed):
    assert within(params(model), printed)


def test_vgg16_c_has_1x1_convolutions():
    c = archviz.inspect("vgg16_c")
    ones = [s for s in c.layers if s.summary.startswith(("256 1x1", "512 1x1"))]
    assert [s.params for s in ones] == [(256 + 1)*256, (512 + 1)*512, (512 + 1)*512]


@pytest.mark.parametrize("model, layer, quantity, gt", [
    ("course_quiz", "conv", "out", (10, 32, 32)),
    ("course_quiz", None, "params", (5*5*3 + 1)*10),                  # "76 x 10 = 760"
    ("course_six_filters", "conv", "out", (6, 28, 28)),               # "28x28x6"
    ("course_mnist", "pool", "out", (10, 14, 14)),
    ("course_mnist", "fc", "params", (10*14*14 + 1)*200),             # "392,200"
])
def test_the_course_worked_networks(model, layer, quantity, gt):
    if quantity == "out":
        assert archviz.load(model).node(layer).out_shape == gt
    else:
        assert params(model, layer) == gt


def test_explain_shows_both_course_slips():
    report = archviz.inspect("alexnet")
    first, second = (explain(report, name).note for name in ("conv1", "fc6"))
    assert "34974" in first and "34,944" in first
    assert '"6 FC 9216"' in second and "4,096 units" in second


# --- §2: archviz paper ---------------------------------------------------------------------------------------

def rows(model: str):
    return paper(model).rows


def test_paper_resnet50():
    params_row, tv_flops, table1, memory = rows("resnet50")
    assert params_row.verdict == Verdict.EXACT and params_row.computed == 25_557_032
    assert tv_flops.verdict == Verdict.ROUNDING
    assert any("are multiply-adds" in r and "8,178,368,512" in r for r in tv_flops.reasons)  # 8.2 G FLOPs, 4.1 G MACs
    assert table1.verdict == Verdict.DIFFERS and table1.explained
    assert any(r.startswith("resnet50_v1: 3,857,973,248") for r in table1.reasons)
    assert any("v1.5" in r for r in table1.reasons)
    assert memory.verdict == Verdict.DIFFERS and memory.computed_text == "102.44 MB" and memory.explained
    assert any("buffers" in r and "102.23 MB (within the paper's rounding)" in r for r in memory.reasons)


def test_paper_inception_v3_aux_head():
    params_row, flops = rows("inception_v3")
    assert params_row.computed == 23_834_568 and params_row.verdict == Verdict.DIFFERS
    assert "inception_v3 --set aux_logits=true: 27,161,264 (27.2 M) (exact)" in params_row.reasons
    assert any("auxiliary head is not counted at inference" in r for r in params_row.reasons)
    assert flops.verdict == Verdict.ROUNDING


def test_paper_googlenet_and_its_table1():
    assert [r.verdict for r in rows("googlenet")] == [Verdict.EXACT, Verdict.ROUNDING]
    table = rows("googlenet_paper")
    inception3a = next(r for r in table if r.layer == "inception3a" and r.quantity == Quantity.PARAMS)
    assert inception3a.verdict == Verdict.DIFFERS
    assert any(r.startswith("its layers: branch1 12,352 + branch2 129,248") and r.endswith("= 163,696")
               for r in inception3a.reasons)
    budget = table[-1]
    assert budget.verdict == Verdict.DIFFERS and "googlenet: 1,498,376,192 (1.5 G) (within the paper's rounding)" \
        in budget.reasons


def test_paper_vgg16_counts_convolutions_only():
    row = next(r for r in rows("vgg16") if r.printed == "15.3 billion")
    assert row.verdict == Verdict.ROUNDING
    assert any("counts the convolutions only" in r and "(differs)" in r for r in row.reasons)


@pytest.mark.parametrize("name", [n for n in zoo_names() if load_spec(n).published])
def test_every_published_difference_has_a_reason(name):
    unexplained = [(r.layer, r.quantity.value, r.printed) for r in rows(name) if not r.explained]
    assert not unexplained


def test_paper_cli_text_and_json():
    result = runner.invoke(app, ["paper", "resnet50"])
    assert result.exit_code == 0, result.output
    assert "resnet50 against its published figures: 1 exact, 1 within the paper's rounding, 2 differs" in result.output
    result = runner.invoke(app, ["paper", "vgg16", "--format", "json"])
    data = json.loads(result.output)
    assert data["model"] == "vgg16" and {r["verdict"] for r in data["rows"]} <= {v.value for v in Verdict}


def test_paper_of_a_model_without_figures_is_one_error_line():
    result = runner.invoke(app, ["paper", "mlp"])
    assert result.exit_code == 2 and "has no published figures" in result.output


def test_explain_a_group_from_its_parts():
    explanation = explain(archviz.inspect("googlenet"), "inception3a")
    assert isinstance(explanation, GroupExplanation)
    steps = {s.quantity: s for s in explanation.steps}
    total = sum(p.params for p in explanation.parts)
    assert steps["params"].value == f"{total:,}" == f"{params('googlenet', 'inception3a'):,}"
    assert steps["params"].arithmetic.startswith("branch1 12,416 + branch2 129,472")
    result = runner.invoke(app, ["explain", "googlenet", "inception3a"])
    assert result.exit_code == 0 and "block inception" in result.output
