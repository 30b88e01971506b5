"""Rerun every `$ archviz ...` example of README.md and docs/**/*.md and paste its real output back (repo root).

    .venv/bin/python scripts/update_docs.py                  # rewrite README.md and every docs page
    .venv/bin/python scripts/update_docs.py docs/lessons/*.md  # rewrite only these files
    .venv/bin/python scripts/update_docs.py --check          # exit 1 naming each stale example (file and command)

Blocks are fenced ``` blocks whose first line is `$ archviz ARGS` (optionally `# comment`); error examples (several
commands in one block, each with its one-line message) are rerun the same way. Timings are ignored by --check;
a command marked `# abridged` (a --format json example, held to a fresh run by tests/test_docs.py) or `# one run's
output` (training: its speeds differ at every run; scripts/run_examples.py reruns those, in page order) is kept;
one marked `# first lines` shows the real output's first lines, as many as the block has. Every command runs in the
repo root, so the files an example writes land where the text says.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```\n(\$ archviz [^\n]*\n.*?)```", re.S)
TIMING = re.compile(r"\(\d+\.\d s\)|, \d+\.\d s\]")
KEPT_AS_WRITTEN = ("abridged", "one run's output")  # hand-shortened, or with speeds that differ at every run
FIRST_LINES = "first lines"  # `# first lines`: the real output cut to the block's length, regenerated and checked
ARCHVIZ = [sys.executable, "-m", "archviz.cli"]  # the interpreter running this script, with archviz installed


def documented_files() -> list[Path]:
    """README.md and every Markdown page of the site, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def run(command: str) -> tuple[str, str]:
    args = shlex.split(command.split("#", 1)[0])
    done = subprocess.run([*ARCHVIZ, *args], capture_output=True, text=True, cwd=ROOT)
    return done.stdout, done.stderr


def render(block: str) -> str:
    """A block's text with each command's output replaced by a fresh run."""
    lines = block.splitlines()
    commands = [line for line in lines if line.startswith("$ archviz ")]
    if len(commands) > 1 or (len(lines) > 1 and lines[1].startswith("archviz: error:")):
        out = []
        for command in commands:
            stdout, stderr = run(command[len("$ archviz "):])
            out += [command, (stderr or stdout).strip()]
        return "\n".join(out) + "\n"
    if any(marker in commands[0] for marker in KEPT_AS_WRITTEN):
        return block
    stdout, stderr = run(commands[0][len("$ archviz "):])
    lines = [line.rstrip() for line in (stdout or stderr).rstrip().splitlines()]
    if FIRST_LINES in commands[0]:  # the real output's first lines, as many as the block shows
        lines = lines[:max(len(block.rstrip().splitlines()) - 1, 1)]
    body = "\n".join(lines)
    return f"{commands[0]}\n{body}\n"


def refresh(path: Path, *, rendered=None, varying: re.Pattern = TIMING) -> tuple[str, list[str]]:
    """The file's text with every example rerun (by `rendered`, render by default), and the first line of each
    example whose output changed beyond what `varying` matches (timings)."""
    stale, rendered = [], rendered or render

    def replace(match: re.Match) -> str:
        fresh = rendered(match.group(1))
        if varying.sub("", fresh) != varying.sub("", match.group(1)):
            stale.append(match.group(1).splitlines()[0])
        return f"```\n{fresh}```"

    return BLOCK.sub(replace, path.read_text()), stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if an example is stale")
    parser.add_argument("paths", nargs="*", type=Path, help="only these files (default: README.md and docs/**/*.md)")
    options = parser.parse_args(argv)
    paths = [path.resolve() for path in options.paths] or documented_files()
    return refresh_files(paths, check=options.check)


def refresh_files(paths: list[Path], *, check: bool, rendered=None, varying: re.Pattern = TIMING) -> int:
    """Rerun the examples of each file (refresh), naming each changed one on stderr; with check, write nothing and
    return 1 if any changed; else write the files that changed and return 0."""
    any_stale = False
    for path in paths:
        updated, stale = refresh(path, rendered=rendered, varying=varying)
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for command in stale:
            print(f"{'stale' if check else 'updated'} example in {shown}: {command}", file=sys.stderr)
        any_stale = any_stale or bool(stale)
        if not check and stale:
            path.write_text(updated)
    return 1 if check and any_stale else 0


if __name__ == "__main__":
    sys.exit(main())
