#!/usr/bin/env bash
# Forwarding to NATS JetStream against what this nats-server can take:
# secureops-bench forward (publish -> daemon -> journal -> forwarder ->
# JetStream ack, with 1,000 local subscribers receiving the same alerts)
# against the C anchor (libnats publishing 256-byte messages asynchronously
# straight to a stream of the same kind), replicas 1 (one server) and 3 (a
# cluster of three on loopback), REPS runs each, alternating; medians and
# the ratio. Release builds into $SCRATCH (.build-bench).
#
#   scripts/bench-forward.sh            # 100,000 alerts, 3 runs per point
#   ALERTS=20000 REPS=1 scripts/bench-forward.sh
#   PIN=0 SUBSCRIBERS=1 WINDOW=1024 scripts/bench-forward.sh
#
# PIN=1 (default) puts nats-server and secureopsd on CPU 0 and the tool and
# the anchor on CPU 1: then the anchor's client has a core to itself while
# the daemon shares one with nats-server. PIN=0 lets the scheduler place
# everything (fairer on two cores).
#
# Each run also measures the forwarder alone (the "drain" figure): ALERTS
# alerts are published while the daemon's NATS is unreachable, then the
# daemon restarts pointed at the real server and forwards the backlog from
# its journal; the rate is the stream's own, from the time JetStream stored
# the first of them to the last (scripts/bench-forward-drain.py). Nothing
# else runs meanwhile, as nothing else runs beside the anchor.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
ALERTS=${ALERTS:-100000}
REPS=${REPS:-3}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
SCRATCH=${SCRATCH:-.build-bench}
SERVER_CPU=${SERVER_CPU:-0}
TOOL_CPU=${TOOL_CPU:-1}
PIN=${PIN:-1}
WINDOW=${WINDOW:-64}
# on_server runs in the background: exec, so that $! is the server itself
# and the trap's kill reaches it (otherwise the servers outlive the script
# and their cluster heartbeats take CPU from the next runs).
if [ "$PIN" = 1 ]; then
    on_server() { exec taskset -c "$SERVER_CPU" "$@"; }
    on_tool() { taskset -c "$TOOL_CPU" "$@"; }
    server_cpus=(--server-cpus "$SERVER_CPU")
else
    on_server() { exec "$@"; }
    on_tool() { "$@"; }
    server_cpus=()
