"""archviz profile: the live-tensor tracker's exact bytes, measure() on lenet, the CLI's exit codes; CUDA checks skip
without a GPU. Expected bytes are written as the formula of what is alive (4 bytes a float32 element)."""

from __future__ import annotations

import io
import json
import math

from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import archviz
from archviz.cli import app
from archviz.errors import ArchvizError
from archviz.profile.choices import MemoryMethod, Optimizer
from archviz.profile.run import LayerTiming, Measurement, _Step, by_node, measure, measure_graph, measure_model
from archviz.profile.tracker import LiveMemoryTracker, PeakPlace, storage_bytes
from archviz.profile.view import measurement_json, measurement_view

F = 4  # bytes of a float32
N, IN, OUT = 2, 4, 3  # batch, Linear(IN, OUT)
WEIGHTS = F * (OUT * IN + OUT)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
runner = CliRunner()


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(IN, OUT))


def test_storage_bytes_counts_a_storage_once():
    x = torch.zeros(3, 4)
    assert storage_bytes([x, x.view(12), x.t(), x[1]]) == F * 3 * 4


def test_forward_keeps_weights_input_and_output(linear):
    x = torch.zeros(N, IN)
    with torch.no_grad(), LiveMemoryTracker(baseline=[*linear.parameters()]) as tracker:
        tracker.track(x)
        y = linear(x)
        del y
    result = tracker.result()
    assert result.baseline_bytes == WEIGHTS
    assert result.peak_bytes == WEIGHTS + F * N * IN + F * N * OUT
    assert (result.peak_place.op, result.peak_place.module, result.peak_place.backward) == ("addmm", "0", False)
    assert result.final_bytes == WEIGHTS + F * N * IN  # the output freed
    del x
    assert tracker.result().final_bytes == WEIGHTS + F * N * IN  # counts stop at exit


def test_backward_is_counted(linear):
    x = torch.zeros(N, IN)
    with LiveMemoryTracker(baseline=[*linear.parameters()]) as tracker:
        tracker.track(x)
        loss = linear(x).sum()
        loss.backward()
        del loss
    result = tracker.result()
    # weights, input, the loss, the loss's gradient (ones), the weight's and the bias's gradients; the output y was
    # freed once summed: addmm saves its input and weight for backward, and sum saves nothing
    assert result.peak_bytes == WEIGHTS + F * (N * IN + 1 + 1 + OUT * IN + OUT)
    assert result.peak_place.backward
    assert result.final_bytes == WEIGHTS + F * N * IN + WEIGHTS  # the gradients stay; y and the loss are freed


def test_a_tensor_only_autograd_holds_stays_counted():
    x = torch.randn(N, IN, requires_grad=True)
    with LiveMemoryTracker(baseline=[x]) as tracker:
        y = x.exp()  # exp saves its result for backward
        total = y.sum()
        del y
        assert tracker.current_bytes == F * N * IN * 2 + F
        total.backward()
        del total
    assert tracker.result().final_bytes == F * N * IN * 2  # x and x.grad; y went with the graph


def test_views_and_in_place_ops_add_nothing():
    x = torch.zeros(N, IN)
    with LiveMemoryTracker() as tracker:
        tracker.track(x)
        views = [x.view(-1), x.t(), x[0], x.add_(1), x.unsqueeze(0)]
    assert tracker.result().peak_bytes == F * N * IN
    del views


def test_optimizer_state_is_counted(linear):
    x = torch.zeros(N, IN)
    optimizer = torch.optim.Adam(linear.parameters())
    with LiveMemoryTracker(baseline=[*linear.parameters()]) as tracker:
        tracker.track(x)
        linear(x).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    steps = F * 2  # Adam's step count: a float32 scalar per parameter tensor (weight, bias)
    assert tracker.result().final_bytes == WEIGHTS + F * N * IN + 2 * WEIGHTS + steps


