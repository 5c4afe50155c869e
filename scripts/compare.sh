#!/usr/bin/env bash
# Side by side: secureopsd and Redis on the same workloads, on this machine.
#
# Installs what is missing (redis-server, matplotlib), builds release, pins
# the server to one core and the load tool to the other, and runs the two
# servers in turns (each point REPS times, alternating, a fresh server each
# run) so that a noisy neighbour hurts both alike. Prints medians and ratios
# and writes everything to $OUT (results.jsonl, summary.md, fanout.png).
#
#   scripts/compare.sh                  # the full matrix (6 minutes here, once built)
#   QUICK=1 scripts/compare.sh          # one run per point, fewer points
#   REPS=5 OUT=/tmp/run scripts/compare.sh
#
#   SECTIONS="rpc agree" scripts/compare.sh   # only some sections
#
# Environment: REPS (3), OUT (bench-results/<time>), SERVER_CPU (0),
# TOOL_CPU (1), SCRATCH (.build-bench, the release build directory),
# SECTIONS (fanout light connect rpc syscalls agree), TARGETS (secureops
# secureops-epoll redis: secureopsd on io_uring, secureopsd on epoll, Redis;
# also secureops-nojournal: io_uring with --no-journal, the journal's cost;
# secureops-threadjournal: io_uring with the journal written by a thread,
# as on epoll, against the loop writing it through its ring),
# FANOUT_ARGS (extra arguments for the full-speed fan-out runs, e.g.
# "--backlog 256" or "--receiver epoll").
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"

QUICK=${QUICK:-0}
REPS=${REPS:-3}
[ "$QUICK" = 1 ] && REPS=1
OUT=${OUT:-bench-results/$(date +%Y%m%d-%H%M%S)}
SERVER_CPU=${SERVER_CPU:-0}
TOOL_CPU=${TOOL_CPU:-1}
SCRATCH=${SCRATCH:-.build-bench}
SECTIONS=${SECTIONS:-fanout light connect rpc syscalls agree}
TARGETS=${TARGETS:-secureops secureops-epoll redis}
FANOUT_ARGS=${FANOUT_ARGS:-}
section() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

log() { printf '%s\n' "$*" >&2; }

# --- what the comparison needs -------------------------------------------
./scripts/install-deps.sh redis-server util-linux linux-perf
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib (for the chart)"
    python3 -m pip install --quiet matplotlib || log "matplotlib could not be installed: no chart"
fi
log "building release into $SCRATCH"
swift build -c release --scratch-path "$SCRATCH" --product secureopsd >&2
swift build -c release --scratch-path "$SCRATCH" --product secureops-bench >&2
BIN="$SCRATCH/release"
cc -O2 -o "$OUT/loadgen" scripts/loadgen/loadgen.c -luring
REDIS=$(command -v redis-server || echo /usr/bin/redis-server)

# Both servers and the tool need one descriptor per subscriber.
ulimit -n "$(ulimit -Hn)"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "redis: $($REDIS --version)"
    echo "swift: $(swift --version 2>&1 | head -1)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pinning: server on CPU $SERVER_CPU, tool on CPU $TOOL_CPU; $REPS run(s) per point"
    echo "fan-out arguments: --size 256 --window 64 ${FANOUT_ARGS:-(defaults)}"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    log "warning: load average is $load; other work on this machine will move the numbers"
fi

# --- servers ---------------------------------------------------------------
SERVER_PID=""
SERVER_DIR=""
SOCK=""

start_server() {  # secureops | secureops-epoll | secureops-nojournal | secureops-threadjournal | redis
    SERVER_DIR=$(mktemp -d /tmp/secureops-compare-XXXXXX)
    case "$1" in
        secureops|secureops-epoll|secureops-nojournal|secureops-threadjournal)
            # The backend is named, not left to auto: a run that fell back
            # to epoll must not be reported as io_uring.
            local backend=io_uring extra=()
            [ "$1" = secureops-epoll ] && backend=epoll
            [ "$1" = secureops-nojournal ] && extra=(--no-journal)
            [ "$1" = secureops-threadjournal ] && extra=(--journal-writer thread)
            SOCK="$SERVER_DIR/secureopsd.sock"
            taskset -c "$SERVER_CPU" "$BIN/secureopsd" --socket "$SOCK" --state-dir "$SERVER_DIR/state" \
                --io-backend "$backend" --log-level warning "${extra[@]}" >"$SERVER_DIR/server.log" 2>&1 &
            ;;
        redis)
            SOCK="$SERVER_DIR/redis.sock"
            taskset -c "$SERVER_CPU" "$REDIS" --port 0 --unixsocket "$SOCK" --unixsocketperm 700 \
                --save "" --appendonly no --client-output-buffer-limit "pubsub 0 0 0" \
                --maxclients 20000 --daemonize no --dir "$SERVER_DIR" >"$SERVER_DIR/server.log" 2>&1 &
            ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 1 500); do
        [ -S "$SOCK" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.02
    done
    log "the $1 server did not start:"; cat "$SERVER_DIR/server.log" >&2
    exit 2
}

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    [ -n "$SERVER_DIR" ] && rm -rf "$SERVER_DIR"
    SERVER_PID=""; SERVER_DIR=""
}
trap stop_server EXIT

