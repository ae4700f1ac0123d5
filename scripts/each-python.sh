#!/usr/bin/env bash
# Run make targets once per supported CPython (scripts/pythons.sh), each with its own
# environment: `bash scripts/each-python.sh test-python conformance` runs
# `make test-python conformance PY=.venv-X.Y/bin/python` for every X.Y, after building
# the extension for it. Stops at the first version that fails, naming it.
set -euo pipefail
cd "$(dirname "$0")/.."

versions=$(bash scripts/pythons.sh | cut -d' ' -f1)
for version in $versions; do
    echo "######## CPython $version: $*"
    bash scripts/setup.sh "$version"
    if ! make --no-print-directory "$@" PY=".venv-$version/bin/python"; then
        echo "######## FAILED on CPython $version: make $*" >&2
        exit 1
    fi
done
echo "######## passed on CPython $(echo $versions | tr ' ' ','): make $*"
