"""Speed and scale of archviz, measured against the peer tools in one run (GitHub issue 5).

    .venv/bin/python benchmarks/run.py            # everything, 3 runs a case (10-40 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # batch-1 rows and the start-up targets, 1 run a case

What is measured: archviz's commands (inspect with and without the cross-check, --help, list, report) and each
peer tool (torchinfo on the CPU and on the meta device, fvcore, torch's FlopCounterMode, ptflops, thop, and the
"by hand" route of torchinfo + fvcore) on the same models, inputs and batch sizes; the bare imports of torch as a
floor; and specs of 1,000 and 100,000 layers for scale.

How: every run of a case is a fresh process (subprocess.Popen, then os.wait4), accounted like /usr/bin/time:
  * whole-process seconds: the wall clock around the process, start-up and imports included;
  * peak MB: the child's peak resident memory, ru_maxrss of wait4's rusage (KB on Linux);
  * in-process seconds: the child times only its work after its imports with time.perf_counter() and writes it as
    a JSON line to the file named by $ARCHVIZ_BENCH_TIMING (benchmarks/timed_cli.py for archviz,
    benchmarks/peers.py for the peers).
Each case runs --repeat times (default 3) and the median is reported; a run longer than 60 s is not repeated, and a
failed or timed-out run ends its case. A case that runs past --timeout (default 300 s) is killed and recorded as
"timed out"; one that fails records the last line of its error output. Before a peer runs a network on the CPU, the
memory it needs is estimated from archviz's own figures (see estimate_bytes) and the case is skipped when that is
more than /proc/meminfo's MemAvailable. Every process writes its standard output to a file, never to a terminal.

Writes RESULTS/latest.json (every run, the medians, the machine), latest.md (the table and the issue's targets, met
or not) and latest.svg (bar chart); a run with --quick or --only writes partial.* instead, so the full results stay.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from results import case_key, machine_info, print_table, write_results  # noqa: E402

ROOT = BENCH_DIR.parent
PYTHON = sys.executable
TIMED_CLI = str(BENCH_DIR / "timed_cli.py")
PEER_DRIVER = str(BENCH_DIR / "peers.py")
TIMING_ENV = "ARCHVIZ_BENCH_TIMING"
LONG_RUN_S = 60.0  # a run longer than this is not repeated: its noise is small next to its length
GB = 1e9

# The memory a CPU peer needs: the interpreter with torch imported (measured 0.65-0.85 GB), plus, for each rule of the
# tool, factor x (activations + weights), the largest of the rules. archviz's figures (float32):
#   peak_activation_bytes - the largest single layer output of the forward pass;
#   activation_bytes      - every layer's output added up (what autograd keeps for backward; an upper bound, as
#                           in-place ReLUs share their input's storage: measured 0.55-0.8x of it for fvcore).
# Tools under torch.no_grad (torchinfo, thop) hold a layer's input and output at once, plus their hooks: 2.0 x peak.
# Tools that run with autograd on (fvcore's jit trace, ptflops) keep every activation: 1.0 x the upper bound.
INTERPRETER_BYTES = 1.0 * GB
NO_GRAD_RULE = ("peak_activation_bytes", 2.0)
AUTOGRAD_RULE = ("activation_bytes", 1.0)


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str  # the TOOLS key in peers.py
    label: str
    memory_rules: tuple[tuple[str, float], ...] = ()  # empty: runs on the meta device, allocates no tensors


PEERS = (
    Peer("torchinfo_cpu", "torchinfo (cpu)", (NO_GRAD_RULE,)),
    Peer("torchinfo_meta", "torchinfo (meta)"),
    Peer("fvcore_cpu", "fvcore (cpu)", (AUTOGRAD_RULE,)),
    Peer("flop_counter_meta", "FlopCounterMode (meta)"),
    Peer("ptflops_cpu", "ptflops (cpu)", (AUTOGRAD_RULE,)),
    Peer("thop_cpu", "thop (cpu)", (NO_GRAD_RULE,)),
    Peer("by_hand_cpu", "by hand: torchinfo + fvcore (cpu)", (NO_GRAD_RULE, AUTOGRAD_RULE)),
)
ARCHVIZ = "archviz"
ARCHVIZ_FORMULA = "archviz --no-crosscheck"
BARE_IMPORTS = "python: import torch, torchinfo, fvcore"

# alexnet_owt is torchvision's AlexNet ("one weird trick" widths, 224x224); archviz's `alexnet` is the course's
# 227x227 single tower, which torchvision does not have, so the peers compare on alexnet_owt.
ZOO_INPUTS = (("lenet", "1x32x32"), ("alexnet_owt", "3x224x224"), ("vgg16", "3x224x224"),
              ("resnet50", "3x224x224"), ("resnet152", "3x224x224"), ("googlenet", "3x224x224"))
BIG_MODELS = ("vgg16", "resnet50")
BIG_INPUT = "3x1024x1024"
BIG_BATCHES = (8, 64)
SCALE_INPUT = (8, 16, 16)
SCALE_BLOCK_LAYERS = 4  # conv3x3, batch norm, relu and the residual add


@dataclasses.dataclass
class Case:
    group: str  # start-up, zoo, big input, scale
    tool: str
    argv: list[str]
    model: str = "-"
    image: str = "-"
    batch: int | None = None
    reference: str | None = None  # key of the archviz row the ratios are against
    peer: Peer | None = None
    quick: bool = True  # part of --quick
    note: str = ""

    @property
    def key(self) -> str:
        return case_key(self.tool, self.model, self.image, self.batch)


@dataclasses.dataclass
class Run:
    wall_s: float
    peak_mb: float
    status: str  # "ok", "timed out after N s" or "failed: <last line of the error output>"
    exit_code: int | None
    stdout_bytes: int
    timing: dict  # the child's JSON line: call_s, and for peers import_s, build_s, macs, params


# ---------------------------------------------------------------------------------------------------------- cases


def archviz_argv(*args: str) -> list[str]:
    return [PYTHON, TIMED_CLI, *args]


def startup_cases(workdir: Path) -> list[Case]:
    return [
        Case("start-up", "python -c pass", [PYTHON, "-c", "pass"]),
        Case("start-up", "python: import torch, torchvision", [PYTHON, "-c", "import torch, torchvision"]),
        Case("start-up", BARE_IMPORTS, [PYTHON, "-c", "import torch, torchinfo, fvcore"]),
        Case("start-up", "archviz --help", archviz_argv("--help")),
        Case("start-up", "archviz list", archviz_argv("list")),
        Case("start-up", "archviz report", archviz_argv("report", "vgg16", "-o", str(workdir / "vgg16.html")),
             model="vgg16", image="3x224x224", batch=1, note="one HTML file, cross-check included"),
    ]


def model_cases(group: str, model: str, image: str, batch: int, quick: bool) -> list[Case]:
    """archviz with and without the cross-check, then every peer, on one model, input and batch."""
    inspect = ("inspect", model, "--input", image, "--batch", str(batch))
    reference = case_key(ARCHVIZ, model, image, batch)
    cases = [
        Case(group, ARCHVIZ, archviz_argv(*inspect), model, image, batch, reference, quick=quick),
        Case(group, ARCHVIZ_FORMULA, archviz_argv(*inspect, "--no-crosscheck"), model, image, batch, reference,
             quick=quick),
    ]
    for peer in PEERS:
        argv = [PYTHON, PEER_DRIVER, peer.name, model, image, str(batch)]
        note = "input given without batch; batch via input_constructor" if peer.name == "ptflops_cpu" else ""
        cases.append(Case(group, peer.label, argv, model, image, batch, reference, peer, quick, note))
    return cases


def scale_spec(path: Path, blocks: int) -> Path:
    """A spec of `blocks` residual blocks (conv3x3, batch norm, relu, add): 4 x blocks layers."""
    channels, height, width = SCALE_INPUT
    path.write_text(f"""name: deep_{blocks * SCALE_BLOCK_LAYERS}
