#!/usr/bin/env bash
# Set up the project's own environment on a fresh machine: a virtualenv in .venv with the
# test and benchmark dependencies (pytest, uvloop and rloop for comparison), and the
# extension built in release mode and installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.deps-installed
if [ ! -f "$stamp" ] || [ scripts/requirements-dev.txt -nt "$stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-dev.txt
    touch "$stamp"
fi
VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" maturin develop --release -q
