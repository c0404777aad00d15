#!/usr/bin/env bash
# Issue 16: the `official` preset against the public U2PL code on the same data and budget, over
# several seeds. Writes a 7-class synthetic VOC-layout set (300 training images, 16 labeled,
# 96 px), fills the peer's public-style config (ResNet-50 deep stem from scratch, crop 65, batch
# 4 + 4, lr 0.01, 8 epochs, all supervised: sup_only_epoch 8) and trains it with the public
# train_semi.py on this CPU (../shared/peer/run_official_cpu.py) and with u2pl_train
# (trainer.preset=official, the same config file), one run at a time, each with all cores.
# Writes OUT/gap.md: val mIoU per epoch for every run, and best / last per side as mean ±
# standard deviation over the seeds. Finished runs are kept; run it again to add seeds (another
# --epochs needs another --out).
# With --replay N it trains nothing: for each seed it records the public code's first N
# iterations (tools/pytorch/official_trace.py: the initial weights, the public loader's batches,
# the dropout scales, the loss and learning rates, the student's state after 1, (N+1)/2 and N
# iterations) and replays them in the engine (u2pl_replay, trainer.preset=official) from the
# same start: OUT/replay/seedS/report.md compares the two pipelines iteration by iteration. The
# yardstick beside it, OUT/replay/seedS/self.md: the same public run recorded again at one
# thread (all cores above), against the first (official_trace.py --compare).
# Usage: tools/peer_gap.sh OFFICIAL_DIR [--seeds "0 1 2"] [--out DIR] [--sides "public engine"]
#                          [--epochs N] [--replay N]
#   OFFICIAL_DIR  a checkout of the public U2PL repository (see ../shared/peer/README.md)
#   --epochs      a shorter schedule (default 8, the issue's), e.g. 1 to try the script
#   --replay      iterations to record and replay (71 make an epoch); 0: train (default)
#   U2PL_PEER_DIR the peer harness folder (default ../shared/peer)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { sed -n '2,21p' "$0" >&2; exit 2; }
# Paths given relative to the caller's directory are resolved before moving to the repository.
official=$(cd "$1" && pwd) || { echo "tools/peer_gap.sh: no folder $1" >&2; exit 2; }
shift
peer=$(cd "${U2PL_PEER_DIR:-$repo/../shared/peer}" && pwd) ||
  { echo "tools/peer_gap.sh: no peer folder ${U2PL_PEER_DIR:-$repo/../shared/peer}" >&2; exit 2; }
seeds="0 1 2"
out=$repo/runs/peer_gap
sides="public engine"
epochs=8
replay=0
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "tools/peer_gap.sh: $1 needs a value" >&2; exit 2; }
  case $1 in
    --seeds) seeds=$2 ;;
    --out) out=$(mkdir -p "$2" && cd "$2" && pwd) ;;
    --sides) sides=$2 ;;
    --epochs) epochs=$2 ;;
    --replay) replay=$2 ;;
    *) echo "tools/peer_gap.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
for side in $sides; do
  case $side in public | engine) ;; *) echo "tools/peer_gap.sh: unknown side $side (public, engine)" >&2; exit 2 ;; esac
done
case $epochs in '' | *[!0-9]* | 0) echo "tools/peer_gap.sh: --epochs needs a positive number" >&2; exit 2 ;; esac
case $replay in '' | *[!0-9]*) echo "tools/peer_gap.sh: --replay needs a number of iterations" >&2; exit 2 ;; esac
[ -f "$official/train_semi.py" ] || { echo "tools/peer_gap.sh: $official has no train_semi.py" >&2; exit 2; }
[ -f "$peer/run_official_cpu.py" ] || { echo "tools/peer_gap.sh: $peer has no run_official_cpu.py" >&2; exit 2; }
threads=$(nproc)
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

cd "$repo"
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$threads" >/dev/null
mkdir -p "$out"
# Finished runs are kept, so a folder holds one schedule only.
if [ -f "$out/epochs" ] && [ "$(cat "$out/epochs")" != "$epochs" ]; then
  echo "tools/peer_gap.sh: $out holds runs of $(cat "$out/epochs") epochs; use another --out for $epochs" >&2
  exit 2
fi
echo "$epochs" > "$out/epochs"
data=$out/VOCsynth7  # the public list parser needs "VOC" in the path
if [ ! -f "$data/splits/val.txt" ]; then
  rm -rf "$data" "$data.tmp"
  ./build/apps/u2pl_synth --out "$data.tmp" --seed 0 --classes 7 --train 300 >/dev/null
  mv "$data.tmp" "$data"
fi

# config DIR: the peer's template for this data, all epochs supervised, snapshots in DIR/snap.
config() {
  mkdir -p "$1"
  sed -e "s#@ROOT@#$data#g" -e "s#@SNAP@#$1/snap#g" -e "s/^  epochs: 8$/  epochs: $epochs/" \
    -e "s/sup_only_epoch: 4/sup_only_epoch: $epochs/" \
    "$peer/synth_semi8.yaml.in" > "$1/config.yaml"
}

