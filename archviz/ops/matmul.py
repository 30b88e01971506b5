"""Products of two computed tensors (matmul, bmm, @, einsum) and attention (scaled dot-product, multi-head)."""

from __future__ import annotations
