#!/usr/bin/env bash
# Measures what durability costs: QoS 1 with persistent sessions (expiry 3600, so every delivery
# is journaled) against gridmq with a data directory and against the same binary in memory,
# alternating the two in rounds so that both see the same machine. Prints a markdown table of
# delivered messages/s, the data-dir/in-memory ratio per round, and gridmq's CPU time per
# delivered message, split into its store writer thread and the rest.
#
# Environment (all optional):
#   BENCH_DURATION   seconds of publishing per run (default 10)
#   BENCH_ROUNDS     in-memory/data-dir pairs per scenario (default 3)
#   BENCH_SCENARIOS  scenarios (default "fan-in pairs"), 100 clients each
#   BENCH_ARGS       extra gridmq-bench flags for every run
#   BENCH_PORT       gridmq's MQTT port (default 23883)
#   GRIDMQ_BIN, BENCH_BIN  binaries to use instead of building this checkout
# Needs: cargo, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
SCENARIOS=${BENCH_SCENARIOS:-"fan-in pairs"}
EXTRA_ARGS=${BENCH_ARGS:-}
PORT=${BENCH_PORT:-23883}
CLK_TCK=$(getconf CLK_TCK)

RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$RESULTS_DIR/persistent-$STAMP.jsonl
TABLE=$RESULTS_DIR/persistent-$STAMP.md
WORK=$(mktemp -d /tmp/gridmq-persistent.XXXXXX)
BROKER_PID=""

log() { echo "persistent: $*" >&2; }

stop_broker() {
    if [[ -n "$BROKER_PID" ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}

cleanup() {
    stop_broker
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z "${GRIDMQ_BIN:-}" || -z "${BENCH_BIN:-}" ]]; then
    log "building gridmq and gridmq-bench (release)"
    (cd "$ROOT" && cargo build --release -p gateway -p gridmq-bench >&2)
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
fi
GRIDMQ=${GRIDMQ_BIN:-$TARGET_DIR/release/gridmq}
BENCH=${BENCH_BIN:-$TARGET_DIR/release/gridmq-bench}

wait_for_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "gridmq did not open port $PORT"
    return 1
}

# CPU ticks of the broker: all threads, and the store writer thread alone.
cpu_ticks() {
    local total=0 store=0 task fields ticks
    for task in /proc/"$BROKER_PID"/task/*; do
        read -r -a fields <"$task/stat" || continue
        ticks=$((fields[13] + fields[14]))
        total=$((total + ticks))
        if [[ "$(cat "$task/comm")" == "gridmq-store" ]]; then
            store=$ticks
        fi
    done
    echo "$total $store"
}

run() {
    local scenario=$1 store=$2 round=$3 args
    rm -rf "$WORK/data"
    if [[ "$store" == memory ]]; then
        args=(--in-memory)
    else
        args=(--data-dir "$WORK/data")
    fi
    "$GRIDMQ" serve --listen "127.0.0.1:$PORT" "${args[@]}" >"$WORK/gridmq.log" 2>&1 &
    BROKER_PID=$!
    wait_for_port
    local line
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
    line=$("$BENCH" --port "$PORT" --scenario "$scenario" --clients 100 --qos 1 --mqtt 5 \
        --duration "$DURATION" --session-expiry 3600 --label "$store" $EXTRA_ARGS | tail -n 1)
    read -r total store_ticks < <(cpu_ticks)
    stop_broker
    python3 - "$line" "$round" "$total" "$store_ticks" "$CLK_TCK" >>"$RESULTS" <<'EOF'
import json, sys
row = json.loads(sys.argv[1])
row["round"] = int(sys.argv[2])
tck = float(sys.argv[5])
row["broker_cpu_s"] = int(sys.argv[3]) / tck
row["store_cpu_s"] = int(sys.argv[4]) / tck
print(json.dumps(row))
EOF
    log "$scenario $store round $round: $(tail -n 1 "$RESULTS" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["msgs_per_sec"]), "msgs/s")')"
}

for scenario in $SCENARIOS; do
    for round in $(seq 1 "$ROUNDS"); do
        run "$scenario" memory "$round"
        run "$scenario" disk "$round"
    done
done

python3 - "$RESULTS" "$DURATION" >"$TABLE" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"QoS 1, MQTT 5, 100 clients, session expiry 3600, {sys.argv[2]} s per run; "
      "CPU is gridmq's, per delivered message.\n")
print("| scenario | round | in memory msgs/s | data dir msgs/s | data dir / in memory "
      "| CPU µs in memory | CPU µs data dir (store writer) | loss |")
print("|---|---|---|---|---|---|---|---|")
def per_msg(row, key):
    delivered = row.get("received") or 0
    return row[key] / delivered * 1e6 if delivered else float("nan")
by = {(r["scenario"], r["round"], r["label"]): r for r in rows}
for (scenario, rnd, label), disk in sorted(by.items()):
    if label != "disk":
        continue
    mem = by.get((scenario, rnd, "memory"))
    if mem is None:
        continue
    ratio = disk["msgs_per_sec"] / mem["msgs_per_sec"] if mem["msgs_per_sec"] else 0
    print(f"| {scenario} | {rnd} | {mem['msgs_per_sec']:,.0f} | {disk['msgs_per_sec']:,.0f} "
          f"| {ratio:.2f}x | {per_msg(mem, 'broker_cpu_s'):.2f} "
          f"| {per_msg(disk, 'broker_cpu_s'):.2f} ({per_msg(disk, 'store_cpu_s'):.2f}) "
          f"| {mem.get('loss', 0)} / {disk.get('loss', 0)} |")
EOF
cat "$TABLE"
log "raw results: $RESULTS; table: $TABLE"
