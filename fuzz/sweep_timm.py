"""Sweep timm's model registry through archviz, outside pytest: which models archviz analyses, and how exactly.

    .venv/bin/python fuzz/sweep_timm.py                        # every name of timm.list_models() (~1,370; hours)
    .venv/bin/python fuzz/sweep_timm.py --families             # one model per timm family (module), ~100
    .venv/bin/python fuzz/sweep_timm.py --names resnet18 vit_tiny_patch16_224 --crosscheck
    .venv/bin/python fuzz/sweep_timm.py --shard 0/4            # the first of four interleaved quarters
    .venv/bin/python fuzz/sweep_timm.py --summary              # only rewrite the markdown from the JSON lines

Each worker process measures up to --per-process models in turn (a fresh process for each would spend most of the
run importing torch and timm); a crash or a hang costs one row, under --timeout seconds a model, and the worker
starts again with the names after it. The run is resumable: names already in the results file are skipped (delete
their lines to run them again).

Per model, built with timm.create_model(NAME, pretrained=False) on the meta device (nothing is downloaded), at its
pretrained_cfg input_size with each side capped at --max-side pixels (where a fixed-size model is capped, img_size
is passed to create_model too, and the row says so), batch 1:
  * status: ok (archviz.inspect returned), error (an ArchvizError: the one line a user sees), traceback (any other
    exception inside archviz: our bug; its type, first line and innermost archviz frame), timeout, or crash;
  * the trace method (Graph.origin.method: fx, or the fallback where fx cannot trace); the layers archviz has no
    formula for, split into measured (Totals.measured, with weight_macs and sized_macs) and uncounted;
  * params: archviz's total against sum(p.numel() for p in module.parameters());
  * MACs: archviz's total against FlopCounterMode's FLOPs / 2 for one forward pass on the meta device;
  * with --crosscheck, archviz.inspect(..., crosscheck=True).crosscheck.agrees;
  * seconds, as the issue's speed target states it (archviz.inspect(module) within 1.5x of one FlopCounterMode
    forward pass of the same module on the meta device, median over the sweep): archviz.inspect of the meta-device
    module, and FlopCounterMode's forward pass on it, each the faster of two runs, after a warm-up on a one-layer
    model in the same process, so neither pays for first-call imports. The figures themselves come from
    archviz.inspect("timm:NAME"), the path a user takes, whose seconds (the model's construction included) are
    kept as inspect_source_s.
Results: fuzz/results/timm_sweep.jsonl (one JSON object per model) and fuzz/results/timm_sweep.md (summary, the
failures grouped by message, one row per model).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "fuzz" / "results" / "timm_sweep.jsonl"
MAX_SIDE = 384  # pixels: 1024x1024 detection-sized inputs make a meta-device trace slow and say nothing more
SIDE_STEP = 224  # a capped side stays a multiple of gcd(side, 224): ViTs' patches (14, 16), CNNs' stride 32
TIMEOUT_S = 120
PER_PROCESS = 25  # models one worker process measures in turn
MACS_CLOSE, MACS_NEAR = 0.005, 0.01  # the targets: MACs within 0.5% (and 1%) of FlopCounterMode / 2
SPEED_TARGET = 1.5  # inspect within 1.5x of one FlopCounterMode forward pass, median
TIMED_RUNS = 2  # each time the faster of two runs: a garbage collection in one is not the tracer's speed

sys.path.insert(0, str(ROOT))


# --- which models ---------------------------------------------------------------------------------------------------

def family_of(name: str) -> str:
    """The timm module (family) a model is registered from: 'resnet', 'vision_transformer', ..."""
    from timm.models import get_pretrained_cfg  # noqa: F401  (imports the registry)
    from timm.models._registry import _model_to_module

    return _model_to_module[name.partition(".")[0]]


def one_per_family() -> list[str]:
    """One model per timm family: the one with the smallest pretrained input, then the first by name; timm's tiny
    test_* models only for a family that has nothing else."""
    import timm
    from timm.models import get_pretrained_cfg

    chosen: dict[str, tuple] = {}
    for name in timm.list_models():
        height, width = get_pretrained_cfg(name).input_size[1:]
        key = (name.startswith("test_"), height * width, name)
        family = family_of(name)
        chosen[family] = min(chosen.get(family, key), key)
    return sorted(key[-1] for key in chosen.values())


def shard(names: list[str], text: str) -> list[str]:
    """names[i::n] for --shard i/n (0 <= i < n)."""
    index, _, count = text.partition("/")
    index, count = int(index), int(count)
    if not 0 <= index < count:
        raise SystemExit(f"--shard {text}: expected i/n with 0 <= i < n")
    return names[index::count]


# --- one model, in its own process -----------------------------------------------------------------------------------

def capped_input(name: str, max_side: int) -> tuple[tuple[int, int, int], dict, str]:
    """(input shape, kwargs for create_model, a note when the cap applied)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    channels, height, width = cfg.input_size
    if max(height, width) <= max_side:
        return (channels, height, width), {}, ""
    capped = (channels, _capped_side(height, max_side), _capped_side(width, max_side))
    kwargs = {"img_size": list(capped[1:])} if cfg.fixed_input_size else {}
    note = (f"input capped from {height}x{width} to {capped[1]}x{capped[2]}"
            + (" (img_size passed: a fixed-size model)" if kwargs else ""))
    return capped, kwargs, note


