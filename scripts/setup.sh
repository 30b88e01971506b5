#!/usr/bin/env bash
# Idempotent set-up, run by scripts/archviz.sh and scripts/test.sh: a venv in .venv with archviz and everything
# it uses (torch from this machine's local wheels; pip, not uv). Steps already done are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Graphviz's `dot` draws diagrams; Chromium runs the browser tests of the HTML reports.
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install ${missing[*]} (Debian: sudo apt-get install ${missing[*]}); continuing without" >&2
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi

if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "setup: installing torch 2.14.1 and torchvision 0.29.1 (local wheels; a few minutes)" >&2
  .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
fi

stamp=.venv/.archviz-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "setup: installing archviz and its dependencies into .venv" >&2
  .venv/bin/python -m pip install --quiet -e ".[torch,report,test,onnx,train,timm,tensorboard,docs]"
  echo "$wanted" > "$stamp"
fi
