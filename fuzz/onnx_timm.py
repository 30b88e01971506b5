"""timm models through torch.onnx.export and back through archviz's ONNX reader, outside pytest.

    .venv/bin/python fuzz/onnx_timm.py                                   # the fixed list below, opset 17
    .venv/bin/python fuzz/onnx_timm.py --names resnet18 swin_tiny_patch4_window7_224 --opset 14 18
    .venv/bin/python fuzz/onnx_timm.py --write                           # also write fuzz/results/onnx_timm.md

Per model, built with timm.create_model(NAME) (nothing downloaded; every float weight and buffer then drawn at
random, unless --fresh, so that torch stores no two as one), in eval mode, exported with
torch.onnx.export(model, torch.randn(1, *input_size), path, dynamo=False, opset_version=OPSET) at its
pretrained_cfg input_size, in a process of its own (a crash or hang costs one row), and read back with
archviz.inspect(read_onnx(path)):
  * read: ok, or the error (the one line a user sees; a traceback's type and first line is our bug);
  * params: archviz's total against the module's sum(p.numel()), against the module's less what torch's eval-mode
    export folds away (each BatchNorm whose weights are not in the file under its name had 2 x C weights, now the C
    bias of the conv before it: C less, 2 x C where the conv had a bias; `folded` below), and against the file's
    float initializers (what the file stores: torch's constant
    folding may store a weight twice, or a gathered table instead of the table);
  * MACs: archviz's total against FlopCounterMode's FLOPs / 2 for one forward pass of the module on the meta device
    (on the CPU, timm's fused attention runs a kernel FlopCounterMode does not count);
  * opaque: the layers archviz read without a formula, by ONNX op type.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "fuzz" / "results" / "onnx_timm.md"
TIMEOUT_S = 300
MODELS = (  # one per timm family, small ones
    "resnet18", "densenet121", "repvgg_a0", "efficientnet_b0", "mobilenetv3_small_050", "ghostnet_100",
    "regnetx_002", "convnext_atto", "dla34", "vit_tiny_patch16_224", "deit_tiny_patch16_224",
    "vit_tiny_r_s16_p8_224", "swin_tiny_patch4_window7_224", "levit_128s", "mobilevit_xxs", "poolformer_s12",
    "resmlp_12_224", "mixer_s16_224", "cait_xxs24_224", "edgenext_xx_small", "lcnet_050", "rexnet_100",
)

# why a figure differs from the module's, as measured (the graph's description says the params part for each file)
KNOWN = {
    "swin_tiny_patch4_window7_224": "params: torch's constant folding stores each block's relative position bias "
    "gathered (heads x 49 x 49, 331,338 in all) in place of its 169 x heads tables (23,322): +308,016, the file's",
    "cait_xxs24_224": "params: the class token (192) is read by two layers in the file, each counting it",
    "edgenext_xx_small": "the position encoding depends on the input's size alone: the file computes it from stored "
    "tensors only (nodes that are no layers), so its conv's 3,120 params and 3,145,728 MACs are not counted",
    "levit_128s": "BatchNorm1d on B x N tokens stays opaque (its channels are not dim 1 per sample): no MACs lost",
}

sys.path.insert(0, str(ROOT))


def measure(name: str, opset: int, folder: Path, *, fresh: bool = False) -> dict:
    """One model's row: export, read back, compare."""
    import torch
    import timm

    import archviz
    from archviz.errors import ArchvizError
    from archviz.onnx.read import read_onnx

    model = timm.create_model(name, pretrained=False).eval()
    if not fresh:
        _distinct_weights(model)
    size = tuple(model.pretrained_cfg["input_size"])
    row = {"model": name, "input": "x".join(map(str, size)), "module_params": _params(model),
           "module_macs": _meta_macs(name, size)}
    path = folder / f"{name}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, torch.randn(1, *size), str(path), dynamo=False, opset_version=opset)
        except Exception as error:  # noqa: BLE001 - torch's exporter fails on some models: a row, not a stop
            return {**row, "read": f"export fails: {type(error).__name__}: {_first_line(error)}"}
    row["initializers"] = _initializer_elements(path)
    row["folded_params"] = row["module_params"] - _folded_norm_channels(model, path)
    try:
        report = archviz.inspect(read_onnx(path))
    except ArchvizError as error:
        return {**row, "read": f"error: {_first_line(error)}"}
    except Exception as error:  # noqa: BLE001 - our bug, recorded as such
        return {**row, "read": f"BUG {type(error).__name__}: {_first_line(error)}"}
    opaque = Counter(node.attrs["target"].split("::")[-1] for node in report.graph.nodes if node.op == "opaque")
    return {**row, "read": "ok", "params": report.totals.params, "macs": report.totals.macs,
            "notes": [n for n in getattr(report.graph, "notes", ()) or ()], "opaque": dict(sorted(opaque.items()))}