# run WORKLOAD POINT REP TARGET -- secureops-bench arguments
# With COUNT_SYSCALLS=1, `perf stat` counts the server's system calls
# (raw_syscalls:sys_enter, every thread) for the length of the run.
run() {
    local workload=$1 point=$2 rep=$3 target=$4
    shift 5
    start_server "$target"
    local json status=0 perf_pid="" syscalls=null
    if [ "${COUNT_SYSCALLS:-0}" = 1 ]; then
        perf stat -e raw_syscalls:sys_enter -x, -o "$SERVER_DIR/perf.csv" -p "$SERVER_PID" 2>/dev/null &
        perf_pid=$!
        sleep 0.2 # perf attaches
    fi
    json=$(taskset -c "$TOOL_CPU" "$BIN/secureops-bench" "$@" --target "${target%%-*}" --socket "$SOCK" --json --no-progress) || status=$?
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        syscalls=$(awk -F, '/raw_syscalls:sys_enter/ {print $1; exit}' "$SERVER_DIR/perf.csv" 2>/dev/null)
        [ -n "$syscalls" ] || syscalls=null
    fi
    stop_server
    [ -n "$json" ] || json=null
    printf '{"workload":"%s","point":"%s","rep":%d,"target":"%s","exit":%d,"load":%s,"syscalls":%s,"result":%s}\n' \
        "$workload" "$point" "$rep" "$target" "$status" "$(cut -d' ' -f1 /proc/loadavg)" "$syscalls" "$json" >> "$RESULTS"
    python3 - "$workload" "$point" "$target" "$json" <<'PY' >&2
import json, sys
w, p, t, j = sys.argv[1:5]
r = json.loads(j) if j != "null" else {}
rate = r.get("deliveriesPerSec") if w in ("fanout", "light") else r.get("connectionsPerSec") if w == "connect" else r.get("requestsPerSec")
def us(k): return f"{r[k]:.0f}" if r.get(k) is not None else "-"
print(f"  {w:8} {p:>10} {t:9} {rate or 0:>14,.0f}/s  p50 {us('p50Us')} p99 {us('p99Us')} p999 {us('p999Us')} µs  lost {r.get('lost', '?')}  tool CPU {r.get('toolCpuPercent', 0):.0f}%")
PY
}

# --- fan-out throughput: 256-byte alerts, 64 publishes in flight ------------
# FANOUT_POINTS / RPC_CONNS (environment) pick points: "1000:20000 10000:2000", "100".
if [ -z "${FANOUT_POINTS:-}" ]; then
    if [ "$QUICK" = 1 ]; then FANOUT_POINTS="100:50000 1000:10000 10000:1000"; else FANOUT_POINTS="100:100000 1000:20000 10000:2000 19000:1000"; fi
fi
section fanout || FANOUT_POINTS=""
[ -n "$FANOUT_POINTS" ] && log "fan-out (256-byte alerts, window 64)"
for point in $FANOUT_POINTS; do
    subs=${point%%:*}; alerts=${point##*:}
    for rep in $(seq 1 "$REPS"); do
        for target in $TARGETS; do
            # shellcheck disable=SC2086
            run fanout "$subs" "$rep" "$target" -- fanout --subscribers "$subs" --alerts "$alerts" --size 256 --window 64 $FANOUT_ARGS
        done
    done
done

# --- latency at light load ---------------------------------------------------
if [ "$QUICK" = 1 ]; then LIGHT_POINTS="1000:200:400"; else LIGHT_POINTS="1000:200:1000 10000:20:100"; fi
section light || LIGHT_POINTS=""
[ -n "$LIGHT_POINTS" ] && log "latency at light load"
for point in $LIGHT_POINTS; do
    IFS=: read -r subs rate alerts <<<"$point"
    for rep in $(seq 1 "$REPS"); do
        for target in $TARGETS; do
            run light "${subs}@${rate}/s" "$rep" "$target" -- fanout --subscribers "$subs" --alerts "$alerts" --rate "$rate" --size 256
        done
    done
done

# --- accept storm: connections until all subscribed -----------------------
if [ "$QUICK" = 1 ]; then CONNECT_POINTS="10000"; else CONNECT_POINTS="19000"; fi
section connect || CONNECT_POINTS=""
[ -n "$CONNECT_POINTS" ] && log "accept storm"
for conns in $CONNECT_POINTS; do
    for rep in $(seq 1 "$REPS"); do
        for target in $TARGETS; do
            run connect "$conns" "$rep" "$target" -- connect --connections "$conns"
        done
    done
done

# --- rpc: PING, connections x pipeline --------------------------------------
if [ -z "${RPC_CONNS:-}" ]; then
    if [ "$QUICK" = 1 ]; then RPC_CONNS="1 100"; else RPC_CONNS="1 100 1000"; fi
fi
section rpc || RPC_CONNS=""
[ -n "$RPC_CONNS" ] && log "rpc (ping)"
for conns in $RPC_CONNS; do
    for pipeline in 1 16; do
        case "$conns:$pipeline" in
            1:1) requests=200000 ;;
            1:16) requests=1000000 ;;
            *:1) requests=1000000 ;;
            *) requests=3000000 ;;
        esac
        [ "$QUICK" = 1 ] && requests=$((requests / 4))
        for rep in $(seq 1 "$REPS"); do
            for target in $TARGETS; do
                run rpc "${conns}x${pipeline}" "$rep" "$target" -- rpc --connections "$conns" --pipeline "$pipeline" --requests "$requests"
            done
        done
    done
