"""Latency predicted by a roofline per layer: the arithmetic on hand-computed layers, the device table, calibration."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest

import archviz
from archviz.analysis.devices import DEVICES, Device, DeviceKind, Peaks, PoolCost, Precision, get_device
from archviz.analysis.latency import layer_bytes, predict_latency
from archviz.errors import ArchvizError, UnknownNameError

NET = """
    name: net
    input: [3, 32, 32]
    layers:
      - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
        name: conv1
      - relu: {inplace: true}
        name: relu
      - conv2d: {out_channels: 64, kernel_size: 3, padding: 1, bias: false}
        name: conv2
      - flatten: {}
        name: flatten
      - linear: {out_features: 10}
        name: fc
"""

PEAK = 10**12  # FLOP/s: a device of round numbers, ridge point at 10 FLOPs per byte
BANDWIDTH = 10**11  # bytes/s
OVERHEAD = 1e-5  # seconds per layer
ROUND = Device(key="round", name="round numbers", kind=DeviceKind.GPU, peaks=Peaks(fp32=PEAK),
               memory_bandwidth=BANDWIDTH, launch_overhead_s=OVERHEAD, memory_bytes=None, source="made up",
               overhead_source="made up")


@pytest.fixture
def net(write_spec):
    return write_spec(NET)


def test_compute_bound_conv(net):
    latency = predict_latency(archviz.inspect(net), ROUND)
    conv2 = next(layer for layer in latency.layers if layer.name == "conv2")
    flops = 2 * (64 * 8 * 3 * 3) * (32 * 32)  # 2 x weights x output positions
    moved = 4 * (8 * 32 * 32 + 64 * 8 * 3 * 3 + 64 * 32 * 32)  # input + weights + output, fp32
    assert (conv2.flops, conv2.bytes_moved) == (flops, moved)
    assert conv2.intensity == pytest.approx(flops / moved)  # about 30 FLOPs per byte: right of the ridge (10)
    assert conv2.attainable_flops == PEAK
    assert not conv2.memory_bound
    assert conv2.seconds == pytest.approx(flops / PEAK + OVERHEAD)


def test_memory_bound_conv(net):
    conv1 = predict_latency(archviz.inspect(net), ROUND).layers[0]
    flops = 2 * (8 * 3 * 3 * 3) * (32 * 32)
    moved = 4 * (3 * 32 * 32 + (8 * 3 * 3 * 3 + 8) + 8 * 32 * 32)  # the bias is a weight too
    assert conv1.bytes_moved == moved
    assert conv1.intensity == pytest.approx(flops / moved)  # about 9.6: left of the ridge
    assert conv1.attainable_flops == pytest.approx(flops / moved * BANDWIDTH)
    assert conv1.memory_bound
    assert conv1.seconds == pytest.approx(moved / BANDWIDTH + OVERHEAD)


def test_layers_without_macs_cost_their_traffic_and_views_nothing(net):
    layers = {layer.name: layer for layer in predict_latency(archviz.inspect(net, batch=4), ROUND).layers}
    relu_moved = 4 * 4 * (8 * 32 * 32) * 2  # batch 4, reads and writes each element (in place or not)
    assert layers["relu"].bytes_moved == relu_moved
    assert layers["relu"].memory_bound and layers["relu"].intensity == 0
    assert layers["relu"].seconds == pytest.approx(relu_moved / BANDWIDTH + OVERHEAD)
    assert layers["flatten"].bytes_moved == 0 and layers["flatten"].intensity is None
    assert layers["flatten"].seconds == OVERHEAD
    fc_moved = 4 * (4 * (64 * 32 * 32 + 10) + 64 * 32 * 32 * 10 + 10)  # the weights once for the whole batch
    assert layers["fc"].bytes_moved == fc_moved


def test_model_total_and_images_per_second(net):
    latency = predict_latency(archviz.inspect(net, batch=8), ROUND)
    assert latency.seconds == pytest.approx(sum(layer.seconds for layer in latency.layers))
    assert latency.images_per_second == pytest.approx(8 / latency.seconds)
    assert latency.not_predicted == ()
    assert 0 < latency.memory_bound_seconds < latency.seconds


def test_half_precision_halves_the_bytes(net):
    report = archviz.inspect(net, dtype="bfloat16")
    latency = predict_latency(report, get_device("a100"))
    fp32 = predict_latency(archviz.inspect(net), get_device("a100"))
    assert [layer.bytes_moved * 2 for layer in latency.layers] == [layer.bytes_moved for layer in fp32.layers]
    assert {layer.precision for layer in latency.layers} == {Precision.BF16}


def test_float32_convolutions_use_tf32_where_the_device_has_it(net):
    layers = {layer.name: layer for layer in predict_latency(archviz.inspect(net), get_device("a100")).layers}
    assert layers["conv2"].precision == Precision.TF32 and layers["fc"].precision == Precision.FP32
    plain = predict_latency(archviz.inspect(net), get_device("a100"), tf32_convs=False)
    assert {layer.precision for layer in plain.layers} == {Precision.FP32}
    t4 = predict_latency(archviz.inspect(net), get_device("t4"))  # no TF32 units
    assert {layer.precision for layer in t4.layers} == {Precision.FP32}


def test_a_layer_without_formula_is_not_predicted(net):
    report = archviz.inspect(net)
    opaque = dataclasses.replace(report.layer("conv2"), counted=False, macs=0, flops=0)
    report = dataclasses.replace(report, layers=tuple(opaque if s.name == "conv2" else s for s in report.layers))
    latency = predict_latency(report, ROUND)
    assert latency.not_predicted == ("conv2",)
    conv2 = next(layer for layer in latency.layers if layer.name == "conv2")
    assert conv2.seconds is None and not conv2.predicted
    assert latency.seconds == pytest.approx(sum(layer.seconds for layer in latency.layers if layer.predicted))


def test_dtype_without_a_peak_is_an_error(net):
    with pytest.raises(ArchvizError, match="no bf16 peak"):
        predict_latency(archviz.inspect(net, dtype="bfloat16"), get_device("t4"))
    with pytest.raises(ArchvizError, match="float64"):
        predict_latency(archviz.inspect(net, dtype="float64"), get_device("h100"))


def test_layer_bytes_scale_with_the_batch(net):
    conv1 = archviz.inspect(net).layer("conv1")
    weights = 8 * 3 * 3 * 3 + 8
    one, five = (layer_bytes(conv1, batch=batch, dtype_bytes=4) for batch in (1, 5))
    assert five - weights * 4 == 5 * (one - weights * 4)


def test_device_table():
    assert list(DEVICES) == ["h100", "h100-pcie", "h200", "a100-40gb", "a100", "l4", "t4", "rtx4090", "rtx3090"]
    h100 = get_device("H100")
    assert h100.peaks.bf16 == 989.5e12  # the datasheet's 1,979 TFLOPS with sparsity, halved
    assert h100.memory_bandwidth == 3.35e12
    assert get_device("a100-40gb").memory_bandwidth == 1555e9
    assert get_device("t4").peak(Precision.TF32) is None
    assert h100.ridge_intensity == pytest.approx(67e12 / 3.35e12)
    for device in DEVICES.values():
        assert device.source and device.overhead_source and device.launch_overhead_s > 0
        assert device.peaks.fp32 <= (device.peaks.fp16 or math.inf)


def test_unknown_device_names_the_choices():
    with pytest.raises(UnknownNameError) as error:
        get_device("h10")
    message = str(error.value)
    assert "\n" not in message
    assert "did you mean: h100" in message and "rtx3090" in message


def test_formula_path_does_not_import_torch():
    code = "import sys, archviz.analysis.latency, archviz.analysis.devices; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_calibration_measures_positive_finite_figures():
    from archviz.profile.calibrate import calibrate

    device = calibrate(seconds=0.2)
    assert device.kind == DeviceKind.CPU
    for figure in (device.peaks.fp32, device.memory_bandwidth, device.launch_overhead_s):
        assert 0 < figure < math.inf
    assert device.launch_overhead_s < 0.01


def test_calibration_is_cached_per_machine(tmp_path, monkeypatch):
    from archviz.profile import calibrate as module

    monkeypatch.setenv("ARCHVIZ_CACHE_DIR", str(tmp_path))
    made = []
    fake = dataclasses.replace(ROUND, key="cpu", kind=DeviceKind.CPU)
    monkeypatch.setattr(module, "calibrate", lambda: made.append(1) or fake)
    first = module.local_device()
    assert module.local_device() == first == fake
    assert len(made) == 1
    stored = json.loads((tmp_path / "cpu-calibration.json").read_text())
    assert stored["key"] == module.calibration_key()
    module.local_device(recalibrate=True)
    assert len(made) == 2
    stored["key"] = "another machine"
    (tmp_path / "cpu-calibration.json").write_text(json.dumps(stored))
    module.local_device()
    assert len(made) == 3


CPU_NET = """
    name: cpu_net
    input: [16, 8, 8]
    layers:
      - conv2d: {out_channels: 16, kernel_size: 3, padding: 1, groups: 16, bias: false}
        name: dw
      - conv2d: {out_channels: 24, kernel_size: 1, bias: false}
        name: pw
      - relu: {inplace: true}
        name: relu
      - maxpool2d: {kernel_size: 2}
        name: pool
      - adaptive_avgpool2d: {output_size: 1}
        name: gap
