#!/usr/bin/env bash
# The README's main job: build, write the synthetic dataset (u2pl_synth, 6 classes), train SupOnly
# and U2PL with 16 labeled images (configs/synth_suponly.yaml, configs/synth_u2pl.yaml; the same network,
# schedule and iterations), evaluate both with u2pl_eval and write the mIoU table. Everything lands
# in runs/demo/: results.md (the table), suponly/ and u2pl/ (each a u2pl_train run directory:
# config.yaml, log.jsonl, curves.svg, checkpoints, pictures/ with predictions and entropy maps),
# and the eval JSON files. Uses the GPU when there is one (u2pl_train's default device).
#   U2PL_DEMO_DIR   output folder (default runs/demo)
#   U2PL_DEMO_ARGS  extra key=value overrides for both runs (e.g. trainer.epochs=10)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
out=${U2PL_DEMO_DIR:-runs/demo}
extra=(${U2PL_DEMO_ARGS:-})
# Idle OpenMP threads sleep instead of spinning: on a shared machine spinning costs 5-15x.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$(nproc)"
built=$(date +%s)

data=$out/data
rm -rf "$out"
mkdir -p "$out"
./build/apps/u2pl_synth --out "$data" --seed 0 --classes 6

paths=(dataset.train.data_root="$data" dataset.train.data_list="$data/splits/16/labeled.txt"
       dataset.val.data_root="$data" dataset.val.data_list="$data/splits/val.txt")
for method in suponly u2pl; do
  echo "== training $method"
  ./build/apps/u2pl_train --config "configs/synth_$method.yaml" --run-dir "$out/$method" \
    "${paths[@]}" "${extra[@]}" > "$out/$method.train.txt"
  tail -n 1 "$out/$method.train.txt"
  echo "== evaluating $method (its ckpt_latest: the teacher for U2PL, the student for SupOnly)"
  ./build/apps/u2pl_eval --config "$out/$method/config.yaml" --weights "$out/$method/ckpt_latest.safetensors" \
    --mode whole --json "$out/$method.scores.json" | tail -n 4
done

score() {  # score FILE KEY: a fraction as a percentage with two decimals
  sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p" "$1" | head -n 1 | awk '{printf "%.2f", 100 * $1}'
}
{
  echo "# u2pl demo: SupOnly vs U2PL, 16 labeled + 384 unlabeled synthetic images"
  echo
  echo "| method | val mIoU | pixel acc | mean acc | best val mIoU during training |"
  echo "| --- | --- | --- | --- | --- |"
  for method in suponly u2pl; do
    f=$out/$method.scores.json
    best=$(sed -n 's/.*best val mIoU \([0-9.]*\) at iteration \([0-9]*\).*/\1 \2/p' "$out/$method.train.txt" |
      awk '{printf "%.2f (iteration %d)", $1, $2}')
    echo "| $method | $(score "$f" miou) | $(score "$f" pixel_acc) | $(score "$f" mean_acc) | $best |"
  done
  echo
  echo "Final models (U2PL: the teacher), whole-image evaluation of the 100 val images; the last"
  echo "column is the best of the validations during training (every 4 epochs, trainer.eval_interval)."
  echo "Curves: suponly/curves.svg, u2pl/curves.svg. Pictures: */pictures/."
} > "$out/results.md"
cat "$out/results.md"
echo "tools/demo.sh: training and evaluation took $(( $(date +%s) - built )) s (build $(( built - start )) s); see $out/"
