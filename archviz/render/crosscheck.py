"""The cross-check verdict under a table: each peer, how its figure was obtained, and why it differs where it does."""

from __future__ import annotations

from rich.text import Text

from archviz.analysis.report import Report


def crosscheck_text(report: Report) -> Text:
    check = report.crosscheck
    if check is None:
        return Text("Cross-check: not run (--no-crosscheck); every figure above is by formula.", style="dim")
    if getattr(check, "skipped", False):
        return Text(f"Cross-check skipped: {check.message}", style="yellow")
    text = Text("Cross-check: ", style="bold")
    text.append("all peers agree\n" if check.agrees else "DISAGREEMENT\n", style="green" if check.agrees else "bold red")
    for peer in check.peers:
        mark, style = ("✓", "green") if peer.agrees else ("✗", "red")
        text.append(f"  {mark} ", style=style)
        text.append(f"{peer.name} {peer.version}", style="bold")
        text.append(f": {peer.summary}\n")
        text.append(f"      how: {peer.how}\n", style="dim")
        for reason in peer.reasons:
            text.append(f"      note: {reason}\n", style="dim")
    return text
