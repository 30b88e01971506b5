"""The pretext tasks of `archviz pretrain` (archviz.pretrain.tasks and .contrastive), each checked against an
independent oracle: images whose pixels encode their grid cell or position, torch.rot90, published CIE Lab values,
and loop implementations of the losses."""

from __future__ import annotations

import io
import math

import pytest

torch = pytest.importorskip("torch")

from archviz.errors import ArchvizError  # noqa: E402
from archviz.pretrain.contrastive import (MemoryBank, balanced_sampling_weights, kmeans, nt_xent,  # noqa: E402
                                          simclr_views)
from archviz.pretrain.tasks import (CONTEXT_POSITIONS, ab_bins, colorization_batch, colour_targets,  # noqa: E402
                                    context_pairs, jigsaw_permutations, jigsaw_tiles, lightness_input,
                                    require_colour, rgb_to_lab, rotate_back, rotations, unshuffle)

SHAPES = [(4, 1, 32, 32), (4, 3, 33, 33)]


def generator(seed: int = 0):
    return torch.Generator().manual_seed(seed)


def cell_image(shape):
    """Images whose pixels hold the index 3 * row + col of their cell of the centred 3x3 grid of square cells of
    side min(H, W) // 3, and -1 outside the grid."""
    count, channels, height, width = shape
    cell = min(height, width) // 3
    top, left = (height - 3 * cell) // 2, (width - 3 * cell) // 2
    rows = (torch.arange(height) - top).div(cell, rounding_mode="floor")
    cols = (torch.arange(width) - left).div(cell, rounding_mode="floor")
    inside = ((rows >= 0) & (rows < 3))[:, None] & ((cols >= 0) & (cols < 3))[None, :]
    index = torch.where(inside, 3 * rows[:, None] + cols[None, :], -1).float()
    return index.expand(count, channels, height, width).clone()


def position_image(shape):
    """Images whose pixels hold y * W + x."""
    count, channels, height, width = shape
    return torch.arange(height * width, dtype=torch.float32).view(height, width).expand(shape).clone()


def min_hamming(permutations):
    distance = (permutations[:, None] != permutations[None]).sum(dim=-1)
    return int(distance.masked_fill(torch.eye(len(permutations), dtype=torch.bool), 9).min())


# --- rotation ---

@pytest.mark.parametrize("shape", SHAPES)
def test_a_rotated_image_rotated_back_equals_the_original(shape):
    images = torch.rand(shape, generator=generator())
    turned, labels = rotations(images)
    assert torch.equal(rotate_back(turned, labels)[:shape[0]], images)
    assert torch.equal(rotate_back(turned, labels).view(4, *shape), images.expand(4, *shape))
    order = torch.randperm(len(labels), generator=generator(1))  # any order of rows
    assert torch.equal(rotate_back(turned[order], labels[order]), images.repeat(4, 1, 1, 1)[order])


@pytest.mark.parametrize("shape", SHAPES)
def test_rotations_are_rotation_major_quarter_turns(shape):
    count = shape[0]
    images = torch.rand(shape, generator=generator())
    turned, labels = rotations(images)
    assert turned.shape == (4 * count, *shape[1:]) and labels.dtype == torch.int64
    assert labels.tolist() == [k for k in range(4) for _ in range(count)]
    for k in range(4):
        expected = images
        for _ in range(k):
            expected = torch.rot90(expected, 1, dims=(-2, -1))
        assert torch.equal(turned[k * count:(k + 1) * count], expected)


def test_a_quarter_turn_is_counter_clockwise():
    turned, _ = rotations(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2))
    assert turned[1, 0].tolist() == [[2.0, 4.0], [1.0, 3.0]]  # the top-right corner moves to the top-left


def test_rotation_needs_square_images():
    with pytest.raises(ArchvizError, match="square"):
        rotations(torch.zeros(1, 1, 32, 28))


# --- jigsaw ---

