"""Redraw the paper-style figures of docs/guide/diagram.md and the README (from the repo root, after changing
archviz/diagram/paper.py).

    .venv/bin/python scripts/paper_figures.py          # rewrite reports/NAME-paper.svg
    .venv/bin/python scripts/paper_figures.py --check  # exit 1 if a figure is stale

Each figure is what `archviz diagram NAME --style paper -o reports/NAME-paper.svg` writes; tests/test_diagram_paper.py
checks they are current.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("lenet", "alexnet", "vgg16", "resnet18")
ARCHVIZ = [sys.executable, "-m", "archviz.cli"]  # the interpreter running this script, with archviz installed


def figure_path(model: str) -> Path:
    return ROOT / "reports" / f"{model}-paper.svg"


def draw(model: str, path: Path) -> None:
    subprocess.run([*ARCHVIZ, "diagram", model, "--style", "paper", "-o", str(path)], check=True, cwd=ROOT,
                   capture_output=True)


def main(check: bool) -> int:
    stale = []
    with tempfile.TemporaryDirectory() as folder:
        for model in MODELS:
            fresh = Path(folder) / f"{model}.svg"
            draw(model, fresh)
            if not figure_path(model).exists() or figure_path(model).read_bytes() != fresh.read_bytes():
                stale.append(model)
                if not check:
                    figure_path(model).write_bytes(fresh.read_bytes())
    for model in stale:
        print(f"{'stale' if check else 'redrew'} {figure_path(model).relative_to(ROOT)}", file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
