#!/usr/bin/env bash
# Builds release binaries and the example components, then runs the
# benchmarks; each prints ratios against a baseline measured in the same run
# and appends its table to bench/RESULTS.md.
#   bash bench/run.sh            every benchmark
#   bash bench/run.sh tokens     one of them (or several, by name)
# `throughput` needs wrk and `wasmtime serve` 48.0.x; both are installed here
# when missing (wasmtime-cli under ~/.cache/stratus/tools, a long first build).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stratus/target}"
TOOLS="${STRATUS_BENCH_TOOLS:-$HOME/.cache/stratus/tools}"
WASMTIME_VERSION="~48.0.4"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "run as root, or install sudo, to: $*" >&2
        return 1
    fi
}

benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(deploy fairness isolation tokens registry throughput)

for bench in "${benches[@]}"; do
    if [ "$bench" = throughput ]; then
        command -v wrk >/dev/null || (as_root apt-get update && as_root apt-get install -y wrk)
        # Each warm environment holds a few memory mappings; Linux's default
        # cap of 65,530 per process stops near 6,000 of them, short of the
        # 10,000-partition memory figure.
        if [ "$(cat /proc/sys/vm/max_map_count)" -lt 262144 ]; then
            echo "raising vm.max_map_count to 262144 for the idle-environment figures" >&2
            as_root sysctl -q -w vm.max_map_count=262144 || true
        fi
        if ! "$TOOLS/bin/wasmtime" --version 2>/dev/null | grep -q '^wasmtime 48\.0\.'; then
            cargo install --locked --root "$TOOLS" wasmtime-cli --version "$WASMTIME_VERSION"
        fi
    fi
done

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --locked --release -p stratus -p stratus-bench
cargo build --locked --release --target wasm32-wasip2 -p busy -p hello -p whoami -p heavy
for bench in "${benches[@]}"; do
    extra=()
    [ "$bench" = throughput ] && extra=(--wasmtime "$TOOLS/bin/wasmtime")
    "$CARGO_TARGET_DIR/release/stratus-bench" "$bench" \
        --stratus "$CARGO_TARGET_DIR/release/stratus" \
        --target-dir "$CARGO_TARGET_DIR" \
        --results bench/RESULTS.md \
        "${extra[@]}"
done
