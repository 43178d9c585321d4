#!/usr/bin/env bash
# The GPU figures of issue 5 in one run, on a machine prepared by bench/gpu/prepare.sh:
#
#   bash bench/gpu/run.sh [OUT_DIR]      # OUT_DIR defaults to $OUT, else ./gpu-out
#
# Writes to OUT_DIR: devices.txt (glimpse devices, nvidia-smi if present), tests.txt (the
# [vulkan] tests on this device), bench-*.json and profile-*.txt (bench --device vulkan;
# profile-500m-f16-detail.txt times each matvec shape apart), and
# summary.txt, the figures docs/PERFORMANCE.md records:
#   decode of a SmolVLM-500M-shaped text model (F16 and Q8_0; F16 again with the norms not
#   fused into the matvecs, GLIMPSE_VK_FUSE_NORMS=0, and with each step recorded only when its
#   turn comes, GLIMPSE_VK_RECORD_AHEAD=0, to compare) in tokens/s and as a percentage
#   of the bandwidth bound (weights + K/V bytes a token / the device's own copy rate: goal
#   >= 70 %), and a 512x512 tile of the SigLIP-B/16 tower encoded in ms (goal < 5 ms on a
#   datacenter GPU). The tiled matmul's tile is compared too: the tile encoded with 64x64 tiles
#   of y forced (GLIMPSE_VK_MATMUL_LARGE_TILES=0; by shape it takes 128x128 there), and F16
#   prefill with 128x128 forced (=1; by shape it takes 64x64). So is the attention kernel: the
#   tile with the register-blocked kernel turned off (GLIMPSE_VK_ATTENTION_BLOCKED=0: the
#   tiled one), and F16 prefill with it turned on for causal attention (=1; by shape a GPU
#   runs the per-row kernel there). And the tile with the 8 tiles of a call taken one by one
#   through the layers (GLIMPSE_VK_VIT_TILES_AT_ONCE=0; a GPU takes them all at once). And F16
#   decode and prefill with the Q, K and V projections as three products and a rope
#   (GLIMPSE_VK_FUSE_QKV=0; by default one product), and F16 decode with the stacked product's
#   rope_qkv dispatch before the attention (GLIMPSE_VK_FUSE_ROPE=0; by default the attention
#   rotates Q and K itself: attention_qkv), and F16 decode with the host picking each token
#   from downloaded logits (GLIMPSE_VK_GREEDY_PICK=0; by default bench's decode picks greedily
#   on the device, each step queued before the host reads the last pick). And captioning
#   (bench --caption: 16 generated pictures, batch 1 against batch 8) with a batch's captions
#   stepped together on the device, their greedy tokens picked there (decode_greedy_batch), and
#   by the host from their logits (GLIMPSE_VK_GREEDY_PICK=0: decode_batch), and one by one
#   (GLIMPSE_VK_BATCH_DECODE=0), and together with each step recorded in turn
#   (GLIMPSE_VK_RECORD_AHEAD=0), and with each caption's prompt run alone
#   (GLIMPSE_VK_BATCH_PREFILL=0; by default a batch's prompts are one submission:
#   prefill_batch).
#   And the tensor-core matmul and attention (matmul_coop.comp, attention_coop.comp, off by
#   default until checked on a GPU): tests-coop.txt runs their tests alone first, then the
#   tile and F16 prefill with them on (GLIMPSE_VK_COOP_MATMUL=1), the tile with the matmul
#   alone (GLIMPSE_VK_COOP_ATTENTION=0), and profile-vit-coop.txt. A short lease can run just
#   these: GLIMPSE_GPU_STEPS="tests-coop.txt bench-vit.json bench-vit-coop.json
#   bench-vit-coop-matmul-only.json bench-500m-f16.json bench-500m-f16-coop.json
#   profile-vit-coop.txt".
# Each step has its own time limit, so the whole run stays under about 8 minutes.
# GLIMPSE_GPU_QUICK=1: the same steps on tiny sizes (-p 16 -n 4, one tile, one run each), to
# check the script itself on a slow device such as lavapipe.
# GLIMPSE_GPU_STEPS="tests.txt bench-500m-f16.json ...": only the steps named (all by default),
# to spend less of a short device lease; GLIMPSE_GPU_TESTS: the test spec of tests.txt
# ("[vulkan]" by default).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-$PWD/gpu-out}}
mkdir -p "$out"
[ -d .gpu/bin ] || { echo "run: no .gpu/ here: run bench/gpu/prepare.sh first" >&2; exit 2; }
export LD_LIBRARY_PATH=$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -d .gpu/golden/smolvlm-tiny ] && export GLIMPSE_GOLDEN=$PWD/.gpu/golden
# The tests find the checkout and the binary by the paths they were built with.
src=$(cat .gpu/source_dir)
if [ "$src" != "$PWD" ] && [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; fi
mkdir -p build-gpu/tests
cp .gpu/bin/glimpse build-gpu/glimpse
cp .gpu/bin/glimpse_tests build-gpu/tests/glimpse_tests
g=build-gpu/glimpse
if ldd $g build-gpu/tests/glimpse_tests | grep 'not found'; then echo "run: libraries missing (above)" >&2; exit 3; fi

# A driver the loader does not find by itself (NVIDIA's manifest outside the usual places).
if ! $g devices >/dev/null 2>&1; then
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
               /etc/vulkan/icd.d/nvidia_icd.json; do
        [ -f "$icd" ] && { export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd; break; }
    done
fi
{ $g devices; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv; } \
    > "$out/devices.txt" 2>&1
cat "$out/devices.txt"
$g devices >/dev/null 2>&1 || { echo "run: no Vulkan device" >&2; exit 4; }

step() {  # step NAME SECONDS COMMAND...: output to OUT/NAME, one status line here
    local name=$1 limit=$2; shift 2
    if [ -n "${GLIMPSE_GPU_STEPS:-}" ] && [[ " $GLIMPSE_GPU_STEPS " != *" $name "* ]]; then return; fi
    local t0=$SECONDS
    timeout "$limit" "$@" > "$out/$name" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - t0)) s"
    echo "$name: exit $rc in $((SECONDS - t0)) s" >> "$out/steps.txt"
}
: > "$out/steps.txt"
text=(-p 512 -n 128 -r 3) vit=(--vit-tiles 8 -r 5) text_prof=(-p 512 -n 32 -r 1) vit_prof=(--vit-tiles 8 -r 1)
caption=(--images 16 --batch 8 --lanes 1 -n 32 -r 1)
if [ "${GLIMPSE_GPU_QUICK:-0}" = 1 ]; then
    text=(-p 16 -n 4 -r 1) vit=(--vit-tiles 1 -r 1) text_prof=(-p 16 -n 4 -r 1) vit_prof=(--vit-tiles 1 -r 1)
    caption=(--images 2 --batch 2 --lanes 1 --image-max-tiles 1 -n 4 -r 1)
