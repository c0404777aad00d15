#!/usr/bin/env bash
# Installs the Debian packages the engine builds and tests with. Idempotent; run as root
# (or with sudo) on a fresh machine. Nothing is downloaded outside Debian's archive.
set -euo pipefail
pkgs=(cmake ninja-build g++ pkg-config libopenblas-dev libdnnl-dev doctest-dev libstb-dev
      nlohmann-json3-dev libyaml-cpp-dev libopenmpi-dev openmpi-bin libpng-dev libjpeg62-turbo-dev)
# The fuzz targets (tools/fuzz.sh, a smoke run in tools/test.sh): clang, its libFuzzer and
# sanitizer runtimes, and its OpenMP.
pkgs+=(clang libclang-rt-dev libomp-dev)
# The PyTorch peer for fixtures and benchmarks is optional: U2PL_WITH_TORCH=1 installs it.
if [ "${U2PL_WITH_TORCH:-0}" = 1 ]; then pkgs+=(python3-torch python3-numpy); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "install_deps: all packages present"; exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
