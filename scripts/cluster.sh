#!/usr/bin/env bash
# A local Stratus cluster for trying it out: etcd, 3 nodes and a frontend on
# loopback, with `hello` deployed, until Ctrl-C. Run through `bash scripts/dev.sh cluster`,
# which sets up and builds first.
#   STRATUS=path/to/stratus  ETCD_PORT=2379  FIRST_PORT=8081  HELLO_WASM=path/to/hello.wasm
# The ports default to ETCD_PORT and the next one for etcd, FIRST_PORT and
# the next three for the nodes and the frontend; ETCD_PEER_PORT, NODE_PORTS
# ("P1 P2 P3") and FRONTEND_PORT set them one by one.
set -euo pipefail

STRATUS="${STRATUS:?set STRATUS to the stratus binary}"
ETCD_PORT="${ETCD_PORT:-2379}"
FIRST_PORT="${FIRST_PORT:-8081}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-$((ETCD_PORT + 1))}"
read -r -a PORTS <<<"${NODE_PORTS:-$FIRST_PORT $((FIRST_PORT + 1)) $((FIRST_PORT + 2))}"
FRONTEND_PORT="${FRONTEND_PORT:-$((FIRST_PORT + 3))}"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/stratus-cluster.XXXXXX")"
PIDS=()
KEEP_LOGS=

stop() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "$KEEP_LOGS" ] || rm -rf "$DIR"
}
trap stop EXIT
trap 'exit 0' INT TERM

# Whether GET http://127.0.0.1:PORT/PATH answers 200. Bash's own /dev/tcp,
# so the script needs no HTTP client installed.
answers_200() { # PORT, PATH
    local status
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    read -r -t 5 _ status _ <&3 || status=
    exec 3<&-
    [ "$status" = 200 ]
}

wait_for() { # PORT, PATH, what
    for _ in $(seq 1 300); do
        answers_200 "$1" "$2" && return 0
        sleep 0.1
    done
    KEEP_LOGS=1
    echo "error: $3 did not start within 30 s; the logs are in $DIR" >&2
    exit 1
}

etcd --name local --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" >"$DIR/etcd.log" 2>&1 &
PIDS+=($!)
wait_for "$ETCD_PORT" /health "etcd (port $ETCD_PORT; set ETCD_PORT if it is taken)"

OPERATOR_KEY="op_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
URLS=()
for i in 1 2 3; do
    port=${PORTS[$((i - 1))]}
    STRATUS_OPERATOR_KEY="$OPERATOR_KEY" "$STRATUS" serve --cluster "etcd://127.0.0.1:$ETCD_PORT/stratus" \
        --node-id "node$i" --listen "127.0.0.1:$port" --data "$DIR/node$i" >"$DIR/node$i.log" 2>&1 &
    PIDS+=($!)
    URLS+=("http://127.0.0.1:$port")
done
for port in "${PORTS[@]}"; do wait_for "$port" /readyz "the node on port $port"; done

FRONTEND="http://127.0.0.1:$FRONTEND_PORT"
"$STRATUS" frontend --cluster "etcd://127.0.0.1:$ETCD_PORT/stratus" --listen "127.0.0.1:$FRONTEND_PORT" \
    >"$DIR/frontend.log" 2>&1 &
PIDS+=($!)
wait_for "$FRONTEND_PORT" /readyz "the frontend"

export STRATUS_URL="${URLS[0]}"
ACCOUNT_KEY=$("$STRATUS" --key "$OPERATOR_KEY" --json account create acme |
    sed -n 's/.*"key": *"\([^"]*\)".*/\1/p')
COMPONENT="${HELLO_WASM:-${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/hello.wasm}"
"$STRATUS" --key "$ACCOUNT_KEY" function deploy hello "$COMPONENT" >/dev/null

cat <<TEXT

A Stratus cluster is running: etcd on 127.0.0.1:$ETCD_PORT, 3 nodes and a frontend.
  operator key:     $OPERATOR_KEY
  account acme key: $ACCOUNT_KEY
  logs:             $DIR

hello was deployed once, through node1; every node answers it:
TEXT
for url in "${URLS[@]}"; do
    echo "  curl -H 'Authorization: Bearer $ACCOUNT_KEY' $url/fn/acme/hello"
done
cat <<TEXT

The frontend sends each call to its group's node (x-stratus-node says which);
point clients, and STRATUS_URL, at it:
  curl -i -H 'Authorization: Bearer $ACCOUNT_KEY' -H 'x-stratus-sub-tenant: alice' $FRONTEND/fn/acme/hello

The nodes, their lag and etcd's health:
  STRATUS_URL=${URLS[1]} $STRATUS --key $OPERATOR_KEY cluster status

Ctrl-C stops the cluster and deletes its data.
TEXT
wait
