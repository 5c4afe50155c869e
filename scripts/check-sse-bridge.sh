#!/usr/bin/env bash
# Checks Examples/sse-bridge in a real headless browser (Debian's chromium):
# builds secureopsd, the CLI and the bridge, starts them on private paths,
# opens the viewer and checks that replayed and live alerts appear with their
# severities, and that a daemon restart is shown and followed.
#
# Not part of `make test`: the bridge's first build (Hummingbird, SwiftNIO)
# takes about 3 minutes on a 2-core machine. Run it by hand or in a nightly job:
#
#   scripts/check-sse-bridge.sh                 # installs chromium if missing
#   SCRATCH=.build-mine scripts/check-sse-bridge.sh
#
# Leaves the screenshot in ${OUT:-/tmp/sse-bridge-check}/viewer.png.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
scratch=${SCRATCH:-$root/.build}
out=${OUT:-/tmp/sse-bridge-check}
PATH=$PATH:/opt/swift/usr/bin

if ! command -v chromium >/dev/null; then
    echo "installing chromium (apt-get)"
    ${SUDO:-$( [ "$(id -u)" = 0 ] || echo sudo )} apt-get install -y chromium >/dev/null
fi

echo "building secureopsd, secureops and the bridge"
swift build --package-path "$root" --scratch-path "$scratch" --product secureopsd >/dev/null
swift build --package-path "$root" --scratch-path "$scratch" --product secureops >/dev/null
swift build --package-path "$root/Examples/sse-bridge" >/dev/null
bin=$(swift build --package-path "$root" --scratch-path "$scratch" --show-bin-path)
bridge=$(swift build --package-path "$root/Examples/sse-bridge" --show-bin-path)/sse-bridge

rm -rf "$out"
mkdir -p "$out"
socket=$out/secureopsd.sock
port=$((20000 + RANDOM % 20000))
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$out/daemon.pid" ] && kill "$(cat "$out/daemon.pid")" 2>/dev/null || true
}
trap cleanup EXIT

start_daemon() {
    "$bin/secureopsd" --socket "$socket" --state-dir "$out/state" >>"$out/daemon.log" 2>&1 &
    echo $! >"$out/daemon.pid"
    for _ in $(seq 100); do "$bin/secureops" ping --socket "$socket" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "secureopsd did not start; see $out/daemon.log" >&2
    exit 1
}
start_daemon

"$bridge" --daemon-socket "$socket" --port "$port" >"$out/bridge.log" 2>&1 &
bridge_pid=$!
pids+=($bridge_pid)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done

for severity in info high critical; do
    "$bin/secureops" publish --socket "$socket" --severity "$severity" --source sse-check --message "before $severity" >/dev/null
done

# Restart: SIGTERM (graceful), wait for the exit, start again on the same socket.
restart="kill \$(cat '$out/daemon.pid'); while kill -0 \$(cat '$out/daemon.pid') 2>/dev/null; do sleep 0.05; done; \
'$bin/secureopsd' --socket '$socket' --state-dir '$out/state' >>'$out/daemon.log' 2>&1 & echo \$! >'$out/daemon.pid'; \
for i in \$(seq 100); do '$bin/secureops' ping --socket '$socket' >/dev/null 2>&1 && break; sleep 0.1; done"

python3 "$root/scripts/sse-browser-check.py" \
    --url "http://127.0.0.1:$port/" --cli "$bin/secureops" --socket "$socket" \
    --restart "$restart" --screenshot "$out/viewer.png"

# SIGTERM with an event stream open: the stream ends and the bridge exits.
curl -sN "http://127.0.0.1:$port/events" >"$out/events.txt" &
pids+=($!)
for _ in $(seq 50); do grep -q "after restart" "$out/events.txt" 2>/dev/null && break; sleep 0.1; done
kill -TERM "$bridge_pid"
for _ in $(seq 100); do kill -0 "$bridge_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$bridge_pid" 2>/dev/null; then
    echo "FAIL: the bridge did not exit within 10 s of SIGTERM while a stream was open" >&2
    exit 1
fi
echo "ok: SIGTERM ends open event streams and the bridge exits"
echo "PASS: the SSE bridge's viewer shows alerts live in chromium"
