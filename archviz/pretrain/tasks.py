"""The inputs and labels of the pretext tasks of `archviz pretrain` built from a batch of images: pure tensor
functions, one group per task. The contrastive and clustering tasks (simclr, instdisc, deepcluster) are in
contrastive.py.

Images arrive as float tensors (N, C, H, W), C = 1 or 3, normalised, on any device; colorization alone takes
0..1 RGB. Every random choice draws from the `generator` it is given, on the CPU, and the draws then move to the
images' device, so that a run draws the same numbers on any device (as archviz.train.batches does); jigsaw's
permutations come from a seed.

Sources:
- rotation: Gidaris, Singh, Komodakis, "Unsupervised Representation Learning by Predicting Image Rotations",
  ICLR 2018 (RotNet).
- jigsaw: Noroozi, Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles", ECCV 2016.
- context: Doersch, Gupta, Efros, "Unsupervised Visual Representation Learning by Context Prediction", ICCV 2015.
- colorization: Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016; CIE L*a*b* from CIE 15:2004 and
  sRGB from IEC 61966-2-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archviz.errors import ArchvizError
from archviz.pretrain.choices import Task  # noqa: F401  (where the tasks' code and tests look for it)


ROTATION_CLASSES = 4  # 0, 90, 180 and 270 degrees
JIGSAW_CANDIDATES = 4000  # random permutations the greedy choice picks from; the paper searches all 9! = 362880
AB_RANGE = 110.0  # |a|, |b| of every sRGB colour stays below this (Zhang et al. quantise -110..110)
GAMUT_SAMPLES = 32  # per sRGB axis: 32^3 colours mark the ab cells the gamut reaches
CHUNK = 8192  # rows compared with the bins at a time, so that the distance matrix stays small


# --- rotation (Gidaris et al. 2018) ---

def rotations(images):
    """Every image at 0, 90, 180 and 270 degrees: ((4N, C, H, W), labels (4N,) int64), rotation-major.

    Row k * N + i is image i turned k quarter turns counter-clockwise (torch.rot90 over dims (-2, -1)), label k:
    the first N rows are the images as they are. The images must be square so that the four fit in one batch.

    >>> import torch
    >>> x, labels = rotations(torch.zeros(2, 1, 8, 8))
    >>> tuple(x.shape), labels.tolist()
    ((8, 1, 8, 8), [0, 0, 1, 1, 2, 2, 3, 3])
    """
    import torch

    height, width = images.shape[-2:]
    if height != width:
        raise ArchvizError(f"rotation pretraining needs square images, got {height}x{width}: a turned image "
                           f"would not have the model's input size")
    turned = torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(ROTATION_CLASSES)])
    labels = torch.arange(ROTATION_CLASSES, device=images.device).repeat_interleave(images.shape[0])
    return turned, labels


def rotate_back(images, labels):
    """The inverse of rotations(): each image turned back -labels[i] quarter turns; any order of rows."""
    import torch

    upright = torch.empty_like(images)
    for k in range(ROTATION_CLASSES):
        rows = labels == k
        upright[rows] = torch.rot90(images[rows], -k, dims=(-2, -1))
    return upright


# --- the 3x3 grid shared by jigsaw and context ---

@dataclass(frozen=True)
class Grid:
    """A 3x3 grid of square cells, centred in the image; the rest of the border is left out."""

    cell: int  # pixels per side: min(H // 3, W // 3)
    top: int
    left: int

    def corner(self, row, col):
        """Top-left pixel (row, col) of cell (row, col); works on ints and on tensors alike."""
        return self.top + row * self.cell, self.left + col * self.cell


def grid_of(height: int, width: int) -> Grid:
    cell = min(height // 3, width // 3)
    if cell < 1:
        raise ArchvizError(f"a 3x3 grid of patches needs images of at least 3x3 pixels, got {height}x{width}")
    return Grid(cell, (height - 3 * cell) // 2, (width - 3 * cell) // 2)


def default_gap(cell: int) -> int:
    """About an eighth of the cell, at least 1 pixel once the cell has 8: 1 for 32x32 images (cells of 10)."""
    return max(1, cell // 8) if cell >= 8 else 0


def cut_patches(images, rows, cols, size: int):
    """Square patches (N, K, C, size, size) with top-left corners rows, cols (N, K) on the images' device."""
    import torch

    offsets = torch.arange(size, device=images.device)
    pixel_rows = (rows[..., None] + offsets)[..., :, None]  # (N, K, size, 1)
    pixel_cols = (cols[..., None] + offsets)[..., None, :]  # (N, K, 1, size)
    batch = torch.arange(images.shape[0], device=images.device)[:, None, None, None]
    patches = images[batch, :, pixel_rows, pixel_cols]  # (N, K, size, size, C): the channel slice goes last
    return patches.permute(0, 1, 4, 2, 3)


