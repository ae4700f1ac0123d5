#!/usr/bin/env bash
# make wheels: a manylinux_2_17 (manylinux2014) wheel for every supported CPython found
# (scripts/pythons.sh) and an sdist, in dist/. No Docker: maturin links with zig (the
# `ziglang` package from PyPI) against glibc 2.17's symbols, and auditwheel checks the tag
# each wheel's symbols allow. The tools live in their own environment, .venv-build.
#
#   bash scripts/wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."

tools=.venv-build
if [ ! -x "$tools/bin/python" ]; then
    python3 -m venv "$tools"
fi
stamp="$tools/.deps-installed"
if [ ! -f "$stamp" ] || [ scripts/requirements-wheels.txt -nt "$stamp" ]; then
    "$tools/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-wheels.txt
    touch "$stamp"
fi
# maturin finds zig as `python3 -m ziglang` on PATH
export PATH="$PWD/$tools/bin:$PATH"

mkdir -p dist
rm -f dist/ferroloop-*.whl dist/ferroloop-*.tar.gz
while read -r version exe; do
    echo "== wheel for CPython $version ($exe)"
    CARGO_TARGET_DIR="$PWD/target/wheel-$version" maturin build --release --zig \
        --compatibility manylinux2014 --interpreter "$exe" --out dist -q
done < <(bash scripts/pythons.sh)

echo "== sdist"
maturin sdist --out dist

echo "== auditwheel"
status=0
for wheel in dist/ferroloop-*.whl; do
    # the most recent glibc the wheel's symbols need decides the tag auditwheel accepts
    shown=$(auditwheel show "$wheel")
    tag=$(printf '%s\n' "$shown" | tr -d '\n' | sed -n 's/.*consistent with the following platform tag: *"\([^"]*\)".*/\1/p')
    glibc_minor=$(printf '%s' "$tag" | sed -n 's/^manylinux_2_\([0-9]*\)_.*/\1/p')
    if [ -n "$glibc_minor" ] && [ "$glibc_minor" -le 17 ]; then
        echo "ok   $(basename "$wheel"): $tag"
    else
        echo "FAIL $(basename "$wheel"): auditwheel allows '${tag:-nothing}', not manylinux_2_17 or older" >&2
        printf '%s\n' "$shown" >&2
        status=1
    fi
done
ls -l dist
exit $status
