"""ONNX in and out (archviz/onnx): files torch exports read back with the zoo's figures, hand-built files for each op
mapping and each bad input, and `archviz export` round trips checked by onnx's checker, by reading them back, and
by running them (onnx's reference runtime against to_torch's model, same weights).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import archviz  # noqa: E402
from archviz.cli import app  # noqa: E402
from archviz.errors import ArchvizError, SpecError, UnsupportedOpError  # noqa: E402
from archviz.onnx.export import export_onnx  # noqa: E402
from archviz.onnx.names import NameHint, layer_paths  # noqa: E402
from archviz.onnx.read import read_onnx  # noqa: E402

DATA = Path(__file__).parent / "data" / "onnx"
FLOAT = TensorProto.FLOAT


def figures(report, *, names: bool = True):
    """Per layer: what must agree between a model and its ONNX file."""
    return [((s.name,) if names else ()) + (s.op, s.out_shape, s.params, s.buffers, s.macs, s.other_ops)
            for s in report.layers]


def weight_layers(report):
    return {s.name: (s.out_shape, s.params, s.macs) for s in report.layers if s.op in ("conv2d", "linear")}


# --- hand-built files -------------------------------------------------------------------------------------------------

def make_model(path: Path, nodes, *, inputs=None, weights=(), opset: int = 17, out_rank: int = 4):
    """Save a model: x (1 x 3 x 8 x 8) through nodes to "y", whose rank is out_rank (the checker wants one)."""
    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", FLOAT, [1, 3, 8, 8])]
    outputs = [helper.make_tensor_value_info("y", FLOAT, [None] * out_rank)]
    initializers = [numpy_helper.from_array(np.asarray(v, np.float32 if np.asarray(v).dtype.kind == "f" else np.int64),
                                            name) for name, v in weights]
    graph = helper.make_graph(nodes, "hand_built", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def rand(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def test_op_mappings(tmp_path):
    """One file through the common ops: each lands on the registry op with torch's arguments."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="/stem/conv/Conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "sh", "m", "v"], ["bn"], name="/stem/bn/BatchNormalization",
                         epsilon=1e-3, momentum=0.99),
        helper.make_node("Clip", ["bn", "zero", "six"], ["r6"], name="/stem/Clip"),
        helper.make_node("Conv", ["r6", "w2"], ["c2"], name="/proj/Conv", kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "b2"], ["c2b"], name="/proj/Add"),  # a bias stored apart: folded into the conv
        helper.make_node("Sigmoid", ["c2b"], ["sg"], name="/act/Sigmoid"),
        helper.make_node("Mul", ["c2b", "sg"], ["silu"], name="/act/Mul"),  # x * sigmoid(x): silu
        helper.make_node("Add", ["silu", "r6"], ["res"], name="/Add"),
        helper.make_node("LeakyRelu", ["res"], ["lk"], name="lk", alpha=0.2),
        helper.make_node("MaxPool", ["lk"], ["mp"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         ceil_mode=1),
        helper.make_node("AveragePool", ["mp"], ["ap"], name="avg", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("LRN", ["ap"], ["lrn"], name="norm", size=5, alpha=2e-4, beta=0.75, bias=2.0),
        helper.make_node("Concat", ["lrn", "mp"], ["cat"], name="cat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Shape", ["gap"], ["shp"]),  # x.view(x.size(0), -1): shape arithmetic, not layers
        helper.make_node("Gather", ["shp", "zero_i"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero_1d"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["gap", "target"], ["flat"], name="view"),
        helper.make_node("MatMul", ["flat", "w3"], ["mm"], name="fc/MatMul"),
        helper.make_node("Add", ["mm", "b3"], ["fc"], name="fc/Add"),
        helper.make_node("Dropout", ["fc", "ratio"], ["dr"], name="drop"),
        helper.make_node("Gemm", ["dr", "w4", "b4"], ["g"], name="head", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="prob", axis=1),
    ]
    weights = [("w1", rand(8, 3, 3, 3)), ("b1", rand(8)), ("s", np.ones(8)), ("sh", np.zeros(8)), ("m", np.zeros(8)),
               ("v", np.ones(8)), ("zero", np.float32(0)), ("six", np.float32(6)), ("w2", rand(8, 8, 1, 1)),
               ("b2", rand(1, 8, 1, 1)), ("zero_i", np.int64(0)), ("zero_1d", np.array([0], np.int64)),
               ("minus1", np.array([-1], np.int64)), ("w3", rand(16, 12)), ("b3", rand(12)),
               ("ratio", np.float32(0.3)), ("w4", rand(5, 12)), ("b4", rand(5))]
    graph = read_onnx(make_model(tmp_path / "ops.onnx", nodes, weights=weights, out_rank=2))
    ops = {node.name: (node.op, dict(node.attrs)) for node in graph.nodes}
    assert list(ops) == ["stem.conv", "stem.bn", "stem.clip", "proj", "act", "add", "lk", "pool", "avg", "norm", "cat",
                         "gap", "view", "fc", "drop", "head", "prob"]
    assert ops["stem.conv"][1] == {"out_channels": 8, "kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1,
                                        "groups": 1, "bias": True, "in_channels": 3}
    assert ops["stem.bn"][1]["eps"] == 1e-3 and ops["stem.bn"][1]["momentum"] == pytest.approx(0.01)
    assert ops["stem.clip"][0] == "relu6"
    assert ops["proj"] == ("conv2d", ops["proj"][1]) and ops["proj"][1]["bias"] is True  # the Add folded in
    assert ops["act"][0] == "silu"
    assert ops["add"][0] == "add" and ops["lk"] == ("leaky_relu", {"negative_slope": 0.2, "inplace": False})
    assert ops["pool"][1] == {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "dilation": 1}
    assert ops["avg"][1]["count_include_pad"] is False and ops["avg"][1]["stride"] == 1  # ONNX's defaults
    assert ops["norm"] == ("local_response_norm", {"size": 5, "alpha": 2e-4, "beta": 0.75, "k": 2.0})
    assert [ops[n][0] for n in ("cat", "gap", "view", "fc", "drop", "head", "prob")] == [
        "concat", "global_avgpool2d", "flatten", "linear", "dropout", "linear", "softmax"]
    assert ops["fc"][1]["bias"] is True and ops["drop"][1]["p"] == 0.3
    report = archviz.inspect(graph)
    assert report.totals.uncounted == ()
    assert report.layer("head").params == (12 + 1) * 5
    assert report.layer("stem.conv").macs == 8 * 8 * 8 * 3 * 3 * 3


def test_unknown_op_is_opaque(tmp_path):
    """An op without a formula is an opaque layer: ONNX's shape, its stored tensors as params, MACs not counted."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node("Max", ["c", "floor"], ["p"], name="floor"),
        helper.make_node("Celu", ["p"], ["y"], name="celu"),
    ]
    path = make_model(tmp_path / "opaque.onnx", nodes, weights=[("w", rand(4, 3, 3, 3)), ("floor", rand(4, 1, 1))])
    report = archviz.inspect(read_onnx(path))
    assert report.totals.uncounted == ("floor", "celu")
    floor = report.layer("floor")
    assert (floor.op, floor.out_shape, floor.params, floor.counted) == ("opaque", (4, 6, 6), 4, False)
    assert report.graph.node("celu").attrs["target"] == "onnx::Celu"
    assert report.totals.params == 4 * 3 * 3 * 3 + 4
    assert report.totals.macs == 4 * 6 * 6 * 3 * 3 * 3  # the conv is still counted


def test_weights_given_as_inputs(tmp_path):
    """A file saved without its weights (torch.onnx.export(export_params=False)) declares them as graph inputs."""
    inputs = [helper.make_tensor_value_info("x", FLOAT, ["N", 3, 8, 8]),
              helper.make_tensor_value_info("conv.weight", FLOAT, [4, 3, 3, 3]),  # where Conv takes its weight
              helper.make_tensor_value_info("conv.bias", FLOAT, [1, 4, 1, 1]),  # named like a state-dict entry
              helper.make_tensor_value_info("gamma", FLOAT, [4, 1, 1])]  # fixed, and of lower rank than the image
    nodes = [helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="/conv/Conv", kernel_shape=[3, 3]),
             helper.make_node("Add", ["conv.bias", "c"], ["cb"], name="/conv/Add"),
             helper.make_node("Mul", ["cb", "gamma"], ["y"], name="/scale/Mul")]
    report = archviz.inspect(read_onnx(make_model(tmp_path / "bare.onnx", nodes, inputs=inputs)))
    assert [(s.name, s.op, s.params) for s in report.layers] == [("conv", "conv2d", 4 * 3 * 3 * 3 + 4),
                                                                  ("scale", "mul_param", 4)]


def test_shared_weights_count_once(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["a"], name="first", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w_alias", "b"], ["y"], name="second", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Identity", ["w"], ["w_alias"]),  # a stored tensor under another name: still the same one
    ]
    nodes = [nodes[2], nodes[0], nodes[1]]
    path = make_model(tmp_path / "tied.onnx", nodes, weights=[("w", rand(3, 3, 3, 3)), ("b", rand(3))])
    report = archviz.inspect(read_onnx(path))
    assert report.graph.node("second").shares == "first"
    assert report.totals.params == 3 * 3 * 3 * 3 + 3
    assert report.totals.macs == 2 * 3 * 8 * 8 * 3 * 3 * 3


@pytest.mark.parametrize("pads, auto_pad, strides, padding, noted", [
    (None, "SAME_UPPER", [2, 2], 1, True),  # TensorFlow's "same" at stride 2: 0 before, 1 after
    ([1, 1, 2, 2], None, [1, 1], "same", False),  # torch's padding="same" with an even kernel
    ([1, 1, 1, 1], None, [1, 1], 1, False),
])
def test_conv_padding(tmp_path, pads, auto_pad, strides, padding, noted):
    kernel = 4 if padding == "same" else 3
    options = {"auto_pad": auto_pad} if auto_pad else {"pads": pads}
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[kernel, kernel], strides=strides,
                            **options)
    graph = read_onnx(make_model(tmp_path / "pad.onnx", [node], weights=[("w", rand(2, 3, kernel, kernel))]))
    conv = graph.node("conv")
    assert conv.op == "conv2d" and conv.attrs["padding"] == padding
    assert conv.out_shape == (2, 8 // strides[0], 8 // strides[1])
    assert (conv.note is not None) == noted


def test_asymmetric_padding_not_representable(tmp_path):
    """pads 0 before and 3 after: no symmetric padding gives that size, so the layer is opaque, and says why."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[0, 0, 3, 3])
    report = archviz.inspect(read_onnx(make_model(tmp_path / "asym.onnx", [node], weights=[("w", rand(2, 3, 3, 3))])))
    conv = report.graph.node("conv")
    assert conv.op == "opaque" and conv.out_shape == (2, 9, 9) and "asymmetric" in conv.note
    assert report.totals.uncounted == ("conv",) and report.totals.params == 2 * 3 * 3 * 3


def test_input_override_and_dynamic_shapes(tmp_path):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])
    dynamic = [helper.make_tensor_value_info("x", FLOAT, ["N", 3, "H", "W"])]
    path = make_model(tmp_path / "dynamic.onnx", [node], inputs=dynamic, weights=[("w", rand(2, 3, 3, 3))])
    with pytest.raises(SpecError, match=r"dynamic shape \(\?, 3, \?, \?\); pass --input"):
        read_onnx(path)
    assert read_onnx(path, input="3x20x10").node("conv").out_shape == (2, 18, 8)
    assert read_onnx(path, input=(3, 5, 5)).input_shape == (3, 5, 5)
    with pytest.raises(SpecError, match="has 2 dims but input 'x' has 3"):
        read_onnx(path, input="20x10")


# --- bad files: one clear error each ----------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such ONNX file") as error:
        read_onnx(tmp_path / "absent.onnx")
    assert "absent.onnx" in str(error.value)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(SpecError, match="garbage.onnx: not an ONNX model"):
        read_onnx(path)


def test_truncated_file(tmp_path):
    whole = export_onnx(archviz.load("lenet"), tmp_path / "whole.onnx")
    path = tmp_path / "truncated.onnx"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(SpecError, match="truncated.onnx: not an ONNX model"):
        read_onnx(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(SpecError, match="not an ONNX model"):
        read_onnx(path)


def test_several_inputs(tmp_path):
    inputs = [helper.make_tensor_value_info(n, FLOAT, [1, 3, 8, 8]) for n in ("a", "b")]
    path = make_model(tmp_path / "two.onnx", [helper.make_node("Add", ["a", "b"], ["y"])], inputs=inputs)
    with pytest.raises(SpecError, match=r"2 inputs \('a', 'b'\); archviz reads models with one image input"):
        read_onnx(path)


def test_no_input(tmp_path):
    node = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.zeros(3, np.float32)))
    path = make_model(tmp_path / "none.onnx", [node], inputs=[], out_rank=1)
    with pytest.raises(SpecError, match="no input"):
        read_onnx(path)