# --- jigsaw (Noroozi & Favaro 2016) ---

def jigsaw_permutations(count: int, *, seed: int = 0, candidates: int = JIGSAW_CANDIDATES):
    """`count` permutations of the 9 tiles, far apart in Hamming distance: (count, 9) int64, the same for a seed.

    The paper's algorithm 1, greedy: start with a random permutation, then repeatedly add the candidate whose
    minimum Hamming distance to those chosen is largest (ties: the largest sum of distances). The paper scores
    candidates by the sum (1^T D), which can pick two permutations one swap apart; the minimum cannot. The
    candidates are max(candidates, 2 * count) random permutations drawn from numpy's generator of the seed
    rather than all 9!. 1000 permutations (the paper's largest set) reach a minimum distance of 4, mean 8.

    >>> permutations = jigsaw_permutations(4)
    >>> tuple(permutations.shape), sorted(permutations[0].tolist()) == list(range(9))
    ((4, 9), True)
    """
    import numpy as np
    import torch

    if not 1 <= count <= math.factorial(9):
        raise ArchvizError(f"jigsaw needs between 1 and 9! = {math.factorial(9)} permutations, got {count!r}")
    rng = np.random.default_rng(seed)  # numpy: torch's thread pool made these many small steps ~50x slower
    drawn = min(max(candidates, 2 * count), math.factorial(9))
    pool = np.unique(rng.random((drawn, 9)).argsort(axis=1), axis=0)  # (M, 9), sorted rows
    while len(pool) < count:  # only when count is near 9!: top up until enough distinct ones
        pool = np.unique(np.concatenate([pool, rng.random((drawn, 9)).argsort(axis=1)]), axis=0)
    columns = np.ascontiguousarray(pool.T)  # (9, M)
    chosen = [int(rng.integers(len(pool)))]
    closest = (columns != pool[chosen[0], :, None]).sum(axis=0)  # (M,) minimum Hamming distance to the chosen
    total = closest.copy()
    taken = np.zeros(len(pool), dtype=bool)
    taken[chosen[0]] = True
    for _ in range(count - 1):
        score = np.where(taken, -1, closest * (9 * len(chosen) + 1) + total)  # the minimum first, the sum for ties
        pick = int(score.argmax())
        chosen.append(pick)
        taken[pick] = True
        distance = (columns != pool[pick, :, None]).sum(axis=0)
        closest = np.minimum(closest, distance)
        total += distance
    return torch.from_numpy(pool[chosen].astype(np.int64))


def jigsaw_tiles(images, permutations, *, generator, tile: int | None = None, gap: int | None = None):
    """The images as 3x3 puzzles: (tiles (N, 9, C, t, t) in shuffled order, labels (N,) int64 on the images' device).

    Each image is cut into a centred 3x3 grid of square cells (side min(H, W) // 3); from each cell a tile of
    side t = cell - gap is taken at a random offset (per image, per cell), the paper's random gap, so that the
    tiles' edges do not show which ones touch. gap defaults to default_gap(cell): tiles of 9 pixels for 32x32
    images. Each image is shuffled by permutations[label] with a label drawn uniformly:
    tiles[n, i] is cell permutations[labels[n]][i] in reading order; unshuffle() undoes it.

    >>> import torch
    >>> tiles, labels = jigsaw_tiles(torch.zeros(2, 3, 32, 32), jigsaw_permutations(10),
    ...                              generator=torch.Generator().manual_seed(0))
    >>> tuple(tiles.shape), tuple(labels.shape)
    ((2, 9, 3, 9, 9), (2,))
    """
    import torch

    count = images.shape[0]
    grid = grid_of(*images.shape[-2:])
    tile = grid.cell - (default_gap(grid.cell) if gap is None else gap) if tile is None else tile
    if not 1 <= tile <= grid.cell:
        raise ArchvizError(f"jigsaw tiles must be 1 to {grid.cell} pixels (the cell of a 3x3 grid of "
                           f"{images.shape[-2]}x{images.shape[-1]} images), got {tile!r}")
    slack = grid.cell - tile + 1
    offsets = torch.randint(slack, (count, 9, 2), generator=generator)  # (N, 9, row/col) inside each cell
    labels = torch.randint(len(permutations), (count,), generator=generator)
    cells = torch.arange(9)
    rows, cols = grid.corner(cells // 3, cells % 3)  # (9,) each
    grid_tiles = cut_patches(images, (rows + offsets[..., 0]).to(images.device),
                             (cols + offsets[..., 1]).to(images.device), tile)  # (N, 9, C, t, t) in grid order
    order = permutations.to(images.device)[labels.to(images.device)]  # (N, 9): the cell shown at each position
    batch = torch.arange(count, device=images.device)[:, None]
    return grid_tiles[batch, order], labels.to(images.device)


def unshuffle(tiles, permutations, labels):
    """Tiles (N, 9, ...) from jigsaw_tiles() back in grid order: the inverse permutation of each image's label."""
    import torch

    order = permutations.to(tiles.device)[labels.to(tiles.device)]  # (N, 9)
    position = order.argsort(dim=1)  # position[n, cell]: where that cell was put
    batch = torch.arange(tiles.shape[0], device=tiles.device)[:, None]
    return tiles[batch, position]


# --- context prediction (Doersch et al. 2015) ---

CONTEXT_POSITIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))  # (row, col), reading order


