"""archviz walkthrough (archviz/inside/walkthrough.py, archviz/render/walkthrough.py): the value archviz spells out for
one output position equals the value torch computed there (to 1e-5), for convolutions with groups, dilation, stride
and 'same' padding, depthwise convolutions, max and average pooling (sliding with padding, ceil_mode and
count_include_pad, and adaptive), linear layers and batch norm; on a spec exercising each at its corners, edges and
centre, on the zoo's lenet and resnet18, and on a traced torchvision model. The explanation's own parts add up (products to the sum, sum
and bias to the value), the receptive window matches the patch where the layer reads the image, and the CLI's errors
are one line with exit status 2; the JSON carries the figures the terminal prints."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from archviz.cli import app

torch = pytest.importorskip("torch")

from archviz.inside.images import Input  # noqa: E402  (after the torch check)
from archviz.inside.trained import load_trained  # noqa: E402
from archviz.inside.walkthrough import (  # noqa: E402
    ConvStep, LinearStep, NormStep, PoolStep, UnexplainedLayerError, walkthrough)
from archviz.render.walkthrough import figure, walkthrough_dict, walkthrough_png, walkthrough_view  # noqa: E402

runner = CliRunner()
TOLERANCE = 1e-5

WALKNET = """
    name: walknet
    input: [4, 19, 19]
    layers:
      - conv2d: {out_channels: 6, kernel_size: 3, stride: 2, padding: 2, dilation: 2, groups: 2}
        name: grouped
      - batchnorm2d: {}
        name: bn
      - relu: {}
        name: relu1
      - conv2d: {out_channels: 6, kernel_size: 3, padding: 1, groups: 6}
        name: depthwise
      - maxpool2d: {kernel_size: 3, stride: 2, padding: 1, ceil_mode: true}
        name: maxpool
      - avgpool2d: {kernel_size: 3, stride: 2, padding: 1, ceil_mode: true}
        name: avgpool_ceil
      - avgpool2d: {kernel_size: 2, stride: 1, padding: 1, count_include_pad: false}
        name: avgpool
      - conv2d: {out_channels: 3, kernel_size: 2, padding: same, bias: false}
        name: same
      - maxpool2d: {kernel_size: 2, stride: 1, dilation: 2}
        name: maxpool_dilated
      - conv2d: {out_channels: 4, kernel_size: 1}
        name: pointwise
      - adaptive_avgpool2d: {output_size: 2}
        name: adaptive
      - flatten
      - linear: {out_features: 5}
        name: fc