@pytest.mark.parametrize("opset", [5, 99])
def test_unsupported_opset(tmp_path, opset):
    path = make_model(tmp_path / "old.onnx", [helper.make_node("Relu", ["x"], ["y"])], opset=opset)
    with pytest.raises(SpecError, match=f"opset {opset} is not supported: archviz reads opsets 7 to"):
        read_onnx(path)


def test_custom_op_without_shape_names_the_node(tmp_path):
    node = helper.make_node("FancyPool", ["x"], ["y"], name="mystery", domain="com.example")
    model_path = tmp_path / "custom.onnx"
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", FLOAT, [None] * 4)])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), model_path)
    with pytest.raises(SpecError, match=r"node 'mystery' \(FancyPool\): ONNX shape inference gives no static shape"):
        read_onnx(model_path)


# --- layer paths ------------------------------------------------------------------------------------------------------

def test_layer_paths():
    hints = [
        NameHint("/features/features.0/Conv", "Conv"),  # torch scopes: a child name, then a full path
        NameHint("whatever", "Conv", ("layer1.0.conv1.weight",)),  # a state-dict key wins
        NameHint("/conv1/conv/Conv", "Conv"), NameHint("/conv1/Relu", "Relu"),  # googlenet's functional relu
        NameHint("conv1/7x7_s2", "Conv"),  # caffe style: conv1 is a group already, so the leaf stays
        NameHint("model/dense/MatMul", "MatMul"),  # tf2onnx style
        NameHint("/Flatten", "Flatten"),  # torch: a node outside any module
        NameHint("", "Relu"), NameHint("", "Relu"), NameHint("input", "Relu"), NameHint("a b.c-d", "Relu"),
    ]
    paths = layer_paths(hints)
    assert paths == ["features.0", "layer1.0.conv1", "conv1.conv", "conv1.relu", "conv1.7x7_s2", "model.dense",
                     "flatten", "relu", "relu_1", "input_1", "a_b.c_d"]
    assert all(re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", p) for p in paths)
    assert layer_paths(hints) == paths  # stable


# --- files exported by torch ------------------------------------------------------------------------------------------

def torch_export(model, shape, path: Path, *, keep_batchnorm: bool = True, weights: bool = True) -> Path:
    """torch.onnx.export with the TorchScript exporter (dynamo=False; the dynamo one needs onnxscript). Training mode
    keeps batch norm as its own node (eval mode folds it into the conv before), and keeping the initializers as inputs
    stops torch from merging equal ones (the zero biases and unit scales of a fresh model). Without weights the
    file declares them as graph inputs (export_params=False): small and quick for AlexNet's 61 M."""
    torch = pytest.importorskip("torch")
    mode = torch.onnx.TrainingMode.TRAINING if keep_batchnorm else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, *shape), str(path), dynamo=False, training=mode,
                          keep_initializers_as_inputs=keep_batchnorm, export_params=weights)
    return path


