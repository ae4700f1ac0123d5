#!/usr/bin/env bash
# make wheel-check: install each wheel in dist/ (scripts/wheels.sh) into a clean virtualenv
# outside the source tree, one per supported CPython found, and run from there, in a
# directory that holds no ferroloop source: the import check (ferroloop comes from the
# venv's site-packages), `ferroloop --version`, the smoke tests (a copy of the pytest files
# below, on asyncio, ferroloop and each other loop they know) and the demo.
#
#   bash scripts/wheel-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# the native pieces, end to end: package/CLI, version fixes, call_soon, streams, TLS,
# subprocesses, datagrams, fault injection
smoke="test_package.py test_versions.py test_call_soon.py test_streams_api.py test_tls.py
       test_subprocess.py test_datagram.py test_native_faults.py"

work=$(mktemp -d "${TMPDIR:-/tmp}/ferroloop-wheel-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

while read -r version exe; do
    tag="cp${version/./}"
    wheel=$(ls dist/ferroloop-*-"$tag"-"$tag"-manylinux*.whl 2>/dev/null | head -1)
    if [ -z "$wheel" ]; then
        echo "wheel-check: no wheel for CPython $version in dist/ (run make wheels)" >&2
        exit 1
    fi
    echo "== CPython $version: $(basename "$wheel")"
    venv="$work/venv-$version"
    run="$work/run-$version"
    "$exe" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$root/$wheel" pytest pytest-timeout
    mkdir -p "$run/tests"
    cp tests/conftest.py tests/loop_helpers.py "$run/tests/"
    for f in $smoke; do cp "tests/$f" "$run/tests/"; done
    # the suite's pytest settings, and nothing else of the project's configuration
    cat > "$run/pytest.ini" <<'INI'
[pytest]
filterwarnings = error
xfail_strict = true
timeout = 30
INI
    cp examples/demo.py "$run/"
    (
        cd "$run"
        "$venv/bin/python" - "$venv" <<'PY'
import os, sys
import ferroloop
venv = os.path.realpath(sys.argv[1])
where = os.path.realpath(ferroloop.__file__)
assert where.startswith(venv + os.sep), f"ferroloop imported from {where}, not from {venv}"
print(f"ferroloop {ferroloop.__version__} from {os.path.dirname(where)}")
PY
        "$venv/bin/ferroloop" --version
        "$venv/bin/python" -m pytest -q -p no:cacheprovider tests
        "$venv/bin/python" demo.py --n 100000 --rounds 1
    )
done < <(bash scripts/pythons.sh)
echo "== wheel-check passed"
