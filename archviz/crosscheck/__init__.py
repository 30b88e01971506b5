"""Cross-check a Report's formula figures against the module itself, torchinfo, fvcore and torch's FlopCounterMode.

Each peer runs on the report's model in torch (common.meta_model: the original module for a traced graph,
archviz.torch_build's for a spec), on the meta device where it can; its figures are converted to our convention
(archviz/ops/base.py) with the conversion stated, and every remaining difference carries a reason. "module" compares
the whole model's totals strictly; the others compare per layer and may excuse a layer without a formula. Sources of
each peer's counting rules are in its module's docstring.
Importing this package does not import torch; run_crosscheck does.
"""

from __future__ import annotations

import dataclasses
import importlib

from archviz.analysis.report import CONVENTIONS, Report
from archviz.errors import MissingDependencyError
from archviz.crosscheck.result import TOTAL, CrossCheck, Figure, PeerResult, Quantity, Status
from archviz.torch_build import INSTALL_HINT

PEERS = (  # (peer name, module in this package, distribution it needs); the module itself first: its totals decide
    ("module", "module_peer", "torch"),
    ("torchinfo", "torchinfo_peer", "torchinfo"),
    ("flop_counter", "flop_counter_peer", "torch"),
    ("fvcore", "fvcore_peer", "fvcore"),
)


def run_crosscheck(report: Report, *, fvcore_full: bool = False) -> Report:
    """The report with its `crosscheck` field filled; without torch, a skipped CrossCheck saying how to install it.

    fvcore_full lets fvcore trace at the user's input on the CPU when no small input runs the same layers (costly).

    >>> import archviz
    >>> run_crosscheck(archviz.inspect("lenet")).crosscheck.agrees
    True
    """
    check = CrossCheck(model=report.model, input=report.input, batch=report.batch, conventions=CONVENTIONS)
    try:
        import torch  # noqa: F401  (only to know whether it is there)
    except ImportError:
        message = f"cross-check skipped: PyTorch is not installed ({INSTALL_HINT})"
        return dataclasses.replace(report, crosscheck=dataclasses.replace(check, skipped=True, message=message))
    from archviz.crosscheck.common import without_dynamo_import

    with without_dynamo_import():
        peers = tuple(_run_peer(report, *peer, fvcore_full=fvcore_full) for peer in PEERS)
    return dataclasses.replace(report, crosscheck=dataclasses.replace(check, peers=peers))


def _run_peer(report: Report, name: str, module: str, distribution: str, *, fvcore_full: bool) -> PeerResult:
    try:
        importlib.import_module(distribution)
    except ImportError:
        return PeerResult(peer=name, version="", method="", skipped=True,
                          message=f"{distribution} is not installed ({INSTALL_HINT})")
    from archviz.crosscheck.common import unbuilt_layers

    if name == "module" and unbuilt_layers(report):
        return PeerResult(peer=name, version="", method="", skipped=True, message=_no_module(unbuilt_layers(report)))
    try:
        options = {"full_trace": fvcore_full} if name == "fvcore" else {}
        return importlib.import_module(f"archviz.crosscheck.{module}").check(report, **options)
    except MissingDependencyError as error:
        return PeerResult(peer=name, version="", method="", skipped=True, message=str(error))
    except Exception as error:  # a peer that cannot handle this model must not hide the others' results
        return PeerResult(peer=name, version="", method="", skipped=True,
                          message=f"{name} failed: {type(error).__name__}: {error}")


def _no_module(unbuilt: list[str]) -> str:
    shown = ", ".join(unbuilt[:3]) + (f" and {len(unbuilt) - 3} more" if len(unbuilt) > 3 else "")
    return (f"no original module (an ONNX file), and archviz cannot rebuild {len(unbuilt)} of its layers in torch "
            f"({shown}): the totals are not checked; the other peers check each layer it can rebuild, one by one")


__all__ = ["TOTAL", "CrossCheck", "Figure", "PeerResult", "Quantity", "Status", "run_crosscheck"]
