"""Colorization as an objective of `archviz pretrain`: the network sees the lightness of a colour image and predicts,
at every position of its last feature map, which of Q quantised ab colours the image has there.

The batches the loop hands over are normalised colour images; the objective undoes the normalisation, converts to
CIE Lab (tasks.py), feeds L (normalised as the batches are) to the backbone and scores a 1x1 convolution's Q logits
per position against the quantised mean ab of each position's patch. Grayscale datasets are refused.

Sources:
- Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016 (section 2.1: ab quantised on a grid of 10,
  a per-pixel classification; the network's output is a map, so the backbone here ends on one).
"""

from __future__ import annotations

from archviz.errors import ArchvizError
from archviz.graph.ir import Graph
from archviz.pretrain.objectives import Objective
from archviz.pretrain.choices import Task


class Colorization(Objective):
    """One of Q quantised ab colours per position of the backbone's last map, from the lightness (Zhang et al.
    2016)."""

    task = Task.COLORIZATION

    @property
    def answers_per_image(self) -> int:
        """One colour per position of the map."""
        return self.map_size[0] * self.map_size[1] if self.map_size else 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from archviz.pretrain.tasks import ab_bins, require_colour

        require_colour(self.image_shape[0])
        self.bins = ab_bins()  # (Q, 2)
        self.map_size = None  # (h, w) of the backbone's output, set by head()

    def backbone(self, graph: Graph) -> Graph:
        """The graph up to its last layer with a spatial output (C x H x W, H * W > 1), stepped back over pooling,
        dropout and reshapes to the layer that made the map: colour is predicted per position, so the backbone ends
        on a map and the fully connected layers are not part of it."""
        from archviz.inside.layers import auto_cam_layer
        from archviz.pretrain.backbone import cut

        return cut(graph, auto_cam_layer(graph).name)

    def head(self, features):
        from torch import nn

        if len(self.stats.mean) != 3:
            raise ArchvizError(f"colorization needs the colour images, but the model takes {len(self.stats.mean)} "
                               "channel(s), so the batches are gray: use a model with a 3-channel input, or "
                               "--adapt model")
        channels, height, width = features
        self.map_size = (height, width)
        return nn.Conv2d(channels, len(self.bins), kernel_size=1)

    def inputs(self, x, index, generator):
        """(L normalised as the batches are, repeated to the input's channels; ab bins (N, h, w) of the map)."""
        import torch

        from archviz.pretrain.tasks import colorization_batch

        rgb, mean, std = self._rgb(x)
        lightness, targets = colorization_batch(rgb, self.bins, channels=x.shape[1], size=self.map_size)
        # the scale of the normalised images the backbone will be fine-tuned on, rather than L / 100 in 0..1
        inputs = ((lightness - mean) / std).to(x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last):
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs, targets

    def examples(self, x, generator):
        """Per image: the image, the lightness the network is given, and the colours it learns to predict: each
        pixel's nearest bin with the pixel's own L (the targets bin each position's mean ab instead)."""
        import torch

        from archviz.pretrain.tasks import nearest, rgb_to_lab

        rgb, mean, std = self._rgb(x)
        lab = rgb_to_lab(rgb)  # (N, 3, H, W)
        ab = lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)  # (N * H * W, 2)
        bins = self.bins.to(x.device)
        binned = bins[nearest(ab, bins)].view(x.shape[0], *x.shape[2:], 2).permute(0, 3, 1, 2)
        colours = (lab_to_rgb(torch.cat([lab[:, :1], binned], dim=1)) - mean) / std
        lightness = (lab[:, :1] / 100 - mean) / std
        pictures = [picture for i in range(x.shape[0]) for picture in (x[i], lightness[i], colours[i])]
        return pictures, ["image", "lightness in", "colour bins out"] * x.shape[0], 3

    def _rgb(self, x):
        """(sRGB in 0..1, mean, std (1, C, 1, 1)) of batches x normalised with self.stats."""
        import torch

        mean, std = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in (self.stats.mean, self.stats.std))
        return (x.float() * std + mean).clamp(0, 1), mean, std

    def describe(self) -> str:
        size = "x".join(map(str, self.map_size)) if self.map_size else "HxW"
        return f"lightness in, one of {len(self.bins)} quantised ab colours per position of the {size} map out"


def lab_to_rgb(lab):
    """CIE L*a*b* (N, 3, H, W) -> sRGB in 0..1, the inverse of tasks.rgb_to_lab; colours outside sRGB are clipped.

    fy = (L + 16) / 116, fx = fy + a / 500, fz = fy - b / 200; t = f^3 above 6/29 else 3 (6/29)^2 (f - 4/29);
    XYZ = t times the D65 white; linear sRGB = SRGB_TO_XYZ^-1 XYZ; c' = 12.92 c up to 0.0031308, else
    1.055 c^(1/2.4) - 0.055 (CIE 15:2004, IEC 61966-2-1).

    >>> import torch
    >>> from archviz.pretrain.tasks import rgb_to_lab
    >>> rgb = torch.tensor([0.8, 0.3, 0.1]).view(1, 3, 1, 1)
    >>> bool(torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4))
    True
    """
    import torch

    from archviz.pretrain.tasks import D65_WHITE, SRGB_TO_XYZ

    delta = 6 / 29
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)  # (N, 3, H, W)
    xyz = torch.where(f > delta, f ** 3, 3 * delta ** 2 * (f - 4 / 29))
    to_rgb = torch.linalg.inv(torch.tensor(SRGB_TO_XYZ, dtype=torch.float64)).float().to(lab.device)
    white = torch.tensor(D65_WHITE, device=lab.device)
    linear = torch.einsum("ij,njhw->nihw", to_rgb * white, xyz).clamp(0, 1)
    return torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear.clamp(min=1e-12) ** (1 / 2.4) - 0.055)
