"""Element-wise ops beyond the activations of activation.py: arithmetic with broadcasting and further activations."""

from __future__ import annotations
