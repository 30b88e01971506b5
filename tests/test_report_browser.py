"""The HTML report in a real headless browser (Debian's Chromium driven by Playwright), offline from file://.

Checks what a student would see: the page loads with no console errors and no network request, every chart has
rendered, the diagram is visible and a block opens on click, the table sorts and filters, a row shows its
arithmetic. The screenshots are kept in .artifacts/ (not committed).
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
    block = page.locator('.diagram-view:not([hidden]) g.node.clickable[id="node:layer3.0"]')
    block.click()
    opened = page.locator(".diagram-view:not([hidden])")
    assert opened.get_attribute("data-view") != "default"
    assert opened.locator('g.node[id="node:layer3.0.conv2"]').count() == 1  # the block's layers are drawn
    # a frame's visible area is its border and label, often under other shapes: send the click to the frame itself
    opened.locator('g.cluster.clickable[id="cluster:layer3.0"]').dispatch_event("click")
    assert page.locator(".diagram-view:not([hidden])").get_attribute("data-view") == "default"  # folded again
    page.locator('.diagram-view:not([hidden]) g.node[id="node:conv1"]').click()
    assert "conv1" in page.locator("#explain-panel").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#diagram").screenshot(path=str(ARTIFACTS / "report-resnet50-diagram.png"))
    assert problems == []
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
    ARTIFACTS.mkdir(exist_ok=True)
    roofline.screenshot(path=str(ARTIFACTS / "report-resnet18-roofline.png"))
    page.close()
