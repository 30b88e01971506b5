"""The report's interactive walkthrough (`archviz report MODEL --run RUN`): for the run's first convolutions and one
validation image, the layer's input, weights and torch's output, captured at report time
(archviz.inside.walkthrough.conv_arithmetic), travel in the page's data; walkthrough.js redoes the arithmetic of the
position a reader clicks (patch, kernel, products, sum, bias) and sets torch's value beside it, and outlines on the
input the pixels that position sees. Offline, no torch in the browser.
"""

from __future__ import annotations

import dataclasses
import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archviz.inside.run import RunView

NAV = ("walkthrough", "One value")
PICTURE_SIDE = 224  # px: the input is enlarged (nearest neighbour) to at least this
WALK_CSS = """
.walk-body { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.walk-body figure { margin: 0; }
#walk-map { cursor: crosshair; image-rendering: pixelated; border: 1px solid var(--line); }
.walk-frame { position: relative; display: inline-block; line-height: 0; }
.walk-frame img { width: 224px; image-rendering: pixelated; border: 1px solid var(--line); }
#walk-box { position: absolute; outline: 2px solid #e6194b; pointer-events: none; }
.walk-row { display: flex; flex-wrap: wrap; gap: 16px; margin: 8px 0; }
.walk-grid { margin: 0; }
.walk-sum { width: auto; }
.walk-note { color: var(--muted); font-size: 14px; max-width: 70em; }
.walk-grid table, .walk-sum { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 13px; }
.walk-grid td { padding: 1px 6px; text-align: right; border: 1px solid var(--line); }
.walk-sum td { padding: 2px 10px 2px 0; }
.walk-sum td + td { text-align: right; }
"""


def walkthrough_nav() -> str:
    anchor, title = NAV
    return f'<a href="#{anchor}">{title}</a>'


def walkthrough_parts(view: RunView) -> tuple[str, str, dict]:
    """(navigation link, section, data) for the run's first sample image."""
    from archviz.inside.walkthrough import conv_arithmetic
    from archviz.render.walkthrough import plain

    if not view.samples:
        return "", "", {}
    image = view.samples[0].image
    layers = conv_arithmetic(view.trained, image)
    if not layers:
        return "", "", {}
    data = {"walkthrough": [plain(dataclasses.asdict(layer)) for layer in layers],
            "walkthrough_input": list(view.trained.input_shape[1:])}
    return walkthrough_nav(), _section(image.source, _picture_uri(image.picture)), data


def _section(source: str, picture: str) -> str:
    return f"""<section id="walkthrough"><h2>One value, step by step</h2>
<p class="walk-note">How a convolution computes one number of its output: pick a layer and a channel, then click a position
of the output map (blue negative, red positive). The input patch its kernel covers, the kernel, their products, the sum
and the bias are recomputed in this page from the layer's input and weights, which archviz captured when it wrote the
report, beside the value torch computed there. Input: {html.escape(source)}.</p>
<p><label>Layer <select id="walk-layer"></select></label> <label>Channel <select id="walk-channel"></select></label></p>
<div class="walk-body">
<figure><canvas id="walk-map" width="224" height="224"></canvas><figcaption>the layer's output map: click a
position</figcaption></figure>
<figure><div class="walk-frame"><img id="walk-image" alt="the input image" src="{picture}"><div id="walk-box"></div>
</div><figcaption>the input: outlined, the pixels this position sees</figcaption></figure>
</div>
<p id="walk-position" class="walk-note"></p>
<div id="walk-arithmetic"></div>
</section>"""


def _picture_uri(picture) -> str:
    """The input (0..1, (H, W) or (H, W, 3)) as a PNG data URI, enlarged nearest neighbour."""
    import io

    import numpy as np
    from PIL import Image

    from archviz.render.pictures import Scale, colorize, png_data_uri

    pixels = np.asarray(picture, dtype=float)
    rgb = colorize(np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels, scale=Scale.RGB)
    factor = max(1, -(-PICTURE_SIDE // max(rgb.shape[:2])))
    buffer = io.BytesIO()
    Image.fromarray(rgb.repeat(factor, axis=0).repeat(factor, axis=1)).save(buffer, format="PNG")
    return png_data_uri(buffer.getvalue())