def _capped_side(side: int, max_side: int) -> int:
    """The largest side <= max_side that keeps the divisors a model may need (a 518 = 37 x 14 ViT: 378 = 27 x 14)."""
    if side <= max_side:
        return side
    step = math.gcd(side, SIDE_STEP)
    return max(step, max_side // step * step)


def measure(name: str, *, max_side: int, crosscheck: bool) -> dict:
    """One row: what archviz makes of timm:NAME, beside the module's own params and FlopCounterMode's MACs."""
    import warnings

    warnings.simplefilter("ignore")
    shape, kwargs, note = capped_input(name, max_side)
    _warm_up()
    peers = _peer_figures(name, shape, kwargs)
    if kwargs and "flop_counter_error" in peers:  # the model refuses the capped size itself: its own size, said so
        shape, kwargs, _ = capped_input(name, max_side=10**6)
        note = "input not capped: given img_size at the cap, the model itself does not run (FlopCounterMode fails too)"
        peers = _peer_figures(name, shape, kwargs)
    row = {"name": name, "family": family_of(name), "input": list(shape), "kwargs": kwargs, "note": note}
    row.update(peers)
    row.update(_archviz_figures(name, shape, kwargs, crosscheck=crosscheck))
    return row


def _warm_up() -> None:
    """One tiny model through archviz and FlopCounterMode, so the timed runs pay no first-call imports."""
    import torch

    import archviz

    archviz.inspect(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()), input=(3, 8, 8))
    _flop_counter_macs(torch.nn.Conv2d(3, 4, 3).to("meta"), (3, 8, 8))


def _peer_figures(name: str, shape, kwargs: dict) -> dict:
    from archviz.trace.load import build_meta, parse_source

    try:
        model = build_meta(parse_source(f"timm:{name}", kwargs=kwargs))
    except Exception as error:
        return {"module_error": _one_line(error)}
    figures = {"params_module": sum(p.numel() for p in model.parameters())}
    try:
        seconds = []
        for _ in range(TIMED_RUNS):
            start = time.perf_counter()
            figures["macs_flop_counter"] = _flop_counter_macs(model, shape)
            seconds.append(time.perf_counter() - start)
        figures["flop_counter_s"] = round(min(seconds), 4)
    except Exception as error:
        figures["flop_counter_error"] = _one_line(error)
    return figures


