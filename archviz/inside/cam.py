"""Class-activation maps: where in the input the evidence for a class lies, seen from one layer.

For a layer's output A (K maps of h x w) and the score y of class c (the logit, before softmax), with the gradients
g = dy/dA:
- Grad-CAM (Selvaraju et al. 2017, eq. 1-2): weight_k = mean over positions of g_k; map = ReLU(sum_k weight_k A_k).
- Grad-CAM++ (Chattopadhay et al. 2018, eq. 19, with exp(y) as the score so that the higher derivatives are powers of
  g): alpha_ij = g_ij^2 / (2 g_ij^2 + g_ij^3 * sum over positions of A); weight_k = sum over positions of
  alpha ReLU(g_k).
The map is upsampled bilinearly to the input's size and divided by its largest value. The gradients come from
torch.autograd.grad on the layer's output kept by a forward hook (capture.py), never from module backward hooks,
which fail when an in-place op follows the layer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from archviz.errors import ArchvizError
from archviz.inside.images import Input
from archviz.inside.trained import Trained

TOP = 5  # predictions listed beside a map


class CamMethod(enum.StrEnum):
    GRADCAM = "gradcam"
    GRADCAM_PLUS_PLUS = "gradcam++"


@dataclass(frozen=True)
class Cam:
    layer: str
    method: CamMethod
    target: int  # the class the map is for
    probability: float  # softmax probability of the target class
    heatmap: Any  # numpy (H, W), 0..1, at the input's size
    coarse: Any  # numpy (h, w): the map at the layer's resolution, before upsampling and scaling
    top: tuple[tuple[int, float], ...]  # the TOP most probable classes with their probabilities

    @property
    def empty(self) -> bool:
        """No positive evidence for the class at this layer: the ReLU left nothing."""
        return float(self.coarse.max()) <= 0.0


def class_activation_map(trained: Trained, image: Input, *, layer: str, target: int | None = None,
                         method: CamMethod = CamMethod.GRADCAM) -> Cam:
    """The map of `target` (default: the predicted class) over `image`, seen from `layer`.

    >>> from archviz.inside import trained, images  # doctest: +SKIP
    >>> cam = class_activation_map(net, images.dataset_sample(net, 0), layer="tanh2")  # doctest: +SKIP
    >>> cam.heatmap.shape  # doctest: +SKIP
    (32, 32)
    """
    import torch
    import torch.nn.functional as F

    from archviz.inside.capture import output_with_gradient

    if not trained.classes:
        raise ArchvizError(f"{trained.weights} is a backbone without a classifier (archviz pretrain): a class-"
                           "activation map needs class scores; fine-tune it first (archviz probe RUN --finetune)")
    activation, logits = output_with_gradient(trained.net, layer, image.tensor)
    if activation.dim() != 4:
        raise ArchvizError(f"{layer} gives {tuple(activation.shape[1:])} outputs, not C x H x W maps; "
                           "--layer auto picks the last layer with a spatial output", layer=layer)
    probabilities = torch.softmax(logits.detach()[0].float(), dim=0)
    target = int(probabilities.argmax()) if target is None else _checked(target, len(probabilities))
    (gradient,) = torch.autograd.grad(logits[0, target], activation)
    maps, gradient = activation.detach()[0].double(), gradient[0].double()  # (K, h, w)
    weights = _weights(maps, gradient, method)  # (K,)
    coarse = torch.relu(torch.einsum("k,khw->hw", weights, maps))
    heatmap = F.interpolate(coarse[None, None], size=tuple(image.tensor.shape[-2:]), mode="bilinear",
                            align_corners=False)[0, 0]
    peak = float(heatmap.max())
    heatmap = heatmap / peak if peak > 0 else heatmap
    top = torch.topk(probabilities, min(TOP, len(probabilities)))
    return Cam(layer, CamMethod(method), target, float(probabilities[target]), heatmap.float().numpy(),
               coarse.float().numpy(), tuple(zip(top.indices.tolist(), top.values.tolist())))


def _weights(maps, gradient, method: CamMethod):
    """One weight per channel (see the module docstring)."""
    import torch

    if method == CamMethod.GRADCAM:
        return gradient.mean(dim=(1, 2))
    squared = gradient.pow(2)
    denominator = 2 * squared + gradient.pow(3) * maps.sum(dim=(1, 2), keepdim=True)
    alpha = squared / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return (alpha * torch.relu(gradient)).sum(dim=(1, 2))


def _checked(target: int, classes: int) -> int:
    if not 0 <= target < classes:
        raise ArchvizError(f"--class {target}: the model has {classes} classes (0 to {classes - 1})")
    return target
