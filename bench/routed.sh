#!/usr/bin/env bash
# Measures what routing costs gridmq: the same publish load (N publishers on one topic) against
# a fresh gridmq each time, in three modes, for an in-memory and a persistent (data dir) store:
#
#   off        routing off: fan-in to one MQTT subscriber (gridmq-bench --scenario fan-in)
#   unbatched  every message routed to gridmq-bench's webhook, maxEventsPerBatch = 1
#   batched    the same with maxEventsPerBatch = 100 (JSON array bodies)
#
# and prints a markdown table: delivered events/s, the ratio to the routing-off rate of the same
# store, latency, loss, requests and events per request, and gridmq's CPU time.
#
# In the routed modes gridmq-bench starts first (its webhook receiver must be listening when
# gridmq starts, which is when gridmq sends its validation handshake), then gridmq; the tool
# waits for the broker and the handshake before publishing.
#
# Environment (all optional):
#   BENCH_DURATION      seconds of publishing per run (default 10)
#   BENCH_CLIENTS       publishers (default 10)
#   BENCH_QOS           0, 1 or 2 (default 1)
#   BENCH_MQTT          3 or 5 (default 5)
#   BENCH_PAYLOAD       payload bytes (default 64)
#   BENCH_DRAIN         seconds to wait for routed events after publishing (default 10)
#   BENCH_STORES        "memory disk" (default both)
#   BENCH_MODES         "off unbatched batched" (default all three)
#   BENCH_ARGS          extra gridmq-bench flags for every run
#   BENCH_PORT          gridmq's MQTT port (default 21883)
#   BENCH_WEBHOOK_PORT  the webhook receiver's port (default 28080)
#   BENCH_BUILD         workspace (default): cargo build --release in this checkout;
#                       head: build what is committed at HEAD in a copy (/tmp/relsrc, target
#                       BENCH_TARGET_DIR, default /tmp/reltarget), for when the shared target
#                       directory is locked by other builds; none: use GRIDMQ_BIN and BENCH_BIN
#   GRIDMQ_BIN, BENCH_BIN  binaries to use instead of the built ones
# Needs: cargo, git (BENCH_BUILD=head), python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-10}
CLIENTS=${BENCH_CLIENTS:-10}
QOS=${BENCH_QOS:-1}
MQTT=${BENCH_MQTT:-5}
PAYLOAD=${BENCH_PAYLOAD:-64}
DRAIN=${BENCH_DRAIN:-10}
STORES=${BENCH_STORES:-"memory disk"}
MODES=${BENCH_MODES:-"off unbatched batched"}
EXTRA_ARGS=${BENCH_ARGS:-}
MQTT_PORT=${BENCH_PORT:-21883}
WEBHOOK_PORT=${BENCH_WEBHOOK_PORT:-28080}
BUILD=${BENCH_BUILD:-workspace}

RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$RESULTS_DIR/routed-$STAMP.jsonl
TABLE=$RESULTS_DIR/routed-$STAMP.md
LOGS=$RESULTS_DIR/routed-$STAMP-logs
mkdir -p "$LOGS"
WORK=$(mktemp -d /tmp/gridmq-routed.XXXXXX)
BROKER_PID=""
BENCH_PID=""

log() { echo "routed: $*" >&2; }

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

cleanup() {
    stop_pid "$BENCH_PID"
    BENCH_PID=""
    stop_pid "$BROKER_PID"
    BROKER_PID=""
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries ----------------------------------------------------------------------------------

case $BUILD in
workspace)
    log "building gridmq and gridmq-bench (release) in $ROOT"
    (cd "$ROOT" && cargo build --release -p gateway -p gridmq-bench >&2)
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    ;;
head)
    SRC=/tmp/relsrc
    TARGET_DIR=${BENCH_TARGET_DIR:-/tmp/reltarget}
    log "building HEAD ($(git -C "$ROOT" rev-parse --short HEAD)) in $SRC, target $TARGET_DIR"
    rm -rf "$SRC"
    mkdir -p "$SRC"
    git -C "$ROOT" archive HEAD | tar -x -C "$SRC"
    (cd "$SRC" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p gateway -p gridmq-bench >&2)
    ;;
