"""Training memory, predicted (archviz/analysis/training.py), held to the live-storage tracker (archviz/profile) on
the CPU, and to the hand-worked timeline of a two-layer net."""

from __future__ import annotations

import json

import pytest

from archviz import inspect, load
from archviz.analysis.training import largest_batch, training_memory
from archviz.errors import SpecError
from archviz.format import parse_bytes

typer_testing = pytest.importorskip("typer.testing")

MLP = """
name: mlp
input: [12]
layers:
  - linear: {out_features: 8}
    name: fc1
  - relu: {}
    name: relu
  - linear: {out_features: 3}
    name: fc2
"""


@pytest.fixture
def mlp(tmp_path):
    path = tmp_path / "mlp.yaml"
    path.write_text(MLP)
    return load(str(path))


def test_a_two_layer_net_peaks_where_the_timeline_says(mlp):
    """fc1 (12 -> 8), relu, fc2 (8 -> 3), batch B, SGD, float32; fc1 keeps the input, relu its output (its mask),
    fc2 its input (relu's output: the same tensor). Bytes alive beyond the weights, at each candidate moment:
      end of forward: the input, relu's output, the logits, cross-entropy's log-softmax and int64 labels;
      fc2's backward: the input, relu's output, the logits' gradient, relu's output gradient, fc2's weight gradients;
      relu's backward: the input, relu's output and its gradient, fc1's output gradient, fc2's weight gradients;
      fc1's backward: the input, fc1's output gradient, every weight gradient (fc1's image needs none): the peak."""
    batch, f = 5, 4
    fc1_weights, fc2_weights = 12 * 8 + 8, 8 * 3 + 3
    x, hidden, logits = batch * 12 * f, batch * 8 * f, batch * 3 * f
    memory = training_memory(mlp, batch=batch, dtype_bytes=f, optimizer="sgd", params=fc1_weights + fc2_weights,
                             buffers=0)
    moments = {
        "end of forward": x + hidden + logits + logits + batch * 8,
        "fc2": x + hidden + logits + hidden + fc2_weights * f,
        "relu": x + hidden + hidden + hidden + fc2_weights * f,
        "fc1": x + hidden + (fc1_weights + fc2_weights) * f,
    }
    assert memory.peak_phase == "backward" and memory.peak_at == "fc1"
    assert memory.peak_bytes == (fc1_weights + fc2_weights) * f + max(moments.values()) == \
        (fc1_weights + fc2_weights) * f + moments["fc1"]
    assert memory.saved_bytes == x + hidden


def test_adam_keeps_two_moments_and_a_step_count_per_parameter_tensor(mlp):
    weights = (12 * 8 + 8) + (8 * 3 + 3)
    sgd = training_memory(mlp, batch=2, dtype_bytes=4, optimizer="sgd", params=weights, buffers=0)
    adam = training_memory(mlp, batch=2, dtype_bytes=4, optimizer="adamw", params=weights, buffers=0)
    assert sgd.optimizer_bytes == 0
    assert adam.optimizer_bytes == 2 * 4 * weights + 4 * 4  # four parameter tensors, a float32 step count each
    momentum = training_memory(mlp, batch=2, dtype_bytes=4, optimizer="momentum", params=weights, buffers=0)
    assert momentum.optimizer_bytes == 4 * weights


@pytest.mark.parametrize("budget", [10**6, 24 * 10**9])
def test_the_batch_that_fits_is_the_largest_whose_peak_fits(budget):
    graph = load("lenet")
    totals = inspect(graph).totals

    def peak(batch):
        memory = training_memory(graph, batch=batch, dtype_bytes=4, params=totals.params, buffers=totals.buffers)
        return memory.peak_bytes

    fits = largest_batch(peak, budget)
    assert fits >= 1 and peak(fits) <= budget < peak(fits + 1)


def test_nothing_fits_below_the_weights():
    assert largest_batch(lambda batch: 1000 + batch, 999) == 0


@pytest.mark.parametrize("text, expected", [("24GB", 24 * 10**9), ("80 GiB", 80 * 2**30), ("512MB", 512 * 10**6),
                                            ("1.5TB", 15 * 10**11), ("4096", 4096)])
def test_memory_amounts_are_read_in_decimal_and_binary_units(text, expected):
    assert parse_bytes(text, what="--fit") == expected


@pytest.mark.parametrize("text", ["12XB", "GB", "-3GB", "0.1B"])
def test_a_memory_amount_that_is_not_one_is_refused(text):
    with pytest.raises(SpecError, match="--fit"):
        parse_bytes(text, what="--fit")