def test_torch_export_of_lenet_matches_the_spec(tmp_path):
    from archviz.torch_build import to_torch

    graph = archviz.load("lenet")
    path = torch_export(to_torch(graph).eval(), graph.input_shape, tmp_path / "lenet.onnx")
    assert figures(archviz.inspect(read_onnx(path))) == figures(archviz.inspect(graph))


@pytest.mark.parametrize("torchvision_name, zoo, shape, weights", [
    ("resnet18", "resnet18", (3, 64, 64), True),
    ("googlenet", "googlenet", (3, 64, 64), False),
    ("alexnet", "alexnet_owt", (3, 224, 224), False),
])
def test_torchvision_export_matches_the_zoo(tmp_path, torchvision_name, zoo, shape, weights):
    """Same params, MACs and shapes per layer as the zoo spec; conv and linear layers under torchvision's names.

    Other ops may differ where torch writes an op as another: AlexNet's AdaptiveAvgPool2d(6) on a 6x6 map is an
    AveragePool of 1x1 windows in the file (no divides counted)."""
    torchvision = pytest.importorskip("torchvision")
    options = {"aux_logits": False, "init_weights": False} if torchvision_name == "googlenet" else {}
    model = getattr(torchvision.models, torchvision_name)(**options).eval()
    path = torch_export(model, shape, tmp_path / f"{zoo}.onnx", weights=weights)
    report, expected = archviz.inspect(read_onnx(path)), archviz.inspect(zoo, input=shape)
    assert (report.totals.params, report.totals.macs) == (expected.totals.params, expected.totals.macs)
    per_layer = lambda r: [(s.out_shape, s.params, s.buffers, s.macs) for s in r.layers]  # noqa: E731
    assert per_layer(report) == per_layer(expected)
    assert weight_layers(report) == weight_layers(expected)
    assert report.totals.uncounted == ()


