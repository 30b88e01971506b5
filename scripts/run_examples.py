"""Rerun the lessons' training examples, the blocks marked `# one run's output`, in order, and paste their output.

    .venv/bin/python scripts/lesson_runs.py                        # every lesson (trains: a few minutes on a CPU)
    .venv/bin/python scripts/lesson_runs.py docs/lessons/07-training.md
    .venv/bin/python scripts/lesson_runs.py --check                # exit 1 naming each block whose output changed

scripts/update_docs.py keeps these blocks as written, because their speeds differ at every run; the commands after a
training command read the run folder it writes, so they are kept too, as is a figure whose last digits depend on the
machine (the float32 rounding in lesson 2's walkthrough). This script is their regeneration: it runs every
such block of a page top to bottom (a run folder is written before the commands that read it), in the repo root, and
pastes the real output: stdout (a picture's caption: input, weights, prediction), then stderr's `wrote FILE` line
(its progress lines are left out). The lessons train with `--threads 1` and a fixed seed, so on one machine every
figure but the speeds comes out the same at every run; --check compares the outputs with the speeds and times masked.
A block marked `# one run's output, last lines` shows the end of its output (a comparison's table after its training
logs), `# one run's output, first lines` its start, as many lines as the block has. The stand-in MNIST and CIFAR-10
files that lesson 7 reads are written first (scripts/lesson_datasets.py).
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
from pathlib import Path

from update_docs import ROOT, refresh, run  # this script's own folder is first on sys.path

LESSONS = ROOT / "docs" / "lessons"
RUNS = "runs/lessons/"  # the lessons' run folders: written anew at every rerun
ONE_RUN = "# one run's output"
LAST_LINES = "last lines"  # `# one run's output, last lines`: the output's end, as many lines as the block shows
FIRST_LINES = "first lines"  # `# one run's output, first lines`: the output's start, as many lines as the block shows
# They differ at every run: "2,301 img/s  0.5 s", "load 5.7", and a table's "train s  images/s" columns.
SPEEDS = re.compile(r"[\d,]+ (?:img|images)/s|\d+\.\d+ s\b|\d+(?:\.\d+)? ?ms\b|load \d+\.\d+"
                    r"|\d+\.\d +[\d,]+(?= +[\d.]+ [KMG]?B$)", re.M)


def rerun(block: str) -> str:
    """The block with its command's real output; blocks not marked as one run's output are returned as they are."""
    command = block.splitlines()[0]
    if ONE_RUN not in command:
        return block
    remove_earlier_run(command)
    stdout, stderr = run(command[len("$ archviz "):])
    shown = stderr.splitlines()
    if stdout.strip():  # stdout, then where a picture went; stderr's progress lines are left out
        shown = [*stdout.rstrip().splitlines(), *(line for line in shown if line.startswith("wrote "))]
    lines = [line.rstrip() for line in shown]
    shown_lines = max(len(block.rstrip().splitlines()) - 1, 1)
    if LAST_LINES in command:  # a long log whose end (the table) is what the lesson reads
        lines = lines[-shown_lines:]
    elif FIRST_LINES in command:  # a long log whose start (what was adapted, the first epochs) is what it reads
        lines = lines[:shown_lines]
    return "\n".join([command, *lines]) + "\n"


def remove_earlier_run(command: str) -> None:
    """Delete the run folder a training command writes (`-o runs/lessons/NAME`), which it would refuse to train into."""
    args = shlex.split(command.split("#", 1)[0])
    if "-o" in args and args[args.index("-o") + 1].startswith(RUNS):
        shutil.rmtree(ROOT / args[args.index("-o") + 1], ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if an output changed")
    parser.add_argument("paths", nargs="*", type=Path, help="only these pages (default: docs/lessons/*.md)")
    options = parser.parse_args(argv)
    paths = [path.resolve() for path in options.paths] or sorted(LESSONS.glob("*.md"))
    from lesson_datasets import write_cifar10, write_mnist  # numpy, Pillow and scikit-learn: only when rerunning

    write_mnist()  # lesson 7's commands read them; cheap, and the same bytes every time
    write_cifar10()
    any_changed = False
    for path in paths:
        updated, changed = refresh(path, rendered=rerun, varying=SPEEDS)
        for command in changed:
            verb = "changed" if options.check else "updated"
            print(f"{verb} in {path.relative_to(ROOT)}: {command}", file=sys.stderr)
        any_changed = any_changed or bool(changed)
        if not options.check:
            path.write_text(updated)
    return 1 if options.check and any_changed else 0


if __name__ == "__main__":
    sys.exit(main())
