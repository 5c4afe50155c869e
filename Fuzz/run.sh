#!/usr/bin/env bash
# Builds and runs a libFuzzer target.
#
#   Fuzz/run.sh [target] [seconds] [extra libFuzzer flags...]
#
# target:  decoder (default) or framer. To add one, write Fuzz/<Name>Fuzz.swift and a
#          line in the `case` below naming its sources.
# seconds: how long to fuzz (default 60).
#
# Output: Fuzz/out/<target>/ (binary, crash-* artifacts, log) and the working
# corpus in Fuzz/corpus-work/<target>/ (both gitignored). The checked-in seeds
# are Fuzz/seeds/<target>/ plus, for the decoder, the JSONTestSuite corpus.
# Exits non-zero when the fuzzer finds a crash; the artifact path is printed.
set -euo pipefail

target="${1:-decoder}"
seconds="${2:-60}"
shift $(( $# > 2 ? 2 : $# )) || true

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
swiftc="${SWIFTC:-$(command -v swiftc || echo /opt/swift/usr/bin/swiftc)}"

case "$target" in
  decoder)
    sources=("$here/DecoderFuzz.swift" "$root"/Sources/SecureOpsJSON/*.swift "$root"/Sources/SecureOpsWire/*.swift)
    seeds=("$here/seeds/decoder" "$root/Tests/JSONTests/Resources/JSONTestSuite/test_parsing")
    dict="$here/json.dict"
    ;;
  framer)
    sources=("$here/LineFramerFuzz.swift" "$root"/Sources/SecureOpsWire/LineFramer.swift)
    seeds=("$here/seeds/framer")
    dict=""
    ;;
  *)
    echo "unknown fuzz target '$target' (known: decoder, framer)" >&2
    exit 2
    ;;
esac

out="$here/out/$target"
work="$here/corpus-work/$target"
mkdir -p "$out" "$work"

echo "building $target fuzzer..."
# One module holds the target and the code it fuzzes (so it reaches
# internals): copies without the imports between those modules.
flat="$(mktemp -d)"
trap 'rm -rf "$flat"' EXIT
for source in "${sources[@]}"; do
  sed -E '/^(@testable )?import SecureOps(JSON|Wire)$/d' "$source" > "$flat/$(basename "$source")"
done
"$swiftc" -sanitize=fuzzer,address -parse-as-library -swift-version 6 -O -g \
  -module-name SecureOpsFuzzed -package-name secureops "$flat"/*.swift -o "$out/$target-fuzzer"

existing_seeds=()
for s in "${seeds[@]}"; do [[ -d "$s" ]] && existing_seeds+=("$s"); done

dict_flag=()
[[ -n "${dict:-}" && -f "$dict" ]] && dict_flag=("-dict=$dict")

echo "fuzzing $target for ${seconds}s (corpus: $work)..."
cd "$out"
"$out/$target-fuzzer" "$work" "${existing_seeds[@]}" \
  -max_total_time="$seconds" -max_len=4096 -timeout=5 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$out/" "${dict_flag[@]}" "$@" 2>&1 | tee "$out/fuzz.log"
status=${PIPESTATUS[0]}
if [[ $status -ne 0 ]]; then
  echo "fuzzer exited with status $status; artifacts:" >&2
  ls -1 "$out"/crash-* "$out"/timeout-* "$out"/oom-* 2>/dev/null >&2 || true
fi
exit "$status"
