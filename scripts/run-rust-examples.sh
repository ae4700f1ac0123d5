#!/usr/bin/env bash
# Build the Rust API's examples (examples/rust, the seeds' programs in Rust) once, then run
# each; every example checks its own results and exits non-zero on a wrong one.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=(tasks_gather future_resolved producer_consumer blocking_pool echo_server crawler)
cargo build -p ferroloop --examples --release -q
for name in "${examples[@]}"; do
    timeout 60 "target/release/examples/$name"
done
echo "rust examples: ${#examples[@]} passed"
