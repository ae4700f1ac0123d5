#!/usr/bin/env bash
# The CPython interpreters the project builds and tests on, one line each: "X.Y PATH".
#
# Every CPython >= 3.11 found: the default `python3` first, then
# `$(pyenv root)/versions/3.1*/bin/python`; one interpreter per minor version (the first
# found wins). `PYTHONS="python3.12 /opt/py313/bin/python"` overrides the list.
set -euo pipefail

candidates=()
if [ -n "${PYTHONS:-}" ]; then
    read -r -a candidates <<< "$PYTHONS"
else
    candidates+=(python3)
    if command -v pyenv > /dev/null 2>&1; then
        root=$(pyenv root)
        for p in "$root"/versions/3.1*/bin/python; do
            [ -x "$p" ] && candidates+=("$p")
        done
    fi
fi

seen=" "
for p in "${candidates[@]}"; do
    info=$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2], sys.version_info >= (3, 11), sys.executable)' 2>/dev/null) || {
        echo "pythons.sh: cannot run $p" >&2
        [ -n "${PYTHONS:-}" ] && exit 1
        continue
    }
    read -r version supported exe <<< "$info"
    if [ "$supported" != "True" ]; then
        [ -n "${PYTHONS:-}" ] && { echo "pythons.sh: $p is CPython $version; ferroloop needs >= 3.11" >&2; exit 1; }
        continue
    fi
    case "$seen" in *" $version "*) continue ;; esac
    seen="$seen$version "
    echo "$version $exe"
done