@dataclass(frozen=True)
class ContextPairs:
    """A centre patch, one of its 8 neighbours, which one it is, and where both were taken (top-left pixels)."""

    centre: object  # (N, C, p, p)
    neighbour: object  # (N, C, p, p)
    labels: object  # (N,) int64: an index into CONTEXT_POSITIONS
    centre_corners: object  # (N, 2) int64 (row, col)
    neighbour_corners: object  # (N, 2) int64 (row, col)


def context_pairs(images, *, generator, patch: int | None = None, gap: int | None = None,
                  jitter: int | None = None) -> ContextPairs:
    """Pairs of patches for context prediction: the centre cell's patch and a random neighbour's, label 0..7.

    The image is cut into a centred 3x3 grid of square cells; each patch (side p = cell - gap, gap defaulting to
    2 * default_gap(cell): 8 pixels for 32x32 images) sits in the middle of its cell, moved by up to `jitter`
    pixels (default (cell - p) // 2) each way, drawn per patch: the paper's gap and jitter, so that lines running
    across the boundary do not give the answer away. The label k is uniform over 0..7 and the neighbour comes
    from the cell at CONTEXT_POSITIONS[k] from the centre. The paper's chromatic-aberration remedy (projecting out
    green-magenta, or dropping colour) is left out: small images rarely show it.

    >>> import torch
    >>> pairs = context_pairs(torch.zeros(2, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    >>> tuple(pairs.centre.shape), tuple(pairs.neighbour.shape), tuple(pairs.labels.shape)
    ((2, 1, 8, 8), (2, 1, 8, 8), (2,))
    """
    import torch

    count = images.shape[0]
    grid = grid_of(*images.shape[-2:])
    patch = grid.cell - (2 * default_gap(grid.cell) if gap is None else gap) if patch is None else patch
    if not 1 <= patch <= grid.cell:
        raise ArchvizError(f"context patches must be 1 to {grid.cell} pixels (the cell of a 3x3 grid of "
                           f"{images.shape[-2]}x{images.shape[-1]} images), got {patch!r}")
    centred = (grid.cell - patch) // 2
    jitter = centred if jitter is None else jitter
    if not 0 <= jitter <= centred:
        raise ArchvizError(f"context jitter must be 0 to {centred} pixels so that a {patch}-pixel patch stays in "
                           f"its {grid.cell}-pixel cell, got {jitter!r}")
    labels = torch.randint(len(CONTEXT_POSITIONS), (count,), generator=generator)
    shifts = torch.randint(-jitter, jitter + 1, (count, 2, 2), generator=generator)  # (N, centre/neighbour, row/col)
    steps = torch.tensor(CONTEXT_POSITIONS)[labels]  # (N, 2)
    cells = torch.stack([torch.ones_like(steps), 1 + steps], dim=1)  # (N, 2, 2): (row, col) of each patch's cell
    corners = torch.stack(grid.corner(cells[..., 0], cells[..., 1]), dim=-1) + centred + shifts  # (N, 2, 2)
    device_corners = corners.to(images.device)
    patches = cut_patches(images, device_corners[..., 0], device_corners[..., 1], patch)  # (N, 2, C, p, p)
    return ContextPairs(centre=patches[:, 0], neighbour=patches[:, 1], labels=labels.to(images.device),
                        centre_corners=device_corners[:, 0], neighbour_corners=device_corners[:, 1])


# --- colorization (Zhang et al. 2016) ---

SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))  # linear sRGB -> CIE XYZ, D65 white
D65_WHITE = (0.95047, 1.0, 1.08883)  # the reference white's X, Y, Z