def test_baseline_bytes_passed_in():
    with LiveMemoryTracker(baseline_bytes=1000, modules=False) as tracker:
        y = torch.zeros(10)
    assert (tracker.result().baseline_bytes, tracker.result().peak_bytes) == (1000, 1000 + F * 10)
    assert tracker.result().peak_place.module is None
    del y


def _lenet():
    return archviz.load("lenet")


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_agrees_with_torch_mem_tracker(optimizer):
    """torch's own MemTracker (torch.distributed._tools, a separate implementation) as the oracle: the same peak."""
    mem_tracker = pytest.importorskip("torch.distributed._tools.mem_tracker")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(inplace=True),
                                torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8 * 7 * 7, 10))
    x = torch.randn(4, 3, 16, 16)
    step = _Step(model.train(), x, train=True, optimizer=Optimizer(optimizer), amp=None)
    step()  # the optimizer state exists from here on
    with LiveMemoryTracker(baseline=step.alive_before()) as tracker:
        tracker.track(x)
        step()
    oracle = mem_tracker.MemTracker()
    oracle.track_external(model, step.optimizer, x)
    with oracle:
        step()
    assert tracker.result().peak_bytes == oracle.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


def test_lenet_forward_peak_is_exact():
    graph, batch = _lenet(), 2
    measured = measure_graph(graph, batch=batch, iterations=1)
    params = archviz.analyze(graph).totals.params
    conv1 = math.prod(graph.node("conv1").out_shape)
    # weights, the input, conv1's output and tanh1's: the largest pair of maps alive together
    assert measured.peak_bytes == F * (params + batch * math.prod(graph.input_shape) + 2 * batch * conv1)
    assert measured.baseline_bytes == F * params
    assert measured.method == MemoryMethod.TRACKER and measured.device == "cpu"
    assert [layer.path for layer in measured.layers] == [node.name for node in graph.nodes]
    assert all(layer.backward_s is None and layer.forward_s >= 0 for layer in measured.layers)


@pytest.mark.parametrize(("optimizer", "state_copies", "steps"), [
    ("sgd", 0, 0), ("momentum", 1, 0), ("adam", 2, 1), ("adamw", 2, 1),
])
def test_lenet_training_step(optimizer, state_copies, steps):
    graph = _lenet()
    measured = measure_graph(graph, batch=2, train=True, optimizer=optimizer, iterations=1)
    params, tensors = archviz.analyze(graph).totals.params, 10  # weight and bias of 2 convs and 3 linears
    assert measured.baseline_bytes == F * params * (1 + state_copies) + F * steps * tensors
    assert measured.peak_bytes > measured.baseline_bytes + F * params  # the gradients at least
    assert [layer.path for layer in measured.layers] == [node.name for node in graph.nodes]
    for layer in measured.layers:
        assert math.isfinite(layer.forward_s) and math.isfinite(layer.backward_s) and layer.backward_s >= 0
    assert measured.seconds > 0 and measured.images_per_s == 2 / measured.seconds


def test_autocast_bf16_runs_on_the_cpu():
    measured = measure_model("lenet", amp="bf16", train=True, iterations=1, per_layer=False)
    assert measured.amp == "bf16" and measured.peak_bytes > measured.baseline_bytes and measured.layers == ()


class _Residual(torch.nn.Module):
    """In-place ReLU and `out += x`, which register_full_backward_hook refuses (torchvision's BasicBlock does both)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        out = self.conv2(self.relu(self.conv1(x)))
        out += x
        return self.relu(out)


def test_full_backward_hooks_refuse_in_place_ops():
    """Why run.py times backward with tensor hooks: torch's full backward hooks cannot time this module."""
    model = _Residual()
    for module in model.modules():
        module.register_full_backward_pre_hook(lambda *_: None)
    with pytest.raises(RuntimeError, match="modified inplace"):
        model(torch.randn(1, 3, 8, 8, requires_grad=True)).sum().backward()


