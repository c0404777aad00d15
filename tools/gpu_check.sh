#!/usr/bin/env bash
# For the day a GPU is lent: runs the `cuda` parity suite (layers, network, U2PL losses, training
# iterations), the layer benchmark on CUDA (crops 129 and 513), the model benchmark (eval, train,
# U2PL step at 2 + 2 images of 513; the VOC recipe's planned memory) and the demo's U2PL training
# on the GPU for 4 epochs, and prints a short summary. With the .gpu/ bundle of
# tools/gpu_bundle.sh (a machine without our Debian packages or a network: carry .gpu) it runs
# the bundled binaries; otherwise it installs the packages and builds for the local GPU. Meant to
# finish within 6 minutes on an H100/H200 from a bundle. Everything it writes lands in OUT_DIR as
# two files: summary.txt and logs.tar.gz (the device tool brings back 8 files at most).
# Usage: bash tools/gpu_check.sh [OUT_DIR]   (default: gpu-check/)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
mkdir -p "$out"
work=$(mktemp -d)
log="$work/logs"
mkdir -p "$log"
t0=$(date +%s)
finish() {
  tar -czf "$out/logs.tar.gz" -C "$work" logs
  cp "$log/summary.txt" "$out/summary.txt" 2>/dev/null
  rm -rf "$work"
}
trap finish EXIT
say() { echo "$*" | tee -a "$log/summary.txt"; }
say "== $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
if [ -f .gpu/bin.tar.xz ]; then
  build=$(cat .gpu/build_dir)
  tar -xJf .gpu/bin.tar.xz && tar -xJf .gpu/lib.tar.xz -C .gpu || { say "bundle: unpacking .gpu failed"; exit 1; }
  # The tests read their fixtures at the source path compiled in.
  src=$(cat .gpu/source_dir)
  if [ "$src" != "$PWD" ] && [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; fi
  export LD_LIBRARY_PATH="$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9; do
    ldconfig -p | grep -q "$lib" && continue
    dir=$(find /usr/local /opt /usr/lib -name "$lib" 2>/dev/null | head -1)
    [ -n "$dir" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$dir")"
  done
  missing=$(ldd "$build/tests/u2pl_tests" | grep "not found")
  [ -z "$missing" ] || { say "bundle: libraries not found: $missing"; exit 1; }
  say "bundle: $build from .gpu (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
else
  build=build-gpu
  bash tools/install_deps.sh >"$log/deps.log" 2>&1 || { say "dependency install failed (see deps.log)"; exit 1; }
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DU2PL_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=native >"$log/configure.log" 2>&1 || { tail -20 "$log/configure.log"; exit 1; }
  cmake --build "$build" -j "$(nproc)" >"$log/build.log" 2>&1 || { grep -m20 -E "error" "$log/build.log"; exit 1; }
fi
t_build=$(date +%s)
timeout 240 "$build/tests/u2pl_tests" --test-suite=cuda --reporters=console --duration=true >"$log/cuda_cases.txt" 2>&1
cuda_rc=$?
t_test=$(date +%s)
timeout 60 "$build/apps/u2pl_bench" layers --device cuda --crop 129 --batch 2 --json "$log/bench_cuda_129.json" >"$log/bench_129.txt" 2>&1
timeout 90 "$build/apps/u2pl_bench" layers --device cuda --crop 513 --batch 2 --json "$log/bench_cuda_513.json" >"$log/bench_513.txt" 2>&1
for m in eval train u2pl; do
  timeout 60 "$build/apps/u2pl_bench" model --device cuda --mode $m --batch 2 --crop 513 --json "$log/model_$m.json" >"$log/model_$m.txt" 2>&1
done
"$build/apps/u2pl_bench" model --plan-only --batch 16 --crop 513 >"$log/plan_voc.json" 2>&1
"$build/apps/u2pl_synth" --out "$work/synth" --classes 4 >"$log/synth.txt" 2>&1
timeout 120 "$build/apps/u2pl_train" --config configs/synth_u2pl.yaml --device cuda --run-dir "$work/train" \
  dataset.train.data_root="$work/synth" dataset.train.data_list="$work/synth/splits/16/labeled.txt" \
  dataset.val.data_root="$work/synth" dataset.val.data_list="$work/synth/splits/val.txt" \
  trainer.epochs=4 trainer.sup_only_epoch=2 trainer.eval_interval=2 >"$log/train.txt" 2>&1
train_rc=$?
cp "$work/train/log.jsonl" "$log/train_log.jsonl" 2>/dev/null
t_end=$(date +%s)
say "== build: $((t_build - t0)) s; cuda suite: $([ $cuda_rc -eq 0 ] && echo PASS || echo "FAIL (rc $cuda_rc)") ($((t_test - t_build)) s); bench and demo: $((t_end - t_test)) s"
grep -E "test cases|assertions" "$log/cuda_cases.txt" | tee -a "$log/summary.txt"
[ $cuda_rc -eq 0 ] || grep -E "ERROR|FAILED|error|what\(\)" "$log/cuda_cases.txt" | head -40 | tee -a "$log/summary.txt"
for f in bench_129 bench_513; do tail -n 3 "$log/$f.txt" | tee -a "$log/summary.txt"; done
for m in eval train u2pl; do
  grep -E '"(mode|ms|images_per_s)"' "$log/model_$m.json" 2>/dev/null | tr -d '\n' | tee -a "$log/summary.txt"
  echo | tee -a "$log/summary.txt"
done
grep total_text "$log/plan_voc.json" | tee -a "$log/summary.txt"
say "demo training on cuda (4 epochs): rc $train_rc"
grep -E "val |done|error" "$log/train.txt" | tail -4 | tee -a "$log/summary.txt"
exit $cuda_rc
