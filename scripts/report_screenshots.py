"""Screenshots of the main HTML reports, as a reader sees them in Chromium, at 1440x900 and at 390x844 (a phone).

    .venv/bin/python scripts/report_screenshots.py                      # the docs' pictures, into reports/
    .venv/bin/python scripts/report_screenshots.py --all .artifacts/screens   # every page at both sizes, to look at

Pages: vgg16, resnet50, googlenet, a comparison of alexnet, vgg16 and resnet50, and the report of a training run
(lenet on digits, trained here for 2 epochs unless --run names a run folder); the diagram as it opens, with a layer
found (its panel beside the diagram, below it on a phone) and coloured by MACs. The reports are written to a
temporary folder; only the pictures are kept. Needs Debian's chromium and playwright (scripts/setup.sh).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@dataclass(frozen=True)
class Shot:
    """One picture: a page, a size, what to do first (a script run in the page), and the element to frame."""

    name: str  # the PNG's file name
    page: str  # a key of the pages written
    viewport: dict
    prepare: str = ""  # JavaScript run before the picture
    element: str | None = None  # a CSS selector: the picture is of it; None: the window


OPEN_TABLE = """() => {
  document.querySelector('#layer-table th[data-key="macs"]').click();
  const row = document.querySelector('#layer-table tbody tr');
  row.scrollIntoView({block: 'center'}); row.click(); }"""
TO = "(selector) => document.querySelector(selector).scrollIntoView()"


def find_in_diagram(name: str, colour: str = "kind") -> str:
    """Type `name` into the diagram's search box (it jumps there and opens its panel) and colour the boxes."""
    return f"""() => {{
  const colour = document.querySelector('#diagram-colour');
  colour.value = {colour!r}; colour.dispatchEvent(new Event('change'));
  const search = document.querySelector('#diagram-search');
  search.value = {name!r}; search.dispatchEvent(new Event('input')); }}"""


FIT_BY_MACS = """() => {
  const colour = document.querySelector('#diagram-colour');
  colour.value = 'macs'; colour.dispatchEvent(new Event('change'));
  document.querySelector('#diagram-fit').click(); }"""
README_SHOTS = (
    Shot("resnet50-report.png", "resnet50", DESKTOP),
    Shot("resnet50-diagram.png", "resnet50", DESKTOP, find_in_diagram("layer3.1.conv2"), element="#diagram"),
    Shot("resnet50-diagram-macs.png", "resnet50", DESKTOP, FIT_BY_MACS, element="#diagram"),
    Shot("googlenet-diagram.png", "googlenet", DESKTOP, find_in_diagram("inception4e.branch2.1", "macs"),
         element="#diagram"),
    Shot("resnet50-table.png", "resnet50", DESKTOP, OPEN_TABLE),
    Shot("resnet50-charts.png", "resnet50", DESKTOP, element="#charts"),
    Shot("vgg16-report.png", "vgg16", DESKTOP),
    Shot("googlenet-charts.png", "googlenet", DESKTOP, element="#charts"),
    Shot("compare-report.png", "compare", DESKTOP, element="#charts"),
    Shot("lenet-run-report.png", "run", DESKTOP),
    Shot("resnet50-phone.png", "resnet50", PHONE),
    Shot("resnet50-phone-diagram.png", "resnet50", PHONE, find_in_diagram("layer2.0.conv2"), element="#diagram"),
)


def every_shot() -> list[Shot]:
    """Each page at both sizes: its top, its table with one layer's arithmetic open, its charts."""
    shots = []
    for page in ("vgg16", "resnet50", "googlenet", "compare", "run"):
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            shots.append(Shot(f"{page}-{size}-top.png", page, viewport))
            shots.append(Shot(f"{page}-{size}-charts.png", page, viewport, element="#charts"))
            if page != "compare":
                shots.append(Shot(f"{page}-{size}-table.png", page, viewport, OPEN_TABLE))
                shots.append(Shot(f"{page}-{size}-diagram.png", page, viewport, element="#diagram"))
                shots.append(Shot(f"{page}-{size}-diagram-found.png", page, viewport, find_in_diagram("conv", "macs"),
                                  element="#diagram"))
            if page != "run":
                continue
            for section in ("#training", "#filters", "#cams", "#crosscheck"):
                shots.append(Shot(f"{page}-{size}-{section[1:]}.png", page, viewport, element=section))
    return shots


def write_pages(folder: Path, run: Path | None) -> dict[str, Path]:
    from archviz.render.html.build import write_comparison, write_model_report

    if run is None:
        from archviz.train import train

        run = folder / "run-lenet"
        train("lenet", dataset="digits", epochs=2, output=run, progress=False)
    pages = {name: write_model_report(name, folder / f"{name}.html") for name in ("vgg16", "resnet50", "googlenet")}
    pages["compare"] = write_comparison(["alexnet", "vgg16", "resnet50"], folder / "compare.html")
    pages["run"] = write_model_report("lenet", folder / "lenet-run.html", run=run)
    return pages


def take(shots: list[Shot], pages: dict[str, Path], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        for shot in shots:
            page = browser.new_page(viewport=shot.viewport)
            page.goto(pages[shot.page].as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4")
            if shot.element:  # the sticky navigation bar would cover the top of an element's picture
                page.evaluate("document.querySelectorAll('nav').forEach((n) => { n.style.position = 'static'; })")
            if shot.prepare:
                page.evaluate(shot.prepare)
            page.wait_for_timeout(400)  # plotly redraws after a resize
            target = out / shot.name
            if shot.element:
                page.locator(shot.element).screenshot(path=str(target))
            else:
                page.screenshot(path=str(target))
            written.append(target)
            page.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", type=Path, help="write every page at both sizes into this folder instead")
    parser.add_argument("--run", type=Path, help="a run folder of archviz train (default: train lenet here)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        pages = write_pages(Path(temporary), options.run)
        shots, out = (every_shot(), options.all) if options.all else (list(README_SHOTS), ROOT / "reports")
        for path in take(shots, pages, out):
            print(path)


if __name__ == "__main__":
    main()