def test_backward_timing_survives_in_place_ops():
    measured = measure(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), _Residual()), (3, 8, 8), train=True,
                       iterations=1)
    assert [layer.path for layer in measured.layers] == ["0", "1.conv1", "1.relu", "1.conv2", "1.relu_1"]
    assert all(layer.backward_s is not None and layer.backward_s >= 0 for layer in measured.layers)




def test_a_shared_module_is_timed_per_node(write_spec):
    """conv2 is conv1's module called again (torch lists it once, at conv1); wide is a module of its own."""
    graph = archviz.load(str(Path(__file__).parent / "data" / "tied.yaml"))
    measured = measure_graph(graph, train=True, iterations=1)
    assert [layer.path for layer in measured.layers] == [node.name for node in graph.nodes]
    assert measured.baseline_bytes == F * archviz.analyze(graph).totals.params  # the tied weights once


def test_by_node_sums_modules_under_a_node():
    layers = [LayerTiming("block.0", 1.0, 2.0), LayerTiming("block.1", 0.5, 0.25), LayerTiming("other", 1.0, None)]
    assert by_node(layers, ["block"]) == (LayerTiming("block", 1.5, 2.25), LayerTiming("other", 1.0, None))


@pytest.mark.parametrize(("options", "message"), [
    ({"batch": 0}, "batch 0"), ({"iterations": 0}, "iterations 0"), ({"train": True, "optimizer": "lion"}, "lion"),
    ({"amp": "fp8"}, "fp8"), ({"device": "tpu"}, "tpu"),
])
def test_bad_options(options, message):
    with pytest.raises(ArchvizError, match=message):
        measure(torch.nn.Linear(2, 2), (2,), **options)


def test_nothing_to_train():
    with pytest.raises(ArchvizError, match="no trainable parameter"):
        measure(torch.nn.ReLU(), (2,), train=True)


SYNTHETIC = Measurement(
    device="cpu", input_shape=(1, 32, 32), batch=4, train=True, optimizer=Optimizer.ADAM, amp=None,
    peak_bytes=2_500_000, baseline_bytes=1_000_000, method=MemoryMethod.TRACKER,
    peak_place=PeakPlace("tanh_backward", "tanh1", True), seconds=0.002, iterations=3,
    layers=(LayerTiming("conv1", 0.0005, 0.00125), LayerTiming("fc", 0.00025, 0.0005)),
)


def test_view_reads_the_measurement():
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(measurement_view(SYNTHETIC, model="lenet"))
    text = console.export_text()
    assert "lenet: measured, training step (adam), batch 4, input 1x32x32, on cpu" in text
    assert "0.500" in text and "1.250" in text  # conv1's forward and backward ms
    assert "0.750" in text and "1.750" in text  # the sums of the layers
    assert "2.50 MB (2,500,000 bytes, measured: live tensor storages (TorchDispatchMode))" in text
    assert "tanh_backward in tanh1 (backward)" in text and "2,000.0" in text  # images/s: 4 / 0.002


def test_json_keys():
    document = json.loads(measurement_json(SYNTHETIC, model="lenet"))
    assert document["measured"]["peak_bytes"] == 2_500_000 and document["measured"]["seconds"] == 0.002
    assert document["layers"][0] == {"name": "conv1", "measured_forward_seconds": 0.0005,
                                     "measured_backward_seconds": 0.00125, "measured_seconds": 0.00175,
                                     "predicted_seconds": None}
    assert document["predicted"] is None


def test_the_prediction_sits_beside_the_measurement():
    from archviz.profile.view import Prediction

    predicted = Prediction(2_000_000, seconds=0.001, layer_seconds={"conv1": 0.0004})
    document = json.loads(measurement_json(SYNTHETIC, model="lenet", predicted=predicted))
    assert document["predicted"] == {"peak_bytes": 2_000_000, "error": -0.2, "note": "", "seconds": 0.001}
    assert document["layers"][0]["predicted_seconds"] == 0.0004


