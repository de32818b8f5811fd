# Shell helpers the bench scripts share: stopping a process by its pid, waiting for a port on
# 127.0.0.1, and reading CPU time from /proc. Sourced, not run:
#
#   . "$ROOT/bench/lib.sh"
#
# The sourcing script defines `log` (one line to stderr, with its own prefix) before it calls
# any of these, since they report what went wrong through it.

# Clock ticks per second, the unit of /proc/PID/stat's CPU times.
BENCH_CLK_TCK=$(getconf CLK_TCK)

# Stops one process by its pid: SIGTERM, up to 10 s for it to exit, then SIGKILL, and reaps it
# (a child of the calling shell). An empty pid or one already gone is not an error, so cleanup
# paths can call it unconditionally.
stop_pid() {
    local pid=$1
    [[ -n $pid ]] || return 0
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
}

# Waits until 127.0.0.1:PORT accepts a TCP connection. Gives up (status 1) when process PID,
# the one expected to listen, has exited, or after SECONDS (default 10).
wait_port() {
    local port=$1 pid=$2 seconds=${3:-10} tries
    tries=$((seconds * 20))
    for _ in $(seq 1 "$tries"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# CPU seconds (user + system, all threads) the given processes have used so far, summed, with
# two decimals; 0.00 for no pids. utime and stime are fields 14 and 15 of /proc/PID/stat; the
# command name (field 2) may hold spaces, so the fields are counted from its closing
# parenthesis (field 3 becomes $1).
cpu_seconds() {
    local pid total=0
    for pid in "$@"; do
        total=$(sed 's/^.*) //' "/proc/$pid/stat" | awk -v hz="$BENCH_CLK_TCK" -v t="$total" \
            '{ printf "%.2f\n", t + ($12 + $13) / hz }')
    done
    printf '%.2f\n' "$total"
}
