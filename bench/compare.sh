#!/usr/bin/env bash
# Runs gridmq, Mosquitto and rumqttd 0.20 one after the other on loopback ports, drives each with
# the same gridmq-bench scenarios, reads each broker's CPU time and peak RSS from /proc, and
# prints a markdown table of the results and of gridmq's ratios to the other two.
#
# Each broker is restarted for every scenario: VmHWM is the peak since process start, so a fresh
# process is what makes the peak a per-scenario number.
#
# Environment (all optional):
#   BENCH_DURATION   seconds of publishing per scenario (default 10)
#   BENCH_BROKERS    brokers to run, space separated (default "gridmq mosquitto rumqttd")
#   BENCH_SCENARIOS  scenario:qos list (default: fan-in, fan-out, pairs at QoS 0 and 1, idle,
#                    storm; the storm always runs MQTT 5, as the issue that asked for it measured)
#   BENCH_ARGS       extra gridmq-bench flags for every run (e.g. "--mqtt 5 --payload 256")
#   GRIDMQ_CONFIG    config file for gridmq (default: none, its embedded defaults)
#   GRIDMQ_BASELINE  another gridmq binary (an older build, say); add "baseline" to BENCH_BROKERS
#                    to run it with the same config, so a change is measured against its base
#                    in one run rather than against a figure from another day
#   GRIDMQ_BASELINE_CONFIG  config file for the baseline (default GRIDMQ_CONFIG): with
#                    GRIDMQ_BASELINE set to the same binary, measures what a setting costs,
#                    e.g. a file with `[metrics]` `enabled = false` for the cost of metrics
#   BENCH_ROUNDS     how many times the scenario list runs (default 1); the brokers alternate
#                    within every round, and the table shows each figure's median over rounds
#   RUMQTTD_ROOT     where rumqttd is installed (default ~/.cache/gridmq-bench/rumqttd)
#   BENCH_PORT       first of the four loopback ports used (default 21883)
# Needs: cargo, python3, and root (or a mosquitto already installed) for apt-get.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-10}
BROKERS=${BENCH_BROKERS:-"gridmq mosquitto rumqttd"}
SCENARIOS=${BENCH_SCENARIOS:-"fan-in:0 fan-in:1 fan-out:0 fan-out:1 pairs:0 pairs:1 idle:0 storm:0"}
EXTRA_ARGS=${BENCH_ARGS:-}
ROUNDS=${BENCH_ROUNDS:-1}
RUMQTTD_ROOT=${RUMQTTD_ROOT:-$HOME/.cache/gridmq-bench/rumqttd}
PORT_BASE=${BENCH_PORT:-21883}
GRIDMQ_PORT=$PORT_BASE
MOSQUITTO_PORT=$((PORT_BASE + 1))
RUMQTTD_V4_PORT=$((PORT_BASE + 2))
RUMQTTD_V5_PORT=$((PORT_BASE + 3))
CLK_TCK=$(getconf CLK_TCK)

RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$RESULTS_DIR/compare-$STAMP.jsonl
TABLE=$RESULTS_DIR/compare-$STAMP.md
WORK=$(mktemp -d /tmp/gridmq-bench.XXXXXX)
BROKER_PID=""

log() { echo "compare: $*" >&2; }

cleanup() {
    stop_broker
    rm -rf "$WORK"
}
trap cleanup EXIT

# 5,000 idle connections need as many descriptors in the tool and in the broker (children
# inherit the limit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# --- install what is missing -------------------------------------------------------------------

has_broker() { [[ " $BROKERS " == *" $1 "* ]]; }
drop_broker() { BROKERS=$(echo " $BROKERS " | sed "s/ $1 / /" | xargs); }

if has_broker mosquitto && ! command -v mosquitto >/dev/null; then
    log "installing mosquitto (Debian package)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; } >&2; then
        log "mosquitto could not be installed; continuing without it"
        drop_broker mosquitto
    fi
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

RUMQTTD=$RUMQTTD_ROOT/bin/rumqttd
if has_broker rumqttd && [[ ! -x $RUMQTTD ]]; then
    log "installing rumqttd 0.20.0 into $RUMQTTD_ROOT"
    # rumqttd 0.20.0's lock file pins metrics 0.22.1, which newer compilers reject (E0521);
    # without --locked cargo picks the newest semver-compatible dependencies instead.
    if ! cargo install rumqttd --version 0.20.0 --locked --root "$RUMQTTD_ROOT" >&2; then
        log "the --locked build of rumqttd failed; retrying with current compatible dependencies"
        if ! cargo install rumqttd --version 0.20.0 --root "$RUMQTTD_ROOT" >&2; then
            log "rumqttd could not be built; continuing without it"
            drop_broker rumqttd
        fi
    fi
fi

