#!/usr/bin/env bash
# Measures gridmq's pull delivery: a queue event subscription preloaded with BENCH_EVENTS
# CloudEvents over HTTP, then drained by 1 and by 8 receivers that receive and acknowledge over
# the data-plane API (gridmq-bench --scenario pull), against a fresh gridmq each time, with an
# in-memory and a persistent (data dir) store. Prints a markdown table: acknowledged events/s,
# receive and acknowledge latency, duplicates, missing events, gridmq's CPU time and peak RSS.
#
# Environment (all optional):
#   BENCH_EVENTS        events preloaded per run (default 200000)
#   BENCH_RECEIVERS     receiver counts to run (default "1 8")
#   BENCH_MAX_EVENTS    maxEvents of each receive, 1 to 100 (default 100)
#   BENCH_PAYLOAD       characters of each event's data (default 64)
#   BENCH_STORES        "memory disk" (default both)
#   BENCH_ARGS          extra gridmq-bench flags for every run
#   BENCH_PORT          gridmq's MQTT port (default 22883; not used by the runs)
#   BENCH_API_PORT      gridmq's data-plane API port (default 28180)
#   BENCH_BUILD         workspace (default): cargo build --release in this checkout;
#                       head: build what is committed at HEAD in a copy (/tmp/relsrc, target
#                       BENCH_TARGET_DIR, default /tmp/reltarget); none: use GRIDMQ_BIN and
#                       BENCH_BIN
#   GRIDMQ_BIN, BENCH_BIN  binaries to use instead of the built ones
# Needs: cargo, git (BENCH_BUILD=head), python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EVENTS=${BENCH_EVENTS:-200000}
RECEIVERS=${BENCH_RECEIVERS:-"1 8"}
MAX_EVENTS=${BENCH_MAX_EVENTS:-100}
PAYLOAD=${BENCH_PAYLOAD:-64}
STORES=${BENCH_STORES:-"memory disk"}
EXTRA_ARGS=${BENCH_ARGS:-}
MQTT_PORT=${BENCH_PORT:-22883}
API_PORT=${BENCH_API_PORT:-28180}
BUILD=${BENCH_BUILD:-workspace}
ACCESS_KEY="cHVsbC1iZW5jaC1rZXk="

RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$RESULTS_DIR/pull-$STAMP.jsonl
TABLE=$RESULTS_DIR/pull-$STAMP.md
LOGS=$RESULTS_DIR/pull-$STAMP-logs
mkdir -p "$LOGS"
WORK=$(mktemp -d /tmp/gridmq-pull.XXXXXX)
BROKER_PID=""
BENCH_PID=""

log() { echo "pull: $*" >&2; }

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

# --- config ------------------------------------------------------------------------------------

# The whole preload waits in the routing buffer until it is acknowledged, so the buffer must
# hold it (the default, 100,000, would refuse the rest with 503).
BUFFERED=$((EVENTS > 100000 ? EVENTS + 1000 : 100000))
cat >"$WORK/pull.toml" <<EOF
[http]
listen = "127.0.0.1:$API_PORT"
access_keys = ["$ACCESS_KEY"]

[routing]
max_buffered_events = $BUFFERED

# Every MQTT message would become an event of "orders" too; the runs publish over HTTP only.
[[routing.routes]]
topic = "orders"

[topics.orders.eventSubscriptions.worker]
deliveryMode = "Queue"
EOF
cp "$WORK/pull.toml" "$LOGS/"

# --- one run -----------------------------------------------------------------------------------

start_broker() {
    local store=$1 name=$2 storage
    if [[ $store == memory ]]; then
        storage=(--in-memory)
    else
        storage=(--data-dir "$WORK/data-$name")
        rm -rf "$WORK/data-$name"
    fi
    NO_COLOR=1 "$GRIDMQ" serve --config "$WORK/pull.toml" --listen "127.0.0.1:$MQTT_PORT" \
        "${storage[@]}" >>"$LOGS/gridmq-$name.log" 2>&1 &
    BROKER_PID=$!
    if ! wait_port "$API_PORT" "$BROKER_PID"; then
        log "gridmq did not start; its log:"
        tail -20 "$LOGS/gridmq-$name.log" >&2
        return 1
    fi
}

