"""Every `$ archviz` example of README.md and docs/**/*.md has a regenerator: scripts/update_docs.py reruns it, or
scripts/run_examples.py does (a block marked `# one run's output`), or, an abridged `--format json` block, it is held
to a fresh run by tests/test_docs.py. Nothing here trains: the pages' order and run folders are read from their text.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from run_examples import (  # noqa: E402  (scripts/ is not a package)
    ELLIPSIS, FIRST_AND_LAST_LINES, ONE_RUN, RUNS, cut, marked, pages,
)
from update_docs import BLOCK, KEPT_AS_WRITTEN, documented_files  # noqa: E402

TRAINING = ("train ", "compare ", "sweep ", "pretrain ", "probe ")  # commands whose results depend on threads
READS_A_RUN = ("predict", "evaluate", "export", "walkthrough", "probe")  # their first argument is a run folder
RUN_OPTIONS = ("--weights", "--init")  # options that name a run folder
WRITTEN_BEFORE_ANY_PAGE = ("runs/digits-test",)  # scripts/lesson_images.py, called by run_examples.write_inputs


def blocks() -> list[tuple[Path, str]]:
    """Every `$ archviz` block of the documented files: (page, the block's text)."""
    return [(path, match.group(1)) for path in documented_files() for match in BLOCK.finditer(path.read_text())]


def first_line(block: str) -> str:
    return block.splitlines()[0]


def arguments(block: str) -> list[str]:
    return shlex.split(first_line(block)[len("$ archviz "):].split("#", 1)[0])


def run_folders_read(args: list[str]) -> list[str]:
    """The run folders under runs/ the command reads (its first argument for a command that reads a run, and
    the values of --weights and --init)."""
    named = [args[1]] if args[0] in READS_A_RUN and len(args) > 1 else []
    named += [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in RUN_OPTIONS]
    return [name.split("/best.pt")[0] for name in named if name.startswith(RUNS)]


def test_every_example_has_a_regenerator():
    for path, block in blocks():
        command = first_line(block)
        if not any(marker in command for marker in KEPT_AS_WRITTEN):
            continue  # update_docs.py reruns it
        held_json = "# abridged" in command and "--format json" in command  # tests/test_docs.py
        assert marked(block) or held_json, f"{path.relative_to(ROOT)}: {command}: kept as written, rerun by nothing"


def test_the_rerun_script_covers_every_marked_page():
    marked_pages = {path for path, block in blocks() if marked(block)}
    assert marked_pages <= set(pages())
    assert set(pages()) == set(documented_files())


def test_every_run_folder_a_rerun_reads_is_written_before_it():
    written = set(WRITTEN_BEFORE_ANY_PAGE)
    for path in pages():
        for match in BLOCK.finditer(path.read_text()):
            if not marked(match.group(1)):
                continue
            args = arguments(match.group(1))
            for folder in run_folders_read(args):
                assert folder in written, f"{path.relative_to(ROOT)}: `{first_line(match.group(1))}` reads {folder}"
            if "-o" in args and args[args.index("-o") + 1].startswith(RUNS):
                written.add(args[args.index("-o") + 1])


@pytest.mark.parametrize("path, block", [(p, b) for p, b in blocks() if marked(b)],
                         ids=lambda value: value.name if isinstance(value, Path) else "")
def test_a_rerun_example_repeats_and_shows_where_it_is_cut(path, block):
    args = arguments(block)
    if f"{args[0]} " in TRAINING:
        assert "--threads 1" in first_line(block), "the thread count changes the last bits of the results"
    if FIRST_AND_LAST_LINES in first_line(block):
        assert block.rstrip().splitlines().count(ELLIPSIS) == 1, "one `...` line between the first and last lines"
    assert ONE_RUN in first_line(block)


def test_first_and_last_lines_are_cut_from_the_real_output():
    lines = [f"line {n}" for n in range(10)]
    command = f"$ archviz train x   {ONE_RUN}, first and last lines"
    assert cut(command, lines, ["a", "b", ELLIPSIS, "c"]) == ["line 0", "line 1", ELLIPSIS, "line 9"]
    assert cut(command, lines[:3], ["a", "b", ELLIPSIS, "c"]) == lines[:3]  # short enough to show whole
    assert cut(f"$ archviz x   {ONE_RUN}, last lines", lines, ["a", "b"]) == ["line 8", "line 9"]
    assert cut(f"$ archviz x   {ONE_RUN}, first lines", lines, ["a", "b"]) == ["line 0", "line 1"]
    assert cut(f"$ archviz x   {ONE_RUN}", lines, ["a"]) == lines


def test_the_page_order_puts_the_trainings_first():
    order = [path.relative_to(ROOT).as_posix() for path in pages()]
    assert order.index("docs/guide/training.md") < order.index("docs/guide/trained-runs.md")
    assert order.index("docs/guide/training.md") < order.index("docs/guide/seeing-inside.md")
