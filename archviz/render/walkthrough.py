"""A walkthrough (archviz/inside/walkthrough.py) for the terminal (rich), as a JSON dict, and as a PNG of the input
with the position's receptive window outlined.

The terminal shows every input channel of a small layer as three grids, patch, kernel and products; past
SHOWN_CHANNELS channels it shows the products summed over the channels at each kernel position, with a note, and
the channels that contribute most. The figures the walkthrough ends with (sum, bias, value, torch's value) are
printed with FIGURE's digits, the same numbers the JSON gives in full.
"""

from __future__ import annotations

import dataclasses
import enum
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from archviz.graph.ir import INPUT
from archviz.inside.walkthrough import ConvStep, LinearStep, NormStep, PoolStep, Walkthrough
from archviz.ops.base import Reduction

if TYPE_CHECKING:
    from rich.console import RenderableType

PADDING_CELL = "--"  # a window's place outside the input
SHOWN_CHANNELS = 4  # more input channels than this: their products summed per kernel position
SHOWN_CONTRIBUTORS = 8  # channels listed by the size of their sum when they are summed
SHOWN_VECTOR = 16  # a linear layer's whole input and weight row are printed up to this length
SIGNIFICANT = 3  # digits of a grid's largest value; the grid's other values get as many decimals
MAX_DECIMALS = 5
SIDE_BY_SIDE = 5  # kernels up to this many columns print patch, kernel and products side by side; wider ones stacked
LABEL = 32  # the width of the labels of the closing figures
MIN_PICTURE = 256  # the PNG's input is enlarged (nearest neighbour) to at least this many pixels a side
OUTLINE = (230, 25, 75)
MARGIN = 12


def figure(value: float) -> str:
    """A headline figure as the terminal prints it."""
    return f"{value:.6g}"


def cell(value: float | None) -> str:
    return PADDING_CELL if value is None else f"{value:.4g}"


# --- terminal -----------------------------------------------------------------------------------------------------

def walkthrough_view(walk: Walkthrough) -> RenderableType:
    from rich.console import Group

    parts: list[Any] = [*_header(walk)]
    step = walk.step
    if isinstance(step, ConvStep):
        parts += _conv_parts(walk, step)
    elif isinstance(step, PoolStep):
        parts += _pool_parts(walk, step)
    elif isinstance(step, LinearStep):
        parts += _linear_parts(walk, step)
    else:
        parts += _norm_parts(walk, step)
    parts += _result_lines(walk)
    return Group(*parts)


def _header(walk: Walkthrough) -> list[str]:
    lines = [f"{walk.layer} ({walk.op}), output {_dims(walk.out_shape)}: the value at {_where(walk.position)}",
             f"input: {walk.image}", f"weights: {walk.weights}"]
    if walk.sizes:
        same = len({size.arithmetic for size in walk.sizes}) == 1
        axes = [f"height and width {walk.sizes[0].arithmetic}"] if same else \
            [f"{size.axis} {size.arithmetic}" for size in walk.sizes]
        lines.append("output size, the course's ([W-F+2P]/S)+1: " + ", ".join(axes))
    field, input_dims = walk.field, _dims(walk.input_shape)
    if field.whole:
        lines.append(f"receptive field: the whole {input_dims} input (every position of it reaches this value)")
    else:
        lines.append(f"receptive field: {field.size[0]}x{field.size[1]} input pixels, rows {_span(field.rows)}, "
                     f"columns {_span(field.cols)} of the {input_dims} input ({_jump(field.jump)} px between "
                     "neighbouring outputs)")
    return [*lines, ""]


def _where(position: tuple[int, ...]) -> str:
    if len(position) == 3:
        return f"channel {position[0]}, row {position[1]}, column {position[2]}"
    if len(position) == 1:
        return f"feature {position[0]}"
    return "position " + ",".join(map(str, position))


def _conv_parts(walk: Walkthrough, step: ConvStep) -> list:
    channels = step.channels
    group = f" (group {step.group} of {step.groups})" if step.groups > 1 else ""
    read = f"channel {channels[0]}" if len(channels) == 1 else f"channels {_span((channels[0], channels[-1]))}"
    lines: list[Any] = [f"filter {walk.position[0]}{group} reads input {read} of {_source(walk)} ({_dims(walk.in_shape)}), rows {_span((step.rows[0], step.rows[-1]))}, "
                        f"columns {_span((step.cols[0], step.cols[-1]))}{_padding_note(walk, step.rows, step.cols)}"]
    if len(channels) <= SHOWN_CHANNELS:
        for index, channel in enumerate(channels):
            patch = _padded(step.patch[index], step.rows, step.cols, walk.in_shape)
            lines.append(_side_by_side([(f"channel {channel}: input patch", patch),
                                        ("kernel", step.kernel[index]), ("products", step.products[index])]))
    else:
        summed = [[sum(step.products[c][i][j] for c in range(len(channels))) for j in range(len(step.cols))]
                  for i in range(len(step.rows))]
        lines.append(_side_by_side([(f"products summed over the {len(channels)} channels", summed)]))
        lines.append(f"({len(channels)} input channels are too many to print one by one: each number above is the "
                     "sum over the channels of patch x kernel at that kernel position; --format json lists every "
                     "channel's patch, kernel and products)")
        lines.append("largest channel sums: " + ", ".join(
            f"channel {channels[c]} {cell(total)}" for c, total in _channel_sums(step)[:SHOWN_CONTRIBUTORS]))
    count = len(channels) * len(step.rows) * len(step.cols)
    return [*lines, "", _figure_line(f"sum of the {count} products", step.total), _bias_line(step.bias)]


