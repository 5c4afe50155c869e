#!/usr/bin/env bash
# Where the server's time goes on one workload: starts secureopsd (or
# redis-server) pinned to one core, runs secureops-bench pinned to the other
# with the given arguments, and records the server with `perf record -g`
# for the whole run. Prints the top symbols and leaves perf.data behind.
#
#   scripts/bench-profile.sh rpc --connections 100 --pipeline 16 --requests 3000000
#   TARGET=redis scripts/bench-profile.sh fanout --subscribers 10000 --alerts 2000
#
# Environment: TARGET (secureops), SERVER_CPU (0), TOOL_CPU (1),
# SCRATCH (.build-bench), OUT (/tmp/secureops-profile).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
TARGET=${TARGET:-secureops}
SERVER_CPU=${SERVER_CPU:-0}
TOOL_CPU=${TOOL_CPU:-1}
SCRATCH=${SCRATCH:-.build-bench}
OUT=${OUT:-/tmp/secureops-profile}
mkdir -p "$OUT"
command -v perf >/dev/null || ./scripts/install-deps.sh linux-perf
[ "$TARGET" = redis ] && ./scripts/install-deps.sh redis-server
swift build -c release --scratch-path "$SCRATCH" --product secureopsd >&2
swift build -c release --scratch-path "$SCRATCH" --product secureops-bench >&2
BIN="$SCRATCH/release"
ulimit -n "$(ulimit -Hn)"

DIR=$(mktemp -d /tmp/secureops-profile-XXXXXX)
if [ "$TARGET" = redis ]; then
    SOCK="$DIR/redis.sock"
    taskset -c "$SERVER_CPU" redis-server --port 0 --unixsocket "$SOCK" --unixsocketperm 700 --save "" \
        --appendonly no --client-output-buffer-limit "pubsub 0 0 0" --maxclients 20000 --dir "$DIR" >"$DIR/server.log" 2>&1 &
else
    SOCK="$DIR/secureopsd.sock"
    taskset -c "$SERVER_CPU" "$BIN/secureopsd" --socket "$SOCK" --state-dir "$DIR/state" --log-level warning >"$DIR/server.log" 2>&1 &
fi
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 500); do [ -S "$SOCK" ] && break; sleep 0.02; done

perf record -g -p "$SERVER" -o "$OUT/perf.data" 2>"$OUT/perf-record.log" &
PERF=$!
sleep 0.3
taskset -c "$TOOL_CPU" "$BIN/secureops-bench" "$@" --target "$TARGET" --socket "$SOCK" --no-progress
kill -INT "$PERF"
wait "$PERF" 2>/dev/null || true
echo
echo "top symbols of $TARGET (self time), from $OUT/perf.data:"
perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]+\.[0-9]+%' | head -40