def require_colour(channels: int) -> None:
    """Colorization needs colour images: raise for a grayscale dataset."""
    if channels != 3:
        raise ArchvizError("colorization predicts colour from lightness: the images are grayscale "
                           f"({channels} channel{'s' if channels != 1 else ''}): use a colour dataset "
                           "(cifar10:PATH, folder:PATH with colour photos) and a model that takes 3 channels "
                           "(a folder's photos are decoded at the model's channels)")


def rgb_to_lab(rgb):
    """sRGB (N, 3, H, W) in 0..1 -> CIE L*a*b* (N, 3, H, W): L in 0..100, a and b within about -110..110.

    Linearise (c / 12.92 up to 0.04045, else ((c + 0.055) / 1.055)^2.4), XYZ = SRGB_TO_XYZ @ rgb, divide by the
    D65 white, f(t) = t^(1/3) above (6/29)^3 else t / (3 (6/29)^2) + 4/29; L = 116 f(Y) - 16,
    a = 500 (f(X) - f(Y)), b = 200 (f(Y) - f(Z)). Values outside 0..1 are clipped first.

    >>> import torch
    >>> [round(v, 2) for v in rgb_to_lab(torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)).flatten().tolist()]
    [53.24, 80.09, 67.2]
    """
    import torch

    rgb = rgb.float().clamp(0, 1)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(SRGB_TO_XYZ, device=rgb.device) / torch.tensor(D65_WHITE, device=rgb.device)[:, None]
    xyz = torch.einsum("ij,njhw->nihw", matrix, linear)  # (N, 3, H, W) relative to the white
    delta = 6 / 29
    f = torch.where(xyz > delta ** 3, xyz.clamp(min=delta ** 3) ** (1 / 3), xyz / (3 * delta ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(dim=1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def ab_bins(*, grid: int = 10):
    """The centres (Q, 2) of the `grid`-wide ab squares over -110..110 that some sRGB colour reaches.

    GAMUT_SAMPLES^3 colours spread over the sRGB cube are converted and the cells they land in kept, in (a, b)
    order. grid 10 gives 261 bins (the paper's 313 come from a wider gamut than sRGB).

    >>> len(ab_bins())
    261
    """
    import torch

    side = math.ceil(2 * AB_RANGE / grid)
    levels = torch.linspace(0, 1, GAMUT_SAMPLES)
    cube = torch.cartesian_prod(levels, levels, levels).T.reshape(1, 3, -1, 1)  # every colour as one pixel
    ab = rgb_to_lab(cube)[0, 1:, :, 0].T  # (S, 2)
    cells = ((ab + AB_RANGE) // grid).long().clamp(0, side - 1)
    hit = torch.zeros(side, side, dtype=torch.bool)
    hit[cells[:, 0], cells[:, 1]] = True
    centres = -AB_RANGE + (torch.arange(side, dtype=torch.float32) + 0.5) * grid
    a_index, b_index = hit.nonzero(as_tuple=True)
    return torch.stack([centres[a_index], centres[b_index]], dim=1)


def nearest(points, centres):
    """The index (M,) int64 of the closest of centres (Q, D) to each of points (M, D), CHUNK rows at a time."""
    import torch

    if len(points) == 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    return torch.cat([torch.cdist(part, centres).argmin(dim=1) for part in points.split(CHUNK)])


def colour_targets(lab, bins, *, size: tuple[int, int]):
    """The colour class (N, h, w) int64 of each cell of an h x w grid: its mean ab, then the nearest bin.

    size is the output's (feature map's) size; the ab channels are averaged over each cell by adaptive average
    pooling. Hard targets for a cross-entropy: the paper's soft encoding (the 5 nearest bins, Gaussian weights,
    sigma 5) and its class rebalancing are left out.
    """
    import torch.nn.functional as F

    ab = F.adaptive_avg_pool2d(lab[:, 1:].float(), size)  # (N, 2, h, w)
    count, _, height, width = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)  # (N * h * w, 2)
    return nearest(flat, bins.to(ab.device, ab.dtype)).view(count, height, width)


def lightness_input(rgb, *, channels: int):
    """The network's input: L / 100 (0..1) of sRGB images (N, 3, H, W), repeated to (N, channels, H, W)."""
    lightness = rgb_to_lab(rgb)[:, :1] / 100  # (N, 1, H, W)
    return lightness.expand(-1, channels, -1, -1).contiguous()


def colorization_batch(rgb, bins, *, channels: int, size: tuple[int, int]):
    """(lightness_input, colour_targets) of sRGB images in 0..1, converting them to Lab once."""
    lab = rgb_to_lab(rgb)
    return (lab[:, :1] / 100).expand(-1, channels, -1, -1).contiguous(), colour_targets(lab, bins, size=size)
