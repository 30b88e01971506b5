"""The sections a training run adds to a model's report (`archviz report MODEL --run runs/NAME`): learning curves,
confusion matrix and per-class report, first-layer filters after training beside their initial weights, and feature
maps and class-activation maps of a few validation images. Pictures are PNGs inline as data URIs; each comes with one
line saying what to look for. Text from the run (class folder names, paths) is escaped here with html.escape.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from archviz.render.html.compare_runs import EXTRA_CSS, class_table

if TYPE_CHECKING:
    from archviz.inside.run import RunView

NAV = (("training", "Training"), ("filters", "Filters"), ("activations", "Activations"), ("cams", "Class maps"))
RUN_CSS = EXTRA_CSS + """
.pictures { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.pictures figure { margin: 0; }
.pictures img { max-width: 100%; image-rendering: pixelated; border: 1px solid var(--line); }
.run-cards { margin-bottom: 8px; }
.pictures figcaption, p.look { color: var(--muted); font-size: 14px; max-width: 70em; }
"""
LOOK_FOR = {  # each line says what the pictures under it show, whatever the run: never what they should show
    "filters": "Each convolution's kernels after training beside the same kernels before it (initial weights). How "
               "far they differ is how much training moved them: after a few epochs of a small network they can "
               "still look alike.",
    "activations": "Each layer's output maps for one validation image, one small picture per channel, in layer order; "
                   "the maps shrink where a layer downsamples.",
    "cams": "Grad-CAM: bright cells are where the predicted class's gradient weighs the layer's maps most, upsampled "
            "from that layer's coarse grid to the image. Blank background can weigh as much as ink: where a digit has "
            "no stroke tells classes apart too.",
    "confusion": "Each cell counts test images; the diagonal holds the right answers, a cell off it a pair of classes "
                 "the model mixed up.",
}


def run_data(view: RunView) -> dict:
    """What run.js charts: the learning curves and the confusion matrix."""
    keys = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
    return {"history": [{key: row[key] for key in keys} for row in view.history],
            "classes": [row.name for row in view.report.rows],
            "confusion": [list(row) for row in view.report.confusion]}


def run_nav() -> str:
    return "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in NAV)


def run_sections(view: RunView) -> str:
    return "\n".join((_training(view), _filters(view), _activations(view), _cams(view)))


def _training(view: RunView) -> str:
    record, report = view.record, view.report
    final = record.get("final", {})
    settings = record["settings"]
    summary = (f"{record['model']} on {record['dataset']['name']}: {record['epochs_done']} epochs, "
               f"{settings['optimizer']} lr {settings['lr']:g}, batch {settings['batch_size']}, seed "
               f"{settings['seed']}; {final.get('test_split', 'test')} accuracy {report.accuracy:.2%} with best.pt "
               f"(epoch {record['best']['epoch']}, the lowest validation loss). Run folder: {view.folder}")
    split = final.get("test_split", "test")
    best = record["best"]["epoch"]
    cards = "".join((_card(f"{split} accuracy", f"{report.accuracy:.2%}", "best.pt"),
                     _card("epochs", str(record["epochs_done"]), f"best at epoch {best}"),
                     _card(f"{split} images", f"{report.support:,}", f"{len(report.rows)} classes")))
    cards = f'<div class="cards run-cards">{cards}</div>'
    return f"""<section id="training"><h2>Training</h2>{cards}<p>{html.escape(summary)}</p>
<div class="charts"><div class="chart" id="chart-run-accuracy"></div><div class="chart" id="chart-run-loss"></div>
<div class="chart" id="chart-run-confusion"></div></div>
<p class="look">{html.escape(LOOK_FOR["confusion"])}</p>
{class_table(f"Per-class report ({final.get('test_split', 'test')} split)", report)}
</section>"""


def _card(label: str, value: str, detail: str) -> str:
    return (f'<div class="card"><div class="label">{html.escape(label)}</div><div class="value">{html.escape(value)}'
            f'</div><div class="exact">{html.escape(detail)}</div></div>')


def _filters(view: RunView) -> str:
    return filters_section(view.filters, "after training")


def filters_section(pairs, label: str) -> str:
    """The Filters section: each first convolution's kernels after training beside its initial ones."""
    if not pairs:
        return ('<section id="filters"><h2>Filters</h2><p>This network has no convolution, so no kernels to draw.'
                "</p></section>")
    rows = "".join(
        f'<div class="pictures">{_figure(trained, label)}{_figure(initial, "initial weights")}</div>'
        for trained, initial in pairs)
    return (f'<section id="filters"><h2>Filters</h2><p class="look">{html.escape(LOOK_FOR["filters"])}</p>{rows}'
            "</section>")


def _activations(view: RunView) -> str:
    from archviz.render.inside import grids_png

    figures = "".join(png_figure(grids_png(list(sample.activations)), sample.image.source)
                      for sample in view.samples)
    return (f'<section id="activations"><h2>Activations</h2><p class="look">{html.escape(LOOK_FOR["activations"])}'
            f'</p><div class="pictures">{figures}</div></section>')


def _cams(view: RunView) -> str:
    from archviz.render.inside import cam_png

    figures = "".join(
        png_figure(cam_png(view.trained, sample.image, sample.cam),
                    f"predicted {view.trained.classes[sample.cam.target]} ({sample.cam.probability:.1%}), "
                    f"true {view.trained.dataset_classes[sample.image.label]}; Grad-CAM at {sample.cam.layer}")
        for sample in view.samples)
    return (f'<section id="cams"><h2>Class-activation maps</h2><p class="look">{html.escape(LOOK_FOR["cams"])}</p>'
            f'<div class="pictures">{figures}</div></section>')


def _figure(grid, label: str) -> str:
    from archviz.render.pictures import grid_png

    return png_figure(grid_png(grid), label)


def png_figure(png: bytes, caption: str) -> str:
    from archviz.render.pictures import png_data_uri, png_size

    width, height = png_size(png)
    return (f'<figure><img src="{png_data_uri(png)}" width="{width}" height="{height}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
