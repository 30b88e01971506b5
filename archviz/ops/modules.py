"""The small torch modules that rebuild the ops of archviz/ops/tensor.py (mul, reshape, permute, narrow).

Made on first use, so importing the op registry never imports torch; they are attributes of this module (read through
the module's __getattr__), so models holding them pickle.
"""

from __future__ import annotations

from archviz.ops.base import lazy_torch_classes

_CLASS_NAMES = ("Mul", "Reshape", "Permute", "Narrow", "AddParameter", "MulParameter", "SpatialMean")


def _classes() -> dict[str, type]:
    from archviz.torch_build import import_torch

    torch = import_torch()
    nn = torch.nn

    class Mul(nn.Module):
        """Element-wise product of its inputs, broadcast."""

        def forward(self, *tensors):
            product = tensors[0]
            for tensor in tensors[1:]:
                product = product * tensor
            return product

    class Reshape(nn.Module):
        """x viewed as (N, *shape)."""

        def __init__(self, shape):
            super().__init__()
            self.shape = tuple(shape)

        def forward(self, x):
            return x.reshape(x.shape[0], *self.shape)  # (N, *shape)

        def extra_repr(self) -> str:
            return f"shape={self.shape}"

    class Permute(nn.Module):
        """x with its non-batch dims in the order `dims` (torch counting; the batch stays dim 0)."""

        def __init__(self, dims):
            super().__init__()
            self.dims = tuple(dims)

        def forward(self, x):
            return x.permute(0, *self.dims)

        def extra_repr(self) -> str:
            return f"dims={self.dims}"

    class Narrow(nn.Module):
        """x.narrow(dim, start, length)."""

        def __init__(self, dim: int, start: int, length: int):
            super().__init__()
            self.dim, self.start, self.length = dim, start, length

        def forward(self, x):
            return x.narrow(self.dim, self.start, self.length)

        def extra_repr(self) -> str:
            return f"dim={self.dim}, start={self.start}, length={self.length}"

    class AddParameter(nn.Module):
        """x + a learned tensor (zeros until trained), broadcast."""

        def __init__(self, shape):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(tuple(shape)))

        def forward(self, x):
            return x + self.weight

    class MulParameter(nn.Module):
        """x * a learned tensor (ones until trained), broadcast."""

        def __init__(self, shape):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(tuple(shape)))

        def forward(self, x):
            return x * self.weight

    class SpatialMean(nn.Module):
        """x.mean((2, 3)): each channel of an (N, C, H, W) tensor averaged to one value, giving (N, C)."""

        def forward(self, x):
            return x.mean((2, 3))

    classes = {"SpatialMean": SpatialMean, "Mul": Mul, "Reshape": Reshape, "Permute": Permute, "Narrow": Narrow,
               "AddParameter": AddParameter,
               "MulParameter": MulParameter}
    return classes


__getattr__ = lazy_torch_classes(__name__, _CLASS_NAMES, _classes)
