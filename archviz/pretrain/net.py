"""The module a pretext task trains: the backbone built from the graph, and a small head on its features.

    net.backbone   the graph's module without its classifier (backbone.py): what a probe later reads
    net.head       the task's head: a linear layer, an MLP, a projection, or a 1x1 convolution for colorization

Inputs come in one of two forms: images (N, C, H, W), encoded and passed to the head; or pieces (N, K, C, h, w)
(jigsaw's 9 tiles, context's 2 patches), each resized to the backbone's input and encoded by the same backbone (the
shared encoder of the papers), their features concatenated in order for the head. Everything runs through forward(),
so DistributedDataParallel sees every use of the weights.
"""

from __future__ import annotations

from functools import cache

HIDDEN = 512  # width of the heads' hidden layer (Noroozi and Favaro concatenate 9 fc6 features into fc7 the same way)


@cache
def _classes() -> dict[str, type]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class PretextNet(nn.Module):
        def __init__(self, backbone: nn.Module, head: nn.Module, input_size: tuple[int, int]):
            super().__init__()
            self.backbone = backbone
            self.head = head
            self.input_size = tuple(input_size)

        def encode(self, x):
            """(N, C, H, W) -> the backbone's output, flattened unless it is a map (colorization's dense head)."""
            features = self.backbone(x)
            return features if features.dim() == 4 else features.flatten(1)

        def forward(self, x):
            if x.dim() == 4:
                return self.head(self.encode(x))
            count, pieces = x.shape[:2]  # (N, K, C, h, w)
            flat = x.flatten(0, 1)
            if tuple(flat.shape[-2:]) != self.input_size:
                flat = F.interpolate(flat, size=self.input_size, mode="bilinear", align_corners=False)
            features = self.encode(flat.contiguous(memory_format=torch.channels_last) if x.is_cuda else flat)
            return self.head(features.reshape(count, pieces * features.shape[1]))

    return {"PretextNet": PretextNet}


def pretext_net(backbone, head, input_size: tuple[int, int]):
    return _classes()["PretextNet"](backbone, head, input_size)


def mlp(inputs: int, outputs: int, *, hidden: int = HIDDEN):
    from torch import nn

    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, outputs))
