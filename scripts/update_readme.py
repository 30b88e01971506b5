"""The old name of scripts/update_docs.py, which reruns the examples of README.md and of every docs page.

    .venv/bin/python scripts/update_readme.py [--check] [PATHS...]  # the same as scripts/update_docs.py
"""

from __future__ import annotations

import sys

from update_docs import main  # this script's own folder is first on sys.path

if __name__ == "__main__":
    sys.exit(main())