def _inspect_module_seconds(name: str, shape, kwargs: dict) -> float | None:
    """archviz.inspect(module) on a meta-device timm model, the faster of TIMED_RUNS runs (a fresh build: the
    FlopCounterMode pass may have filled a model's caches)."""
    import archviz
    from archviz.trace.load import build_meta, parse_source

    seconds = []
    try:
        model = build_meta(parse_source(f"timm:{name}", kwargs=kwargs))
        for _ in range(TIMED_RUNS):
            start = time.perf_counter()
            archviz.inspect(model, input=shape)
            seconds.append(time.perf_counter() - start)
    except Exception:  # the row's status comes from the source's run; this one only times
        return None
    return round(min(seconds), 4)


def _flop_counter_macs(model, shape) -> int:
    """FlopCounterMode's FLOPs / 2 for one forward pass at batch 1 on the meta device.

    Under torch.no_grad, FlopCounterMode's module tracker fails on a module whose input is a bare nn.Parameter
    (timm's CaiT passes its cls_token: "AssertionError: Expected gradient function to be set", torch 2.14); such a
    model is counted again with autograd on, which changes no FLOP count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from archviz.crosscheck.common import without_dynamo_import

    for grad in (False, True):
        counter = FlopCounterMode(display=False)
        try:
            with without_dynamo_import(), torch.set_grad_enabled(grad), counter:
                model(torch.empty((1, *shape), device="meta"))
        except AssertionError:
            if grad:
                raise
            continue
        return counter.get_total_flops() // 2
    raise AssertionError("unreachable")


def _archviz_figures(name: str, shape, kwargs: dict, *, crosscheck: bool) -> dict:
    import archviz
    from archviz.errors import ArchvizError

    start = time.perf_counter()
    try:
        report = archviz.inspect(f"timm:{name}", input=shape, kwargs=kwargs)
    except ArchvizError as error:
        return {"status": "error", "error": str(error), "error_type": type(error).__name__}
    except Exception as error:  # our bug: the team needs the type, the message and where it was raised
        return {"status": "traceback", "error": _one_line(error), "error_type": type(error).__name__,
                "where": _innermost_archviz_frame(error)}
    seconds = time.perf_counter() - start
    inspect_module_s = _inspect_module_seconds(name, shape, kwargs)
    graph = report.graph
    totals = report.totals
    uncounted = set(totals.uncounted)
    opaque = Counter(str(node.attrs.get("target", "?")) for node in graph.nodes if node.name in uncounted)
    measured = getattr(totals, "measured", ())  # layers with no formula whose MACs archviz measured
    figures = {
        "status": "ok", "method": graph.origin.method, "layers": len(graph.nodes),
        "params_archviz": totals.params, "uncalled_params": sum(n for _, n in graph.origin.uncalled),
        "macs_archviz": totals.macs, "uncounted": len(totals.uncounted), "measured": len(measured),
        "measured_macs": sum(layer.macs for layer in report.layers if layer.name in set(measured))
        + getattr(totals, "weight_macs", 0) + getattr(totals, "sized_macs", 0),
        "opaque_targets": dict(opaque.most_common()), "inspect_s": inspect_module_s,
        "inspect_source_s": round(seconds, 3),
    }
    if crosscheck:
        figures.update(_crosscheck(report))
    return figures


def _crosscheck(report) -> dict:
    from archviz.crosscheck import run_crosscheck

    try:
        check = run_crosscheck(report).crosscheck
    except Exception as error:
        return {"crosscheck_error": _one_line(error)}
    return {"agrees": bool(check.agrees), "disagreeing": {peer.peer: _first_disagreement(peer) for peer in check.peers
                                                          if not peer.agrees}}


def _first_disagreement(peer) -> str:
    """Why one peer does not agree: skipped (its message), or its first unexplained figure."""
    if peer.skipped:
        return f"skipped: {peer.message}"[:200]
    figure = next((f for f in (*peer.totals, *peer.layers) if not f.agrees), None)
    if figure is None:
        return ""
    return (f"{figure.layer} {figure.quantity.value}: ours {figure.ours} vs {figure.converted} "
            f"({figure.status.value}) {figure.reason}")[:200]


def _one_line(error: BaseException) -> str:
    first = (str(error).strip().split("\n") or [""])[0]
    return f"{type(error).__name__}: {first[:300]}"


def _innermost_archviz_frame(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "/archviz/" in f.filename]
    if not frames:
        return ""
    frame = frames[-1]
    return f"{Path(frame.filename).relative_to(ROOT)}:{frame.lineno} ({frame.name})"


def run_many(names: list[str], *, max_side: int, crosscheck: bool, timeout_s: float):
    """measure() for each name in a worker process of its own, one JSON row per model as it finishes. A model that
    hangs past timeout_s or kills the process costs its row; a new worker takes the names after it."""
    names = list(names)
    while names:
        command = [sys.executable, __file__, "--many", *names, "--max-side", str(max_side)]
        command += ["--crosscheck"] if crosscheck else []
        worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in worker.stdout] + [lines.put(None)],
                         daemon=True).start()
        threading.Thread(target=worker.stderr.read, daemon=True).start()  # a full stderr pipe would block it
        while names:
            start = time.perf_counter()
            line = _next_row(lines, timeout_s)
            if line is None or line == "timeout":
                worker.kill()
                worker.wait()
                status, error = ("timeout", f"no result within {timeout_s:g} s") if line else (
                    "crash", f"the worker process ended (exit status {worker.returncode})")
                yield {"name": names.pop(0), "status": status, "error": error}
                break
            row = json.loads(line)
            row["process_s"] = round(time.perf_counter() - start, 1)
            names.remove(row["name"])
            yield row
        else:
            worker.wait()


def _next_row(lines: queue.Queue, timeout_s: float) -> str | None:
    """The worker's next JSON row; None when it ended, "timeout" when none came in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            return "timeout"
        if line is None or line.startswith("{"):
            return line
        if time.monotonic() > deadline:
            return "timeout"


