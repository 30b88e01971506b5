"""The contrastive and clustering pretext tasks of `archviz pretrain`: SimCLR's views and loss, instance
discrimination's memory bank, DeepCluster's k-means and sampling weights. Pure tensor functions (and one bank of
state), apart from the image-cutting tasks of tasks.py.

Images arrive as float tensors (N, C, H, W), C = 1 or 3, normalised, on any device. Every random choice draws from
the `generator` it is given, on the CPU, and the draws then move to the data's device.

Sources:
- simclr: Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
  Representations", ICML 2020 (augmentations: appendix A; loss: eq. 1).
- instdisc: Wu, Xiong, Yu, Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
  CVPR 2018 (the non-parametric softmax, eq. 2; the memory bank's momentum, lemniscate.pytorch).
- deepcluster: Caron, Bojanowski, Joulin, Douze, "Deep Clustering for Unsupervised Learning of Visual Features",
  ECCV 2018 (section 3.3: empty clusters, uniform sampling over pseudo-labels); the split of an empty cluster as
  faiss's Clustering.cpp does it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archviz.errors import ArchvizError
from archviz.pretrain.tasks import nearest

ASPECT_RANGE = (3 / 4, 4 / 3)  # of the random crop's width / height, as SimCLR's RandomResizedCrop
VIEW_DRAWS = 10  # uniform numbers per image per view, whatever the options, so the stream does not depend on them


# --- SimCLR (Chen et al. 2020) ---

def simclr_views(images, *, generator, crop_scale: tuple[float, float] = (0.3, 1.0), flip: bool = True,
                 jitter: float = 0.4, jitter_probability: float = 0.8, gray_probability: float = 0.2):
    """Two random views (N, C, H, W) of each image, each drawn independently per image.

    Each view: a random crop of crop_scale of the area (aspect ratio log-uniform in 3/4..4/3, narrowed so the crop
    fits) resized back to H x W (affine_grid and grid_sample, bilinear); a horizontal mirror half of the time when
    flip (off for digits, which must not be mirrored); with probability jitter_probability a colour jitter of
    strength `jitter`: brightness as an additive shift of up to +-jitter (the images are normalised, so in units
    of the dataset's std), contrast as a factor 1 +- jitter around the image's mean and, for 3 channels,
    saturation as a factor 1 +- jitter around each pixel's channel mean, in that order; for 3 channels, gray (the
    channel mean) with gray_probability. The paper's hue jitter and Gaussian blur (ImageNet only) are left out.

    >>> import torch
    >>> one, two = simclr_views(torch.rand(2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    >>> tuple(one.shape), bool((one != two).any())
    ((2, 3, 16, 16), True)
    """
    import torch

    draws = torch.rand(2, images.shape[0], VIEW_DRAWS, generator=generator).to(images.device)
    options = dict(crop_scale=crop_scale, flip=flip, jitter=jitter, jitter_probability=jitter_probability,
                   gray_probability=gray_probability)
    return random_view(images, draws[0], **options), random_view(images, draws[1], **options)


def random_view(images, draws, *, crop_scale, flip, jitter, jitter_probability, gray_probability):
    """One view of each image from its VIEW_DRAWS uniform numbers draws (N, VIEW_DRAWS); see simclr_views()."""
    cropped = resized_crop(images, draws[:, :5], crop_scale=crop_scale, flip=flip)
    return colour_jitter(cropped, draws[:, 5:], jitter=jitter, jitter_probability=jitter_probability,
                         gray_probability=gray_probability)


def resized_crop(images, draws, *, crop_scale: tuple[float, float], flip: bool):
    """Random resized crops, mirrored when flip and draws[:, 4] < 0.5; draws (N, 5) uniform in 0..1."""
    import torch
    import torch.nn.functional as F

    area = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * draws[:, 0]  # fraction of the image
    low = torch.clamp(area.log(), min=math.log(ASPECT_RANGE[0]))  # width <= 1 and height <= 1 bound the ratio
    high = torch.clamp(-area.log(), max=math.log(ASPECT_RANGE[1]))
    ratio = torch.exp(low + (high - low) * draws[:, 1])
    width, height = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)  # fractions of the sides
    mirror = torch.where(draws[:, 4] < 0.5, -1.0, 1.0) if flip else torch.ones_like(width)
    theta = torch.zeros(images.shape[0], 2, 3, device=images.device)  # output -> input coordinates, both -1..1
    theta[:, 0, 0] = width * mirror
    theta[:, 1, 1] = height
    theta[:, 0, 2] = (1 - width) * (2 * draws[:, 2] - 1)
    theta[:, 1, 2] = (1 - height) * (2 * draws[:, 3] - 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def colour_jitter(images, draws, *, jitter: float, jitter_probability: float, gray_probability: float):
    """Brightness, contrast, saturation, then random gray, of normalised images; draws (N, 5) uniform in 0..1."""
    import torch

    apply = (draws[:, 0] < jitter_probability).to(images.dtype)
    brightness = apply * jitter * (2 * draws[:, 1] - 1)
    contrast = 1 + apply * jitter * (2 * draws[:, 2] - 1)
    saturation = 1 + apply * jitter * (2 * draws[:, 3] - 1)
    x = images + brightness.view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast.view(-1, 1, 1, 1) + mean
    if x.shape[1] == 3:
        gray = x.mean(dim=1, keepdim=True)  # (N, 1, H, W)
        x = gray + (x - gray) * saturation.view(-1, 1, 1, 1)
        x = torch.where((draws[:, 4] < gray_probability).view(-1, 1, 1, 1), x.mean(dim=1, keepdim=True), x)
    return x


def nt_xent(z1, z2, *, temperature: float = 0.5):
    """SimCLR's NT-Xent loss of the projections z1, z2 (N, D) of the two views of N images.

    With z the 2N L2-normalised rows and s(i, k) = z_i . z_k / temperature, row i's positive j is its other view:
    l(i, j) = -log(exp(s(i, j)) / sum_{k != i} exp(s(i, k))), the 2N - 2 other rows its negatives; the loss is
    the mean over the 2N rows (Chen et al. 2020, eq. 1 and algorithm 1).

    >>> import torch
    >>> z = torch.eye(4)
    >>> round(float(nt_xent(z, z)), 4)  # positives at cosine 1, six negatives at 0: log(1 + 6 e^(-1 / 0.5))
    0.5944
    """
    import torch
    import torch.nn.functional as F

    count = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, D)
    similarity = z @ z.T / temperature  # (2N, 2N)
    similarity = similarity.masked_fill(torch.eye(2 * count, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.arange(2 * count, device=z.device).roll(count)  # row i's other view: i + N mod 2N
    return F.cross_entropy(similarity, positives)


# --- instance discrimination (Wu et al. 2018) ---

@dataclass
class MemoryBank:
    """One L2-normalised feature per training image, the classes of instance discrimination.

    Mutable on purpose: it is the training state of the task, updated after every batch and saved with the
    checkpoint (state_dict) so that a resumed run continues exactly.

    >>> import torch
    >>> bank = MemoryBank.random(10, 4, generator=torch.Generator().manual_seed(0))
    >>> z = torch.randn(3, 4)
    >>> tuple(bank.logits(z).shape)
    (3, 10)
    >>> bank.update(torch.tensor([0, 1, 2]), z)
    """

    features: object  # (N, D) unit rows, no gradient
    momentum: float = 0.5  # the paper's: the stored feature moves halfway to the newest one
    temperature: float = 0.07  # the paper's tau

    @classmethod
    def random(cls, count: int, dim: int, *, generator, device=None, momentum: float = 0.5,
               temperature: float = 0.07) -> MemoryBank:
        """A bank of `count` random unit vectors of `dim` (uniform on the sphere), drawn on the CPU."""
        import torch
        import torch.nn.functional as F

        features = F.normalize(torch.randn(count, dim, generator=generator), dim=1)
        return cls(features.to(device), momentum=momentum, temperature=temperature)

    def logits(self, z):
        """(B, N): the normalised z (B, D) against every stored feature, divided by the temperature."""
        import torch.nn.functional as F

        return F.normalize(z, dim=1) @ self.features.to(z.dtype).T / self.temperature

    def loss(self, z, indices):
        """The non-parametric softmax's cross-entropy: each image is its own class (Wu et al. eq. 2).

        The full softmax over all N stored features: the datasets here are small enough; the paper's NCE
        approximation (4096 noise samples) is for ImageNet's 1.28 million classes.
        """
        import torch.nn.functional as F

        return F.cross_entropy(self.logits(z), indices.to(z.device))

    def update(self, indices, z) -> None:
        """v_i = normalise(momentum * v_i + (1 - momentum) * normalise(z_i)) for the rows `indices` (distinct)."""
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            indices = indices.to(self.features.device)
            newest = F.normalize(z.detach().to(self.features.device, self.features.dtype), dim=1)
            moved = self.momentum * self.features[indices] + (1 - self.momentum) * newest
            self.features[indices] = F.normalize(moved, dim=1)

    def state_dict(self) -> dict:
        return {"features": self.features, "momentum": self.momentum, "temperature": self.temperature}

    def load_state_dict(self, state: dict) -> None:
        stored = state["features"]
        if tuple(stored.shape) != tuple(self.features.shape):
            raise ArchvizError(f"the checkpoint's memory bank holds {tuple(stored.shape)} features, this run needs "
                               f"{tuple(self.features.shape)} (one per training image): was the dataset changed?")
        self.features = stored.to(self.features.device, self.features.dtype).clone()
        self.momentum = float(state["momentum"])
        self.temperature = float(state["temperature"])


# --- DeepCluster (Caron et al. 2018) ---

def kmeans(features, k: int, *, generator, iterations: int = 20):
    """k-means of features (N, D): (labels (N,) int64, centroids (k, D) float32), on the features' device.

    Rows are L2-normalised first; the paper's PCA to 256 dimensions and whitening are left out (the features
    here are small). Initial centroids: k distinct random rows. Each of `iterations` Lloyd steps assigns every row
    to its nearest centroid (torch.cdist), reassigns empty clusters, then moves the centroids to their means.
    An empty cluster takes over part of a non-empty one, chosen at random in proportion to its size (clusters of
    one row excluded): as in the paper (and faiss) the empty centroid becomes that centroid plus a small random
    perturbation and the other minus it, which splits the rows by the side of a random hyperplane through their
    mean; rows that all lie on one side (duplicates) are split in half by index. So no cluster ends empty.

    >>> import torch
    >>> points = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    >>> labels, centroids = kmeans(points, 2, generator=torch.Generator().manual_seed(0))
    >>> labels[0] == labels[1] != labels[2] == labels[3]
    tensor(True)
    """
    import torch
    import torch.nn.functional as F

    count = features.shape[0]
    if not 1 <= k <= count:
        raise ArchvizError(f"k-means into {k!r} clusters needs at least that many images, got {count}")
    x = F.normalize(features.float(), dim=1)  # (N, D)
    centroids = x[torch.randperm(count, generator=generator)[:k].to(x.device)]  # (k, D)
    for _ in range(max(iterations, 1)):
        labels = fill_empty_clusters(x, nearest(x, centroids), k, generator=generator)
        centroids = cluster_means(x, labels, k)
    return labels, centroids


def fill_empty_clusters(x, labels, k: int, *, generator):
    """labels (N,) with every one of the k clusters non-empty (needs N >= k); see kmeans()."""
    import torch

    labels = labels.clone()
    sizes = torch.bincount(labels, minlength=k).cpu()
    for empty in (sizes == 0).nonzero().flatten().tolist():
        donor = int(torch.multinomial(torch.where(sizes >= 2, sizes, 0).double(), 1, generator=generator))
        members = (labels == donor).nonzero().flatten()
        direction = torch.randn(x.shape[1], generator=generator).to(x.device, x.dtype)
        points = x[members]
        side = (points - points.mean(dim=0)) @ direction > 0
        moved = int(side.sum())
        if moved in (0, len(members)):  # every row on one side: duplicates
            side = torch.arange(len(members), device=x.device) >= len(members) // 2
            moved = int(side.sum())
        labels[members[side]] = empty
        sizes[empty], sizes[donor] = moved, sizes[donor] - moved
    return labels


def cluster_means(x, labels, k: int):
    """The mean (k, D) of the rows x (N, D) of each cluster; every cluster must hold at least one row."""
    import torch

    sums = torch.zeros(k, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, labels, x)
    return sums / torch.bincount(labels, minlength=k).clamp(min=1)[:, None].to(x.dtype)


def balanced_sampling_weights(labels, k: int):
    """Per-sample weights (N,) for torch.multinomial: 1 / the size of the sample's cluster.

    Every non-empty cluster's weights sum to 1, so each is drawn equally often, as the paper samples images
    uniformly over the pseudo-labels (so that a few large clusters do not take over the training).

    >>> import torch
    >>> balanced_sampling_weights(torch.tensor([0, 0, 1, 0]), 2).tolist()
    [0.3333333432674408, 0.3333333432674408, 1.0, 0.3333333432674408]
    """
    import torch

    sizes = torch.bincount(labels, minlength=k).to(torch.float32)
    return 1 / sizes[labels]
