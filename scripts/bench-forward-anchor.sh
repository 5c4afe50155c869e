#!/usr/bin/env bash
# The JetStream forwarder's anchor: libnats publishing 256-byte messages
# asynchronously to a file-storage stream, as fast as the server acks them.
#   scripts/bench-forward-anchor.sh [N [WINDOW [REPLICAS]]]
# Starts its own nats-server (JetStream, a scratch store, a free loopback
# port) unless NATS_URL is set.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d /tmp/so-anchor-XXXXXX)"
trap 'kill "${server_pid:-}" 2>/dev/null || true; rm -rf "$out"' EXIT

cc -O2 -Wall -o "$out/anchor" "$here/Benchmarks/nats-anchor/anchor.c" -lnats

url="${NATS_URL:-}"
if [ -z "$url" ]; then
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    nats-server -js -sd "$out/store" -a 127.0.0.1 -p "$port" >"$out/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
    url="nats://127.0.0.1:$port"
fi
"$out/anchor" "$url" "${1:-200000}" "${2:-1024}" "${3:-1}"