def _figure_line(label: str, value: float, after: str = "") -> str:
    return f"{label:<{LABEL}}{figure(value)}{after}"


def _bias_line(bias: float | None) -> str:
    return _figure_line("+ bias", bias) if bias is not None else "+ no bias (the layer has none)"


def _source(walk: Walkthrough) -> str:
    return "the input image" if walk.source == INPUT else walk.source


def _channel_sums(step: ConvStep) -> list[tuple[int, float]]:
    sums = [(c, sum(sum(row) for row in products)) for c, products in enumerate(step.products)]
    return sorted(sums, key=lambda item: -abs(item[1]))


def _padded(patch, rows, cols, in_shape) -> list[list[float | None]]:
    height, width = in_shape[1:]
    return [[None if not (0 <= r < height and 0 <= c < width) else value for c, value in zip(cols, row)]
            for r, row in zip(rows, patch)]


def _padding_note(walk: Walkthrough, rows, cols) -> str:
    height, width = walk.in_shape[1:]
    outside = any(not 0 <= r < height for r in rows) or any(not 0 <= c < width for c in cols)
    return f" ({PADDING_CELL}: outside the input, zero padding)" if outside else ""


def _pool_parts(walk: Walkthrough, step: PoolStep) -> list:
    outside = _padding_note(walk, step.rows, step.cols).replace("zero padding", "padding")
    lines: list[Any] = [f"window of channel {step.channel} of {_source(walk)} ({_dims(walk.in_shape)}): rows "
                        f"{_span((step.rows[0], step.rows[-1]))}, columns {_span((step.cols[0], step.cols[-1]))}"
                        f"{outside}"]
    if step.reduction == Reduction.MAX:
        winner = (step.rows.index(step.winner[0]), step.cols.index(step.winner[1]))
        lines.append(_grid("window (* the maximum)", step.window, marked=winner))
        lines.append(f"max of the window: {figure(walk.value)} at row {step.winner[0]}, column {step.winner[1]}")
    else:
        lines.append(_side_by_side([("window", step.window)]))
        pads = sum(v is None for row in step.window for v in row)
        counted = f" ({pads} padding zeros counted)" if pads and step.divisor == len(step.rows) * len(step.cols) \
            else f" (padding left out)" if pads else ""
        lines.append(f"mean: sum {figure(step.total)} / {step.divisor} = {figure(walk.value)}{counted}")
    return lines


def _linear_parts(walk: Walkthrough, step: LinearStep) -> list:
    count = len(step.inputs)
    lines: list[Any] = [f"unit {step.unit}: weight row {step.unit} times the {count} values of {_source(walk)}"]
    if count <= SHOWN_VECTOR:
        lines.append(_side_by_side([("input", [step.inputs]), ("weights", [step.weights]),
                                    ("products", [step.products])]))
    else:
        rows = [[str(i), cell(step.inputs[i]), cell(step.weights[i]), cell(step.products[i])] for i in step.top]
        lines.append(_table(f"the {len(step.top)} largest of the {count} products, by |input x weight|:",
                            ["index", "input", "weight", "product"], rows))
    return [*lines, "", _figure_line(f"dot product ({count} products)", step.total), _bias_line(step.bias)]


def _norm_parts(walk: Walkthrough, step: NormStep) -> list:
    statistics = "running statistics" if step.running else "this image's own statistics (no running statistics)"
    return [
        f"channel {step.channel}, {statistics}:",
        f"x = {figure(step.x)}, mean = {figure(step.mean)}, variance = {figure(step.variance)}, eps = {step.eps:g}",
        f"(x - mean) / sqrt(variance + eps) = ({figure(step.x)} - {figure(step.mean)}) / "
        f"sqrt({figure(step.variance)} + {step.eps:g}) = {figure(step.normalised)}",
        f"* scale {figure(step.scale)} + shift {figure(step.shift)}",
    ]


