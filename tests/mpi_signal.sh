#!/usr/bin/env bash
# CTest `mpi_signal`: SIGUSR1 to mpirun (which forwards it to every process) stops a two-process
# run after the current iteration, all processes together, with a checkpoint that loads: the run
# reports "stopped by signal", exits 130, and ckpt_latest holds an iteration before the end.
# Usage: mpi_signal.sh MPIRUN_COMMAND... -- APPS_DIR
set -euo pipefail
source "$(dirname "$0")/mpi_launch.sh"
write_config 500 False
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
iter=$(ckpt_iter "$work/run/ckpt_latest.safetensors")
[ -n "$iter" ] && [ "$iter" -gt 0 ] && [ "$iter" -lt 1000 ] ||
  { echo "mpi_signal: FAIL: ckpt_latest holds iteration '$iter'"; exit 1; }
echo "mpi_signal: ok (exit 130, both processes stopped at iteration $iter with a checkpoint)"