def test_jigsaw_permutations_are_distinct_permutations_fixed_by_the_seed():
    permutations = jigsaw_permutations(30, seed=3)
    assert permutations.shape == (30, 9) and permutations.dtype == torch.int64
    assert all(sorted(row) == list(range(9)) for row in permutations.tolist())
    assert len(torch.unique(permutations, dim=0)) == 30
    assert torch.equal(permutations, jigsaw_permutations(30, seed=3))
    assert not torch.equal(permutations, jigsaw_permutations(30, seed=4))
    assert torch.equal(jigsaw_permutations(10, seed=3), permutations[:10])  # greedy: a prefix of a longer set


def test_jigsaw_permutations_are_further_apart_than_random_ones():
    chosen = jigsaw_permutations(30)
    random = torch.stack([torch.randperm(9, generator=generator(seed)) for seed in range(30)])
    assert min_hamming(chosen) >= min_hamming(random)
    assert min_hamming(chosen) >= 6


def test_jigsaw_permutations_reject_a_bad_count():
    with pytest.raises(ArchvizError, match="permutations"):
        jigsaw_permutations(0)


@pytest.mark.parametrize("shape, tile", [((4, 1, 32, 32), 9), ((4, 3, 33, 33), 10)])
def test_jigsaw_tiles_come_from_the_shuffled_cells(shape, tile):
    permutations = jigsaw_permutations(10)
    tiles, labels = jigsaw_tiles(cell_image(shape), permutations, generator=generator())
    assert tiles.shape == (shape[0], 9, shape[1], tile, tile) and labels.dtype == torch.int64
    for n in range(shape[0]):
        for position in range(9):
            assert (tiles[n, position] == permutations[labels[n], position]).all()


def test_a_jigsaw_permutation_applied_then_inverted_is_the_identity():
    permutations = jigsaw_permutations(10)
    tiles, labels = jigsaw_tiles(cell_image((6, 1, 32, 32)), permutations, generator=generator())
    in_order = unshuffle(tiles, permutations, labels)
    for position in range(9):
        assert (in_order[:, position] == position).all()
    grid = torch.rand(6, 9, 2, 4, 4, generator=generator())
    labels = torch.randint(10, (6,), generator=generator())
    shuffled = torch.stack([grid[n, permutations[labels[n]]] for n in range(6)])
    assert torch.equal(unshuffle(shuffled, permutations, labels), grid)


