"""archviz train: train a zoo model or spec file on local data, with exact resume and a per-class report.

>>> from archviz.train import train  # doctest: +SKIP
>>> result = train("lenet", dataset="digits", output="runs/lenet-digits")  # doctest: +SKIP
>>> print(result.report.text())  # doctest: +SKIP

Modules: data (datasets read locally), model (the spec fitted to the data), batches (per-batch adaptation and
augmentation), loop (the training loop: functions over a Setup and a State), task (what a run trains for: the Task
protocol and Supervised), checkpoint, run_folder (the run folder's files, run.json's RunRecord, reading and
writing), run (RunResult and the claim on a folder), progress, metrics, compare (`archviz compare` and
`archviz sweep`, --seeds), options (the options train, compare and sweep share), init (--init and --freeze),
threads (the default thread count, OpenMP's wait policy), tensorboard_log (--log tensorboard), settings and
choices; predict, evaluate and export use a trained run (`archviz predict`,
`evaluate`, `export RUN`).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "train": "archviz.train.loop", "RunResult": "archviz.train.run", "TrainingInterrupted": "archviz.train.run",
    "TrainingDiverged": "archviz.train.run", "Settings": "archviz.train.settings", "Runtime": "archviz.train.settings",
    "load_dataset": "archviz.train.data", "DatasetError": "archviz.train.data", "class_report": "archviz.train.metrics",
    "evaluate_run": "archviz.train.evaluate", "export_trained": "archviz.train.export",
}  # compare, sweep and predict: from their modules (a lazy name here would be shadowed by the submodule)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archviz.train' has no attribute {name!r}")


__all__ = list(_LAZY)
