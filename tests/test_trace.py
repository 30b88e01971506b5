"""PyTorch models in: torchvision:NAME, FILE.py:Name, module:name and nn.Module objects traced into archviz's Graph.

Oracles: the model itself, built on the meta device (params = sum of p.numel(), MACs = FlopCounterMode's FLOPs / 2,
shapes = what torch computed), and for the zoo's ResNet-50 the zoo's own spec. The ops added for traced models are
checked against the torch module each builds. The user's module must come out exactly as it went in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import re

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision.ops.stochastic_depth import stochastic_depth  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import archviz  # noqa: E402
from archviz.cli import app  # noqa: E402
from archviz.crosscheck.common import without_dynamo_import  # noqa: E402
from archviz.errors import ArchvizError, UnsupportedOpError  # noqa: E402
from archviz.ops import get_op  # noqa: E402
from archviz.trace.load import build_meta, parse_source  # noqa: E402

ROOT = Path(__file__).parent.parent
MODELS = ROOT / "tests/data/models"
TINY = "tests/data/models/tiny_net.py"


@pytest.fixture(autouse=True)
def _repository_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def flop_counter_macs(model, input_shape) -> int:
    counter = FlopCounterMode(display=False)
    with without_dynamo_import(), torch.no_grad(), counter:
        model(torch.empty((1, *input_shape), device="meta"))
    return counter.get_total_flops() // 2


# --- sources ---------------------------------------------------------------------------------------------------------

def test_torchvision_resnet18_is_traced_with_module_paths():
    graph = archviz.load("torchvision:resnet18")
    assert graph.input_shape == (3, 224, 224) and graph.origin.method == "fx"
    assert graph.source == "torchvision:resnet18" and graph.torchvision == "resnet18"
    assert graph.node("layer1.0.add").inputs == ("layer1.0.bn2", "maxpool")  # the residual join, wired by tensor flow
    assert graph.node("layer1.0.relu_1").shares == "layer1.0.relu"  # one ReLU module called twice
    scopes = {scope.path: scope for scope in graph.scopes}
    assert (scopes["layer1"].kind, scopes["layer1.0"].kind, scopes["layer1.0"].block) == ("sequential", "block",
                                                                                          "BasicBlock")
    assert archviz.analyze(graph).totals.params == archviz.inspect("resnet18").totals.params


def test_torchvision_input_defaults_and_kwargs():
    assert archviz.load("torchvision:inception_v3").input_shape == (3, 299, 299)
    graph = archviz.load("torchvision:resnet18", input=(3, 64, 64), kwargs={"num_classes": 10})
    assert graph.node("fc").out_shape == (10,) and graph.input_shape == (3, 64, 64)


def test_diff_resnet50_and_torchvision_resnet50_show_no_difference():
    zoo, traced = archviz.inspect("resnet50"), archviz.inspect("torchvision:resnet50")
    assert (zoo.totals.params, zoo.totals.macs, zoo.totals.buffers) == (traced.totals.params, traced.totals.macs,
                                                                        traced.totals.buffers)
    assert len(zoo.layers) == len(traced.layers)
    for a, b in zip(zoo.layers, traced.layers):
        assert (a.op, a.out_shape, a.params, a.macs, a.other_ops) == (b.op, b.out_shape, b.params, b.macs, b.other_ops)
        if a.params or a.op == "add":  # the zoo names ReLU calls relu1..3; torchvision calls one module three times
            assert a.name == b.name
    result = run("diff", "resnet50", "torchvision:resnet50")
    assert result.exit_code == 0, result.output
    assert "identical: same layers, shapes, params and MACs" in result.stdout


def test_inspect_torchvision_resnet50_cross_check_agrees():
    result = run("inspect", "torchvision:resnet50", "--depth", "1")
    assert result.exit_code == 0, result.output
    assert "Cross-check: 4 peers agree after conversion" in result.stdout
    assert "25,557,032" in result.stdout


def test_a_file_class_with_kwargs():
    result = run("inspect", f"{TINY}:Net", "--input", "3x16x16", "--kwargs", '{"num_classes": 5}', "--no-crosscheck",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["layers"]}
    assert layers["fc"]["output_shape"] == [5]


def test_a_module_factory_and_an_instance(monkeypatch):
    instance = archviz.load(f"{TINY}:instance", input=(3, 16, 16))
    assert instance.node("fc").out_shape == (3,)
    monkeypatch.chdir(MODELS)  # package.module:name imports from the working directory, as python -m does
    graph = archviz.load("tiny_net:make_model", input="3x16x16", kwargs={"num_classes": 7})
    assert graph.node("fc").out_shape == (7,) and graph.name == "tiny_net:make_model"


@pytest.mark.parametrize("args, message", [
    ([f"{TINY}:Net"], "give the input shape with --input CxHxW"),
    (["tests/data/models/nothing.py:Net", "-i", "3x8x8"], "tests/data/models/nothing.py: no such file"),
    ([f"{TINY}:Nett", "-i", "3x8x8"], "no attribute 'Nett' (did you mean: Net"),
    ([f"{TINY}:Broken", "-i", "3x8x8"], "tiny_net.py:Broken() raised ValueError: depth 1 is not supported"),
    ([f"{TINY}:NOT_A_MODEL", "-i", "3x8x8"], "NOT_A_MODEL is a int, not a torch.nn.Module"),
    ([f"{TINY}:make_list", "-i", "3x8x8"], "returned a list, not a torch.nn.Module"),
    ([f"{TINY}:Net", "-i", "3x8x8", "--kwargs", "{num_classes: 3}"], "--kwargs '{num_classes: 3}' is not JSON"),
    ([f"{TINY}:Net", "-i", "3x8x8", "--kwargs", "[3]"], "must be a JSON object"),
    ([f"{TINY}:Net", "-i", "3x8x8", "--kwargs", '{"colour": 1}'], "unexpected keyword argument 'colour'"),
    (["resnet18", "--kwargs", '{"num_classes": 3}'], "a spec takes --set name=value"),
    (["torchvision:resnet18", "--set", "num_classes=3"], "--kwargs"),
    (["torchvision:resnet51"], "no classification model 'resnet51' (did you mean: resnet50"),
    (["no_such_package_xyz:Net", "-i", "3x8x8"], "no_such_package_xyz: no such module"),
    ([f"{TINY}:Net", "-i", "5x8x8"], "does not run on an input of 5x8x8"),
])
def test_bad_sources_are_one_line_errors(args, message):
    result = run("inspect", *args, "--no-crosscheck")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("archviz: error: "), result.stderr
    assert message in result.stderr


def test_help_says_that_a_model_file_is_run():
    result = run("inspect", "--help")
    assert "IMPORTS AND RUNS" in " ".join(result.stdout.split())


def test_an_onnx_path_goes_to_the_onnx_reader():
    with pytest.raises(ArchvizError):
        archviz.load("tests/data/models/missing.onnx")


def test_diagram_names_its_default_file_after_the_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("diagram", str(ROOT / f"{TINY}:Net"), "--input", "3x16x16", "-o", "net.dot")
    assert result.exit_code == 0, result.output
    assert '"block.add"' in (tmp_path / "net.dot").read_text()


# --- the trace --------------------------------------------------------------------------------------------------------

def test_functions_are_named_in_their_module_and_wired_by_tensor_flow():
    graph = archviz.load(f"{TINY}:Net", input=(3, 16, 16))
    assert [node.name for node in graph.nodes] == [
        "conv1", "bn1", "relu", "block.conv_a", "block.bn_a", "block.relu", "block.conv_b", "block.bn_b",
        "block.add", "block.relu_1", "pool", "view", "fc"]
    assert graph.node("block.add").inputs == ("block.bn_b", "relu")
    assert graph.node("view").op == "flatten"  # x.view(x.size(0), -1)
    assert graph.node("pool").op == "global_avgpool2d"
    assert [(s.path, s.kind, s.block) for s in graph.scopes] == [("block", "block", "Block")]
    model = build_meta(parse_source(f"{TINY}:Net"))
    report = archviz.analyze(graph)
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.macs == flop_counter_macs(model, (3, 16, 16))


def test_a_shape_formula_that_disagrees_with_torch_is_a_bug_shown_not_hidden(monkeypatch):
    """A formula that disagrees with torch is an archviz bug: the layer is opaque (shape and params as traced), never
    a figure from the wrong formula, and the description names the formula and asks for a report."""
    conv = get_op("conv2d")
    monkeypatch.setattr(type(conv), "infer_shape", lambda self, attrs, in_shapes: (1, 1, 1))
    graph = archviz.load(f"{TINY}:Net", input=(3, 16, 16))
    assert graph.node("conv1").op == "opaque" and graph.node("conv1").out_shape == (8, 16, 16)
    assert graph.node("conv1").attrs["params"] == 3 * 8 * 9  # no bias
    assert re.search(r"layer conv1: conv2d's formula gives 1x1x1 .* torch computed 8x16x16 .*an archviz bug, please "
                     "report it", graph.description)


def test_shared_and_tied_weights_are_counted_once():
    graph = archviz.load(f"{TINY}:Tied", input=(4, 8, 8))
    assert graph.node("conv_1").shares == "conv"  # one module called twice
    assert graph.node("decoder").shares == "head"  # another module holding the same weight
    assert graph.node("mean").op == "global_avgpool2d" and graph.node("mean").out_shape == (4,)
    model = build_meta(parse_source(f"{TINY}:Tied"))
    report = archviz.inspect(graph, crosscheck=True)
    assert report.totals.params == sum(p.numel() for p in model.parameters())  # parameters() yields a tied one once
    assert report.totals.macs == flop_counter_macs(model, (4, 8, 8))
    assert report.crosscheck.agrees


def test_ops_without_a_formula_are_opaque_their_macs_measured_and_listed():
    report = archviz.inspect(f"{TINY}:Unknown", input=(3, 8, 8), crosscheck=True)
    assert (report.totals.measured, report.totals.uncounted) == (("shuffle", "cumsum"), ())
    node = report.graph.node("shuffle")
    assert (node.op, node.attrs["target"], node.out_shape) == ("opaque", "torch.nn.ChannelShuffle", (16, 8, 8))
    assert node.attrs["measured_macs"] == 0 and report.layer("shuffle").measured
    assert report.graph.node("cumsum").attrs["target"] == "torch.cumsum"
    assert report.crosscheck.agrees
    result = run("inspect", f"{TINY}:Unknown", "-i", "3x8x8", "--no-crosscheck")
    assert "Measured" in result.stdout and "shuffle, cumsum" in result.stdout and "Not counted" not in result.stdout


def test_a_call_that_will_not_run_again_is_not_counted_and_says_so(monkeypatch):
    import archviz.trace.fx

    monkeypatch.setattr(archviz.trace.fx, "_flops", lambda *args: None)
    report = archviz.inspect(f"{TINY}:Unknown", input=(3, 8, 8))
    assert (report.totals.measured, report.totals.uncounted) == ((), ("shuffle", "cumsum"))
    assert report.graph.node("shuffle").attrs["measured_macs"] is None
    result = run("inspect", f"{TINY}:Unknown", "-i", "3x8x8", "--no-crosscheck")
    assert "Not counted" in result.stdout and "shuffle, cumsum" in result.stdout


def test_torchs_multihead_attention_is_the_registry_op_and_the_rest_is_measured():
    """torchvision's ViT calls nn.MultiheadAttention(x, x, x, need_weights=False): item 0 is multihead_attention by
    formula; the class token's torch.cat has no formula, so its MACs (none) are measured. The total equals torch's."""
    from torch.utils.flop_counter import FlopCounterMode

    report = archviz.inspect("torchvision:vit_b_16")
    attention = [s for s in report.layers if s.name.endswith("self_attention")]
    assert len(attention) == 12 and {s.op for s in attention} == {"multihead_attention"}
    assert attention[0].macs == 3 * 197 * 768 * 768 + 2 * 197 * 197 * 768 + 197 * 768 * 768
    assert (report.totals.measured, report.totals.uncounted) == (("cat",), ())
    model = build_meta(parse_source("torchvision:vit_b_16"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 3, 224, 224, device="meta"))
    assert report.totals.macs == counter.get_total_flops() // 2


def test_weights_used_on_constants_are_counted_where_the_input_meets_them():
    graph = archviz.load(f"{TINY}:Computed", input=(4,))
    assert [(n.name, n.op) for n in graph.nodes] == [("add", "opaque")]
    assert graph.node("add").attrs["params"] == 4 * 4 + 4 and graph.node("add").attrs["buffers"] == 4
    assert graph.origin.uncalled == ()


def test_data_dependent_control_flow_is_recorded_from_an_eager_pass():
    """fx cannot follow the `if` on a size; the eager pass records every call, the flatten between the modules too."""
    graph = archviz.load(f"{TINY}:Dynamic", input=(3, 16, 16))
    assert graph.origin.method == "eager"
    assert "the branch this input takes" in graph.description
    assert [(n.name, n.op, n.inputs) for n in graph.nodes] == [
        ("conv", "conv2d", ("input",)), ("pool", "maxpool2d", ("conv",)), ("flatten", "flatten", ("pool",)),
        ("fc", "linear", ("flatten",))]
    assert archviz.inspect(graph, crosscheck=True).crosscheck.agrees


def test_the_eager_pass_records_functions_arithmetic_and_window_attention_as_fx_does():
    """Every model of tiny_net.py that fx traces gives the same graph when recorded eagerly."""
    from archviz.trace.assemble import assemble
    from archviz.trace.eager import trace_eager
    from archviz.trace.fx import trace_fx

    for name, shape in (("Net", (3, 16, 16)), ("Attention", (10, 32)), ("Windows", (8, 8, 8))):
        model = build_meta(parse_source(f"{TINY}:{name}"))
        graphs = [assemble(model, traced, name=name, description="", input_shape=shape,
                           origin=archviz.graph.ir.Origin(name)) for traced in (
            trace_fx(model, shape), trace_eager(model, shape, reason="a test"))]
        fx_nodes, eager_nodes = ([(n.op, dict(n.attrs), n.out_shape) for n in g.nodes] for g in graphs)
        assert eager_nodes == fx_nodes, name


def test_the_users_module_is_not_changed():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_net_for_test", ROOT / TINY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Net()
    calls = []
    model.fc.register_forward_hook(lambda *args: calls.append(1))
    before = {
        "keys": list(model.state_dict()), "devices": {p.device for p in model.parameters()},
        "values": {k: v.clone() for k, v in model.state_dict().items()}, "training": model.training,
        "hooks": [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()],
        "attributes": [sorted(vars(m)) for m in model.modules()],
    }
    report = archviz.inspect(model, input=(3, 16, 16), crosscheck=True)
    assert report.crosscheck.agrees and report.graph.origin.module is model
    assert list(model.state_dict()) == before["keys"]
    assert {p.device for p in model.parameters()} == before["devices"] == {torch.device("cpu")}
    assert all(torch.equal(v, before["values"][k]) for k, v in model.state_dict().items())
    assert model.training == before["training"]
    assert [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()] == before["hooks"]
    assert [sorted(vars(m)) for m in model.modules()] == before["attributes"]
    assert calls == []  # the user's hook never ran: archviz traced a copy without hooks


# --- torchvision ------------------------------------------------------------------------------------------------------

SUBSET = {  # name: the opaque ops expected (what ran), empty when every layer has a formula
    "alexnet": set(), "vgg11": set(), "resnet18": set(), "densenet121": set(), "squeezenet1_0": set(),
    "mobilenet_v2": set(), "mobilenet_v3_small": set(), "efficientnet_b0": set(), "shufflenet_v2_x0_5": set(),
    "googlenet": set(), "inception_v3": set(), "mnasnet0_5": set(), "regnet_x_400mf": set(), "convnext_tiny": set(),
    "vit_b_16": {"torch.cat"},
    "swin_t": {"torchvision.models.swin_transformer.shifted_window_attention",
               "torchvision.models.swin_transformer._patch_merging_pad"},
}


@pytest.mark.parametrize("name", sorted(SUBSET))
def test_torchvision_models_trace_to_their_own_figures(name):
    report = archviz.inspect(f"torchvision:{name}")
    graph = report.graph
    model = build_meta(parse_source(f"torchvision:{name}"))
    never_ran = sum(count for _, count in graph.origin.uncalled)  # GoogLeNet's and Inception's auxiliary heads
    assert bool(never_ran) == (name in ("googlenet", "inception_v3"))
    assert report.totals.params + never_ran == sum(p.numel() for p in model.parameters())
    opaque = {node.attrs["target"] for node in graph.nodes if node.op == "opaque"}
    assert opaque == SUBSET[name]
    assert set(report.totals.measured) == {node.name for node in graph.nodes if node.op == "opaque"}
    assert report.totals.uncounted == ()
    assert report.totals.macs == flop_counter_macs(model, graph.input_shape)  # the opaque layers' MACs measured


def test_every_torchvision_model_is_in_the_fuzz_script():
    names = torchvision.models.list_models(module=torchvision.models)
    assert len(names) > 70 and set(SUBSET) <= set(names)
    assert "list_models(module=torchvision.models)" in (ROOT / "fuzz/trace_torchvision.py").read_text()


# --- the ops added for traced models, against the torch module each builds --------------------------------------------

OPS = [  # (op, attrs, input shapes without the batch)
    ("mul", {}, [(4, 5, 5), (4, 1, 1)]),
    ("hardswish", {"inplace": False}, [(4, 5, 5)]),
    ("hardsigmoid", {"inplace": False}, [(4, 5, 5)]),
    ("stochastic_depth", {"p": 0.2, "mode": "row"}, [(4, 5, 5)]),
    ("layer_norm", {"normalized_shape": (6,), "eps": 1e-5, "elementwise_affine": True, "bias": True}, [(3, 6)]),
    ("layer_norm", {"normalized_shape": (6,), "eps": 1e-5, "elementwise_affine": True, "bias": False}, [(3, 6)]),
    ("reshape", {"shape": (2, 2, 5, 5)}, [(4, 5, 5)]),
    ("permute", {"dims": (2, 3, 1)}, [(4, 5, 6)]),
    ("narrow", {"dim": 1, "start": 1, "length": 2}, [(4, 5, 5)]),
    ("add_param", {"shape": (1, 7, 6)}, [(7, 6)]),
    ("mul_param", {"shape": (4, 1, 1)}, [(4, 5, 5)]),
    ("global_avgpool2d", {"keepdim": False}, [(4, 5, 5)]),
]


@pytest.mark.parametrize("op_name, attrs, in_shapes", OPS, ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(OPS)])
def test_new_ops_equal_their_torch_module(op_name, attrs, in_shapes):
    from archviz.spec.args import normalize_args

    op = get_op(op_name)
    attrs = op.resolve(normalize_args(op, dict(attrs), {}), in_shapes)
    out_shape = tuple(op.infer_shape(attrs, in_shapes))
    module = op.build_torch(attrs, in_shapes).eval()
    inputs = [torch.randn(2, *shape) for shape in in_shapes]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        output = module(*inputs)
    assert tuple(output.shape) == (2, *out_shape)
    assert op.params(attrs, in_shapes) == sum(p.numel() for p in module.parameters())
    assert op.macs(attrs, in_shapes, out_shape) == counter.get_total_flops() // 2 == 0
    assert op.explain(attrs, in_shapes, out_shape)


def test_new_op_other_ops_are_their_formulas():
    def other(name, attrs, shapes):
        from archviz.spec.args import normalize_args

        op = get_op(name)
        attrs = op.resolve(normalize_args(op, attrs, {}), shapes)
        return op.other_ops(attrs, shapes, tuple(op.infer_shape(attrs, shapes)))

    assert other("mul", {}, [(4, 5, 5), (4, 1, 1)]) == (2 - 1) * 4 * 5 * 5
    assert other("hardswish", {}, [(4, 5, 5)]) == 5 * 4 * 5 * 5
    assert other("hardsigmoid", {}, [(4, 5, 5)]) == 4 * 4 * 5 * 5
    assert other("layer_norm", {"normalized_shape": [6]}, [(3, 6)]) == 5 * 3 * 6  # fvcore's norm_flop_counter
    assert other("layer_norm", {"normalized_shape": [6], "elementwise_affine": False}, [(3, 6)]) == 4 * 3 * 6
    assert other("add_param", {"shape": [1, 7, 6]}, [(7, 6)]) == 7 * 6
    assert other("global_avgpool2d", {"keepdim": False}, [(4, 5, 5)]) == 4 * 5 * 5 + 4
    for name in ("stochastic_depth", "reshape", "permute", "narrow"):
        assert get_op(name).other_ops({}, [(4,)], (4,)) == 0
    assert math.prod((2, 2, 5, 5)) == 4 * 5 * 5


def test_torchvision_functions_map_even_when_the_first_trace_imports_them():
    """The mapping tables import torchvision.ops; built during a trace (inside the stand-in for torch._dynamo) that
    import failed quietly, and for the rest of the process torchvision's stochastic_depth was opaque."""
    import subprocess
    import sys

    code = (
        "import torch, archviz, sys\n"
        "assert 'torchvision' not in sys.modules\n"
        "class Double(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x + x\n"  # a module and a function call: the first trace builds both tables
        "archviz.load(torch.nn.Sequential(torch.nn.ReLU(), Double()), input=(3, 4, 4))\n"
        "from torchvision.ops import StochasticDepth\n"
        "graph = archviz.load(torch.nn.Sequential(StochasticDepth(0.2, 'row')), input=(3, 4, 4))\n"
        "print([node.op for node in graph.nodes])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['stochastic_depth']"


def test_torchvision_stochastic_depth_called_by_name_is_one_layer():
    """fx would trace into torchvision's Python function (a random mask times the input: an opaque product); it is
    kept as one call where a model calls it by the name it imported (as this module does)."""
    class Block(torch.nn.Module):
        def forward(self, x):
            return stochastic_depth(torch.relu(x), p=0.2, mode="row", training=self.training)

    graph = archviz.load(Block(), input=(3, 8, 8))
    assert [(node.op, dict(node.attrs)) for node in graph.nodes][-1] == ("stochastic_depth", {"p": 0.2, "mode": "row"})


def test_a_batch_moved_inward_is_followed_per_sample():
    """Attention permutes the batch to dim 1 and back: the calls in between are opaque layers with their per-sample
    shapes (the formulas count dims after the batch), every other layer keeps its op, and the totals stay exact."""
    graph = archviz.load(f"{TINY}:Attention", input=(10, 32))
    moved = [node for node in graph.nodes if "batch at dim 1" in node.attrs.get("target", "")]
    assert [node.name for node in moved] == ["permute", "unbind", "unbind_1", "unbind_2"]
    assert [node.out_shape for node in moved] == [(3, 4, 10, 8)] + [(4, 10, 8)] * 3
    assert (graph.node("softmax").op, graph.node("proj").op, graph.node("proj").out_shape) == ("softmax", "linear",
                                                                                              (10, 32))
    model = build_meta(parse_source(f"{TINY}:Attention"))
    report = archviz.inspect(graph)
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.layer("qkv").macs == 10 * 32 * 96


def test_a_batch_folded_into_windows_is_followed_per_sample():
    """Window attention folds the batch into the windows, (B * 4, 16, C): per sample each such tensor keeps the
    windows as its first dim, the linear, matmul and softmax layers keep their ops (softmax's dim 3 moved one on),
    and params and MACs equal the module's own counts."""
    from torch.utils.flop_counter import FlopCounterMode

    graph = archviz.load(f"{TINY}:Windows", input=(8, 8, 8))
    ops = {node.name: node for node in graph.nodes}
    assert ops["qkv"].op == "linear" and ops["qkv"].out_shape == (4, 16, 24)
    assert (ops["softmax"].op, dict(ops["softmax"].attrs)) == ("softmax", {"dim": 4})
    assert [node.op for node in graph.nodes if node.op in ("matmul", "linear")] == ["linear", "matmul", "matmul",
                                                                                   "linear"]
    folded = [node for node in graph.nodes if "folded" in node.attrs.get("target", "")]
    assert {node.name for node in folded} == {"permute_1", "unbind", "unbind_1", "unbind_2"}  # (3, B * 4, ...)
    assert folded[0].attrs["target"] == ("Tensor.permute (input: batch folded into dim 0 x 4; output: batch folded "
                                         "into dim 1 x 4)")
    model = build_meta(parse_source(f"{TINY}:Windows"))
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 8, 8, 8, device="meta"))
    report = archviz.inspect(graph)
    assert report.totals.macs == counter.get_total_flops() // 2
    assert report.totals.params == sum(p.numel() for p in model.parameters())