def test_eval_export_folds_batchnorm(tmp_path):
    """torch's eval-mode export folds each batch norm into the conv before it (which gains a bias): fewer params."""
    torchvision = pytest.importorskip("torchvision")
    path = torch_export(torchvision.models.resnet18().eval(), (3, 32, 32), tmp_path / "folded.onnx",
                        keep_batchnorm=False)
    report, expected = archviz.inspect(read_onnx(path)), archviz.inspect("resnet18", input=(3, 32, 32))
    norms = [s for s in expected.layers if s.op == "batchnorm2d"]
    assert not any(s.op == "batchnorm2d" for s in report.layers)
    folded = expected.totals.params - sum(s.params for s in norms) + sum(s.out_shape[0] for s in norms)  # + conv biases
    assert report.totals.params == folded
    assert report.totals.macs == expected.totals.macs
    assert report.graph.node("layer1.0.conv1").attrs["bias"] is True


# --- archviz export ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, shape", [("lenet", None), ("resnet18", (3, 32, 32)), ("googlenet", (3, 64, 64))])
def test_export_round_trip(tmp_path, model, shape):
    graph = archviz.load(model, input=shape)
    path = export_onnx(graph, tmp_path / f"{model}.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    assert figures(archviz.inspect(read_onnx(path))) == figures(archviz.inspect(graph))


@pytest.mark.parametrize("model", archviz.zoo_names())
def test_every_zoo_model_round_trips(tmp_path, model):
    """Written without weights (kilobytes), checked, and read back: the same layers, names and figures."""
    graph = archviz.load(model)
    path = export_onnx(graph, tmp_path / f"{model}.onnx", as_inputs=True)
    onnx.checker.check_model(str(path), full_check=True)
    assert figures(archviz.inspect(read_onnx(path))) == figures(archviz.inspect(graph))


def test_external_data(tmp_path):
    """Weights in a separate file (models over 2 GB must keep them so) are counted from their shapes alone."""
    model = onnx.load(export_onnx(archviz.load("lenet"), tmp_path / "inline.onnx"))
    onnx.save(model, tmp_path / "split.onnx", save_as_external_data=True, location="split.data", size_threshold=0)
    (tmp_path / "split.data").unlink()  # not even read
    assert archviz.inspect(read_onnx(tmp_path / "split.onnx")).totals.params == 61706


def test_every_op_runs_like_torch(tmp_path):
    """onnx's reference runtime on the exported file gives to_torch's output, with the same weights (a checkpoint)."""
    torch = pytest.importorskip("torch")
    from onnx.reference import ReferenceEvaluator

    from archviz.torch_build import to_torch

    graph = archviz.load(DATA / "every_op.yaml")
    model = to_torch(graph).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # weights unlike their initial ones (no zero biases or unit scales hiding a mix-up)
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + (0.5 if "running_var" in name else -0.5))
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    path = export_onnx(graph, tmp_path / "every_op.onnx", checkpoint=tmp_path / "weights.pt")
    onnx.checker.check_model(str(path), full_check=True)
    x = torch.randn(2, *graph.input_shape, generator=generator)
    (onnx_out,) = ReferenceEvaluator(str(path)).run(None, {"input": x.numpy()})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on padding="same" with an even kernel
        torch_out = model(x).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=1e-5)
    assert figures(archviz.inspect(read_onnx(path))) == figures(archviz.inspect(graph))


def test_an_opaque_layer_is_refused_by_name():
    from archviz.errors import UnsupportedOpError
    from archviz.ops import get_op

    node = SimpleNamespace(name="block.mystery", attrs={"target": "torch.cumsum"})
    with pytest.raises(UnsupportedOpError, match="torch.cumsum has no formula"):
        get_op("opaque").write_onnx(None, node, ["input"])


def test_export_without_weights(tmp_path):
    graph = archviz.load("vgg16", input=(3, 32, 32))
    path = export_onnx(graph, tmp_path / "vgg16.onnx", as_inputs=True)
    assert path.stat().st_size < 50_000  # the architecture only: VGG16's weights would be 553 MB
    model = onnx.load(path)
    assert not model.graph.initializer and "features.0.weight" in [i.name for i in model.graph.input]
    onnx.checker.check_model(model, full_check=True)
    assert figures(archviz.inspect(read_onnx(path))) == figures(archviz.inspect(graph))


