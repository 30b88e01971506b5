"""Formula analysis: totals, batch and dtype scaling, receptive fields, peak memory, folding, explanations."""

from __future__ import annotations

import archviz
from archviz.analysis.explain import explain_layer
from archviz.analysis.fold import rows

CHAIN = """
    name: chain
    input: [3, 32, 32]
    layers:
      - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
        name: conv1
      - relu: {inplace: true}
      - maxpool2d: {kernel_size: 2}
        name: pool
      - conv2d: {out_channels: 16, kernel_size: 3, stride: 2, dilation: 2, bias: false}
        name: conv2
      - flatten
      - linear: {out_features: 10}
        name: fc
"""

RESIDUAL = """
    name: residual
    input: [4, 8, 8]
    blocks:
      basic:
        params: {width: required, stride: 1}
        layers:
          - add:
              - - conv2d: {out_channels: $width, kernel_size: 3, stride: $stride, padding: 1, bias: false}
                  name: conv1
                - batchnorm2d: {}
                  name: bn1
              - - conv2d: {out_channels: $width, kernel_size: 1, stride: $stride, bias: false}
                  name: downsample
                  if: $stride != 1 or in_channels != width
          - relu
            # a bare name cannot carry `name:`; this relu gets the next index
    layers:
      - basic: {width: 4}
        name: block1
      - basic: {width: 8, stride: 2}
        name: block2
"""


def test_totals_are_the_sum_of_the_layers(write_spec):
    report = archviz.inspect(write_spec(CHAIN))
    assert report.totals.params == sum(s.params for s in report.layers)
    assert report.totals.macs == sum(s.macs for s in report.layers)
    assert report.totals.flops == 2 * report.totals.macs
    assert report.totals.activation_bytes == sum(s.activation_bytes for s in report.layers)


def test_conv_figures_by_formula(write_spec):
    report = archviz.inspect(write_spec(CHAIN))
    conv1, conv2 = report.layer("conv1"), report.layer("conv2")
    assert conv1.out_shape == (8, 32, 32)
    assert conv1.params == (3 * 3 * 3 + 1) * 8
    assert conv1.macs == 32 * 32 * 8 * 3 * 3 * 3
    # dilation 2 makes the 3x3 kernel span 5: floor((16 - 5) / 2) + 1 = 6
    assert conv2.out_shape == (16, 6, 6)
    assert conv2.params == 3 * 3 * 8 * 16
    assert report.layer("fc").params == (16 * 6 * 6 + 1) * 10


def test_batch_scales_costs_not_params(write_spec):
    one = archviz.inspect(write_spec(CHAIN))
    eight = archviz.inspect(write_spec(CHAIN), batch=8)
    assert eight.totals.params == one.totals.params
    assert eight.totals.macs == 8 * one.totals.macs
    assert eight.totals.macs_per_image == one.totals.macs
    assert eight.totals.peak_activation_bytes == 8 * one.totals.peak_activation_bytes


def test_dtype_sets_bytes(write_spec):
    f32 = archviz.inspect(write_spec(CHAIN))
    f16 = archviz.inspect(write_spec(CHAIN), dtype="float16")
    assert f16.totals.param_bytes * 2 == f32.totals.param_bytes
    assert f16.totals.activation_bytes * 2 == f32.totals.activation_bytes


def test_receptive_field_chain(write_spec):
    report = archviz.inspect(write_spec(CHAIN))
    assert report.layer("conv1").receptive_field == (3, 3)
    assert report.layer("pool").receptive_field == (4, 4)  # 3 + (2 - 1)*1
    assert report.layer("pool").jump == (2, 2)
    assert report.layer("conv2").receptive_field == (12, 12)  # 4 + (5 - 1)*2
    assert report.layer("conv2").jump == (4, 4)


def test_peak_memory_counts_live_tensors_only(write_spec):
    report = archviz.inspect(write_spec(CHAIN))
    image, conv1, pooled = 3 * 32 * 32, 8 * 32 * 32, 8 * 16 * 16
    # the caller holds the input all along; at conv1 its output is alive too; the in-place relu adds nothing;
    # at the pool, conv1's buffer, the pool's output and, while it runs, its int64 argmax per output (8 bytes each)
    at_pool = 4 * (image + conv1 + pooled) + 8 * pooled
    assert report.totals.peak_activation_bytes == max(4 * (image + conv1), at_pool) == at_pool
    assert report.totals.peak_at == "pool"
    assert report.totals.peak_activation_bytes < report.totals.activation_bytes


def test_residual_graph(write_spec):
    report = archviz.inspect(write_spec(RESIDUAL))
    names = [s.name for s in report.layers]
    assert "block1.downsample" not in names  # 4 channels in, width 4, stride 1: identity shortcut
    assert "block2.downsample" in names
    assert report.layer("block2.add").out_shape == (8, 4, 4)
    assert report.graph.node("block2.add").inputs == ("block2.bn1", "block2.downsample")
    # the largest field over both paths: block1's 3x3 conv (3), then block2's 3x3 conv: 3 + (3 - 1)*1 = 5
    assert report.layer("block2.downsample").receptive_field == (3, 3)
    assert report.layer("block2.add").receptive_field == (5, 5)
    assert report.totals.depth == 2


def test_fold_by_depth(write_spec):
    report = archviz.inspect(write_spec(RESIDUAL))
    folded = rows(report, depth=1)
    assert [r.name for r in folded] == ["block1", "block2"]
    assert sum(r.params for r in folded) == report.totals.params
    full = rows(report)
    assert sum(r.params for r in full if not r.is_group) == report.totals.params


def test_explain_shows_the_arithmetic(write_spec):
    report = archviz.inspect(write_spec(CHAIN))
    steps = {s.quantity: s for s in explain_layer(report, "conv2").steps}
    assert steps["output height"].arithmetic == "(16 - (2*(3-1)+1) + 2*0)/2 + 1 = 6 (rounded down)"
    assert steps["params"].arithmetic == "(3*3*8)*16"
    assert steps["receptive field"].arithmetic == "4 + (5 - 1)*2"


def test_explain_accepts_keras_names(write_spec):
    report = archviz.inspect(write_spec(CHAIN))
    assert explain_layer(report, "conv2d_2").layer.name == "conv2"
    assert explain_layer(report, "dense_1").layer.name == "fc"