fi
step tests-coop.txt 60 build-gpu/tests/glimpse_tests "the tensor-core*" --durations yes
step tests.txt 150 build-gpu/tests/glimpse_tests "${GLIMPSE_GPU_TESTS:-[vulkan]}" --durations yes
step bench-500m-f16.json 90 $g bench --device vulkan --random smolvlm-500m --type f16 "${text[@]}" --json
GLIMPSE_VK_FUSE_NORMS=0 step bench-500m-f16-unfused.json 90 $g bench --device vulkan --random smolvlm-500m --type f16 "${text[@]}" --json
GLIMPSE_VK_FUSE_QKV=0 step bench-500m-f16-qkv-apart.json 90 $g bench --device vulkan --random smolvlm-500m --type f16 "${text[@]}" --json
GLIMPSE_VK_FUSE_ROPE=0 step bench-500m-f16-rope-apart.json 90 $g bench --device vulkan --random smolvlm-500m --type f16 "${text[@]}" --json
GLIMPSE_VK_GREEDY_PICK=0 step bench-500m-f16-host-pick.json 90 $g bench --device vulkan --random smolvlm-500m --type f16 "${text[@]}" --json
GLIMPSE_VK_RECORD_AHEAD=0 step bench-500m-f16-no-ahead.json 90 $g bench --device vulkan --random smolvlm-500m --type f16 "${text[@]}" --json
step bench-500m-q8_0.json 90 $g bench --device vulkan --random smolvlm-500m --type q8_0 "${text[@]}" --json
step bench-vit.json 60 $g bench --device vulkan --vit "${vit[@]}" --json
GLIMPSE_VK_COOP_MATMUL=1 step bench-vit-coop.json 60 $g bench --device vulkan --vit "${vit[@]}" --json
GLIMPSE_VK_COOP_MATMUL=1 GLIMPSE_VK_COOP_ATTENTION=0 step bench-vit-coop-matmul-only.json 60 $g bench --device vulkan --vit "${vit[@]}" --json
GLIMPSE_VK_COOP_MATMUL=1 step bench-500m-f16-coop.json 90 $g bench --device vulkan --random smolvlm-500m --type f16 "${text[@]}" --json
GLIMPSE_VK_MATMUL_LARGE_TILES=0 step bench-vit-tiles64.json 60 $g bench --device vulkan --vit "${vit[@]}" --json
GLIMPSE_VK_VIT_TILES_AT_ONCE=0 step bench-vit-one-by-one.json 60 $g bench --device vulkan --vit "${vit[@]}" --json
GLIMPSE_VK_ATTENTION_BLOCKED=0 step bench-vit-attention-tiled.json 60 $g bench --device vulkan --vit "${vit[@]}" --json
GLIMPSE_VK_ATTENTION_BLOCKED=1 step bench-500m-f16-attention-blocked.json 90 $g bench --device vulkan --random smolvlm-500m --type f16 "${text[@]}" --json
GLIMPSE_VK_MATMUL_LARGE_TILES=1 step bench-500m-f16-tiles128.json 90 $g bench --device vulkan --random smolvlm-500m --type f16 "${text[@]}" --json
step bench-caption.json 150 $g bench --caption --device vulkan --random smolvlm-256m "${caption[@]}" --json
GLIMPSE_VK_GREEDY_PICK=0 step bench-caption-host-pick.json 150 $g bench --caption --device vulkan --random smolvlm-256m "${caption[@]}" --json
GLIMPSE_VK_BATCH_DECODE=0 step bench-caption-one-by-one.json 150 $g bench --caption --device vulkan --random smolvlm-256m "${caption[@]}" --json
GLIMPSE_VK_BATCH_PREFILL=0 step bench-caption-prefill-apart.json 150 $g bench --caption --device vulkan --random smolvlm-256m "${caption[@]}" --json
GLIMPSE_VK_RECORD_AHEAD=0 step bench-caption-no-ahead.json 150 $g bench --caption --device vulkan --random smolvlm-256m "${caption[@]}" --json
step profile-500m-f16.txt 60 $g bench --device vulkan --random smolvlm-500m --type f16 "${text_prof[@]}" --profile
GLIMPSE_VK_PROFILE_DETAIL=1 step profile-500m-f16-detail.txt 60 $g bench --device vulkan --random smolvlm-500m --type f16 -p 512 -n 8 -r 1 --profile
step profile-vit.txt 60 $g bench --device vulkan --vit "${vit_prof[@]}" --profile
GLIMPSE_VK_COOP_MATMUL=1 step profile-vit-coop.txt 60 $g bench --device vulkan --vit "${vit_prof[@]}" --profile

