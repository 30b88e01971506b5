"""The sections a pretext run adds to a model's report (`archviz report MODEL --run RUN` on a run of archviz
pretrain): the task's inputs, the pretext curves, the probe tables and charts, and the first-layer kernels after
pretraining beside the initial ones. Text from the run is escaped here with html.escape.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from archviz.render.html.run_section import png_figure, filters_section

if TYPE_CHECKING:
    from archviz.pretrain.view import PretextView

NAV = (("pretext", "Pretext task"), ("probe", "Probe"), ("filters", "Filters"))
BACKBONES = (("pretext", "pretext"), ("random", "random init"), ("supervised", "supervised"))
LOOK_FOR_INPUTS = ("Look at what the network must work out from the pixels alone: the labels of the dataset are "
                   "never used. The caption under each picture is its pretext label.")
LOOK_FOR_PROBE = ("Look at where the pretext backbone beats the random one: those blocks learned something the "
                  "labels can use. Later blocks often fall behind earlier ones after a pretext task: they specialise "
                  "in the pretext, not in the classes.")


def pretext_data(view: PretextView) -> dict:
    keys = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
    return {"history": [{key: row[key] for key in keys} for row in view.history], "pretext": True,
            "probes": {kind: probe["blocks"] for kind, probe in view.probes.items()}}


def pretext_nav() -> str:
    return "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in NAV)


def pretext_sections(view: PretextView) -> str:
    from archviz.render.pictures import grid_png

    record = view.record
    settings = record["settings"]
    final = record.get("final", {})
    summary = (f"{record['model']} backbone on {record['dataset']['name']}, task {record['pretext']['task']}: "
               f"{record['epochs_done']} epochs, {settings['optimizer']} lr {settings['lr']:g}, batch "
               f"{settings['batch_size']}, seed {settings['seed']}; {final.get('test_split', 'test')} pretext "
               f"accuracy {final.get('test_pretext_accuracy', float('nan')):.2%} with best.pt (epoch "
               f"{record['best']['epoch']}). Run folder: {view.folder}")
    inputs = png_figure(grid_png(view.examples), "validation images as the task presents them")
    pretext = f"""<section id="pretext"><h2>Pretext task</h2><p>{html.escape(summary)}</p>
<p class="look">{html.escape(LOOK_FOR_INPUTS)}</p><div class="pictures">{inputs}</div>
<div class="charts"><div class="chart" id="chart-run-accuracy"></div><div class="chart" id="chart-run-loss"></div></div>
</section>"""
    return "\n".join((pretext, _probe(view), filters_section(view.filters, "after pretraining")))


def _probe(view: PretextView) -> str:
    if not view.probes:
        return (f'<section id="probe"><h2>Probe</h2><p>No probe yet: <code>archviz probe '
                f'{html.escape(str(view.folder))}</code> (add <code>--kind knn</code> for the nearest-neighbour '
                "probe) fills this section.</p></section>")
    parts = [f'<p class="look">{html.escape(LOOK_FOR_PROBE)}</p>']
    for kind, probe in view.probes.items():
        parts.append(f"<h3>{html.escape(kind)} probe on {html.escape(probe['dataset'])} ({probe['test_split']} "
                     f"accuracy, {len(probe['runs'])} run{'s' if len(probe['runs']) != 1 else ''})</h3>")
        parts.append(_probe_table(probe))
        parts.append(f'<div class="chart" id="chart-probe-{html.escape(kind)}"></div>')
    return f'<section id="probe"><h2>Probe</h2>{"".join(parts)}</section>'


def _probe_table(probe: dict) -> str:
    from archviz.render.probe import accuracy_text

    head = "".join(f'<th class="num">{html.escape(title)}</th>' for title in
                   ("Features", *(title for _, title in BACKBONES)))
    rows = "".join(
        f"<tr><td>{html.escape(block['block'])}</td><td class=\"num\">{block['features']:,}</td>"
        + "".join(f'<td class="num">{html.escape(accuracy_text(block["accuracy"][key]))}</td>'
                  for key, _ in BACKBONES) + "</tr>"
        for block in probe["blocks"])
    return f'<table class="probe-table"><thead><tr><th>Block</th>{head}</tr></thead><tbody>{rows}</tbody></table>'
