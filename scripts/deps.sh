#!/usr/bin/env bash
# Installs glimpse's build and test dependencies from Debian, only those that are missing.
# Idempotent: a second run installs nothing and takes a second.
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config
  clang libclang-rt-dev           # libFuzzer targets (fuzz/)
  catch2 nlohmann-json3-dev libcli11-dev
  libstb-dev libjpeg62-turbo-dev libwebp-dev libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev   # vision/
  libvulkan-dev glslc glslang-tools spirv-tools mesa-vulkan-drivers vulkan-validationlayers  # Vulkan
  libcpp-httplib-dev              # glimpse serve
)
# tests/serve_openai (the openai npm client): Debian's node and npm, unless a node is already
# there (NodeSource's nodejs package carries its own npm and conflicts with Debian's).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
