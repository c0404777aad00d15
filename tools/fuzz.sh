#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (issue 15): builds them with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer in build-fuzz/, runs each for SECONDS and prints, per target, the
# executions, the coverage (edges and features libFuzzer counts), the corpus and the findings.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]    (default: 60 seconds, every target)
#
# Each target works on runs/fuzz/<target>/corpus (U2PL_FUZZ_DIR replaces runs/fuzz), seeded from
# fuzz/corpus/<target>/ and kept, so a later run goes on from what an earlier one found. A finding
# (crash, sanitizer report, leak, timeout, out-of-memory, uncaught exception) stops its target and
# leaves the input in runs/fuzz/<target>/findings/ (where earlier runs' findings stay, uncounted)
# and the report in runs/fuzz/<target>/log.txt;
# rerun it with: build-fuzz/fuzz/fuzz_<target> FILE. U2PL_FUZZ_JOBS targets run side by side
# (default 1). Exit status: 0 when no target found anything, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "tools/fuzz.sh: SECONDS must be a positive integer, got '$seconds'" >&2; exit 2; }
shift || true
all=(safetensors checkpoint train_config net_config image split cityscapes)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "tools/fuzz.sh: no target '$t' (targets: ${all[*]})" >&2; exit 2; }
done
jobs=${U2PL_FUZZ_JOBS:-1}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "tools/fuzz.sh: U2PL_FUZZ_JOBS must be a positive integer" >&2; exit 2; }
out=${U2PL_FUZZ_DIR:-runs/fuzz}
command -v clang++ > /dev/null || { echo "tools/fuzz.sh: clang++ not found (Debian: clang libclang-rt-dev libomp-dev; tools/install_deps.sh installs them)" >&2; exit 2; }

echo "== fuzz build (clang, ASan + UBSan + libFuzzer) in build-fuzz/"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DU2PL_CUDA=OFF \
  -DU2PL_FUZZ=ON -DBUILD_TESTING=OFF > /dev/null
cmake --build build-fuzz --target u2pl_fuzz -j "$(nproc)"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tools/lsan.supp U2PL_QUIET=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
run_one() {
  local t=$1 dir="$out/$1"
  mkdir -p "$dir/corpus" "$dir/findings"
  touch "$dir/started"  # findings of earlier runs stay in findings/ but are not this run's
  # -timeout: one input over 10 s is a hang; -rss_limit_mb: a run over 2 GiB is a finding.
  local rc=0
  timeout $((seconds + 120)) "build-fuzz/fuzz/fuzz_$t" "$dir/corpus" "fuzz/corpus/$t" -max_total_time="$seconds" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$dir/findings/" > "$dir/log.txt" 2>&1 || rc=$?
  echo "$rc" > "$dir/rc"
}
echo "== $seconds s per target, $jobs at a time: ${targets[*]} (logs in $out/<target>/log.txt)"
running=0
for t in "${targets[@]}"; do
  rm -f "$out/$t/rc"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
found=0
printf '\n| target | executions | exec/s | coverage (edges) | features | corpus | findings |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for t in "${targets[@]}"; do
  rc=$(cat "$out/$t/rc" 2> /dev/null || echo "?")
  log="$out/$t/log.txt"
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  # The last status line: "#N <event> cov: E ft: F corp: U/S ...".
  last=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+) .*/\1/p' <<< "$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+) .*/\1/p' <<< "$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<< "$last")
  n=$(find "$out/$t/findings" -type f -newer "$out/$t/started" \( -name 'crash-*' -o -name 'leak-*' \
         -o -name 'timeout-*' -o -name 'oom-*' \) 2> /dev/null | wc -l || true)
  if [ "$rc" != 0 ] && [ "$n" -eq 0 ]; then n="exit $rc"; fi
  [ "$n" != 0 ] && found=1
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$n"
done
if [ "$found" -ne 0 ]; then
  echo "tools/fuzz.sh: findings (inputs in $out/<target>/findings/, reports in $out/<target>/log.txt)" >&2
  exit 1
fi
echo "tools/fuzz.sh: no findings"