def test_export_weights_are_torch_like(tmp_path):
    model = onnx.load(export_onnx(archviz.load("resnet18", input=(3, 32, 32)), tmp_path / "r.onnx", seed=1))
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    conv = values["layer1.0.conv1.weight"]
    assert conv.shape == (64, 64, 3, 3) and abs(conv).max() <= 1 / np.sqrt(64 * 9) and conv.std() > 0
    assert (values["layer1.0.bn1.weight"] == 1).all() and (values["layer1.0.bn1.running_mean"] == 0).all()
    again = onnx.load(export_onnx(archviz.load("resnet18", input=(3, 32, 32)), tmp_path / "r2.onnx", seed=1))
    assert again.graph.initializer[0] == model.graph.initializer[0]  # seeded: the same file twice


def test_export_refuses_opaque(tmp_path):
    node = helper.make_node("Celu", ["x"], ["y"], name="odd")
    graph = read_onnx(make_model(tmp_path / "odd.onnx", [node]))
    target = tmp_path / "out.onnx"
    with pytest.raises(UnsupportedOpError, match="odd: onnx::Celu has no formula in archviz"):
        export_onnx(graph, target)
    assert not target.exists()


def test_checkpoint_errors(tmp_path):
    torch = pytest.importorskip("torch")
    graph = archviz.load("lenet")
    torch.save({"conv1.weight": torch.zeros(6, 1, 5, 5)}, tmp_path / "partial.pt")
    with pytest.raises(ArchvizError, match=r"keys do not match.*missing 'conv1.bias'"):
        export_onnx(graph, tmp_path / "a.onnx", checkpoint=tmp_path / "partial.pt")
    from archviz.torch_build import to_torch

    state = to_torch(graph).state_dict()
    state["fc3.weight"] = torch.zeros(3, 84)
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(ArchvizError, match=r"fc3.weight has shape \(3, 84\) in the checkpoint, the model needs \(10,"):
        export_onnx(graph, tmp_path / "b.onnx", checkpoint=tmp_path / "wrong.pt")
    with pytest.raises(ArchvizError, match="no such checkpoint file"):
        export_onnx(graph, tmp_path / "c.onnx", checkpoint=tmp_path / "absent.pt")
    assert not list(tmp_path.glob("*.onnx"))


# --- the command line -------------------------------------------------------------------------------------------------

def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, pattern: str):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert re.search(pattern, lines[0]), lines[0]


def test_cli_export(tmp_path):
    result = run("export", "lenet", "-o", tmp_path / "lenet.onnx")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "lenet.onnx")
    assert archviz.inspect(str(tmp_path / "lenet.onnx")).totals.params == 61706  # archviz.load reads .onnx


def test_cli_export_errors(tmp_path):
    assert_user_error(run("export", "no_such_model", "-o", tmp_path / "x.onnx"), "no_such_model")
    assert_user_error(run("export", "lenet", "-o", tmp_path / "x.onnx", "--no-weights", "--weights", "w.pt"),
                      "not both")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(run("export", "lenet", "-o", blocker / "x.onnx"), "cannot write")
    assert not list(tmp_path.glob("*.onnx"))