python3 - "$out" > "$out/summary.txt" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except Exception as e:
        print(f"{name}: no figures ({e.__class__.__name__})")
        return None
def coop(j):
    if j.get("coop_matmul"):
        return ", tensor-core matmul" + (" and attention" if j.get("coop_attention") else "")
    return ", no tensor cores (unsupported here)" if not j.get("coop_matmul_supported") else ""
for t in ("f16", "f16-coop", "f16-unfused", "f16-qkv-apart", "f16-rope-apart", "f16-host-pick", "f16-no-ahead", "f16-tiles128", "f16-attention-blocked", "q8_0"):
    j = load(f"bench-500m-{t}.json")
    if j:
        norms = "norms fused" if j.get("fuse_norms") else "norms apart"
        norms += ", qkv stacked" if j.get("fuse_qkv") else ", qkv apart"
        norms += ", rope in attention" if j.get("fuse_qkv") and j.get("fuse_rope") else ", rope apart"
        ahead = "recorded ahead" if j.get("record_ahead") else "recorded in turn"
        ahead += ", picked on the device" if j.get("greedy_pick") else ", picked by the host"
        tiles = f"matmul tiles {j.get('matmul_tiles', '?')}, blocked attention {j.get('attention_blocked', '?')}{coop(j)}"
        print(f"SmolVLM-500M-shaped text, {t} ({norms}, {ahead}, {tiles}): prefill {j['prefill_tps']:.0f} tok/s ({j['prefill_tokens']} tokens), "
              f"decode {j['decode_tps']:.1f} tok/s ({j['decode_tokens']} steps) "
              f"= {j['decode_pct_bound']:.1f} % of the bound {j['decode_bound_tps']:.0f} tok/s "
              f"({j['decode_bytes_per_token'] / 2**20:.0f} MiB a token at {j['device_copy_gbs']:.0f} GB/s copy)")
for name in ("bench-vit.json", "bench-vit-coop.json", "bench-vit-coop-matmul-only.json", "bench-vit-tiles64.json", "bench-vit-attention-tiled.json", "bench-vit-one-by-one.json"):
    j = load(name)
    if j:
        print(f"SigLIP-B/16 512x512 tile (matmul tiles {j.get('matmul_tiles', '?')}, "
              f"blocked attention {j.get('attention_blocked', '?')}, "
              f"tiles {'at once' if j.get('vit_tiles_at_once') else 'one by one'}{coop(j)}): {j['encode_ms_per_tile']:.2f} ms "
              f"({j['tiles_per_call']} tiles a call), {j['encode_gflops'] / 1000:.1f} TFLOP/s")
for name in ("bench-caption.json", "bench-caption-host-pick.json", "bench-caption-one-by-one.json", "bench-caption-prefill-apart.json", "bench-caption-no-ahead.json"):
    j = load(name)
    if j:
        how = "stepped together" if j.get("batch_decode") else "stepped one by one"
        how += ", picked on the device" if j.get("greedy_pick") else ", picked by the host"
        how += ", recorded ahead" if j.get("record_ahead") else ", recorded in turn"
        how += ", prompts together" if j.get("batch_prefill") else ", prompts one by one"
        print(f"caption, random SmolVLM-256M, {j['images']} pictures of {j['image_size']}x{j['image_size']}, "
              f"-n {j['max_tokens']} (a batch's captions {how}): batch 1 {j['batch1_images_per_min']:.1f} images/min, "
              f"batch {j['batch']} {j['batchN_images_per_min']:.1f} images/min ({j['speedup']:.2f}x)")
PY
cat "$out/summary.txt"
[ -f "$out/tests.txt" ] && tail -3 "$out/tests.txt"