def test_a_token_model_has_no_receptive_field_in_pixels():
    """Tokens (N, C) are no image: the report says the field is not tracked, nowhere a figure in pixels."""
    from archviz.analysis.explain import explain_layer
    from archviz.render.data import report_csv, report_dict

    report = archviz.inspect(f"{TINY}:Attention", input=(10, 32))
    assert {(s.receptive_field, s.jump, s.start) for s in report.layers} == {(None, None, None)}
    assert {layer["receptive_field"] for layer in report_dict(report)["layers"]} == {None}
    assert report_csv(report).splitlines()[1].endswith(",")
    step = next(s for s in explain_layer(report, "proj").steps if s.quantity == "receptive field")
    assert "not tracked" in step.arithmetic
    result = run("inspect", f"{TINY}:Attention", "-i", "10x32", "--no-crosscheck")
    assert "not tracked: the input is not a C x H x W image" in result.stdout


def test_a_layer_whose_weight_is_tied_to_another_keeps_its_formula():
    """conv2's weight is conv1's, its bias its own: conv2 is still a conv2d with its own MACs; only the tied weight's
    parameters are counted once, at conv1."""
    class TiedConvs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(100, 100, 3)
            self.conv2 = torch.nn.Conv2d(100, 100, 3)
            self.conv2.weight = self.conv1.weight

        def forward(self, x):
            return self.conv2(self.conv1(x))

    model = TiedConvs()
    report = archviz.inspect(model, input=(100, 14, 14), crosscheck=True)
    assert [(s.name, s.op, s.macs) for s in report.layers] == [("conv1", "conv2d", 100 * 100 * 9 * 144),
                                                                ("conv2", "conv2d", 100 * 100 * 9 * 100)]
    assert (report.layer("conv1").params, report.layer("conv2").params) == (100 * 100 * 9 + 100, 100)
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.depth == 2 and report.crosscheck.agrees  # torchinfo's count converted: 90,000 counted twice


