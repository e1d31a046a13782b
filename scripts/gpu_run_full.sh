#!/usr/bin/env bash
# Issue 17 (full covariances on the GPU) on a GPU machine in one call: the full-covariance GPU tests
# (test_estep_cuda_full, ~10 s on an H100), with EXISTING=1 the existing GPU suite too (test_estep_cuda,
# ~140 s), compute-sanitizer memcheck and racecheck on SanitizerFull, then the benchmark at
# 1M x 1024 x 128 (bench_estep_cuda_full: accurate and fast, errors against float64) and the research
# full kernel on the same recipe in the same call (bench/gpu/bench_flash_gmm_full.py with
# flash_gmm_full_h100.py from D/flash, never committed). Prebuilt binaries come from D/bin
# (cmake -S gpu -B build-gpu -G Ninja -DFAISS_GMM_CUDA_ARCHITECTURES=90a). From a checkout without
# this branch, copy the binaries (bin/), this script (scripts/) and bench/gpu/bench_flash_gmm{,_full}.py
# (bench/gpu/) into an ignored folder D, e.g.
#   run(command="bash .device-carry/gpu-full/scripts/gpu_run_full.sh", carry=[".device-carry/gpu-full"])
# STAGES (default "test sanitizer bench research") selects stages; "test sanitizer" takes ~25 s.
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
STAGES=${STAGES:-test sanitizer bench research}
for stage in $STAGES; do
  case $stage in
    test)
      echo "== test_estep_cuda_full"
      "$BIN/test_estep_cuda_full" >"$OUT/test_full.log" 2>&1 || rc=1
      grep -E "^  |^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure|bound|Expected|Which is" "$OUT/test_full.log" \
          | cut -c1-230 | head -70
      if [ "${EXISTING:-0}" = 1 ] && [ -x "$BIN/test_estep_cuda" ]; then
        echo "== test_estep_cuda (the existing suite)"
        "$BIN/test_estep_cuda" >"$OUT/test.log" 2>&1 || rc=1
        grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure" "$OUT/test.log" | cut -c1-200 | head -20
      fi
      echo "tests: $(( $(date +%s) - t0 )) s" ;;
    sanitizer)
      for tool in memcheck racecheck; do
        compute-sanitizer --tool $tool --error-exitcode 3 "$BIN/test_estep_cuda_full" \
            --gtest_filter='EStepCudaFull.SanitizerFull' >"$OUT/sanitizer_$tool.log" 2>&1
        r=$?; [ $r = 0 ] || rc=1
        echo "$tool SanitizerFull: exit $r; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED' "$OUT/sanitizer_$tool.log" | tr '\n' ' ')"
        [ $r = 0 ] || grep -E "^=========" "$OUT/sanitizer_$tool.log" | head -12
      done
      echo "sanitizers: $(( $(date +%s) - t0 )) s" ;;
    bench)
      echo "== bench_estep_cuda_full ${FULL_ARGS:-}"
      "$BIN/bench_estep_cuda_full" ${FULL_ARGS:-} 2>&1 | tee "$OUT/bench_full.log" || rc=1
      echo "bench: $(( $(date +%s) - t0 )) s" ;;
    research)
      if [ -f "$D/flash/flash_gmm_full_h100.py" ]; then
        echo "== research full kernel (IBM/Flash-GMM flash_gmm_full_h100.py), same recipe"
        PYTHONUNBUFFERED=1 timeout ${RESEARCH_TIMEOUT:-240} python3 "$D/bench/gpu/bench_flash_gmm_full.py" \
            --kernels "$D/flash" ${RESEARCH_ARGS:-} 2>&1 | tee "$OUT/bench_research.log" | grep -vE "^\s*$" | tail -15
        [ "${PIPESTATUS[0]}" = 0 ] || rc=1
      fi
      echo "research: $(( $(date +%s) - t0 )) s" ;;
  esac
done
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit $rc
