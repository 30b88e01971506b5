"""One peer tool on one model, in this process: python benchmarks/peers.py TOOL MODEL CxHxW BATCH.

run.py starts this file as a fresh process for every run, so the whole-process time and peak memory it measures
include Python's start-up and the imports of torch and the tool. This file times the rest itself: after the imports,
building the model and the tool's call ("call_s"), and writes that with the tool's counts as one JSON line to the
file named by the environment variable ARCHVIZ_BENCH_TIMING.

Models: torchvision's (weights=None) for the zoo models torchvision has; lenet and alexnet (the 227x227 single tower
of the course, not in torchvision) are built from archviz's spec with archviz.torch_build.to_torch.
Tools (TOOLS below): each call as a user would write it. "by_hand" is the route a user takes without archviz:
torchvision model on the CPU, torchinfo summary, then fvcore's count, all in one process.
"""

import json
import os
import sys
import time

START = time.perf_counter()

TORCHVISION_NAMES = {"alexnet_owt": "alexnet", "vgg16": "vgg16", "resnet50": "resnet50", "resnet152": "resnet152",
                     "googlenet": "googlenet"}
TORCHVISION_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False}}


def build_model(name: str, device: str):
    """The model in eval mode on `device`: torchvision's if it has it, else archviz's spec built in torch."""
    import torch

    if name in TORCHVISION_NAMES:
        import torchvision

        build = getattr(torchvision.models, TORCHVISION_NAMES[name])
        with torch.device(device):
            model = build(weights=None, **TORCHVISION_KWARGS.get(name, {}))
    else:
        import archviz
        from archviz.torch_build import to_torch

        model = to_torch(archviz.load(name), device=device)
    return model.eval()


def run_torchinfo(model, shape, device):
    import torch
    import torchinfo

    if device == "meta":
        stats = torchinfo.summary(model, input_data=[torch.empty(shape, device="meta")], device="meta", verbose=0)
    else:
        stats = torchinfo.summary(model, input_size=shape, device=device, verbose=0)
    return {"macs": stats.total_mult_adds, "params": stats.total_params}


def run_fvcore(model, shape, device):
    import torch
    from fvcore.nn import FlopCountAnalysis, parameter_count

    analysis = FlopCountAnalysis(model, torch.randn(shape, device=device))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return {"macs": analysis.total(), "params": parameter_count(model)[""]}


def run_flop_counter(model, shape, device):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.empty(shape, device=device))
    return {"macs": counter.get_total_flops() // 2, "params": sum(p.numel() for p in model.parameters()),
            "note": "FLOPs / 2"}


def run_ptflops(model, shape, device):
    """ptflops takes the input without the batch and counts per image; a batch > 1 goes in through input_constructor."""
    import torch
    from ptflops import get_model_complexity_info

    batch, image = shape[0], tuple(shape[1:])
    make_input = (lambda _res: torch.randn(shape, device=device)) if batch > 1 else None
    macs, params = get_model_complexity_info(model, image, as_strings=False, print_per_layer_stat=False,
                                             backend="pytorch", input_constructor=make_input)
    note = "input given without batch" if batch == 1 else f"batch {batch} via input_constructor; per image x {batch}"
    return {"macs": None if macs is None else int(macs) * batch, "params": params, "note": note}


def run_thop(model, shape, device):
    import torch
    from thop import profile

    macs, params = profile(model, inputs=(torch.randn(shape, device=device),), verbose=False)
    return {"macs": int(macs), "params": int(params)}


def run_by_hand(model, shape, device):
    """torchinfo's summary for the table, then fvcore for the MACs, as a user does without archviz."""
    summary = run_torchinfo(model, shape, device)
    counted = run_fvcore(model, shape, device)
    return {"macs": counted["macs"], "params": summary["params"], "note": "torchinfo summary + fvcore count"}


TOOLS = {  # name: (what to import up front, device, function)
    "torchinfo_cpu": (("torch", "torchvision", "torchinfo"), "cpu", run_torchinfo),
    "torchinfo_meta": (("torch", "torchvision", "torchinfo"), "meta", run_torchinfo),
    "fvcore_cpu": (("torch", "torchvision", "fvcore.nn"), "cpu", run_fvcore),
    "flop_counter_meta": (("torch", "torchvision", "torch.utils.flop_counter"), "meta", run_flop_counter),
    "ptflops_cpu": (("torch", "torchvision", "ptflops"), "cpu", run_ptflops),
    "thop_cpu": (("torch", "torchvision", "thop"), "cpu", run_thop),
    "by_hand_cpu": (("torch", "torchvision", "torchinfo", "fvcore.nn"), "cpu", run_by_hand),
}


def main(tool: str, model_name: str, image: str, batch: str) -> None:
    import importlib

    modules, device, run = TOOLS[tool]
    for module in modules:
        importlib.import_module(module)
    if model_name not in TORCHVISION_NAMES:
        importlib.import_module("archviz.torch_build")
    imported = time.perf_counter()
    shape = (int(batch), *(int(size) for size in image.split("x")))
    model = build_model(model_name, device)
    built = time.perf_counter()
    counts = run(model, shape, device)
    done = time.perf_counter()
    timing = {"import_s": imported - START, "build_s": built - imported, "tool_s": done - built,
              "call_s": done - imported, **counts}
    timing_file = os.environ.get("ARCHVIZ_BENCH_TIMING")
    if timing_file:
        with open(timing_file, "w") as out:
            out.write(json.dumps(timing, default=float) + "\n")
    print(json.dumps(timing, default=float))


if __name__ == "__main__":
    main(*sys.argv[1:])
