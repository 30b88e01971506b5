"""What a cross-check found: per peer, every compared figure beside ours, converted to our convention, with reasons.

Pure data, no torch, so renderers can read it. Our convention (MACs without bias, FLOPs = 2 x MACs, "other ops") is
stated once in archviz/ops/base.py. A peer agrees when every checked figure equals ours after a stated conversion;
a difference that no stated conversion or known reason accounts for is "unexplained", which means a bug in archviz
(or in the peer).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

TOTAL = "(total)"  # the layer name of a figure for the whole model


class Quantity(enum.StrEnum):
    OUT_SHAPE = "out_shape"  # without the batch
    PARAMS = "params"
    BUFFERS = "buffers"  # elements
    MACS = "macs"  # whole batch
    OTHER_OPS = "other_ops"  # whole batch


class Status(enum.StrEnum):
    SAME = "same"  # the peer reports our figure as it is
    CONVERTED = "converted"  # equal after the conversion in `reason`
    EXPLAINED = "explained"  # differs for the reason given (the peer counts something else, or skips an op)
    UNEXPLAINED = "unexplained"  # differs and nothing we know accounts for it: a bug


@dataclass(frozen=True)
class Figure:
    """One figure of one layer (or of the total): ours, as the peer reported it, and in our convention."""

    layer: str
    quantity: Quantity
    ours: Any
    reported: Any  # None: the peer has no such figure for this layer
    converted: Any
    reason: str = ""  # the conversion, or why the figures differ; set whenever reported differs from ours
    checked: bool = True  # False: the peer defines this figure differently, so it is shown, not required to agree
    explained: bool = True

    @property
    def status(self) -> Status:
        if self.reported == self.ours:
            return Status.SAME
        if self.converted == self.ours:
            return Status.CONVERTED
        return Status.EXPLAINED if self.explained else Status.UNEXPLAINED

    @property
    def agrees(self) -> bool:
        """Equal after conversion; a figure that is not checked only needs its difference explained."""
        if not self.checked:
            return self.explained
        return self.status in (Status.SAME, Status.CONVERTED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer, "quantity": self.quantity.value, "ours": _plain(self.ours),
            "reported": _plain(self.reported), "converted": _plain(self.converted), "status": self.status.value,
            "checked": self.checked, "agrees": self.agrees, "reason": self.reason,
        }


def compare(peer: str, layer: str, quantity: Quantity, ours, reported, converted=None, *, conversion: str = "",
            known: str = "", checked: bool = True) -> Figure:
    """A Figure whose reason is set whenever the peer's number is not ours as it stands.

    conversion: how `reported` became `converted` (None: no conversion, converted = reported).
    known: why the converted figure may still differ (the peer skips or defines something differently).
    """
    converted = reported if converted is None else converted
    if reported == ours:
        return Figure(layer, quantity, ours, reported, converted, "", checked)
    if converted == ours:
        return Figure(layer, quantity, ours, reported, converted, conversion or "equal in our convention", checked)
    if known:
        reason = f"{conversion}; {known}" if conversion else known
        return Figure(layer, quantity, ours, reported, converted, reason, checked)
    said = f"{_text(reported)}" + (f" ({conversion}: {_text(converted)})" if converted != reported else "")
    reason = f"unexplained: {peer} reports {said} where archviz has {_text(ours)}"
    return Figure(layer, quantity, ours, reported, converted, reason, checked, explained=False)


@dataclass(frozen=True)
class PeerResult:
    """One peer's figures beside ours. skipped: the peer could not run (see message); error: it failed."""

    peer: str
    version: str
    method: str  # how the figures were obtained, e.g. "torchinfo.summary on the meta device, batch 1"
    layers: tuple[Figure, ...] = ()
    totals: tuple[Figure, ...] = ()
    notes: tuple[str, ...] = ()  # conventions applied to every layer, ops the peer skipped or does not support
    seconds: float = 0.0
    skipped: bool = False
    message: str = ""

    @property
    def agrees(self) -> bool:
        return not self.skipped and all(f.agrees for f in (*self.layers, *self.totals))

    @property
    def differences(self) -> tuple[Figure, ...]:
        """Every figure the peer does not report exactly as ours, each with its reason."""
        return tuple(f for f in (*self.layers, *self.totals) if f.status is not Status.SAME)

    @property
    def unexplained(self) -> tuple[Figure, ...]:
        return tuple(f for f in (*self.layers, *self.totals) if not f.explained)

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer, "version": self.version, "method": self.method, "agrees": self.agrees,
            "skipped": self.skipped, "message": self.message, "seconds": round(self.seconds, 3),
            "notes": list(self.notes), "totals": [f.to_dict() for f in self.totals],
            "layers": [f.to_dict() for f in self.layers],
            "differences": [f.to_dict() for f in self.differences],
        }


@dataclass(frozen=True)
class CrossCheck:
    """Every peer's result for one report. skipped: torch is not installed (message says how to install it)."""

    model: str
    input: tuple[int, ...]
    batch: int
    peers: tuple[PeerResult, ...] = ()
    skipped: bool = False
    message: str = ""
    conventions: str = field(default="")

    @property
    def agrees(self) -> bool:
        """True only if every peer ran and agrees with us after conversion."""
        return not self.skipped and bool(self.peers) and all(p.agrees for p in self.peers)

    @property
    def unexplained(self) -> tuple[tuple[str, Figure], ...]:
        return tuple((p.peer, f) for p in self.peers for f in p.unexplained)

    def peer(self, name: str) -> PeerResult:
        for result in self.peers:
            if result.peer == name:
                return result
        raise KeyError(f"no peer {name!r}; peers: {', '.join(p.peer for p in self.peers)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists for shapes, plain ints and strings."""
        return {
            "model": self.model, "input": list(self.input), "batch": self.batch, "agrees": self.agrees,
            "skipped": self.skipped, "message": self.message, "conventions": self.conventions,
            "peers": [p.to_dict() for p in self.peers],
        }


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _text(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return f"{value:,}" if isinstance(value, int) else str(value)
