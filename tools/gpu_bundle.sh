#!/usr/bin/env bash
# Prepares, on this (GPU-less) machine, what tools/gpu_check.sh needs on a lent GPU machine that
# has CUDA 13, cuDNN 9 and cuBLAS but none of our Debian packages and no network: a Release build
# for one GPU architecture, and its binaries and the shared libraries they load that are neither
# CUDA's nor the C/C++ runtime's (yaml-cpp, oneDNN, OpenBLAS and theirs), each xz-compressed
# into .gpu/ (ignored by git; pass it to the device tool as a carried path, 64 MiB at most).
# On the GPU machine gpu_check.sh unpacks them instead of building.
# Usage: bash tools/gpu_bundle.sh [ARCH [BUILD_DIR]]   (default 90, i.e. H100 / H200, in build-bundle/)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
build=${2:-build-bundle}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DU2PL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
cmake --build "$build" -j "$(nproc)"
bins=("$build/tests/u2pl_tests")
for a in "$build"/apps/u2pl_*; do [ -x "$a" ] && [ -f "$a" ] && bins+=("$a"); done
rm -rf .gpu
mkdir -p .gpu/lib
# CUDA's libraries come from the GPU machine's toolkit; libc, libm, libstdc++ and libgcc_s from
# its system (newer than ours: taking ours would break its own libraries).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+\.|libgcc_s\.|libcuda|libcudart\.|libcublas|libcudnn)'
for b in "${bins[@]}"; do
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] || cp -L "$path" ".gpu/lib/$name"
done
tar -cJf .gpu/lib.tar.xz -C .gpu lib
rm -rf .gpu/lib
tar -cJf .gpu/bin.tar.xz "${bins[@]}"
# The tests find their fixtures at the source path compiled in; gpu_check.sh links it.
echo "$PWD" >.gpu/source_dir
echo "$build" >.gpu/build_dir
# What gpu_check.sh prints and checks the machine's driver against.
nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p' >.gpu/cuda_version
echo "$arch" >.gpu/arch
echo "$(git rev-parse --short HEAD)$(git diff --quiet || echo '+local changes')" >.gpu/commit
echo "gpu_bundle: .gpu/ holds $(du -sh .gpu | cut -f1) (sm_$arch, from $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + local changes'))"