def test_cli_inspect_bad_onnx(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model at all")
    assert_user_error(run("inspect", path, "--no-crosscheck"), r"bad.onnx: not an ONNX model")
    assert_user_error(run("inspect", tmp_path / "absent.onnx", "--no-crosscheck"), "no such ONNX file")


def test_cli_inspect_exported(tmp_path):
    path = export_onnx(archviz.load("resnet18", input=(3, 32, 32)), tmp_path / "resnet18.onnx")
    result = run("inspect", path, "--no-crosscheck", "--depth", "1")
    assert result.exit_code == 0, result.output
    assert "11,689,512" in result.stdout and "layer4" in result.stdout


# --- shape arithmetic folded (archviz/onnx/fold.py) -------------------------------------------------------------------

def test_shape_arithmetic_is_folded(tmp_path):
    """x.view(B, C, -1) padded by (W % 3) on the right, as torch writes them: Shape -> Gather -> Mod -> ... Pad.
    ONNX's own inference leaves the Pad's size unknown; folded, the Pad and the Reshape after it are read."""
    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.int64)))

    nodes = [
        helper.make_node("Shape", ["x"], ["s"]), const("i3", 3), helper.make_node("Gather", ["s", "i3"], ["w"]),
        helper.make_node("Mod", ["w", "i3"], ["r"]), helper.make_node("Unsqueeze", ["r", "zero"], ["r1"]),
        const("zero", [0]), const("head", [0, 0, 0, 0, 0, 0, 0]),
        helper.make_node("Concat", ["head", "r1"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["p"]), const("flat", [1, 3, -1]),
        helper.make_node("Reshape", ["p", "flat"], ["y"]),
    ]
    nodes.insert(4, nodes.pop(5))  # the Constant before its user
    unfolded = onnx.shape_inference.infer_shapes(onnx.load(make_model(tmp_path / "m.onnx", nodes, out_rank=3)),
                                                 data_prop=True)
    padded, = [i.type.tensor_type.shape for i in unfolded.graph.value_info if i.name == "p"]
    assert not all(d.HasField("dim_value") for d in padded.dim)  # what made the issue: no static shape
    graph = read_onnx(tmp_path / "m.onnx")
    assert [(n.op, n.out_shape) for n in graph.nodes] == [("pad", (3, 8, 10)), ("flatten", (3, 80))]


def test_batch_folded_into_the_first_dim(tmp_path):
    """Window attention's (B * windows, N, C): read as the tracer reads it, windows kept in the per-sample shape
    and every axis counting one more; an op that reads the batch first only (Flatten's 2-d result) stays opaque."""
    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.int64)))

    nodes = [const("windows", [4, 4, 8]), helper.make_node("Reshape", ["x", "windows"], ["w"]),
             helper.make_node("MatMul", ["w", "W"], ["q"]), helper.make_node("Transpose", ["q"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Softmax", ["t"], ["s"], axis=1), helper.make_node("Flatten", ["s"], ["f"], axis=1),
             const("back", [1, 4, 6, 4]), helper.make_node("Reshape", ["f", "back"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", FLOAT, [1, 4, 4, 8])]
    graph = read_onnx(make_model(tmp_path / "w.onnx", nodes, inputs=inputs, weights=[("W", rand(8, 6))]))
    report = archviz.inspect(graph)
    assert [(s.op, s.out_shape, s.macs) for s in report.layers] == [
        ("identity", (4, 4, 8), 0), ("linear", (4, 4, 6), 4 * 4 * 8 * 6), ("permute", (4, 6, 4), 0),
        ("softmax", (4, 6, 4), 0), ("opaque", (4, 24), 0), ("reshape", (4, 6, 4), 0)]
    assert graph.nodes[2].attrs["dims"] == (1, 3, 2) and graph.nodes[3].attrs["dim"] == 2
    assert "folded" in graph.nodes[4].note


def test_crosscheck_of_a_file_with_opaque_layers(tmp_path):
    """No original module and a layer archviz cannot build: the module peer says so and checks nothing; the others
    check every layer it can build, one by one, and the opaque layer's stored tensor still counts in the totals."""
    pytest.importorskip("torch")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Max", ["c", "floor"], ["s"]),
             helper.make_node("Mul", ["s", "scale"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    path = make_model(tmp_path / "max.onnx", nodes, weights=[("W", rand(4, 3, 3, 3)), ("scale", rand(1, 4, 1, 1)),
                                                              ("floor", rand(1, 4, 1, 1))])
    check = archviz.inspect(str(path), crosscheck=True).crosscheck
    peers = {peer.peer: peer for peer in check.peers}
    assert peers["module"].skipped and "cannot rebuild 1 of its layers in torch (max)" in peers["module"].message
    macs = {f.layer: f for f in peers["flop_counter"].layers}
    assert set(macs) == {"conv", "mul", "relu"}  # max is not run
    assert macs["conv"].converted == 4 * 3 * 3 * 3 * 8 * 8 and all(f.explained for f in macs.values())
    params, = [f for f in peers["torchinfo"].totals if f.quantity.value == "params"]
    assert params.reported == 4 * 3 * 3 * 3 + 4 + 4 and params.explained


def scalar(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.float32)))


@pytest.mark.parametrize("affine", [True, False])
def test_decomposed_layer_norm_is_one_layer(tmp_path, affine):
    """torch's layer norm below opset 17 (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add): one
    layer_norm with its eps and its weight and bias as params."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]), helper.make_node("Sub", ["x", "m"], ["d"]),
             scalar("two", 2.0), helper.make_node("Pow", ["d", "two"], ["p"]),
             helper.make_node("ReduceMean", ["p"], ["v"], axes=[-1]), scalar("eps", 1e-6),
             helper.make_node("Add", ["v", "eps"], ["e"]), helper.make_node("Sqrt", ["e"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["n" if affine else "y"])]
    weights = []
    if affine:
        nodes += [helper.make_node("Mul", ["n", "gamma"], ["g"]), helper.make_node("Add", ["g", "beta"], ["y"])]
        weights = [("gamma", rand(8)), ("beta", rand(8))]
    graph = read_onnx(make_model(tmp_path / "ln.onnx", nodes, weights=weights, opset=13))
    (node,) = graph.nodes
    assert (node.op, node.attrs["normalized_shape"], node.attrs["eps"]) == ("layer_norm", (8,), 1e-6)
    assert archviz.inspect(graph).totals.params == (2 * 8 if affine else 0)


def test_erf_gelu_is_one_layer_and_a_near_miss_is_not(tmp_path):
    """x * (1 + erf(x / sqrt 2)) * 0.5 is one gelu; with 0.4 for 0.5 it is five layers, read as they are."""
    def model(half):
        nodes = [scalar("root2", 1.4142135), helper.make_node("Div", ["x", "root2"], ["d"]),
                 helper.make_node("Erf", ["d"], ["e"]), scalar("one", 1.0), helper.make_node("Add", ["e", "one"], ["a"]),
                 helper.make_node("Mul", ["x", "a"], ["m"]), scalar("half", half),
                 helper.make_node("Mul", ["m", "half"], ["y"])]
        return read_onnx(make_model(tmp_path / f"gelu{half}.onnx", nodes))

    assert [(n.op, dict(n.attrs)) for n in model(0.5).nodes] == [("gelu", {"approximate": "none"})]
    assert [n.op for n in model(0.4).nodes] == ["scalar_arith", "erf", "scalar_arith", "mul", "scalar_arith"]


@pytest.mark.parametrize("value, merged", [(0.0, True), (1.0, False)])
def test_zero_pad_before_a_conv_is_its_padding(tmp_path, value, merged):
    """Pad(0, 1 | 0, 1) then a Conv: the conv's own padding (asymmetric, noted); another value stays a pad."""
    nodes = [helper.make_node("Constant", [], ["pads"], value=numpy_helper.from_array(
                 np.asarray([0, 0, 0, 0, 0, 0, 1, 1], np.int64))), scalar("value", value),
             helper.make_node("Pad", ["x", "pads", "value"], ["p"]),
             helper.make_node("Conv", ["p", "W"], ["y"], strides=[2, 2])]
    graph = read_onnx(make_model(tmp_path / "pad.onnx", nodes, weights=[("W", rand(4, 3, 3, 3))]))
    ops = [n.op for n in graph.nodes]
    assert ops == (["conv2d"] if merged else ["pad", "conv2d"])
    assert graph.nodes[-1].out_shape == (4, 4, 4)
    assert archviz.inspect(graph).totals.macs == 4 * 3 * 3 * 3 * 4 * 4


def test_fresh_timm_file_stores_equal_tensors_once(tmp_path):
    """timm's own initial weights: torch stores densenet121's equal norm scales and shifts once; archviz still counts
    each layer's (the module's less the folded norms), and the description gives the difference from the file."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    model = timm.create_model("densenet121", pretrained=False).eval()
    path = tmp_path / "densenet121.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.randn(1, 3, 64, 64), str(path), dynamo=False, opset_version=17)
    graph = read_onnx(path)
    totals = archviz.inspect(graph).totals
    stored = sum(int(np.prod(t.dims)) for t in onnx.load(path).graph.initializer if t.data_type == FLOAT)
    folded = 64 + 58 * 128  # norm0 and each dense layer's norm2 follow a conv: torch folds them into it
    assert totals.params == sum(p.numel() for p in model.parameters()) - folded
    again = int(re.search(r"([\d,]+) counted again", graph.description)[1].replace(",", ""))
    assert totals.params + totals.buffers == stored + again  # running statistics are buffers, stored as well
    assert f"the file stores {stored:,} weight elements" in graph.description


def test_stored_weights_beside_counted_params_are_noted(tmp_path):
    """A tensor two layers read counts for each (a bias folded into the conv, then an add_param: 2 x 4 params from 4
    stored), and a conv weight computed from two stored tensors counts by the conv's formula (4 x 3 x 3 x 3) while
    they are read by no layer: the description says both, so the file's 4 + 2 x 108 stored elements beside the 116
    params are not left unexplained."""
    nodes = [helper.make_node("Mul", ["half1", "half2"], ["W"]), helper.make_node("Conv", ["x", "W"], ["c"]),
             helper.make_node("Add", ["c", "shift"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Add", ["r", "shift"], ["y"])]
    weights = [("half1", rand(4, 3, 3, 3)), ("half2", rand(4, 3, 3, 3)), ("shift", rand(1, 4, 1, 1))]
    graph = read_onnx(make_model(tmp_path / "stored.onnx", nodes, weights=weights))
    assert archviz.inspect(graph).totals.params == 4 * 3 * 3 * 3 + 4 + 4  # the bias folds into the conv
    assert graph.description.endswith(
        "the file stores 220 weight elements, 4 of them in 1 tensors read more than once, each read counting: 4 "
        "counted again (a weight the model reads twice, or equal weights torch stored once), 216 in 2 tensors no "
        "layer reads as a weight of its own ('half1', 'half2': read only where nodes compute from stored tensors "
        "alone, as a weight's copies or a position encoding, or unused)")
    plain = read_onnx(make_model(tmp_path / "plain.onnx", [helper.make_node("Conv", ["x", "half1"], ["y"])],
                                 weights=weights[:1]))
    assert "stores" not in plain.description  # every stored element counted once: nothing to say


# --- timm models exported by torch (fuzz/onnx_timm.py measures more) -------------------------------------------------

def timm_round_trip(tmp_path, name: str, *, size=None, opset: int = 17, **kwargs):
    """(report of the exported file, the module's params less the BatchNorm channels torch's eval export folded into
    the conv before them, FlopCounterMode's FLOPs / 2 for the module on the meta device).

    Every float weight and buffer is drawn at random first: torch's exporter stores equal tensors once (a fresh
    model's zero biases, unit scales), which would make the file's count another model's."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from torch.utils.flop_counter import FlopCounterMode

    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    size = size or tuple(model.pretrained_cfg["input_size"])
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.randn(1, *size), str(path), dynamo=False, opset_version=opset)
    norms = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    graph = onnx.load(path, load_external_data=False).graph
    shapes = {t.name: t.dims[0] for t in graph.initializer if t.dims}
    folded = norms - sum(shapes[n.input[1]] for n in graph.node if n.op_type == "BatchNormalization")
    with torch.device("meta"):
        meta = timm.create_model(name, pretrained=False, **kwargs).eval().requires_grad_(False)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(1, *size, device="meta"))
    report = archviz.inspect(read_onnx(path))
    return report, sum(p.numel() for p in model.parameters()) - folded, counter.get_total_flops() // 2


def opaque_targets(report) -> dict[str, int]:
    targets = [s.summary.split(" (")[0] for s in report.layers if s.op == "opaque"]
    return {t: targets.count(t) for t in sorted(set(targets))}


@pytest.mark.parametrize("name, size", [("resnet18", (3, 64, 64)), ("densenet121", (3, 64, 64)),
                                        ("repvgg_a0", (3, 64, 64)), ("convnext_atto", (3, 64, 64))])
def test_timm_cnn_reads_back_exactly(tmp_path, name, size):
    """Params: the module's less each folded BatchNorm's C (its 2 x C weights become the conv's C-element bias);
    densenet's norms before a conv and repvgg's identity-branch norms stay BatchNormalization nodes and count in
    full. MACs: FlopCounterMode's. No opaque layer."""
    report, params, macs = timm_round_trip(tmp_path, name, size=size)
    assert (report.totals.params, report.totals.macs) == (params, macs)
    assert opaque_targets(report) == {}


@pytest.mark.parametrize("opset", [14, 17])
def test_timm_vit_reads_back_exactly(tmp_path, opset):
    """vit_tiny: the shape arithmetic folded, layer norm one layer at both opsets (decomposed below 17), GELU one
    layer; what stays opaque costs no MACs: the class token's Concat, and where the batch moves inward for q, k, v
    (the Transpose; the Split after it reads as three selects)."""
    report, params, macs = timm_round_trip(tmp_path, "vit_tiny_patch16_224", opset=opset)
    assert (report.totals.params, report.totals.macs) == (params, macs) == (5_717_416, 1_253_683_200)
    ops = [s.op for s in report.layers]
    assert (ops.count("layer_norm"), ops.count("gelu"), ops.count("erf")) == (25, 12, 0)
    assert opaque_targets(report) == {"onnx::Concat": 1, "onnx::Transpose": 12}


def test_timm_swin_reads_back_with_the_module_macs(tmp_path):
    """swin_tiny: the window partitions fold the batch into the first dim (B * 64 windows) and the reader follows
    it, so the MACs are FlopCounterMode's. The params are the file's: torch's constant folding stores each block's
    relative position bias gathered (3 x 49 x 49 and up) in place of its 169 x heads table."""
    report, params, macs = timm_round_trip(tmp_path, "swin_tiny_patch4_window7_224")
    assert report.totals.macs == macs == 4_490_566_656
    tables = sum(169 * heads for heads in (3, 3, 6, 6, *[12] * 6, 24, 24))
    gathered = sum(49 * 49 * heads for heads in (3, 3, 6, 6, *[12] * 6, 24, 24))
    assert report.totals.params == params - tables + gathered
    assert opaque_targets(report) == {"onnx::Add": 5, "onnx::Transpose": 2}


def test_split_outputs_are_narrows(tmp_path):
    """Split of the channels into 1 + 2: each output read is a narrow of the input; an output nothing reads is no
    layer."""
    nodes = [helper.make_node("Constant", [], ["sizes"], value=numpy_helper.from_array(np.asarray([1, 2], np.int64))),
             helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1), helper.make_node("Relu", ["b"], ["y"])]
    graph = read_onnx(make_model(tmp_path / "split.onnx", nodes))
    assert [(n.op, dict(n.attrs), n.out_shape) for n in graph.nodes][0] == (
        "narrow", {"dim": 1, "start": 1, "length": 2}, (2, 8, 8))
    assert [n.op for n in graph.nodes] == ["narrow", "relu"]


def test_opaque_batchnorm_keeps_its_statistics_as_buffers(tmp_path):
    """LeViT's BatchNorm1d on (B * N, C): opaque (its channels are not dim 1 per sample), its scale and shift
    params, its running mean and variance buffers, as the module has them."""
    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.int64)))

    nodes = [const("rows", [16, 8]), helper.make_node("Reshape", ["x", "rows"], ["r"]),
             helper.make_node("BatchNormalization", ["r", "s", "b", "mean", "var"], ["n"]),
             const("back", [1, 4, 4, 8]), helper.make_node("Reshape", ["n", "back"], ["y"])]
    weights = [(name, rand(8) + 2) for name in ("s", "b", "mean", "var")]
    inputs = [helper.make_tensor_value_info("x", FLOAT, [1, 4, 4, 8])]
    report = archviz.inspect(read_onnx(make_model(tmp_path / "bn.onnx", nodes, inputs=inputs, weights=weights)))
    (norm,) = [s for s in report.layers if s.op == "opaque"]
    assert (norm.params, norm.buffers) == (16, 16)


