#!/usr/bin/env bash
# Layer benchmark, engine vs PyTorch on the CPU: runs `u2pl_bench layers` and bench/layers_torch.py
# with the same settings, then bench/compare.py (ratios engine/torch). Builds nothing: build first
# with `cmake --build build-cpu -j1 --target u2pl_bench`.

# usage: tools/bench_layers.sh [--build DIR] [--out DIR] [--threads T] [--crop N] [--batch B]
#                              [--repeat R] [--filter SUBSTR]
#   --build   build folder holding apps/u2pl_bench (default build-cpu)
#   --out     where engine.json, torch.json and the two tables go (default a fresh temp folder)
#   others    passed to both sides; --threads defaults to the number of cores, --crop to 129
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-cpu"
out=""
threads="$(nproc)"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --crop|--batch|--repeat|--filter) args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '6,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_layers.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

bench="$build/apps/u2pl_bench"
[[ -x "$bench" ]] || { echo "bench_layers.sh: $bench not found; build it first" >&2; exit 1; }
[[ -n "$out" ]] || out="$(mktemp -d /tmp/bench_layers.XXXXXX)"
mkdir -p "$out"

echo "bench_layers.sh: threads $threads ${args[*]:-}; load: $(uptime | sed 's/.*load average/load average/')" >&2
"$bench" layers --device cpu --threads "$threads" "${args[@]}" --json "$out/engine.json" >"$out/engine.txt"
/usr/bin/python3 "$root/bench/layers_torch.py" layers --threads "$threads" "${args[@]}" \
  --json "$out/torch.json" >"$out/torch.txt"
python3 "$root/bench/compare.py" "$out/engine.json" "$out/torch.json"
echo "bench_layers.sh: tables and JSON in $out" >&2