def run(*args):
    return runner.invoke(app, ["profile", *map(str, args)])


def test_cli_table():
    result = run("lenet", "--train", "--optimizer", "momentum", "-n", "1")
    assert result.exit_code == 0, result.output
    assert "Peak memory" in result.output and "conv1" in result.output and "Backward ms" in result.output


def test_cli_json():
    result = run("lenet", "--json", "-n", "1", "--batch", "3")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["batch"] == 3 and document["measured"]["peak_bytes"] > document["measured"]["baseline_bytes"]
    assert document["layers"][0]["name"] == "conv1"


def test_cli_torchvision_module_paths():
    result = run("torchvision:squeezenet1_0", "--input", "3x32x32", "--json", "-n", "1", "--warmup", "0")
    assert result.exit_code == 0, result.output
    names = [layer["name"] for layer in json.loads(result.output)["layers"]]
    assert names[0] == "features.0" and "classifier.1" in names  # leaf module paths: the traced graph's node names


def test_cli_users_file(tmp_path):
    code = tmp_path / "net.py"
    code.write_text("import torch\n\n\ndef make(width=4):\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                    "torch.nn.Linear(8, width))\n")
    result = run(f"{code}:make", "--input", "2x4", "--kwargs", '{"width": 3}', "--json", "-n", "1")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["measured"]["baseline_bytes"] == F * (8 * 3 + 3)
    assert [layer["name"] for layer in document["layers"]] == ["0", "1"]
    assert run(f"{code}:make", "-n", "1").exit_code == 2  # no --input: archviz cannot know it


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_no_cuda():
    result = run("lenet", "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA GPU" in result.output and len(result.output.splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["lenet", "--optimizer", "lion"], "--optimizer"),
    (["lenet", "--amp", "fp8"], "--amp"),
    (["lenet", "--device", "tpu"], "tpu"),
    (["no_such_model"], "no_such_model"),
    (["torchvision:resnet_nope"], "resnet_nope"),
    (["timm:resnet18", "--kwargs", '{"pretrained": true}'], "pretrained"),
    (["lenet", "--kwargs", '{"num_classes": 3}'], "--set"),
    (["torchvision:resnet18", "--set", "num_classes=3"], "--kwargs"),
])
def test_cli_errors(args, message):
    result = run(*args)
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


@CUDA
def test_tracker_agrees_with_the_cuda_allocator():
    """An MLP whose tensors are multiples of 512 bytes (the allocator's block) apart from a few scalars: the
    tracker's rise over the step equals max_memory_allocated's within those scalars' rounding (and any workspace a
    kernel takes inside one op, which the tracker cannot see; cuBLAS's is made in the first step and kept)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024)).cuda()
    x = torch.randn(256, 1024, device="cuda")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        model(x).float().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # momentum buffers and cuBLAS's workspace exist from here on
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    baseline = [*model.parameters(), *(s["momentum_buffer"] for s in optimizer.state.values())]
    with LiveMemoryTracker(baseline=baseline) as tracker:
        tracker.track(x)
        step()
    torch.cuda.synchronize()
    rise_cuda = torch.cuda.max_memory_allocated() - start
    rise_tracked = tracker.result().peak_bytes - tracker.result().baseline_bytes - F * x.numel()
    assert abs(rise_cuda - rise_tracked) <= 0.01 * rise_cuda, (rise_cuda, rise_tracked)  # rises of ~10 MB


@CUDA
def test_measure_on_cuda():
    measured = measure_model("lenet", device="cuda", train=True, optimizer="adamw", batch=8, iterations=2)
    assert measured.method == MemoryMethod.CUDA and measured.device.startswith("cuda:")
    assert torch.cuda.get_device_name() in measured.device
    assert measured.peak_bytes > measured.baseline_bytes > 0
    assert all(layer.backward_s is not None for layer in measured.layers)
