#!/usr/bin/env bash
# Build the Rust API's examples (examples/rust: the seeds' programs in Rust) once, then run
# each. Every example checks its own results, prints one summary line and exits non-zero
# on a wrong result; the first failure stops the script with that status.
set -euo pipefail
cd "$(dirname "$0")/.."

examples=(tasks_gather future_resolved producer_consumer blocking_pool echo_server crawler chat_server
          hyper_hello websocket_echo subprocess_pipeline pool_echo)

cargo build -p ferroloop --features hyper --examples --release -q
bin_dir="${CARGO_TARGET_DIR:-target}/release/examples"

for name in "${examples[@]}"; do
    echo "== $name"
    # each finishes in well under 2 s; 60 s only guards against a hang
    status=0
    timeout 60 "$bin_dir/$name" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "FAILED: $name (exit status $status)" >&2
        exit "$status"
    fi
done
echo "rust examples: ${#examples[@]} passed"
