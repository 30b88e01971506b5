"""Resampling: interpolation (torch.nn.functional.interpolate, nn.Upsample) and padding (F.pad, nn.ZeroPad2d and
friends)."""

from __future__ import annotations
