#!/usr/bin/env bash
# Set up on first use (see scripts/setup.sh), then run archviz with the given arguments.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/archviz" "$@"