none) TARGET_DIR="" ;;
*)
    log "BENCH_BUILD must be workspace, head or none"
    exit 2
    ;;
esac
GRIDMQ=${GRIDMQ_BIN:-$TARGET_DIR/release/gridmq}
BENCH=${BENCH_BIN:-$TARGET_DIR/release/gridmq-bench}
for bin in "$GRIDMQ" "$BENCH"; do
    [[ -x $bin ]] || { log "$bin is not an executable"; exit 2; }
done

# --- configs -----------------------------------------------------------------------------------

# Routing off: gridmq's embedded defaults (an empty file is a complete config).
: >"$WORK/off.toml"

routed_config() {
    local batch=$1
    cat <<EOF
# Every message (topic_filter defaults to "#") becomes a CloudEvent of namespace topic
# "telemetry", pushed to gridmq-bench's webhook receiver.
[[routing.routes]]
topic = "telemetry"

[topics.telemetry.eventSubscriptions.hook]
[topics.telemetry.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "http://127.0.0.1:$WEBHOOK_PORT/hook"
maxEventsPerBatch = $batch
preferredBatchSizeInKilobytes = 64
maxConcurrency = 16
EOF
}
routed_config 1 >"$WORK/unbatched.toml"
routed_config 100 >"$WORK/batched.toml"
cp "$WORK"/*.toml "$LOGS/"

# --- one run -----------------------------------------------------------------------------------

start_broker() {
    local store=$1 mode=$2 storage
    if [[ $store == memory ]]; then
        storage=(--in-memory)
    else
        storage=(--data-dir "$WORK/data-$mode")
        rm -rf "$WORK/data-$mode"
    fi
    NO_COLOR=1 "$GRIDMQ" serve --config "$WORK/$mode.toml" --listen "127.0.0.1:$MQTT_PORT" \
        "${storage[@]}" >>"$LOGS/gridmq-$store-$mode.log" 2>&1 &
    BROKER_PID=$!
    if ! wait_port "$MQTT_PORT" "$BROKER_PID"; then
        log "gridmq did not start; its log:"
        tail -20 "$LOGS/gridmq-$store-$mode.log" >&2
        return 1
    fi
}

run_one() {
    local store=$1 mode=$2 scenario out=$WORK/bench.out line="" cpu=null
    local args=(--qos "$QOS" --mqtt "$MQTT" --payload "$PAYLOAD" --clients "$CLIENTS"
        --duration "$DURATION" --host 127.0.0.1 --port "$MQTT_PORT" --label "gridmq-$store-$mode")
    : >"$out"
    if [[ $mode == off ]]; then
        scenario=fan-in
        start_broker "$store" "$mode" || return 0
        # shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
        "$BENCH" --scenario fan-in "${args[@]}" $EXTRA_ARGS >"$out" \
            2>>"$LOGS/bench-$store-$mode.log" &
        BENCH_PID=$!
    else
        scenario=routed
        # The receiver listens before gridmq starts: gridmq validates the endpoint at startup.
        # shellcheck disable=SC2086
        "$BENCH" --scenario routed "${args[@]}" --drain "$DRAIN" \
            --webhook-listen "127.0.0.1:$WEBHOOK_PORT" $EXTRA_ARGS >"$out" \
            2>>"$LOGS/bench-$store-$mode.log" &
        BENCH_PID=$!
        if ! wait_port "$WEBHOOK_PORT" "$BENCH_PID"; then
            log "gridmq-bench's webhook receiver did not start; its log:"
            tail -5 "$LOGS/bench-$store-$mode.log" >&2
        fi
        start_broker "$store" "$mode" || true
    fi
    log "$store $mode: gridmq pid ${BROKER_PID:-none}, gridmq-bench pid $BENCH_PID"
    wait "$BENCH_PID" || log "gridmq-bench reported errors (see the JSON line)"
    BENCH_PID=""
    # What gridmq logs after the tool has gone (deliveries refused by the closed receiver while
    # gridmq still holds a backlog) is not part of the run.
    local log_lines
    log_lines=$(wc -l <"$LOGS/gridmq-$store-$mode.log")
    line=$(head -1 "$out")
    if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        cpu=$(cpu_seconds "$BROKER_PID")
    else
        log "gridmq died during $store $mode"
    fi
    stop_pid "$BROKER_PID"
    BROKER_PID=""
    [[ -n $line ]] || line="{\"scenario\":\"$scenario\",\"errors\":1,\"first_error\":\"no report\"}"
    python3 -c '
import json, re, sys
row = json.loads(sys.argv[1])
row["store"], row["mode"] = sys.argv[2], sys.argv[3]
row["broker_cpu_s"] = json.loads(sys.argv[4])
lines = open(sys.argv[5], errors="replace").readlines()[: int(sys.argv[6])]
bad = [l.strip() for l in lines if re.search(r"\b(WARN|ERROR)\b", l)]
row["broker_warnings"] = len(bad)
row["broker_first_warning"] = bad[0] if bad else None
print(json.dumps(row))' "$line" "$store" "$mode" "$cpu" "$LOGS/gridmq-$store-$mode.log" "$log_lines" \
        | tee -a "$RESULTS" >&2
}

log "stores: $STORES; modes: $MODES; $CLIENTS publishers, QoS $QOS, MQTT $MQTT, $PAYLOAD B," \
    "$DURATION s; results: $RESULTS"
for store in $STORES; do
    for mode in $MODES; do
        run_one "$store" "$mode"
    done
done

# --- the table ---------------------------------------------------------------------------------

python3 - "$RESULTS" >"$TABLE" <<'EOF'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]

def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"

def ms(v):
    return "-" if v is None else f"{v / 1000:,.1f}"

names = {"off": "off (fan-in to MQTT subscriber)", "unbatched": "routed, 1 event/request",
         "batched": "routed, maxEventsPerBatch 100"}
print("| store | routing | events/s delivered | vs off | p50 ms | p99 ms | max ms | accepted | "
      "delivered | loss | dup | reord | refused | requests | events/request | gridmq CPU s |")
print("|" + "---|" * 16)
for r in rows:
    off = next((o for o in rows if o.get("store") == r.get("store") and o.get("mode") == "off"), None)
    rate = r.get("msgs_per_sec")
    ratio = "-"
    if off and off.get("msgs_per_sec") and rate is not None:
        x = rate / off["msgs_per_sec"]
        ratio = f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x"
    accepted = r.get("expected")
    store = "in-memory" if r.get("store") == "memory" else "data dir"
    cells = [store, names.get(r.get("mode"), r.get("mode")), fmt(rate), ratio,
             ms(r.get("p50_us")), ms(r.get("p99_us")), ms(r.get("max_us")), fmt(accepted),
             fmt(r.get("received")), fmt(r.get("loss")), fmt(r.get("duplicates")),
             fmt(r.get("reordered")), fmt(r.get("refused")), fmt(r.get("requests")),
             fmt(r.get("events_per_request"), 2), fmt(r.get("broker_cpu_s"), 2)]
    print("| " + " | ".join(cells) + " |")
notes = [r for r in rows if r.get("errors") or r.get("broker_warnings")]
if notes:
    print()
    for r in notes:
        print(f"- {r.get('store')} {r.get('mode')}: {r.get('errors', 0)} error(s)"
              f" (first: {r.get('first_error')}); gridmq log warnings/errors:"
              f" {r.get('broker_warnings', 0)} (first: {r.get('broker_first_warning')})")
EOF
cat "$TABLE"
log "raw results: $RESULTS; table: $TABLE; gridmq and gridmq-bench logs: $LOGS"