# --- results ----------------------------------------------------------------------------------------------------------

def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def archviz_commit() -> str:
    """The commit the run measured, '+changes' when archviz/ differs from it (others may be editing the tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "archviz") else "")


def sweep(names: list[str], *, path: Path, workers: int, max_side: int, crosscheck: bool, timeout_s: float,
          per_process: int = PER_PROCESS) -> None:
    done = {row["name"] for row in read_rows(path)}
    todo = [name for name in names if name not in done]
    print(f"{len(names)} models, {len(names) - len(todo)} already in {path.name}, {len(todo)} to run", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)

    lock, written = threading.Lock(), [0]

    def chunk(names: list[str]) -> None:
        for row in run_many(names, max_side=max_side, crosscheck=crosscheck, timeout_s=timeout_s):
            row = {**row, "archviz": archviz_commit(), "date": datetime.date.today().isoformat()}
            with lock:
                out.write(json.dumps(row) + "\n")
                out.flush()
                written[0] += 1
                print(f"[{written[0]}/{len(todo)}] {row['name']}: {row['status']} {row.get('error', '')[:100]}",
                      flush=True)

    chunks = [todo[i:i + per_process] for i in range(0, len(todo), per_process)]
    with path.open("a") as out, ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(chunk, chunks))


def macs_gap(row: dict) -> float | None:
    """|ours - FlopCounterMode/2| / (FlopCounterMode/2), or None when either is missing."""
    ours, theirs = row.get("macs_archviz"), row.get("macs_flop_counter")
    if ours is None or theirs is None:
        return None
    return 0.0 if ours == theirs else abs(ours - theirs) / max(theirs, 1)


def signed_gap(row: dict) -> float:
    """(ours - FlopCounterMode/2) / (FlopCounterMode/2): below zero where archviz counts less."""
    return (row["macs_archviz"] - row["macs_flop_counter"]) / max(row["macs_flop_counter"], 1)


def params_exact(row: dict) -> bool:
    return row.get("params_archviz") is not None and row.get("params_archviz") == row.get("params_module")


def formula_exact(row: dict) -> bool:
    """The total equals FlopCounterMode/2 and no MAC of it is measured (layers without a formula count none)."""
    return macs_gap(row) == 0 and not row.get("measured_macs") and not row.get("uncounted")


def wrong_but_agrees(row: dict) -> bool:
    """The cross-check said it agrees, yet params or MACs differ from the module's own (the worst kind of wrong)."""
    gap = macs_gap(row)
    return row.get("agrees") is True and (not params_exact(row) or gap is None or gap > MACS_NEAR)


