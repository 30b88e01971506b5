"""archviz.render.pictures: colours, grid layout, PNG output, overlays and terminal pictures."""

import base64
import io
import math

import pytest

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from rich.console import Console  # noqa: E402

from archviz.render.pictures import (  # noqa: E402
    GAP,
    NAN_GREY,
    PNG_SIGNATURE,
    Grid,
    Scale,
    colorize,
    grid_pixels,
    grid_png,
    overlay_pixels,
    overlay_png,
    png_data_uri,
    png_size,
    terminal_picture,
)


def _luma(rgb):
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _grid(count, *, scale=Scale.DIVERGING, size=5, **options):
    shape = (size, size, 3) if scale == Scale.RGB else (size, size)
    tiles = tuple(np.full(shape, 0.5) for _ in range(count))
    return Grid(tiles=tiles, scale=scale, title="conv1", **options)


def test_diverging_is_blue_white_red():
    blue, white, red = colorize([[-1.0, 0.0, 1.0]], scale=Scale.DIVERGING)[0].astype(int)
    assert blue[2] > blue[0] + 100 and blue[2] > blue[1]  # channel order R, G, B
    assert white.tolist() == [255, 255, 255]
    assert red[0] > red[2] + 100 and red[0] > red[1]


def test_sequential_brightness_rises():
    values = np.linspace(0.0, 1.0, 101)[None, :]
    luma = _luma(colorize(values, scale=Scale.SEQUENTIAL)[0].astype(float))
    assert np.all(np.diff(luma) > 0)


@pytest.mark.parametrize("scale", [Scale.DIVERGING, Scale.SEQUENTIAL])
def test_nan_is_grey(scale):
    assert colorize([[np.nan]], scale=scale)[0, 0].tolist() == list(NAN_GREY)


def test_nan_in_any_rgb_channel_is_grey():
    assert colorize([[[0.2, np.nan, 0.4]]], scale=Scale.RGB)[0, 0].tolist() == list(NAN_GREY)


def test_values_past_the_range_are_clipped():
    beyond = colorize([[-5.0, 5.0, -np.inf, np.inf]], scale=Scale.DIVERGING)
    ends = colorize([[-1.0, 1.0, -1.0, 1.0]], scale=Scale.DIVERGING)
    assert np.array_equal(beyond, ends)
    sequential = colorize([[-0.5, 2.0]], scale=Scale.SEQUENTIAL)
    assert np.array_equal(sequential, colorize([[0.0, 1.0]], scale=Scale.SEQUENTIAL))
    assert colorize([[[2.0, -1.0, 0.5]]], scale=Scale.RGB)[0, 0].tolist() == [255, 0, 128]


def test_colorize_takes_the_scale_as_a_string():
    assert np.array_equal(colorize([[0.3]], scale="sequential"), colorize([[0.3]], scale=Scale.SEQUENTIAL))


@pytest.mark.parametrize("scale, shape", [(Scale.DIVERGING, (2, 2, 3)), (Scale.SEQUENTIAL, (4,)),
                                          (Scale.RGB, (2, 2)), (Scale.RGB, (2, 2, 4))])
def test_colorize_rejects_the_wrong_shape(scale, shape):
    with pytest.raises(ValueError, match="must have shape"):
        colorize(np.zeros(shape), scale=scale)


@pytest.mark.parametrize("count, columns, rows, cols", [(1, None, 1, 1), (6, None, 2, 3), (10, None, 3, 4),
                                                        (6, 2, 3, 2), (3, 5, 1, 3)])
def test_grid_pixels_canvas_is_rows_by_columns_cells(count, columns, rows, cols):
    cell = 20
    pixels = grid_pixels(_grid(count, columns=columns), cell=cell)
    assert pixels.shape == (rows * cell + (rows - 1) * GAP, cols * cell + (cols - 1) * GAP, 3)
    assert pixels.dtype == np.uint8


def test_grid_pixels_keeps_blocks_whole_and_tiles_of_other_sizes_centred():
    kernel = np.zeros((5, 5))
    kernel[0, 0] = 1.0
    wide = np.full((2, 4), -1.0)
    pixels = grid_pixels(Grid(tiles=(kernel, wide), scale=Scale.DIVERGING, title="t"), cell=20)
    assert pixels.shape == (20, 20 + GAP + 20, 3)
    red = colorize([[1.0]], scale=Scale.DIVERGING)[0, 0]
    is_red = np.all(pixels[:, :20] == red, axis=-1)
    assert is_red[:4, :4].all() and is_red.sum() == 16  # one source pixel = one 4x4 block
    blue = colorize([[-1.0]], scale=Scale.DIVERGING)[0, 0]
    is_blue = np.all(pixels[:, 20 + GAP:] == blue, axis=-1)
    rows, columns = np.nonzero(is_blue)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (5, 14, 0, 19)  # 2x4 at 5x, centred


def test_default_columns_stay_within_the_width_cap():
    pixels = grid_pixels(_grid(400, size=2), cell=96)
    assert pixels.shape[1] <= 1600


def test_grid_png_is_a_png_that_grows_with_more_tiles():
    small, large = grid_png(_grid(4)), grid_png(_grid(16))
    assert small.startswith(PNG_SIGNATURE)
    opened = Image.open(io.BytesIO(small))
    assert opened.format == "PNG" and opened.mode == "RGB"
    assert opened.size == png_size(small)
    assert png_size(large)[0] > png_size(small)[0] and png_size(large)[1] > png_size(small)[1]


