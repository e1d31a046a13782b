#!/usr/bin/env bash
# The first GPU call of the opt-in wgmma full-covariance kernel (gpu/detail/FullHopperKernel.cuh, issue 17;
# bench/results/gpu_full_covariance.md, "The wgmma kernel"), ~300 s on an H100:
#  1. test_estep_cuda_full: on a Hopper GPU all_paths() adds the wgmma kernel (fast and accurate), and
#     HopperColumnGroupsWithinTheBound runs its column groups 0/32/64/128 at DP = 32…128;
#  2. the time of accumulate() at 1M x 1024 x 128, the default mma.sync kernel (fused-*) against the wgmma one
#     (sm90-*) with each column grouping, and errors against float64 on 256 rows;
#  3. ncu's per-kernel split of one fast call of the wgmma path (where the rest of the 154 ms goes);
#  4. compute-sanitizer memcheck and racecheck on EStepCudaFull.SanitizerFull (all paths).
# Prebuilt binaries in $BIN (test_estep_cuda_full, bench_estep_cuda_full; CUDA architectures with 90a):
#   run(command="mkdir -p /tmp/b && tar xzf .device-carry/full/bin.tgz -C /tmp/b && BIN=/tmp/b \
#       bash .device-carry/full/scripts/gpu_run_full_sm90.sh", carry=[".device-carry/full"])
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the machine line, rc, t0, sanitize
timeout 100 "$BIN/test_estep_cuda_full" >"$OUT/test_full.log" 2>&1; trc=$?; echo "test_estep_cuda_full: exit $trc"
[ $trc = 0 ] || rc=1
grep -E "^\[  (PASSED|FAILED)|FAILED  \]|Failure" "$OUT/test_full.log" | cut -c1-220 | head -40
grep -E "wgmma" "$OUT/test_full.log" | cut -c1-200 | head -20
M="fused-fast,fused-accurate,sm90-fast,sm90-accurate"
[ $trc = 124 ] && M="fused-fast,fused-accurate" # (a hang: only the default kernel's figures)
timeout 100 "$BIN/bench_estep_cuda_full" --shapes 1000000x1024x128 --reps 3 --check-rows 256 --groups 0,32,64,128 \
    --modes "$M" 2>&1 | tee "$OUT/full_wall.log"
if [ $trc != 124 ] && command -v ncu >/dev/null; then
  timeout 70 ncu --metrics gpu__time_duration.sum --print-summary per-kernel "$BIN/bench_estep_cuda_full" \
      --shapes 262144x1024x128 --reps 1 --check-rows 0 --modes sm90-fast >"$OUT/ncu_full_sm90_fast.log" 2>&1
  echo "ncu: exit $?"
  grep -E "^  [a-zA-Z_]|gpu__time_duration" "$OUT/ncu_full_sm90_fast.log" | cut -c1-200 | head -40
fi
pids=()
if [ $trc != 124 ]; then
  SAN_TIMEOUT=90 sanitize memcheck test_estep_cuda_full '*SanitizerFull'
  SAN_TIMEOUT=90 sanitize racecheck test_estep_cuda_full '*SanitizerFull'
fi
wait "${pids[@]}" 2>/dev/null
sanitizer_summary
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit "$rc"
