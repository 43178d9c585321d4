#!/usr/bin/env bash
# Prepares a run of bench/gpu/run.sh on another Linux x86-64 machine that has a GPU and its
# Vulkan driver but none of this project's build dependencies (no compiler, no OpenCV, no
# Vulkan SDK). Run here, in a built checkout:
#
#   bash bench/gpu/prepare.sh            # builds build-gpu/ (GLIMPSE_OPENCV=OFF), fills .gpu/
#
# .gpu/ then holds (and build-gpu/ is not needed there):
#   bin/glimpse, bin/glimpse_tests  the Release binaries, built without OpenCV (its library
#                                   closure is 200 MiB; without it the bundle is ~47 MiB, the
#                                   golden files half of it)
#   lib/                            every shared library they load except the C library's
#                                   own (libc, libm, ld-linux...), the Vulkan loader included
#   golden/                         the golden files the [vulkan] tests read (GLIMPSE_GOLDEN)
#   source_dir                      the checkout path compiled into the tests
# Copy the checkout with .gpu/ to the machine and run `bash bench/gpu/run.sh` there.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
golden=${GLIMPSE_GOLDEN:-$root/../shared/golden}

cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DGLIMPSE_OPENCV=OFF >/dev/null
ninja -C build-gpu glimpse_cli glimpse_tests

rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib .gpu/golden
cp build-gpu/glimpse build-gpu/tests/glimpse_tests .gpu/bin/
strip .gpu/bin/*
# The libraries: what ldd resolves for both binaries, less the C runtime every Linux has.
ldd .gpu/bin/glimpse .gpu/bin/glimpse_tests | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux-x86-64)\.so' |
    while read -r lib; do cp -L "$lib" .gpu/lib/; done
if ldd .gpu/bin/glimpse .gpu/bin/glimpse_tests | grep -q 'not found'; then
    echo "prepare: a library of the binaries was not found here" >&2
    exit 1
fi
# The golden files of the [vulkan][golden] test (tests/test_vk_cli.cpp), if present.
if [ -d "$golden" ]; then
    for f in smolvlm-tiny/smolvlm-tiny-text-f32.gguf smolvlm-tiny/mmproj-smolvlm-tiny-f32.gguf \
             smolvlm-tiny/ref-hf-e2e/result.json smolvlm-tiny/ref/result.json smolvlm-tiny/images \
             llava-tiny/llava-tiny-text-f16.gguf llava-tiny/mmproj-llava-tiny-f16.gguf llava-tiny/images \
             stories260k; do
        mkdir -p ".gpu/golden/$(dirname "$f")"
        cp -r "$golden/$f" ".gpu/golden/$(dirname "$f")/"
    done
    chmod -R u+w .gpu/golden
else
    echo "prepare: no golden data at $golden: the golden test will be skipped there" >&2
fi
echo "$root" > .gpu/source_dir
du -sh .gpu
echo "prepare: .gpu/ ready; on the GPU machine: bash bench/gpu/run.sh [OUT_DIR]"
