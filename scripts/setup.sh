#!/usr/bin/env bash
# Set up the project's own environment for each supported CPython (scripts/pythons.sh): a
# virtualenv `.venv-X.Y` with the test and benchmark dependencies (pytest, uvloop and rloop
# for comparison) and the extension built for that interpreter in release mode (maturin,
# editable install; one cargo target directory per version, `target/py-X.Y`, so switching
# versions rebuilds nothing). `.venv` links to the default interpreter's environment.
#
#   bash scripts/setup.sh            # every CPython found
#   bash scripts/setup.sh 3.12       # only the versions named
set -euo pipefail
cd "$(dirname "$0")/.."

wanted=" $* "
first=""
while read -r version exe; do
    [ -z "$first" ] && first=$version
    if [ $# -gt 0 ] && [[ "$wanted" != *" $version "* ]]; then
        continue
    fi
    venv=".venv-$version"
    if [ ! -x "$venv/bin/python" ]; then
        echo "== creating $venv ($exe)"
        "$exe" -m venv "$venv"
    fi
    stamp="$venv/.deps-installed"
    if [ ! -f "$stamp" ] || [ scripts/requirements-dev.txt -nt "$stamp" ]; then
        "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-dev.txt
        touch "$stamp"
    fi
    echo "== building ferroloop for CPython $version"
    VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" CARGO_TARGET_DIR="$PWD/target/py-$version" \
        "$venv/bin/maturin" develop --release -q
done < <(bash scripts/pythons.sh)

if [ -n "$first" ] && [ ! -e .venv -o -L .venv ]; then
    ln -sfn ".venv-$first" .venv
fi
