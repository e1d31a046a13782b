#!/usr/bin/env bash
# The wgmma full-covariance kernel (gpu/detail/FullHopperKernel.cuh, issue 17; record:
# bench/results/gpu_full_covariance.md, "Now (2026-12-07)"), ~120 s on an H100:
#  1. test_estep_cuda_full: on a Hopper GPU all_paths() adds the wgmma kernel (fast and accurate), and
#     HopperColumnGroupsWithinTheBound runs its column groups 0/32/64/128 at DP = 32…128;
#  2. the time of accumulate() at 1M x 1024 x 128 and 1M x 256 x 64, the mma.sync kernel (fused-*)
#     against the wgmma one (sm90-*, the default on Hopper) with column groups 0 (default) and 64,
#     and errors against float64 on 256 rows;
#     then the reproducible sums (accumulate_reproducible) against them on the wgmma path;
#  3. ncu's per-kernel split of one fast call (wgmma path) at 262144 x 1024 x 128;
#  4. the research kernel (IBM/Flash-GMM flash_gmm_full_h100.py, carried in $D/flash, never committed) on
#     the same recipe at 1M x 1024 x 128 (bench/gpu/bench_flash_gmm_full.py, copied into $D/bench/gpu);
#  5. compute-sanitizer memcheck and racecheck on EStepCudaFull.SanitizerFull (all paths).
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
timeout 150 "$BIN/bench_estep_cuda_full" --shapes 1000000x1024x128,1000000x256x64 --reps 3 --check-rows 256 --groups 0,64 \
    --modes "$M" 2>&1 | tee "$OUT/full_wall.log"
# the reproducible sums' cost on the new default path (issue 13: bench/results/gpu_reproducible_sums.md)
timeout 120 "$BIN/bench_estep_cuda_full" --shapes 1000000x1024x128 --reps 3 --check-rows 0 --reproducible \
    --modes sm90-fast,sm90-accurate 2>&1 | tee "$OUT/full_repro.log"
if [ $trc != 124 ] && command -v ncu >/dev/null; then
  timeout 70 ncu --metrics gpu__time_duration.sum --print-summary per-kernel "$BIN/bench_estep_cuda_full" \
      --shapes 262144x1024x128 --reps 1 --check-rows 0 --modes sm90-fast >"$OUT/ncu_full_sm90_fast.log" 2>&1
  echo "ncu: exit $?"
  grep -E "^  [a-zA-Z_]|gpu__time_duration" "$OUT/ncu_full_sm90_fast.log" | cut -c1-200 | head -40
fi
if [ -d "$D/flash" ] && [ "${RESEARCH:-1}" = 1 ]; then # the research kernel, same recipe, same call
  PYTHONUNBUFFERED=1 timeout 150 python3 "$D/bench/gpu/bench_flash_gmm_full.py" --kernels "$D/flash" \
      --shapes 1000000x1024x128 2>&1 | tee "$OUT/bench_research.log" | grep -vE "^\s*$" | tail -6
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
