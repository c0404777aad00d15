#!/usr/bin/env bash
# The first run of our CUDA code on a lent GPU, in one device command. In order, each step with
# its own timeout inside one time budget (default 410 s, so the whole check ends well inside the
# device tool's 600 s per command), each result written to OUT_DIR as soon as its step ends:
#   machine   nvidia-smi, then `u2pl_bench env` (devices, driver and runtime CUDA versions, cuDNN
#             and cuBLAS and the files they came from); refuses when the driver is older than the
#             bundle's CUDA, or when CUDA reports an error while looking for devices
#   cuda      the `cuda` parity suite (layers, network, U2PL losses, training iterations) with
#             --cuda-only: a skip (exit 77) is a failure here; the counts of cases and assertions
#   train     the demo's U2PL training on the GPU for 4 epochs
#   plan      the planned memory of the VOC recipe at 16 + 16 (no GPU work)
#   step      `u2pl_bench step --profile` (time per phase, convolution TFLOP/s) at the VOC recipe's
#             per-GPU batch 4 + 4 and at 8 + 8 (513², ResNet-101 OS8), both presets, each beside
#             bench/step_torch.py on the same GPU when python3 has torch with CUDA
#   memcheck  compute-sanitizer's memcheck over a reduced cuda suite (a few layers, one loss, two
#             training iterations at small sizes), with time kept for it from the start
# With the .gpu/ bundle of tools/gpu_bundle.sh (a machine without our Debian packages or a
# network: carry .gpu) it runs the bundled binaries, finding CUDA's libraries on the machine, in
# its toolkit or in a Python environment's nvidia/*/lib folders; otherwise it builds for the
# local GPU. On a machine without a GPU it says so and exits 2 before any work.
# Output (the device tool brings back 8 files at most): OUT_DIR/summary.txt, OUT_DIR/logs.tar.gz
# (every step's log; refreshed after each step), OUT_DIR/profile.txt (the step profiles).
# Exit: 0 all passed; 1 a step failed; 2 no GPU; 3 refused (driver, libraries, bundle).
# Usage: bash tools/gpu_check.sh [OUT_DIR]   (default: gpu-check/)
#   U2PL_GPU_CHECK_BUDGET  seconds for the whole check (default 410)
#   U2PL_GPU_CHECK_DRY=1   on a machine without a GPU, go on past "no GPU" through every step (each
#                          fails at once): a rehearsal of the script itself, exit code included
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
mkdir -p "$out" && out=$(cd "$out" && pwd)
budget=${U2PL_GPU_CHECK_BUDGET:-410}
memcheck_reserve=75
work=$(mktemp -d)
log="$work/logs"
mkdir -p "$log"
trap 'rm -rf "$work"' EXIT
rm -f "$out/summary.txt" "$out/logs.tar.gz" "$out/profile.txt"
t0=$(date +%s)
failed=0

say() { echo "$*" | tee -a "$out/summary.txt"; }
pack() { tar -czf "$out/logs.tar.gz.tmp" -C "$work" logs && mv "$out/logs.tar.gz.tmp" "$out/logs.tar.gz"; }
elapsed() { echo $(( $(date +%s) - t0 )); }
# step NAME LIMIT CMD...: runs CMD under a timeout of LIMIT seconds, cut to what the budget leaves
# (less the time kept for memcheck unless NAME is memcheck), its output in logs/NAME.txt; prints
# one line with the exit code and the time; returns the exit code (124 / 137: timed out).
step() {
  local name=$1 limit=$2
  shift 2
  local keep=$memcheck_reserve
  [ "$name" = memcheck ] && keep=0
  local avail=$(( budget - $(elapsed) - keep ))
  if (( avail < 5 )); then
    say "$(printf '%-18s' "$name") skipped: the time budget ($budget s) is spent"
    return 124
  fi
  (( limit > avail )) && limit=$avail
  local s rc
  s=$(date +%s)
  timeout -k 5 "$limit" "$@" >"$log/$name.txt" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - s )) note=""
  (( rc == 124 || rc == 137 )) && note=" TIMED OUT"
  say "$(printf '%-18s' "$name") exit $rc in ${dt} s (limit $limit s, at $(elapsed) s)$note"
  if (( rc != 0 )) && [ "$name" != cuda ] && [ "$name" != memcheck ]; then
    tail -n 2 "$log/$name.txt" | cut -c1-300 | sed 's/^/  | /' | tee -a "$out/summary.txt"
  fi
  pack
  return $rc
}
refuse() { say "REFUSED: $*"; pack; exit 3; }