def test_each_layer_says_what_it_keeps_and_the_totals_hold_the_step():
    report = inspect("lenet", batch=8, optimizer="adamw", fit_bytes=10**8)
    memory = report.totals.training_memory
    assert memory.optimizer == "adamw" and memory.fits_batch > 8
    conv1 = report.layer("conv1")
    assert conv1.saved_bytes == 8 * 1 * 32 * 32 * 4  # its input image, for the weight gradient
    assert inspect("lenet").totals.training_memory is None and inspect("lenet").layers[0].saved_bytes is None


def run_cli(*args):
    from archviz.cli import app

    return typer_testing.CliRunner().invoke(app, list(args))


def test_the_cli_predicts_a_training_step():
    result = run_cli("inspect", "lenet", "--train", "--optimizer", "adamw", "--fit", "1GB", "--no-crosscheck")
    assert result.exit_code == 0
    assert "Training step (predicted)" in result.output and "fits in 1.00 GB" in result.output
    data = json.loads(run_cli("inspect", "lenet", "--train", "--format", "json", "--no-crosscheck").output)
    assert data["totals"]["training_memory"]["peak_bytes"] > data["totals"]["param_bytes"]
    assert all("saved_bytes" in layer for layer in data["layers"])


def test_autocast_halves_the_activations_but_not_the_weights_their_gradients_or_the_optimizer_state():
    full = inspect("resnet18", batch=16, optimizer="adamw").totals.training_memory
    half = inspect("resnet18", batch=16, optimizer="adamw", amp="bf16").totals.training_memory
    assert half.amp == "bf16" and full.amp is None
    assert (half.params_bytes, half.optimizer_bytes, half.grads_bytes) == \
        (full.params_bytes, full.optimizer_bytes, full.grads_bytes)
    # the activations kept are halved; the 2-byte copies of the weights (23 MB) and of the image come on top
    assert 0.5 * full.saved_bytes < half.saved_bytes - 2 * 11_689_512 < 0.55 * full.saved_bytes


def test_a_bad_memory_amount_is_one_line_and_status_2():
    result = run_cli("inspect", "lenet", "--fit", "12XB")
    assert result.exit_code == 2 and "--fit" in result.output


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("source, input_shape", [("lenet", None), ("torchvision:resnet18", (3, 64, 64)),
                                                 ("torchvision:mobilenet_v3_small", (3, 64, 64))])
@pytest.mark.parametrize("optimizer, amp", [("sgd", None), ("adamw", None), ("sgd", "bf16")])
def test_the_prediction_is_within_two_percent_of_the_measured_peak(source, input_shape, optimizer, amp):
    """The live-storage tracker (archviz/profile/tracker.py) counts every tensor torch holds in a real step; the
    prediction is within 2% on these, float32 and under bf16 autocast (benchmarks/training_memory.py measures more
    models at real sizes)."""
    from archviz.profile import measure_model

    batch = 4
    report = inspect(source, input=input_shape, batch=batch, optimizer=optimizer, amp=amp)
    measured = measure_model(source, input_shape=input_shape, batch=batch, train=True, optimizer=optimizer, amp=amp,
                             iterations=1, warmup=1, per_layer=False)
    predicted = report.totals.training_memory.peak_bytes
    assert abs(predicted - measured.peak_bytes) <= 0.02 * measured.peak_bytes


def test_a_tensor_held_past_its_last_read_is_freed_when_its_holder_lets_go():
    """A local name or a caller holds a tensor past its last read, to a step that does not read it (torchvision's
    Bottleneck holds `identity` and rebinds `out`): it must be freed there, not carried into the backward pass (a
    walk that freed tensors only at steps reading them put resnet50 26% high at batch 8)."""
    from archviz.profile import measure_model

    report = inspect("torchvision:resnet50", input=(3, 64, 64), batch=4, optimizer="sgd")
    measured = measure_model("torchvision:resnet50", input_shape=(3, 64, 64), batch=4, train=True, optimizer="sgd",
                             iterations=1, warmup=1, per_layer=False)
    assert abs(report.totals.training_memory.peak_bytes - measured.peak_bytes) <= 0.02 * measured.peak_bytes