if [ "$replay" -gt 0 ]; then
  for seed in $seeds; do
    dir=$out/replay/seed$seed
    config "$dir"
    echo "== replay, seed $seed: the public code's first $replay iterations, then the engine's from the same start"
    /usr/bin/python3 "$repo/tools/pytorch/official_trace.py" "$official" "$dir/config.yaml" "$dir/trace.safetensors" \
      --seed "$seed" --iters "$replay" --snapshots "1 $(( (replay + 1) / 2 )) $replay" > "$dir/trace.txt" 2>&1 ||
      { echo "tools/peer_gap.sh: recording the public run failed; see $dir/trace.txt" >&2; exit 1; }
    ./build/apps/u2pl_replay --config "$dir/config.yaml" --trace "$dir/trace.safetensors" --out "$dir/report.md" \
      trainer.preset=official > "$dir/replay.txt" 2>&1 ||
      { echo "tools/peer_gap.sh: the replay failed; see $dir/replay.txt" >&2; exit 1; }
    OMP_NUM_THREADS=1 /usr/bin/python3 "$repo/tools/pytorch/official_trace.py" "$official" "$dir/config.yaml" \
      "$dir/trace1.safetensors" --seed "$seed" --iters "$replay" --snapshots "1 $(( (replay + 1) / 2 )) $replay" \
      > "$dir/trace1.txt" 2>&1 ||
      { echo "tools/peer_gap.sh: recording the public run at one thread failed; see $dir/trace1.txt" >&2; exit 1; }
    /usr/bin/python3 "$repo/tools/pytorch/official_trace.py" --compare "$dir/trace.safetensors" "$dir/trace1.safetensors" \
      > "$dir/self.md" || { echo "tools/peer_gap.sh: comparing the two public traces failed; see $dir/self.md" >&2; exit 1; }
    rm -f "$dir/trace.safetensors" "$dir/trace1.safetensors"  # four copies of the network's state each
    echo "   engine against public:"
    grep '^After' "$dir/report.md" | sed 's/\. The tensors.*//; s/^/     /'
    echo "   public at one thread against public at $threads:"
    grep '^After' "$dir/self.md" | sed 's/^/     /'
  done
  echo "reports: $out/replay/seed*/report.md, self.md"
  exit 0
fi

for seed in $seeds; do
  for side in $sides; do
    dir=$out/$side/seed$seed
    [ -f "$dir/done" ] && continue
    rm -rf "$dir"
    config "$dir"
    echo "== $side seed $seed"
    start=$(date +%s)
    if [ "$side" = public ]; then
      /usr/bin/python3 "$peer/run_official_cpu.py" "$official" semi "$dir/config.yaml" "$seed" > "$dir/train.txt" 2>&1 ||
        { echo "tools/peer_gap.sh: the public run failed; see $dir/train.txt" >&2; exit 1; }
      { grep -o 'epoch [0-9]* mIoU [0-9.]*' "$dir/train.txt" || true; } | awk '{print $2, $4}' > "$dir/miou.txt"
    else
      ./build/apps/u2pl_train --config "$dir/config.yaml" --device cpu --run-dir "$dir/run" \
        trainer.preset=official trainer.seed="$seed" > "$dir/train.txt" 2>&1 ||
        { echo "tools/peer_gap.sh: the engine run failed; see $dir/train.txt" >&2; exit 1; }
      python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("type") == "val" and r.get("model") == "student":  # every epoch is supervised
        print(r["epoch"], "%.2f" % (100 * r["miou"]))' "$dir/run/log.jsonl" > "$dir/miou.txt"
    fi
    echo "$(( $(date +%s) - start ))" > "$dir/seconds"
    [ "$(wc -l < "$dir/miou.txt")" -eq "$epochs" ] ||
      { echo "tools/peer_gap.sh: $dir/miou.txt does not hold $epochs validations" >&2; exit 1; }
    touch "$dir/done"
    echo "   val mIoU per epoch: $(awk '{printf "%s ", $2}' "$dir/miou.txt")($(cat "$dir/seconds") s)"
  done
done

python3 - "$out" "$seeds" "$sides" "$threads" "$epochs" <<'EOF' > "$out/gap.md"
import statistics, sys
out, seeds, sides, threads, epochs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4], int(sys.argv[5])
def ms(v):
    return "%.2f ± %.2f" % (statistics.mean(v), statistics.stdev(v)) if len(v) > 1 else "%.2f" % v[0]
print("| run | " + " | ".join(str(e) for e in range(epochs)) + " | best / last |")
print("| --- |" + " --- |" * (epochs + 1))
summary = {}
for side in sides:
    for s in seeds:
        try:
            m = [float(l.split()[1]) for l in open(f"{out}/{side}/seed{s}/miou.txt")]
        except FileNotFoundError:
            continue
        summary.setdefault(side, []).append((max(m), m[-1]))
        print(f"| {side}, seed {s} | " + " | ".join("%.1f" % x for x in m) + " | %.1f / %.1f |" % (max(m), m[-1]))
print()
print("| side | runs | best val mIoU | last val mIoU |")
print("| --- | --- | --- | --- |")
for side, v in summary.items():
    print(f"| {side} | {len(v)} | {ms([b for b, _ in v])} | {ms([l for _, l in v])} |")
print()
print(f"Mean ± sample standard deviation over the seeds; one run at a time, {threads} threads.")
EOF
cat "$out/gap.md"
