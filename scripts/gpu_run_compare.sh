#!/usr/bin/env bash
# A change against its base in one device call: the benchmark of both builds interleaved
# ($ROUNDS rounds of base then new, in the same process order every round, so the two see the same
# machine state), then every test_estep_cuda case of the new build ($SHARDS gtest shards side by
# side; the slowest of 8 took 222 s on an H100 machine, hence 300 s each), then compute-sanitizer
# memcheck and racecheck on its SanitizerSmall case. The carried folder comes from
# scripts/gpu_carry_compare.sh (bin/base, bin/new, scripts/, shared/ for the Siftsmall case):
#   run(command="bash .device-carry/compare/scripts/gpu_run_compare.sh", carry=[".device-carry/compare"])
# Knobs (environment): BENCH_SHAPES (bench_estep_cuda --shapes, default 0,11,13), BENCH_MODES
# (default hopper-fast), BENCH_ARGS (more bench_estep_cuda flags, e.g. a build's launch scans; a build
# that does not know a flag ignores it), BENCH_TIMEOUT (per run, 90 s), ROUNDS (2), TEST_FILTER (gtest filter,
# default every case), SHARDS (8), TEST_TIMEOUT (300 s), TEST_BASE=1 (also test the base build),
# SAN_TIMEOUT (150 s). Logs go to $OUT; the exit status is 1 when anything failed.
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
: "${BENCH_SHAPES:=0,11,13}" "${BENCH_MODES:=hopper-fast}" "${BENCH_ARGS:=}" "${BENCH_TIMEOUT:=90}" "${ROUNDS:=2}"
: "${TEST_FILTER:=*}" "${SHARDS:=8}" "${TEST_TIMEOUT:=300}" "${SAN_TIMEOUT:=150}"
# Unpacked every call: a warm machine keeps the last call's bin/, which may be older builds.
[ -f "$D/bin.tgz" ] && tar xzf "$D/bin.tgz" -C "$D"
for v in base new; do
  [ -x "$D/bin/$v/bench_estep_cuda" ] || { echo "missing $D/bin/$v/bench_estep_cuda"; exit 1; }
done

read -ra bench_args <<<"$BENCH_ARGS"
echo "== bench: shapes $BENCH_SHAPES, modes $BENCH_MODES, flags '$BENCH_ARGS', $ROUNDS rounds"
for _ in $(seq 1 "$ROUNDS"); do
  for v in base new; do
    timeout "$BENCH_TIMEOUT" "$D/bin/$v/bench_estep_cuda" --no-stream --no-em --shapes "$BENCH_SHAPES" \
        --modes "$BENCH_MODES" "${bench_args[@]}" >>"$OUT/bench_$v.log" 2>&1 || rc=1
  done
done
for v in base new; do
  echo "-- $v"
  grep -E "^N=|device time|^    (hopper|h-accu) " "$OUT/bench_$v.log" | cut -c1-160 # (the scans: one line per value and mode)
done
echo "bench: $(( $(date +%s) - t0 )) s"

# run_tests BUILD: every selected case in $SHARDS shards; the summary line and any failure.
run_tests() {
  local v=$1 log=$OUT/test_estep_cuda_$1.log p
  pids=()
  shard_tests "$v/test_estep_cuda" "$TEST_FILTER" shard "$TEST_TIMEOUT" # $BIN/$v/test_estep_cuda
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  cat "$OUT"/shard*.log >"$log"
  rm -f "$OUT"/shard*.log
  # (gtest prints a failed or skipped case twice: when it ends, with its time, and in the summary.)
  local ended=' \([0-9]+ ms\)$'
  echo "== tests ($v): passed $(grep -cE "^\[       OK \].*$ended" "$log"), failed $(grep -cE "^\[  FAILED  \].*$ended" "$log"), skipped $(grep -cE "^\[  SKIPPED \].*$ended" "$log")"
  grep -hE "Failure|Expected|Which is|^  Actual|^\[  (FAILED  |SKIPPED )\].*$ended" "$log" | head -30
}
run_tests new
[ "${TEST_BASE:-0}" = 1 ] && run_tests base
echo "tests: $(( $(date +%s) - t0 )) s"

BIN=$D/bin/new # sanitize() runs $BIN/test_estep_cuda
pids=()
sanitize memcheck test_estep_cuda '*SanitizerSmall'
sanitize racecheck test_estep_cuda '*SanitizerSmall'
for p in "${pids[@]}"; do wait "$p" || rc=1; done
sanitizer_summary
echo "total: $(( $(date +%s) - t0 )) s, rc $rc"
exit "$rc"
