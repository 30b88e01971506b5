#!/usr/bin/env bash
# Set up on first use (see scripts/setup.sh), then run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
