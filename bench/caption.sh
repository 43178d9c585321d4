#!/usr/bin/env bash
# Caption throughput, --batch 1 against --batch N, on this machine (docs/PERFORMANCE.md,
# "Captioning a folder"): the default model over 40 generated 256x256 scenes, and a random
# SmolVLM-256M-shaped pair (Q8_0 text + F16 mmproj, as BASELINE.md) over 512x512 pictures at
# the real tile count (17 tiles each), against llama.cpp's 1.47 images/min.
#
#   bench/caption.sh [BUILD_DIR]     (default: build)
#   env: REPEATS (default 3: runs of each, alternating), IMAGES_256M (default 4), BATCH (default 8)
set -euo pipefail
bin="${1:-build}/glimpse"
repeats="${REPEATS:-3}"
batch="${BATCH:-8}"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')   $(uptime | sed 's/.*load/load/')"
lscpu | grep -E '^(Model name|CPU\(s\)):' | tr -s ' '
echo
echo "== default model (weights/tiny), 40 scenes"
"$bin" bench --caption --images 40 --batch "$batch" -n 32 -r "$repeats" -t 2
echo
echo "== random SmolVLM-256M (Q8_0 text, F16 mmproj), 512x512"
"$bin" bench --caption --random smolvlm-256m --type q8_0 --images "${IMAGES_256M:-4}" --batch 4 -n 32 -r 1 -t 2
