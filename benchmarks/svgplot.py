"""The benchmark's chart as hand-written SVG: horizontal bars of whole-process seconds on a log scale.

One block of bars per model, input and batch (archviz, then each peer), after a block of start-up rows and before
the scale rows (archviz only); a case
that did not finish gets its status as text instead of a bar. White background, 900 px wide, for GitHub's README.
"""

from __future__ import annotations

import math
from html import escape

WIDTH = 900
LABEL_RIGHT = 250  # labels end here, bars start after it
BAR_LEFT = 260
BAR_RIGHT = 750  # room for the value text after the longest bar
BAR_HEIGHT = 12
BAR_PITCH = 16
HEADER_HEIGHT = 24
TOP = 70
COLOURS = {
    "archviz": "#1f5fbf", "archviz --no-crosscheck": "#6fa8e8", "torchinfo (cpu)": "#d62728",
    "torchinfo (meta)": "#f4a3a3", "fvcore (cpu)": "#9467bd", "FlopCounterMode (meta)": "#8c564b",
    "ptflops (cpu)": "#e377c2", "thop (cpu)": "#bcbd22", "by hand: torchinfo + fvcore (cpu)": "#555555",
}
OTHER_COLOUR = "#9aa4ad"
CHART_GROUPS = ("start-up", "zoo", "big input", "scale")


def bar_chart(rows: list[dict], machine: dict) -> str:
    blocks = chart_blocks(rows)
    values = [row["wall_s"] for _, block in blocks for row in block if row["wall_s"]]
    if not values:
        values = [1.0]
    low = 10 ** math.floor(math.log10(min(values)))
    high = max(10 ** math.ceil(math.log10(max(values))), low * 10)
    height = TOP + sum(HEADER_HEIGHT + BAR_PITCH * len(block) for _, block in blocks) + 40
    parts = [svg_header(height), title(machine)]
    parts += axis(low, high, TOP - 8, height - 30)
    y = TOP
    for heading, block in blocks:
        parts.append(text(8, y + 16, heading, weight="bold", size=13))
        y += HEADER_HEIGHT
        for row in block:
            parts += bar(row, y, low, high)
            y += BAR_PITCH
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def chart_blocks(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """[(heading, rows)], start-up first, then one block per model, input and batch, in the run's order."""
    blocks: dict[str, list[dict]] = {}
    for row in rows:
        case = row["case"]
        if case.group not in CHART_GROUPS:
            continue
        if case.group == "start-up":
            heading = "start-up and imports"
        elif case.group == "scale":
            heading = f"scale: a spec of {case.model}, {case.image}"
        else:
            heading = f"{case.model}, {case.image}, batch {case.batch}"
        blocks.setdefault(heading, []).append(row)
    return list(blocks.items())


def x_of(value: float, low: float, high: float) -> float:
    share = (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
    return BAR_LEFT + share * (BAR_RIGHT - BAR_LEFT)


def svg_header(height: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif">\n'
            f'<rect width="100%" height="100%" fill="white"/>')


def title(machine: dict) -> str:
    subtitle = (f"whole-process seconds (start-up included), median, log scale; {machine['cpu']}, "
                f"{machine['cores']} cores, {machine['ram_gb']} GB; {machine['date'][:10]}")
    return "\n".join([text(8, 22, "archviz and its peers: time to analyse a network", weight="bold", size=16),
                      text(8, 40, subtitle, size=11, colour="#444")])


def axis(low: float, high: float, top: float, bottom: float) -> list[str]:
    parts = []
    decade = low
    while decade <= high * 1.0001:
        x = x_of(decade, low, high)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
        label = f"{decade:g} s"
        parts.append(text(x, top - 4, label, size=10, anchor="middle", colour="#666"))
        parts.append(text(x, bottom + 14, label, size=10, anchor="middle", colour="#666"))
        decade *= 10
    return parts


def bar(row: dict, y: float, low: float, high: float) -> list[str]:
    case = row["case"]
    label = case.tool if case.group != "start-up" else case.tool.replace("python: ", "python -c ")
    parts = [text(LABEL_RIGHT, y + BAR_HEIGHT - 2, label, size=11, anchor="end")]
    if row["wall_s"] is None:
        return parts + [text(BAR_LEFT + 4, y + BAR_HEIGHT - 2, row["status"][:90], size=10, colour="#a33")]
    end = x_of(row["wall_s"], low, high)
    colour = COLOURS.get(case.tool, OTHER_COLOUR)
    value = f"{row['wall_s']:.3g} s" + (f"  ({row['time_ratio']:.1f}x archviz)" if row.get("time_ratio") and
                                         case.peer is not None else "")
    parts.append(f'<rect x="{BAR_LEFT}" y="{y}" width="{max(end - BAR_LEFT, 1):.1f}" height="{BAR_HEIGHT}" '
                 f'fill="{colour}"/>')
    parts.append(text(end + 4, y + BAR_HEIGHT - 2, value, size=10, colour="#333"))
    return parts


def text(x: float, y: float, content: str, *, size: int = 11, anchor: str = "start", weight: str = "normal",
         colour: str = "#111") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{colour}">{escape(content)}</text>')
