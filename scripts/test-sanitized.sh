#!/usr/bin/env bash
# Runs the whole test suite with the daemon, the CLI and the tests built
# under a sanitizer: address (ASan + LeakSanitizer) or thread (TSan).
# usage: scripts/test-sanitized.sh address|thread [swift test args...]
set -euo pipefail
cd "$(dirname "$0")/.."
sanitizer=${1:?usage: $0 address|thread}
shift
scratch=".build-$sanitizer"
defines=()
# Under ThreadSanitizer the engine's `Locked` is a pthread mutex, which TSan
# sees, instead of the toolchain's Mutex, whose contended hand-over happens
# in the kernel where TSan cannot (Sources/SecureOpsEngine/Support/Locked.swift).
[ "$sanitizer" = thread ] && defines=(-Xswiftc -DSECUREOPS_TSAN)
export PATH="$PATH:/opt/swift/usr/bin"
./scripts/install-deps.sh
swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch" "${defines[@]}"

# Every process the tests start (daemons, the CLI) inherits these and
# writes its reports to its own file under $reports, so a finding in a
# daemon is seen even though the test deletes the daemon's log.
reports=$(mktemp -d /tmp/secureops-$sanitizer-reports-XXXXXX)
export SECUREOPS_SANITIZER="$sanitizer"
export ASAN_OPTIONS="detect_leaks=1:log_path=$reports/report:suppressions=$PWD/.asan-suppressions"
export LSAN_OPTIONS="suppressions=$PWD/.lsan-suppressions:print_suppressions=0"
export TSAN_OPTIONS="second_deadlock_stack=1:log_path=$reports/report:suppressions=$PWD/.tsan-suppressions"
set +e
swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" "${defines[@]}" "$@"
status=$?
set -e
findings=$(grep -lE "ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer" "$reports"/report.* 2>/dev/null || true)
if [ -n "$findings" ]; then
    echo "sanitizer findings in $(echo "$findings" | wc -l) process(es):" >&2
    for file in $findings; do echo "== $file" >&2; head -60 "$file" >&2; done
    exit 1
fi
echo "no $sanitizer sanitizer findings (reports in $reports)"
exit "$status"
