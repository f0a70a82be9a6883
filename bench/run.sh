#!/usr/bin/env bash
# Builds release binaries and the example components, then runs the
# benchmarks; each prints ratios against a baseline measured in the same run
# and appends its table to bench/RESULTS.md.
#   bash bench/run.sh            every benchmark
#   bash bench/run.sh tokens     one of them (or several, by name)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stratus/target}"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --locked --release -p stratus -p stratus-bench
cargo build --locked --release --target wasm32-wasip2 -p busy -p hello -p whoami -p heavy
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(deploy fairness tokens)
for bench in "${benches[@]}"; do
    "$CARGO_TARGET_DIR/release/stratus-bench" "$bench" \
        --stratus "$CARGO_TARGET_DIR/release/stratus" \
        --target-dir "$CARGO_TARGET_DIR" \
        --results bench/RESULTS.md
done
