#!/usr/bin/env bash
# CTest `kill_resume`: a small U2PL training (warm start, handover, CutMix, the contrastive loss
# with its queues wrapping, a validation, pictures and ckpt_best every epoch) killed with SIGKILL
# at KILLS random moments and, through the fault hook of engine/file_io.h (U2PL_FAULT), halfway
# through checkpoint writes and log appends, and stopped by SIGTERM and by SIGINT twice; resumed
# after each until it finishes. Checks:
#  - after every kill, ckpt_latest and ckpt_best (when present) load (u2pl_train --resume loads
#    the first, u2pl_eval the second) and log.jsonl holds whole records, none twice (only its
#    last line may be torn, by a kill inside an append; the resume drops it);
#  - the finished run equals an uninterrupted one bit for bit: every tensor and the metadata of
#    ckpt_latest (parameters, momentum, BN statistics, queues) and the log's records (loss terms,
#    stats, validations; the timings aside);
#  - no temporary file is left.
# Usage: kill_resume.sh APPS_DIR [KILLS (default 20)]; U2PL_KILL_SEED fixes the random moments.
set -euo pipefail
source "$(dirname "$0")/run_helpers.sh"
apps=$1
kills=${2:-20}
seed=${U2PL_KILL_SEED:-$$}
RANDOM=$seed
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 U2PL_QUIET=1
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
"$apps/u2pl_synth" --out "$work/data" --seed 4 --train 16 --val 4 --size 40 --classes 3 --labeled 4 >/dev/null
{ cat <<YAML
dataset:
  type: pascal_semi
  train: {data_root: $work/data, data_list: $work/data/splits/4/labeled.txt, flip: True,
          rand_resize: [0.5, 2.0], crop: {type: rand, size: [33, 33]}}
  val: {data_root: $work/data, data_list: $work/data/splits/val.txt}
  batch_size: 2
  workers: 1
trainer:
  epochs: 6
  sup_only_epoch: 1
  eval_on: True
  eval_interval: 1
  optimizer: {type: SGD, kwargs: {lr: 0.01, momentum: 0.9, weight_decay: 0.0001}}
  lr_scheduler: {mode: poly, kwargs: {power: 0.9}}
  unsupervised: {drop_percent: 80, apply_aug: cutmix}
  contrastive: {negative_high_entropy: True, low_rank: 1, high_rank: 3, current_class_threshold: 0.3,
                current_class_negative_threshold: 1, low_entropy_threshold: 20, num_negatives: 16,
                num_queries: 8, temperature: 0.5, queue_size: 40, queue_size_background: 60}
YAML
  net_yaml; } >"$work/config.yaml"
train() {  # train RUN_DIR [--resume]: u2pl_train on the CPU in the background; its pid in $pid
  "$apps/u2pl_train" --config "$work/config.yaml" --device cpu --run-dir "$@" >>"$work/out.txt" 2>&1 &
  pid=$!
}
fail() {
  echo "kill_resume: FAIL (U2PL_KILL_SEED=$seed): $*"
  tail -n 20 "$work/out.txt"
  exit 1
}

start=$(date +%s%N)
train "$work/ref"
wait $pid || fail "the uninterrupted run failed"
ref_ms=$(( ($(date +%s%N) - start) / 1000000 ))
total=$(ckpt_iter "$work/ref/ckpt_latest.safetensors")

# check_after_kill DIR POINT: the checkpoints load, the log holds whole records, none twice.
check_after_kill() {
  if [ -f "$1/ckpt_best.safetensors" ]; then
    "$apps/u2pl_eval" --config "$1/config.yaml" --weights "$1/ckpt_best.safetensors" --device cpu \
      >"$work/eval.txt" 2>&1 || { cat "$work/eval.txt"; fail "ckpt_best does not load after kill point $2"; }
  fi
  [ -f "$1/log.jsonl" ] || return 0
  python3 - "$1/log.jsonl" <<'PY' || fail "log.jsonl after kill point $2"
import json, sys
lines = open(sys.argv[1], "rb").read().split(b"\n")
seen = set()
for i, line in enumerate(lines):
    if not line:
        continue
    try:
        r = json.loads(line)
    except ValueError:
        if i == len(lines) - 1:  # the last line, without its newline: torn by a kill inside an append
            continue
        sys.exit(f"line {i + 1} is torn: {line[:60]!r}")
    key = (r["type"], r["iter"], r.get("model"))
    if key in seen:
        sys.exit(f"line {i + 1} repeats {key}")
    seen.add(key)
PY
}

