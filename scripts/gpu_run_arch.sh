#!/usr/bin/env bash
# The architecture step's check (issue 15, GPU items) on a GPU machine in one call: the
# host-only tests, the GPU suite, compute-sanitizer memcheck + racecheck on SanitizerSmall,
# and the benchmark's main shapes (E-step table, cluster-size scan, 100M-row streaming),
# through gpu_run_fused.sh. Prebuilt binaries and siftsmall come from a carried folder D
# (default: this script's folder/..): D/bin/{test_estep_cuda,test_model_encoding,
# bench_estep_cuda}, D/shared/datasets/siftsmall/siftsmall_base.fvecs, D/scripts/ (this
# script and gpu_run_fused.sh). The run tool sends the session's checkout only, so from a
# checkout that does not hold this branch, copy them into an ignored folder of it, e.g.
#   mkdir -p .device-carry/wt-gpu/{bin,scripts,shared/datasets/siftsmall}; cp build-gpu/{test_estep_cuda,
#   test_model_encoding,bench_estep_cuda} .device-carry/wt-gpu/bin/; cp scripts/gpu_run_{arch,fused}.sh
#   .device-carry/wt-gpu/scripts/; cp <siftsmall_base.fvecs> .device-carry/wt-gpu/shared/datasets/siftsmall/
#   run(command="bash .device-carry/wt-gpu/scripts/gpu_run_arch.sh", carry=[".device-carry/wt-gpu"])
# About 4.5 minutes on an H200 (suite ~3 min, sanitizers ~20 s, benchmark ~1.5 min).
set -u
D=${D:-$(cd "$(dirname "$0")/.." && pwd)}
export BIN=${BIN:-$D/bin} FAISS_GMM_SHARED_DIR=${FAISS_GMM_SHARED_DIR:-$D/shared}
export FUSED_STAGES=${FUSED_STAGES:-"test sanitizer bench"} SAN_TOOLS=${SAN_TOOLS:-"memcheck racecheck"}
export BENCH_ARGS=${BENCH_ARGS:-"--no-stream --no-em --shapes 0,1,2,4,5 --hopper-variants"}
export BENCH_ARGS2=${BENCH_ARGS2:-"--no-em --shapes 6,7,8,9 --modes hopper-fast"}
"$BIN/test_estep_cuda" --gtest_list_tests >/dev/null || { echo "binaries in $BIN do not run here"; exit 9; }
echo "== host-only tests"
"$BIN/test_model_encoding" --gtest_brief=1 2>&1 | tail -2
t0=$(date +%s)
bash "$D/scripts/gpu_run_fused.sh"
rc=$?
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit $rc
