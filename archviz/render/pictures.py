"""Pictures of arrays: conv filters, feature maps and class-activation heatmaps as PNG bytes or terminal text.

Colours come from two small tables interpolated linearly, so matplotlib is not needed: a blue-white-red map for
signed values (ColorBrewer's RdBu, Brewer 2002) and viridis for values in [0, 1] (van der Walt and Smith, matplotlib's
default). Pixels are only ever enlarged nearest-neighbour: a 5x5 kernel shows 25 honest blocks, never a blur. numpy,
Pillow and rich are imported inside the functions, keeping `archviz --help` fast.
"""

from __future__ import annotations

import base64
import math
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont
    from rich.text import Text


class Scale(StrEnum):
    """How a tile's numbers become colours."""

    DIVERGING = "diverging"  # [-1, 1]: blue, white at 0, red
    SEQUENTIAL = "sequential"  # [0, 1]: dark to bright
    RGB = "rgb"  # (H, W, 3) in [0, 1]: the colour itself


# ColorBrewer RdBu (5 classes) from -1 to +1, its pale middle made pure white so that 0 reads as "nothing"
DIVERGING_STOPS = ((5, 113, 176), (146, 197, 222), (255, 255, 255), (244, 165, 130), (202, 0, 32))
# viridis sampled at 0, 0.1, ..., 1; its luma rises at every step, so brighter always means larger
SEQUENTIAL_STOPS = ((68, 1, 84), (72, 36, 117), (65, 68, 135), (53, 95, 141), (42, 120, 142), (33, 145, 140),
                    (34, 168, 132), (68, 191, 112), (122, 209, 81), (189, 223, 38), (253, 231, 37))
NAN_GREY = (128, 128, 128)  # apart from both maps: white is 0 in DIVERGING, dark purple is 0 in SEQUENTIAL
INK = (33, 33, 33)
FRAME_GREY = (190, 190, 190)
GAP = 4  # px between cells in a grid
PANEL_GAP = 16  # px between overlay panels
MARGIN = 12
BAR_WIDTH = 14
MAX_BAR_HEIGHT = 320
TARGET_CELL = 96  # default cell: a 5x5 kernel at 19x (95 px), a 56x56 map at 2x (112 px)
MAX_CELL = 160  # larger tiles are shrunk to this
MAX_PICTURE_WIDTH = 1600  # default columns stop here, so a 64-filter grid is not a 6000 px strip
MIN_PANEL = 224  # overlay panels at least this (the usual ImageNet input side), so 28x28 digits are visible
TITLE_SIZE, TEXT_SIZE = 18, 13
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RGB_LEGEND = "no colour bar: tiles shown as RGB"


def colorize(values, *, scale: Scale) -> np.ndarray:
    """(H, W) floats, or (H, W, 3) for RGB, as (H, W, 3) uint8; values past the scale's range are clipped, NaN is grey.

    >>> colorize([[-1.0, 0.0, 1.0]], scale=Scale.DIVERGING)[0].tolist()
    [[5, 113, 176], [255, 255, 255], [202, 0, 32]]
    """
    import numpy as np

    scale = Scale(scale)
    values = np.asarray(values, dtype=float)
    _check_shape(values.shape, scale)
    if scale == Scale.RGB:
        missing = np.isnan(values).any(axis=-1)
        rgb = np.clip(np.nan_to_num(values), 0.0, 1.0) * 255
    else:
        missing = np.isnan(values)
        low = -1.0 if scale == Scale.DIVERGING else 0.0
        position = np.clip((np.nan_to_num(values) - low) / (1.0 - low), 0.0, 1.0)
        stops = np.array(DIVERGING_STOPS if scale == Scale.DIVERGING else SEQUENTIAL_STOPS, dtype=float)
        knots = np.linspace(0.0, 1.0, len(stops))
        rgb = np.stack([np.interp(position, knots, stops[:, channel]) for channel in range(3)], axis=-1)
    rgb[missing] = NAN_GREY
    return np.rint(rgb).astype(np.uint8)


def _check_shape(shape: tuple[int, ...], scale: Scale) -> None:
    rgb = scale == Scale.RGB
    if len(shape) != (3 if rgb else 2) or (rgb and shape[-1] != 3) or 0 in shape:
        expected = "(H, W, 3)" if rgb else "(H, W)"
        raise ValueError(f"{scale} values must have shape {expected}, got {shape!r}")


