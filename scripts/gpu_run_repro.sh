#!/usr/bin/env bash
# Issue 13 item 1 on the GPU (reproducible sums of the CUDA E-step) in one device call:
#  1. the cost, alone on the GPU: bench_estep_cuda --reproducible on the Hopper modes (fast fp16,
#     accurate 2xfp16: accumulate() / accumulate() + one exact add / accumulate_reproducible() in one
#     process) at the shapes $SHAPES (default 0,13,1,4,11: 1M x 1024 x 128 spherical, 1M x 1024 x 64
#     diagonal (the Hopper kernels at 2d = 128), 1M x 1024 x 128 diagonal (wide fast kernel; accurate
#     runs Blocked), 1M x 4096 x 128 and 4M x 256 x 128 spherical), by the builds $OTHERS first (default
#     $BIN/bench_estep_cuda_base, the commit before, for a before/after in the same call; at $OTHER_SHAPES)
#     when they are there, then by this build;
#     then 20 EM iterations at 10M x 1024 x 128 (rows on the GPU) with accumulate() and with
#     accumulate_reproducible() (--em-reproducible: clear, call, result, host M-step; $EM_ARGS, default
#     with --em-no-refine: the Hopper path), by $OTHERS (when there) and this build; then, when nsys is
#     there and NSYS is not 0, the kernels of one reproducible call (fast, shape 0) by name;
#     bench_estep_cuda_full --reproducible at 1M x 1024 x 128 full covariances (block_bytes
#     $FULL_BLOCK_BYTES MiB, default 16,256) after bench_estep_cuda_full_base (256) when they are there;
#  2. side by side: test_estep_cuda_full (every case, ReproducibleBits among them: bits across 1/2/3
#     workers, chunk sizes, retained rows, pieces; when it is there), test_estep_cuda's Reproducible*
#     cases and $TESTS_EXTRA (a gtest filter, default the Hopper chunk / worker / sub-chunk cases) in
#     $SHARDS gtest shards, and compute-sanitizer $SANITIZERS (default memcheck racecheck) on
#     SanitizerReproducibleFull (when there) and SanitizerReproducible.
# Prebuilt binaries come from $BIN (default $D/bin; cmake -S gpu -B build-gpu -G Ninja
# -DFAISS_GMM_CUDA_ARCHITECTURES=90a, stripped). From a checkout without this branch, copy them and this
# script into an ignored folder:
#   run(command="bash .device-carry/gpu-repro4/scripts/gpu_run_repro.sh", carry=[".device-carry/gpu-repro4"])
# Logs go to $OUT; the exit status is 1 when anything failed.
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
summary() { grep -hE "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure$|Expected|Which is|^  Actual|bits" "$@" | cut -c1-220 | head -40; }
SHAPES=${SHAPES:-0,13,1,4,11}
# Other builds timed first, at $OTHER_SHAPES (default 0,13): $OTHERS (default the commit before).
OTHERS=${OTHERS:-bench_estep_cuda_base}
OTHER_SHAPES=${OTHER_SHAPES:-0,13}

