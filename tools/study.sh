#!/usr/bin/env bash
# The seeded study (issue 14): the baselines, both presets and the paper's ablations of U2PL on
# the synthetic set of the demo (u2pl_synth --classes 6, 16 labeled + 384 unlabeled images, the
# demo's network and schedule), each row over several seeds (trainer.seed: initialisation, data
# order, augmentation and every draw). Writes into OUT (default runs/study): data/ (the set),
# runs/ROW/seedS/ (u2pl_train run directories), study.md (final and best val mIoU per row, mean ±
# standard deviation over seeds, and the per-seed figures) and study.svg (val mIoU over training:
# mean and min-max band per row; the final scores with their spread). A grid half done resumes:
# finished runs are kept, a run cut short continues from its checkpoint (bit for bit).
# Usage: tools/study.sh [--quick] [--dev] [--seeds N] [--jobs J] [--rows "ROW ..."] [--out DIR]
#   --quick  the main rows (SupOnly, SupOnly with all labels, MT, CutMix, U2PL paper and
#            official) over 2 seeds; default: every row over 3 seeds
#   --dev    the development draw of the set (u2pl_synth --seed 7, its own val split; default
#            --out runs/study_dev), where settings are chosen: never on the reported set's val
#   --jobs   runs at once (default 2), each with nproc / J threads
#   --rows   a subset of the rows (names as listed by --list)
#   --list   print the rows and their overrides, and exit
set -euo pipefail
cd "$(dirname "$0")/.."
command="tools/study.sh $*"

main_rows="suponly suponly_all mt cutmix u2pl u2pl_official"
ablation_rows="no_bank no_prt neg_reliable neg_all no_dpa alpha40 alpha30 alpha10 prt_1_3 prt_1_6 warm8"

# row_spec ROW: the config, then the overrides of configs/synth_u2pl.yaml (or synth_suponly.yaml).
row_spec() {
  local c=trainer.contrastive u=trainer.unsupervised
  case $1 in
    suponly) echo "suponly" ;;
    suponly_all) echo "suponly dataset.type=pascal dataset.train.data_list=DATA/splits/train.txt" ;;
    mt) echo "u2pl $u.apply_aug=none $c.loss_weight=0" ;;
    cutmix) echo "u2pl $c.loss_weight=0" ;;  # also U2PL without the contrastive loss
    u2pl) echo "u2pl" ;;
    u2pl_official) echo "u2pl trainer.preset=official" ;;
    no_bank) echo "u2pl $c.memory_bank=False" ;;
    no_prt) echo "u2pl $c.prt=False" ;;
    neg_reliable) echo "u2pl $c.negative_source=reliable" ;;
    neg_all) echo "u2pl $c.negative_source=all" ;;
    no_dpa) echo "u2pl $u.dpa=False" ;;
    alpha40) echo "u2pl $u.drop_percent=60" ;;  # α0 = 100 − drop_percent
    alpha30) echo "u2pl $u.drop_percent=70" ;;
    alpha10) echo "u2pl $u.drop_percent=90" ;;
    prt_1_3) echo "u2pl $c.low_rank=1 $c.high_rank=3" ;;  # (r_l, r_h) of Tables 5 and A7
    prt_1_6) echo "u2pl $c.low_rank=1 $c.high_rank=6" ;;  # (1, 20) clamped to the class count
    warm8) echo "u2pl trainer.sup_only_epoch=8" ;;  # the demo's warm start before issue 14 chose 16
    *) return 1 ;;
  esac
}

out=""
quick=0
data_seed=0
seeds=""
jobs=2
rows=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --dev) data_seed=7; shift ;;
    --seeds) seeds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --list)
      for r in $main_rows $ablation_rows; do printf '%-14s %s\n' "$r" "$(row_spec "$r")"; done
      exit 0 ;;
    *) echo "tools/study.sh: unknown option $1 (see the usage at the top of the script)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || out=$([ $data_seed = 0 ] && echo runs/study || echo runs/study_dev)
if [ -z "$rows" ]; then
  if [ $quick = 1 ]; then rows=$main_rows; else rows="$main_rows $ablation_rows"; fi
fi
[ -n "$seeds" ] || seeds=$([ $quick = 1 ] && echo 2 || echo 3)
for r in $rows; do
  row_spec "$r" >/dev/null || { echo "tools/study.sh: unknown row '$r' (see --list)" >&2; exit 2; }
done
case $seeds in '' | *[!0-9]* | 0) echo "tools/study.sh: --seeds needs a positive number" >&2; exit 2 ;; esac
case $jobs in '' | *[!0-9]* | 0) echo "tools/study.sh: --jobs needs a positive number" >&2; exit 2 ;; esac