peak_rss_kb() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

run_one() {
    local store=$1 receivers=$2 name="$1-$2" out=$WORK/bench.out line="" cpu=null rss=null
    : >"$out"
    start_broker "$store" "$name" || return 0
    # shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
    "$BENCH" --scenario pull --api "127.0.0.1:$API_PORT" --access-key "$ACCESS_KEY" \
        --receivers "$receivers" --events "$EVENTS" --max-events "$MAX_EVENTS" \
        --payload "$PAYLOAD" --broker-pid "$BROKER_PID" --label "gridmq-$name" $EXTRA_ARGS \
        >"$out" 2>>"$LOGS/bench-$name.log" &
    BENCH_PID=$!
    log "$store, $receivers receivers: gridmq pid $BROKER_PID, gridmq-bench pid $BENCH_PID"
    wait "$BENCH_PID" || log "gridmq-bench reported errors (see the JSON line)"
    BENCH_PID=""
    line=$(head -1 "$out")
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        cpu=$(cpu_seconds "$BROKER_PID")
        rss=$(peak_rss_kb "$BROKER_PID")
    else
        log "gridmq died during $store, $receivers receivers"
    fi
    stop_pid "$BROKER_PID"
    BROKER_PID=""
    [[ -n $line ]] || line='{"scenario":"pull","errors":1,"first_error":"no report"}'
    python3 -c '
import json, re, sys
row = json.loads(sys.argv[1])
row["store"], row["receivers"] = sys.argv[2], int(sys.argv[3])
row["broker_cpu_s"] = json.loads(sys.argv[4])
row["broker_peak_rss_kb"] = json.loads(sys.argv[5])
lines = open(sys.argv[6], errors="replace").readlines()
bad = [l.strip() for l in lines if re.search(r"\b(WARN|ERROR)\b", l)]
row["broker_warnings"] = len(bad)
row["broker_first_warning"] = bad[0] if bad else None
print(json.dumps(row))' "$line" "$store" "$receivers" "$cpu" "$rss" "$LOGS/gridmq-$name.log" \
        | tee -a "$RESULTS" >&2
}

log "stores: $STORES; receivers: $RECEIVERS; $EVENTS events of $PAYLOAD B data," \
    "maxEvents $MAX_EVENTS; results: $RESULTS"
for store in $STORES; do
    for receivers in $RECEIVERS; do
        run_one "$store" "$receivers"
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

print("| store | receivers | events | acknowledged/s | receive s | receive p50 ms | receive p99 ms | "
      "ack p50 ms | ack p99 ms | events/receive | dup | missing | failed tokens | redelivered | "
      "preload events/s | gridmq CPU s (receive) | gridmq CPU s (total) | gridmq peak RSS MB |")
print("|" + "---|" * 18)
for r in rows:
    store = "in-memory" if r.get("store") == "memory" else "data dir"
    rss = r.get("broker_peak_rss_kb")
    cells = [store, str(r.get("receivers")), fmt(r.get("published")), fmt(r.get("msgs_per_sec")),
             fmt(r.get("elapsed"), 2), ms(r.get("p50_us")), ms(r.get("p99_us")),
             ms(r.get("ack_p50_us")), ms(r.get("ack_p99_us")), fmt(r.get("events_per_request"), 1),
             fmt(r.get("duplicates")), fmt(r.get("loss")), fmt(r.get("failed_tokens")),
             fmt(r.get("redelivered")), fmt(r.get("preload_per_sec")),
             fmt(r.get("broker_receive_cpu_s"), 2), fmt(r.get("broker_cpu_s"), 2),
             fmt(None if rss is None else rss / 1024)]
    print("| " + " | ".join(cells) + " |")
notes = [r for r in rows if r.get("errors") or r.get("broker_warnings")]
if notes:
    print()
    for r in notes:
        print(f"- {r.get('store')}, {r.get('receivers')} receivers: {r.get('errors', 0)} error(s)"
              f" (first: {r.get('first_error')}); gridmq log warnings/errors:"
              f" {r.get('broker_warnings', 0)} (first: {r.get('broker_first_warning')})")
EOF
cat "$TABLE"
log "raw results: $RESULTS; table: $TABLE; gridmq and gridmq-bench logs: $LOGS"