fi
./scripts/install-deps.sh >&2
swift build -c release --scratch-path "$SCRATCH" --product secureopsd >&2
swift build -c release --scratch-path "$SCRATCH" --product secureops-bench >&2
work=$(mktemp -d /tmp/so-bench-forward-XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cc -O2 -Wall -o "$work/anchor" Benchmarks/nats-anchor/anchor.c -lnats
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nats-server on $1 did not start" >&2; exit 2; }

# One server, and a cluster of three (the NATS servers share the server's CPU).
single=$(free_port)
on_server nats-server -js -sd "$work/single" -a 127.0.0.1 -p "$single" >"$work/single.log" 2>&1 &
pids+=($!)
wait_port "$single"
cluster_urls=()
client_ports=(); route_ports=()
for i in 0 1 2; do client_ports+=("$(free_port)"); route_ports+=("$(free_port)"); done
for i in 0 1 2; do
    routes=""
    for j in 0 1 2; do [ "$j" = "$i" ] || routes="$routes\"nats-route://127.0.0.1:${route_ports[$j]}\", "; done
    cat >"$work/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${client_ports[$i]}
jetstream { store_dir: "$work/n$i" }
cluster { name: bench, listen: 127.0.0.1:${route_ports[$i]}, routes: [${routes%, }] }
CONF
    on_server nats-server -c "$work/n$i.conf" >"$work/n$i.log" 2>&1 &
    pids+=($!)
    cluster_urls+=("nats://127.0.0.1:${client_ports[$i]}")
done
for i in 0 1 2; do wait_port "${client_ports[$i]}"; done
sleep 3 # the cluster elects its JetStream meta leader
cluster=$(IFS=,; echo "${cluster_urls[*]}")

drain=./scripts/bench-forward-drain.py
# Publishes $ALERTS with forwarding pointed at nowhere, then restarts the
# daemon pointed at $1 and prints the rate JetStream stored them at.
drain_run() {
    local url=$1 replicas=$2 run=$3 dir="$work/drain-$3"
    mkdir -m 700 "$dir"
    local common=(--socket "$dir/s.sock" --state-dir "$dir/state" --log-level warning --io-backend io_uring
                  --forward-replicas "$replicas" --forward-stream "DRAIN_$run" --forward-subject-prefix "drain$run.alerts")
    (on_server "$SCRATCH/release/secureopsd" "${common[@]}" --forward-nats nats://127.0.0.1:1 >>"$dir/log" 2>&1) &
    local daemon=$!
    pids+=("$daemon")
    for _ in $(seq 200); do [ -S "$dir/s.sock" ] && break; sleep 0.05; done
    on_tool "$SCRATCH/release/secureops-bench" rpc --socket "$dir/s.sock" --request publish --size 256 \
        --connections 10 --pipeline 16 --requests "$ALERTS" --json --no-progress >/dev/null
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
    (on_server "$SCRATCH/release/secureopsd" "${common[@]}" --forward-nats "$url" >>"$dir/log" 2>&1) &
    daemon=$!
    pids+=("$daemon")
    "$drain" wait-acked "$dir/s.sock" "$ALERTS" 300
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
    "$drain" stream-rate "${url%%,*}" "DRAIN_$run" | awk '{print $3}'
    "$drain" delete "${url%%,*}" "DRAIN_$run" >/dev/null
}

results="$work/results.txt"
for replicas in 1 3; do
    url="nats://127.0.0.1:$single"; [ "$replicas" = 3 ] && url="$cluster"
    for rep in $(seq "$REPS"); do
        anchor=$(on_tool "$work/anchor" "${url%%,*}" "$ALERTS" 1024 "$replicas" | awk '/msgs\/s/ {for (i=1;i<=NF;i++) if ($i ~ /^[0-9.]+$/) v=$i} END {print v}')
        forward=$(on_tool "$SCRATCH/release/secureops-bench" forward --nats "$url" --replicas "$replicas" \
            --alerts "$ALERTS" --subscribers "$SUBSCRIBERS" --window "$WINDOW" "${server_cpus[@]}" --json --no-progress)
        rate=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["forwardedPerSec"], r["deliveriesPerSec"], r["lost"])' "$forward")
        # Each run leaves its stream behind; a server holding them all gets
        # slower run by run (the anchor deletes its own).
        "$drain" delete "${url%%,*}" "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["stream"])' "$forward")" >/dev/null
        drained=$(drain_run "$url" "$replicas" "${replicas}x$rep")
        echo "replicas=$replicas rep=$rep anchor=$anchor drain=$drained forward=$rate" | tee -a "$results" >&2
    done
done
python3 - "$results" "$SUBSCRIBERS" <<'PY'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    words = dict(word.split("=", 1) for word in line.split()[:4])
    words["forward"] = line.split("forward=")[1].split()
    rows.append(words)
subscribers = int(sys.argv[2])
print(f"| replicas | C anchor (msgs/s) | forwarder alone, draining its journal (alerts/s) | ratio | publish to ack, {subscribers:,} local subscribers (alerts/s) | ratio | local fan-out meanwhile (deliveries/s) | lost | runs (anchor / drain / forward) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for replicas in ("1", "3"):
    group = [r for r in rows if r["replicas"] == replicas]
    anchor = statistics.median(float(r["anchor"]) for r in group)
    drain = statistics.median(float(r["drain"]) for r in group)
    forward = statistics.median(float(r["forward"][0]) for r in group)
    fanout = statistics.median(float(r["forward"][1]) for r in group)
    lost = sum(int(r["forward"][2]) for r in group)
    runs = "; ".join(f'{float(r["anchor"]):,.0f} / {float(r["drain"]):,.0f} / {float(r["forward"][0]):,.0f}' for r in group)
    print(f"| {replicas} | {anchor:,.0f} | {drain:,.0f} | {drain / anchor:.2f}× | {forward:,.0f} | {forward / anchor:.2f}× | {fanout / 1e6:.2f} M | {lost} | {runs} |")
PY
