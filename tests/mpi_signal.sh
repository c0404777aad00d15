#!/usr/bin/env bash
# CTest `mpi_signal`: SIGUSR1 to mpirun (which forwards it to every process) stops a two-process
# run after the current iteration, all processes together, with a checkpoint that loads: the run
# reports "stopped by signal", exits 130, and ckpt_latest holds an iteration before the end.
# Usage: mpi_signal.sh MPIRUN_COMMAND... -- APPS_DIR
set -euo pipefail
mpirun=()
while [ "$1" != -- ]; do mpirun+=("$1"); shift; done
apps=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$apps/u2pl_synth" --out "$work/data" --seed 2 --train 16 --val 4 --size 40 --classes 3 --labeled 4 >/dev/null
cat >"$work/config.yaml" <<YAML
dataset:
  type: pascal
  train: {data_root: $work/data, data_list: $work/data/splits/4/labeled.txt, crop: {type: rand, size: [33, 33]}}
  val: {data_root: $work/data, data_list: $work/data/splits/val.txt}
  batch_size: 1
  workers: 1
trainer:
  epochs: 500
  eval_on: False
  optimizer: {type: SGD, kwargs: {lr: 0.01, momentum: 0.9, weight_decay: 0.0001}}
  lr_scheduler: {mode: poly, kwargs: {power: 0.9}}
net:
  num_classes: 3
  encoder:
    type: u2pl.models.resnet.resnet18
    kwargs: {replace_stride_with_dilation: [False, False, True], width_divisor: 16}
  decoder: {type: u2pl.models.decoder.dec_deeplabv3_plus, kwargs: {inner_planes: 16, dilations: [2, 4, 6]}}
YAML
"${mpirun[@]}" "$apps/u2pl_train" --config "$work/config.yaml" --run-dir "$work/run" --device cpu \
  >"$work/out.txt" 2>&1 &
pid=$!
# Wait for a few logged iterations (at most 120 s), then ask every process to stop.
for _ in $(seq 1200); do
  [ -f "$work/run/log.jsonl" ] && [ "$(grep -c '"type":"iter"' "$work/run/log.jsonl" || true)" -ge 3 ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
kill -USR1 $pid
set +e
timeout 120 tail --pid=$pid -f /dev/null
wait $pid
rc=$?
set -e
cat "$work/out.txt"
[ $rc -eq 130 ] || { echo "mpi_signal: FAIL: exit $rc, expected 130 (stopped by signal)"; exit 1; }
grep -q "stopped by signal at iteration" "$work/out.txt" || { echo "mpi_signal: FAIL: no stop message"; exit 1; }
iter=$(python3 - "$work/run/ckpt_latest.safetensors" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "rb")
n = struct.unpack("<Q", f.read(8))[0]
print(json.loads(f.read(n))["__metadata__"]["iter"])
PY
)
[ -n "$iter" ] && [ "$iter" -gt 0 ] && [ "$iter" -lt 1000 ] ||
  { echo "mpi_signal: FAIL: ckpt_latest holds iteration '$iter'"; exit 1; }
echo "mpi_signal: ok (exit 130, both processes stopped at iteration $iter with a checkpoint)"
