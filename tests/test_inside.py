"""Seeing inside a network (archviz/inside, `archviz filters|activations|cam`): weights from a real run, a state dict
or a seed; the layer choices; hooks that never stay behind; filter grids against the weights themselves; feature maps
against the net run by hand; and Grad-CAM against the original CAM (Zhou et al. 2016) and Grad-CAM++ against the
paper's formula in numpy, on gradients taken here with torch.autograd.

One lenet run on the bundled digits (5 epochs, about 10 s) serves the whole module."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import archviz
from archviz.cli import app
from archviz.errors import ArchvizError, UnknownNameError

torch = pytest.importorskip("torch")
F = torch.nn.functional

from archviz.inside import trained as trained_module  # noqa: E402  (after the torch check)
from archviz.inside.activations import activation_grid, capture_maps  # noqa: E402
from archviz.inside.cam import CamMethod, class_activation_map  # noqa: E402
from archviz.inside.capture import capture_outputs, forward_hooks, output_with_gradient  # noqa: E402
from archviz.inside.filters import filter_grid, kernel_weights, smoothness  # noqa: E402
from archviz.inside.images import Input, dataset_sample  # noqa: E402
from archviz.inside.layers import auto_cam_layer  # noqa: E402
from archviz.inside.trained import load_trained  # noqa: E402
from archviz.render.pictures import Scale  # noqa: E402

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# conv -> relu -> conv -> relu -> global average pool -> linear: at relu2 Grad-CAM is the CAM of Zhou et al.
CAMNET = """
    name: camnet
    input: [1, 12, 12]
    layers:
      - conv2d: {{out_channels: 4, kernel_size: 3, padding: 1}}
        name: conv1
      - relu: {{inplace: {inplace}}}
        name: relu1
      - conv2d: {{out_channels: 5, kernel_size: 3, stride: 2}}
        name: conv2
      - relu: {{}}
        name: relu2
      - global_avgpool2d: {{keepdim: false}}
        name: gap
      - linear: {{out_features: 3}}
        name: fc
