#!/usr/bin/env bash
# The long soak from RELIABILITY.md: N subscribers, steady publishing,
# connections churning and a few subscribers that never read, for DURATION
# seconds; the daemon's RSS, descriptors, CPU and the publish-to-delivery
# latency every INTERVAL seconds, as text and as a chart.
#
#   scripts/soak.sh                       # 10 minutes, 10,000 subscribers
#   DURATION=60 SUBSCRIBERS=1000 scripts/soak.sh
#   TARGET=redis scripts/soak.sh          # the same load on Redis
#
# Environment: DURATION (600), SUBSCRIBERS (10000), RATE (50 alerts/s),
# CHURN (20 connections/s), STUCK (5), INTERVAL (10), SERVER_ARGS (extra
# daemon flags, e.g. "--stuck-send-timeout 3600"), TARGET (secureops),
# OUT (bench-results/soak-<time>), SCRATCH (.build-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"

DURATION=${DURATION:-600}
SUBSCRIBERS=${SUBSCRIBERS:-10000}
RATE=${RATE:-50}
CHURN=${CHURN:-20}
STUCK=${STUCK:-5}
INTERVAL=${INTERVAL:-10}
TARGET=${TARGET:-secureops}
SCRATCH=${SCRATCH:-.build-bench}
OUT=${OUT:-bench-results/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

./scripts/install-deps.sh util-linux
[ "$TARGET" = redis ] && ./scripts/install-deps.sh redis-server
swift build -c release --scratch-path "$SCRATCH" --product secureopsd >&2
swift build -c release --scratch-path "$SCRATCH" --product secureops-bench >&2
ulimit -n "$(ulimit -Hn)"

server_args=()
for arg in ${SERVER_ARGS:-}; do server_args+=(--server-arg="$arg"); done
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  commit: $(git rev-parse --short HEAD 2>/dev/null)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command: secureops-bench soak --target $TARGET --duration $DURATION --rate $RATE --subscribers $SUBSCRIBERS --churn $CHURN --stuck $STUCK --interval $INTERVAL --server-cpus 0 ${server_args[*]:-}"
} > "$OUT/soak.txt"
set +e
taskset -c 1 "$SCRATCH/release/secureops-bench" soak --target "$TARGET" --duration "$DURATION" --rate "$RATE" \
    --subscribers "$SUBSCRIBERS" --churn "$CHURN" --stuck "$STUCK" --interval "$INTERVAL" --server-cpus 0 \
    --no-progress "${server_args[@]}" 2>&1 | tee -a "$OUT/soak.txt"
status=${PIPESTATUS[0]}
set -e
python3 scripts/soak-chart.py "$OUT/soak.txt" "$OUT/soak.png" || true
exit "$status"