"""
EXPLAINED = ("grouped", "bn", "depthwise", "maxpool", "avgpool", "same", "avgpool_ceil", "maxpool_dilated",
             "pointwise", "adaptive", "fc")


def random_input(shape, seed: int = 0) -> Input:
    generator = torch.Generator().manual_seed(seed)
    tensor = torch.randn((1, *shape), generator=generator)
    picture = np.clip(tensor[0, 0].numpy() * 0.25 + 0.5, 0, 1)
    return Input(tensor, picture, "random input")


@pytest.fixture(scope="module")
def walknet(tmp_path_factory):
    """The spec with random weights and batch norm statistics far from the initial 0 and 1."""
    path = tmp_path_factory.mktemp("walk") / "walknet.yaml"
    path.write_text(WALKNET)
    trained = load_trained(str(path), seed=0)
    bn = trained.net.get_submodule("bn")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor, low, high in ((bn.running_mean, -1, 1), (bn.running_var, 0.2, 3), (bn.weight, -2, 2),
                                  (bn.bias, -1, 1)):
            tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return trained


@pytest.fixture(scope="module")
def resnet18():
    return load_trained("resnet18", seed=0)


@pytest.fixture(scope="module")
def mobilenet():
    return load_trained("torchvision:mobilenet_v2", seed=0)


def positions(shape):
    """The first and last channel at every corner, edge middle and the centre, and a neighbour of a corner: where
    windows meet the padding, and where ceil_mode's last window hangs past the input."""
    channels = sorted({0, shape[0] - 1})
    spatial = [sorted({0, min(1, size - 1), size // 2, size - 1}) for size in shape[1:]]
    return itertools.product(channels, *spatial)


def check_adds_up(walk) -> None:
    """The explanation's own figures make its value, and the value is torch's."""
    step = walk.step
    if isinstance(step, ConvStep):
        products = np.array(step.products)
        assert np.allclose(products, np.array(step.patch) * np.array(step.kernel))
        assert math.isclose(float(products.sum()), step.total, abs_tol=1e-9)
        assert math.isclose(step.total + (step.bias or 0.0), walk.value, abs_tol=1e-9)
    elif isinstance(step, LinearStep):
        assert math.isclose(sum(step.products), step.total, abs_tol=1e-9)
        assert math.isclose(step.total + (step.bias or 0.0), walk.value, abs_tol=1e-9)
    elif isinstance(step, PoolStep) and step.winner is not None:
        window = [v for row in step.window for v in row if v is not None]
        assert walk.value == max(window)
    elif isinstance(step, PoolStep):
        assert math.isclose(step.total / step.divisor, walk.value, abs_tol=1e-12)
    elif isinstance(step, NormStep):
        assert math.isclose(step.normalised * step.scale + step.shift, walk.value, abs_tol=1e-9)
    assert abs(walk.value - walk.torch_value) <= TOLERANCE * max(1.0, abs(walk.torch_value)), walk


# --- every position of every explained layer kind ---------------------------------------------------------------

@pytest.mark.parametrize("layer", EXPLAINED)
def test_every_position_equals_torch(walknet, layer):
    image = random_input(walknet.input_shape)
    for position in positions(walknet.graph.by_name[layer].out_shape):
        check_adds_up(walkthrough(walknet, image, layer=layer, at=position))


def test_grouped_convolution_reads_its_group(walknet):
    walk = walkthrough(walknet, random_input(walknet.input_shape), layer="grouped", at=(4, 0, 5))
    assert walk.step.group == 1 and walk.step.groups == 2 and walk.step.channels == (2, 3)
    assert walk.step.rows == (-2, 0, 2) and walk.step.cols == (8, 10, 12)  # stride 2, padding 2, dilation 2
    assert walk.step.patch[0][0] == (0.0, 0.0, 0.0)  # row -2 is padding
    assert [size.out for size in walk.sizes] == [10, 10]


def test_depthwise_convolution_reads_one_channel(walknet):
    walk = walkthrough(walknet, random_input(walknet.input_shape), layer="depthwise", at=(5, 0, 0))
    assert walk.step.channels == (5,) and walk.step.groups == 6


def test_max_pool_names_its_winner(walknet):
    walk = walkthrough(walknet, random_input(walknet.input_shape), layer="maxpool", at=(1, 5, 5))
    row, col = walk.step.winner
    assert walk.value == walk.step.window[walk.step.rows.index(row)][walk.step.cols.index(col)]
    assert walk.step.rows == (9, 10, 11)  # the ceil_mode window hangs past the 10x10 input and its padding


def test_average_pool_divisor_without_padding(walknet):
    walk = walkthrough(walknet, random_input(walknet.input_shape), layer="avgpool", at=(0, 0, 0))
    assert walk.step.rows == (-1, 0) and walk.step.divisor == 1  # count_include_pad false: one pixel inside


def test_batch_norm_uses_running_statistics(walknet):
    walk = walkthrough(walknet, random_input(walknet.input_shape), layer="bn", at=(2, 1, 1))
    bn = walknet.net.get_submodule("bn")
    assert walk.step.running and walk.step.mean == pytest.approx(float(bn.running_mean[2]))
    assert walk.step.variance == pytest.approx(float(bn.running_var[2]))


def test_next_activation_is_applied(walknet):
    walk = walkthrough(walknet, random_input(walknet.input_shape), layer="bn", at=(0, 2, 3))
    assert walk.activation.layer == "relu1"
    assert walk.activation.value == max(walk.value, 0.0)
    assert abs(walk.activation.value - walk.activation.torch_value) <= TOLERANCE
    assert walkthrough(walknet, random_input(walknet.input_shape), layer="grouped").activation is None  # bn follows


def test_model_is_left_as_it_was(walknet):
    before = {name: value.clone() for name, value in walknet.net.state_dict().items()}
    walkthrough(walknet, random_input(walknet.input_shape), layer="bn")
    after = walknet.net.state_dict()
    assert all(torch.equal(before[name], after[name]) and after[name].dtype == before[name].dtype for name in before)
    assert all(not module._forward_hooks for module in walknet.net.modules())


def test_receptive_window_of_a_first_layer_is_its_patch(walknet):
    height = walknet.input_shape[1]
    for position in [(0, 0, 0), (1, 3, 2), (5, 5, 5)]:
        walk = walkthrough(walknet, random_input(walknet.input_shape), layer="grouped", at=position)
        rows = [r for r in walk.step.rows if 0 <= r < height]
        cols = [c for c in walk.step.cols if 0 <= c < height]
        assert walk.field.rows == (min(rows), max(rows)) and walk.field.cols == (min(cols), max(cols))
    assert walkthrough(walknet, random_input(walknet.input_shape), layer="fc").field.whole


def test_layer_without_an_explanation(walknet):
    with pytest.raises(UnexplainedLayerError, match="relu1 is a relu layer"):
        walkthrough(walknet, random_input(walknet.input_shape), layer="relu1")


# --- the zoo and a traced torchvision model -----------------------------------------------------------------------

@pytest.mark.parametrize("layer, at", [("conv1", None), ("conv1", (5, 0, 27)), ("pool1", (3, 13, 0)),
                                       ("conv2", (15, 9, 9)), ("fc1", (7,)), ("fc3", (9,))])
def test_lenet(layer, at):
    lenet = load_trained("lenet", seed=0)
    check_adds_up(walkthrough(lenet, random_input(lenet.input_shape), layer=layer, at=at))


RESNET18_LAYERS = [("conv1", (3, 0, 111)), ("bn1", None), ("maxpool", (63, 0, 0)), ("layer1.0.conv1", None),
                   ("layer2.0.downsample.0", (100, 27, 0)), ("layer3.1.bn2", (7, 3, 4)), ("layer4.1.conv2", (511, 6, 6)),
                   ("avgpool", (200, 0, 0)), ("fc", (999,))]


@pytest.mark.parametrize("layer, at", RESNET18_LAYERS)
def test_resnet18(resnet18, layer, at):
    check_adds_up(walkthrough(resnet18, random_input(resnet18.input_shape), layer=layer, at=at))


@pytest.mark.parametrize("layer, at", [("features.0.0", (0, 0, 0)), ("features.1.conv.0.0", (31, 111, 5)),
                                       ("features.2.conv.1.0", (95, 55, 55)), ("features.0.1", (4, 50, 60)),
                                       ("adaptive_avg_pool2d", (1000, 0, 0)), ("classifier.1", (3,))])
def test_traced_torchvision_model(mobilenet, layer, at):
    walk = walkthrough(mobilenet, random_input(mobilenet.input_shape), layer=layer, at=at)
    check_adds_up(walk)
    if layer == "features.1.conv.0.0":  # depthwise: one channel per filter
        assert walk.step.channels == (31,) and walk.step.groups == 32


# --- rendering and the command --------------------------------------------------------------------------------------

def render(walk, width: int = 120) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None)
    with console.capture() as captured:
        console.print(walkthrough_view(walk), highlight=False)
    return captured.get()


def test_terminal_shows_each_channel_or_their_sum(walknet):
    image = random_input(walknet.input_shape)
    few = render(walkthrough(walknet, image, layer="grouped", at=(0, 0, 1)))
    assert "channel 0: input patch" in few and "channel 1: input patch" in few and "--" in few
    lenet = load_trained("lenet", seed=0)
    many = render(walkthrough(lenet, random_input(lenet.input_shape), layer="conv2"))
    assert "products summed over the 6 channels" in many and "too many to print one by one" in many
    assert "then tanh2: tanh(" in many


def test_json_has_the_terminal_figures(walknet, tmp_path):
    for layer in ("grouped", "maxpool", "avgpool", "bn", "fc"):
        walk = walkthrough(walknet, random_input(walknet.input_shape), layer=layer)
        text, data = render(walk), json.loads(json.dumps(walkthrough_dict(walk)))
        assert data["value"] == walk.value and data["torch_value"] == walk.torch_value
        assert figure(data["value"]) in text and figure(data["torch_value"]) in text
        if data["step"]["kind"] in ("convolution", "dot_product"):
            assert figure(data["step"]["total"]) in text
            assert data["step"]["bias"] is None or figure(data["step"]["bias"]) in text
        if data["step"]["kind"] == "batch_norm":
            assert all(figure(data["step"][key]) in text for key in ("x", "mean", "variance", "scale", "shift"))


def image_file(tmp_path, side: int = 32):
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.fromarray((np.random.default_rng(0).random((side, side)) * 255).astype(np.uint8)).save(path)
    return path


def test_cli_table_json_and_picture(tmp_path):
    image, picture = image_file(tmp_path), tmp_path / "field.png"
    table = runner.invoke(app, ["walkthrough", "lenet", "--image", str(image), "--layer", "conv2", "--at", "3,4,5",
                                "-o", str(picture)])
    assert table.exit_code == 0, table.output
    data = json.loads(runner.invoke(app, ["walkthrough", "lenet", "--image", str(image), "--layer", "conv2",
                                          "--at", "3,4,5", "--format", "json"]).stdout)
    assert data["position"] == [3, 4, 5] and data["step"]["kind"] == "convolution"
    assert abs(data["value"] - data["torch_value"]) <= TOLERANCE
    for value in (data["value"], data["torch_value"], data["step"]["total"], data["step"]["bias"]):
        assert figure(value) in table.stdout
    assert data["field"]["rows"] == [8, 21] and data["field"]["cols"] == [10, 23]  # 14 px at jump 2
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("at, fragment", [("0,10,3", "Y is 10, but conv2's output is 16x10x10 (Y from 0 to 9)"),
                                          ("16,0,0", "C is 16"), ("1,2", "give C,Y,X"), ("a,b,c", "whole numbers")])
def test_position_out_of_range_is_one_line(tmp_path, at, fragment):
    result = runner.invoke(app, ["walkthrough", "lenet", "--image", str(image_file(tmp_path)), "--layer", "conv2",
                                 "--at", at])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("archviz: error:") and len(result.stderr.strip().splitlines()) == 1
    assert fragment in result.stderr, result.stderr


def test_unexplained_and_unknown_layers_are_one_line(tmp_path):
    image = str(image_file(tmp_path))
    for layer, fragment in (("tanh1", "tanh1 is a tanh layer"), ("conv9", "no layer 'conv9'")):
        result = runner.invoke(app, ["walkthrough", "lenet", "--image", image, "--layer", layer])
        assert result.exit_code == 2 and fragment in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_png_outlines_the_window(walknet):
    from PIL import Image
    import io

    walk = walkthrough(walknet, random_input(walknet.input_shape), layer="grouped", at=(0, 0, 0))
    picture = Image.open(io.BytesIO(walkthrough_png(walk, random_input(walknet.input_shape).picture)))
    assert picture.width >= 256


# --- the report's interactive section (render/html/walkthrough_section.py, walkthrough.js) -------------------------

def section_data(trained, image):
    """walkthrough_parts of a run view holding only what the section reads: the network and one sample image."""
    from types import SimpleNamespace

    from archviz.render.html.walkthrough_section import walkthrough_parts

    view = SimpleNamespace(trained=trained, samples=(SimpleNamespace(image=image),))
    return walkthrough_parts(view)


def test_report_data_are_the_layers_input_weights_and_output(walknet):
    from archviz.inside.walkthrough import conv_arithmetic

    image = random_input(walknet.input_shape)
    nav, section, data = section_data(walknet, image)
    assert 'href="#walkthrough"' in nav and 'id="walk-map"' in section and "data:image/png;base64," in section
    assert [layer["layer"] for layer in data["walkthrough"]] == ["grouped", "depthwise"]
    (grouped, _) = conv_arithmetic(walknet, image)
    torch_output = walknet.net.get_submodule("grouped")
    assert grouped.groups == 2 and grouped.dilation == (2, 2) and grouped.stride == (2, 2)
    assert np.allclose(np.array(grouped.weights).reshape(torch_output.weight.shape), torch_output.weight.detach())
    assert np.allclose(np.array(grouped.inputs).reshape(grouped.in_shape), image.tensor[0], rtol=1e-6)


NODE_CHECK = """
const { compute } = require(process.argv[2]);
const data = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = data.cases.map(([layer, c, y, x]) => compute(data.layers[layer], c, y, x));
console.log(JSON.stringify(results.map((r) => [r.value, r.torch, r.total, r.rows, r.cols, r.channels])));
"""


def test_page_arithmetic_equals_torch_and_the_walkthrough(walknet, tmp_path):
    """walkthrough.js's compute() under node, on the data the page carries: every corner, edge and the centre."""
    import shutil
    import subprocess
    from importlib import resources

    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node to run the page's script")
    image = random_input(walknet.input_shape)
    _, _, data = section_data(walknet, image)
    cases = [(index, *position) for index, layer in enumerate(data["walkthrough"])
             for position in positions(layer["out_shape"])]
    script = resources.files("archviz.render.html").joinpath("walkthrough.js")
    checker = tmp_path / "check.js"
    checker.write_text(NODE_CHECK)
    done = subprocess.run([node, str(checker), str(script)], input=json.dumps({"layers": data["walkthrough"],
                          "cases": cases}), capture_output=True, text=True, check=True)
    for (index, *position), (value, torch_value, total, rows, cols, channels) in zip(cases, json.loads(done.stdout)):
        assert abs(value - torch_value) <= TOLERANCE, (index, position)
        walk = walkthrough(walknet, image, layer=data["walkthrough"][index]["layer"], at=tuple(position))
        assert abs(value - walk.value) <= TOLERANCE and abs(total - walk.step.total) <= TOLERANCE
        assert tuple(rows) == walk.step.rows and tuple(cols) == walk.step.cols
        assert tuple(channels) == walk.step.channels


def test_page_section_in_a_browser(walknet, tmp_path):
    """The section alone in headless Chromium, offline: it draws, a click moves the position, the sums agree."""
    import shutil

    from archviz.render.html.data import script_json
    from archviz.render.html.page import asset, page_head
    from archviz.render.html.walkthrough_section import WALK_CSS

    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Debian's chromium")
    _, section, data = section_data(walknet, random_input(walknet.input_shape))
    page_file = tmp_path / "walk.html"
    page_file.write_text(f"""{page_head("walk", css=WALK_CSS)}<body><main>{section}</main>
<script type="application/json" id="archviz-data">{script_json({"run": data})}</script>
<script>{asset("walkthrough.js")}</script></body></html>""")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: errors.append(request.url) if not request.url.startswith(
            ("file:", "data:")) else None)
        page.goto(page_file.as_uri())
        assert "grouped at channel 0, row 5, column 5" in page.inner_text("#walk-position")
        page.locator("#walk-map").click(position={"x": 2, "y": 2})
        assert "row 0, column 0" in page.inner_text("#walk-position")
        text = page.inner_text("#walk-arithmetic")
        browser.close()
    assert not errors, errors
    recomputed = float(text.split("= value (recomputed here)")[1].split()[0])
    torch_value = float(text.split("value torch computed")[1].split()[0])
    assert abs(recomputed - torch_value) <= TOLERANCE and "--" in text  # row -2 of the padding
