"""Rerun the examples kept as written (`# one run's output`) of README.md and every docs page, in order; paste them.

    .venv/bin/python scripts/run_examples.py                        # every page (trains: a few minutes on a CPU)
    .venv/bin/python scripts/run_examples.py docs/lessons/07-training.md
    .venv/bin/python scripts/run_examples.py --check                # exit 1 naming each block whose output changed

scripts/update_docs.py keeps these blocks as written, because their speeds differ at every run; the commands after a
training command read the run folder it writes, so they are kept too, as is a figure whose last digits depend on the
machine (the float32 rounding in lesson 2's walkthrough). This script is their regeneration: it runs every such block
of a page top to bottom (a run folder is written before the commands that read it), in the repo root, and pastes the
real output: stdout (a picture's caption: input, weights, prediction), then stderr's `wrote FILE` line (its progress
lines are left out). Pages run in PAGE_ORDER: a page may read a run folder that an earlier page's command trains
(docs/guide/training.md trains runs/lenet-digits, which trained-runs.md and seeing-inside.md read). Training commands
take `--threads 1` and a fixed seed, so on one machine every figure but the speeds comes out the same at every run;
--check compares the outputs with the speeds and times masked. A run folder that a command writes with `-o runs/...`
is deleted before it reruns (train refuses to write into an existing run).

A block marked `# one run's output, last lines` shows the end of its output (a comparison's table after its training
logs), `# one run's output, first lines` its start, as many lines as the block has; `# one run's output, first and
last lines` shows the first K lines, a line `...`, then the last M lines, K and M counted in the block as written.
Before any page, the inputs the pages read are written: the stand-in MNIST and CIFAR-10 files of lesson 7
(scripts/lesson_datasets.py) and the digits' test images that `archviz predict` reads (scripts/lesson_images.py).
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
from pathlib import Path

from update_docs import ROOT, documented_files, refresh_files, run  # this script's own folder is first on sys.path

# Pages that train a run another page reads come before it; every other page follows in documented_files' order.
PAGE_ORDER = ("docs/lessons/", "README.md", "docs/getting-started.md", "docs/guide/training.md",
              "docs/guide/trained-runs.md", "docs/guide/seeing-inside.md")
RUNS = "runs/"  # a run folder a rerun command names with -o under here is written anew at every rerun
ONE_RUN = "# one run's output"
ELLIPSIS = "..."  # the line between the first and the last lines of `# one run's output, first and last lines`
FIRST_AND_LAST_LINES = "first and last lines"
LAST_LINES = "last lines"  # `# one run's output, last lines`: the output's end, as many lines as the block shows
FIRST_LINES = "first lines"  # `# one run's output, first lines`: the output's start, as many lines as the block shows
# They differ at every run: "2,301 img/s  0.5 s", "load 5.7", a table's "train s  images/s" columns (one run's, or a
# mean ± std over seeds), profile's table of milliseconds and its images/s, and the padding of the columns whose width they set.
SPEEDS = re.compile(r"[\d,]+ (?:img|images)/s|\d+\.\d+ s\b|\d+(?:\.\d+)? ?ms\b|load \d+\.\d+"
                    r"|\d+\.\d +[\d,]+(?= +[\d.]+ [KMG]?B$)|[\d.]+ ± [\d.]+ +[\d,]+ ± [\d,]+(?= +[\d.]+ [KMG]?B$)"
                    r"|\d+\.\d{3} {5,}\d+\.\d{3}$|(?<=Images/s) +[\d,.]+| {2,}", re.M)


def pages() -> list[Path]:
    """Every page with examples, in the order the reruns need: PAGE_ORDER's first, then the rest."""
    def rank(path: Path) -> int:
        name = path.relative_to(ROOT).as_posix()
        return next((i for i, prefix in enumerate(PAGE_ORDER) if name.startswith(prefix)), len(PAGE_ORDER))

    return sorted(documented_files(), key=rank)  # sorted is stable: documented_files' order within a rank


def marked(block: str) -> bool:
    """Whether the block is one this script reruns (its first line marked `# one run's output`)."""
    return ONE_RUN in block.splitlines()[0]


def rerun(block: str) -> str:
    """The block with its command's real output; blocks not marked as one run's output are returned as they are."""
    if not marked(block):
        return block
    command, *written = block.rstrip().splitlines()
    remove_earlier_run(command)
    stdout, stderr = run(command[len("$ archviz "):])
    shown = stderr.splitlines()
    if stdout.strip():  # stdout, then where a picture went; stderr's progress lines are left out
        shown = [*stdout.rstrip().splitlines(), *(line for line in shown if line.startswith("wrote "))]
    return "\n".join([command, *cut(command, [line.rstrip() for line in shown], written)]) + "\n"


def cut(command: str, lines: list[str], written: list[str]) -> list[str]:
    """The output's lines the block shows, as many as the block as written shows where it is marked as cut."""
    if FIRST_AND_LAST_LINES in command and ELLIPSIS in written:  # a long log: its header and its results
        first, last = written.index(ELLIPSIS), len(written) - written.index(ELLIPSIS) - 1
        return lines if first + last >= len(lines) else [*lines[:first], ELLIPSIS, *lines[len(lines) - last:]]
    shown_lines = max(len(written), 1)
    if LAST_LINES in command:  # a long log whose end (the table) is what the page reads
        return lines[-shown_lines:]
    if FIRST_LINES in command:  # a long log whose start (what was adapted, the first epochs) is what it reads
        return lines[:shown_lines]
    return lines


def remove_earlier_run(command: str) -> None:
    """Delete the run folder the command writes (`-o runs/NAME`), which training would refuse to write into."""
    args = shlex.split(command.split("#", 1)[0])
    if "-o" in args:
        target = args[args.index("-o") + 1]
        if target.startswith(RUNS) and ".." not in Path(target).parts and len(Path(target).parts) > 1:
            shutil.rmtree(ROOT / target, ignore_errors=True)


def write_inputs() -> None:
    """The files the pages' commands read and no page's command writes; the same bytes every time."""
    from lesson_datasets import write_cifar10, write_mnist  # numpy, Pillow and scikit-learn: only when rerunning
    from lesson_images import write_digits_test

    write_mnist()  # lesson 7's commands read them
    write_cifar10()
    write_digits_test()  # docs/guide/trained-runs.md's predict reads them


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if an output changed")
    parser.add_argument("paths", nargs="*", type=Path, help="only these pages (default: every page, in PAGE_ORDER)")
    options = parser.parse_args(argv)
    paths = [path.resolve() for path in options.paths] or pages()
    write_inputs()
    return refresh_files(paths, check=options.check, rendered=rerun, varying=SPEEDS)


if __name__ == "__main__":
    sys.exit(main())
