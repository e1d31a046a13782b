#!/usr/bin/env bash
# The Hopper E-step (EStepCudaAlgorithm::Hopper) on a GPU machine in one call:
# GPU tests (wgmma layout probes first), compute-sanitizer on SanitizerSmall, a
# SASS check of the main kernel, the benchmark, and optionally ncu on the main
# kernel. Compact results on stdout, full logs in $OUT.
#
# Binaries: $BIN/{test_estep_cuda,bench_estep_cuda} built on the development
# machine (cmake -S gpu -B build-gpu2 ... ; cp build-gpu2/{test,bench}_estep_cuda
# build-fused/) and carried, else built here from gpu/ (FAISS-free standalone).
# e.g. run(command="bash scripts/gpu_run_fused.sh", kind="nvidia-h200",
#          carry=["build-fused", ".device-carry/shared"])
# Environment:
#   FUSED_STAGES  "test sanitizer sass bench ncu" subset (default: test sanitizer sass bench)
#   GTEST_FILTER  tests to run (default: all)
#   SAN_TOOLS     compute-sanitizer tools (default: memcheck racecheck synccheck initcheck)
#   BENCH_ARGS    arguments of bench_estep_cuda (default: main shape, blocked tf32 + both Hopper modes)
#   BENCH_ARGS2   arguments of a second bench_estep_cuda invocation (optional)
#   NCU_ARGS      arguments of bench_estep_cuda under ncu
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
BIN=${BIN:-$PWD/build-fused}
STAGES=${FUSED_STAGES:-"test sanitizer sass bench"}
export PATH=/usr/local/cuda/bin:$PATH
[ -d .device-carry/shared ] && export FAISS_GMM_SHARED_DIR=${FAISS_GMM_SHARED_DIR:-$PWD/.device-carry/shared}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/machine.txt"
if ! "$BIN/test_estep_cuda" --gtest_list_tests >/dev/null 2>&1; then
  echo "== prebuilt binaries do not run here: building gpu/ standalone"
  BIN=$PWD/build-gpu-device
  { cmake -S gpu -B "$BIN" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
        -DFAISS_GMM_CUDA_ARCHITECTURES=90a && ninja -C "$BIN" test_estep_cuda bench_estep_cuda; } \
      >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
fi

rc=0
for stage in $STAGES; do
  case $stage in
    test)
      echo "== tests (${GTEST_FILTER:-all})"
      t0=$(date +%s)
      "$BIN/test_estep_cuda" --gtest_filter="${GTEST_FILTER:-*}" >"$OUT/test.log" 2>&1
      r=$?; [ $r = 0 ] || rc=1
      grep -E "wgmma probe|probe (K|MN):|\[hopper|max relative" "$OUT/test.log" | cut -c1-160 | head -90
      grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|^\[       OK \]" "$OUT/test.log" | head -40
      grep -E "Failure|Expected|Which is|actual|error" "$OUT/test.log" | head -30
      echo "tests: exit $r, $(( $(date +%s) - t0 )) s" ;;
    sanitizer)
      echo "== compute-sanitizer on SanitizerSmall"
      for tool in ${SAN_TOOLS:-memcheck racecheck synccheck initcheck}; do
        compute-sanitizer --tool "$tool" --error-exitcode 3 "$BIN/test_estep_cuda" \
            --gtest_filter='EStepCudaTest.SanitizerSmall' >"$OUT/sanitizer_$tool.log" 2>&1
        r=$?; [ $r = 0 ] || rc=1
        echo "$tool: exit $r; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED' "$OUT/sanitizer_$tool.log" | tr '\n' ' ')"
        [ $r = 0 ] || grep -E "^=========" "$OUT/sanitizer_$tool.log" | head -12
      done ;;
    sass)
      echo "== SASS of estep_kernel<128,false> (tensor-core and sync instructions)"
      if command -v cuobjdump >/dev/null; then
        cuobjdump -sass "$BIN/bench_estep_cuda" 2>/dev/null | awk '/Function : /{f = /estep_kernelILi128ELb0/} f' \
            >"$OUT/estep128.sass"
        for ins in HGMMA WARPGROUP.ARRIVE WARPGROUP.DEPBAR UCGABAR MEMBAR SYNCS STAS BAR.SYNC MUFU.EX2 STS LDS LDL STL; do
          printf "%s=%s " "$ins" "$(grep -c "$ins" "$OUT/estep128.sass")"
        done; echo
      else
        echo "no cuobjdump"
      fi ;;
    bench)
      echo "== benchmark"
      "$BIN/bench_estep_cuda" ${BENCH_ARGS:---no-stream --no-em --shapes 0 --modes fast-tf32,hopper-fast,hopper-accurate} \
          >"$OUT/bench.log" 2>&1
      r=$?; [ $r = 0 ] || rc=1
      if [ -n "${BENCH_ARGS2:-}" ]; then # a second invocation (e.g. other shapes, other modes)
        "$BIN/bench_estep_cuda" $BENCH_ARGS2 2>&1 | grep -vE "^device|^E-step time|^shape" >>"$OUT/bench.log"
        [ "${PIPESTATUS[0]}" = 0 ] || rc=1
      fi
      grep -vE "^\s*$" "$OUT/bench.log" | cut -c1-240 | tail -70 ;;
    ncu)
      echo "== ncu (main kernel)"
      ncu --clock-control none -k regex:"${NCU_KERNELS:-estep_kernel}" -c ${NCU_COUNT:-1} --section SpeedOfLight --section ComputeWorkloadAnalysis \
          --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats --section LaunchStats \
          --section SchedulerStats --print-details all \
          "$BIN/bench_estep_cuda" ${NCU_ARGS:---no-stream --no-em --shapes 0 --modes hopper-fast --reps 1} \
          >"$OUT/ncu.txt" 2>&1
      grep -iE "estep_kernel|features_kernel|duration|throughput|pipe|issue|warp cycles|eligible|registers|stall|executed ipc|bank" \
          "$OUT/ncu.txt" | cut -c1-200 | head -90 ;;
  esac
done
exit $rc