def _result_lines(walk: Walkthrough) -> list[str]:
    lines = [_figure_line("= value (archviz)", walk.value),
             _figure_line("  value (torch, forward hook)", walk.torch_value, f"   difference {walk.difference:.1e}")]
    after = walk.activation
    if after is not None:
        lines += ["", f"then {after.layer}: {after.op}({figure(after.before)}) = {figure(after.value)}   "
                      f"(torch {figure(after.torch_value)})"]
    return lines


def _side_by_side(grids: list[tuple[str, Any]]):
    from rich.table import Table

    from rich.console import Group

    tables = [_grid(title, values) for title, values in grids]
    if max(len(values[0]) for _, values in grids) > SIDE_BY_SIDE:
        return Group(*tables)
    outer = Table.grid(padding=(0, 3))
    for _ in grids:
        outer.add_column()
    outer.add_row(*tables)
    return outer


def _grid(title: str, values, *, marked: tuple[int, int] | None = None):
    """A grid of numbers with one fixed number of decimals; None is padding; `marked` (row, column) starred."""
    from rich.table import Table

    decimals = _decimals([v for row in values for v in row if v is not None])
    rows = [[PADDING_CELL if value is None else f"{value:.{decimals}f}" for value in row] for row in values]
    if marked is not None:
        rows[marked[0]][marked[1]] += "*"
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 0, 0, 1),
                  min_width=len(title))
    for _ in rows[0]:
        table.add_column(justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _decimals(values: list[float]) -> int:
    """Decimals that give the grid's largest |value| SIGNIFICANT digits, one fixed width for the whole grid."""
    import math

    largest = max((abs(v) for v in values), default=0.0)
    if largest == 0.0:
        return 1
    return max(0, min(MAX_DECIMALS, SIGNIFICANT - 1 - math.floor(math.log10(largest))))


def _table(title: str, headers: list[str], rows: list[list[str]]):
    from rich.table import Table

    from rich.console import Group

    table = Table(box=None, padding=(0, 1))
    for header in headers:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*row)
    return Group(title, table)


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _span(pair: tuple[int, int]) -> str:
    if pair[0] == pair[1]:
        return str(pair[0])
    return f"{pair[0]} to {pair[1]}" if pair[0] < 0 else f"{pair[0]}-{pair[1]}"


def _jump(jump) -> str:
    return str(jump[0]) if jump[0] == jump[1] else f"{jump[0]}x{jump[1]}"


# --- JSON ---------------------------------------------------------------------------------------------------------

def walkthrough_dict(walk: Walkthrough) -> dict:
    """Every figure of the walkthrough, the step's kind named; floats in full."""
    kinds = {ConvStep: "convolution", PoolStep: "pooling", LinearStep: "dot_product", NormStep: "batch_norm"}
    data = plain(dataclasses.asdict(walk))
    data["step"]["kind"] = kinds[type(walk.step)]
    if isinstance(walk.step, NormStep):
        data["step"]["normalised"] = walk.step.normalised
    data["difference"] = walk.difference
    return data


def plain(value):
    """A record's asdict() as JSON data: enums as their values, fractions as floats, tuples as lists."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Fraction):
        return float(value)
    return value


# --- picture ------------------------------------------------------------------------------------------------------

def walkthrough_png(walk: Walkthrough, picture) -> bytes:
    """The input picture (0..1, (H, W) or (H, W, 3)) enlarged, the position's receptive window outlined."""
    import io
    import math

    import numpy as np
    from PIL import Image, ImageDraw

    from archviz.render.pictures import Scale, colorize

    pixels = np.asarray(picture, dtype=float)
    rgb = colorize(np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels, scale=Scale.RGB)
    factor = max(1, -(-MIN_PICTURE // max(rgb.shape[:2])))
    image = Image.fromarray(rgb.repeat(factor, axis=0).repeat(factor, axis=1))
    field = walk.field
    box = (field.cols[0] * factor, field.rows[0] * factor, (field.cols[1] + 1) * factor - 1,
           (field.rows[1] + 1) * factor - 1)
    ImageDraw.Draw(image).rectangle(box, outline=OUTLINE, width=max(2, factor // 4))
    caption = f"{walk.layer} at {_where(walk.position)}: rows {_span(field.rows)}, columns {_span(field.cols)}"
    text_width = math.ceil(ImageDraw.Draw(image).textlength(caption))
    canvas = Image.new("RGB", (max(image.width, text_width) + 2 * MARGIN, image.height + 3 * MARGIN + 8), "white")
    canvas.paste(image, (MARGIN, MARGIN))
    ImageDraw.Draw(canvas).text((MARGIN, image.height + 2 * MARGIN - 4), caption, fill=(33, 33, 33))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
