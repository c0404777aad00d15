#!/usr/bin/env bash
# The training step over several processes on this machine's CPU: the same U2PL iteration of R
# replicas (u2pl_bench step --replicas R) in one process with T threads, then under mpirun in W
# processes of T/W threads each (the same cores); prints the time per iteration of each, the
# bytes each process sends per iteration, the gradient all-reduce alone and what of it backward
# hid. Usage: tools/bench_processes.sh [BUILD_DIR] [--processes W] [--threads T] [--replicas R]
#   [--batch B] [--crop C] [--depth D] [--os 8|16] [--width-divisor K] [--classes C] [--repeat N]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then build=$1; shift; fi
W=2; threads=$(nproc); replicas=2; batch=1; crop=129; depth=101; os=8; wdiv=1; classes=21; repeat=3
while [ $# -gt 0 ]; do
  case $1 in
    --processes) W=$2 ;; --threads) threads=$2 ;; --replicas) replicas=$2 ;; --batch) batch=$2 ;;
    --crop) crop=$2 ;; --depth) depth=$2 ;; --os) os=$2 ;; --width-divisor) wdiv=$2 ;; --classes) classes=$2 ;;
    --repeat) repeat=$2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
per=$(( threads / W )); [ "$per" -ge 1 ] || per=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(step --device cpu --replicas "$replicas" --batch "$batch" --crop "$crop" --depth "$depth" --os "$os"
      --width-divisor "$wdiv" --classes "$classes" --repeat "$repeat")
"$build/apps/u2pl_bench" "${args[@]}" --threads "$threads" --json "$out/one.json" >/dev/null
mpirun -np "$W" --oversubscribe --bind-to none --allow-run-as-root -x OMP_NUM_THREADS="$per" \
  "$build/apps/u2pl_bench" "${args[@]}" --threads "$per" --json "$out/many.json" >/dev/null
python3 - "$out" "$threads" "$per" <<'PY'
import json, sys
out, threads, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
one, many = json.load(open(out + "/one.json")), json.load(open(out + "/many.json"))
p = many["processes"]
print("ResNet-%d OS%d, %d replicas of %d + %d at %d px, %d classes" % (one["depth"], one["output_stride"],
      one["replicas"], one["batch"], one["batch"], one["crop"], one["classes"]))
print("%-34s %10s %10s" % ("", "ms/iter", "speed-up"))
print("%-34s %10.1f %10s" % ("1 process, %d threads" % threads, one["ms"], "1.00"))
print("%-34s %10.1f %10.2f" % ("%d processes, %d thread(s) each" % (p["count"], per), many["ms"], one["ms"] / many["ms"]))
print("bytes sent per iteration by each process: %.1f MiB (gradient %.1f MiB)" % (
      p["bytes_sent_per_iteration"] / 2**20, p["gradient_bytes"] / 2**20))
print("gradient all-reduce: %.1f ms alone, %.1f ms waited after backward: %.0f%% hidden (%d of %d buckets "
      "started during backward)" % (p["allreduce_blocking_ms"], p["allreduce_wait_ms"],
      100 * p["allreduce_hidden_share"], p["buckets_started_during_backward"], p["buckets"]))
print("last loss: %.6f (1 process) / %.6f (%d processes)" % (one["last"]["total"], many["last"]["total"], p["count"]))
PY
