"""The benchmark's outputs: the terminal table, RESULTS/<stem>.json, <stem>.md with the issue's targets, <stem>.svg.

Rows are run.py's dicts: "case" (a run.Case), "runs" (run.Run list), "status", the medians "wall_s", "call_s",
"peak_mb", "macs", the ratios "time_ratio", "memory_ratio", "macs_ratio", and "estimate_bytes" for CPU peers.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

from svgplot import bar_chart

COLUMNS = ("case", "tool", "model", "input", "batch", "whole-process s", "in-process s", "peak MB",
           "time ÷ archviz", "memory ÷ archviz", "MACs ÷ archviz", "status")
NUMERIC_COLUMNS = {"batch", "whole-process s", "in-process s", "peak MB", "time ÷ archviz", "memory ÷ archviz",
                   "MACs ÷ archviz"}
PACKAGES = ("archviz", "torch", "torchvision", "torchinfo", "fvcore", "ptflops", "thop", "rich", "typer", "pyyaml")
MAC_TOLERANCE = 0.02  # a peer whose MACs differ from archviz's by more than this is listed under the table


def case_key(tool: str, model: str = "-", image: str = "-", batch: int | None = None) -> str:
    """The name of a case in the results and for --only: "tool | model | input | b<batch>"."""
    return f"{tool} | {model} | {image} | b{batch if batch is not None else '-'}"


# ------------------------------------------------------------------------------------------------------ machine


def machine_info() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(meminfo_kb("MemTotal") / 1e6, 1),
        "ram_available_gb_at_start": round(meminfo_kb("MemAvailable") / 1e6, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "git_commit": git_commit(),
    }


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def meminfo_kb(field: str) -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:  # read-only
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


# ------------------------------------------------------------------------------------------------------- cells


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def megabytes(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def times(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"


def row_cells(row: dict) -> list[str]:
    case = row["case"]
    return [case.group, case.tool, case.model, case.image, "—" if case.batch is None else str(case.batch),
            seconds(row["wall_s"]), seconds(row["call_s"]), megabytes(row["peak_mb"]), times(row["time_ratio"]),
            times(row["memory_ratio"]), times(row["macs_ratio"]), row["status"]]


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="archviz and its peers: medians (time ÷ archviz > 1: archviz is faster)")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in NUMERIC_COLUMNS else "left")
    for row in rows:
        table.add_row(*row_cells(row))
    Console(width=220).print(table)


# --------------------------------------------------------------------------------------------------------- files


def write_results(rows: list[dict], machine: dict, settings: dict, folder: Path, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    targets = check_targets(rows, settings["timeout_s"])
    paths = [folder / f"{stem}.json", folder / f"{stem}.md", folder / f"{stem}.svg"]
    paths[0].write_text(json.dumps(json_document(rows, machine, settings, targets), indent=1) + "\n")
    paths[1].write_text(markdown_document(rows, machine, settings, targets))
    paths[2].write_text(bar_chart(rows, machine))
    return paths


def json_document(rows: list[dict], machine: dict, settings: dict, targets: list[dict]) -> dict:
    cases = []
    for row in rows:
        case = dataclasses.asdict(row["case"])
        case["peer"] = row["case"].peer.name if row["case"].peer else None
        cases.append({
            "key": row["case"].key, **case,
            "runs": [dataclasses.asdict(run) for run in row["runs"]],
            **{name: row.get(name) for name in ("status", "wall_s", "call_s", "peak_mb", "time_ratio",
                                                "memory_ratio", "macs", "archviz_macs", "macs_ratio",
                                                "estimate_bytes")},
        })
    return {"machine": machine, "settings": settings, "cases": cases, "targets": targets}


def markdown_document(rows: list[dict], machine: dict, settings: dict, targets: list[dict]) -> str:
    lines = ["# archviz benchmark (GitHub issue 5)", "", machine_line(machine, settings), ""]
    lines += markdown_table(rows)
    lines += ["", "## Targets", ""] + [f"- {target['text']}" for target in targets]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes(rows)]
    return "\n".join(lines) + "\n"


def machine_line(machine: dict, settings: dict) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items() if version)
    return (f"{machine['date']}; {machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM "
            f"({machine['ram_available_gb_at_start']} GB available at the start, load average "
            f"{machine['load_average_at_start'][0]:.2f}); Python {machine['python']}; {packages}. "
            f"Median of {settings['repeat']} runs a case (runs over 60 s: one), time-out {settings['timeout_s']:g} s; "
            f"the whole run took {settings['duration_s'] / 60:.1f} min.")


def markdown_table(rows: list[dict]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if column in NUMERIC_COLUMNS else "---"
                            for column in COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row_cells(row)) + " |")
    return lines


def notes(rows: list[dict]) -> list[str]:
    found = [
        "whole-process s: wall clock around a fresh process (start-up and imports included); in-process s: the "
        "child's own perf_counter around its work after its imports (for peers: building the model and the tool's "
        "call); peak MB: the child's ru_maxrss from os.wait4; ÷ archviz: this row over the `archviz inspect` row "
        "(cross-check on) of the same model, input and batch.",
        "alexnet_owt is torchvision's AlexNet; archviz's `alexnet` is the course's 227x227 single tower, which "
        "torchvision does not have. lenet is built for the peers from archviz's spec (archviz.torch_build.to_torch).",
        "ptflops takes the input without the batch and counts per image: at batch 1 it gets CxHxW, at a larger "
        "batch the batched tensor goes in through input_constructor and its per-image count is multiplied back.",
        "MACs ÷ archviz compares each peer's own total (torchinfo total_mult_adds, fvcore total, FlopCounterMode "
        "FLOPs / 2, ptflops and thop MACs) with archviz's MACs (conv/linear multiply-accumulates, bias excluded); "
        "the peers differ in what else they count (bias, batch norm, pooling, activations).",
    ]
    checked = [f"{row['case'].tool} on {row['case'].model} batch {row['case'].batch}: "
               f"~{row['estimate_bytes'] / 1e9:.1f} GB estimated, {row['peak_mb'] * 2**20 / 1e9:.1f} GB measured"
               for row in rows if row["wall_s"] is not None and (row.get("estimate_bytes") or 0) > 4e9]
    if checked:
        found.append("The memory estimates that decide the skips, against the peaks of the CPU peers that ran: "
                     + "; ".join(checked) + ".")
    for row in rows:
        case, macs_ratio = row["case"], row.get("macs_ratio")
        if macs_ratio is not None and abs(macs_ratio - 1) > MAC_TOLERANCE:
            found.append(f"{case.tool} on {case.model} {case.image} batch {case.batch} counts {row['macs']:,} MACs, "
                         f"{macs_ratio:.3f}x archviz's {row['archviz_macs']:,}.")
        if row["status"].startswith(("skipped", "failed", "timed out", "run ")):
            found.append(f"{case.key}: {row['status']}.")
    return found


# ------------------------------------------------------------------------------------------------------- targets


def check_targets(rows: list[dict], timeout_s: float) -> list[dict]:
    """Each target of issue 5: measured, met or not, and by how much."""
    find = {row["case"].key: row for row in rows}

    def row(tool, model="-", image="-", batch=None):
        return find.get(case_key(tool, model, image, batch))

    imports = row("python: import torch, torchinfo, fvcore")
    vgg = ("vgg16", "3x224x224", 1)
    vgg_big = ("vgg16", "3x1024x1024", 8)
    r50 = ("resnet50", "3x224x224", 1)
    deep = ("1,000 layers", "8x16x16", 1)
    deep_100k = ("100,000 layers", "8x16x16", 1)
    return [
        below("`archviz --help` under 0.15 s", row("archviz --help"), "wall_s", 0.15, "s"),
        below("`archviz list` under 0.15 s", row("archviz list"), "wall_s", 0.15, "s"),
        below("`archviz inspect vgg16 --no-crosscheck` under 0.25 s", row("archviz --no-crosscheck", *vgg),
              "wall_s", 0.25, "s"),
        below("`archviz inspect vgg16 --no-crosscheck` under 80 MB peak", row("archviz --no-crosscheck", *vgg),
              "peak_mb", 80, "MB"),
        relative("`archviz inspect resnet50` at most 1.5x the bare imports", row("archviz", *r50), imports, 1.5),
        faster("`archviz inspect resnet50` at least 1.5x faster than the by-hand route",
               row("archviz", *r50), row("by hand: torchinfo + fvcore (cpu)", *r50), 1.5, timeout_s),
        faster("`archviz inspect vgg16 --input 3x1024x1024 --batch 8` at least 20x faster than the by-hand route",
               row("archviz", *vgg_big), row("by hand: torchinfo + fvcore (cpu)", *vgg_big), 20, timeout_s),
        smaller_memory("`archviz inspect vgg16 --input 3x1024x1024 --batch 8` at most a tenth of the by-hand "
                       "route's memory", row("archviz", *vgg_big), row("by hand: torchinfo + fvcore (cpu)", *vgg_big),
                       10),
        relative("`archviz inspect vgg16 --input 3x1024x1024 --batch 64` within 1.2x the time of 224x224 batch 1",
                 row("archviz", "vgg16", "3x1024x1024", 64), row("archviz", *vgg), 1.2),
        relative("`archviz inspect vgg16 --input 3x1024x1024 --batch 64` within 1.1x the peak memory of 224x224 "
                 "batch 1", row("archviz", "vgg16", "3x1024x1024", 64), row("archviz", *vgg), 1.1, "peak_mb"),
        relative("`archviz inspect resnet152` under 2x the bare imports", row("archviz", "resnet152", "3x224x224", 1),
                 imports, 2),
        relative("the 1,000-layer network with the cross-check under 2x the bare imports", row("archviz", *deep),
                 imports, 2),
        below("the 100,000-layer spec, `--no-crosscheck --format json` to a file, under 2 s",
              row("archviz --no-crosscheck --format json > file", *deep_100k), "wall_s", 2, "s"),
        below("the 100,000-layer spec, `--no-crosscheck` table, under 2 s",
              row("archviz --no-crosscheck (table)", *deep_100k), "wall_s", 2, "s"),
        relative("`archviz report vgg16` under 2x the bare imports", row("archviz report", *vgg), imports, 2),
    ]


def target(name: str, met: bool | None, detail: str) -> dict:
    verdict = "not measured" if met is None else "**met**" if met else "**not met**"
    return {"target": name, "met": met, "detail": detail, "text": f"{name}: {verdict}; {detail}"}


def missing(name: str, *rows: dict | None) -> dict | None:
    """A "not measured" target when a row is not in this run or was skipped, else None."""
    for row in rows:
        if row is None:
            return target(name, None, "not in this run")
        if row["status"].startswith("skipped"):
            return target(name, None, f"{row['case'].tool} {row['status']}")
    return None


def failed(name: str, row: dict, base: dict) -> dict:
    """The target when the row under test (not met) or the row it is measured against (not measured) failed."""
    if row["wall_s"] is None:
        return target(name, False, f"{row['case'].tool}: {row['status']}")
    return target(name, None, f"{base['case'].tool}: {base['status']}")


def below(name: str, row: dict | None, field: str, limit: float, unit: str) -> dict:
    if gap := missing(name, row):
        return gap
    value = row[field]
    if row["wall_s"] is None:
        return failed(name, row, row)
    how = f"{(1 - value / limit):.0%} under the limit" if value < limit else f"{value / limit:.2f}x the limit"
    return target(name, value < limit, f"{value:.3g} {unit} against {limit:g} {unit}, {how}")


def relative(name: str, row: dict | None, base: dict | None, limit: float, field: str = "wall_s") -> dict:
    """row's field at most `limit` times base's."""
    if gap := missing(name, row, base):
        return gap
    if row["wall_s"] is None or base["wall_s"] is None:
        return failed(name, row, base)
    value = row[field] / base[field]
    show = (lambda amount: f"{amount:.3g} s") if field == "wall_s" else (lambda amount: f"{amount:,.0f} MB")
    detail = (f"{show(row[field])} against {show(base[field])}: {value:.2f}x, limit {limit:g}x "
              f"({'margin' if value <= limit else 'over by'} {abs(limit - value) / limit:.0%})")
    return target(name, value <= limit, detail)


def faster(name: str, row: dict | None, peer: dict | None, limit: float, timeout_s: float) -> dict:
    """peer's time at least `limit` times row's; a timed-out peer gives a lower bound."""
    if gap := missing(name, row, peer):
        return gap
    if row["wall_s"] is None or (peer["wall_s"] is None and not peer["status"].startswith("timed out")):
        return failed(name, row, peer)
    peer_s, bound = (peer["wall_s"], "") if peer["wall_s"] is not None else (timeout_s, "at least ")
    value = peer_s / row["wall_s"]
    detail = (f"archviz {row['wall_s']:.3g} s, by hand {bound}{peer_s:.3g} s: {bound}{value:.1f}x faster, "
              f"limit {limit:g}x")
    return target(name, True if value >= limit else (None if bound else False), detail)


def smaller_memory(name: str, row: dict | None, peer: dict | None, limit: float) -> dict:
    """row's peak at most 1/limit of peer's (a timed-out peer's peak so far is a lower bound)."""
    if gap := missing(name, row, peer):
        return gap
    if row["wall_s"] is None or peer["peak_mb"] is None:
        return failed(name, row, peer)
    value = peer["peak_mb"] / row["peak_mb"]
    detail = (f"archviz {row['peak_mb']:,.0f} MB, by hand {peer['peak_mb']:,.0f} MB: 1/{value:.1f} of it, "
              f"limit 1/{limit:g}")
    return target(name, value >= limit, detail)
