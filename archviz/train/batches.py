"""From stored uint8 images to the model's input, one batch at a time: channels, size, augmentation, normalisation.

The images stay uint8 at their own size (on the GPU when they fit), four times smaller than float32, and each
batch is converted on the device where the model runs. On the CPU, when the images must be resized or their channels
converted and the result fits in a share of the free memory, that is done once for the whole split instead (for
lenet on the digits the per-batch resize was 5-6% of the training time); each batch is then only augmented and
normalised. Augmentation draws its random numbers from its own generator, on the CPU, so a resumed run draws the
same numbers whatever the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archviz.train.choices import Augment, Normalize

MAX_ROTATION_DEGREES = 10.0  # small enough that a 6 stays a 6 and a 9 a 9
MAX_SCALE = 0.1  # zoom in or out by up to 10%
MAX_SHIFT = 0.1  # of the image side: 3 pixels of a 32-pixel input
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's ImageNet mean and std (RGB, 0..1)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's convert("L")
GPU_DATA_FRACTION = 0.25  # of the free GPU memory: the images move there only when they take less
PREPARED_FRACTION = 0.25  # of the free memory: the images are adapted once, as float32, only when they take less
PREPARE_CHUNK = 4096  # images adapted at a time, so that the temporaries stay small


@dataclass(frozen=True)
class Augmentation:
    """What a preset does to each training image. Mirror images only for photos (never digits or MNIST: a mirrored
    2 is no digit); colour jitter only for photos; cutout and mixup for any data."""

    rotation_degrees: float
    scale: float  # zoom in or out by up to this fraction
    shift: float  # of the image side
    jitter: float = 0.0  # brightness and contrast each scaled by 1 +- up to this (photos)
    cutout: float = 0.0  # the side of a square set to the mean, as a fraction of the image side (DeVries and
    # Taylor 2017, "Improved regularization of CNNs with cutout": 16 of CIFAR-10's 32 pixels; a quarter here)
    mixup: bool = False  # pairs of images and their labels mixed, weight ~ U(0, 1): mixup's Beta(1, 1) (Zhang et
    # al. 2018, "mixup: beyond empirical risk minimization", alpha = 1 for CIFAR-10)

    @property
    def draws(self) -> int:
        """Random numbers per image: always the same for a preset, so the stream does not depend on the data."""
        return 5 if not (self.jitter or self.cutout) else 9


AUGMENTATIONS = {
    Augment.NONE: None,
    Augment.LIGHT: Augmentation(MAX_ROTATION_DEGREES, MAX_SCALE, MAX_SHIFT),  # the runs before the presets
    Augment.STANDARD: Augmentation(15.0, 0.15, 0.125, jitter=0.2),
    Augment.STRONG: Augmentation(15.0, 0.2, 0.15, jitter=0.3, cutout=0.25, mixup=True),
}


def describe_augmentation(preset, flips: bool) -> str:
    """The preset in words, for the run header and run.json; preset: an Augment (true/false: light/none)."""
    augmentation = AUGMENTATIONS[Augment.of(preset)]
    if augmentation is None:
        return "no augmentation"
    a = augmentation
    text = (f"{Augment.of(preset).value} augmentation: random affine per image: rotate up to {a.rotation_degrees:g} "
            f"degrees, scale up to {a.scale:.0%}, shift up to {a.shift:.1%} of the side".replace(".0%", "%"))
    text += ", mirror half of them" if flips else ""
    text += f", brightness and contrast x(1 +- {a.jitter:g})" if a.jitter and flips else ""
    text += f", cutout of a square {a.cutout:g} of the side" if a.cutout else ""
    return text + (", mixup of pairs (weight ~ U(0, 1))" if a.mixup else "")


def normalization(kind, images, channels: int) -> Stats:
    """The per-channel statistics batches are normalised with: the training images' (dataset), ImageNet's as
    torchvision's pretrained weights expect (a gray input takes their mean over RGB), or none (0 and 1)."""
    kind = Normalize(kind)
    if kind == Normalize.DATASET:
        return channel_stats(images, channels)
    if kind == Normalize.NONE:
        return Stats((0.0,) * channels, (1.0,) * channels)
    mean, std = IMAGENET
    if channels == 1:
        return Stats((sum(mean) / 3,), (sum(std) / 3,))
    return Stats(mean, std)