def test_grid_png_background_is_white():
    opened = Image.open(io.BytesIO(grid_png(_grid(2, captions=("a", "b"), note="a note"))))
    assert opened.getpixel((1, 1)) == (255, 255, 255)
    assert opened.getpixel((opened.width - 2, opened.height - 2)) == (255, 255, 255)


def test_rgb_grid_has_no_colour_bar():
    signed = _grid(9, size=11)
    rgb = Grid(tiles=tuple(np.stack([tile] * 3, axis=-1) for tile in signed.tiles), scale=Scale.RGB, title="conv1")
    with_bar, without = grid_png(signed, cell=88), grid_png(rgb, cell=88)
    assert png_size(without)[0] < png_size(with_bar)[0]
    bar_top = tuple(colorize([[1.0]], scale=Scale.DIVERGING)[0, 0].tolist())
    body_right = 12 + grid_pixels(signed, cell=88).shape[1]
    assert np.all(np.asarray(Image.open(io.BytesIO(with_bar)))[:, body_right:] == bar_top, axis=-1).any()
    assert not np.all(np.asarray(Image.open(io.BytesIO(without))) == bar_top, axis=-1).any()


@pytest.mark.parametrize("captions, columns", [(("a",), None), ((), 0)])
def test_grid_rejects_inconsistent_options(captions, columns):
    with pytest.raises(ValueError):
        _grid(2, captions=captions, columns=columns)


def test_overlay_pixels_blends_from_image_to_heatmap():
    rng = np.random.default_rng(0)
    image, heatmap = rng.uniform(size=(8, 8, 3)), rng.uniform(size=(8, 8))
    assert np.array_equal(overlay_pixels(image, heatmap, alpha=0.0), colorize(image, scale=Scale.RGB))
    assert np.array_equal(overlay_pixels(image, heatmap, alpha=1.0), colorize(heatmap, scale=Scale.SEQUENTIAL))
    half = overlay_pixels(image, heatmap, alpha=0.5).astype(int)
    expected = (colorize(image, scale=Scale.RGB).astype(int) + colorize(heatmap, scale=Scale.SEQUENTIAL)) / 2
    assert np.abs(half - expected).max() <= 1


def test_overlay_pixels_takes_a_grey_image():
    gray = np.linspace(0, 1, 16).reshape(4, 4)
    pixels = overlay_pixels(gray, np.zeros((4, 4)), alpha=0.0)
    assert pixels.shape == (4, 4, 3)
    assert np.array_equal(pixels[..., 0], pixels[..., 2]) and pixels[-1, -1].tolist() == [255, 255, 255]


def test_overlay_rejects_a_heatmap_of_another_size():
    with pytest.raises(ValueError, match="does not match"):
        overlay_pixels(np.zeros((8, 8)), np.zeros((4, 4)))


def test_overlay_png_enlarges_small_images():
    png = overlay_png(np.zeros((28, 28)), np.ones((28, 28)), title="Grad-CAM", caption="class 3")
    width, height = png_size(png)
    assert width >= 3 * 224 and height >= 224
    assert Image.open(io.BytesIO(png)).format == "PNG"


def _render(renderable, *, width=120):
    console = Console(record=True, width=width, color_system="truecolor")
    console.print(renderable)
    return console


@pytest.mark.parametrize("height", [6, 7])
def test_terminal_picture_draws_two_pixel_rows_per_line(height):
    pixels = np.zeros((height, 10, 3), dtype=np.uint8)
    pixels[0] = (255, 0, 0)  # upper row of the first line
    pixels[1] = (0, 0, 255)  # lower row of the first line
    console = _render(terminal_picture(pixels))
    lines = console.export_text().splitlines()
    assert len(lines) == math.ceil(height / 2)
    assert all(line == "▀" * 10 for line in lines)
    first = next(segment for segment in console.render(terminal_picture(pixels)) if segment.text == "▀")
    assert first.style.color.triplet == (255, 0, 0)
    assert first.style.bgcolor.triplet == (0, 0, 255)


def test_terminal_picture_shrinks_to_max_width():
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    lines = _render(terminal_picture(pixels, max_width=60)).export_text().splitlines()
    assert max(len(line) for line in lines) == 60
    assert len(lines) == math.ceil(round(100 * 60 / 300) / 2)  # proportions kept


def test_terminal_picture_wants_uint8_pixels():
    with pytest.raises(ValueError, match="uint8"):
        terminal_picture(np.zeros((4, 4, 3)))


def test_terminal_picture_of_a_grid():
    pixels = grid_pixels(_grid(4), cell=10)
    lines = _render(terminal_picture(pixels, max_width=80)).export_text().splitlines()
    assert len(lines) == math.ceil(pixels.shape[0] / 2) and len(lines[0]) == pixels.shape[1]


def test_png_data_uri_round_trips():
    png = grid_png(_grid(2))
    prefix, encoded = png_data_uri(png).split(",", 1)
    assert prefix == "data:image/png;base64"
    assert base64.b64decode(encoded) == png


def test_png_size_rejects_other_bytes():
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(30))
