# Sourced by the CTest scripts that launch u2pl_train under mpirun (mpi_abort.sh, mpi_signal.sh):
# reads "MPIRUN_COMMAND... -- APPS_DIR" into the array `mpirun` and `apps`, makes the folder
# `work` (removed at exit) with a small synthetic VOC-layout set in work/data, and defines
# write_config EPOCHS EVAL_ON: work/config.yaml, SupOnly on it with a ResNet-18 at width/16,
# batch 1, crop 33, so two processes make two replicas of one image; and run_helpers.sh's.
source "$(dirname "${BASH_SOURCE[0]}")/run_helpers.sh"
mpirun=()
while [ "$1" != -- ]; do mpirun+=("$1"); shift; done
apps=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$apps/u2pl_synth" --out "$work/data" --seed 2 --train 16 --val 4 --size 40 --classes 3 --labeled 4 >/dev/null

write_config() {
  { cat <<YAML
dataset:
  type: pascal
  train: {data_root: $work/data, data_list: $work/data/splits/4/labeled.txt, crop: {type: rand, size: [33, 33]}}
  val: {data_root: $work/data, data_list: $work/data/splits/val.txt}
  batch_size: 1
  workers: 1
trainer:
  epochs: $1
  eval_on: $2
  optimizer: {type: SGD, kwargs: {lr: 0.01, momentum: 0.9, weight_decay: 0.0001}}
  lr_scheduler: {mode: poly, kwargs: {power: 0.9}}
YAML
    net_yaml; } >"$work/config.yaml"
}
