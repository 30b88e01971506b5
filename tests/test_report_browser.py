"""The HTML report in a real headless browser (Debian's Chromium driven by Playwright), offline from file://.

Checks what a student would see: the page loads with no console errors and no network request, every chart has
rendered, the diagram is visible and a block opens on click, zooms (wheel, buttons, fit) and pans (drag), finds a
layer by name, shows the selected layer beside it (below it on a phone) and colours its boxes by a cost, the table
sorts and filters, a row shows its arithmetic beside the table (never over it), every chart axis says its unit, and
the pages of a zoo share one plotly.min.js and still work offline. The screenshots are kept in .artifacts/ (not
committed); scripts/report_screenshots.py makes the docs' (docs/guide/report.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh installs it)")
ARTIFACTS = Path(__file__).parent.parent / ".artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    from archviz.render.html.build import write_model_report

    return write_model_report("resnet50", tmp_path_factory.mktemp("report") / "resnet50.html", crosscheck=True)


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    def refuse_network(route):
        requests.append(route.request.url)
        route.abort()

    page.route("http*://**", refuse_network)
    page.goto(path.as_uri())
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5")
    return page, problems, requests


def test_report_loads_offline_with_every_chart(browser, report_file):
    page, problems, requests = open_page(browser, report_file)
    assert problems == [] and requests == []
    assert page.locator(".js-plotly-plot").count() == 5
    for chart in page.locator(".js-plotly-plot").all():  # each chart has drawn at least one trace
        assert chart.locator("g.trace").count() >= 1
    assert page.locator("#cards .card").count() == 8
    assert "every peer agrees" in page.locator("#crosscheck-body").inner_text().lower()
    assert page.locator("#crosscheck-detail").get_attribute("open") is None  # one verdict line, the detail folded
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-resnet50.png"))
    page.close()


def test_table_sorts_filters_and_explains(browser, report_file):
    page, problems, _ = open_page(browser, report_file)
    page.locator("#layer-table th", has_text="Params").click()  # descending first
    first = page.locator("#layer-table tbody tr").first
    # 3*3*512*512 = 2,359,296 beats fc's (2048 + 1)*1000; of the equal layer4 conv2s, the first comes first
    assert first.get_attribute("data-layer") == "layer4.0.conv2"
    page.locator("#layer-filter").fill("downsample")
    visible = page.locator("#layer-table tbody tr:not([hidden])")
    assert visible.count() == 8 and "8 of 175" in page.locator("#layer-count").inner_text()
    visible.first.click()
    panel = page.locator("#explain-panel")
    assert panel.is_visible() and "downsample" in panel.inner_text() and "params" in panel.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-resnet50-explain.png"))
    assert problems == []
    page.close()


def test_diagram_is_visible_and_blocks_open_and_fold(browser, report_file):
    page, problems, _ = open_page(browser, report_file)
    shown = page.locator(".diagram-view:not([hidden]) svg")
    assert shown.count() == 1 and shown.is_visible()
    assert page.locator(".diagram-view:not([hidden])").get_attribute("data-view") == "default"
    page.locator("#diagram-fit").click()  # the whole diagram in the frame: layer3.0 is far below its top
    block = page.locator('.diagram-view:not([hidden]) g.node.clickable[id="node:layer3.0"]')
    block.click()
    opened = page.locator(".diagram-view:not([hidden])")
    assert opened.get_attribute("data-view") != "default"
    assert opened.locator('g.node[id="node:layer3.0.conv2"]').count() == 1  # the block's layers are drawn
    # a frame's visible area is its border and label, often under other shapes: send the click to the frame itself
    opened.locator('g.cluster.clickable[id="cluster:layer3.0"]').dispatch_event("click")
    assert page.locator(".diagram-view:not([hidden])").get_attribute("data-view") == "default"  # folded again
    page.locator("#diagram-fit").click()
    page.locator('.diagram-view:not([hidden]) g.node[id="node:conv1"]').click()
    assert "conv1" in page.locator("#diagram-panel").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#diagram").screenshot(path=str(ARTIFACTS / "report-resnet50-diagram.png"))
    assert problems == []
    page.close()


SHOWN_SVG = ".diagram-view:not([hidden]) svg"


def view_box(page) -> list[float]:
    return [float(v) for v in page.locator(SHOWN_SVG).get_attribute("viewBox").split()]


def frame_centre(page) -> tuple[float, float]:
    box = page.locator("#diagram-frame").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_the_diagram_zooms_with_the_wheel_and_the_buttons_and_fits(browser, report_file):
    page, problems, requests = open_page(browser, report_file)
    page.locator("#diagram").scroll_into_view_if_needed()
    start = view_box(page)
    page.mouse.move(*frame_centre(page))
    # not engaged yet: the wheel is left to the page (not prevented), the diagram stays, a note says how to zoom
    prevented = page.evaluate("""() => {
        const wheel = new WheelEvent("wheel", {deltaY: 300, cancelable: true, bubbles: true});
        document.getElementById("diagram-frame").dispatchEvent(wheel);
        return wheel.defaultPrevented; }""")
    assert prevented is False and view_box(page) == start
    page.wait_for_selector("#diagram-wheel-hint", state="visible")
    page.locator("#diagram").scroll_into_view_if_needed()
    page.mouse.move(*frame_centre(page))
    page.mouse.down()  # pressed in (a press without moving is a click: on a box it would select it)
    page.mouse.up()
    start = view_box(page)
    page.mouse.wheel(0, -400)  # wheel up: closer
    page.wait_for_function(f"document.querySelector('{SHOWN_SVG}').viewBox.baseVal.width < {start[2]}")
    wheeled = view_box(page)
    page.locator("#diagram-zoom-in").click()
    closer = view_box(page)
    assert closer[2] < wheeled[2] and closer[3] < wheeled[3]
    page.locator("#diagram-zoom-out").click()
    page.locator("#diagram-zoom-out").click()
    assert view_box(page)[2] > closer[2]
    page.locator("#diagram-fit").click()
    x, y, width, height = view_box(page)
    drawn = page.locator(SHOWN_SVG).evaluate("s => { const b = s.querySelector('g').getBBox(); "
                                             "return {width: b.width, height: b.height}; }")  # in the SVG's units
    assert width >= drawn["width"] and height >= drawn["height"]  # all of it in the frame
    assert problems == [] and requests == []
    page.close()


def test_dragging_the_diagram_pans_it_and_clicks_nothing(browser, report_file):
    page, problems, requests = open_page(browser, report_file)
    page.locator("#diagram").scroll_into_view_if_needed()
    before = view_box(page)
    conv1 = page.locator('.diagram-view:not([hidden]) g.node[id="node:conv1"]').bounding_box()
    page.mouse.move(conv1["x"] + 20, conv1["y"] + 10)  # a drag may start on a box
    page.mouse.down()
    page.mouse.move(conv1["x"] - 80, conv1["y"] - 140, steps=8)
    page.mouse.up()
    after = view_box(page)
    assert after[0] > before[0] and after[1] > before[1]  # dragged up and left: the view moved right and down
    assert after[2:] == before[2:]  # the same scale
    assert page.locator("#diagram-panel").is_hidden()  # the drag was not a click on conv1
    assert problems == [] and requests == []
    page.close()


def test_find_a_layer_jumps_to_it_and_says_where_a_folded_one_is(browser, report_file):
    page, problems, requests = open_page(browser, report_file)
    search = page.locator("#diagram-search")
    search.fill("layer3.1")  # folded in the default view: the view with layer3.1 open is rendered, so it opens
    found = page.locator("#diagram-frame g.found")
    assert found.count() == 1 and found.get_attribute("id") == "cluster:layer3.1"
    assert page.locator(".diagram-view:not([hidden])").get_attribute("data-view") != "default"
    frame, box = page.locator("#diagram-frame").bounding_box(), found.bounding_box()
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert abs(middle[0] - (frame["x"] + frame["width"] / 2)) < 5  # centred
    assert abs(middle[1] - (frame["y"] + frame["height"] / 2)) < 5
    assert page.locator("#diagram-found").inner_text().startswith("1 of ")
    search.press("Enter")  # the next match: layer3.1's first layer
    assert page.locator("#diagram-found").inner_text().startswith("2 of ")
    assert found.get_attribute("id") == "node:layer3.1.conv1"
    search.fill("layer3.4.conv2")  # drawn in no rendered view: the folded block holding it is marked, and said
    message = page.locator("#diagram-found").inner_text()
    assert "layer3.4.conv2 is inside the folded block" in message
    holder = found.get_attribute("id")
    assert holder.startswith("node:layer3.") and ".." in holder and holder.split("..")[1] >= "layer3.4"
    assert "layer3.4.conv2" in page.locator("#diagram-panel").inner_text()  # its figures all the same
    assert problems == [] and requests == []
    page.close()


def test_the_selected_layer_shows_beside_the_diagram_on_a_screen_and_below_it_on_a_phone(browser, report_file):
    for viewport, beside in (({"width": 1400, "height": 1000}, True), ({"width": 390, "height": 844}, False)):
        page = browser.new_page(viewport=viewport)
        problems = []
        page.on("pageerror", lambda error: problems.append(str(error)))  # noqa: B023
        page.goto(report_file.as_uri())
        page.locator("#diagram-search").fill("conv1")
        panel, frame = page.locator("#diagram-panel"), page.locator("#diagram-frame")
        assert panel.is_visible()
        text = panel.inner_text()
        for figure in ("Output shape", "Params", "MACs", "Output memory", "Receptive field", "output height"):
            assert figure in text  # its figures, then the arithmetic the table's panel shows
        assert "9,408" in text  # conv1's 3*7*7*64 params
        panel_box, frame_box = panel.bounding_box(), frame.bounding_box()
        assert not overlap(panel_box, frame_box)
        if beside:
            assert panel_box["x"] >= frame_box["x"] + frame_box["width"]
            section = page.locator("#diagram").bounding_box()
            assert frame_box["width"] + panel_box["width"] > 0.9 * section["width"]  # the section's width, used
        else:
            assert panel_box["y"] >= frame_box["y"] + frame_box["height"]  # a sheet below the diagram
            assert frame_box["width"] > 0.85 * viewport["width"]
        page.keyboard.press("Escape")
        assert panel.is_hidden()
        assert problems == []
        page.close()


def test_colour_by_macs_recolours_the_boxes_with_a_key(browser, report_file):
    from archviz.diagram.dot import COLOURS, COST_PALETTE

    page, problems, requests = open_page(browser, report_file)
    fill = "(id) => document.querySelector(`.diagram-view:not([hidden]) g[id='${id}'] path`).getAttribute('fill')"
    assert page.evaluate(fill, "node:conv1") == COLOURS["conv"]
    key = page.locator("#diagram-key")
    assert key.is_hidden() and page.locator('.diagram-view:not([hidden]) g[id="diagram:legend"]').is_visible()
    page.locator("#diagram-colour").select_option("macs")
    fills = {node: page.evaluate(fill, f"node:{node}") for node in ("conv1", "layer3.0", "relu", "layer4.0")}
    assert set(fills.values()) <= {*COST_PALETTE, "#ffffff"} and fills["relu"] == "#ffffff"  # a relu has no MACs
    assert fills["layer3.0"] != fills["relu"] and fills["conv1"] != COLOURS["conv"]
    assert key.is_visible() and "MACs, share of the largest box's" in key.inner_text()
    kinds = page.locator('.diagram-view:not([hidden]) g[id="diagram:legend"]')  # the SVG's key of kinds
    assert kinds.is_hidden()
    page.locator("#diagram-search").fill("layer3.1")  # another view: coloured too, with its own largest box
    assert page.evaluate(fill, "node:layer3.1.conv2") in COST_PALETTE
    page.locator("#diagram-colour").select_option("kind")
    assert page.evaluate(fill, "node:layer3.1.conv2") == COLOURS["conv"] and key.is_hidden() and kinds.is_visible()
    assert problems == [] and requests == []
    page.close()


@pytest.fixture(scope="module")
def run_report_file(tmp_path_factory):
    pytest.importorskip("PIL")
    from archviz.render.html.build import write_model_report
    from archviz.train import train

    folder = tmp_path_factory.mktemp("run") / "lenet"
    train("lenet", dataset="digits", epochs=1, output=folder, progress=False)
    return write_model_report("lenet", tmp_path_factory.mktemp("report") / "lenet-run.html", run=folder,
                              crosscheck=False)


def test_run_report_draws_curves_confusion_and_pictures(browser, run_report_file):
    page, problems, requests = open_page(browser, run_report_file)
    page.wait_for_function("document.querySelectorAll('#training .js-plotly-plot').length == 3")
    assert problems == [] and requests == []
    for chart in page.locator("#training .js-plotly-plot").all():
        assert chart.locator("g.trace, g.hm, image").count() >= 1
    assert page.evaluate("document.querySelector('main section').id") == "training"  # the run first
    assert "accuracy" in page.locator("#training .cards").inner_text().lower()
    confusion = plotly_data(page, "chart-run-confusion")[0]
    assert confusion["texttemplate"] == "%{z}"  # each cell shows its count
    assert plotly_layout(page, "chart-run-accuracy")["yaxis"]["range"] == [0, 100]
    text = page.locator("main").inner_text()
    assert "smooth strokes" not in text and "shortcut" not in text  # no hint the pictures may contradict
    pictures = page.locator("#filters img, #activations img, #cams img")
    assert pictures.count() == 10
    assert all(img.evaluate("i => i.complete && i.naturalWidth > 0") for img in pictures.all())
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#cams").screenshot(path=str(ARTIFACTS / "report-run-cams.png"))
    page.close()


def test_a_device_adds_each_layers_time_and_the_roofline(browser, tmp_path):
    from archviz.render.html.build import write_model_report

    path = write_model_report("resnet18", tmp_path / "resnet18.html", crosscheck=False, device="a100")
    page, problems, requests = open_page(browser, path)
    assert problems == [] and requests == []
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6")
    roofline = page.locator("#chart-roofline")
    assert roofline.locator("g.trace").count() >= 2  # the roofs and the layers
    assert "Predicted time" in page.locator("#layer-table thead").inner_text()
    page.locator("#diagram-colour").select_option("time")  # offered only with a device
    assert "predicted time, share of the largest box's" in page.locator("#diagram-key").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    roofline.screenshot(path=str(ARTIFACTS / "report-resnet18-roofline.png"))
    page.close()


def plotly_layout(page, chart_id: str) -> dict:
    return page.evaluate(f"document.getElementById('{chart_id}').layout")


def plotly_data(page, chart_id: str) -> list:
    return page.evaluate(f"document.getElementById('{chart_id}').data.map((t) => ({{name: t.name, x: t.x, y: t.y, "
                         f"hovertext: t.hovertext, texttemplate: t.texttemplate}}))")


def overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and \
        a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


def clipped(box: dict, frame: dict) -> dict:
    """The part of box that shows inside frame (a scrolled table shows only part of a wide row)."""
    left, top = max(box["x"], frame["x"]), max(box["y"], frame["y"])
    right = min(box["x"] + box["width"], frame["x"] + frame["width"])
    bottom = min(box["y"] + box["height"], frame["y"] + frame["height"])
    return {"x": left, "y": top, "width": max(0, right - left), "height": max(0, bottom - top)}


def test_the_arithmetic_panel_sits_beside_the_table_and_closes_on_escape_or_a_click_outside(browser, report_file):
    page, problems, _ = open_page(browser, report_file)
    panel = page.locator("#explain-panel")
    for index in (0, 40, 120):
        row = page.locator("#layer-table tbody tr").nth(index)
        row.scroll_into_view_if_needed()
        row.click()
        assert panel.is_visible() and row.get_attribute("data-layer") in panel.inner_text()
        shown = clipped(row.bounding_box(), page.locator("#layer-table").locator("xpath=..").bounding_box())
        assert shown["width"] > 200 and not overlap(shown, panel.bounding_box())  # the row stays readable
        page.keyboard.press("Escape")
        assert not panel.is_visible()
    page.locator("#layer-table tbody tr").first.click()
    assert panel.is_visible()
    panel.click()  # a click inside keeps it
    assert panel.is_visible()
    page.locator("header h1").click()  # a click outside closes it
    assert not panel.is_visible()
    assert problems == []
    page.close()


def test_the_filter_matches_names_and_a_prefix_matches_types(browser, report_file):
    page, problems, _ = open_page(browser, report_file)
    visible = page.locator("#layer-table tbody tr:not([hidden])")
    page.locator("#layer-filter").fill("conv2")
    names = [row.get_attribute("data-layer") for row in visible.all()]
    assert len(names) == 16 and all(name.endswith(".conv2") for name in names)  # one conv2 per bottleneck block
    assert "16 of 175" in page.locator("#layer-count").inner_text()
    page.locator("#layer-filter").fill("type:conv2d")
    assert visible.count() == 53  # every convolution, downsamples included
    page.locator("#layer-filter").fill("op:conv2d layer4")
    assert visible.count() == 10  # layer4's three blocks of three convs and one downsample
    page.locator("#layer-filter").fill("")
    assert visible.count() == 175
    assert problems == []
    page.close()


def test_every_chart_axis_is_titled_with_its_unit_and_bars_start_at_zero(browser, report_file):
    page, problems, _ = open_page(browser, report_file)
    for chart in ("chart-params", "chart-macs", "chart-memory", "chart-cumulative", "chart-rf"):
        layout = plotly_layout(page, chart)
        assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"], chart
        assert layout["yaxis"].get("type", "linear") == "linear", chart
    for chart, unit in (("chart-params", "parameters"), ("chart-macs", "MACs"), ("chart-memory", "bytes")):
        layout = plotly_layout(page, chart)
        assert layout["yaxis"]["title"]["text"] == unit and layout["yaxis"]["rangemode"] == "tozero"
        assert layout["yaxis"]["exponentformat"] == "SI"  # 4 G, never plotly's default 4 B
        assert layout["showlegend"]  # a colour is a kind of layer: the legend says which
    assert problems == []
    page.close()


def test_a_deep_models_charts_show_its_blocks_and_open_one(browser, report_file):
    page, problems, _ = open_page(browser, report_file)
    bars = lambda: [x for trace in plotly_data(page, "chart-params") for x in trace["x"]]  # noqa: E731
    blocks = bars()
    assert 10 < len(blocks) <= 40 and "layer3.0" in blocks and "layer3.0.conv2" not in blocks
    page.locator("#chart-scope").select_option("layer3.0")
    page.wait_for_function("document.getElementById('chart-params').data.some((t) => t.x.includes('layer3.0.conv2'))")
    opened = bars()
    assert all(name.startswith("layer3.0.") for name in opened) and "layer3.0.downsample.0" in opened
    page.locator("#chart-scope").select_option("layers")
    page.wait_for_function("document.getElementById('chart-params').data.some((t) => t.x.includes('layer1.0.conv1'))")
    assert problems == []
    page.close()


def test_the_receptive_field_is_the_last_maps_and_its_chart_follows_one_path(browser, report_file):
    page, problems, _ = open_page(browser, report_file)
    card = page.locator("#cards .card", has_text="Receptive field").inner_text()
    assert "427 px" in card and "layer4.2.relu3" in card and "whole input" in card
    traces = {trace["name"]: trace for trace in plotly_data(page, "chart-rf")}
    main = traces["main path"]["y"]
    assert main == sorted(main) and main[-1] == 427  # along one path a field never shrinks
    other = traces["other paths (shortcuts, branches)"]
    assert other["x"] and all("another path" in text for text in other["hovertext"])
    assert problems == []
    page.close()


@pytest.fixture(scope="module")
def comparison_file(tmp_path_factory):
    from archviz.render.html.build import write_comparison

    return write_comparison(["alexnet", "vgg16", "resnet18"], tmp_path_factory.mktemp("compare") / "c.html",
                            crosscheck=False)


def test_comparison_charts_are_linear_from_zero_with_a_log_toggle(browser, comparison_file):
    page, problems, requests = open_page(browser, comparison_file)
    assert problems == [] and requests == []
    for chart in ("chart-scatter", "chart-params", "chart-macs", "chart-memory", "chart-depth"):
        layout = plotly_layout(page, chart)
        assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"], chart
        assert layout["yaxis"].get("type", "linear") == "linear" and layout["yaxis"]["rangemode"] == "tozero", chart
    assert plotly_layout(page, "chart-macs")["yaxis"]["exponentformat"] == "SI"
    page.locator("#log-scale").check()
    page.wait_for_function("document.getElementById('chart-params').layout.yaxis.type === 'log'")
    assert plotly_layout(page, "chart-scatter")["xaxis"]["type"] == "log"
    page.close()


ZOO = ["lenet", "lenet_keras", "mlp", "basic_cnn", "alexnet", "alexnet_owt", "vgg11", "resnet18"]


def test_zoo_pages_share_one_plotly_and_still_work_offline(browser, tmp_path, monkeypatch):
    import archviz.spec.zoo as zoo
    from archviz.render.html.build import SHARED_PLOTLY, write_zoo
    from archviz.render.html.page import plotly_js

    monkeypatch.setattr(zoo, "zoo_names", lambda: ZOO)
    written = write_zoo(tmp_path, crosscheck=False)
    assert sorted(p.name for p in written) == sorted([f"{n}.html" for n in ZOO] + ["index.html", SHARED_PLOTLY])
    size = sum(p.stat().st_size for p in written)
    inlined = size + (len(ZOO) - 1) * len(plotly_js().encode())  # each page carrying its own copy, as before
    assert size < inlined / 5
    page, problems, requests = open_page(browser, tmp_path / "resnet18.html")
    assert problems == [] and requests == [] and page.locator(".js-plotly-plot").count() == 5
    page.close()
    index = browser.new_page(viewport={"width": 1440, "height": 900})
    index.goto((tmp_path / "index.html").as_uri())
    card = index.locator("#index-table").locator("xpath=ancestor::section").bounding_box()
    for cell in index.locator("#index-table td.description").all():
        box = cell.bounding_box()
        assert box["x"] + box["width"] <= card["x"] + card["width"]  # the description wraps inside its card
    index.close()


def test_the_training_comparison_plots_cost_on_a_linear_axis_until_asked_for_log(browser, tmp_path):
    """archviz compare's page: accuracy against MACs and params on linear axes by default (lenet beside resnet50
    used to switch to log by itself), the log-scale box switching both."""
    from dataclasses import replace

    from archviz.render.html.compare_runs import training_comparison_html
    from archviz.train.compare import Row
    from archviz.train.metrics import class_report
    from archviz.train.run import RunResult
    from archviz.train.settings import Settings

    history = ({"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 0.9, "val_accuracy": 0.6, "lr": 0.1,
                "seconds": 1.0, "images_per_second": 10.0},)
    result = RunResult(folder="runs/x", model="lenet", dataset="digits", settings=Settings(), params=61_706,
                       changes=(), history=history, best_epoch=1, best_val_accuracy=0.6, test_split="test",
                       test_accuracy=0.5, last_test_accuracy=0.5, report=class_report([0, 1], [0, 1], ["a", "b"]),
                       train_seconds=1.0, images_per_second=10.0, graph=None)
    small = Row("lenet", 61_706, 416_520, 1, 0.6, 0.9, 0.5, 0.5, 1.0, 10.0, 1024, "runs/a", {})
    large = replace(small, run="resnet50", params=25_557_032, macs=4_089_184_256, folder="runs/b")
    path = tmp_path / "compare.html"
    path.write_text(training_comparison_html([small, large], [result, result]))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.route("http*://**", lambda route: route.abort())
    page.goto(path.as_uri())
    page.wait_for_function("document.querySelectorAll('#cost .js-plotly-plot').length == 2")
    axis_types = ("['chart-accuracy-macs', 'chart-accuracy-params']"
                  ".map(id => document.getElementById(id).layout.xaxis.type)")
    assert page.evaluate(axis_types) == ["linear", "linear"]
    page.check("#log-scale")
    assert page.evaluate(axis_types) == ["log", "log"]
