"""Fuzz archviz's formulas against torch and the cross-check peers on many random networks, outside pytest.

    .venv/bin/python fuzz/agreement.py --examples 10000 --seed 1

Each network is drawn by tests/strategies.py (`architectures()`) and goes through the checks of
tests/test_agreement.py: a real CPU forward pass of the module to_torch builds (every layer's shapes, params, buffers
and MACs by FlopCounterMode; in-place layers change no value) and the peers: the module itself, torchinfo,
FlopCounterMode and fvcore (no unexplained figure, every peer agrees). A spec that archviz refuses is a disagreement too: the strategy draws
only networks torch runs. Prints the examples run, agreements, disagreements and the time taken; the first few
disagreeing specs are saved to fuzz/failures/ as YAML, the problems in a comment at the top, so that
`archviz inspect fuzz/failures/<file>.yaml` reproduces them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAILURES = Path(__file__).resolve().parent / "failures"
PROGRESS_EVERY = 250  # examples between progress lines on stderr


@dataclass
class Tally:
    examples: int = 0
    agreements: int = 0
    disagreements: int = 0
    saved: list[Path] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="networks to draw (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed: the same seed draws the same networks")
    parser.add_argument("--save", type=int, default=5, help="disagreeing specs to save to fuzz/failures/ (default 5)")
    parser.add_argument("--no-fvcore", action="store_true", help="skip fvcore, the slowest peer")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "tests"))
    warnings.simplefilter("ignore")  # fvcore's and torch's deprecation and tracer warnings, once per network
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis import strategies as st

    import test_agreement as checks
    from strategies import architectures

    peers = checks.FAST_PEERS if args.no_fvcore else checks.ALL_PEERS
    tally = Tally()
    start = time.perf_counter()

    with tempfile.TemporaryDirectory() as scratch:
        @seed(args.seed)
        @settings(max_examples=args.examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(text=architectures(), batch=st.integers(1, 3))
        def run(text: str, batch: int) -> None:
            tally.examples += 1
            problems = problems_of(checks, text, batch, peers, Path(scratch))
            if problems:
                tally.disagreements += 1
                if len(tally.saved) < args.save:
                    tally.saved.append(save(text, problems, args.seed, tally.examples))
            else:
                tally.agreements += 1
            if tally.examples % PROGRESS_EVERY == 0:
                print(f"  {tally.examples:,} examples, {tally.disagreements:,} disagreements, "
                      f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

        try:
            run()
        except KeyboardInterrupt:
            print("interrupted; the counts so far:", file=sys.stderr)

    seconds = time.perf_counter() - start
    print(f"examples run:   {tally.examples:,} (seed {args.seed}, peers: {', '.join(peers)})")
    print(f"agreements:     {tally.agreements:,}")
    print(f"disagreements:  {tally.disagreements:,}")
    for path in tally.saved:
        print(f"  saved {path.relative_to(ROOT)}")
    print(f"time taken:     {seconds:.1f} s ({1000 * seconds / max(tally.examples, 1):.0f} ms a network)")
    return 1 if tally.disagreements else 0


def problems_of(checks, text: str, batch: int, peers, scratch: Path) -> list[str]:
    """Every disagreement found for one spec; a spec archviz refuses, or a check that fails, is one too."""
    try:
        graph = checks.load_text(text, scratch)
    except Exception as error:  # the strategy draws only networks torch runs
        return [f"archviz refused it: {type(error).__name__}: {error}"]
    try:
        return checks.forward_problems(graph) + checks.peer_problems(graph, peers, batch=batch)
    except Exception:
        return ["a check failed:", *traceback.format_exc().splitlines()]


def save(text: str, problems: list[str], seed: int, index: int) -> Path:
    FAILURES.mkdir(exist_ok=True)
    path = FAILURES / f"seed{seed}-{index}.yaml"
    header = "".join(f"# {line}\n" for line in ["fuzz/agreement.py found:", *problems[:40]])
    path.write_text(header + text)
    return path


if __name__ == "__main__":
    sys.exit(main())
