#!/usr/bin/env bash
# Runs test.mjs (the official `openai` npm client) against a `glimpse serve` started here on a
# free port of 127.0.0.1 with the embedded default model, then stops the server.
#   run.sh GLIMPSE_BINARY WORK_DIR
# Passes with "SKIPPED" only when node or npm is missing; any failure (npm ci, the server,
# a wrong answer) fails.
set -euo pipefail
bin=$(realpath "$1")
work=$2
here=$(cd "$(dirname "$0")" && pwd)
examples=$here/../../examples

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIPPED: $tool is not installed (scripts/deps.sh installs nodejs and npm)"
    exit 0
  fi
done
echo "node $(node --version), npm $(npm --version)"

mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$here/test.mjs" "$work/"
cd "$work"
npm ci --no-audit --no-fund --loglevel=error

image=$examples/scene_3.png
expected=$("$bin" describe "$image" -n 40 -t 2)

: >serve.out
"$bin" serve --port 0 -t 2 --api-key test-key >serve.out 2>serve.err &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1200); do
  port=$(sed -n 's/.*127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' serve.out)
  [ -n "$port" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "glimpse serve exited at start:" >&2
    cat serve.err >&2
    exit 1
  fi
  sleep 0.1
done
[ -n "$port" ] || { echo "glimpse serve did not print its port" >&2; cat serve.err >&2; exit 1; }

GLIMPSE_URL="http://127.0.0.1:$port" GLIMPSE_IMAGE="$image" GLIMPSE_EXPECTED="$expected" node test.mjs
kill "$pid"
wait "$pid"  # the server's own exit code: 0 after SIGTERM
trap - EXIT
