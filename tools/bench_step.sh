#!/usr/bin/env bash
# The training-step benchmark beside PyTorch on this machine: for each preset, whole U2PL
# iterations past the warm start run in their own process for the engine (u2pl_bench step, once
# per memory mode) and for PyTorch (bench/step_torch.py), with the same thread count, network,
# batch, crop and classes; prints time and peak-memory ratios and the contrastive terms of the
# last iteration.
# Usage: tools/bench_step.sh [BUILD_DIR] [--threads T] [--batch B] [--crop C] [--depth D] [--os 8|16]
#                            [--width-divisor K] [--classes C] [--repeat R] [--presets "paper official"]
#                            [--memory "keep recompute_bn recompute_blocks"]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then build=$1; shift; fi
threads=$(nproc); batch=2; crop=129; depth=101; os=8; wdiv=1; classes=21; repeat=3; presets="paper official"
modes="keep recompute_bn recompute_blocks"
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2 ;; --batch) batch=$2 ;; --crop) crop=$2 ;; --depth) depth=$2 ;; --os) os=$2 ;;
    --width-divisor) wdiv=$2 ;; --classes) classes=$2 ;; --repeat) repeat=$2 ;; --presets) presets=$2 ;;
    --memory) modes=$2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(--threads "$threads" --batch "$batch" --crop "$crop" --depth "$depth" --os "$os" --width-divisor "$wdiv"
      --classes "$classes" --repeat "$repeat")
for p in $presets; do
  for m in $modes; do
    "$build/apps/u2pl_bench" step --device cpu --preset "$p" --memory "$m" "${args[@]}" \
      --json "$out/engine_${p}_$m.json" >/dev/null
  done
  /usr/bin/python3 bench/step_torch.py --preset "$p" "${args[@]}" --json "$out/torch_$p.json" >/dev/null
done
python3 - "$out" "$modes" $presets <<'PY'
import json, sys
out, modes, presets = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
print("%-8s %-16s %12s %12s %8s %12s %12s %8s %8s" % ("preset", "memory", "engine ms", "torch ms", "ratio",
                                                     "engine RSS", "torch RSS", "ratio", "terms"))
for p in presets:
    t = json.load(open("%s/torch_%s.json" % (out, p)))
    for m in modes:
        e = json.load(open("%s/engine_%s_%s.json" % (out, p, m)))
        print("%-8s %-16s %12.1f %12.1f %8.2f %10.0f M %10.0f M %8.2f %4d/%-3d" % (
            p, m, e["ms"], t["ms"], e["ms"] / t["ms"], e["peak_rss_bytes"] / 2**20, t["peak_rss_bytes"] / 2**20,
            e["peak_rss_bytes"] / t["peak_rss_bytes"], e["last"]["contra_terms"], t["last"]["contra_terms"]))
PY