description: generated by benchmarks/run.py, {blocks} residual blocks of conv3x3, batch norm, relu and add
input: [{channels}, {height}, {width}]
layers:
  - add:
      - - conv2d: {{out_channels: {channels}, kernel_size: 3, padding: 1, bias: false}}
        - batchnorm2d: {{}}
        - relu: {{}}
      - []
    repeat: {blocks}
""")
    return path


def scale_cases(workdir: Path) -> list[Case]:
    deep_1k = str(scale_spec(workdir / "deep_1000.yaml", 1_000 // SCALE_BLOCK_LAYERS))
    deep_100k = str(scale_spec(workdir / "deep_100000.yaml", 100_000 // SCALE_BLOCK_LAYERS))
    image = "x".join(map(str, SCALE_INPUT))
    return [
        Case("scale", ARCHVIZ, archviz_argv("inspect", deep_1k), "1,000 layers", image, 1),
        Case("scale", ARCHVIZ_FORMULA, archviz_argv("inspect", deep_1k, "--no-crosscheck"), "1,000 layers", image, 1),
        Case("scale", "archviz --no-crosscheck --format json > file",
             archviz_argv("inspect", deep_100k, "--no-crosscheck", "--format", "json"), "100,000 layers", image, 1),
        Case("scale", "archviz --no-crosscheck (table)", archviz_argv("inspect", deep_100k, "--no-crosscheck"),
             "100,000 layers", image, 1, note="the table written to a file"),
    ]


def all_cases(workdir: Path) -> list[Case]:
    cases = startup_cases(workdir)
    for model, image in ZOO_INPUTS:
        cases += model_cases("zoo", model, image, 1, quick=True)
    for model in BIG_MODELS:
        for batch in BIG_BATCHES:
            cases += model_cases("big input", model, BIG_INPUT, batch, quick=False)
    return cases + scale_cases(workdir)


def select_cases(cases: list[Case], quick: bool, only: list[str]) -> list[Case]:
    """The cases --quick and --only keep, with the archviz rows their ratios need."""
    chosen = [case for case in cases if (case.quick or not quick)
              and (not only or any(text.lower() in case.key.lower() for text in only))]
    needed = {case.reference for case in chosen} | {case.key for case in chosen}
    return [case for case in cases if case.key in needed]


# ------------------------------------------------------------------------------------------------ memory estimate


def memory_available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


@functools.cache
def archviz_totals(model: str, image: str, batch: int) -> dict:
    """The totals of `archviz inspect MODEL --input IMAGE --batch BATCH --format json --no-crosscheck`."""
    argv = archviz_argv("inspect", model, "--input", image, "--batch", str(batch), "--format", "json",
                        "--no-crosscheck")
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(last_line(done.stderr) or f"exit code {done.returncode}")
    return json.loads(done.stdout)["totals"]


def estimate_bytes(peer: Peer, totals: dict) -> float:
    """Memory a CPU peer needs: the interpreter, plus the largest rule's factor x (activations + weights)."""
    weights = totals["param_bytes"] + 4 * totals["buffers"]
    return INTERPRETER_BYTES + max(factor * (totals[field] + weights) for field, factor in peer.memory_rules)