"""

LANES = 16
CACHE_BANDWIDTH = 4 * BANDWIDTH
CACHE_BYTES = 2**20
POOL = PoolCost(per_output_s=1e-8, per_element_s=2e-9)  # 10 ns per output, 2 ns per window element
DEPTHWISE = 10**10  # FLOP/s
FRESH = 1e-9  # seconds per byte of a fresh output
CPU_LIKE = dataclasses.replace(
    ROUND, kind=DeviceKind.CPU, cache_bytes=CACHE_BYTES, cache_bandwidth=CACHE_BANDWIDTH, vector_lanes=LANES,
    max_pool=POOL, depthwise_flops=DEPTHWISE, fresh_memory_s_per_byte=FRESH,
    fresh_memory_from_bytes=4 * 16 * 24 * 8 * 8)  # pw's output (at batch 16) and larger: not dw's, 16 channels


@pytest.fixture
def cpu_layers(write_spec):
    report = archviz.inspect(write_spec(CPU_NET), batch=16)
    return {layer.name: layer for layer in predict_latency(report, CPU_LIKE).layers}


def test_a_model_fitting_half_the_cache_streams_at_its_bandwidth(cpu_layers):
    pw = cpu_layers["pw"]  # 16 x (16 + 24) x 64 floats of activations: 160 KiB; the whole model fits in 512 KiB
    activations, weights = 4 * 16 * (16 + 24) * 64, 4 * 24 * 16
    assert pw.bytes_moved == activations + weights
    fresh = 4 * 16 * 24 * 64 * FRESH  # its output is past the device's threshold for fresh memory
    assert pw.memory_s == pytest.approx((activations + weights) / CACHE_BANDWIDTH + fresh)
    assert CPU_LIKE.bandwidth_for(CACHE_BYTES // 2) == CACHE_BANDWIDTH
    assert CPU_LIKE.bandwidth_for(CACHE_BYTES // 2 + 1) == BANDWIDTH


def test_lanes_left_empty_lower_the_compute_roof(cpu_layers):
    pw = cpu_layers["pw"]
    fill = 24 / 32  # 24 output channels fill two 16-lane vectors, 8 lanes idle (input channels are not counted)
    assert pw.lane_fill == pytest.approx(fill)
    assert pw.compute_s == pytest.approx(pw.flops / (PEAK * fill))


def test_depthwise_convolution_runs_at_its_measured_ceiling(cpu_layers):
    dw = cpu_layers["dw"]
    assert dw.lane_fill == 1.0  # vectorised over its 16 channels
    assert dw.compute_s == pytest.approx(dw.flops / DEPTHWISE)  # 10 GFLOP/s, not the 1 TFLOP/s peak
    assert not dw.memory_bound


def test_a_pool_cost_is_the_line_through_its_two_measured_windows():
    cost = PoolCost.through((4, 21e-9), (16, 45e-9))  # 2x2 and 4x4: 2 ns per element more, 13 ns at no window
    assert cost.per_element_s == pytest.approx(2e-9) and cost.per_output_s == pytest.approx(13e-9)
    assert cost.seconds(100, 9) == pytest.approx(100 * 31e-9)
    assert PoolCost.through((4, 21e-9), (16, 20e-9)).per_element_s == 0  # noise never makes a wider window cheaper


def test_sliding_pools_have_a_ceiling_and_global_ones_do_not(cpu_layers):
    pool, gap = cpu_layers["pool"], cpu_layers["gap"]
    assert pool.compute_s == pytest.approx(16 * 24 * 4 * 4 * (1e-8 + 2e-9 * 2 * 2))  # outputs x (10 ns + 4 x 2)
    assert gap.compute_s == 0 and gap.memory_bound


def test_only_fresh_outputs_past_the_threshold_pay_page_faults(cpu_layers):
    dw, relu, pool = cpu_layers["dw"], cpu_layers["relu"], cpu_layers["pool"]
    weights = 4 * 16 * 3 * 3
    assert dw.memory_s == pytest.approx((4 * 16 * 16 * 64 * 2 + weights) / CACHE_BANDWIDTH)  # no page faults
    assert relu.memory_s == pytest.approx(4 * 16 * 24 * 64 * 2 / CACHE_BANDWIDTH)  # in place: no new memory
    assert pool.memory_s == pytest.approx(4 * 16 * 24 * (8 * 8 + 4 * 4) / CACHE_BANDWIDTH)


def test_datasheet_devices_model_none_of_the_cpu_ceilings(net):
    a100 = get_device("a100")
    assert (a100.cache_bytes, a100.vector_lanes, a100.max_pool, a100.fresh_memory_s_per_byte) == \
        (None, None, None, None)
    layers = predict_latency(archviz.inspect(net), a100).layers
    assert {layer.lane_fill for layer in layers} == {1.0}


def test_weights_come_from_memory_when_the_model_does_not_fit_in_half_the_cache(write_spec):
    report = archviz.inspect(write_spec(CPU_NET), batch=16)
    model_bytes = report.totals.param_bytes + report.totals.peak_activation_bytes
    tight = dataclasses.replace(CPU_LIKE, cache_bytes=2 * model_bytes - 2)  # pw's activations alone still fit
    pw = next(layer for layer in predict_latency(report, tight).layers if layer.name == "pw")
    activations, weights = 4 * 16 * (16 + 24) * 64, 4 * 24 * 16
    fresh = 4 * 16 * 24 * 64 * FRESH
    assert pw.memory_s == pytest.approx(activations / CACHE_BANDWIDTH + weights / BANDWIDTH + fresh)


CONV_SPECS = [  # (op, input, args, batch): each side of torch's rule for the CPU path
    ("conv2d", [1, 3, 3], {"out_channels": 1, "kernel_size": 3}, 1),  # small, one image: native
    ("conv2d", [1, 3, 3], {"out_channels": 1, "kernel_size": 3}, 2),  # two images: oneDNN
    ("conv2d", [3, 224, 224], {"out_channels": 8, "kernel_size": 3}, 1),  # past 20,480 input elements
    ("conv2d", [20, 32, 32], {"out_channels": 8, "kernel_size": 1}, 1),  # 1x1, one image, one thread: native
    ("conv2d", [20, 32, 32], {"out_channels": 8, "kernel_size": 1, "stride": 2}, 1),  # strided 1x1: oneDNN
    ("conv2d", [20, 32, 32], {"out_channels": 8, "kernel_size": 1}, 16),  # 16 images
    ("conv2d", [1, 8, 8], {"out_channels": 4, "kernel_size": 5}, 1),  # wider than 3x3
    ("conv2d", [1, 8, 8], {"out_channels": 4, "kernel_size": [5, 3]}, 1),  # 5x3: not wider on both axes
    ("conv2d", [4, 8, 8], {"out_channels": 4, "kernel_size": 3, "groups": 2}, 1),  # grouped
    ("conv2d", [4, 8, 8], {"out_channels": 4, "kernel_size": 3, "dilation": 2}, 1),
    ("conv1d", [4, 30], {"out_channels": 4, "kernel_size": 5}, 1),  # viewed as 2-d: a 1x5 kernel
    ("conv1d", [4, 9000], {"out_channels": 4, "kernel_size": 3}, 1),  # 36,000 elements
    ("conv3d", [2, 4, 6, 6], {"out_channels": 2, "kernel_size": 3}, 1),
    ("conv3d", [2, 6, 6, 6], {"out_channels": 2, "kernel_size": 5}, 1),
]


@pytest.mark.parametrize("op, shape, args, batch", CONV_SPECS)
def test_the_cpu_conv_path_is_the_one_torch_takes(op, shape, args, batch, write_spec):
    """onednn_conv against torch's own choice (torch._C._select_conv_backend) at one thread, for the layer as the
    latency model reads it from the graph."""
    torch = pytest.importorskip("torch")
    from archviz.analysis.latency import _node_facts, onednn_conv
    from archviz.torch_build import to_torch

    spec = f"name: c\ninput: {shape}\nlayers:\n  - {op}: {json.dumps(args)}\n    name: conv\n"
    report = archviz.inspect(write_spec(spec), crosscheck=False)
    call = _node_facts(report, report.layer("conv"))["conv_call"]
    module = to_torch(report.graph).conv
    x = torch.randn(batch, *shape)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        backend = torch._C._select_conv_backend(x, module.weight, module.bias, module.stride, module.padding,
                                                module.dilation, False, [0] * len(module.stride), module.groups, None)
    finally:
        torch.set_num_threads(threads)
    assert onednn_conv(call, batch=batch, threads=1, precision=Precision.FP32) == (backend.name == "Mkldnn"), backend
