#!/usr/bin/env bash
# Builds the libFuzzer target (ASan on) into .build-fuzz/debug/deformrt-fuzz.
#
# The target is the `deformrt-fuzz` executable (fuzz/Sources): a plain `swift build` makes it a
# corpus replayer; here -DDEFORMRT_FUZZ and -sanitize=fuzzer,address turn it into libFuzzer's
# driver over drt_model_load_memory + drt_session_create + one run with zero-filled inputs.
# Debug, not release: it compiles in a fraction of the time and ASan's checks dominate anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(--scratch-path .build-fuzz --product deformrt-fuzz
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -DDEFORMRT_FUZZ -Xswiftc -parse-as-library
       -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Other work in the tree may touch a source file mid-build; SwiftPM then asks for a rerun.
for attempt in 1 2 3 4 5; do
    status=0
    swift build "${flags[@]}" >"$log" 2>&1 || status=$?
    grep -E "error:|Build (complete|of product)" "$log" || true
    [ "$status" -eq 0 ] && exit 0
    grep -q "modified during the build" "$log" || exit "$status"
    sleep 10
done
exit 1
