#!/usr/bin/env bash
# Issue 13 item 1 on the GPU (reproducible sums of the CUDA E-step) in one device call:
#  1. the cost, alone on the GPU: bench_estep_cuda --reproducible at 1M x 1024 x 128 spherical (Hopper
#     fast and accurate: accumulate() / accumulate() + one exact add / accumulate_reproducible() in one
#     process), by $BIN/bench_estep_cuda_base first when it is there (the commit before, for a
#     before/after in the same call), then by this build; bench_estep_cuda_full --reproducible at
#     1M x 1024 x 128 full covariances (fused fast and accurate; accumulate / + one exact add /
#     accumulate_reproducible) with block_bytes 16 MiB (groups of one 4096-row block) and 256 MiB (the
#     default: groups of 16 blocks), after $BIN/bench_estep_cuda_full_base (256 MiB) when it is there;
#  2. side by side: test_estep_cuda_full (every case, ReproducibleBits among them: bits across 1/2/3
#     workers, chunk sizes, retained rows, pieces), test_estep_cuda's Reproducible* cases in $SHARDS
#     gtest shards, host-only test_model_encoding, and compute-sanitizer memcheck + racecheck on
#     SanitizerReproducibleFull and memcheck on SanitizerReproducible.
# Prebuilt binaries come from $BIN (default $D/bin; cmake -S gpu -B build-gpu -G Ninja
# -DFAISS_GMM_CUDA_ARCHITECTURES=90a, stripped). From a checkout without this branch, copy them and this
# script into an ignored folder:
#   run(command="bash .device-carry/gpu-repro2/scripts/gpu_run_repro.sh", carry=[".device-carry/gpu-repro2"])
# Logs go to $OUT; the exit status is 1 when anything failed.
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
summary() { grep -hE "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure$|Expected|Which is|^  Actual|bits" "$@" | cut -c1-220 | head -40; }

echo "== benchmarks (alone on the GPU)"
for b in bench_estep_cuda_base bench_estep_cuda; do
  [ -x "$BIN/$b" ] || continue
  timeout ${BENCH_TIMEOUT:-40} "$BIN/$b" --no-stream --no-em --shapes 0 --reproducible \
      --modes hopper-fast,hopper-accurate >"$OUT/$b.log" 2>&1 || rc=1
  echo "-- $b"; grep -vE "^\s*$" "$OUT/$b.log" | cut -c1-330 | tail -8
done
for b in bench_estep_cuda_full_base bench_estep_cuda_full; do # (the base: default block_bytes only)
  [ -x "$BIN/$b" ] || continue
  bb=16,256; [ $b = bench_estep_cuda_full ] || bb=256
  timeout ${BENCH_TIMEOUT:-60} "$BIN/$b" --shapes 1000000x1024x128 --reps 3 --check-rows 0 \
      --modes fused-fast,fused-accurate --reproducible --block-bytes $bb >"$OUT/$b.log" 2>&1 || rc=1
  echo "-- $b"; grep -vE "^\s*$" "$OUT/$b.log" | cut -c1-330 | tail -12
done
echo "benchmarks: $(( $(date +%s) - t0 )) s"

echo "== tests and sanitizers, side by side"
SHARDS=${SHARDS:-6}
pids=()
timeout ${TEST_TIMEOUT:-90} "$BIN/test_estep_cuda_full" >"$OUT/full.log" 2>&1 & pids+=($!)
for i in $(seq 0 $((SHARDS - 1))); do
  GTEST_TOTAL_SHARDS=$SHARDS GTEST_SHARD_INDEX=$i timeout ${TEST_TIMEOUT:-90} "$BIN/test_estep_cuda" \
      --gtest_filter='*Reproducible*-*Sanitizer*' >"$OUT/repro_shard$i.log" 2>&1 &
  pids+=($!)
done
"$BIN/test_model_encoding" --gtest_brief=1 >"$OUT/test_model_encoding.log" 2>&1 & pids+=($!)
SAN_TIMEOUT=${SAN_TIMEOUT:-90}
sanitize memcheck test_estep_cuda_full '*SanitizerReproducibleFull'
sanitize racecheck test_estep_cuda_full '*SanitizerReproducibleFull'
sanitize memcheck test_estep_cuda '*SanitizerReproducible'
for p in "${pids[@]}"; do wait "$p" || rc=1; done
cat "$OUT"/repro_shard*.log >"$OUT/test_estep_cuda_repro.log"
summary "$OUT/full.log" "$OUT/test_estep_cuda_repro.log" "$OUT/test_model_encoding.log"
grep -hE "^\[ +(OK|FAILED) " "$OUT/full.log" "$OUT/test_estep_cuda_repro.log" | cut -c1-120
grep -hE "reproducible +rel\. error" "$OUT/full.log" | cut -c1-200 | head -12
sanitizer_summary
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit $rc