def test_a_traced_blocks_input_is_held_by_its_caller_until_the_block_returns():
    """torchvision's InvertedResidual without its shortcut runs self.conv(x): x, held by forward's frame, outlives its
    last use inside the block. A spec's own torch build frees each tensor at its last use, so it has no such rule."""
    from archviz.analysis.memory import held_by_callers

    graph = load("torchvision:mobilenet_v2")
    held = held_by_callers(graph)
    first_conv = [n.name for n in graph.nodes].index("features.2.conv.0.0")
    assert held["features.1.conv.2"] >= first_conv + 2  # features.1's output lives through features.2's layers
    assert held_by_callers(load("resnet18")) == {}


def test_the_inference_peak_equals_the_measured_one_where_a_block_holds_its_input():
    from archviz.profile import measure_model

    report = inspect("torchvision:mobilenet_v2", input=(3, 64, 64), batch=2)
    measured = measure_model("torchvision:mobilenet_v2", input_shape=(3, 64, 64), batch=2, iterations=1,
                             per_layer=False)
    counters = 52 * 8  # batch norm's int64 step counters: buffers, but not floating-point ones
    assert report.totals.param_bytes + report.totals.peak_activation_bytes + counters == measured.peak_bytes


@pytest.mark.parametrize("source, input_shape", [("lenet", None), ("torchvision:resnet18", (3, 64, 64))])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adamw"])
def test_the_for_each_step_cuda_runs_by_default_is_predicted_as_the_cpu_measures_it(source, input_shape, optimizer):
    """On a GPU torch's optimizers default to for-each kernels: Adam's step makes one temporary of every parameter's
    size at once. The CPU runs the same kernels when asked (foreach=True), so the tracker checks that part here."""
    from archviz.analysis.training import training_memory
    from archviz.profile import measure_model

    batch = 4
    graph = load(source, input=input_shape)
    totals = inspect(graph, batch=batch).totals
    predicted = training_memory(graph, batch=batch, dtype_bytes=4, optimizer=optimizer, params=totals.params,
                                buffers=totals.buffers, foreach=True)
    measured = measure_model(source, input_shape=input_shape, batch=batch, train=True, optimizer=optimizer,
                             iterations=1, warmup=1, per_layer=False, foreach=True)
    assert abs(predicted.peak_bytes - measured.peak_bytes) <= 0.02 * measured.peak_bytes
    if optimizer == "adamw":
        assert predicted.step_temporary_bytes == predicted.params_bytes


def test_on_a_gpu_every_tensor_takes_whole_512_byte_blocks():
    report = inspect("lenet", batch=1, optimizer="adam", device="h100")
    memory = report.totals.training_memory
    assert (memory.foreach, memory.block_bytes) == (True, 512)
    assert memory.params_bytes % 512 == 0 and memory.params_bytes > report.totals.param_bytes
    assert memory.optimizer_bytes == 2 * memory.params_bytes  # the step counts stay on the CPU
    plain = inspect("lenet", batch=1, optimizer="adam").totals.training_memory
    assert (plain.foreach, plain.block_bytes) == (False, 1)


def test_on_a_gpu_autocast_widens_where_cuda_lists_say(tmp_path):
    """Under autocast, layer norm gives float32 on CUDA (its float32 list) and bf16 on the CPU; reflection padding
    the other way round. The timeline sizes each output by the device's lists, and a GPU report uses CUDA's."""
    from archviz.analysis.training import _Timeline
    from archviz.profile.choices import Amp

    path = tmp_path / "widen.yaml"
    path.write_text("name: widen\ninput: [3, 8, 8]\nlayers:\n"
                    "  - conv2d: {out_channels: 4, kernel_size: 3}\n    name: conv\n"
                    "  - layer_norm: {normalized_shape: [6]}\n    name: norm\n"
                    "  - pad: {padding_left: 1, padding_right: 1, padding_top: 1, padding_bottom: 1, mode: reflect}\n"
                    "    name: pad\n")
    graph = load(str(path))
    itemsizes = {device: _Timeline(graph, 2, 4, Amp.BF16, autocast_device=device).itemsize
                 for device in ("cpu", "cuda")}
    assert [itemsizes["cpu"][name] for name in ("conv", "norm", "pad")] == [2, 2, 4]
    assert [itemsizes["cuda"][name] for name in ("conv", "norm", "pad")] == [2, 4, 4]  # pad keeps its input's
    on_gpu = inspect(graph, batch=2, optimizer="sgd", amp="bf16", device="h100").totals.training_memory
    on_cpu = inspect(graph, batch=2, optimizer="sgd", amp="bf16").totals.training_memory
    assert (on_gpu.autocast_device, on_cpu.autocast_device) == ("cuda", "cpu")
