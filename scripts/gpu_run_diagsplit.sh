#!/usr/bin/env bash
# Issue 16 item 1 (accurate mode for diagonal models with 64 < d ≤ 128 on Hopper: the 32-row
# two-pass kernels of gpu/detail/Sm90DiagSplitKernels.cuh) on a GPU machine in one call:
#   compute-sanitizer racecheck and memcheck on SanitizerSmall (its accurate diagonal d = 100 cases,
#   K = 130 and 1100), in the background while the tests run in three processes (TEST_T seconds each):
#   the new path's tests, the diagonal suites that now route accurate d > 64 to it, reproducible bits;
#   bench_estep_cuda on the diagonal shapes (SHAPES; "accurate" = Blocked fp32, the path before, in the
#   same process); bench/gpu/bench_vs_research.py for the errors of every statistic against float64 on
#   1M rows (ours only unless RESEARCH names a folder with flash_gmm.py, flash_gmm_h100.py,
#   flash_gmm_diag_h100.py and RESEARCH_ROWS the rows that time them; VS=0: skipped); last, ncu of the fast wide kernel
#   and of the new kernels (NCU=0: skipped).
# Prebuilt binaries in D/bin (test_estep_cuda, test_model_encoding, bench_estep_cuda, bench_estep_file;
# -DFAISS_GMM_CUDA_ARCHITECTURES=90a); D defaults to this script's folder/.. . From another checkout, copy
# into an ignored folder and run e.g.
#   run(command="bash .device-carry/gpu-diag3/scripts/gpu_run_diagsplit.sh", carry=[".device-carry/gpu-diag3"])
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
pids=()
SAN_TIMEOUT=${SAN_TIMEOUT:-150}
sanitize racecheck test_estep_cuda '*SanitizerSmall'
sanitize memcheck test_estep_cuda '*SanitizerSmall'
echo "== host-only: test_model_encoding"
"$BIN/test_model_encoding" --gtest_brief=1 >"$OUT/test_model_encoding.log" 2>&1 || rc=1
tail -2 "$OUT/test_model_encoding.log"
run_tests() { # name filter
  timeout "${TEST_T:-200}" "$BIN/test_estep_cuda" --gtest_filter="$2" >"$OUT/test_$1.log" 2>&1
  echo "$1: exit $?" >"$OUT/test_$1.rc"
}
run_tests wide '*HopperDiagonalAccurateWide*:*HopperFallsBack*' &
run_tests diag '*HopperDiagonalRandomShapes*:*HopperDiagonalChunks*' &
run_tests repro '*ReproducibleBitsHopperDiagonal*:*SanitizerReproducible*' &
wait $(jobs -p | grep -vE "^($(IFS='|'; echo "${pids[*]}"))$")
for f in "$OUT"/test_*.rc; do
  cat "$f"; grep -q "exit 0" "$f" || rc=1
  log=${f%.rc}.log
  grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|^\[       OK \]|Failure|Expected|Which is" "$log" | cut -c1-200 | head -20
done
grep -hE "accurate diagonal|2xfp16 d=128|diagonal accurate" "$OUT"/test_*.log | cut -c1-220 | head -60
echo "tests: $(( $(date +%s) - t0 )) s"
wait "${pids[@]}"
sanitizer_summary
grep -q "RACECHECK SUMMARY: 0 hazards" "$OUT"/san_racecheck_*.log && grep -q "ERROR SUMMARY: 0 errors" "$OUT"/san_memcheck_*.log || rc=1
echo "sanitizers: $(( $(date +%s) - t0 )) s"
echo "== bench_estep_cuda: diagonal 1M x {1024, 4096} x {128, 96, 64} (accurate = Blocked fp32, the path before)"
timeout "${BENCH_T:-150}" "$BIN/bench_estep_cuda" --no-stream --no-em --shapes "${SHAPES:-1,10,13,14,15,16}" \
    --modes accurate,hopper-fast,hopper-accurate >"$OUT/bench.log" 2>&1 || rc=1
grep -E "^N=|device time|loglik" "$OUT/bench.log" | cut -c1-240
echo "bench: $(( $(date +%s) - t0 )) s"
if [ "${VS:-1}" = 1 ]; then
  echo "== errors against float64 (bench_vs_research.py)"
  KERNELS=${RESEARCH:-}
  if [ -z "$KERNELS" ]; then
    KERNELS=$OUT/no_research; mkdir -p "$KERNELS"
    for m in flash_gmm flash_gmm_h100 flash_gmm_diag_h100; do : >"$KERNELS/$m.py"; done
  fi
  timeout "${VS_T:-200}" python3 "$D/bench/gpu/bench_vs_research.py" --kernels "$KERNELS" --ours "$BIN/bench_estep_file" \
      --rows "${ROWS:-diag:1000000:1024:128,diag:1000000:1024:96,diag:1000000:4096:128}" \
      --research-rows "${RESEARCH_ROWS:-}" --research-kernels diag --blocked-rows "" --fast-only-rows "" \
      --out "$OUT/bench_vs_research.md" >"$OUT/bench_vs_research.log" 2>&1 || rc=1
  grep -E "^\||ours|rror" "$OUT/bench_vs_research.log" | cut -c1-300 | head -30
fi
if [ "${NCU:-1}" = 1 ] && command -v ncu >/dev/null; then
  echo "== ncu: fast wide kernel (diag 1M x 1024 x 128), then the accurate diagonal kernels"
  SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats --section SchedulerStats --section LaunchStats"
  timeout "${NCU_T:-60}" ncu $SECTIONS -k regex:estep_split_kernel --launch-skip 0 --launch-count 1 \
      "$BIN/bench_estep_cuda" --no-stream --no-em --shapes 1 --modes hopper-fast --reps 1 >"$OUT/ncu_fast.log" 2>&1
  echo "ncu fast: exit $?"
  timeout "${NCU_T:-60}" ncu $SECTIONS -k regex:dsplit --launch-skip 0 --launch-count 3 \
      "$BIN/bench_estep_cuda" --no-stream --no-em --shapes 1 --modes hopper-accurate --reps 1 >"$OUT/ncu_accurate.log" 2>&1
  echo "ncu accurate: exit $?"
  grep -E "^  [a-z_:<>0-9, ]+\(|Duration|Compute \(SM\) Throughput|Memory Throughput|L1/TEX Cache Throughput|L2 Cache Throughput|DRAM Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Stall|Shared Memory Configuration|Executed Ipc" \
      "$OUT"/ncu_*.log | cut -c1-200 | head -90
  echo "ncu: $(( $(date +%s) - t0 )) s"
fi
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit $rc
