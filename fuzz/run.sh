#!/usr/bin/env bash
# Fuzzes the parsers and the token verifier in `stratus-wire`.
#   bash fuzz/run.sh                 every target, 300 s each
#   bash fuzz/run.sh tokens 60       one target (or several), 60 s each
# Installs cargo-fuzz under ~/.cache/stratus/tools. Builds with the stable
# toolchain (no sanitizer: these targets are safe Rust; libFuzzer still
# guides by coverage). New inputs go to ~/.cache/stratus/fuzz-corpus; the
# committed seeds in fuzz/corpus are read, never written.
set -euo pipefail
cd "$(dirname "$0")"
TOOLS="${STRATUS_BENCH_TOOLS:-$HOME/.cache/stratus/tools}"
export PATH="$TOOLS/bin:$PATH"
export CARGO_TARGET_DIR="${STRATUS_FUZZ_TARGET_DIR:-$HOME/.cache/stratus/fuzz-target}"
# libFuzzer's instrumentation flags are unstable options of rustc.
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked --root "$TOOLS" cargo-fuzz --version 0.13.2

seconds=300
targets=()
for arg in "$@"; do
    if [[ "$arg" =~ ^[0-9]+$ ]]; then seconds=$arg; else targets+=("$arg"); fi
done
[ ${#targets[@]} -gt 0 ] || targets=(address admin_bodies tokens)

for target in "${targets[@]}"; do
    work="$HOME/.cache/stratus/fuzz-corpus/$target"
    mkdir -p "$work"
    echo "==> $target for $seconds s"
    cargo fuzz run -s none --release "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 25
done
