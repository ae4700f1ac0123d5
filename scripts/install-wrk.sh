#!/usr/bin/env bash
# Install wrk (the HTTP load generator of benches/bench_http.py) from Debian's packages.
set -euo pipefail
if command -v wrk >/dev/null; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get install -y -q wrk || { $SUDO apt-get update -q && $SUDO apt-get install -y -q wrk; }
