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
if [ "$PIN" = 1 ]; then
    on_server() { taskset -c "$SERVER_CPU" "$@"; }
    on_tool() { taskset -c "$TOOL_CPU" "$@"; }
    server_cpus=(--server-cpus "$SERVER_CPU")
else
    on_server() { "$@"; }
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

results="$work/results.txt"
for replicas in 1 3; do
    url="nats://127.0.0.1:$single"; [ "$replicas" = 3 ] && url="$cluster"
    for rep in $(seq "$REPS"); do
        anchor=$(on_tool "$work/anchor" "${url%%,*}" "$ALERTS" 1024 "$replicas" | awk '/msgs\/s/ {for (i=1;i<=NF;i++) if ($i ~ /^[0-9.]+$/) v=$i} END {print v}')
        forward=$(on_tool "$SCRATCH/release/secureops-bench" forward --nats "$url" --replicas "$replicas" \
            --alerts "$ALERTS" --subscribers "$SUBSCRIBERS" --window "$WINDOW" "${server_cpus[@]}" --json --no-progress)
        rate=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["forwardedPerSec"], r["deliveriesPerSec"], r["lost"])' "$forward")
        echo "replicas=$replicas rep=$rep anchor=$anchor forward=$rate" | tee -a "$results" >&2
    done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()[:3]) | {"forward": line.split("forward=")[1].split()} for line in open(sys.argv[1])]
print("| replicas | C anchor (msgs/s) | secureopsd forward (alerts/s) | ratio | local fan-out meanwhile (deliveries/s) | lost | runs |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for replicas in ("1", "3"):
    group = [r for r in rows if r["replicas"] == replicas]
    anchor = statistics.median(float(r["anchor"]) for r in group)
    forward = statistics.median(float(r["forward"][0]) for r in group)
    fanout = statistics.median(float(r["forward"][1]) for r in group)
    lost = sum(int(r["forward"][2]) for r in group)
    runs = "; ".join(f'{float(r["anchor"]):,.0f} / {float(r["forward"][0]):,.0f}' for r in group)
    print(f"| {replicas} | {anchor:,.0f} | {forward:,.0f} | {forward / anchor:.2f}× | {fanout / 1e6:.2f} M | {lost} | {runs} |")
PY
