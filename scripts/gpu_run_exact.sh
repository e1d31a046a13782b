#!/usr/bin/env bash
# Issue 13 item 4 (exact log-densities on the GPU) on a GPU machine in one call: the host-only
# encoding tests, the whole GPU suite (test_estep_cuda, test_estep_cuda_exact), compute-sanitizer
# memcheck and racecheck on the new tests' SanitizerExact (and memcheck on SanitizerSmall), the
# benchmark's main shape (1M x 1024 x 128 spherical; Blocked accurate / TF32, Hopper fast /
# accurate: the normal case, to compare with bench/results/gpu_NVIDIA-H200.md) and the same shape
# with a collapsed component (--narrow: Blocked + refinement, the refinement's cost).
# Prebuilt binaries come from D/bin (test_model_encoding, test_estep_cuda, test_estep_cuda_exact,
# bench_estep_cuda: cmake -S gpu -B build-gpu -G Ninja -DFAISS_GMM_CUDA_ARCHITECTURES=90a ...),
# siftsmall from D/shared/datasets/siftsmall; D defaults to this script's folder/.. . As with
# gpu_run_arch.sh, from a checkout without this branch copy them into an ignored folder, e.g.
#   run(command="bash .device-carry/wt-gpu/scripts/gpu_run_exact.sh", carry=[".device-carry/wt-gpu"])
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
echo "== host-only: test_model_encoding"
"$BIN/test_model_encoding" --gtest_brief=1 2>&1 | tail -2
echo "== test_estep_cuda_exact"
"$BIN/test_estep_cuda_exact" >"$OUT/test_exact.log" 2>&1 || rc=1
grep -E "^  (sph|diag)|^EStepCuda:|^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure|Expected|Which is|actual" \
    "$OUT/test_exact.log" | cut -c1-220 | head -80
echo "== test_estep_cuda (the existing suite)"
"$BIN/test_estep_cuda" >"$OUT/test.log" 2>&1 || rc=1
grep -E "max relative|^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure|Expected|Which is|actual" "$OUT/test.log" \
    | cut -c1-200 | head -40
echo "tests: $(( $(date +%s) - t0 )) s"
echo "== compute-sanitizer"
for spec in "memcheck test_estep_cuda_exact *SanitizerExact" "racecheck test_estep_cuda_exact *SanitizerExact" \
            "memcheck test_estep_cuda *SanitizerSmall"; do
  set -- $spec
  compute-sanitizer --tool "$1" --error-exitcode 3 "$BIN/$2" --gtest_filter="$3" >"$OUT/sanitizer_$1_$2.log" 2>&1
  r=$?; [ $r = 0 ] || rc=1
  echo "$1 $2 $3: exit $r; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED' "$OUT/sanitizer_$1_$2.log" | tr '\n' ' ')"
  [ $r = 0 ] || grep -E "^=========" "$OUT/sanitizer_$1_$2.log" | head -12
done
echo "== benchmark: normal case (before this change, if D/bin/bench_estep_cuda_base exists, then after), then a collapsed component (--narrow)"
if [ -x "$BIN/bench_estep_cuda_base" ]; then
  "$BIN/bench_estep_cuda_base" --no-stream --no-em --shapes 0 >"$OUT/bench_base.log" 2>&1 || rc=1
  grep -vE "^\s*$" "$OUT/bench_base.log" | cut -c1-240 | tail -7
fi
"$BIN/bench_estep_cuda" --no-stream --no-em --shapes 0 >"$OUT/bench.log" 2>&1 || rc=1
"$BIN/bench_estep_cuda" --no-stream --no-em --shapes 0 --modes accurate,fast-tf32,hopper-fast --narrow \
    >"$OUT/bench_narrow.log" 2>&1 || rc=1
grep -vE "^\s*$" "$OUT/bench.log" | cut -c1-240 | tail -7
grep -vE "^\s*$" "$OUT/bench_narrow.log" | cut -c1-240 | tail -10
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit $rc
