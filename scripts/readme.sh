#!/usr/bin/env bash
# Runs the shell blocks of README.md's "Your first function" and "A five-minute
# tour" as a reader would type them, each in a shell that stops at the first
# failing command. Differences from the page, so a run never touches a
# developer's own host or data:
#   - `stratus` is the one in $STRATUS_BIN_DIR, and `export CARGO_TARGET_DIR=…`
#     and `export PATH=…` lines are left to the caller's environment;
#   - `bash scripts/dev.sh up &` is `stratus up examples/hello` on a free port
#     with a temporary data directory (dev.sh would build the binary again);
#   - ports 8080 and 8090 are free ports, and `.stratus/` that data directory.
# Usage: STRATUS_BIN_DIR=DIR CARGO_TARGET_DIR=DIR bash scripts/readme.sh
set -euo pipefail

cd "$(dirname "$0")/.."
: "${STRATUS_BIN_DIR:?set STRATUS_BIN_DIR to the directory holding the stratus binary}"
export PATH="$STRATUS_BIN_DIR:$PATH"
# Every crate the blocks build is in Cargo.lock and the local registry cache.
export CARGO_NET_OFFLINE=true

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The fenced `sh` block that follows the heading "## $1".
block() {
    awk -v heading="## $1" '
        $0 == heading { found = 1; next }
        found && /^```sh$/ { inside = 1; next }
        inside && /^```$/ { exit }
        inside { print }
    ' README.md
}

run() {
    local name=$1 data port port2 script
    data=$(mktemp -d)
    port=$(free_port)
    port2=$(free_port)
    script=$(block "$name" |
        grep -v -e '^export CARGO_TARGET_DIR=' -e '^export PATH=' |
        sed -e "s|bash scripts/dev.sh up &|stratus up examples/hello --listen 127.0.0.1:$port --data $data \&|" \
            -e "s|\\.stratus/|$data/|g" \
            -e "s|127.0.0.1:8080|127.0.0.1:$port|g" \
            -e "s|127.0.0.1:8090|127.0.0.1:$port2|g")
    if [ -z "$script" ]; then
        echo "error: README.md has no sh block under \"## $name\"" >&2
        exit 1
    fi
    echo "==> README: $name"
    # Background jobs (the servers) end with the block, however it ends. No
    # pipefail, as in a reader's shell: `curl … | head -c 300` ends curl early
    # (a write to a closed pipe) whenever head is done before the body is.
    bash -eu -c "trap 'kill \$(jobs -p) 2>/dev/null || true' EXIT
$script"
    rm -rf "$data"
    echo "<== README: $name ... ok"
}

run "Your first function"
run "A five-minute tour"
