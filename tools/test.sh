#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs the Debian dependencies, builds the
# default configuration (CUDA compiled when nvcc is present) and runs every CTest suite, then
# builds the CPU-only configuration with AddressSanitizer + UndefinedBehaviorSanitizer and runs
# the unit tests under them, then builds the libFuzzer targets (clang) and runs each briefly
# (tools/fuzz.sh). U2PL_CUDA_ARCHS narrows the CUDA architectures; under CI (CI=true)
# it defaults to 90 alone to save build time.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash tools/install_deps.sh
jobs=$(nproc)

archs=()
[ "${CI:-}" = true ] && : "${U2PL_CUDA_ARCHS:=90}"
[ -n "${U2PL_CUDA_ARCHS:-}" ] && archs=(-DCMAKE_CUDA_ARCHITECTURES="$U2PL_CUDA_ARCHS")
echo "== default build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${archs[@]}"
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure)

echo "== CPU-only build with AddressSanitizer and UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DU2PL_CUDA=OFF -DU2PL_SANITIZE=ON
cmake --build build-asan -j "$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions="$PWD/../tools/lsan.supp" \
  UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -L unit)
echo "== fuzz smoke: every libFuzzer target for 15 s"
U2PL_FUZZ_DIR=build-fuzz/smoke U2PL_FUZZ_JOBS="$jobs" bash tools/fuzz.sh 15
echo "tools/test.sh: all suites done in $(( $(date +%s) - start )) s"
