#!/usr/bin/env bash
# Runs the GPU tests, compute-sanitizer on a small case and the GPU benchmark in
# one call on a GPU machine, writing logs and results into $OUT (default ./gpu-out).
# Uses prebuilt binaries from $BUILD (default build-gpu) when they run here, else
# builds gpu/ standalone (no FAISS or BLAS needed) with cmake + ninja.
# Stages: GPU_RUN_STAGES="test sanitizer bench" (default: all three).
#   BENCH_ARGS: extra arguments for bench_estep_cuda (e.g. "--quick").
#   FLASH_GMM_DIR: folder holding the research kernels (flash_gmm.py, flash_gmm_h100.py),
#   timed by bench/gpu/bench_flash_gmm.py when present (never part of the repository).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
BUILD=${BUILD:-build-gpu}
STAGES=${GPU_RUN_STAGES:-"test sanitizer bench"}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
export NCCL_NVLS_ENABLE=0
[ -d .device-carry/shared ] && export FAISS_GMM_SHARED_DIR=${FAISS_GMM_SHARED_DIR:-$PWD/.device-carry/shared}
FLASH_GMM_DIR=${FLASH_GMM_DIR:-$PWD/.device-carry/flashgmm}

{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  nvcc --version | tail -2; nproc; free -g | head -2
} 2>&1 | tee "$OUT/machine.txt"

if ! "$BUILD/test_estep_cuda" --gtest_list_tests >/dev/null 2>&1; then
  echo "== prebuilt binaries do not run here: building gpu/ standalone"
  BUILD=build-gpu-device
  cmake -S gpu -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
      -DFAISS_GMM_CUDA_ARCHITECTURES=90a >"$OUT/build.log" 2>&1 && ninja -C "$BUILD" >>"$OUT/build.log" 2>&1 \
      || { tail -50 "$OUT/build.log"; exit 1; }
fi

rc=0
for stage in $STAGES; do
  case $stage in
    test)
      echo "== GPU tests"
      "$BUILD/test_estep_cuda" 2>&1 | tee "$OUT/test.log" | grep -E "^\[  |\[(fast|accu)\]|max relative|FAIL|Failure|expected|Which is" | tail -150
      [ "${PIPESTATUS[0]}" = 0 ] || rc=1 ;;
    sanitizer)
      echo "== compute-sanitizer (memcheck, racecheck, initcheck, synccheck) on SanitizerSmall"
      for tool in memcheck racecheck initcheck synccheck; do
        compute-sanitizer --tool $tool --error-exitcode 3 "$BUILD/test_estep_cuda" \
            --gtest_filter='EStepCudaTest.SanitizerSmall' >"$OUT/sanitizer_$tool.log" 2>&1
        r=$?; echo "$tool: exit $r; $(grep -E 'ERROR SUMMARY|PASSED|FAILED' "$OUT/sanitizer_$tool.log" | tr '\n' ' ')"
        [ $r = 0 ] || rc=1
      done ;;
    bench)
      echo "== benchmark"
      "$BUILD/bench_estep_cuda" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" | grep -vE "^\s*$" | tail -80
      [ "${PIPESTATUS[0]}" = 0 ] || rc=1
      if [ -f "$FLASH_GMM_DIR/flash_gmm_h100.py" ]; then
        echo "== research kernels (IBM/Flash-GMM) and torch GEMM floors"
        PYTHONUNBUFFERED=1 python3 bench/gpu/bench_flash_gmm.py --kernels "$FLASH_GMM_DIR" ${FLASH_ARGS:-} 2>&1 \
            | tee "$OUT/bench_flash.log" | grep -vE "^\s*$" | tail -40
      fi ;;
  esac
done
exit $rc