def test_jigsaw_tiles_start_at_random_offsets_inside_their_cells():
    shape = (50, 1, 32, 32)  # cells of 10 pixels from pixel 1, tiles of 9: offsets 0 or 1 each way
    tiles, _ = jigsaw_tiles(position_image(shape), jigsaw_permutations(4), generator=generator(), tile=9)
    corner = tiles[:, :, 0, 0, 0].long()  # (N, 9): y * 32 + x of each tile's top-left pixel
    offsets = torch.stack([(corner // 32 - 1) % 10, (corner % 32 - 1) % 10], dim=-1)
    assert set(offsets.flatten().tolist()) == {0, 1}


def test_jigsaw_tiles_are_fixed_by_the_generator():
    images, permutations = torch.rand(4, 3, 33, 33, generator=generator()), jigsaw_permutations(10)
    first = jigsaw_tiles(images, permutations, generator=generator(5))
    second = jigsaw_tiles(images, permutations, generator=generator(5))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_jigsaw_tiles_reject_a_tile_larger_than_the_cell():
    with pytest.raises(ArchvizError, match="1 to 10 pixels"):
        jigsaw_tiles(torch.zeros(1, 1, 32, 32), jigsaw_permutations(2), generator=generator(), tile=11)


# --- context prediction ---

@pytest.mark.parametrize("shape", SHAPES)
def test_context_patches_come_from_the_centre_and_the_labelled_neighbour(shape):
    pairs = context_pairs(cell_image((64, *shape[1:])), generator=generator())
    assert (pairs.centre == 4).all()
    for n, label in enumerate(pairs.labels.tolist()):
        row, col = CONTEXT_POSITIONS[label]
        assert (pairs.neighbour[n] == 3 * (1 + row) + (1 + col)).all()


def test_context_labels_match_the_patch_positions():
    shape = (200, 1, 32, 32)
    pairs = context_pairs(position_image(shape), generator=generator())
    assert sorted(set(pairs.labels.tolist())) == list(range(8))
    steps = torch.tensor(CONTEXT_POSITIONS)[pairs.labels]  # (N, 2)
    displacement = pairs.neighbour_corners - pairs.centre_corners  # cells of 10 pixels, jitter up to 1 each
    assert torch.equal(torch.where(displacement.abs() > 2, displacement.sign(), 0), steps)
    assert ((displacement.abs() >= 8) == (steps != 0)).all()  # neighbours never overlap the centre patch
    for patch, corners in ((pairs.centre, pairs.centre_corners), (pairs.neighbour, pairs.neighbour_corners)):
        assert torch.equal(patch[:, 0, 0, 0].long(), corners[:, 0] * 32 + corners[:, 1])
    assert pairs.centre.shape == (200, 1, 8, 8)  # cells of 10, a gap of 2
    assert set(pairs.centre_corners.flatten().tolist()) == {11, 12, 13}  # cell at 11, centred at +1, jitter 1


def test_context_pairs_are_fixed_by_the_generator():
    images = torch.rand(4, 3, 33, 33, generator=generator())
    first, second = (context_pairs(images, generator=generator(7)) for _ in range(2))
    assert torch.equal(first.centre, second.centre) and torch.equal(first.neighbour, second.neighbour)
    assert torch.equal(first.labels, second.labels)


def test_context_jitter_must_keep_the_patch_in_its_cell():
    with pytest.raises(ArchvizError, match="jitter"):
        context_pairs(torch.zeros(1, 1, 32, 32), generator=generator(), patch=8, jitter=2)


# --- colorization ---

@pytest.mark.parametrize("rgb, lab", [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),
    ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
    ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
])
def test_rgb_to_lab_gives_the_published_values(rgb, lab):
    value = rgb_to_lab(torch.tensor(rgb).view(1, 3, 1, 1)).flatten()
    assert value.tolist() == pytest.approx(lab, abs=0.01)


def test_ab_bins_cover_the_srgb_gamut_on_the_grid():
    bins = ab_bins()
    assert 100 <= len(bins) <= 400 and bins.shape[1] == 2
    assert bins.abs().max() < 110 and torch.equal(bins, ab_bins())
    assert ((bins + 110) % 10 == 5).all()  # cell centres
    levels = torch.rand(3, 4096, generator=generator()).view(1, 3, 64, 64)
    ab = rgb_to_lab(levels)[0, 1:].reshape(2, -1).T
    assert torch.cdist(ab, bins).min(dim=1).values.max() <= 5 * math.sqrt(2) + 1e-4  # every colour is in a cell


def test_colour_targets_of_a_red_image_are_the_bin_nearest_red():
    bins = ab_bins()
    red = torch.zeros(2, 3, 16, 16)
    red[:, 0] = 1
    targets = colour_targets(rgb_to_lab(red), bins, size=(4, 4))
    expected = int(((bins - torch.tensor([80.09, 67.20])) ** 2).sum(dim=1).argmin())
    assert targets.shape == (2, 4, 4) and targets.dtype == torch.int64 and (targets == expected).all()


def test_colour_targets_average_each_cell_before_quantising():
    bins = ab_bins()
    lab = torch.zeros(1, 3, 2, 2)
    lab[0, 1] = torch.tensor([[40.0, 20.0], [-10.0, -10.0]])  # a: mean 10
    lab[0, 2] = torch.tensor([[0.0, 20.0], [20.0, 0.0]])  # b: mean 10
    expected = int(((bins - torch.tensor([10.0, 10.0])) ** 2).sum(dim=1).argmin())
    assert colour_targets(lab, bins, size=(1, 1)).tolist() == [[[expected]]]


@pytest.mark.parametrize("channels", [1, 3])
def test_lightness_of_gray_is_its_L(channels):
    gray = torch.full((2, 3, 4, 4), 0.5)
    linear = ((0.5 + 0.055) / 1.055) ** 2.4  # sRGB decoding; Y of a gray is its linear value
    lightness = (116 * linear ** (1 / 3) - 16) / 100
    value = lightness_input(gray, channels=channels)
    assert value.shape == (2, channels, 4, 4)
    assert value.flatten().tolist() == pytest.approx([lightness] * value.numel(), abs=1e-5)


def test_colorization_batch_is_the_input_and_the_targets():
    rgb, bins = torch.rand(2, 3, 8, 8, generator=generator()), ab_bins()
    inputs, targets = colorization_batch(rgb, bins, channels=3, size=(2, 2))
    assert torch.equal(inputs, lightness_input(rgb, channels=3))
    assert torch.equal(targets, colour_targets(rgb_to_lab(rgb), bins, size=(2, 2)))


def test_colorization_refuses_grayscale_datasets():
    with pytest.raises(ArchvizError, match="grayscale"):
        require_colour(1)
    require_colour(3)


# --- SimCLR ---

@pytest.mark.parametrize("shape", SHAPES)
def test_simclr_views_are_two_different_views(shape):
    images = torch.rand(shape, generator=generator())
    one, two = simclr_views(images, generator=generator())
    assert one.shape == two.shape == images.shape
    assert all((one[n] - two[n]).abs().max() > 1e-3 for n in range(shape[0]))
    again = simclr_views(images, generator=generator())
    assert torch.equal(one, again[0]) and torch.equal(two, again[1])


@pytest.mark.parametrize("shape", SHAPES)
def test_simclr_views_without_crop_jitter_or_flip_are_the_image(shape):
    images = torch.rand(shape, generator=generator())
    for seed in range(5):
        for view in simclr_views(images, generator=generator(seed), crop_scale=(1.0, 1.0), flip=False, jitter=0.0,
                                 gray_probability=0.0):
            assert torch.allclose(view, images, atol=1e-5)


def test_simclr_flip_mirrors_about_half_the_views():
    images = torch.rand(32, 1, 8, 8, generator=generator())
    one, two = simclr_views(images, generator=generator(), crop_scale=(1.0, 1.0), jitter=0.0)
    mirrored = [torch.allclose(view[n], images[n].flip(-1), atol=1e-5) for view in (one, two) for n in range(32)]
    same = [torch.allclose(view[n], images[n], atol=1e-5) for view in (one, two) for n in range(32)]
    assert all(m != s for m, s in zip(mirrored, same))
    assert 16 <= sum(mirrored) <= 48


def test_simclr_gray_views_have_equal_channels():
    one, _ = simclr_views(torch.rand(4, 3, 8, 8, generator=generator()), generator=generator(), gray_probability=1.0)
    assert torch.allclose(one[:, 0], one[:, 1]) and torch.allclose(one[:, 1], one[:, 2])


def nt_xent_loop(z1, z2, temperature):
    """Chen et al. 2020 eq. 1 written out: l(i, j) for every ordered positive pair, averaged."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    count = len(z)
    total = 0.0
    for i in range(count):
        j = (i + count // 2) % count
        similarity = [float(z[i] @ z[k]) / temperature for k in range(count)]
        denominator = sum(math.exp(similarity[k]) for k in range(count) if k != i)
        total += -math.log(math.exp(similarity[j]) / denominator)
    return total / count


@pytest.mark.parametrize("temperature", [0.5, 0.2])
def test_nt_xent_equals_the_loop_implementation(temperature):
    z1, z2 = torch.randn(2, 3, 5, generator=generator()).double().unbind()
    assert float(nt_xent(z1, z2, temperature=temperature)) == pytest.approx(nt_xent_loop(z1, z2, temperature),
                                                                             rel=1e-5)


def test_nt_xent_is_lower_for_aligned_views():
    z1 = torch.randn(16, 8, generator=generator())
    aligned = z1 + 0.05 * torch.randn(16, 8, generator=generator(1))
    assert nt_xent(z1, aligned) < nt_xent(z1, torch.randn(16, 8, generator=generator(2)))


# --- instance discrimination ---

def test_memory_bank_update_follows_the_momentum_formula_and_keeps_unit_rows():
    bank = MemoryBank.random(6, 4, generator=generator())
    assert torch.allclose(bank.features.norm(dim=1), torch.ones(6))
    before = bank.features.clone()
    z = torch.randn(2, 4, generator=generator(1))
    bank.update(torch.tensor([1, 4]), z)
    moved = 0.5 * before[[1, 4]] + 0.5 * z / z.norm(dim=1, keepdim=True)
    assert torch.allclose(bank.features[[1, 4]], moved / moved.norm(dim=1, keepdim=True))
    assert torch.allclose(bank.features.norm(dim=1), torch.ones(6))
    assert torch.equal(bank.features[[0, 2, 3, 5]], before[[0, 2, 3, 5]])


def test_memory_bank_logits_and_loss():
    bank = MemoryBank.random(6, 4, generator=generator())
    z = torch.randn(3, 4, generator=generator(1))
    logits = bank.logits(z)
    assert logits.shape == (3, 6)
    assert float(logits[2, 5]) == pytest.approx(float(z[2] @ bank.features[5] / z[2].norm() / 0.07), rel=1e-5)
    indices = torch.tensor([0, 3, 5])
    assert torch.allclose(bank.loss(z, indices), torch.nn.functional.cross_entropy(logits, indices))


def test_memory_bank_state_round_trips():
    bank = MemoryBank.random(6, 4, generator=generator(), momentum=0.3)
    bank.update(torch.tensor([2]), torch.randn(1, 4, generator=generator(1)))
    buffer = io.BytesIO()
    torch.save(bank.state_dict(), buffer)
    buffer.seek(0)
    resumed = MemoryBank.random(6, 4, generator=generator(9))
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(resumed.features, bank.features)
    assert (resumed.momentum, resumed.temperature) == (0.3, 0.07)
    with pytest.raises(ArchvizError, match="memory bank"):
        MemoryBank.random(5, 4, generator=generator()).load_state_dict(bank.state_dict())


# --- DeepCluster ---

def blobs(per_blob: int = 20):
    directions = torch.eye(8)[:3] * 5  # well apart in angle, as k-means sees rows after L2 normalisation
    noise = 0.2 * torch.randn(3, per_blob, 8, generator=generator())
    return (directions[:, None] + noise).reshape(-1, 8)


def test_kmeans_finds_well_separated_blobs():
    labels, centroids = kmeans(blobs(), 3, generator=generator())
    groups = labels.view(3, -1)
    assert all(len(set(group.tolist())) == 1 for group in groups)
    assert len(set(groups[:, 0].tolist())) == 3
    assert centroids.shape == (3, 8)


def test_kmeans_centroids_are_the_means_of_their_clusters():
    features = torch.randn(40, 5, generator=generator())
    labels, centroids = kmeans(features, 4, generator=generator())
    rows = torch.nn.functional.normalize(features, dim=1)
    for cluster in range(4):
        assert torch.allclose(centroids[cluster], rows[labels == cluster].mean(dim=0), atol=1e-6)


def test_kmeans_leaves_no_cluster_empty_even_on_duplicates():
    features = torch.eye(3).repeat(4, 1)  # 3 distinct points, 4 times each
    labels, _ = kmeans(features, 5, generator=generator())
    assert sorted(set(labels.tolist())) == list(range(5))
    for row in range(3):  # a split cluster holds copies of one point only
        assert len(set(labels[row::3].tolist()) & set(labels[[r for r in range(12) if r % 3 != row]].tolist())) == 0


def test_kmeans_is_fixed_by_the_generator():
    features = torch.randn(50, 6, generator=generator())
    first, second = (kmeans(features, 5, generator=generator(3)) for _ in range(2))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_kmeans_needs_as_many_images_as_clusters():
    with pytest.raises(ArchvizError, match="clusters"):
        kmeans(torch.randn(3, 2), 4, generator=generator())


def test_balanced_weights_draw_each_cluster_equally():
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 0])
    weights = balanced_sampling_weights(labels, 4)  # cluster 3 is empty
    sums = torch.zeros(4).index_add_(0, labels, weights)
    assert sums.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.0])
