#!/usr/bin/env bash
# Issue 16 (diagonal covariances on the Hopper path, the K scan) on a GPU machine in one call:
# the host-only encoding tests, the GPU suites (STAGE=check: the Hopper, Sanitizer, Sm90 and
# Siftsmall tests of test_estep_cuda, the diagonal ones among them; STAGE=final: SanitizerSmall,
# HopperFallsBack, Siftsmall, Sm90; test_estep_cuda_exact: the refinement routing),
# compute-sanitizer memcheck and racecheck on SanitizerSmall (which runs the wide kernel, the
# diagonal two-pass path and the accurate kernel on diagonal models), then the benchmark:
#   STAGE=check: bench_estep_cuda on the diagonal shapes (Blocked TF32 before, Hopper fast and accurate now);
#   STAGE=tests: no benchmark;
#   STAGE=final: bench/gpu/bench_vs_research.py: ours and the research kernels of IBM/Flash-GMM on the
#                same device-resident rows, errors against float64 (needs torch + triton and the
#                research files in D/research: flash_gmm.py, flash_gmm_h100.py, flash_gmm_diag_h100.py).
# Prebuilt binaries come from D/bin (cmake -S gpu -B build-gpu -G Ninja -DFAISS_GMM_CUDA_ARCHITECTURES=90a;
# test_model_encoding, test_estep_cuda, test_estep_cuda_exact, bench_estep_cuda, bench_estep_file),
# siftsmall from D/shared/datasets/siftsmall; D defaults to this script's folder/.. . From a checkout
# without this branch, copy them into an ignored folder, e.g.
#   run(command="bash .device-carry/gpu-diag/scripts/gpu_run_diag.sh", carry=[".device-carry/gpu-diag"])
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
STAGE=${STAGE:-check}
echo "== host-only: test_model_encoding"
"$BIN/test_model_encoding" --gtest_brief=1 2>&1 | tail -3
# STAGE=final re-runs the quick ones only (the kernels are those STAGE=check tested; FILTER overrides).
if [ "$STAGE" = check ]; then FILTER=${FILTER:-'*Hopper*:*Sanitizer*:*Sm90*:*Siftsmall*'}
else FILTER=${FILTER:-'*SanitizerSmall*:*HopperFallsBack*:*Siftsmall*:*Sm90*'}; fi
echo "== test_estep_cuda ($FILTER)"
"$BIN/test_estep_cuda" --gtest_filter="$FILTER" >"$OUT/test.log" 2>&1 || rc=1
grep -E "max relative|^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure|Expected|Which is|actual" "$OUT/test.log" \
    | cut -c1-200 | head -40
grep -E "diagonal|siftsmall" "$OUT/test.log" | sort -t= -k1,1 | cut -c1-200 | head -80
echo "== test_estep_cuda_exact"
"$BIN/test_estep_cuda_exact" >"$OUT/test_exact.log" 2>&1 || rc=1
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure" "$OUT/test_exact.log" | head -10
echo "tests: $(( $(date +%s) - t0 )) s"
echo "== compute-sanitizer (SANITIZERS='${SANITIZERS-memcheck racecheck}')"
for tool in ${SANITIZERS-memcheck racecheck}; do
  compute-sanitizer --tool $tool --error-exitcode 3 "$BIN/test_estep_cuda" --gtest_filter='*SanitizerSmall' \
      >"$OUT/sanitizer_$tool.log" 2>&1
  r=$?; [ $r = 0 ] || rc=1
  echo "$tool SanitizerSmall: exit $r; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED' "$OUT/sanitizer_$tool.log" | tr '\n' ' ')"
  [ $r = 0 ] || grep -E "^=========" "$OUT/sanitizer_$tool.log" | head -12
done
echo "sanitizers: $(( $(date +%s) - t0 )) s"
if [ "$STAGE" = check ]; then
  echo "== bench_estep_cuda: diagonal d = 128, 96, 64 (Blocked TF32 = the path before; Hopper fast, accurate)"
  "$BIN/bench_estep_cuda" --no-stream --no-em --shapes 1,10,13 --modes fast-tf32,hopper-fast,hopper-accurate \
      >"$OUT/bench.log" 2>&1 || rc=1
  grep -vE "^\s*$" "$OUT/bench.log" | cut -c1-240 | tail -8
elif [ "$STAGE" = final ]; then
  echo "== bench_vs_research"
  python3 "$D/bench/gpu/bench_vs_research.py" --kernels "$D/research" --ours "$BIN/bench_estep_file" \
      --out "$OUT/bench_vs_research.md" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_vs_research.log" | grep -v "^\s*$" | tail -40
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
fi
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit $rc