@dataclass(frozen=True)
class Grid:
    """Tiles of one kind (filters, feature maps) drawn in rows, with a title and an optional colour bar."""

    tiles: tuple  # numpy arrays: (h, w), or (h, w, 3) for RGB; sizes may differ
    scale: Scale
    title: str
    captions: tuple = ()  # one short string per tile, under it
    columns: int | None = None  # None: about square, but no wider than MAX_PICTURE_WIDTH
    scale_labels: tuple = ()  # (low, middle, high) at the colour bar; () labels it with the scale's own range
    note: str = ""  # one line under the title

    def __post_init__(self):
        Scale(self.scale)
        if not self.tiles:
            raise ValueError(f"grid {self.title!r} has no tiles")
        if self.captions and len(self.captions) != len(self.tiles):
            raise ValueError(f"grid {self.title!r}: {len(self.captions)} captions for {len(self.tiles)} tiles")
        if self.columns is not None and self.columns < 1:
            raise ValueError(f"grid {self.title!r}: columns must be at least 1, got {self.columns!r}")
        if len(self.scale_labels) not in (0, 3):
            raise ValueError(f"grid {self.title!r}: scale_labels must be (low, middle, high), "
                             f"got {self.scale_labels!r}")


@dataclass(frozen=True)
class _Layout:
    columns: int
    rows: int
    cell: int
    row_pitch: int  # cell, caption band and gap

    @property
    def size(self) -> tuple[int, int]:
        return self.columns * (self.cell + GAP) - GAP, self.rows * self.row_pitch - GAP

    def origin(self, index: int) -> tuple[int, int]:
        row, column = divmod(index, self.columns)
        return column * (self.cell + GAP), row * self.row_pitch