done

# --- the two backends side by side: system calls per delivery --------------
# The same fan-out and rpc runs with perf counting the server's system
# calls: what io_uring buys over epoll (and where Redis stands).
if section syscalls; then
    log "system calls per delivery (perf stat -e raw_syscalls:sys_enter on the server)"
    if [ "$QUICK" = 1 ]; then SYSCALL_POINTS="1000:10000"; else SYSCALL_POINTS="1000:20000 10000:2000"; fi
    for point in $SYSCALL_POINTS; do
        subs=${point%%:*}; alerts=${point##*:}
        for rep in $(seq 1 "$REPS"); do
            for target in $TARGETS; do
                # shellcheck disable=SC2086
                COUNT_SYSCALLS=1 run syscalls-fanout "$subs" "$rep" "$target" -- fanout --subscribers "$subs" --alerts "$alerts" --size 256 --window 64 $FANOUT_ARGS
            done
        done
    done
    for rep in $(seq 1 "$REPS"); do
        for target in $TARGETS; do
            COUNT_SYSCALLS=1 run syscalls-rpc 100x1 "$rep" "$target" -- rpc --connections 100 --pipeline 1 --requests 1000000
        done
    done
fi

# --- agreement with the independent C load generator (secureopsd) ----------
# Same daemon build, same pinning, alternating: loadgen.c counts newline
# bytes only; secureops-bench parses sequences and send times. Both read
# their subscribers the same way in each pair (epoll, or io_uring), and the
# tool runs with --backlog 0, so both pace the publisher by acknowledgements
# alone, as loadgen.c does.
AGREE="$OUT/agreement.txt"
: > "$AGREE"
if section agree; then
    log "agreement: secureops-bench against scripts/loadgen/loadgen.c on the same daemon"
    for rep in $(seq 1 "$REPS"); do
        for receiver in io_uring epoll; do
            for subs in 1000 19000; do
                alerts=$((20000000 / subs))
                start_server secureops
                echo "subscribers=$subs receiver=$receiver $(taskset -c "$TOOL_CPU" "$OUT/loadgen" fanout secureops "$SOCK" "$subs" "$alerts" 256 64 "$receiver")" >> "$AGREE" || true
                stop_server
                start_server secureops
                echo "subscribers=$subs receiver=$receiver bench $(taskset -c "$TOOL_CPU" "$BIN/secureops-bench" fanout --socket "$SOCK" --subscribers "$subs" --alerts "$alerts" --size 256 --window 64 --backlog 0 --receiver "$receiver" --json --no-progress)" >> "$AGREE" || true
                stop_server
            done
        done
        # Redis is server-bound at this point, so both generators measure
        # the server rather than themselves.
        start_server redis
        echo "redis-subscribers=1000 $(taskset -c "$TOOL_CPU" "$OUT/loadgen" fanout redis "$SOCK" 1000 10000 256 64)" >> "$AGREE" || true
        stop_server
        start_server redis
        echo "redis-subscribers=1000 bench $(taskset -c "$TOOL_CPU" "$BIN/secureops-bench" fanout --target redis --socket "$SOCK" --subscribers 1000 --alerts 10000 --size 256 --window 64 --backlog 0 --receiver epoll --json --no-progress)" >> "$AGREE" || true
        stop_server
        start_server secureops
        echo "connections=100 $(taskset -c "$TOOL_CPU" "$OUT/loadgen" rpc secureops "$SOCK" 100 2000000 16)" >> "$AGREE" || true
        stop_server
        start_server secureops
        echo "connections=100 bench $(taskset -c "$TOOL_CPU" "$BIN/secureops-bench" rpc --socket "$SOCK" --connections 100 --pipeline 16 --requests 2000000 --json --no-progress)" >> "$AGREE" || true
        stop_server
    done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"

python3 scripts/bench-report.py "$OUT"