say "== u2pl gpu_check $(git rev-parse --short HEAD 2>/dev/null || echo '?') on $(hostname), $(date -u +%FT%TZ)"
# --- machine ---------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then
  say "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -4 | tr '\n' ';')"
  driver_cuda=$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: *[0-9.]*' | grep -o '[0-9.]*$')
  say "nvidia-smi: the driver supports CUDA ${driver_cuda:-?}"
elif ! ls /dev/nvidia[0-9]* >/dev/null 2>&1 && [ "${U2PL_GPU_CHECK_DRY:-0}" != 1 ]; then
  say "no GPU: nvidia-smi is not installed and there is no /dev/nvidia* device; nothing to check"
  pack
  exit 2
fi

# --- binaries: the bundle, or a build for the local GPU ---------------------------------------
if [ -f .gpu/bin.tar.xz ]; then
  build=$(cat .gpu/build_dir)
  tar -xJf .gpu/bin.tar.xz && tar -xJf .gpu/lib.tar.xz -C .gpu || refuse "unpacking the .gpu bundle failed"
  bundle_cuda=$(cat .gpu/cuda_version 2>/dev/null)
  say "bundle: $build, built with CUDA ${bundle_cuda:-?} for sm_$(cat .gpu/arch 2>/dev/null || echo '?') from $(cat .gpu/commit 2>/dev/null || echo '?')"
  if [ -n "${driver_cuda:-}" ] && [ -n "$bundle_cuda" ] && [ "${driver_cuda%%.*}" -lt "${bundle_cuda%%.*}" ]; then
    refuse "the driver supports CUDA $driver_cuda, the bundle needs CUDA ${bundle_cuda%%.*}.0 or newer (a driver of the 580 series or later for CUDA 13)"
  fi
  # The tests read their fixtures at the source path compiled in.
  src=$(cat .gpu/source_dir)
  if [ "$src" != "$PWD" ] && [ ! -e "$src" ]; then mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"; fi
  export LD_LIBRARY_PATH="$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # CUDA's own libraries come from this machine: its loader paths, its toolkit, or a Python
  # environment's wheels (site-packages/nvidia/<lib>/lib).
  dirs=(/usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/*/lib /usr/local/cuda-*/lib64 /usr/lib/x86_64-linux-gnu
        /usr/lib64 /opt/*/lib /opt/*/lib64)
  if command -v python3 >/dev/null; then
    while read -r sp; do dirs+=("$sp"/nvidia/*/lib); done < <(python3 -c \
      'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null)
  fi
  for lib in $(ldd "$build/tests/u2pl_tests" "$build/apps/u2pl_bench" | awk '/not found/ {print $1}' | sort -u); do
    for d in "${dirs[@]}"; do
      if [ -e "$d/$lib" ]; then
        LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
        say "library: $lib from $d"
        break
      fi
    done
  done
  missing=$(ldd "$build/tests/u2pl_tests" "$build/apps/u2pl_bench" | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
  [ -z "$missing" ] || refuse "libraries not found on this machine: $missing(searched the loader paths, ${dirs[*]})"
else
  build=build-gpu
  say "no .gpu bundle: building for the local GPU in $build"
  bash tools/install_deps.sh >"$log/deps.log" 2>&1 || refuse "dependency install failed (logs/deps.log)"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DU2PL_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=native >"$log/configure.log" 2>&1 || refuse "configure failed (logs/configure.log)"
  cmake --build "$build" -j "$(nproc)" >"$log/build.log" 2>&1 || refuse "build failed (logs/build.log)"
  say "build: $(elapsed) s"
  t0=$(date +%s)  # the budget counts the checks, not the build
fi
bench="$build/apps/u2pl_bench"

step env 30 "$bench" env
env_rc=$?
sed 's/^/  /' "$log/env.txt" | tee -a "$out/summary.txt"
[ $env_rc -eq 0 ] || refuse "CUDA could not be used (logs/env.txt above)"
if grep -q '^devices: none' "$log/env.txt"; then
  say "no GPU: CUDA sees no device ($(sed -n 's/^devices: none: //p' "$log/env.txt"))"
  if [ "${U2PL_GPU_CHECK_DRY:-0}" != 1 ]; then pack; exit 2; fi
  say "dry run (U2PL_GPU_CHECK_DRY=1): every step runs anyway"
fi

# --- the cuda suite ---------------------------------------------------------------------------
step cuda 150 "$build/tests/u2pl_tests" --cuda-only --test-suite=cuda --duration=true
cuda_rc=$?
grep -E '^\[doctest\] (test cases|assertions)' "$log/cuda.txt" | sed 's/^/  /' | tee -a "$out/summary.txt"
case $cuda_rc in
  0) say "cuda suite: PASS" ;;
  77) say "cuda suite: FAIL: it skipped itself ($(grep -m1 'skipped' "$log/cuda.txt")): the tests saw no GPU"; failed=1 ;;
  *) say "cuda suite: FAIL (exit $cuda_rc)"; failed=1
     grep -E 'ERROR|FATAL|error|what\(\)|TEST CASE' "$log/cuda.txt" | head -40 | sed 's/^/  /' | tee -a "$out/summary.txt" ;;
esac

# --- the demo's training on the GPU -----------------------------------------------------------
"$build/apps/u2pl_synth" --out "$work/synth" --classes 6 >"$log/synth.txt" 2>&1
step train 60 "$build/apps/u2pl_train" --config configs/synth_u2pl.yaml --device cuda --run-dir "$work/train" \
  dataset.train.data_root="$work/synth" dataset.train.data_list="$work/synth/splits/16/labeled.txt" \
  dataset.val.data_root="$work/synth" dataset.val.data_list="$work/synth/splits/val.txt" \
  trainer.epochs=4 trainer.sup_only_epoch=2 trainer.eval_interval=2 || failed=1
cp "$work/train/log.jsonl" "$log/train_log.jsonl" 2>/dev/null
grep -E "val |done" "$log/train.txt" | tail -4 | sed 's/^/  /' | tee -a "$out/summary.txt"

step plan 20 "$bench" model --plan-only --depth 101 --os 8 --batch 16 --crop 513
say "  VOC recipe 16 + 16 at 513², R-101 OS8, planned: $(sed -n 's/.*"total_text": *"\([^"]*\)".*/\1/p' "$log/plan.txt")"

# --- where the time goes: the engine's step profile beside PyTorch ----------------------------
torch_ok=0
if command -v python3 >/dev/null && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
     >"$log/torch_probe.txt" 2>&1; then
  torch_ok=1
  say "pytorch: $(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())')"
else
  say "pytorch: not usable with CUDA here (logs/torch_probe.txt); the step runs without its peer"
fi
for b in 4 8; do
  for p in paper official; do
    args=(--preset "$p" --depth 101 --os 8 --batch "$b" --crop 513 --classes 21 --repeat 3)
    step "step_${p}_$b" 45 "$bench" step --device cuda --profile "${args[@]}" --json "$log/step_${p}_$b.json" \
      || failed=1
    { echo "== engine: $p, $b + $b at 513², R-101 OS8"; sed -n '/^profile/,/^end of profile/p' "$log/step_${p}_$b.txt"; } >>"$out/profile.txt"
    if [ $torch_ok = 1 ]; then
      step "torch_${p}_$b" 45 python3 bench/step_torch.py --device cuda "${args[@]}" --json "$log/torch_${p}_$b.json"
    fi
    python3 - "$log/step_${p}_$b.json" "$log/torch_${p}_$b.json" "$p" "$b" <<'PY' 2>/dev/null | tee -a "$out/summary.txt"
import json, sys
line = "  step %s %s+%s: " % (sys.argv[3], sys.argv[4], sys.argv[4])
try:
    e = json.load(open(sys.argv[1]))
    line += "engine %.1f ms" % e["ms"]
except (OSError, ValueError, KeyError):
    print(line + "engine failed (its log is in logs.tar.gz)")
    sys.exit(0)
try:
    t = json.load(open(sys.argv[2]))
    line += ", pytorch %.1f ms, engine / pytorch %.2f" % (t["ms"], e["ms"] / t["ms"])
except (OSError, ValueError, KeyError):
    line += ", no pytorch figure"
print(line)
PY
  done
done
pack

# --- compute-sanitizer memcheck over a reduced cuda suite -------------------------------------
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$sanitizer" ]; then
  step memcheck 300 "$sanitizer" --tool memcheck --leak-check no --report-api-errors no --error-exitcode 99 \
    "$build/tests/u2pl_tests" --cuda-only --test-suite=cuda \
    '--test-case=conv2d*,batchnorm*,bilinear*,u2pl losses on cuda: unsupervised*,train step: two*'
  mc_rc=$?
  summary_line=$(grep -m1 'ERROR SUMMARY' "$log/memcheck.txt")
  if [ $mc_rc -eq 0 ]; then
    say "memcheck: clean (${summary_line:-no summary line})"
  else
    say "memcheck: FAIL (exit $mc_rc; ${summary_line:-no summary line})"
    grep -E '^========= (Invalid|Program hit|Address|Saved host)' "$log/memcheck.txt" | head -20 | sed 's/^/  /' |
      tee -a "$out/summary.txt"
    failed=1
  fi
else
  say "memcheck: skipped: compute-sanitizer not found"
fi

say "== $( [ $failed = 0 ] && echo PASS || echo FAIL ) in $(elapsed) s"
pack
exit $failed
