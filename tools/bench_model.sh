#!/usr/bin/env bash
# The model benchmark beside PyTorch on this machine: each mode (eval, train, u2pl) runs in its
# own process for the engine (u2pl_bench model) and for PyTorch (bench/model_torch.py), with the
# same thread count, depth, output stride, batch and crop; prints time and peak-memory ratios.
# Usage: tools/bench_model.sh [BUILD_DIR] [--threads T] [--batch B] [--crop C] [--depth D] [--repeat R] [--modes "eval train u2pl"]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then build=$1; shift; fi
threads=$(nproc); batch=2; crop=129; depth=101; repeat=3; modes="eval train u2pl"
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2 ;; --batch) batch=$2 ;; --crop) crop=$2 ;; --depth) depth=$2 ;;
    --repeat) repeat=$2 ;; --modes) modes=$2 ;; *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
out=$(mktemp -d)
for m in $modes; do
  "$build/apps/u2pl_bench" model --device cpu --mode "$m" --threads "$threads" --batch "$batch" --crop "$crop" \
    --depth "$depth" --repeat "$repeat" --json "$out/engine_$m.json" >/dev/null
  /usr/bin/python3 bench/model_torch.py --mode "$m" --threads "$threads" --batch "$batch" --crop "$crop" \
    --depth "$depth" --repeat "$repeat" --json "$out/torch_$m.json" >/dev/null
done
python3 - "$out" $modes <<'PY'
import json, sys
out, modes = sys.argv[1], sys.argv[2:]
print("%-6s %12s %12s %8s %12s %12s %8s" % ("mode", "engine ms", "torch ms", "ratio", "engine RSS", "torch RSS", "ratio"))
for m in modes:
    e = json.load(open("%s/engine_%s.json" % (out, m))); t = json.load(open("%s/torch_%s.json" % (out, m)))
    print("%-6s %12.1f %12.1f %8.2f %10.0f M %10.0f M %8.2f" % (m, e["ms"], t["ms"], e["ms"] / t["ms"],
          e["peak_rss_bytes"] / 2**20, t["peak_rss_bytes"] / 2**20, e["peak_rss_bytes"] / t["peak_rss_bytes"]))
PY
rm -rf "$out"
