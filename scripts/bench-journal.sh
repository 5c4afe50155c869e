#!/usr/bin/env bash
# What the journal costs a publisher, by sync policy and by who writes it:
# the event loop through its io_uring ring (the default on io_uring) or a
# writer thread (`--journal-writer thread`, what epoll uses), against no
# journal. `secureops-bench rpc --request publish` starts its own
# secureopsd (pinned to SERVER_CPU, the tool to TOOL_CPU) per run; the
# settings alternate within each repetition so drift hits all alike.
# Prints medians of publishes/s and p50 / p99 latency.
#
#   scripts/bench-journal.sh                 # 3 runs per setting
#   REPS=5 REQUESTS=50000 scripts/bench-journal.sh
#   SHAPES="1x1 100x16" scripts/bench-journal.sh   # connections x pipeline
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
REPS=${REPS:-3}
REQUESTS=${REQUESTS:-20000}
SHAPES=${SHAPES:-1x1 100x16}
SCRATCH=${SCRATCH:-.build-bench}
SERVER_CPU=${SERVER_CPU:-0}
TOOL_CPU=${TOOL_CPU:-1}
swift build -c release --scratch-path "$SCRATCH" --product secureopsd >&2
swift build -c release --scratch-path "$SCRATCH" --product secureops-bench >&2
results=$(mktemp /tmp/so-bench-journal-XXXXXX)
trap 'rm -f "$results"' EXIT
ulimit -n "$(ulimit -Hn)"

settings=("no-journal|--no-journal"
          "none loop|--journal-sync none" "none thread|--journal-sync none --journal-writer thread"
          "interval loop|--journal-sync interval" "interval thread|--journal-sync interval --journal-writer thread"
          "always loop|--journal-sync always" "always thread|--journal-sync always --journal-writer thread")
for shape in $SHAPES; do
    connections=${shape%x*}; pipeline=${shape#*x}
    requests=$REQUESTS
    [ "$shape" != 1x1 ] && requests=$((REQUESTS * 20))
    for rep in $(seq "$REPS"); do
        for setting in "${settings[@]}"; do
            name=${setting%%|*}; args=${setting#*|}
            server_args=(--server-arg --io-backend --server-arg io_uring)
            for arg in $args; do server_args+=(--server-arg "$arg"); done
            json=$(taskset -c "$TOOL_CPU" "$SCRATCH/release/secureops-bench" rpc --request publish \
                --connections "$connections" --pipeline "$pipeline" --requests "$requests" \
                --server-cpus "$SERVER_CPU" "${server_args[@]}" --json --no-progress)
            echo "$shape|$name|$json" >>"$results"
            echo "$shape $name rep $rep: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(round(r["requestsPerSec"]), "req/s p50", r["p50Us"], "us")' "$json")" >&2
        done
    done
done
python3 - "$results" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    shape, name, body = line.rstrip("\n").split("|", 2)
    runs[(shape, name)].append(json.loads(body))
print("| connections × pipeline | journal | writer | publishes/s | p50 | p99 | runs |")
print("|---|---|---|---:|---:|---:|---:|")
for (shape, name), rs in runs.items():
    policy, _, writer = name.partition(" ")
    med = lambda key: statistics.median(r[key] for r in rs)
    print(f"| {shape.replace('x', ' × ')} | {policy} | {writer or '-'} | {med('requestsPerSec') / 1000:,.1f} k | {med('p50Us'):.0f} µs | {med('p99Us'):.0f} µs | {len(rs)} |")
PY
