#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/fuzz_*.cpp) with clang and runs each for a bounded time
# on a scratch copy of its seed corpus (fuzz/corpus/<name>/). Fails if any target finds a crash,
# leak, sanitizer report or timeout; the reproducer is left in fuzz/crashes/.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
bash scripts/deps.sh
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGLIMPSE_FUZZ=ON -DGLIMPSE_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)"
mkdir -p fuzz/crashes
status=0
for bin in build-fuzz/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  corpus_name=${name#fuzz_}
  work=$(mktemp -d)
  if [ -d "fuzz/corpus/$corpus_name" ]; then cp -r "fuzz/corpus/$corpus_name/." "$work/"; fi
  log=$(mktemp)
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="fuzz/crashes/${name}-" "$work" >"$log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    echo "fuzz: $name: $runs executions in ${seconds}s, no crash"
  else
    echo "fuzz: $name: FAILED (see fuzz/crashes/)"
    tail -40 "$log"
    status=1
  fi
  rm -rf "$work" "$log"
done
exit $status
