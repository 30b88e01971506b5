"""Execute the notebooks in examples/ and save them with their outputs, so that what GitHub shows is a real run.

    .venv/bin/python scripts/update_notebooks.py           # run and save every notebook
    .venv/bin/python scripts/update_notebooks.py --check   # run them; fail on an error (tests/test_notebook.py)

Needs nbclient, nbformat and ipykernel (the test extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CELL_TIMEOUT_S = 300


def executed(path: Path):
    """The notebook at `path`, run top to bottom in a fresh python3 kernel started in the repository's root."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    return notebook


def main(argv: list[str]) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="run only; write nothing")
    args = parser.parse_args(argv)
    for path in sorted(EXAMPLES.glob("*.ipynb")):
        notebook = executed(path)
        if not args.check:
            nbformat.write(notebook, path)
        print(f"{'ran' if args.check else 'ran and saved'} {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