def right_but_disagrees(row: dict) -> bool:
    """params and MACs equal the module's and FlopCounterMode's, yet the cross-check does not agree."""
    return row.get("agrees") is False and params_exact(row) and macs_gap(row) == 0


def error_group(row: dict) -> str:
    """The error with the model's own names and numbers taken out, so the same cause groups together."""
    text = row.get("error", "")
    text = text.replace(f"timm:{row['name']}", "timm:NAME").replace(row["name"], "NAME")
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"\d+", "N", text)
    kind = f"[{row['status']}] "
    where = f" (at {row['where']})" if row.get("where") else ""
    return kind + text[:220] + where


def summary_lines(rows: list[dict], *, title: str) -> list[str]:
    total = len(rows)
    analysed = [r for r in rows if r["status"] == "ok"]
    gaps = [macs_gap(r) for r in analysed]
    ratios = [r["inspect_s"] / r["flop_counter_s"] for r in analysed if r.get("flop_counter_s") and r.get("inspect_s")]
    checked = [r for r in analysed if "agrees" in r]
    statuses = Counter(r["status"] for r in rows)

    def share(count: int, of: int) -> str:
        return f"{count} of {of} ({100 * count / of:.1f}%)" if of else "0 of 0"

    commits = Counter(r.get("archviz", "unknown") for r in rows)
    lines = [f"# {title}", ""]
    lines += [
        f"- {total} models; archviz at commit {', '.join(f'{c} ({n} models)' for c, n in commits.most_common())}",
        f"- analysed (archviz.inspect returned): {share(len(analysed), total)}; "
        + ", ".join(f"{status}: {count}" for status, count in statuses.most_common()),
        f"- tracebacks (an exception inside archviz that is not an ArchvizError: our bug): {statuses['traceback']}",
        f"- params exact (archviz total = sum(p.numel()) of the module), of those analysed: "
        f"{share(sum(params_exact(r) for r in analysed), len(analysed))}",
        f"- MACs within {MACS_CLOSE:.1%} of FlopCounterMode/2: "
        f"{share(sum(g is not None and g <= MACS_CLOSE for g in gaps), len(analysed))}; within {MACS_NEAR:.0%}: "
        f"{share(sum(g is not None and g <= MACS_NEAR for g in gaps), len(analysed))}; exactly equal: "
        f"{share(sum(g == 0 for g in gaps), len(analysed))}",
        "- MACs by formula alone, equal to FlopCounterMode/2: "
        f"{share(sum(map(formula_exact, analysed)), len(analysed))}",
        "- with layers that have no formula, their MACs measured by archviz (FlopCounterMode on that call, so not an "
        f"independent check): {sum(bool(r.get('measured')) for r in analysed)}, of which "
        f"{sum(bool(r.get('measured_macs')) for r in analysed)} with measured MACs above 0; with layers left "
        f"uncounted: {sum(bool(r.get('uncounted')) for r in analysed)}",
        "- traced by: " + ", ".join(f"{method}: {count}" for method, count in
                                    Counter(r.get("method") for r in analysed).most_common()),
        "- wrong but agrees (cross-check agrees, params or MACs off by more than 1%): "
        + (f"{sum(wrong_but_agrees(r) for r in checked)} of {len(checked)} cross-checked" if checked
           else "not measured (run with --crosscheck)"),
        *([_right_but_disagrees_line(checked)] if checked else []),
        f"- time, archviz.inspect(module) / one FlopCounterMode forward pass of the module (meta device; each the "
        f"faster of {TIMED_RUNS} runs), median: "
        + (f"{statistics.median(ratios):.1f}x (target {SPEED_TARGET}x); quartiles "
           f"{statistics.quantiles(ratios, n=4)[0]:.1f}x-{statistics.quantiles(ratios, n=4)[2]:.1f}x"
           if len(ratios) >= 2 else "n/a"),
    ]
    return lines


