"""Measured cost: run a real module and measure its peak memory, time per iteration and per layer, images/s.

tracker.py counts live tensor storages (the CPU's peak memory); run.py runs and times the module; view.py renders a
Measurement. torch is imported by tracker.py and run.py only, which load on first use of these names.

>>> from archviz.profile import measure_model
>>> measure_model("lenet", iterations=1, per_layer=False).baseline_bytes  # lenet's 61,706 float32 parameters
246824
"""

from __future__ import annotations

import importlib

_LAZY = {
    "LiveMemoryTracker": "archviz.profile.tracker", "TrackedMemory": "archviz.profile.tracker",
    "PeakPlace": "archviz.profile.tracker", "storage_bytes": "archviz.profile.tracker",
    "measure": "archviz.profile.run", "measure_graph": "archviz.profile.run", "measure_model": "archviz.profile.run",
    "Measurement": "archviz.profile.run", "LayerTiming": "archviz.profile.run",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archviz.profile' has no attribute {name!r}")