# One thread per job share; idle OpenMP threads sleep (spinning costs much on a shared machine).
threads=$(( $(nproc) / jobs )); [ $threads -ge 1 ] || threads=1
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
mkdir -p "$out/runs"
# A grid is resumed only under the configs its runs were trained with (grids from before this
# record are refused too: their configs are unknown).
configs_sum=$(cat configs/synth_suponly.yaml configs/synth_u2pl.yaml | sha256sum | cut -d' ' -f1)
if [ -n "$(ls -A "$out/runs")" ] && [ "$(cat "$out/configs_sha256" 2>/dev/null)" != "$configs_sum" ]; then
  echo "tools/study.sh: the runs in $out/runs were trained with other configs/synth_*.yaml (or unrecorded ones):" \
    "remove $out or choose another --out" >&2
  exit 2
fi
echo "$configs_sum" > "$out/configs_sha256"
data=$out/data
# A grid of another set (4 classes before issue 14's change) is not resumed into this one.
if [ -f "$data/splits/val.txt" ] && [ "$(wc -l < "$data/classes.txt")" != 6 ]; then
  echo "tools/study.sh: $data holds a synthetic set of $(wc -l < "$data/classes.txt") classes, the study's has 6:" \
    "remove $out or choose another --out" >&2
  exit 2
fi
# The generator seed of the set in $out (grids from before --dev have no record: seed 0).
if [ -f "$data/splits/val.txt" ] && [ "$(cat "$out/data_seed" 2>/dev/null || echo 0)" != $data_seed ]; then
  echo "tools/study.sh: $data was drawn with generator seed $(cat "$out/data_seed" 2>/dev/null || echo 0)," \
    "this study's with $data_seed: remove $out or choose another --out" >&2
  exit 2
fi
if [ ! -f "$data/splits/val.txt" ]; then
  rm -rf "$data"
  ./build/apps/u2pl_synth --out "$data.tmp" --seed $data_seed --classes 6 >/dev/null
  echo $data_seed > "$out/data_seed"
  mv "$data.tmp" "$data"
fi

# run ROW SEED: one training into its run directory; "done" marks it finished.
run() {
  local row=$1 seed=$2 dir=$out/runs/$1/seed$2
  local spec config
  spec=$(row_spec "$row")
  config=${spec%% *}
  local -a ov=()
  [ "$spec" = "$config" ] || read -r -a ov <<< "${spec#* }"
  ov=("${ov[@]/DATA/$data}")
  # Rows with pseudo-labels also score them against the unlabeled images' own labels (a diagnostic
  # that changes no number of the run) for the report's figures.
  [ "$config" = suponly ] || ov+=(trainer.unsupervised.score_pseudo_labels=True)
  local resume=()
  [ -f "$dir/ckpt_latest.safetensors" ] && resume=(--resume)
  [ ${#resume[@]} -gt 0 ] || rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  ./build/apps/u2pl_train --config "configs/synth_$config.yaml" --device cpu --run-dir "$dir" "${resume[@]}" \
    dataset.train.data_root="$data" dataset.train.data_list="$data/splits/16/labeled.txt" \
    dataset.val.data_root="$data" dataset.val.data_list="$data/splits/val.txt" trainer.seed="$seed" \
    "${ov[@]}" > "$dir.txt" 2>&1 || { echo "tools/study.sh: $row seed $seed failed; see $dir.txt" >&2; return 1; }
  touch "$dir/done"
}

todo=()
total=0
for r in $rows; do
  for s in $(seq 1 "$seeds"); do
    total=$((total + 1))
    [ -f "$out/runs/$r/seed$s/done" ] || todo+=("$r $s")
  done
done
echo "tools/study.sh: $total runs ($((total - ${#todo[@]})) already done), $jobs at a time with $threads thread(s) each, into $out"
start=$(date +%s)
finished=0
failed=0
running=0
# A pool of `jobs` background runs; each reports as it ends.
report() {
  finished=$((finished + 1))
  local el=$(( $(date +%s) - start ))
  local eta=$(( el * (${#todo[@]} - finished) / finished ))
  echo "  [$finished/${#todo[@]}] $1 ($(( el / 60 )) min elapsed, about $(( eta / 60 )) min left)"
}
declare -A pid_of=()
for item in "${todo[@]}"; do
  if [ $running -ge "$jobs" ]; then
    wait -n -p ended || failed=$((failed + 1))
    report "${pid_of[$ended]}"
    running=$((running - 1))
  fi
  read -r r s <<< "$item"
  run "$r" "$s" &
  pid_of[$!]="$r seed $s"
  running=$((running + 1))
done
while [ $running -gt 0 ]; do
  wait -n -p ended || failed=$((failed + 1))
  report "${pid_of[$ended]}"
  running=$((running - 1))
done
[ $failed = 0 ] || { echo "tools/study.sh: $failed run(s) failed; run the script again to retry them" >&2; exit 1; }

python3 tools/study_report.py "$out" --rows "$rows" --seeds "$seeds" \
  --threads "$threads" --jobs "$jobs" --command "$command" --set "u2pl_synth --classes 6 --seed $data_seed"
echo "tools/study.sh: done in $(( ($(date +%s) - start) / 60 )) min; see $out/study.md and $out/study.svg"