MOVES = re.compile(r"^(Tensor\.(permute|unbind|reshape|view|transpose|flatten|expand|expand_as|contiguous|type_as|"
                   r"chunk|split)|operator\.(getitem|setitem)|torch\.(cat|stack|roll|flatten))\b")  # no MACs


def likely_costly(row: dict, *, shown: int = 5) -> str:
    """The opaque calls of a row, those that may hold the missing MACs first (reshapes and views hold none)."""
    targets = sorted(row["opaque_targets"].items(), key=lambda item: bool(MOVES.match(item[0])))
    return ", ".join(f"{target} x{count}" for target, count in targets[:shown])


def _right_but_disagrees_line(checked: list[dict]) -> str:
    rows = [r for r in checked if right_but_disagrees(r)]
    peers = Counter(peer for r in rows for peer in r.get("disagreeing", {}))
    return (f"- right but disagrees (params and MACs exact, a peer disagrees): {len(rows)} of {len(checked)}; by peer: "
            + (", ".join(f"{peer} {count}" for peer, count in peers.most_common()) or "none"))


def failure_lines(rows: list[dict]) -> list[str]:
    groups: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["status"] != "ok":
            groups[error_group(row)].append(row["name"])
    lines = ["", "## Failures, grouped by message (most common first)", ""]
    for message, names in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        lines.append(f"- {len(names)} x `{message}`: {', '.join(sorted(names))}")
    lines = lines if groups else lines + ["none"]
    off = sorted((r for r in rows if r["status"] == "ok" and macs_gap(r) != 0), key=lambda r: -(macs_gap(r) or 1))
    lines += ["", "## Analysed, but MACs not FlopCounterMode/2 exactly (largest gap first)", ""]
    lines += [f"- {r['name']} ({r['method']}): {r['macs_archviz']:,} vs {r['macs_flop_counter']:,} "
              f"({signed_gap(r):+.4%}); uncounted: {likely_costly(r) or 'none'}" for r in off] or ["none"]
    disagreeing = [r for r in rows if r.get("disagreeing")]
    if disagreeing:
        lines += ["", "## Cross-check: the peers that do not agree, and their first unexplained figure", ""]
        lines += [f"- {r['name']}: " + "; ".join(f"{peer}: {why}" for peer, why in r["disagreeing"].items())
                  for r in disagreeing]
    wrong_params = [r for r in rows if r["status"] == "ok" and not params_exact(r)]
    lines += ["", "## Analysed, but params not the module's", ""]
    lines += [f"- {r['name']} ({r['method']}): {r['params_archviz']:,} vs {r['params_module']:,}; weights no traced "
              f"layer used: {r.get('uncalled_params', 0):,}" for r in wrong_params] or ["none"]
    return lines


def row_line(row: dict) -> str:
    gap = macs_gap(row)
    ratio = (f"{row['inspect_s'] / row['flop_counter_s']:.1f}" if row.get("inspect_s") and row.get("flop_counter_s")
             else "")
    params = (f"{row['params_archviz']:,} / {row['params_module']:,}" if "params_archviz" in row
              and "params_module" in row else "")
    params += "" if not params or params_exact(row) else " **DIFF**"
    macs = f"{row['macs_archviz']:,} / {row['macs_flop_counter']:,}" if gap is not None else ""
    macs += f" ({signed_gap(row):+.4%})" if gap else (" (=)" if gap == 0 else "")
    notes = "; ".join(filter(None, [row.get("note", ""), row.get("error", "").replace("|", "\\|")[:200],
                                    ", ".join(f"{t} x{n}" for t, n in row.get("opaque_targets", {}).items())]))
    agrees = {True: "yes", False: "no"}.get(row.get("agrees"), "")
    shape = "x".join(map(str, row.get("input", []))) or "-"
    return (f"| {row['name']} | {row.get('family', '')} | {shape} | {row['status']} | {row.get('method', '')} | "
            f"{params} | {macs} | {_measured_uncounted(row)} | {agrees} | {row.get('inspect_s', '')} | "
            f"{row.get('flop_counter_s', '')} | {ratio} | {notes} |")