# compare DIR: resumes DIR until it finishes, then compares it with the uninterrupted run.
compare() {
  local tries=0
  while [ ! -f "$1/ckpt_latest.safetensors" ] || [ "$(ckpt_iter "$1/ckpt_latest.safetensors")" != "$total" ]; do
    tries=$((tries + 1))
    [ $tries -le 2 ] || fail "$1 does not finish"
    local resume=()
    [ -f "$1/ckpt_latest.safetensors" ] && resume=(--resume)
    train "$1" "${resume[@]}"
    wait $pid || fail "the last resume of $1 failed"
  done
  python3 - "$work/ref" "$1" >/dev/null <<'PY' || fail "$1 differs from the uninterrupted run"
import json, struct, sys

def tensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    return meta, {k: (v["dtype"], v["shape"], data[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
                  for k, v in header.items()}

ref, run = sys.argv[1], sys.argv[2]
mr, tr = tensors(ref + "/ckpt_latest.safetensors")
mk, tk = tensors(run + "/ckpt_latest.safetensors")
if set(tr) != set(tk):
    sys.exit(f"tensors differ: {sorted(set(tr) ^ set(tk))[:5]}")
bad = [k for k in tr if tr[k] != tk[k]]
if bad:
    sys.exit(f"{len(bad)} tensors differ, e.g. {bad[:5]}")
if mr.get("iter") != mk.get("iter"):
    sys.exit(f"iteration {mk.get('iter')} against {mr.get('iter')}")

def records(path):
    out = []
    for line in open(path):
        r = json.loads(line)
        r.pop("time", None)
        r.pop("it_s", None)
        out.append(r)
    return out

a, b = records(ref + "/log.jsonl"), records(run + "/log.jsonl")
if a != b:
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    sys.exit(f"log.jsonl: {len(b)} records against {len(a)}; the first difference at record {first + 1}")
print(f"{len(tr)} tensors and {len(a)} log records equal")
PY
  [ "$(find "$1" -name '*.tmp' | wc -l)" = 0 ] || fail "temporary files left in $1"
  compared=$((compared + 1))
}

# The kill points: KILLS random moments (uniform over an uninterrupted run's time from its start)
# for SIGKILL, then halfway through some checkpoint writes and log appends (counted from the
# start of the process), then SIGTERM (a stop after the iteration, with a checkpoint) and SIGINT
# twice, 20 ms apart (the second ends the process where it stands), at random moments. A run that
# finishes before its signal (a resumed one has less to do) is compared, and a fresh one takes
# the point (at half the time when a whole run was quicker than it).
random_ms() { echo $(( (RANDOM * 32768 + RANDOM) % (ref_ms + 1) )); }
points=()
for _ in $(seq "$kills"); do points+=("KILL:$(random_ms)"); done
points+=(fault:checkpoint:1 fault:log:1 fault:checkpoint:2 fault:log:7 fault:checkpoint:3 fault:log:15)
points+=("TERM:$(random_ms)" "TERM:$(random_ms)" "INT2:$(random_ms)" "INT2:$(random_ms)")
run=1
killed=0
compared=0
lines() {  # the records in DIR/log.jsonl (0 without it)
  if [ -f "$1/log.jsonl" ]; then wc -l <"$1/log.jsonl"; else echo 0; fi
}
for p in "${points[@]}"; do
  kind=${p%%:*}
  tries=0
  while true; do
    tries=$((tries + 1))
    [ $tries -le 6 ] || fail "kill point $p: the run finished before its signal $((tries - 1)) times"
    dir=$work/run$run
    resume=()
    [ -f "$dir/ckpt_latest.safetensors" ] && resume=(--resume)
    if [ "$kind" = fault ]; then
      U2PL_FAULT=${p#fault:} train "$dir" "${resume[@]}"
    else
      ms=${p#*:}
      before=$(lines "$dir")
      train "$dir" "${resume[@]}"
      sleep "$(( ms / 1000 )).$(printf '%03d' $(( ms % 1000 )))"
      if [ "$kind" != KILL ]; then  # SIGTERM and SIGINT act once the handlers are in: a record is logged
        for _ in $(seq 3000); do
          [ "$(lines "$dir")" -gt "$before" ] || ! kill -0 $pid 2>/dev/null && break
          sleep 0.01
        done
      fi
      case $kind in
        KILL | TERM) kill -"$kind" $pid 2>/dev/null || true ;;
        INT2) kill -INT $pid 2>/dev/null && sleep 0.02 && kill -INT $pid 2>/dev/null || true ;;
      esac
    fi
    set +e
    wait $pid 2>/dev/null
    rc=$?
    set -e
    # SIGKILL: 137; SIGTERM's stop after the iteration and SIGINT's second signal: 130.
    if [ $rc = 137 ] || [ $rc = 130 ]; then
      killed=$((killed + 1))
      check_after_kill "$dir" "$killed ($p)"
      at=none
      [ -f "$dir/ckpt_latest.safetensors" ] && at=$(ckpt_iter "$dir/ckpt_latest.safetensors")
      echo "  kill $killed ($p, exit $rc): ckpt_latest at iteration $at of $total," \
        "$(lines "$dir") log lines"
      break
    fi
    # SIGTERM after the training loop, whose end restores the default handlers: exit 143 with the
    # last checkpoint and log record written, a run that finished before its signal.
    if [ $rc = 143 ] && [ "$kind" = TERM ] && [ -f "$dir/ckpt_latest.safetensors" ] &&
      [ "$(ckpt_iter "$dir/ckpt_latest.safetensors")" = "$total" ]; then rc=0; fi
    [ $rc = 0 ] || fail "kill point $p: exit $rc (expected 137 for SIGKILL, 130 for a stop by signal)"
    compare "$dir"  # it finished before the kill
    run=$((run + 1))
    [ -z "${resume[*]}" ] && [ "$kind" != fault ] && p=$kind:$(( ${p#*:} / 2 ))  # a whole run was quicker
  done
done
compare "$dir"

# Write failures: each stops the run (exit 1) with a message that names the file and the cause.
expect_error() {  # expect_error TEXT...: the last run's output holds each TEXT
  for t in "$@"; do grep -qF -- "$t" "$work/out.txt" || fail "no message '$t' after a write failure"; done
}
wf=$work/write_fail
# The file size limit (ulimit -f, in KiB) below a checkpoint: the previous checkpoint stays.
U2PL_FAULT=checkpoint:3 train "$wf"  # dies inside its third checkpoint write: ckpt_latest at iteration 6
wait $pid 2>/dev/null && fail "the fault hook did not end the run"
: >"$work/out.txt"
(ulimit -f 150 && exec "$apps/u2pl_train" --config "$work/config.yaml" --device cpu --run-dir "$wf" --resume) \
  >"$work/out.txt" 2>&1 && fail "a run past the file size limit did not fail"
expect_error "$wf/ckpt_" ": cannot write: File too large" "the previous file, if any, is unchanged"
echo "  file size limit: $(grep -m1 'File too large' "$work/out.txt")"
[ "$(ckpt_iter "$wf/ckpt_latest.safetensors")" = 6 ] || fail "ckpt_latest moved after a failed write"
[ "$(find "$wf" -name '*.tmp' | wc -l)" = 0 ] || fail "a failed write left a temporary file"
compare "$wf"  # the run goes on from the checkpoint kept, bit for bit
# The run directory removed, or replaced by a file, while the run writes to it.
for how in removed replaced; do
  rm -rf "$wf"
  : >"$work/out.txt"
  train "$wf"
  for _ in $(seq 6000); do [ "$(lines "$wf")" -ge 3 ] || ! kill -0 $pid 2>/dev/null && break; sleep 0.01; done
  [ "$(lines "$wf")" -ge 3 ] || fail "the run directory $how: no 3 log records within 60 s"
  rm -rf "$wf" 2>/dev/null || rm -rf "$wf"  # a file the run writes meanwhile can make the first pass fail
  [ $how = replaced ] && echo "not a folder" >"$wf"
  set +e
  wait $pid 2>/dev/null
  rc=$?
  set -e
  [ $rc = 1 ] || fail "the run directory $how: exit $rc, expected 1"
  case $how in
    removed) expect_error "$wf/log.jsonl: the file was removed while this run wrote it" ;;
    replaced) grep -qE "$wf/(log.jsonl: the file was removed|.*: Not a directory)" "$work/out.txt" ||
                fail "no message naming a file of the replaced run directory" ;;
  esac
  [ $how = removed ] || [ "$(cat "$wf")" = "not a folder" ] || fail "the file in place of the run directory changed"
  echo "  run directory $how: $(grep -m1 -E 'removed|Not a directory' "$work/out.txt")"
done
echo "kill_resume: ok ($killed kills survived, $compared runs finished bit for bit as the uninterrupted one," \
  "U2PL_KILL_SEED=$seed; a checkpoint past the file size limit, the run directory removed and replaced" \
  "stopped the run naming the file and the cause)"