log "building gridmq and gridmq-bench (release)"
(cd "$ROOT" && cargo build --release -p gateway -p gridmq-bench >&2)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
GRIDMQ=$TARGET_DIR/release/gridmq
BENCH=$TARGET_DIR/release/gridmq-bench

# --- broker configs ----------------------------------------------------------------------------

cat >"$WORK/mosquitto.conf" <<EOF
listener $MOSQUITTO_PORT 127.0.0.1
allow_anonymous true
persistence false
# Queues large enough that QoS 1 is never dropped for want of room: 100 publishers with 100 in
# flight each may queue 10,000 messages for one subscriber.
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 100
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
EOF

# Based on rumqttd 0.20's sample rumqttd.toml: same router segments, no console, metrics or
# websocket listener, room for 20,000 connections and no pause between accepted connections.
cat >"$WORK/rumqttd.toml" <<EOF
id = 0

[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$RUMQTTD_V4_PORT"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
    dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:$RUMQTTD_V5_PORT"
next_connection_delay_ms = 0
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
EOF

# --- one broker at a time ----------------------------------------------------------------------

# Sets BROKER_PID and BROKER_PORT; the second argument is the run's gridmq-bench flags.
start_broker() {
    local broker=$1 args=$2 log=$WORK/$1.log
    case $broker in
    gridmq | baseline)
        BROKER_PORT=$GRIDMQ_PORT
        local binary=$GRIDMQ config=${GRIDMQ_CONFIG:-}
        if [[ $broker == baseline ]]; then
            binary=${GRIDMQ_BASELINE:?set GRIDMQ_BASELINE to the baseline gridmq binary}
            config=${GRIDMQ_BASELINE_CONFIG:-$config}
        fi
        # A fresh data directory per run, in the run's temp dir: gridmq runs with its default
        # durable store, as a user's would, without leaving files where the script was started.
        rm -rf "$WORK/gridmq-data"
        "$binary" serve --listen "127.0.0.1:$BROKER_PORT" --data-dir "$WORK/gridmq-data" \
            ${config:+--config "$config"} >>"$log" 2>&1 &
        ;;
    mosquitto)
        BROKER_PORT=$MOSQUITTO_PORT
        "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$log" 2>&1 &
        ;;
    rumqttd)
        BROKER_PORT=$RUMQTTD_V4_PORT
        [[ " $args " == *" --mqtt 5 "* ]] && BROKER_PORT=$RUMQTTD_V5_PORT
        "$RUMQTTD" --config "$WORK/rumqttd.toml" >>"$log" 2>&1 &
        ;;
    esac
    BROKER_PID=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    log "$broker did not start; its log:"
    tail -20 "$log" >&2
    return 1
}

stop_broker() {
    [[ -n $BROKER_PID ]] || return 0
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        log "broker $BROKER_PID ignored SIGTERM for 10 s; killing it"
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

cpu_seconds() {
    # utime and stime are fields 14 and 15; the command name (field 2) may hold spaces, so the
    # fields are counted from its closing parenthesis (field 3 becomes $1).
    sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$CLK_TCK" '{ printf "%.2f\n", ($12 + $13) / hz }'
}

status_kb() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }

# --- the runs ----------------------------------------------------------------------------------

