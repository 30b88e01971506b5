"""Small PyTorch models for archviz's trace tests (tests/test_trace.py). archviz imports and runs this file when a
test names `tests/data/models/tiny_net.py:Net`."""

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """A residual block whose join and activation are functions in forward, not modules."""

    def __init__(self, width: int):
        super().__init__()
        self.conv_a = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(width)
        self.conv_b = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(width)

    def forward(self, x):
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        return torch.relu(out + x)


class Net(nn.Module):
    """conv-bn-relu, a residual block, global pooling, a flatten written as x.view(n, -1), a classifier."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.block = Block(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.block(x)
        x = self.pool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def make_model(num_classes: int = 10):
    """A factory, as `tiny_net.py:make_model` or `tiny_net:make_model`."""
    return Net(num_classes=num_classes)


instance = Net(num_classes=3)  # a module made on import: `tiny_net.py:instance`


class Tied(nn.Module):
    """One convolution applied twice, and a decoder whose weight is the head's (tied weights)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 4, bias=False)
        self.decoder = nn.Linear(4, 4, bias=False)
        self.decoder.weight = self.head.weight

    def forward(self, x):
        x = self.conv(self.conv(x))
        x = x.mean((2, 3))
        return self.decoder(self.head(x))


class Unknown(nn.Module):
    """nn.ChannelShuffle and torch.cumsum: archviz has no formula for either."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.shuffle = nn.ChannelShuffle(4)

    def forward(self, x):
        return torch.cumsum(self.shuffle(self.conv(x)), dim=1)


class Dynamic(nn.Module):
    """Control flow on the input's size: torch.fx cannot trace it, so forward hooks record the layers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.shape[-1] > 8:
            x = self.pool(x)
        return self.fc(torch.flatten(x, 1))


class Computed(nn.Module):
    """A bias computed by a layer from a buffer alone (as Swin v2's position-bias MLP): no input flows through it."""

    def __init__(self):
        super().__init__()
        self.register_buffer("coords", torch.ones(1, 4))
        self.mlp = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.mlp(self.coords)


class Broken(nn.Module):
    def __init__(self, depth: int = 1):
        super().__init__()
        raise ValueError(f"depth {depth} is not supported")


NOT_A_MODEL = 42


def make_list():
    return [1, 2, 3]


class Attention(nn.Module):
    """timm's ViT attention on (N, C) tokens: qkv permuted to (3, B, heads, N, d), so the batch moves to dim 1."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Windows(nn.Module):
    """Swin's window attention: the batch folds into the windows, (B * 4, 16, C), attention runs per window, and the
    windows go back into the image."""

    def __init__(self, channels: int = 8, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x):
        B, C, H, W = x.shape
        x = x.permute(0, 2, 3, 1).reshape(B, H // 4, 4, W // 4, 4, C).transpose(2, 3).reshape(-1, 16, C)
        q, k, v = self.qkv(x).reshape(-1, 16, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=3)  # dim 3 of (B * 4, heads, 16, 16): moved one on per sample
        x = self.proj((attn @ v).transpose(1, 2).reshape(-1, 16, C))
        x = x.reshape(B, H // 4, W // 4, 4, 4, C).transpose(2, 3).reshape(B, H, W, C)
        return x.mean((1, 2))