def test_a_codebook_lookup_of_computed_indices_is_an_embedding():
    """A VQ layer: each position's nearest code (argmin of distances, no formula: measured) picks a row of an
    nn.Embedding, which is the embedding op; the codebook's params are counted once, at the distances that read it."""
    class Quantise(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encode = torch.nn.Conv2d(3, 16, 4, 4)
            self.codebook = torch.nn.Embedding(32, 16)

        def forward(self, x):
            z = self.encode(x).flatten(2).transpose(1, 2)
            distances = torch.cdist(z, self.codebook.weight.unsqueeze(0).expand(z.shape[0], -1, -1))
            return self.codebook(distances.argmin(-1))

    model = Quantise()
    report = archviz.inspect(model, input=(3, 32, 32))
    assert [(s.name, s.op, s.out_shape) for s in report.layers][-3:] == [
        ("cdist", "opaque", (64, 32)), ("argmin", "opaque", (64,)), ("codebook", "embedding", (64, 16))]
    assert report.graph.node("codebook").shares == "cdist"
    assert report.totals.params == sum(p.numel() for p in model.parameters())


def test_a_cache_filled_on_the_first_pass_keeps_its_weights_counted():
    """EfficientViT and TinyViT cache what they compute from weights (attention biases) on their first pass: the
    eager trace counts the cached tensor as the weights it was made from, so params stay the module's."""
    class Cached(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Parameter(torch.zeros(4, 8))
            self.proj = torch.nn.Linear(8, 8)
            self.cache = None

        def forward(self, x):
            if x.shape[-1] > 4:  # control flow on a size: torch.fx cannot trace it
                x = self.proj(x)
            if self.cache is None:
                self.cache = self.table.sum(0)
            return x + self.cache

    model = Cached()
    report = archviz.inspect(model, input=(5, 8))
    assert report.graph.origin.method == "eager"
    assert report.totals.params == sum(p.numel() for p in model.parameters()) == 4 * 8 + 8 * 8 + 8
    assert report.graph.origin.uncalled == ()


def test_an_empty_slice_is_a_layer_of_its_traced_shape():
    class Empty(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x[:, :0], x], dim=1)

    graph = archviz.load(Empty(), input=(4, 6))
    assert [node.out_shape for node in graph.nodes] == [(0, 6), (4, 6)]


def test_the_eager_pass_follows_comparisons_and_tensor_properties():
    """x == 0 and x.mT make tensors from the input: each is a layer wired to what it read, never a constant."""
    class Props(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x):
            if x.shape[-1] > 4:  # control flow on a size: the eager pass
                x = self.fc(x)
            return (x @ x.mT) * (x == 0).float().sum(-1, keepdim=True)

    graph = archviz.load(Props(), input=(5, 8))
    assert graph.origin.method == "eager"
    assert [(n.name, n.inputs) for n in graph.nodes] == [
        ("fc", ("input",)), ("mT", ("fc",)), ("matmul", ("fc", "mT")), ("eq", ("fc",)), ("float", ("eq",)),
        ("sum", ("float",)), ("mul", ("matmul", "sum"))]
    assert graph.node("mT").attrs["target"] == "torch.Tensor.mT"