def _measured_uncounted(row: dict) -> str:
    if row.get("status") != "ok":
        return ""
    return f"{row.get('measured', 0)} ({row.get('measured_macs', 0):,} MACs) / {row.get('uncounted', 0)}"


def write_markdown(rows: list[dict], path: Path, *, title: str) -> None:
    rows = sorted(rows, key=lambda r: r["name"])
    lines = summary_lines(rows, title=title) + failure_lines(rows)
    lines += ["", "## Every model", "",
              "params and MACs: archviz / the module's own (sum of p.numel(); FlopCounterMode FLOPs / 2, batch 1, "
              "meta device). Seconds: archviz.inspect(module) and one FlopCounterMode forward pass of the meta-device "
              "module, each the faster of two runs, and their ratio.", "",
              "| model | family | input | status | trace | params | MACs | measured / uncounted | agrees | inspect s | "
              "FlopCounter s | ratio | notes |",
              "|---|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---|"]
    lines += [row_line(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def _heading(markdown: Path) -> str:
    """The title of an earlier table, which --summary keeps (it says what was run, and when)."""
    first = markdown.read_text().split("\n", 1)[0] if markdown.exists() else ""
    return first[2:] if first.startswith("# ") else ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", nargs="+", help="these timm names only")
    parser.add_argument("--families", action="store_true", help="one model per timm family (module)")
    parser.add_argument("--shard", help="i/n: every n-th name from the i-th (0 <= i < n)")
    parser.add_argument("--workers", type=int, default=1, help="models measured at once (default 1)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help=f"seconds per model (default {TIMEOUT_S})")
    parser.add_argument("--max-side", type=int, default=MAX_SIDE, help=f"input cap in pixels (default {MAX_SIDE})")
    parser.add_argument("--crosscheck", action="store_true", help="also record crosscheck.agrees (slower)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON lines file (default %(default)s)")
    parser.add_argument("--title", default="", help="the markdown's heading (default: what was run, and the date)")
    parser.add_argument("--summary", action="store_true", help="only rewrite the markdown from the JSON lines")
    parser.add_argument("--per-process", type=int, default=PER_PROCESS,
                        help=f"models one worker process measures in turn (default {PER_PROCESS})")
    parser.add_argument("--many", nargs="+", help=argparse.SUPPRESS)  # the worker: one JSON row per model
    args = parser.parse_args(argv)
    if args.many:
        for name in args.many:
            try:
                row = measure(name, max_side=args.max_side, crosscheck=args.crosscheck)
            except Exception as error:  # outside archviz (timm building the model): this row only
                row = {"name": name, "status": "crash", "error": _one_line(error)}
            print(json.dumps(row), flush=True)
        return 0
    markdown = args.results.with_suffix(".md")
    today = datetime.date.today().isoformat()
    if not args.summary:
        import timm

        what = ("the one-per-family sample (one model per timm module, not the whole registry)" if args.families
                else "the names given" if args.names else "timm.list_models()")
        names = args.names or (one_per_family() if args.families else timm.list_models())
        unknown = [name for name in names if not timm.is_model(name)]
        if unknown:
            raise SystemExit(f"not timm models: {', '.join(unknown)}")
        if args.shard:
            names = shard(names, args.shard)
            what += f", shard {args.shard}"
        args.title = args.title or f"archviz over {what} (timm {timm.__version__}), {today}"
        sweep(names, path=args.results, workers=args.workers, max_side=args.max_side, crosscheck=args.crosscheck,
              timeout_s=args.timeout, per_process=args.per_process)
    title = args.title or _heading(markdown) or f"archviz over timm models, {today}"
    write_markdown(read_rows(args.results), markdown, title=title)
    print(f"wrote {markdown.relative_to(ROOT) if markdown.is_relative_to(ROOT) else markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
