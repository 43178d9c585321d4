#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this):
#   1. Release build + every test (ctest)
#   2. the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer
#   3. every libFuzzer target for a bounded time (scripts/fuzz.sh)
# GLIMPSE_FUZZ_SECONDS (default 60) sets the time per fuzz target; 0 skips fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

bash scripts/build.sh
echo "== tests (Release) =="
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== tests (AddressSanitizer + UndefinedBehaviorSanitizer) =="
# -g1: line tables for the sanitizers' reports, without the full debug information that made
# about a quarter of this build's compile time.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGLIMPSE_SANITIZE=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

seconds=${GLIMPSE_FUZZ_SECONDS:-60}
if [ "$seconds" != "0" ]; then
  echo "== fuzzing (${seconds}s per target) =="
  bash scripts/fuzz.sh "$seconds"
fi
