"""Agreement on networks nobody wrote by hand: random valid specs (tests/strategies.py) against torch and the peers.

For every generated network:
  * the module built by to_torch runs a real forward pass on the CPU (batch 2), and every layer's input and output
    shapes, its parameters and buffers, and its MACs (torch's FlopCounterMode around that pass: FLOPs / 2) equal the
    formulas; turning every in-place flag off changes no output value;
  * the cross-check peers (torchinfo and FlopCounterMode on every network, fvcore on a part) agree with no
    unexplained figure.
The checks are plain functions returning the problems found, so fuzz/agreement.py runs them for many more networks.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archviz
from archviz.analysis import analyze
from archviz.graph.ir import Graph
from strategies import architectures

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from archviz.crosscheck import flop_counter_peer, fvcore_peer, module_peer, run_crosscheck, torchinfo_peer  # noqa: E402
from archviz.torch_build import to_torch  # noqa: E402

BATCH = 2  # the forward pass: 2 so that batch norm without running statistics has two values per channel
FORWARD_EXAMPLES = 400
PEER_EXAMPLES = 300
COVERAGE_EXAMPLES = 200
FVCORE_EXAMPLES = 60  # fvcore's trace costs about 0.1 s a network: a part of them
FAST_PEERS = {"module": module_peer.check, "torchinfo": torchinfo_peer.check, "flop_counter": flop_counter_peer.check}
ALL_PEERS = {**FAST_PEERS, "fvcore": fvcore_peer.check}


def ci_settings(examples: int):
    """Reproducible in CI: the same examples every run, no example database, no deadline (a trace takes a while)."""
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# --- the checks (also run by fuzz/agreement.py) -----------------------------------------------------------------

def load_text(text: str, directory: Path) -> Graph:
    path = directory / "generated.yaml"
    path.write_text(text)
    return archviz.load(path)


@contextlib.contextmanager
def small_tensors_cpu():
    """One thread and no oneDNN: for tensors this small, thread start-up and oneDNN's compiling a kernel for each new
    shape cost some 30 times the arithmetic (measured: 150 networks in 0.1 s against 5 s)."""
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # not mkldnn.flags(), which warns about TF32 on every call
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Using padding='same' with even kernel lengths", UserWarning)
            yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn


def forward_problems(graph: Graph, *, batch: int = BATCH) -> list[str]:
    """Differences between the formulas and a real CPU forward pass of the module to_torch builds."""
    with small_tensors_cpu():
        return _forward_problems(graph, batch)


def _forward_problems(graph: Graph, batch: int) -> list[str]:
    report = analyze(graph, batch=batch)
    model = to_torch(graph, device="cpu").eval()
    seen: dict[str, tuple] = {}

    def hook(name):
        def record(module, inputs, output):
            seen[name] = (tuple(tuple(t.shape) for t in inputs), tuple(output.shape))

        return record

    for node in graph.nodes:
        model.get_submodule(node.name).register_forward_hook(hook(node.name))
    x = torch.randn(batch, *graph.input_shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x.clone())  # a clone: an in-place first layer would change x
    flops = counter.get_flop_counts()
    problems = []
    if tuple(out.shape) != (batch, *graph.shape_of(graph.output)):
        problems.append(f"output: torch {tuple(out.shape)}, predicted {graph.shape_of(graph.output)}")
    for node, layer in zip(graph.nodes, report.layers):
        module = model.get_submodule(node.name)
        if node.name not in seen:
            problems.append(f"{node.name}: never ran in the forward pass")
            continue
        inputs, output = seen[node.name]
        torch_figures = {
            "in_shapes": tuple(shape[1:] for shape in inputs),
            "out_shape": output[1:],
            "params": sum(p.numel() for p in module.parameters()),
            "buffers": sum(b.numel() for name, b in module.named_buffers() if not name.endswith("num_batches_tracked")),
            "macs x 2": sum(flops.get(f"{type(model).__name__}.{node.name}", {}).values()),
        }
        ours = {"in_shapes": node.in_shapes, "out_shape": node.out_shape, "params": layer.params,
                "buffers": layer.buffers, "macs x 2": 2 * layer.macs}
        problems += [f"{node.name} ({node.op}) {key}: torch {torch_figures[key]}, ours {ours[key]}"
                     for key in ours if torch_figures[key] != ours[key]]
    total = sum(p.numel() for p in model.parameters())
    if total != report.totals.params:
        problems.append(f"total params: torch {total}, ours {report.totals.params}")
    problems += _in_place_problems(model, x, out)
    return problems


def _in_place_problems(model, x, out) -> list[str]:
    """An in-place layer must not change a tensor another layer still reads: the values equal those without it."""
    flags = [m for m in model.modules() if getattr(m, "inplace", False)]
    if not flags:
        return []
    for module in flags:
        module.inplace = False
    with torch.no_grad():
        plain = model(x.clone())
    for module in flags:
        module.inplace = True
    if torch.equal(torch.nan_to_num(out), torch.nan_to_num(plain)):
        return []
    return [f"the in-place layers change the output by up to {(out - plain).abs().max().item():.3g}"]


def peer_problems(graph: Graph, peers: dict[str, Callable], *, batch: int = 1) -> list[str]:
    """Every figure a peer reports that is not ours after its stated conversion, and every peer that did not agree."""
    report = analyze(graph, batch=batch)
    problems = []
    for name, check in peers.items():
        with small_tensors_cpu():  # fvcore traces on the CPU
            result = check(report)
        problems += [f"{name}: {f.layer} {f.quantity}: {f.reason}" for f in result.unexplained]
        problems += [f"{name}: {f.layer} {f.quantity}: ours {f.ours}, {name} {f.reported} ({f.reason})"
                     for f in (*result.layers, *result.totals) if not f.agrees and f.explained]
        if result.skipped:
            problems.append(f"{name} skipped: {result.message}")
    return problems


# --- the tests ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("generated")


@ci_settings(FORWARD_EXAMPLES)
@given(text=architectures())
def test_formulas_equal_a_real_forward_pass(text, spec_dir):
    problems = forward_problems(load_text(text, spec_dir))
    assert not problems, "\n".join(problems)


@ci_settings(PEER_EXAMPLES)
@given(text=architectures(), batch=st.sampled_from([1, 3]))
def test_torchinfo_and_flop_counter_agree(text, batch, spec_dir):
    problems = peer_problems(load_text(text, spec_dir), FAST_PEERS, batch=batch)
    assert not problems, "\n".join(problems)


@ci_settings(FVCORE_EXAMPLES)
@given(text=architectures())
def test_every_peer_agrees(text, spec_dir):
    with small_tensors_cpu():
        check = run_crosscheck(archviz.inspect(load_text(text, spec_dir), batch=2)).crosscheck
    problems = [f"{peer}: {f.layer} {f.quantity}: {f.reason}" for peer, f in check.unexplained]
    problems += [f"{p.peer}: {p.message}" for p in check.peers if p.skipped]
    assert not problems, "\n".join(problems)
    assert check.agrees


def test_the_networks_hold_every_construct(spec_dir):
    """The strategy reaches what it promises (tests/strategies.py's docstring) in a few hundred examples."""
    seen: set[str] = set()

    @ci_settings(COVERAGE_EXAMPLES)
    @given(text=architectures())
    def collect(text):
        graph = load_text(text, spec_dir)
        seen.update(_constructs(graph))

    collect()
    expected = {
        "conv2d", "maxpool2d", "avgpool2d", "adaptive_avgpool2d", "global_avgpool2d", "batchnorm2d",
        "local_response_norm", "relu", "relu6",
        "leaky_relu", "sigmoid", "tanh", "gelu", "silu", "softmax", "dropout", "flatten", "linear", "identity", "add",
        "concat", "scope sequential", "scope block", "scope repeat", "block res", "block mix", "block gmax",
        "conv same", "conv valid", "conv pair padding", "conv non-square", "conv groups", "conv dilation",
        "conv no bias", "pool ceil_mode", "pool hangs past the input", "pool padding", "avgpool exclude pad",
        "bn no affine", "linear on a sequence", "linear on a feature map", "projection shortcut",
        "identity shortcut", "concat not on channels", "in-place",
    }
    assert expected <= seen, sorted(expected - seen)


def _constructs(graph: Graph) -> set[str]:
    found = {node.op for node in graph.nodes}
    found |= {f"scope {scope.kind}" for scope in graph.scopes}
    found |= {f"block {scope.block}" for scope in graph.scopes if scope.block}
    for node in graph.nodes:
        attrs, shape = node.attrs, node.in_shapes[0]
        if node.op == "conv2d":
            kernel = attrs["kernel_size"]
            found |= {name for name, holds in (
                ("conv same", attrs["padding"] == "same"), ("conv valid", attrs["padding"] == "valid"),
                ("conv pair padding", isinstance(attrs["padding"], tuple)),
                ("conv non-square", not isinstance(kernel, int) and kernel[0] != kernel[1]),
                ("conv groups", attrs["groups"] > 1), ("conv dilation", attrs["dilation"] not in (1, (1, 1))),
                ("conv no bias", not attrs["bias"]),
            ) if holds}
        if node.op in ("maxpool2d", "avgpool2d"):
            kernel = attrs["kernel_size"] if isinstance(attrs["kernel_size"], tuple) else (attrs["kernel_size"],) * 2
            padding = attrs["padding"] if isinstance(attrs["padding"], tuple) else (attrs["padding"],) * 2
            if attrs["ceil_mode"]:
                found.add("pool ceil_mode")
            if any(k > size + 2 * p for k, size, p in zip(kernel, shape[1:], padding)):
                found.add("pool hangs past the input")
            if padding != (0, 0):
                found.add("pool padding")
            if node.op == "avgpool2d" and not attrs["count_include_pad"]:
                found.add("avgpool exclude pad")
        if node.op == "batchnorm2d" and not attrs["affine"]:
            found.add("bn no affine")
        if node.op == "linear" and len(shape) > 1:
            found.add("linear on a sequence" if len(shape) == 2 else "linear on a feature map")
        if node.op == "add" and node.name.endswith(".join"):
            found.add("projection shortcut" if any(".downsample." in i for i in node.inputs) else "identity shortcut")
        if node.op == "concat" and len(shape) == 3 and attrs["dim"] not in (1, -3):
            found.add("concat not on channels")
        if attrs.get("inplace"):
            found.add("in-place")
    return found


# --- regressions found by these tests -------------------------------------------------------------------------

def test_a_ceil_mode_pool_may_be_longer_than_its_input(write_spec):
    """torch pools a 1x1 map with a 2x2/2 ceil_mode window (the window hangs past the end): archviz refused it."""
    graph = archviz.load(write_spec("""
        name: overhang
        input: [3, 1, 1]
        layers:
          - maxpool2d: {kernel_size: 2, ceil_mode: true}
          - avgpool2d: {kernel_size: [4, 1], stride: 4, padding: [1, 0], ceil_mode: true}
    """))
    assert [node.out_shape for node in graph.nodes] == [(3, 1, 1), (3, 1, 1)]
    assert forward_problems(graph) == []



@pytest.mark.parametrize(("join", "expected"), [
    ("add: [[relu: {inplace: true}], []]", lambda x: x.relu() + x),
    # identity hands on its input itself
    ("add: [[identity, leaky_relu: {inplace: true}], []]", lambda x: torch.nn.functional.leaky_relu(x) + x),
    # flatten hands on a view of its input
    ("concat: {dim: 2, branches: [[flatten: {start_dim: 2}, relu6: {inplace: true}], [flatten: {start_dim: 2}]]}",
     lambda x: torch.cat([x.flatten(2).clamp(0, 6), x.flatten(2)], dim=2)),
])
def test_an_in_place_layer_leaves_the_other_branches_input_alone(join, expected, write_spec):
    """An in-place first layer of a branch overwrote the input that the other branch then read."""
    graph = archviz.load(write_spec(f"""
        name: in_place
        input: [2, 4, 4]
        layers:
          - {join}
    """))
    x = torch.randn(3, 2, 4, 4)
    with torch.no_grad():
        out = to_torch(graph, device="cpu").eval()(x.clone())
    assert torch.allclose(out, expected(x))
    assert forward_problems(graph) == []


def test_fvcore_counts_a_conv_padded_same_or_valid(write_spec):
    """torch runs a conv with padding 'same' or 'valid' as aten::_convolution_mode, which fvcore has no handle for:
    it counted 0 MACs for such a layer, so fvcore disagreed on every network using one."""
    graph = archviz.load(write_spec("""
        name: padded_by_name
        input: [3, 9, 9]
        layers:
          - conv2d: {out_channels: 4, kernel_size: [2, 3], padding: same, dilation: 3}
            name: same
          - conv2d: {out_channels: 5, kernel_size: 3, padding: valid}
            name: valid
    """))
    peer = fvcore_peer.check(analyze(graph, batch=2))
    macs = {f.layer: f for f in peer.layers if f.quantity == "macs"}
    assert macs["same"].reported == 2 * 4 * 9 * 9 * 2 * 3 * 3  # N x C_out x H x W x k_h x k_w x C_in
    assert macs["valid"].reported == 2 * 5 * 7 * 7 * 3 * 3 * 4
    assert peer.agrees and not peer.unexplained