benchmarks() {
  echo "== benchmarks (alone on the GPU)"
  for b in $OTHERS bench_estep_cuda; do
    [ -x "$BIN/$b" ] || continue
    shapes=$SHAPES; [ $b = bench_estep_cuda ] || shapes=$OTHER_SHAPES
    timeout ${BENCH_TIMEOUT:-90} "$BIN/$b" --no-stream --no-em --shapes "$shapes" --reproducible \
        --modes hopper-fast,hopper-accurate >"$OUT/$b.log" 2>&1 || rc=1
    echo "-- $b"; grep -E "^ *reproducible|^[0-9]+x" "$OUT/$b.log" | cut -c1-330
  done
  for b in $OTHERS bench_estep_cuda; do
    [ -x "$BIN/$b" ] || continue
    timeout ${BENCH_TIMEOUT:-90} "$BIN/$b" --no-stream --shapes 0 --modes hopper-fast ${EM_ARGS:---em-reproducible --em-no-refine} \
        >"$OUT/em_$b.log" 2>&1 || rc=1
    echo "-- EM $b"; grep -E "^EM|EStepCuda:" "$OUT/em_$b.log" | cut -c1-200 | head -6
  done
  if [ "${NSYS:-1}" = 1 ] && command -v nsys >/dev/null; then
    timeout 60 nsys profile -o "$OUT/repro_fast" --force-overwrite true "$BIN/bench_estep_cuda" --no-stream --no-em \
        --shapes 0 --reproducible --modes hopper-fast --reps 5 >"$OUT/nsys_run.log" 2>&1 &&
      nsys stats -q --report cuda_gpu_kern_sum,cuda_gpu_mem_time_sum --format csv "$OUT/repro_fast.nsys-rep" \
        >"$OUT/nsys_stats.csv" 2>&1
    echo "-- nsys (kernels, top by time)"; grep -vE "^\s*$" "$OUT/nsys_stats.csv" | cut -c1-200 | head -30
    rm -f "$OUT"/repro_fast.nsys-rep "$OUT"/repro_fast.sqlite
  fi
  for b in bench_estep_cuda_full_base bench_estep_cuda_full; do # (the base: default block_bytes only)
    [ -x "$BIN/$b" ] || continue
    bb=${FULL_BLOCK_BYTES:-16,256}; [ $b = bench_estep_cuda_full ] || bb=256
    timeout ${BENCH_TIMEOUT:-60} "$BIN/$b" --shapes 1000000x1024x128 --reps 3 --check-rows 0 \
        --modes fused-fast,fused-accurate --reproducible --block-bytes $bb >"$OUT/$b.log" 2>&1 || rc=1
    echo "-- $b"; grep -vE "^\s*$" "$OUT/$b.log" | cut -c1-330 | tail -12
  done
  echo "benchmarks: $(( $(date +%s) - t0 )) s"
}

tests() {
  echo "== tests and sanitizers, side by side"
  SHARDS=${SHARDS:-6}
  pids=()
  touch "$OUT/full.log"
  if [ -x "$BIN/test_estep_cuda_full" ]; then
    timeout ${TEST_TIMEOUT:-90} "$BIN/test_estep_cuda_full" >"$OUT/full.log" 2>&1 & pids+=($!)
  fi
  TESTS_EXTRA=${TESTS_EXTRA-*HopperChunks*:*HopperDiagonalChunks*:*HopperAccurateChunks*:*HopperSubChunks*:*SanitizerSmall}
  shard_tests test_estep_cuda "*Reproducible*${TESTS_EXTRA:+:$TESTS_EXTRA}-*SanitizerReproducible*" repro_shard \
      "${TEST_TIMEOUT:-180}"
  if [ -x "$BIN/test_model_encoding" ]; then
    "$BIN/test_model_encoding" --gtest_brief=1 >"$OUT/test_model_encoding.log" 2>&1 & pids+=($!)
  fi
  SAN_TIMEOUT=${SAN_TIMEOUT:-90}
  for tool in ${SANITIZERS:-memcheck racecheck}; do
    [ -x "$BIN/test_estep_cuda_full" ] && sanitize $tool test_estep_cuda_full '*SanitizerReproducibleFull'
    sanitize $tool test_estep_cuda '*SanitizerReproducible'
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  cat "$OUT"/repro_shard*.log >"$OUT/test_estep_cuda_repro.log"
  summary "$OUT/full.log" "$OUT/test_estep_cuda_repro.log" $(ls "$OUT"/test_model_encoding.log 2>/dev/null)
  grep -hE "^\[ +(OK|FAILED) " "$OUT/full.log" "$OUT/test_estep_cuda_repro.log" | cut -c1-120
  grep -hE "reproducible +rel\. error" "$OUT/full.log" | cut -c1-200 | head -12
  sanitizer_summary
}

# TESTS_FIRST=1: the tests first (a call cut by its time limit then still has them), the benchmarks after
# them, alone on the GPU all the same.
if [ "${TESTS_FIRST:-0}" = 1 ]; then tests; benchmarks; else benchmarks; tests; fi
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit $rc