def test_products_of_stored_tensors_alone_are_said_uncounted(tmp_path):
    """A Conv of two stored tensors (EdgeNeXt's position encoding, made from the input's size alone) is no layer:
    its MACs are in no total, and the description says so."""
    nodes = [helper.make_node("Conv", ["grid", "W"], ["code"]), helper.make_node("Add", ["x", "code"], ["y"])]
    weights = [("grid", rand(1, 2, 8, 8)), ("W", rand(3, 2, 1, 1))]
    graph = read_onnx(make_model(tmp_path / "code.onnx", nodes, weights=weights))
    assert archviz.inspect(graph).totals.macs == 0
    assert graph.description.endswith("1 node computes products from stored tensors alone, the same at every pass "
                                      "(1 Conv: 'code'): not layers, their MACs not counted")


def test_slice_of_a_folded_batch_counts_its_axes_one_more(tmp_path):
    """Slice's axes are an input: on (B * 4, 4, 8) its axis 2 is dim 3 of the per-sample (B, 4, 4, 8)."""
    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.int64)))

    nodes = [const("windows", [4, 4, 8]), helper.make_node("Reshape", ["x", "windows"], ["w"]),
             const("starts", [2]), const("ends", [6]), const("axes", [2]),
             helper.make_node("Slice", ["w", "starts", "ends", "axes"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", FLOAT, [1, 4, 4, 8])]
    graph = read_onnx(make_model(tmp_path / "s.onnx", nodes, inputs=inputs, out_rank=3))
    assert [(n.op, dict(n.attrs), n.out_shape) for n in graph.nodes][-1] == (
        "narrow", {"dim": 3, "start": 2, "length": 4}, (4, 4, 4))
