#!/usr/bin/env bash
# Issue 18's GPU check in one command, as a session runs it on a lent GPU machine (the device tool copies the working
# tree there and brings back what the command writes under $OUT):
#     bash benchmarks/gpu.sh [benchmarks/gpu.py's options]
# writes gpu-<card>.md, gpu-<card>.json and gpu-log.txt in $OUT (where OUT is unset: the .md and .json in
# benchmarks/results/). Python: this checkout's .venv where it has one; else a python3 that already holds torch and
# torchvision (the device machines' image does, and reaches no package registry), with this checkout on PYTHONPATH;
# else scripts/setup.sh makes the .venv, as scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."

needs="import torch, torchvision, yaml, rich"
if [ -x .venv/bin/python ] && .venv/bin/python -c "$needs" 2>/dev/null; then
  python=.venv/bin/python
elif command -v python3 >/dev/null 2>&1 && python3 -c "$needs" 2>/dev/null; then
  python=python3
else
  bash scripts/setup.sh
  python=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ -z "${OUT:-}" ]; then
  exec "$python" benchmarks/gpu.py "$@"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi | tee "$OUT/gpu-log.txt"
"$python" benchmarks/gpu.py --results "$OUT" "$@" 2>&1 | tee -a "$OUT/gpu-log.txt"
