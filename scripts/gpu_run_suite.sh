#!/usr/bin/env bash
# The merged tree's GPU checks in one device call: every GPU test binary (test_estep_cuda in
# $SHARDS gtest shards run side by side, 8 by default: its float64 references and bounds are CPU work;
# 4 shards of 150 s did not finish it on a 16-core H100 machine; with 8, its slowest shard took 222 s on
# 2026-12-07, hence 300 s per binary), compute-sanitizer
# memcheck and racecheck on the Sanitizer* cases of each binary, then the main benchmark shape
# (1M x 1024: spherical d = 128 and diagonal d = 64, 128, Hopper fast / accurate with ordinary and reproducible
# sums; 20 EM iterations at 10M rows with both; 4M x 256 and 1M x 16384 spherical; diagonal d = 128, 96 at
# K = 1024 and d = 128 at K = 4096 against Blocked fp32; full covariances fused fast / accurate, reproducible too). Prebuilt binaries come from $BIN (built
# here with -DFAISS_GMM_CUDA_ARCHITECTURES="80;90a"), siftsmall from $D/shared/datasets/siftsmall:
#   run(command="bash .device-carry/suite/scripts/gpu_run_suite.sh", carry=[".device-carry/suite"])
# Logs go to $OUT (the device tool's folder); the exit status is 1 when anything failed.
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
summary() { grep -hE "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure$|Expected|Which is|^  Actual" "$@" | cut -c1-200 | head -40; }

echo "== host-only: test_model_encoding, test_full_model_encoding"
for t in test_model_encoding test_full_model_encoding; do
  "$BIN/$t" --gtest_brief=1 >"$OUT/$t.log" 2>&1 || rc=1
  summary "$OUT/$t.log"
done

SHARDS=${SHARDS:-8}
echo "== test_estep_cuda ($SHARDS shards), test_estep_cuda_exact, test_estep_cuda_full, side by side"
pids=()
shard_tests test_estep_cuda '-*ZZSummary' shard "${TEST_TIMEOUT:-300}"
timeout ${TEST_TIMEOUT:-300} "$BIN/test_estep_cuda_exact" >"$OUT/exact.log" 2>&1 & pids+=($!)
timeout ${TEST_TIMEOUT:-300} "$BIN/test_estep_cuda_full" >"$OUT/full.log" 2>&1 & pids+=($!)
for p in "${pids[@]}"; do wait "$p" || rc=1; done
cat "$OUT"/shard*.log >"$OUT/test_estep_cuda.log"
summary "$OUT/test_estep_cuda.log" "$OUT/exact.log" "$OUT/full.log"
grep -hE "^\[ +(OK|FAILED) " "$OUT/test_estep_cuda.log" "$OUT/exact.log" "$OUT/full.log" | awk '{print $2}' | sort | uniq -c
echo "tests: $(( $(date +%s) - t0 )) s"

echo "== compute-sanitizer (memcheck and racecheck, side by side)"
pids=()
SAN_TIMEOUT=${SAN_TIMEOUT:-100}
sanitize memcheck test_estep_cuda '*SanitizerSmall'
sanitize racecheck test_estep_cuda '*SanitizerSmall'
sanitize memcheck test_estep_cuda '*SanitizerReproducible'
sanitize racecheck test_estep_cuda '*SanitizerReproducible'
sanitize memcheck test_estep_cuda_exact '*SanitizerExact'
sanitize memcheck test_estep_cuda_full '*SanitizerFull'
sanitize racecheck test_estep_cuda_full '*SanitizerFull'
sanitize memcheck test_estep_cuda_full '*SanitizerReproducibleFull'
sanitize racecheck test_estep_cuda_full '*SanitizerReproducibleFull'
for p in "${pids[@]}"; do wait "$p" || rc=1; done
sanitizer_summary
echo "tests + sanitizers: $(( $(date +%s) - t0 )) s"

if [ "${BENCH:-1}" = 1 ]; then
  echo "== bench_estep_cuda: 1M x 1024 spherical d = 128, diagonal d = 64 and 128 (shapes 0, 13, 1), ordinary and reproducible sums"
  timeout 60 "$BIN/bench_estep_cuda" --no-stream --no-em --shapes 0,13,1 --reproducible --modes hopper-fast,hopper-accurate \
      2>&1 | tee "$OUT/bench_sph.log" | grep -vE "^\s*$" | tail -24 || rc=1
  echo "== bench_estep_cuda: 20 EM iterations at 10M x 1024 x 128, accumulate() and accumulate_reproducible() (Hopper path: no refinement)"
  timeout 90 "$BIN/bench_estep_cuda" --no-stream --shapes 0 --modes hopper-fast --em-reproducible --em-no-refine \
      >"$OUT/bench_em.log" 2>&1 || rc=1
  grep -E "^EM" "$OUT/bench_em.log"
  echo "== bench_estep_cuda: spherical 4M x 256 and 1M x 16384 x 128 (shapes 11, 12: one pass at small K, two passes)"
  timeout 60 "$BIN/bench_estep_cuda" --no-stream --no-em --shapes 11,12 --modes hopper-fast,hopper-accurate \
      2>&1 | tee "$OUT/bench_k.log" | grep -vE "^\s*$" | tail -8 || rc=1
  echo "== bench_estep_cuda: diagonal 1M x 1024 x {128, 96}, 1M x 4096 x 128 (shapes 1, 10, 14; accurate = Blocked fp32)"
  timeout 90 "$BIN/bench_estep_cuda" --no-stream --no-em --shapes 1,10,14 --modes accurate,hopper-fast,hopper-accurate \
      2>&1 | tee "$OUT/bench_diag.log" | grep -vE "^\s*$" | tail -24 || rc=1
  echo "== bench_estep_cuda_full: 1M x 1024 x 128"
  timeout 60 "$BIN/bench_estep_cuda_full" --reps 3 --shapes 1000000x1024x128 --reproducible 2>&1 | tee "$OUT/bench_full.log" | tail -8 || rc=1
fi
echo "total: $(( $(date +%s) - t0 )) s, rc $rc"
# Every log in one archive (the device tool brings back at most 8 files).
(cd "$OUT" && tar czf /tmp/gpu_suite_logs.tgz ./*.log machine.txt && rm -f ./*.log && mv /tmp/gpu_suite_logs.tgz .)
exit $rc
