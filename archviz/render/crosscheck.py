"""The cross-check verdict under a table: one line when every peer agrees (each peer, how its figures were obtained
and its notes with --verbose); in full, by default, wherever a figure differs or a peer could not run."""

from __future__ import annotations

from collections import Counter

from rich.text import Text

from archviz.analysis.report import Report

PEER_TITLES = {"module": "the module itself", "torchinfo": "torchinfo", "flop_counter": "torch FlopCounterMode",
               "fvcore": "fvcore"}
SHORT_TITLES = {**PEER_TITLES, "flop_counter": "FlopCounterMode"}  # the one-line verdict, which fits 120 columns
MODULE_PEER = "module"  # archviz/crosscheck/module_peer.py: the whole model's totals, compared strictly
MAX_REASONS = 4  # unexplained differences shown per peer; --format json has every figure with its reason


def crosscheck_text(report: Report, *, verbose: bool = False) -> Text:
    """The verdict: one line where every peer agrees (unless verbose); every peer in full otherwise."""
    check = report.crosscheck
    if check is None:
        return Text("Cross-check: not run (--no-crosscheck); every figure above is by formula.", style="dim")
    if check.skipped:
        return Text(f"Cross-check skipped: {check.message}", style="yellow")
    if check.agrees and not verbose:
        return _agreement_line(check)
    text = Text("Cross-check: ", style="bold")
    wrong_totals = _wrong_totals(check)
    if check.agrees:
        text.append("every peer agrees after conversion\n", style="green")
    elif wrong_totals:
        text.append(f"archviz's totals are not the model's: {wrong_totals} differ from the module itself (below)\n",
                    style="bold red")
    elif check.unexplained:
        text.append(f"{len(check.unexplained)} unexplained difference(s)\n", style="bold red")
    else:  # nothing differs, but a peer could not run: the figures it checks are not confirmed
        skipped = ", ".join(PEER_TITLES.get(p.peer, p.peer) for p in check.peers if p.skipped)
        text.append(f"not confirmed: {skipped} skipped (below)\n", style="bold yellow")
    for peer in check.peers:
        text.append_text(_peer_text(peer))
    return text


def _agreement_line(check) -> Text:
    """'Cross-check: 4 peers agree after conversion (0.9 s): the module itself, ...; detail: -v'."""
    titles = ", ".join(SHORT_TITLES.get(peer.peer, peer.peer) for peer in check.peers)
    seconds = sum(peer.seconds for peer in check.peers)
    count = len(check.peers)
    text = Text("Cross-check: ", style="bold")
    text.append(f"{count} peer{'s' if count != 1 else ''} agree{'' if count != 1 else 's'} after conversion",
                style="green")
    text.append(f" ({seconds:.1f} s): {titles}; detail: -v")
    return text


def _wrong_totals(check) -> str:
    """'params and macs': the totals the module itself disagrees with ('' when it agrees or did not run)."""
    module = next((peer for peer in check.peers if peer.peer == MODULE_PEER), None)
    if module is None:
        return ""
    wrong = [figure.quantity.value for figure in module.totals if not figure.agrees]
    return f"{', '.join(wrong[:-1])} and {wrong[-1]}" if len(wrong) > 1 else "".join(wrong)


def _peer_text(peer) -> Text:
    """One line per peer: per quantity, how many figures were the same, equal after conversion, or explained."""
    title = PEER_TITLES.get(peer.peer, peer.peer)
    if peer.skipped:
        return Text(f"  - {title}: skipped: {peer.message}\n", style="yellow")
    mark, style = ("✓", "green") if peer.agrees else ("✗", "red")
    text = Text(f"  {mark} ", style=style)
    text.append(f"{title} {peer.version}".rstrip(), style="bold")
    text.append(f" ({peer.seconds:.1f} s): {_status_counts(peer)}\n")
    text.append(f"      how: {peer.method}\n", style="dim")
    for note in peer.notes:
        text.append(f"      note: {note}\n", style="dim")
    for figure in peer.unexplained[:MAX_REASONS]:
        text.append(f"      {figure.layer}: {figure.reason}\n", style="red")
    return text


def _status_counts(peer) -> str:
    by_quantity: dict[str, Counter] = {}
    for figure in (*peer.layers, *peer.totals):
        by_quantity.setdefault(figure.quantity.value, Counter())[figure.status.value] += 1
    parts = []
    for quantity, counts in by_quantity.items():
        detail = ", ".join(f"{n} {status}" for status, n in counts.items())
        parts.append(f"{quantity} {detail}")
    return "; ".join(parts)