def _layout(grid: Grid, *, cell: int, caption_band: int = 0) -> _Layout:
    count = len(grid.tiles)
    fitting = max(1, (MAX_PICTURE_WIDTH - 2 * MARGIN - 120 + GAP) // (cell + GAP))  # 120: room for the bar
    columns = min(grid.columns or min(math.ceil(math.sqrt(count)), fitting), count)
    return _Layout(columns, math.ceil(count / columns), cell, cell + caption_band + GAP)


def _default_cell(tiles: tuple) -> int:
    import numpy as np

    longest = max(max(np.shape(tile)[:2]) for tile in tiles)
    return min(longest * max(1, round(TARGET_CELL / longest)), MAX_CELL)


def grid_pixels(grid: Grid, *, cell: int) -> np.ndarray:
    """The tiles alone on white, (H, W, 3) uint8: rows * cell + gaps high, columns * cell + gaps wide, no text.

    >>> import numpy as np
    >>> grid_pixels(Grid(tiles=(np.zeros((5, 5)),) * 3, scale=Scale.DIVERGING, title="t"), cell=10).shape
    (24, 24, 3)
    """
    import numpy as np
    from PIL import Image

    layout = _layout(grid, cell=cell)
    canvas = Image.new("RGB", layout.size, "white")
    _paste_tiles(canvas, grid, layout)
    return np.array(canvas)


def _paste_tiles(canvas: Image.Image, grid: Grid, layout: _Layout, *, draw: ImageDraw.ImageDraw | None = None,
                 font=None, offset: int = 0) -> None:
    """Each tile centred in its cell; given a draw, also a frame (white weights would merge with the white gaps
    otherwise) and the caption, `offset` px in from the canvas edge so the outer frames fit."""
    for index, tile in enumerate(grid.tiles):
        picture = _enlarge(colorize(tile, scale=grid.scale), longest=layout.cell)
        x, y = (offset + at for at in layout.origin(index))
        left, top = x + (layout.cell - picture.width) // 2, y + (layout.cell - picture.height) // 2
        canvas.paste(picture, (left, top))
        if draw is not None:
            draw.rectangle((left - 1, top - 1, left + picture.width, top + picture.height), outline=FRAME_GREY)
        if draw is not None and grid.captions:
            _text(draw, (x + layout.cell // 2, y + layout.cell + 2), str(grid.captions[index]), font, center=True)


def _enlarge(pixels: np.ndarray, *, longest: int) -> Image.Image:
    """Nearest-neighbour to at most `longest` px: enlarged by a whole number, so every source pixel is an equal block
    (a 5x5 kernel in a 64 px cell is 60 px, not 64 with blocks of 12 and 13); larger pictures shrink to fit."""
    from PIL import Image

    picture = Image.fromarray(pixels)
    factor = longest / max(picture.size)
    if factor >= 1:
        factor = int(factor)
    size = (max(1, round(picture.width * factor)), max(1, round(picture.height * factor)))
    return picture.resize(size, Image.Resampling.NEAREST)


def grid_png(grid: Grid, *, cell: int | None = None) -> bytes:
    """The grid as a PNG: title and note on top, a caption under each tile, the colour bar at the right.

    `cell` is the px of a tile's longer side; None picks one near 96 px that is a whole multiple of the tile.

    >>> import numpy as np
    >>> png = grid_png(Grid(tiles=(np.eye(5), -np.eye(5)), scale=Scale.DIVERGING, title="two 5x5 filters"))
    >>> png[:8] == PNG_SIGNATURE, png_size(png)[0] > 2 * 95
    (True, True)
    """
    from PIL import Image, ImageDraw

    cell = cell or _default_cell(grid.tiles)
    small = _font(TEXT_SIZE)
    layout = _layout(grid, cell=cell, caption_band=_line_height(small) if grid.captions else 0)
    width, height = layout.size
    body = Image.new("RGB", (width + 2, height + 2), "white")
    _paste_tiles(body, grid, layout, draw=ImageDraw.Draw(body), font=small, offset=1)
    has_bar = grid.scale != Scale.RGB
    default_labels = ("-1", "0", "+1") if grid.scale == Scale.DIVERGING else ("0", "0.5", "1")
    return _png(_figure(body, title=grid.title, note=grid.note, bar=grid.scale if has_bar else None,
                        bar_labels=grid.scale_labels or default_labels, footer="" if has_bar else RGB_LEGEND))


def overlay_pixels(image, heatmap, *, alpha: float = 0.5) -> np.ndarray:
    """The heatmap (SEQUENTIAL colours) blended over the image: (1 - alpha) * image + alpha * heatmap, (H, W, 3) uint8.

    >>> overlay_pixels([[0.0, 1.0]], [[0.0, 1.0]], alpha=0.0)[0].tolist()
    [[0, 0, 0], [255, 255, 255]]
    """
    import numpy as np

    base, heat = _image_rgb(image), colorize(heatmap, scale=Scale.SEQUENTIAL)
    if base.shape != heat.shape:
        raise ValueError(f"heatmap shape {np.shape(heatmap)!r} does not match image shape {np.shape(image)!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return np.rint((1.0 - alpha) * base + alpha * heat).astype(np.uint8)


def _image_rgb(image) -> np.ndarray:
    import numpy as np

    image = np.asarray(image, dtype=float)
    return colorize(np.stack([image] * 3, axis=-1) if image.ndim == 2 else image, scale=Scale.RGB)


def overlay_png(image, heatmap, *, title: str, caption: str = "", alpha: float = 0.5,
                labels: tuple[str, str, str] = ("input", "heatmap", "overlay")) -> bytes:
    """Input, heatmap and their blend side by side, a label under each; title on top, caption under, colour bar.

    >>> import numpy as np
    >>> png = overlay_png(np.zeros((28, 28)), np.ones((28, 28)), title="Grad-CAM")
    >>> png_size(png)[0] > 3 * 224
    True
    """
    from PIL import Image, ImageDraw

    panels = [_image_rgb(image), colorize(heatmap, scale=Scale.SEQUENTIAL), overlay_pixels(image, heatmap, alpha=alpha)]
    longest = max(panels[0].shape[:2])
    pictures = [_enlarge(panel, longest=longest * math.ceil(MIN_PANEL / longest)) for panel in panels]
    small = _font(TEXT_SIZE)
    width, height = pictures[0].size
    body = Image.new("RGB", (3 * width + 2 * PANEL_GAP, height + _line_height(small)), "white")
    draw = ImageDraw.Draw(body)
    for index, (picture, label) in enumerate(zip(pictures, labels)):
        x = index * (width + PANEL_GAP)
        body.paste(picture, (x, 0))
        _text(draw, (x + width // 2, height + 2), label, small, center=True)
    return _png(_figure(body, title=title, note="", bar=Scale.SEQUENTIAL, bar_labels=("0", "", "max"),
                        footer=caption))


def _figure(body: Image.Image, *, title: str, note: str, bar: Scale | None, bar_labels: tuple,
            footer: str) -> Image.Image:
    """The body framed: title and note above, a colour bar with labels at its right, one footer line below."""
    from PIL import Image, ImageDraw

    big, small = _font(TITLE_SIZE), _font(TEXT_SIZE)
    header = [(line, font) for line, font in ((title, big), (note, small)) if line]
    top = MARGIN + sum(_line_height(font) for _, font in header) + (6 if header else 0)
    label_width = max((_text_width(str(label), small) for label in bar_labels), default=0)
    bar_room = 16 + BAR_WIDTH + 6 + label_width if bar else 0
    bar_height = max(min(body.height, MAX_BAR_HEIGHT), 3 * _line_height(small))
    texts = [_text_width(line, font) for line, font in header + [(footer, small)]]
    width = 2 * MARGIN + max(body.width + bar_room, *texts)
    bottom = top + max(body.height, bar_height if bar else 0) + 6
    height = bottom + (_line_height(small) if footer else 0) + MARGIN
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    y = MARGIN
    for line, font in header:
        _text(draw, (MARGIN, y), line, font)
        y += _line_height(font)
    figure.paste(body, (MARGIN, top))
    if bar:
        _colour_bar(figure, draw, (MARGIN + body.width + 16, top), bar, height=bar_height, labels=bar_labels)
    if footer:
        _text(draw, (MARGIN, bottom), footer, small)
    return figure


def _colour_bar(figure: Image.Image, draw: ImageDraw.ImageDraw, corner: tuple[int, int], scale: Scale, *,
                height: int, labels: tuple) -> None:
    import numpy as np
    from PIL import Image

    low = -1.0 if scale == Scale.DIVERGING else 0.0
    column = np.linspace(1.0, low, height)[:, None]  # (height, 1): the high end on top
    figure.paste(Image.fromarray(colorize(np.repeat(column, BAR_WIDTH, axis=1), scale=scale)), corner)
    x, y = corner
    draw.rectangle((x - 1, y - 1, x + BAR_WIDTH, y + height), outline=FRAME_GREY)
    small = _font(TEXT_SIZE)
    for label, label_y in zip(reversed(labels), (y, y + height // 2, y + height - 1)):
        _text(draw, (x + BAR_WIDTH + 6, label_y), str(label), small, middle=True)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow before 10.1, or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _line_height(font) -> int:
    return font.getbbox("Hg")[3] + 4


def _text_width(text: str, font) -> int:
    left, _, right, _ = font.getbbox(text) if text else (0, 0, 0, 0)
    return right - left


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font, *, center: bool = False,
          middle: bool = False) -> None:
    # positions computed by hand: the bitmap fallback font does not support Pillow's text anchors
    x, y = xy
    if center:
        x -= _text_width(text, font) // 2
    if middle:
        _, top, _, bottom = font.getbbox(text or "0")
        y -= (top + bottom) // 2
    draw.text((x, y), text, fill=INK, font=font)


def _png(picture: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")  # optimize=True: ten times slower for under 1% smaller
    return buffer.getvalue()


def terminal_picture(pixels, *, max_width: int = 80) -> Text:
    """(H, W, 3) uint8 as rich Text: each '▀' is two pixels, the upper as foreground, the lower as background.

    Shrunk (nearest) to at most max_width characters wide; a terminal cell is about twice as tall as wide, so two
    pixels per cell keep the picture's proportions.

    >>> import numpy as np
    >>> terminal_picture(np.zeros((4, 6, 3), dtype=np.uint8)).plain
    '▀▀▀▀▀▀\\n▀▀▀▀▀▀'
    """
    import numpy as np
    from rich.color import Color
    from rich.style import Style
    from rich.text import Text

    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8 or 0 in pixels.shape:
        raise ValueError(f"expected (H, W, 3) uint8 pixels (see colorize), got {pixels.dtype} {pixels.shape!r}")
    if max_width < 1:
        raise ValueError(f"max_width must be at least 1, got {max_width!r}")
    pixels = _shrink_to_width(pixels, max_width)
    picture = Text(no_wrap=True, overflow="crop")
    for row in range(0, pixels.shape[0], 2):
        upper = pixels[row].tolist()
        lower = pixels[row + 1].tolist() if row + 1 < pixels.shape[0] else [None] * len(upper)
        if row:
            picture.append("\n")
        for top, bottom in zip(upper, lower):
            picture.append("▀", Style(color=Color.from_rgb(*top),
                                      bgcolor=Color.from_rgb(*bottom) if bottom else None))
    return picture


def _shrink_to_width(pixels: np.ndarray, max_width: int) -> np.ndarray:
    import numpy as np

    height, width = pixels.shape[:2]
    if width <= max_width:
        return pixels
    new_height = max(1, round(height * max_width / width))
    rows = np.arange(new_height) * height // new_height
    columns = np.arange(max_width) * width // max_width
    return pixels[rows][:, columns]  # (new_height, max_width, 3)


def png_data_uri(png: bytes) -> str:
    """The PNG as a data URI for an inline <img>.

    >>> png_data_uri(b"x")
    'data:image/png;base64,eA=='
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR header, which the format puts first.

    >>> png_size(grid_png(Grid(tiles=([[0.5]],), scale=Scale.SEQUENTIAL, title=""), cell=1))[1] > 1
    True
    """
    if png[:8] != PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise ValueError(f"not a PNG: starts with {png[:16]!r}")
    width, height = struct.unpack(">II", png[16:24])
    return width, height
