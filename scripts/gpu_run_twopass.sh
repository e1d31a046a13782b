#!/usr/bin/env bash
# Issue 16 item 2 (accurate mode above K = 1024 on Hopper: two passes with 2×fp16 products) on a GPU
# machine in one call: compute-sanitizer racecheck and memcheck on SanitizerSmall (accurate two passes at
# K = 1100, spherical and diagonal, odd tile counts), the tests of the new path (FILTER), then
# bench_estep_cuda's K scan (Blocked accurate = the path before, Hopper fast, Hopper accurate) and
# bench/gpu/bench_vs_research.py for the errors of every statistic against float64 (ours only unless
# RESEARCH names a folder with flash_gmm.py, flash_gmm_h100.py, flash_gmm_diag_h100.py: then empty
# stand-ins are imported and no research kernel runs).
# Prebuilt binaries in D/bin (test_estep_cuda, bench_estep_cuda, bench_estep_file; -DFAISS_GMM_CUDA_ARCHITECTURES=90a);
# D defaults to this script's folder/.. . From another checkout, copy into an ignored folder and run e.g.
#   run(command="bash .device-carry/gpu-twopass/scripts/gpu_run_twopass.sh", carry=[".device-carry/gpu-twopass"])
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
for tool in racecheck memcheck; do
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 3 "$BIN/test_estep_cuda" --gtest_filter='*SanitizerSmall' \
      >"$OUT/sanitizer_$tool.log" 2>&1
  r=$?; [ $r = 0 ] || rc=1
  echo "$tool SanitizerSmall: exit $r; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED' "$OUT/sanitizer_$tool.log" | tr '\n' ' ')"
  [ $r = 0 ] || grep -E "^=========" "$OUT/sanitizer_$tool.log" | head -12
done
FILTER=${FILTER:-'*HopperAccurateTwoPass*:*HopperMemoryStaysSmall*:*HopperFallsBack*:*ReproducibleBitsHopperAccurateTwoPass*:*SanitizerReproducible*:*ZZSummary*'}
echo "== test_estep_cuda ($FILTER)"
timeout ${TEST_T:-300} "$BIN/test_estep_cuda" --gtest_filter="$FILTER" >"$OUT/test.log" 2>&1 || rc=1
grep -E "max relative|^\[ +(PASSED|FAILED|OK) |^\[  FAILED  \]|Failure|Expected|two-pass|two passes" "$OUT/test.log" | cut -c1-230 | head -60
echo "tests: $(( $(date +%s) - t0 )) s"
echo "== bench_estep_cuda: 1M x 1024, 4M x 256, 1M x 4096, 1M x 16384, 1M x 65536 (d = 128, spherical)"
"$BIN/bench_estep_cuda" --no-stream --no-em --shapes ${SHAPES:-0,11,4,12,5} --modes accurate,hopper-fast,hopper-accurate \
    >"$OUT/bench.log" 2>&1 || rc=1
grep -E "^N=|device time|loglik" "$OUT/bench.log" | cut -c1-240
echo "== errors against float64 (bench_vs_research.py)"
KERNELS=${RESEARCH:-}
if [ -z "$KERNELS" ]; then
  KERNELS=$OUT/no_research; mkdir -p "$KERNELS"
  for m in flash_gmm flash_gmm_h100 flash_gmm_diag_h100; do : >"$KERNELS/$m.py"; done
  RARGS='--research-rows ""'
fi
eval python3 "$D/bench/gpu/bench_vs_research.py" --kernels "$KERNELS" --ours "$BIN/bench_estep_file" \
    --rows ${ROWS:-sph:1000000:4096:128,sph:1000000:16384:128,sph:1000000:65536:128} ${RARGS:-} \
    --blocked-rows '""' --fast-only-rows '""' --out "$OUT/bench_vs_research.md" >"$OUT/bench_vs_research.log" 2>&1 || rc=1
grep -E "^\||ours" "$OUT/bench_vs_research.log" | cut -c1-300
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit $rc
