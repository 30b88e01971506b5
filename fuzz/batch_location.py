"""Does one run at BATCH say where every value's batch is, as two runs (BATCH and SECOND_BATCH) would?

The tracer finds a value's batch dim from its shape at BATCH alone (trace/fx.py: the one dim whose size is a
multiple of BATCH, a prime) and runs the model a second time only where that shape cannot say. This sweep traces
models with every value located both ways (the second run forced) and lists each value where the two answers
differ: a model dim that happens to be a multiple of BATCH would show here.

    .venv/bin/python fuzz/batch_location.py                    # torchvision's classification models + one timm
                                                              # model per family
    .venv/bin/python fuzz/batch_location.py --timm-all         # every name of timm.list_models() (an hour)

Results: fuzz/results/batch_location.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fuzz"))

RESULTS = ROOT / "fuzz" / "results" / "batch_location.md"


def checked_located(found: list):
    """fx.located, answering as before, after comparing the one-run answer with the two-run one."""
    from archviz.trace import fx

    def located(tensor, twin, what):
        alone = fx.located_at_batch(tensor, what)
        if alone is None:
            return fx.located_by_twin(tensor, twin(), what)
        found[0] += 1
        try:
            both = fx.located_by_twin(tensor, twin(), what)
        except Exception as error:  # the two runs cannot say (no twin): only the one-run answer stands
            both = f"{type(error).__name__}"
        if both != alone:
            found[1].append(f"{what}: shape {tuple(tensor.shape)}: one run {alone}, two runs {both}")
        return alone

    return located


def check(label: str, build, shape) -> tuple[int, list[str], str]:
    """(values located at BATCH alone, the disagreements, an error line) for one model."""
    import archviz
    from archviz.trace import fx

    found = [0, []]
    original = fx.located
    fx.located = checked_located(found)
    try:
        archviz.inspect(build(), input=shape)
        error = ""
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}" if str(exc) else type(exc).__name__
    finally:
        fx.located = original
    return found[0], found[1], error


def models(timm_all: bool):
    """(label, build, input shape) for each model to check."""
    import torchvision

    from archviz.trace.load import build_meta, parse_source
    from sweep_timm import MAX_SIDE, capped_input, one_per_family

    for name in sorted(torchvision.models.list_models(module=torchvision.models)):
        yield f"torchvision:{name}", (lambda n=name: build_meta(parse_source(f"torchvision:{n}"))), (3, 224, 224)
    import timm

    for name in (timm.list_models() if timm_all else one_per_family()):
        shape, kwargs, _ = capped_input(name, MAX_SIDE)
        yield (f"timm:{name}", lambda n=name, k=kwargs: build_meta(parse_source(f"timm:{n}", kwargs=k)), shape)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timm-all", action="store_true", help="every timm name, not one per family")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from archviz.trace.fx import BATCH, SECOND_BATCH

    rows, total, failed = [], 0, []
    for label, build, shape in models(args.timm_all):
        located_alone, differing, error = check(label, build, shape)
        total += located_alone
        rows.append((label, located_alone, differing))
        if error:
            failed.append(f"{label}: {error}")
        print(f"{label}: {located_alone} values, {len(differing)} differ{' (' + error + ')' if error else ''}",
              flush=True)
    differing = [(label, d) for label, _, ds in rows for d in ds]
    lines = [f"# Batch located by one run at {BATCH} against two runs ({BATCH} and {SECOND_BATCH})", "",
             f"- models: {len(rows)} ({'every timm name' if args.timm_all else 'one timm model per family'} and "
             "torchvision's classification models)",
             f"- values whose batch one run located: {total:,}; located differently by two runs: {len(differing)}",
             f"- models whose trace failed under the check (their values up to the failure are counted): "
             f"{len(failed)}", ""]
    lines += [f"- {label}: {d}" for label, d in differing] or ["No value is located differently."]
    lines += ["", "## Failed under the check", ""] + ([f"- {f}" for f in failed] or ["none"])
    args.results.write_text("\n".join(lines) + "\n")
    print(f"{total:,} values, {len(differing)} differ; {args.results}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