def memory_skip(case: Case) -> tuple[str | None, float | None]:
    """("skipped: ...", estimate) when the peer would not fit in the memory available now, else (None, estimate)."""
    if case.peer is None or not case.peer.memory_rules:
        return None, None
    try:
        needed = estimate_bytes(case.peer, archviz_totals(case.model, case.image, case.batch))
    except Exception as error:  # without an estimate, do not risk running the machine out of memory
        return f"skipped: no memory estimate (archviz failed: {error})", None
    available = memory_available_bytes()
    if needed > available:
        return f"skipped: needs ~{needed / GB:.1f} GB, machine has {available / GB:.1f} GB", needed
    return None, needed


# ---------------------------------------------------------------------------------------------------- measuring


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def kill_group(pid: int, fired: threading.Event) -> None:
    fired.set()
    try:
        os.killpg(pid, signal.SIGKILL)  # the child leads its own session: this ends it and its children only
    except ProcessLookupError:
        pass


def run_once(case: Case, timeout_s: float, workdir: Path) -> Run:
    """One fresh process: wall clock around it, its peak RSS from wait4, its own timing from the timing file."""
    stdout_path, stderr_path, timing_path = (workdir / "stdout", workdir / "stderr", workdir / "timing.json")
    timing_path.unlink(missing_ok=True)
    env = {**os.environ, TIMING_ENV: str(timing_path)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed package runs: compiled once, not at every start
    fired = threading.Event()
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(case.argv, stdout=stdout, stderr=stderr, env=env, cwd=ROOT,
                                   start_new_session=True)
        timer = threading.Timer(timeout_s, kill_group, (process.pid, fired))
        timer.start()
        _pid, wait_status, usage = os.wait4(process.pid, 0)
        wall_s = time.perf_counter() - start
        timer.cancel()
    exit_code = os.waitstatus_to_exitcode(wait_status)
    process.returncode = exit_code  # reaped by wait4: Popen must not wait for it again
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    if fired.is_set():
        status = f"timed out after {timeout_s:g} s"
    elif exit_code != 0:
        status = f"failed: {last_line(stderr_path.read_text(errors='replace')) or f'exit code {exit_code}'}"
    else:
        status = "ok"
    return Run(wall_s, usage.ru_maxrss / 1024, status, exit_code, stdout_path.stat().st_size, timing)


def run_case(case: Case, repeat: int, timeout_s: float, workdir: Path) -> dict:
    """The case's runs (up to `repeat`), their medians, and its status."""
    skipped, estimate = memory_skip(case)
    runs: list[Run] = []
    if not skipped:
        for _ in range(repeat):
            runs.append(run_once(case, timeout_s, workdir))
            if runs[-1].status != "ok" or runs[-1].wall_s > LONG_RUN_S:
                break
    return {"case": case, "runs": runs, "status": skipped or case_status(runs), "estimate_bytes": estimate,
            **medians(runs)}


def case_status(runs: list[Run]) -> str:
    failed = [run for run in runs if run.status != "ok"]
    if not failed:
        return "ok"
    return failed[0].status if len(runs) == 1 else f"run {len(runs)}: {failed[0].status}"


def medians(runs: list[Run]) -> dict:
    """Medians of the whole-process time, in-process time and peak memory; a timed-out run gives its peak only."""
    ok = [run for run in runs if run.status == "ok"]
    calls = [run.timing["call_s"] for run in ok if "call_s" in run.timing]
    peaks = [run.peak_mb for run in ok] or [max(run.peak_mb for run in runs)] if runs else []
    return {
        "wall_s": statistics.median(run.wall_s for run in ok) if ok else None,
        "call_s": statistics.median(calls) if calls else None,
        "peak_mb": statistics.median(peaks) if peaks else None,
        "macs": next((run.timing.get("macs") for run in ok if run.timing.get("macs") is not None), None),
    }


def add_ratios(rows: list[dict]) -> None:
    """Each row's time and memory as a multiple of its archviz row's, and its MACs as a fraction of archviz's."""
    by_key = {row["case"].key: row for row in rows}
    for row in rows:
        case = row["case"]
        reference = by_key.get(case.reference) if case.reference and case.reference != case.key else None
        row["time_ratio"] = ratio(row["wall_s"], reference and reference["wall_s"])
        row["memory_ratio"] = ratio(row["peak_mb"], reference and reference["peak_mb"]) if row["runs"] else None
        row["archviz_macs"] = archviz_macs(case) if row["macs"] is not None else None
        row["macs_ratio"] = ratio(row["macs"], row["archviz_macs"])


def archviz_macs(case: Case) -> int | None:
    try:
        return archviz_totals(case.model, case.image, case.batch)["macs"]
    except Exception:
        return None


def ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value is not None and reference else None


# --------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run a case, batch-1 rows and start-up only")
    parser.add_argument("--only", action="append", default=[], metavar="SUBSTRING",
                        help="only the cases whose 'tool | model | input | batch' contains this (repeatable)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per case, median reported (default 3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run is killed (default 300)")
    parser.add_argument("-o", "--output", type=Path, default=BENCH_DIR / "results", help="results folder")
    parser.add_argument("--from-json", type=Path, metavar="RESULTS_JSON",
                        help="run nothing: write the table, .md and .svg again from a results .json")
    return parser.parse_args(argv)


def load_results(path: Path) -> tuple[list[dict], dict, dict]:
    """The rows, machine and settings of a results .json that this script wrote."""
    document = json.loads(path.read_text())
    peers = {peer.name: peer for peer in PEERS}
    fields = {field.name for field in dataclasses.fields(Case)} - {"peer"}
    rows = []
    for saved in document["cases"]:
        case = Case(**{name: saved[name] for name in fields}, peer=peers.get(saved["peer"]))
        runs = [Run(**run) for run in saved["runs"]]
        rows.append({**saved, "case": case, "runs": runs})
    return rows, document["machine"], document["settings"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        rows, machine, settings = load_results(args.from_json)
        print_table(rows)
        for path in write_results(rows, machine, settings, args.output, args.from_json.stem):
            print(f"wrote {path}")
        return 0
    repeat = args.repeat or (1 if args.quick else 3)
    started = time.time()
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="archviz-bench-") as tmp:
        workdir = Path(tmp)
        cases = select_cases(all_cases(workdir), args.quick, args.only)
        if not cases:
            print(f"no case matches {args.only}; the cases are named 'tool | model | input | bBATCH'")
            return 2
        rows = []
        for number, case in enumerate(cases, 1):
            print(f"[{number}/{len(cases)}] {case.key} ...", end=" ", flush=True)
            rows.append(run_case(case, repeat, args.timeout, workdir))
            print(progress_text(rows[-1]), flush=True)
        add_ratios(rows)
    settings = {"repeat": repeat, "timeout_s": args.timeout, "quick": args.quick, "only": args.only,
                "duration_s": time.time() - started}
    print_table(rows)
    stem = "partial" if args.quick or args.only else "latest"
    for path in write_results(rows, machine, settings, args.output, stem):
        print(f"wrote {path}")
    return 0


def progress_text(row: dict) -> str:
    if row["wall_s"] is None:
        return row["status"]
    trouble = "" if row["status"] == "ok" else f", {row['status']}"
    return f"{row['wall_s']:.3g} s, {row['peak_mb']:.0f} MB ({len(row['runs'])} runs){trouble}"


if __name__ == "__main__":
    sys.exit(main())