def _distinct_weights(model) -> None:
    """Every float parameter and buffer drawn from U(0.5, 1.5): torch's exporter stores equal tensors once (a fresh
    model's zero biases, unit norm scales, zero-initialised last BN scales), which the file's totals then show."""
    import torch

    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _folded_norm_channels(model, path: Path) -> int:
    """The params torch's eval export folds away: a BatchNorm it folds into the conv before it (its weights are no
    longer in the file under the norm's name) has 2 x C weights, which become the conv's C-element bias, or add to
    the bias the conv had (C params less, or 2 x C)."""
    import onnx
    import torch.nn as nn

    stored = {t.name for t in onnx.load(str(path), load_external_data=False).graph.initializer}
    folded, previous = 0, None
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine and f"{name}.weight" not in stored:
            biased = isinstance(previous, nn.Conv2d) and previous.bias is not None
            folded += module.num_features * (2 if biased else 1)
        if not list(module.children()):
            previous = module
    return folded


def _meta_macs(name: str, size: tuple[int, ...]) -> int:
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False).eval().requires_grad_(False)  # (CaiT: crosscheck/common.py)
        x = torch.randn(1, *size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def _initializer_elements(path: Path) -> int:
    import math

    import onnx

    floats = (1, 10, 11, 16)
    model = onnx.load(str(path), load_external_data=False)
    return sum(math.prod(t.dims) for t in model.graph.initializer if t.data_type in floats)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --- the table ------------------------------------------------------------------------------------------------------

def table(rows: list[dict], opset: int) -> str:
    out = [f"# timm models exported to ONNX (opset {opset}) and read back by archviz", "",
           "`.venv/bin/python fuzz/onnx_timm.py --write` (see its docstring). params: archviz's total; module: "
           "sum(p.numel()); folded: the module's less what torch's eval export folds away (a BatchNorm into the conv "
           "before it: C, or 2 x C where the conv has a bias); "
           "file: the file's float initializers. MACs: archviz's total and FlopCounterMode's FLOPs / 2 on the meta "
           "device.", "",
           "| model | input | read | params | module | folded | file | MACs | FlopCounterMode | opaque |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("read") != "ok":
            out.append(f"| {r['model']} | {r.get('input', '')} | {r.get('read', '?')} | | {r.get('module_params', 0):,}"
                       f" | | | | {r.get('module_macs', 0):,} | |")
            continue
        params = _mark(r["params"], (r["module_params"], r["folded_params"], r["initializers"]))
        macs = _mark(r["macs"], (r["module_macs"],))
        opaque = ", ".join(f"{k} {v}" for k, v in r["opaque"].items()) or "none"
        out.append(f"| {r['model']} | {r['input']} | ok | {params} | {r['module_params']:,} | {r['folded_params']:,} "
                   f"| {r['initializers']:,} | {macs} | {r['module_macs']:,} | {opaque} |")
    ok = [r for r in rows if r.get("read") == "ok"]
    same_macs = sum(r["macs"] == r["module_macs"] for r in ok)
    same_params = sum(r["params"] in (r["module_params"], r["folded_params"]) for r in ok)
    known = [f"- {r['model']}: {KNOWN[r['model']]}" for r in rows if r["model"] in KNOWN]
    out += ["", f"{len(ok)} of {len(rows)} read; MACs equal to FlopCounterMode's: {same_macs} of {len(ok)}; params "
            f"equal to the module's or its BN-folded count: {same_params} of {len(ok)}. = marks a figure equal to one "
            "of the module's, (file) one equal to the file's initializers only.", "", *known, ""]
    return "\n".join(out)


def _mark(ours: int, targets: tuple[int, ...]) -> str:
    if ours in targets[:2]:
        return f"{ours:,} ="
    if len(targets) > 2 and ours == targets[2]:
        return f"{ours:,} (file)"
    return f"{ours:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="*", default=list(MODELS))
    parser.add_argument("--opset", type=int, nargs="*", default=[17], help="one table per opset")
    parser.add_argument("--fresh", action="store_true", help="export timm's own initial weights (equal tensors "
                        "are stored once), not distinct random ones")
    parser.add_argument("--write", action="store_true", help=f"write the table to {RESULT.relative_to(ROOT)}")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one model in this process, print its row as JSON
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(measure(args.one, args.opset[0], Path(folder), fresh=args.fresh)))
        return
    tables = []
    for opset in args.opset:
        tables.append(table([_run_alone(name, opset, args.fresh) for name in args.names], opset))
        print(tables[-1])
    text = "\n".join(tables)
    if args.write:
        RESULT.write_text(text)


def _run_alone(name: str, opset: int, fresh: bool) -> dict:
    command = [sys.executable, __file__, "--one", name, "--opset", str(opset), *(["--fresh"] if fresh else [])]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"model": name, "read": f"timeout ({TIMEOUT_S} s)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": name, "read": f"crash: {tail[:200]}"}
    row = json.loads(lines[-1])
    print(f"{name}: {row.get('read')}", file=sys.stderr)
    return row


if __name__ == "__main__":
    main()
