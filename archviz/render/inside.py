"""Pictures of what a network learned, for the terminal or a PNG file: grids of filters and feature maps, and
class-activation maps over their input, with the lines that say what each shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archviz.inside.cam import Cam
    from archviz.inside.images import Input
    from archviz.inside.trained import Trained
    from archviz.render.pictures import Grid

TERMINAL_CELL = (4, 24)  # smallest and largest tile side, in pixels, drawn in the terminal (2 pixels per line)
TERMINAL_PICTURE_WIDTH = 64  # columns for a map over its input
GAP = 12  # pixels between pictures stacked into one PNG


def grids_png(grids: list[Grid]) -> bytes:
    """The grids' PNGs one under the other, in one PNG."""
    from archviz.render.pictures import grid_png

    return stack_pngs([grid_png(grid) for grid in grids])


def stack_pngs(pngs: list[bytes]) -> bytes:
    import io

    from PIL import Image

    if len(pngs) == 1:
        return pngs[0]
    pictures = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
    width = max(p.width for p in pictures)
    canvas = Image.new("RGB", (width, sum(p.height for p in pictures) + GAP * (len(pictures) - 1)), "white")
    top = 0
    for picture in pictures:
        canvas.paste(picture, (0, top))
        top += picture.height + GAP
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def print_grids(console, grids: list[Grid]) -> None:
    """Each grid's title and note, then its tiles drawn with half blocks."""
    import math

    from archviz.render.pictures import grid_pixels, terminal_picture

    for grid in grids:
        console.print(grid.title, highlight=False)
        if grid.note:
            console.print(f"  {grid.note}", style="dim", highlight=False)
        columns = grid.columns or math.ceil(math.sqrt(len(grid.tiles)))
        smallest, largest = TERMINAL_CELL
        side = max(max(tile.shape[:2]) for tile in grid.tiles)
        cell = max(smallest, min(largest, 2 * side, console.width // max(columns, 1) - 1))
        console.print(terminal_picture(grid_pixels(grid, cell=cell), max_width=console.width))
        if grid.scale_labels:
            low, middle, high = grid.scale_labels
            console.print(f"  scale: {grid.scale.value}, {low} .. {middle} .. {high}".replace(" ..  ..", " .."),
                          style="dim", highlight=False)


def prediction_lines(trained: Trained, top) -> list[str]:
    """'predicted: 7 (98.1%), then 1 (0.9%), 9 (0.4%)' from (class, probability) pairs."""
    (first, p), *rest = top
    others = ", ".join(f"{trained.classes[c]} ({q:.1%})" for c, q in rest)
    return [f"predicted: {trained.classes[first]} ({p:.1%})" + (f", then {others}" if others else "")]


def cam_lines(trained: Trained, image: Input, cam: Cam, *, layer_reason: str = "") -> list[str]:
    """What the map is: the input, the layer, the class and the prediction."""
    true = f"; true class {trained.dataset_classes[image.label]}" if image.label is not None else ""
    lines = [f"input: {image.source}", f"weights: {trained.weights}",
             f"layer: {cam.layer}{layer_reason} (map {'x'.join(map(str, cam.coarse.shape))}, upsampled to the input)",
             *prediction_lines(trained, cam.top),
             f"{cam.method.value} map for class {trained.classes[cam.target]} (probability {cam.probability:.1%})"
             f"{true}"]
    if cam.empty:
        lines.append(f"the map is zero everywhere: at {cam.layer} nothing raises the score of "
                     f"{trained.classes[cam.target]} (every weighted sum is negative before the ReLU)")
    return lines


def cam_png(trained: Trained, image: Input, cam: Cam) -> bytes:
    from archviz.render.pictures import overlay_png

    return overlay_png(image.picture, cam.heatmap,
                       title=f"{cam.method.value}: class {trained.classes[cam.target]} at {cam.layer}",
                       caption=f"{image.source}; p = {cam.probability:.1%}")


def print_cam(console, image: Input, cam: Cam) -> None:
    from archviz.render.pictures import overlay_pixels, terminal_picture

    pixels = overlay_pixels(image.picture, cam.heatmap)
    factor = max(1, TERMINAL_PICTURE_WIDTH // pixels.shape[1])  # a 32x32 input would be a 16-line smudge
    pixels = pixels.repeat(factor, axis=0).repeat(factor, axis=1)
    console.print(terminal_picture(pixels, max_width=min(console.width, TERMINAL_PICTURE_WIDTH)))