"""

RGB = """
    name: rgb
    input: [3, 16, 16]
    layers:
      - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
        name: conv1
      - relu
      - flatten
      - linear: {out_features: 2}
        name: fc
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real run folder: lenet, 5 epochs at lr 0.02 on digits (about 96% validation accuracy)."""
    from archviz.train.loop import train

    folder = tmp_path_factory.mktemp("inside") / "run"
    train("lenet", dataset="digits", epochs=5, lr=0.02, seed=0, output=folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def lenet(run):
    return load_trained(str(run))


@pytest.fixture
def camnet(write_spec):
    """The tiny CAM net, random weights from seed 0, with relu1 in place or not (same weights either way)."""

    def make(inplace: bool = False):
        path = write_spec(CAMNET.format(inplace=str(inplace).lower()), f"camnet_{inplace}.yaml")
        return load_trained(str(path), seed=0)

    return make


def no_hooks(net) -> bool:
    return all(not module._forward_hooks for module in net.modules())


def tensors(net) -> dict:
    return {name: value.clone() for name, value in net.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def one_input(net_input: torch.Tensor) -> Input:
    return Input(net_input, np.zeros(tuple(net_input.shape[-2:])), "test input")


def run_cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("archviz: error:") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# --- weights: a run, a checkpoint, a state dict, a seed ---------------------------------------------------------

def test_run_folder_and_its_checkpoints(run, lenet):
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert same_weights(tensors(lenet.net), best["model"])
    assert lenet.dataset == "digits" and lenet.classes == tuple(str(i) for i in range(10))
    assert lenet.stats.mean == tuple(best["dataset"]["normalize"]["mean"])
    assert "archviz train lenet on digits" in lenet.weights and not lenet.net.training
    assert same_weights(tensors(load_trained("lenet", run / "best.pt").net), best["model"])
    assert same_weights(tensors(load_trained("lenet", run / "last.pt").net), last["model"])
    # the checkpoint file named as the model, as `archviz filters run/best.pt`: its weights, not random ones
    assert same_weights(tensors(load_trained(str(run / "best.pt")).net), best["model"])


def test_plain_state_dict(lenet, tmp_path):
    plain, nested = tmp_path / "lenet.pth", tmp_path / "nested.pt"
    torch.save(lenet.net.state_dict(), plain)
    torch.save({"state_dict": lenet.net.state_dict(), "epoch": 3}, nested)
    for path in (plain, nested):
        loaded = load_trained("lenet", path)
        assert same_weights(tensors(loaded.net), tensors(lenet.net))
        assert loaded.dataset is None and "state dict" in loaded.weights
    alone = load_trained(str(plain))  # archviz.load names the model from the tensors
    assert alone.graph.name == "lenet" and same_weights(tensors(alone.net), tensors(lenet.net))


def test_random_initialisation_follows_the_seed(lenet):
    first, again, other = (load_trained("lenet", seed=seed) for seed in (3, 3, 4))
    assert first.weights == "random initialisation (seed 3)"
    assert same_weights(tensors(first.net), tensors(again.net))
    assert not torch.equal(first.net.conv1.weight, other.net.conv1.weight)
    assert not torch.equal(first.net.conv1.weight, lenet.net.conv1.weight)


def test_missing_weights_file(tmp_path):
    with pytest.raises(ArchvizError, match="no weights file .*absent.pt"):
        load_trained("lenet", tmp_path / "absent.pt")


def test_folder_without_checkpoint(tmp_path):
    with pytest.raises(ArchvizError, match="no best.pt or last.pt in this folder"):
        load_trained(str(tmp_path))


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(ArchvizError, match="corrupt.pt: cannot load"):
        load_trained("lenet", path)


def test_not_tensors(tmp_path):
    path = tmp_path / "numbers.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(ArchvizError, match="neither a checkpoint of archviz train nor a state dict"):
        load_trained("lenet", path)


def test_state_dict_of_another_model(tmp_path):
    other = load_trained("basic_cnn", seed=0).net.state_dict()
    path = tmp_path / "basic_cnn.pth"
    torch.save(other, path)
    own = list(load_trained("lenet", seed=0).net.state_dict())
    with pytest.raises(ArchvizError) as caught:
        load_trained("lenet", path)
    message = str(caught.value)
    assert "do not fit lenet" in message
    assert f"{len(own)} missing ({', '.join(own[:3])}, ...)" in message
    assert f"{len(other)} unexpected ({', '.join(list(other)[:3])}, ...)" in message


def test_state_dict_with_one_wrong_shape(lenet, tmp_path):
    state = lenet.net.state_dict()
    state["conv2.weight"] = torch.zeros(16, 6, 3, 3)
    path = tmp_path / "reshaped.pth"
    torch.save(state, path)
    with pytest.raises(ArchvizError) as caught:
        load_trained("lenet", path)
    message = str(caught.value)
    assert "1 misshapen (conv2.weight is 16x6x3x3 in the file, 16x6x5x5 in the model)" in message
    assert "missing" not in message and "unexpected" not in message


def test_state_dict_without_a_model_name(lenet, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(lenet.net.state_dict(), path)
    with pytest.raises(ArchvizError, match="is a state dict, not a run's checkpoint: name the model"):
        load_trained(None, path)


# --- layers ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, layer", [("lenet", "tanh2"), ("vgg16", "features.29"),
                                          ("resnet18", "layer4.1.relu2"), ("basic_cnn", "conv2d_3_relu")])
def test_auto_cam_layer(model, layer):
    assert auto_cam_layer(archviz.load(model)).name == layer


def test_auto_cam_layer_needs_no_torch():
    code = ("import sys, archviz; from archviz.inside.layers import auto_cam_layer; "
            "print(auto_cam_layer(archviz.load('vgg16')).name, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["features.29", "False"]


def test_no_spatial_layer():
    with pytest.raises(UnknownNameError, match="mlp has no layer with a spatial output"):
        auto_cam_layer(archviz.load("mlp"))


# --- hooks never stay behind ---------------------------------------------------------------------------------------

def test_hooks_are_removed(lenet):
    net, x = lenet.net, dataset_sample(lenet, 0).tensor
    assert no_hooks(net)
    with forward_hooks(net, {"conv1": lambda *_: None, "tanh2": lambda *_: None}):
        assert len(net.conv1._forward_hooks) == 1 and len(net.tanh2._forward_hooks) == 1
    assert no_hooks(net)
    capture_outputs(net, ["conv1", "tanh2", "fc1"], x)
    assert no_hooks(net)
    output_with_gradient(net, "tanh2", x)
    assert no_hooks(net)
    for method in CamMethod:
        class_activation_map(lenet, dataset_sample(lenet, 0), layer="tanh2", method=method)
        assert no_hooks(net)


def test_hooks_are_removed_when_the_forward_fails(lenet):
    wrong = torch.zeros(1, 3, 32, 32)  # lenet reads one channel
    with pytest.raises(RuntimeError):
        capture_outputs(lenet.net, ["conv1", "tanh2"], wrong)
    assert no_hooks(lenet.net)
    with pytest.raises(RuntimeError):
        output_with_gradient(lenet.net, "tanh2", wrong)
    assert no_hooks(lenet.net)
    with pytest.raises(AttributeError):  # no module at that path: the hooks registered before it go too
        with forward_hooks(lenet.net, {"conv1": lambda *_: None, "nowhere": lambda *_: None}):
            pass
    assert no_hooks(lenet.net)


def test_cli_leaves_no_hooks(run, monkeypatch):
    loaded = []

    def recording(*args, **kwargs):
        loaded.append(load_trained(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(trained_module, "load_trained", recording)
    for command in (["activations", run, "--sample", "1", "--layers", "conv1,tanh2,fc1"],
                    ["cam", run, "--sample", "1"], ["cam", run, "--sample", "1", "--method", "gradcam++"],
                    ["filters", run]):
        result = run_cli(*command)
        assert result.exit_code == 0, result.output
    assert len(loaded) == 4 and all(no_hooks(trained.net) for trained in loaded)


# --- filters -------------------------------------------------------------------------------------------------------

def test_first_layer_of_lenet(lenet):
    grid = filter_grid(lenet)
    weight = lenet.net.conv1.weight.detach().numpy()
    assert grid.title == "conv1: 6 filters 5x5 over 1 input channel" and grid.scale == Scale.DIVERGING
    assert len(grid.tiles) == 6 and grid.captions == tuple("012345")
    for tile, kernel in zip(grid.tiles, weight):
        assert tile.shape == (5, 5)
        np.testing.assert_allclose(tile, kernel[0] / np.abs(kernel).max(), rtol=1e-6)
        assert np.abs(tile).max() == pytest.approx(1.0)


def test_deeper_layer_averaged_and_per_channel(lenet):
    weight = lenet.net.conv2.weight.detach().numpy()  # 16 x 6 x 5 x 5
    averaged = filter_grid(lenet, "conv2")
    assert len(averaged.tiles) == 16 and averaged.columns is None and "averaged" in averaged.note
    mean = weight[7].mean(axis=0)
    np.testing.assert_allclose(averaged.tiles[7], mean / np.abs(mean).max(), rtol=1e-6)
    per_channel = filter_grid(lenet, "conv2", per_channel=True)
    assert len(per_channel.tiles) == 16 * 6 and per_channel.columns == 6
    assert per_channel.captions[6 * 3 + 4] == "3/4"
    np.testing.assert_allclose(per_channel.tiles[6 * 3 + 4], weight[3, 4] / np.abs(weight[3]).max(), rtol=1e-6)


def test_limit(lenet):
    grid = filter_grid(lenet, "conv2", limit=5)
    assert len(grid.tiles) == 5 and "first 5 of 16 filters" in grid.note
    assert len(filter_grid(lenet, "conv2", per_channel=True, limit=2).tiles) == 2 * 6


def test_colour_first_layer(write_spec):
    trained = load_trained(str(write_spec(RGB)), seed=0)
    with torch.no_grad():
        trained.net.conv1.weight[1, 2, 0, 1] = 0.0
    weight = trained.net.conv1.weight.detach().numpy()  # 4 x 3 x 3 x 3
    grid = filter_grid(trained)
    assert grid.scale == Scale.RGB and grid.scale_labels == () and len(grid.tiles) == 4
    for tile, kernel in zip(grid.tiles, weight):
        assert tile.shape == (3, 3, 3) and tile.min() >= 0 and tile.max() <= 1
        np.testing.assert_allclose(tile, 0.5 + 0.5 * kernel.transpose(1, 2, 0) / np.abs(kernel).max(), rtol=1e-6)
        assert tile.min() == pytest.approx(0) or tile.max() == pytest.approx(1)  # its largest |weight| at an end
    assert grid.tiles[1][0, 1, 2] == 0.5  # a zero weight is grey


def test_not_a_convolution(lenet):
    with pytest.raises(UnknownNameError) as caught:
        filter_grid(lenet, "tanh1")
    assert str(caught.value) == ("tanh1 is a tanh layer, not a convolution; its kernels are not images. "
                                 "Convolutions: conv1, conv2")


def test_unknown_layer(lenet):
    with pytest.raises(UnknownNameError, match=r"lenet has no layer 'conv3' \(did you mean: conv2, conv1"):
        filter_grid(lenet, "conv3")


def test_no_convolution():
    with pytest.raises(UnknownNameError, match="no convolution"):
        filter_grid(load_trained("mlp", seed=0))


def test_smoothness_of_known_kernels():
    checkerboard = np.indices((5, 5)).sum(axis=0) % 2 * 2.0 - 1  # every neighbour the opposite sign
    assert smoothness(np.stack([checkerboard, -checkerboard])) == pytest.approx(-1.0)
    y, x = np.mgrid[-2:3, -2:3]
    blob = np.exp(-(x ** 2 + y ** 2) / 4.0)
    assert smoothness(blob[None]) > 0.4  # 0.55
    noise = np.random.default_rng(0).normal(size=(400, 5, 5))
    assert abs(smoothness(noise)) < 0.1  # -0.04: centring each kernel's pairs biases it a little below 0


def test_trained_first_layer_is_smoother_than_random(lenet):
    """Learned first-layer kernels are smooth strokes and blobs; random ones are noise. Measured: trained about 0.5,
    random seeds 0 to 4 between -0.13 and 0.05."""
    trained = smoothness(kernel_weights(lenet)[1])
    random = [smoothness(kernel_weights(load_trained("lenet", seed=seed))[1]) for seed in range(5)]
    assert trained > max(random) + 0.25, (trained, random)


# --- activations ---------------------------------------------------------------------------------------------------

def test_captured_maps_are_the_layers_outputs(lenet):
    image = dataset_sample(lenet, 2)
    maps, logits = capture_maps(lenet, image, ["conv1", "tanh2", "fc1"])
    net, x = lenet.net, image.tensor
    with torch.no_grad():  # lenet run by hand, layer by layer
        conv1 = net.conv1(x)
        tanh2 = torch.tanh(net.conv2(F.avg_pool2d(torch.tanh(conv1), 2)))
        fc1 = net.fc1(F.avg_pool2d(tanh2, 2).flatten(1))
        expected_logits = net.fc3(torch.tanh(net.fc2(torch.tanh(fc1))))
    assert [m.layer for m in maps] == ["conv1", "tanh2", "fc1"]
    for got, expected in zip(maps, (conv1, tanh2, fc1)):
        np.testing.assert_allclose(got.maps, expected[0].numpy(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, expected_logits)
    # receptive fields: conv1 5; pool 2/2 -> 6; conv2 5 at stride 2 -> 6 + 4 * 2
    assert [m.receptive_field for m in maps] == [(5, 5), (6 + 4 * 2,) * 2, (32, 32)]


def test_in_place_relu_after_the_layer(camnet):
    trained = camnet(inplace=True)
    x = torch.randn(1, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    seen = []
    with forward_hooks(trained.net, {"conv1": lambda module, inputs, output: seen.append(output)}), torch.no_grad():
        trained.net(x)
    assert seen[0].min() >= 0  # the in-place ReLU overwrote conv1's output: the case the copy is there for
    maps, _ = capture_maps(trained, one_input(x), ["conv1", "relu1"])
    with torch.no_grad():
        conv1 = F.conv2d(x, trained.net.conv1.weight, trained.net.conv1.bias, padding=1)[0].numpy()
    assert conv1.min() < 0
    np.testing.assert_allclose(maps[0].maps, conv1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[1].maps, np.maximum(conv1, 0), rtol=1e-5, atol=1e-6)


def test_grid_shows_every_channel_in_order_or_the_most_active(lenet):
    (maps,), _ = capture_maps(lenet, dataset_sample(lenet, 0), ["tanh2"])
    values = maps.maps  # 16 x 10 x 10, tanh: negative values too
    every = activation_grid(maps)
    assert every.captions == tuple(str(c) for c in range(16)) and every.note.startswith("all 16 channels")
    assert every.scale == Scale.DIVERGING and every.title.startswith("tanh2: 16x10x10, each position sees 14x14")
    np.testing.assert_allclose(np.stack(every.tiles), values / np.abs(values).max(), rtol=1e-6)
    few = activation_grid(maps, limit=4)
    activity = np.abs(values).mean(axis=(1, 2))
    order = sorted(range(16), key=lambda c: -activity[c])[:4]
    assert few.captions == tuple(map(str, order)) and "the 4 most active of 16 channels" in few.note
    shown = values[order]
    np.testing.assert_allclose(np.stack(few.tiles), shown / np.abs(shown).max(), rtol=1e-6)


def test_grid_of_a_layer_never_negative(camnet):
    trained = camnet()
    x = torch.randn(1, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    (maps,), _ = capture_maps(trained, one_input(x), ["relu1"])
    grid = activation_grid(maps)
    peak = maps.maps.max()
    assert grid.scale == Scale.SEQUENTIAL and grid.scale_labels == ("0", "", f"{peak:.3g}")


def test_vector_layer_is_one_tile(lenet):
    (maps,), _ = capture_maps(lenet, dataset_sample(lenet, 0), ["fc1"])
    grid = activation_grid(maps)
    assert len(grid.tiles) == 1 and grid.tiles[0].shape == (4, 32)  # 120 values in rows of 32
    flat = grid.tiles[0].reshape(-1)
    assert np.isnan(flat[120:]).all() and not np.isnan(flat[:120]).any()
    np.testing.assert_allclose(flat[:120], maps.maps / np.abs(maps.maps).max(), rtol=1e-6)


# --- class-activation maps -----------------------------------------------------------------------------------------

def by_hand(trained, x, layer: str, target: int):
    """(A, dy/dA) at conv1, relu1 or relu2 of camnet, its layers run here, the gradient from torch.autograd."""
    net = trained.net
    conv1 = F.conv2d(x, net.conv1.weight, net.conv1.bias, padding=1)
    chain = {"conv1": conv1}
    chain["relu1"] = torch.relu(conv1)
    chain["relu2"] = torch.relu(F.conv2d(chain["relu1"], net.conv2.weight, net.conv2.bias, stride=2))
    scores = F.linear(chain["relu2"].mean(dim=(2, 3)), net.fc.weight, net.fc.bias)
    (gradient,) = torch.autograd.grad(scores[0, target], chain[layer])
    return chain[layer][0].detach().double().numpy(), gradient[0].double().numpy()


def gradcam_plus_plus(maps, gradient):
    """Chattopadhay et al. 2018, eq. 19 with the exponential score: alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)."""
    total = maps.sum(axis=(1, 2), keepdims=True)
    denominator = 2 * gradient ** 2 + total * gradient ** 3
    alpha = np.divide(gradient ** 2, denominator, out=np.zeros_like(gradient), where=denominator != 0)
    weights = (alpha * np.maximum(gradient, 0)).sum(axis=(1, 2))
    return np.maximum(np.einsum("k,khw->hw", weights, maps), 0)


def camnet_input(seed: int = 0):
    return torch.randn(1, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


def test_gradcam_at_the_last_maps_is_the_original_cam(camnet):
    """Before a global average pool and a linear layer, Grad-CAM's weights are w_ck / (h w): the map is Zhou et al.'s
    CAM, ReLU(sum_k w_ck A_k), divided by h w."""
    trained = camnet()
    x = camnet_input()
    with torch.no_grad():
        a = torch.relu(trained.net.conv2(torch.relu(trained.net.conv1(x))))[0].double().numpy()  # 5 x 5 x 5
    w = trained.net.fc.weight.detach().double().numpy()
    shown = 0
    for target in range(3):
        cam = class_activation_map(trained, one_input(x), layer="relu2", target=target)
        zhou = np.maximum(np.einsum("k,khw->hw", w[target], a), 0)
        assert cam.target == target and cam.coarse.shape == (5, 5) and cam.heatmap.shape == (12, 12)
        np.testing.assert_allclose(cam.coarse * 25, zhou, rtol=1e-5, atol=1e-7)
        if zhou.max() > 0:
            shown += 1
            np.testing.assert_allclose(cam.coarse / cam.coarse.max(), zhou / zhou.max(), rtol=1e-5, atol=1e-7)
            assert cam.heatmap.max() == pytest.approx(1.0) and cam.heatmap.min() >= 0 and not cam.empty
        else:
            assert cam.empty and not cam.heatmap.any()
    assert shown >= 1  # the comparison was not all zeros


@pytest.mark.parametrize("layer", ["relu1", "relu2"])
def test_gradcam_and_plus_plus_against_numpy(camnet, layer):
    trained = camnet()
    x = camnet_input(3)
    for target in range(3):
        maps, gradient = by_hand(trained, x, layer, target)
        gradcam = np.maximum(np.einsum("k,khw->hw", gradient.mean(axis=(1, 2)), maps), 0)
        plus = gradcam_plus_plus(maps, gradient)
        got = class_activation_map(trained, one_input(x), layer=layer, target=target)
        got_plus = class_activation_map(trained, one_input(x), layer=layer, target=target,
                                        method=CamMethod.GRADCAM_PLUS_PLUS)
        np.testing.assert_allclose(got.coarse, gradcam, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(got_plus.coarse, plus, rtol=1e-5, atol=1e-8)
        assert got_plus.method == CamMethod.GRADCAM_PLUS_PLUS
    if layer == "relu1":  # the gradient differs from position to position here, so ++ is not Grad-CAM rescaled
        assert not np.allclose(gradcam / max(gradcam.max(), 1e-12), plus / max(plus.max(), 1e-12))


def test_cam_with_an_in_place_relu_after_the_layer(camnet):
    plain, in_place = camnet(inplace=False), camnet(inplace=True)
    assert same_weights(tensors(plain.net), tensors(in_place.net)) and in_place.net.relu1.inplace
    x = camnet_input(5)
    for method in CamMethod:
        for target in range(3):
            a = class_activation_map(plain, one_input(x), layer="conv1", target=target, method=method)
            b = class_activation_map(in_place, one_input(x), layer="conv1", target=target, method=method)
            np.testing.assert_allclose(b.coarse, a.coarse, rtol=1e-6, atol=1e-9)
    maps, gradient = by_hand(plain, x, "conv1", 0)  # conv1's own output and gradient, before the ReLU
    expected = np.maximum(np.einsum("k,khw->hw", gradient.mean(axis=(1, 2)), maps), 0)
    got = class_activation_map(in_place, one_input(x), layer="conv1", target=0)
    np.testing.assert_allclose(got.coarse, expected, rtol=1e-5, atol=1e-8)
    assert no_hooks(in_place.net)


def test_target_class(camnet):
    trained = camnet()
    x = camnet_input()
    with torch.no_grad():
        probabilities = torch.softmax(trained.net(x)[0], dim=0)
    default = class_activation_map(trained, one_input(x), layer="relu2")
    assert default.target == int(probabilities.argmax())
    chosen = class_activation_map(trained, one_input(x), layer="relu2", target=2)
    assert chosen.target == 2 and chosen.probability == pytest.approx(float(probabilities[2]))
    assert [c for c, _ in chosen.top] == probabilities.argsort(descending=True).tolist()
    for wrong in (3, -1):
        with pytest.raises(ArchvizError, match=rf"--class {wrong}: the model has 3 classes \(0 to 2\)"):
            class_activation_map(trained, one_input(x), layer="relu2", target=wrong)


def test_cam_needs_maps(lenet):
    with pytest.raises(ArchvizError) as caught:
        class_activation_map(lenet, dataset_sample(lenet, 0), layer="fc1")
    assert str(caught.value).startswith("fc1 gives (120,) outputs, not C x H x W maps;")  # the name once
    assert no_hooks(lenet.net)


# --- the commands --------------------------------------------------------------------------------------------------

def png_written(result, path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        picture.verify()
        size = picture.size
    assert f"wrote {path} ({size[0]}x{size[1]} PNG)" in result.stderr
    return size


def test_cli_filters(run, tmp_path):
    result = run_cli("filters", "lenet", "-w", run, "-o", tmp_path / "x.png")
    assert result.exit_code == 0, result.output
    png_written(result, tmp_path / "x.png")
    shown = run_cli("filters", "lenet", "-w", run)
    assert shown.exit_code == 0 and shown.stdout.startswith("conv1: 6 filters 5x5 over 1 input channel\n")
    assert "archviz train lenet on digits" in shown.stdout
    random = run_cli("filters", "lenet", "--layer", "conv2", "--seed", "2")
    assert random.exit_code == 0 and "random initialisation (seed 2)" in random.stdout
    from_file = run_cli("filters", run / "best.pt")  # the checkpoint as the model: its weights
    assert from_file.exit_code == 0 and "archviz train lenet on digits" in from_file.stdout


def test_cli_cam(run, tmp_path):
    result = run_cli("cam", "lenet", "-w", run, "--sample", 3, "-o", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    png_written(result, tmp_path / "c.png")
    assert "layer: tanh2 (auto" in result.stdout and "(map 10x10, upsampled to the input)" in result.stdout
    assert "input: digits val image 3 (true class 1)" in result.stdout
    assert re.search(r"gradcam map for class 1 \(probability \d+\.\d%\); true class 1", result.stdout)
    chosen = run_cli("cam", run, "--sample", 3, "--class", "7", "--method", "gradcam++", "--layer", "tanh1")
    assert chosen.exit_code == 0, chosen.output
    assert "gradcam++ map for class 7" in chosen.stdout and "layer: tanh1 (map 28x28" in chosen.stdout


def test_cli_activations(run, tmp_path):
    result = run_cli("activations", run, "--sample", 0, "--layers", "conv1,tanh2", "-o", tmp_path / "a.png")
    assert result.exit_code == 0, result.output
    both = png_written(result, tmp_path / "a.png")
    one = run_cli("activations", run, "--sample", 0, "--layers", "conv1", "-o", tmp_path / "one.png")
    assert png_written(one, tmp_path / "one.png")[1] < both[1]  # two grids stacked
    assert "input: digits val image 0" in result.stdout and "predicted: " in result.stdout
    shown = run_cli("activations", run, "--sample", 0)  # default layers: lenet's tanh1 and tanh2
    assert shown.exit_code == 0 and "tanh1: 6x28x28" in shown.stdout and "tanh2: 16x10x10" in shown.stdout


def test_cli_image_file(run, tmp_path):
    from PIL import Image, ImageDraw

    picture = Image.new("L", (20, 20), 0)
    ImageDraw.Draw(picture).line([(10, 3), (10, 17)], fill=255, width=3)  # a "1"
    picture.save(tmp_path / "one.png")
    result = run_cli("cam", run, "--image", tmp_path / "one.png")
    assert result.exit_code == 0, result.output
    assert "one.png, resized 20x20 -> 8x8 (the run's images) -> 32x32" in result.stdout  # as predict decodes it
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "colour.png")  # grey for a one-channel model
    colour = run_cli("activations", run, "--image", tmp_path / "colour.png", "--layers", "conv1")
    assert colour.exit_code == 0 and "colour.png, resized 8x8 -> 32x32" in colour.stdout


def test_cli_bad_layer(run, tmp_path):
    one_error_line(run_cli("cam", run, "--sample", 0, "--layer", "tanh9"), "no layer 'tanh9'", "did you mean")
    one_error_line(run_cli("activations", run, "--sample", 0, "--layers", "conv1,cnv2"), "did you mean: conv2")
    one_error_line(run_cli("filters", run, "--layer", "fc1"), "not a convolution")
    one_error_line(run_cli("activations", run, "--sample", 0, "--layers", ",", "-o", tmp_path / "a.png"),
                   "no layer named")
    assert not (tmp_path / "a.png").exists()


def test_cli_one_input(run, tmp_path):
    one_error_line(run_cli("cam", run), "give one input")
    one_error_line(run_cli("activations", run, "--sample", 0, "--image", tmp_path / "x.png"), "give one input")


def test_cli_sample_out_of_range(run):
    one_error_line(run_cli("cam", run, "--sample", 100000), "--sample 100000: the val split of digits has")


def test_cli_sample_needs_a_run(lenet, tmp_path):
    path = tmp_path / "lenet.pth"
    torch.save(lenet.net.state_dict(), path)
    one_error_line(run_cli("cam", "lenet", "-w", path, "--sample", 0), "give --image FILE")


def test_cli_corrupt_checkpoint(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    one_error_line(run_cli("filters", "lenet", "-w", path), "bad.pt: cannot load")


def test_cli_class_out_of_range(run):
    one_error_line(run_cli("cam", run, "--sample", 0, "--class", "12"), "--class 12: the model has 10 classes, 0 to 9")


def test_a_torchvision_state_dict_loads_into_the_zoo_model(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from archviz.inside.filters import filter_grid
    from archviz.inside.trained import IMAGENET_STATS, imagenet_categories, load_trained
    from archviz.render.pictures import Scale

    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    trained = load_trained("resnet18", tmp_path / "resnet18.pth")
    assert torch.equal(trained.net.get_submodule("layer4.1.conv2").weight, reference.layer4[1].conv2.weight)
    assert trained.stats == IMAGENET_STATS and len(trained.classes) == 1000
    assert trained.classes == imagenet_categories() and trained.classes[207] == "golden retriever"
    grid = filter_grid(trained)
    assert grid.scale == Scale.RGB and len(grid.tiles) == 64 and grid.tiles[0].shape == (7, 7, 3)
    x = torch.randn(1, 3, 224, 224)
    reference.eval()
    with torch.no_grad():
        assert torch.allclose(trained.net(x), reference(x), atol=1e-5)
