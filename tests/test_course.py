"""The course's figures, reproduced: its Keras tables layer by layer, its AlexNet listing, its quiz and worked examples.

Published figures are written as the course printed them (strings copied from the lecture notes); our own expected
values are written as formulas, fvcore style: `gt = (11*11*3 + 1)*96`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import pytest

import archviz
from archviz.ops import get_op
from archviz.ops.base import numel

# --- the course's Keras summaries, as printed (tab-separated) ------------------------------------------------

VGG16_TABLE = """\
conv2d_1 (Conv2D)	(None, 224, 224, 64)	1792
conv2d_2 (Conv2D)	(None, 224, 224, 64)	36928
max_pooling2d_1 (MaxPooling2D)	(None, 112, 112, 64)	0
conv2d_3 (Conv2D)	(None, 112, 112, 128)	73856
conv2d_4 (Conv2D)	(None, 112, 112, 128)	147584
max_pooling2d_2 (MaxPooling2D)	(None, 56, 56, 128)	0
conv2d_5 (Conv2D)	(None, 56, 56, 256)	295168
conv2d_6 (Conv2D)	(None, 56, 56, 256)	590080
conv2d_7 (Conv2D)	(None, 56, 56, 256)	590080
max_pooling2d_3 (MaxPooling2D)	(None, 28, 28, 256)	0
conv2d_8 (Conv2D)	(None, 28, 28, 512)	1180160
conv2d_9 (Conv2D)	(None, 28, 28, 512)	2359808
conv2d_10 (Conv2D)	(None, 28, 28, 512)	2359808
max_pooling2d_4 (MaxPooling2D)	(None, 14, 14, 512)	0
conv2d_11 (Conv2D)	(None, 14, 14, 512)	2359808
conv2d_12 (Conv2D)	(None, 14, 14, 512)	2359808
conv2d_13 (Conv2D)	(None, 14, 14, 512)	2359808
max_pooling2d_5 (MaxPooling2D)	(None, 7, 7, 512)	0
flatten_1 (Flatten)	(None, 25088)	0
dense_1 (Dense)	(None, 4096)	102764544
dense_2 (Dense)	(None, 4096)	16781312
dense_3 (Dense)	(None, 1000)	4097000
"""
VGG16_TOTAL = "138,357,544"

LENET_TABLE = """\
conv2d_1 (Conv2D)	(None, 30, 30, 6)	60
average_pooling2d_1 (Average)	(None, 15, 15, 6)	0
conv2d_2 (Conv2D)	(None, 13, 13, 16)	880
average_pooling2d_2 (Average)	(None, 6, 6, 16)	0
flatten_1 (Flatten)	(None, 576)	0
dense_1 (Dense)	(None, 120)	69240
dense_2 (Dense)	(None, 84)	10164
dense_3 (Dense)	(None, 10)	850
"""
LENET_TOTAL = "81,194"

BASIC_CNN_TABLE = """\
conv2d_1 (Conv2D)	(None, 26, 26, 32)	320
max_pooling2d_1 (MaxPooling2D)	(None, 13, 13, 32)	0
conv2d_2 (Conv2D)	(None, 11, 11, 64)	18496
max_pooling2d_2 (MaxPooling2D)	(None, 5, 5, 64)	0
conv2d_3 (Conv2D)	(None, 3, 3, 64)	36928
"""
BASIC_CNN_TOTAL = "55,744"

KERAS_TYPES = {  # Keras layer type (as model.summary() prints it, truncated) -> our op
    "Conv2D": "conv2d", "MaxPooling2D": "maxpool2d", "Average": "avgpool2d", "Flatten": "flatten", "Dense": "linear",
}


class Row(NamedTuple):
    name: str
    op: str
    shape: tuple[int, ...]  # ours: (C, H, W) or (F,)
    params: int


def keras_rows(table: str) -> list[Row]:
    """Rows of a Keras summary; (None, H, W, C) becomes our (C, H, W)."""
    rows = []
    for line in table.splitlines():
        match = re.fullmatch(r"(\w+) \((\w+)\)\t\(None, ([\d, ]+)\)\t(\d+)", line)
        assert match, f"not a Keras summary row: {line!r}"
        name, keras_type, dims, params = match.groups()
        *spatial, last = (int(d) for d in dims.split(","))
        rows.append(Row(name, KERAS_TYPES[keras_type], (last, *spatial), int(params)))
    return rows


def published(figure: str) -> int:
    return int(figure.replace(",", ""))


def table_layers(report) -> list[Row]:
    """Our layers that a Keras summary shows as rows (Keras folds activations into their layer; dropout is
    absent from the course's tables)."""
    return [
        Row(layer.name, layer.op, layer.out_shape, layer.params)
        for layer in report.layers if layer.op in KERAS_TYPES.values()
    ]


def without_names(rows: list[Row]) -> list[tuple]:
    return [(row.op, row.shape, row.params) for row in rows]


def explain(graph, layer: str):
    node = graph.node(layer)
    return get_op(node.op).explain(node.attrs, list(node.in_shapes), node.out_shape)


def step(steps, quantity: str):
    (found,) = [s for s in steps if s.quantity == quantity]
    return found


def as_int(value) -> int:
    """A Step's value is a number or a figure formatted with thousands separators."""
    return int(str(value).replace(",", ""))


# --- VGG16 -------------------------------------------------------------------------------------------------

def test_vgg16_table_rows_sum_to_its_total():
    assert sum(row.params for row in keras_rows(VGG16_TABLE)) == published(VGG16_TOTAL)


def test_vgg16_matches_the_course_table_layer_by_layer():
    report = archviz.inspect("vgg16")
    assert without_names(table_layers(report)) == without_names(keras_rows(VGG16_TABLE))
    assert report.totals.params == published(VGG16_TOTAL)


def test_vgg16_params_by_formula():
    def conv(c_in, c_out):
        return (3*3*c_in + 1)*c_out

    gt = [
        conv(3, 64), conv(64, 64), 0,
        conv(64, 128), conv(128, 128), 0,
        conv(128, 256), conv(256, 256), conv(256, 256), 0,
        conv(256, 512), conv(512, 512), conv(512, 512), 0,
        conv(512, 512), conv(512, 512), conv(512, 512), 0,
        0, (7*7*512 + 1)*4096, (4096 + 1)*4096, (4096 + 1)*1000,
    ]
    assert [row.params for row in table_layers(archviz.inspect("vgg16"))] == gt
    # the course's own arithmetic
    assert 64*3*3*3 + 64 == 1792 == gt[0]
    assert 7*7*512*4096 + 4096 == 102764544 == gt[19]


# --- LeNet -------------------------------------------------------------------------------------------------

def test_lenet_keras_matches_the_course_table_layer_by_layer():
    report = archviz.inspect("lenet_keras")
    assert table_layers(report) == keras_rows(LENET_TABLE)  # names too: the spec keeps the table's names
    assert report.input == (1, 32, 32)
    assert report.totals.params == published(LENET_TOTAL)
    assert sum(row.params for row in keras_rows(LENET_TABLE)) == published(LENET_TOTAL)


def test_lenet_keras_course_questions():
    report = archviz.inspect("lenet_keras")
    assert report.layer("flatten_1").out_shape == (6*6*16,)  # "Flatten1 ->576 (How?)"
    assert report.layer("dense_1").params == 576*120 + 120  # "Dense_1 -> 69240 (?)"
    assert report.layer("dense_2").params == 120*84 + 84  # "How we got 10164 parameters @ dense_2 layer"
    assert report.totals.params == 60 + 880 + 69240 + 10164 + 850  # "Total -> 60+880+69240+10164+850"


def test_lenet_5_params():
    report = archviz.inspect("lenet")
    gt = (5*5*1 + 1)*6 + (5*5*6 + 1)*16 + (16*5*5 + 1)*120 + (120 + 1)*84 + (84 + 1)*10
    assert report.totals.params == gt == published("61,706")
    assert [layer.out_shape for layer in report.layers if layer.op == "avgpool2d"] == [(6, 14, 14), (16, 5, 5)]


# --- the basic CNN -----------------------------------------------------------------------------------------

def test_basic_cnn_matches_the_course_table_layer_by_layer():
    report = archviz.inspect("basic_cnn")
    assert table_layers(report) == keras_rows(BASIC_CNN_TABLE)
    assert report.input == (1, 28, 28)
    assert report.totals.params == published(BASIC_CNN_TOTAL)
    assert sum(row.params for row in keras_rows(BASIC_CNN_TABLE)) == published(BASIC_CNN_TOTAL)


def test_basic_cnn_with_its_classifier_head():
    report = archviz.inspect("basic_cnn", overrides={"include_top": True})
    gt = published(BASIC_CNN_TOTAL) + (3*3*64 + 1)*64 + (64 + 1)*10
    assert report.totals.params == gt
    assert report.layers[-1].out_shape == (10,)


# --- AlexNet -----------------------------------------------------------------------------------------------

ALEXNET_LISTING = """\
[55x55x96] CONV1: 96 11x11 filters at stride 4, pad 0
[27x27x96] MAX POOL1: 3x3 filters at stride 2
[27x27x96] NORM1: Normalization layer
[27x27x256] CONV2: 256 5x5 filters at stride 1, pad 2
[13x13x256] MAX POOL2: 3x3 filters at stride 2
[13x13x256] NORM2: Normalization layer
[13x13x384] CONV3: 384 3x3 filters at stride 1, pad 1
[13x13x384] CONV4: 384 3x3 filters at stride 1, pad 1
[13x13x256] CONV5: 256 3x3 filters at stride 1, pad 1
[6x6x256] MAX POOL3: 3x3 filters at stride 2
[4096] FC6: 4096 neurons
[4096] FC7: 4096 neurons
[1000] FC8: 1000 neurons (class scores)
"""
ALEXNET_HINT = "(227-11)/4+1 = 55"
ALEXNET_CONV1_COURSE = "(11 \\times 11 \\times 3) \\times 96 = 34974"  # the course's figure, as printed


def alexnet_listing() -> list[tuple[str, tuple[int, ...]]]:
    """(our layer name, our shape) for each line: [55x55x96] CONV1 -> ("conv1", (96, 55, 55))."""
    rows = []
    for line in ALEXNET_LISTING.splitlines():
        dims, name = re.match(r"\[([\dx]+)\] (?:MAX )?([A-Z]+\d):", line).groups()
        *spatial, last = (int(d) for d in dims.split("x"))
        rows.append((name.lower(), (last, *spatial)))
    return rows


@pytest.mark.parametrize("layer, shape", alexnet_listing())
def test_alexnet_shapes_follow_the_course_listing(layer, shape):
    assert archviz.load("alexnet").node(layer).out_shape == shape


def test_alexnet_flatten_and_total():
    report = archviz.inspect("alexnet")
    assert report.input == (3, 227, 227)
    assert report.layer("flatten").out_shape == (6*6*256,) == (9216,)
    gt = (
        (11*11*3 + 1)*96 + (5*5*96 + 1)*256 + (3*3*256 + 1)*384 + (3*3*384 + 1)*384 + (3*3*384 + 1)*256
        + (9216 + 1)*4096 + (4096 + 1)*4096 + (4096 + 1)*1000
    )
    assert report.totals.params == gt == published("62,378,344")


def test_alexnet_conv1_params_and_the_course_slip():
    gt = (11*11*3 + 1)*96
    assert archviz.inspect("alexnet").layer("conv1").params == gt == 34944
    course = published(ALEXNET_CONV1_COURSE.rsplit("= ", 1)[1])
    assert course != gt  # the course's 34974 is not the count ...
    assert course != (11*11*3)*96  # ... nor its own formula (34,848) without the bias: an arithmetic slip


def test_alexnet_conv1_explanation():
    steps = explain(archviz.load("alexnet"), "conv1")
    height = step(steps, "output height")
    assert height.arithmetic == "(227 - 11 + 2*0)/4 + 1 = 55"
    assert height.arithmetic.replace(" + 2*0", "").replace(" ", "") == ALEXNET_HINT.replace(" ", "")
    assert step(steps, "output width").value == 55
    params = step(steps, "params")
    assert params.arithmetic == "(11*11*3 + 1)*96"
    assert as_int(params.value) == (11*11*3 + 1)*96 == 34944


# --- the quiz and the worked example -----------------------------------------------------------------------

def test_quiz_conv_output_volume_and_params(write_spec):
    # "input image of 32x32x3 and we have 10 -> 5x5 filters with stride 1, pad 2"
    path = write_spec("""
        name: quiz
        input: [3, 32, 32]
        layers:
          - conv2d: {out_channels: 10, kernel_size: 5, stride: 1, padding: 2}
            name: conv
    """)
    graph = archviz.load(path)
    report = archviz.inspect(graph)
    assert report.layer("conv").out_shape == (10, (32 + 2*2 - 5)//1 + 1, (32 + 2*2 - 5)//1 + 1) == (10, 32, 32)
    assert report.layer("conv").params == (5*5*3 + 1)*10 == 760  # "76 x 10 = 760"
    steps = explain(graph, "conv")
    assert step(steps, "output height").arithmetic == "(32 - 5 + 2*2) + 1 = 32"
    assert step(steps, "params").arithmetic == "(5*5*3 + 1)*10"


def test_mnist_worked_example_dense_layer_weights(write_spec):
    # 32x32x1 -> ten 5x5 filters, stride 1 -> 2x2 pool, stride 2 -> 200 fully connected neurons
    path = write_spec("""
        name: worked_example
        input: [1, 32, 32]
        layers:
          - conv2d: {out_channels: 10, kernel_size: 5, stride: 1}
            name: conv
          - maxpool2d: {kernel_size: 2, stride: 2}
            name: pool
          - flatten
          - linear: {out_features: 200}
            name: fc
    """)
    report = archviz.inspect(path)
    conv, pool, fc = report.layer("conv"), report.layer("pool"), report.layer("fc")
    assert conv.out_shape == (10, 28, 28)
    assert numel(conv.out_shape) == published("7,840")  # "7,840 outputs that will be created for one image"
    assert conv.params == (5*5 + 1)*10  # "25 + 1 input weights" per filter
    assert pool.out_shape == (10, 14, 14)
    assert fc.in_shapes == ((10*14*14,),) == ((published("1,960"),),)
    assert fc.params == (10*14*14 + 1)*200 == published("392,200")


# --- the fully connected network the course opens with -----------------------------------------------------

def test_mlp_params_and_units():
    report = archviz.inspect("mlp")
    assert report.input == (1, 32, 32)
    assert report.totals.params == (32*32 + 1)*300 + (300 + 1)*100 + (100 + 1)*10
    assert report.totals.params > 5 * archviz.inspect("lenet").totals.params  # the course's "research gap"
    wider = archviz.inspect("mlp", overrides={"hidden1_units": 1000, "hidden2_units": 150})
    assert wider.totals.params == (32*32 + 1)*1000 + (1000 + 1)*150 + (150 + 1)*10


# --- torch as the independent oracle -----------------------------------------------------------------------

@pytest.mark.parametrize("model", ["lenet", "lenet_keras", "basic_cnn", "alexnet", "mlp"])
def test_course_specs_agree_with_torch(model):
    torch = pytest.importorskip("torch")
    from archviz.torch_build import to_torch

    report = archviz.inspect(model)
    module = to_torch(report.graph, device="meta")  # shapes only: no weights allocated
    for layer in report.layers:
        assert sum(p.numel() for p in module.get_submodule(layer.name).parameters()) == layer.params, layer.name
    out = module(torch.zeros(1, *report.input, device="meta"))  # (N, C, H, W) in, (N, classes) out
    assert tuple(out.shape[1:]) == report.layers[-1].out_shape
