#!/usr/bin/env bash
# For the day a GPU is lent: builds for the local GPU only, runs the `cuda` parity suite (layers,
# network, U2PL losses, training iterations), the layer benchmark on CUDA (crops 129 and 513), the
# model benchmark (eval, train, U2PL step at 2 + 2 images of 513; the VOC recipe's planned
# memory) and the demo's U2PL training on the GPU for 4 epochs, and prints a short summary. Meant
# to finish within 6 minutes on an H100/H200. Usage: bash tools/gpu_check.sh [OUT_DIR]   (default: gpu-check/)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
mkdir -p "$out"
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
bash tools/install_deps.sh >"$out/deps.log" 2>&1 || { echo "dependency install failed: $out/deps.log"; exit 1; }
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DU2PL_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=native >"$out/configure.log" 2>&1 || { tail -20 "$out/configure.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" >"$out/build.log" 2>&1 || { grep -m20 -E "error" "$out/build.log"; exit 1; }
t_build=$(date +%s)
(cd build-gpu && timeout 150 ctest --output-on-failure -L cuda) >"$out/cuda_tests.log" 2>&1
cuda_rc=$?
./build-gpu/tests/u2pl_tests --test-suite=cuda --reporters=console --duration=true >"$out/cuda_cases.log" 2>&1
t_test=$(date +%s)
timeout 60 ./build-gpu/apps/u2pl_bench layers --device cuda --crop 129 --batch 2 --json "$out/bench_cuda_129.json" >"$out/bench_129.txt" 2>&1
timeout 90 ./build-gpu/apps/u2pl_bench layers --device cuda --crop 513 --batch 2 --json "$out/bench_cuda_513.json" >"$out/bench_513.txt" 2>&1
for m in eval train u2pl; do
  timeout 60 ./build-gpu/apps/u2pl_bench model --device cuda --mode $m --batch 2 --crop 513 --json "$out/model_$m.json" >"$out/model_$m.txt" 2>&1
done
./build-gpu/apps/u2pl_bench model --plan-only --batch 16 --crop 513 >"$out/plan_voc.json" 2>&1
./build-gpu/apps/u2pl_synth --out "$out/synth" --classes 4 >"$out/synth.log" 2>&1
timeout 120 ./build-gpu/apps/u2pl_train --config configs/synth_u2pl.yaml --device cuda --run-dir "$out/train" \
  dataset.train.data_root="$out/synth" dataset.train.data_list="$out/synth/splits/16/labeled.txt" \
  dataset.val.data_root="$out/synth" dataset.val.data_list="$out/synth/splits/val.txt" \
  trainer.epochs=4 trainer.sup_only_epoch=2 trainer.eval_interval=2 >"$out/train.txt" 2>&1
train_rc=$?
t_end=$(date +%s)
echo "== summary"
echo "build: $((t_build - t0)) s; cuda suite: $([ $cuda_rc -eq 0 ] && echo PASS || echo FAIL) ($((t_test - t_build)) s); bench: $((t_end - t_test)) s"
grep -E "test cases|assertions" "$out/cuda_cases.log"
[ $cuda_rc -eq 0 ] || grep -E "ERROR|FAILED|error" "$out/cuda_cases.log" | head -30
tail -3 "$out/bench_129.txt"; tail -3 "$out/bench_513.txt"
for m in eval train u2pl; do grep -E '"(mode|ms|images_per_s)"' "$out/model_$m.json" 2>/dev/null | tr -d '\n'; echo; done
grep total_text "$out/plan_voc.json"
echo "demo training on cuda (4 epochs): rc $train_rc"; grep -E "val |done|error" "$out/train.txt" | tail -4
exit $cuda_rc