@dataclass(frozen=True)
class Stats:
    """Per-channel mean and standard deviation of the training images after channel conversion, on a 0..1 scale."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


def channel_stats(images, channels: int) -> Stats:
    """Mean and std per channel of uint8 images (N, C, H, W), converted to `channels` channels first."""
    import numpy as np

    values = images.astype(np.float64) / 255
    if images.shape[1] == 3 and channels == 1:
        values = np.tensordot(np.asarray(LUMA), values, axes=([0], [1]))[:, None]
    mean = values.mean(axis=(0, 2, 3))
    std = values.std(axis=(0, 2, 3))
    if images.shape[1] == 1 and channels == 3:
        mean, std = np.repeat(mean, 3), np.repeat(std, 3)
    std = np.where(std > 0, std, 1.0)  # a constant channel (blank test images) is only centred
    return Stats(tuple(float(m) for m in mean), tuple(float(s) for s in std))


class BatchMaker:
    """Turns uint8 batches (N, C, h, w) into normalised float batches of the model's input (N, C', H, W)."""

    def __init__(self, *, input_shape, stats: Stats, device, channels_last: bool, augment, flips: bool):
        import torch

        self.channels, self.height, self.width = input_shape
        self.device = device
        self.mean = torch.tensor(stats.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(stats.std, device=device).view(1, -1, 1, 1)
        self.luma = torch.tensor(LUMA, device=device).view(1, 3, 1, 1)
        self.channels_last = channels_last
        self.augment = Augment.of(augment)  # a preset, or true/false (light/none)
        self.augmentation = AUGMENTATIONS[self.augment]
        self.mixup = bool(self.augmentation and self.augmentation.mixup)  # done by the task, on labels too
        self.flips = flips

    def needs_adapting(self, image_shape) -> bool:
        """Whether images of image_shape (C, h, w) are resized or have their channels converted."""
        return tuple(image_shape) != (self.channels, self.height, self.width)

    def adapt(self, images):
        """uint8 (N, C, h, w) -> float32 (N, C', H, W) in 0..1 at the model's input: channels converted, resized."""
        import torch.nn.functional as F

        x = images.to(self.device, non_blocking=True).float().div_(255)  # (N, C, h, w) in 0..1
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and self.channels == 1:
            x = (x * self.luma).sum(dim=1, keepdim=True)
        if x.shape[-2:] != (self.height, self.width):
            smaller = self.height < x.shape[-2] or self.width < x.shape[-1]
            x = F.interpolate(x, size=(self.height, self.width), mode="bilinear", align_corners=False,
                              antialias=smaller)
        return x

    def prepare(self, images):
        """A whole split adapted once (prepared_fits says when it is worth it); __call__ takes its batches as well."""
        import torch

        return torch.cat([self.adapt(images[start:start + PREPARE_CHUNK]).contiguous()
                          for start in range(0, len(images), PREPARE_CHUNK)]) if len(images) else self.adapt(images)

    def __call__(self, images, *, generator=None):
        """uint8 images, or float ones from prepare(); generator given: a training batch, augmented when
        augmentation is on."""
        import torch

        x = self.adapt(images) if images.dtype == torch.uint8 else images.to(self.device, non_blocking=True)
        draws = None
        if generator is not None and self.augmentation is not None:
            draws = torch.rand(x.shape[0], self.augmentation.draws, generator=generator)
            x = self._affine(x, draws)
            if self.augmentation.jitter and self.flips:
                x = self._jitter(x, draws[:, 5:7])
        x = (x - self.mean) / self.std
        if draws is not None and self.augmentation.cutout:
            x = self._cutout(x, draws[:, 7:9])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _affine(self, x, draws):
        import torch
        import torch.nn.functional as F

        a, count = self.augmentation, x.shape[0]
        angle = (draws[:, 0] * 2 - 1) * math.radians(a.rotation_degrees)
        scale = 1 + (draws[:, 1] * 2 - 1) * a.scale
        mirror = torch.where(draws[:, 4] < 0.5, -1.0, 1.0) if self.flips else torch.ones(count)
        theta = torch.empty(count, 2, 3)  # output -> input coordinates, both spanning -1..1
        theta[:, 0, 0] = torch.cos(angle) / scale * mirror
        theta[:, 0, 1] = -torch.sin(angle) / scale
        theta[:, 1, 0] = torch.sin(angle) / scale * mirror
        theta[:, 1, 1] = torch.cos(angle) / scale
        theta[:, :, 2] = (draws[:, 2:4] * 2 - 1) * a.shift * 2  # the side spans 2 units of these coordinates
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _jitter(self, x, draws):
        """Brightness and contrast, each x(1 +- jitter), of 0..1 images."""
        factors = (1 + (draws * 2 - 1) * self.augmentation.jitter).to(x.device)  # (N, 2)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factors[:, 1].view(-1, 1, 1, 1) + mean
        return (x * factors[:, 0].view(-1, 1, 1, 1)).clamp_(0, 1)

    def _cutout(self, x, draws):
        """A square of cutout x the side, centred anywhere in the image (it may hang over an edge), set to 0: the
        channel's mean once normalised."""
        import torch

        height, width = x.shape[-2:]
        half = self.augmentation.cutout * max(height, width) / 2
        centre = draws.to(x.device) * torch.tensor([height, width], device=x.device)  # (N, 2)
        rows = (torch.arange(height, device=x.device).view(1, -1) + 0.5 - centre[:, :1]).abs() < half  # (N, H)
        cols = (torch.arange(width, device=x.device).view(1, -1) + 0.5 - centre[:, 1:]).abs() < half  # (N, W)
        keep = ~(rows[:, :, None] & cols[:, None, :])  # (N, H, W)
        return x * keep[:, None].to(x.dtype)


def prepared_fits(float_bytes: int, device) -> bool:
    """Whether adapted float32 images of float_bytes fit in PREPARED_FRACTION of the free memory (CPU runs only:
    on a GPU the per-batch conversion costs next to nothing and its memory is scarcer)."""
    import os

    if device.type != "cpu":
        return False
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that reports it
        return False
    return float_bytes < free * PREPARED_FRACTION


def storage_device(total_bytes: int, device):
    """Where the uint8 images are kept: on a CUDA device when they fit in a share of its free memory, else the CPU."""
    import torch

    if device.type != "cuda":
        return device
    free, _total = torch.cuda.mem_get_info(device)
    return device if total_bytes < free * GPU_DATA_FRACTION else torch.device("cpu")