log "brokers: $BROKERS; scenarios: $SCENARIOS; $DURATION s each; $ROUNDS round(s); results: $RESULTS"
for round in $(seq 1 "$ROUNDS"); do
for scenario_qos in $SCENARIOS; do
    scenario=${scenario_qos%%:*}
    qos=${scenario_qos##*:}
    args=$EXTRA_ARGS
    [[ $scenario == storm && " $args " != *" --mqtt "* ]] && args="$args --mqtt 5"
    for broker in $BROKERS; do
        if ! start_broker "$broker" "$args"; then
            echo "{\"scenario\":\"$scenario\",\"label\":\"$broker\",\"qos\":$qos,\"errors\":1,\"first_error\":\"broker did not start\"}" >>"$RESULTS"
            stop_broker
            continue
        fi
        sleep 0.5 # let the broker settle before reading its baseline memory
        base_kb=$(status_kb "$BROKER_PID" VmRSS)
        log "round $round: $broker $scenario qos $qos (pid $BROKER_PID, port $BROKER_PORT)"
        # shellcheck disable=SC2086 # args is a list of flags
        line=$("$BENCH" --scenario "$scenario" --qos "$qos" --duration "$DURATION" \
            --host 127.0.0.1 --port "$BROKER_PORT" --label "$broker" $args \
            2>>"$WORK/bench.log") || log "gridmq-bench reported errors (see the JSON line)"
        if kill -0 "$BROKER_PID" 2>/dev/null; then
            cpu=$(cpu_seconds "$BROKER_PID")
            hwm_kb=$(status_kb "$BROKER_PID" VmHWM)
        else
            log "$broker died during $scenario qos $qos"
            cpu=null hwm_kb=null
        fi
        stop_broker
        [[ -n $line ]] || line="{\"scenario\":\"$scenario\",\"label\":\"$broker\",\"qos\":$qos,\"errors\":1,\"first_error\":\"no report\"}"
        python3 -c '
import json, sys
row = json.loads(sys.argv[1])
row["broker_cpu_s"] = json.loads(sys.argv[2])
row["broker_peak_rss_kb"] = json.loads(sys.argv[3])
row["broker_base_rss_kb"] = json.loads(sys.argv[4])
print(json.dumps(row))' "$line" "$cpu" "$hwm_kb" "${base_kb:-null}" | tee -a "$RESULTS" >&2
    done
done
done

# --- the table ---------------------------------------------------------------------------------

python3 - "$RESULTS" "$DURATION" >"$TABLE" <<'EOF'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
duration = sys.argv[2]
brokers = [b for b in ("gridmq", "baseline", "mosquitto", "rumqttd") if any(r.get("label") == b for r in rows)]
keys = []
for r in rows:
    key = (r.get("scenario"), r.get("qos"), r.get("clients"))
    if key not in keys:
        keys.append(key)

def get(scenario, qos, broker):
    """The run of `broker`, or with several rounds a run of each figure's median."""
    runs = [r for r in rows
            if r.get("scenario") == scenario and r.get("qos") == qos and r.get("label") == broker]
    if len(runs) <= 1:
        return runs[0] if runs else None
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = sorted(r[key] for r in runs if isinstance(r.get(key), (int, float)))
            merged[key] = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    return merged

def fmt(v, digits=0):
    if v is None:
        return "-"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    return f"{round(v):,}"

def ratio(a, b):
    if a is None or b in (None, 0):
        return "-"
    return f"{a / b:.2f}x"

title = {"fan-in": "fan-in {c}->1", "fan-out": "fan-out 1->{c}", "pairs": "pairs {c}",
         "latency": "latency {c} pairs", "idle": "idle {c}", "storm": "storm {c} (MQTT 5)"}
header = ["scenario", "metric"] + brokers
others = [b for b in ("baseline", "mosquitto", "rumqttd") if b in brokers and "gridmq" in brokers]
header += [f"gridmq/{b}" for b in others]
rounds = max(sum(1 for r in rows if (r.get("scenario"), r.get("qos"), r.get("clients")) == k and r.get("label") == brokers[0]) for k in keys) if keys and brokers else 1
print(f"Payload 64 B unless noted, {duration} s per scenario, one broker at a time"
      + (f", medians of {rounds} alternating rounds" if rounds > 1 else "") + ".\n")
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for scenario, qos, clients in keys:
    name = title.get(scenario, scenario).format(c=clients)
    if scenario not in ("idle", "storm"):
        name += f" QoS {qos}"
    per = {b: get(scenario, qos, b) for b in brokers}
    def val(b, f):
        r = per[b]
        return None if r is None else f(r)
    mb = lambda r: r["broker_peak_rss_kb"] / 1024 if r.get("broker_peak_rss_kb") else None
    cpu = lambda r: r.get("broker_cpu_s")
    if scenario == "idle":
        def kib_per_conn(r):
            peak, base = r.get("broker_peak_rss_kb"), r.get("broker_base_rss_kb")
            if peak is None or base is None or not r.get("clients"):
                return None
            return (peak - base) / r["clients"]
        metrics = [("connects/s", lambda r: r.get("connects_per_sec"), 0),
                   ("KiB per connection", kib_per_conn, 2),
                   ("peak RSS MB", mb, 1), ("CPU s", cpu, 2)]
    elif scenario == "storm":
        metrics = [("connects/s", lambda r: r.get("connects_per_sec"), 0),
                   ("CONNACK p99 µs", lambda r: r.get("p99_us"), 0),
                   ("CPU s", cpu, 2)]
    else:
        metrics = [("msgs/s", lambda r: r.get("msgs_per_sec"), 0),
                   ("p99 µs", lambda r: r.get("p99_us"), 0),
                   ("loss", lambda r: r.get("loss"), 0),
                   ("peak RSS MB", mb, 1), ("CPU s", cpu, 2)]
    for metric, f, digits in metrics:
        vals = {b: val(b, f) for b in brokers}
        cells = [name, metric] + [fmt(vals[b], digits) for b in brokers]
        cells += [ratio(vals["gridmq"], vals[b]) for b in others]
        print("| " + " | ".join(cells) + " |")
failed = [r for r in rows if r.get("errors")]
if failed:
    print("\nRuns with errors:")
    for r in failed:
        print(f"- {r.get('label')} {r.get('scenario')} QoS {r.get('qos')}: "
              f"{r.get('errors')} error(s), first: {r.get('first_error')}")
EOF
cat "$TABLE"
log "raw results: $RESULTS; table: $TABLE"
