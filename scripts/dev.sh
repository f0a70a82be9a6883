#!/usr/bin/env bash
# The project's two entry points, usable on a fresh machine:
#   bash scripts/dev.sh up     set up, build, and run `stratus up examples/hello`
#   bash scripts/dev.sh test   set up, lint, and run every test (what CI runs)
#   bash scripts/dev.sh cluster  set up, build, and run a local cluster (etcd + 3 nodes)
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Builds are kept outside the clone so repeated runs (and CI on the same
# machine) reuse them; a fresh machine simply starts from nothing.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stratus/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Cargo-installed tools (cargo-deny) live beside the builds, also outside the
# clone; the pinned version is installed on first use.
TOOLS_DIR="$HOME/.cache/stratus/tools"
CARGO_DENY_VERSION=0.20.2
export PATH="$TOOLS_DIR/bin:$PATH"

# Debian packages the build and the tests need: `protoc` builds the etcd
# client, the tests start their own `etcd` on loopback ports (`etcdctl`
# is there to look inside), and `faketime` skews one node's clock.
DEBIAN_PACKAGES=(protobuf-compiler etcd-server etcd-client faketime)


install_packages() {
    command -v protoc >/dev/null && command -v etcd >/dev/null && command -v etcdctl >/dev/null &&
        command -v faketime >/dev/null && return 0
    command -v apt-get >/dev/null || {
        echo "error: install protoc and etcd (Debian: apt-get install ${DEBIAN_PACKAGES[*]})" >&2
        exit 1
    }
    echo "installing ${DEBIAN_PACKAGES[*]} (Debian packages)" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${DEBIAN_PACKAGES[@]}" >/dev/null ||
        { as_root apt-get update -q >/dev/null &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${DEBIAN_PACKAGES[@]}" >/dev/null; }
}

setup() {
    install_packages
    if ! command -v cargo >/dev/null; then
        echo "error: cargo is not installed; install Rust 1.95 with rustup first" >&2
        exit 1
    fi
    if command -v rustup >/dev/null; then
        if ! rustup target list --installed | grep -qx wasm32-wasip2; then
            rustup target add wasm32-wasip2
        fi
        rustup component list --installed | grep -q '^clippy' || rustup component add clippy
        rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
    fi
}

install_cargo_deny() {
    if [ "$("$TOOLS_DIR/bin/cargo-deny" --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
        # Built in cargo's own temporary directory, not the project's target dir.
        env -u CARGO_TARGET_DIR cargo install --locked --force --version "$CARGO_DENY_VERSION" \
            --root "$TOOLS_DIR" cargo-deny
    fi
}

# Licenses, duplicate versions and sources of the dependency graph (deny.toml).
# Offline: the advisory database is not reachable here, so `advisories` is not
# run; tests/all/supply_chain.rs pins the versions known advisories require.
cargo_deny_check() {
    # cargo-deny reads the graph for every target, so fetch the crates that
    # the host build itself never downloads (Windows-only ones, for instance).
    cargo fetch --locked
    cargo-deny --locked --offline check --hide-inclusion-graph bans licenses sources
}

step() {
    local started=$SECONDS
    echo "==> $*"
    "$@"
    echo "<== $1 ... done in $((SECONDS - started)) s"
}

case "${1:-}" in
    up)
        shift
        setup
        step cargo build --locked -p stratus
        exec "$CARGO_TARGET_DIR/debug/stratus" up examples/hello "$@"
        ;;
    cluster)
        setup
        step cargo build --locked -p stratus
        step cargo build --locked --release --target wasm32-wasip2 -p hello
        STRATUS="$CARGO_TARGET_DIR/debug/stratus" exec bash scripts/cluster.sh
        ;;
    test)
        setup
        step cargo fmt --all --check
        step install_cargo_deny
        step cargo_deny_check
        step cargo clippy --locked --workspace --all-targets -- -D warnings
        step cargo test --locked --workspace
        step bash deploy/check.sh
        # Each fuzz target briefly, from its committed seeds: they build, and
        # the seeds and what 20 s of mutation finds break no invariant.
        step bash fuzz/run.sh 20
        ;;
    *)
        echo "usage: bash scripts/dev.sh up [stratus up flags] | test | cluster" >&2
        exit 2
        ;;
esac
