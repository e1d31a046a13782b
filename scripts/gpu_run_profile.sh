#!/usr/bin/env bash
# Where the time of the Hopper E-step kernels goes (issue 16 items 1 and 3), and the cost of reproducible sums per
# EM iteration on the Hopper path (issue 13 item 1), in one device call:
#  1. ncu (SpeedOfLight, compute / memory workload, occupancy, warp states, scheduler, launch) of one launch each of
#     the spherical fast kernel and its row conversion (1M x 1024 x 128, shape 0; two ncu runs), the diagonal fast "wide" kernel
#     (shape 1), and the accurate diagonal two-pass kernels (shape 1);
#  2. 20 EM iterations at 10M x 1024 x 128 with accumulate() and accumulate_reproducible(), refinement of narrow
#     components off (--em-no-refine: the benchmark's M-step never re-seeds, and the narrow components it leaves
#     would otherwise send every iteration to Blocked + refinement).
# Prebuilt binaries in $BIN (bench_estep_cuda; -DFAISS_GMM_CUDA_ARCHITECTURES containing 90a):
#   run(command="mkdir -p /tmp/b && tar xzf .device-carry/suite/bin.tgz -C /tmp/b && BIN=/tmp/b \
#       bash .device-carry/suite/scripts/gpu_run_profile.sh", carry=[".device-carry/suite"])
. "$(dirname "$0")/gpu_common.sh" # D, BIN, OUT, the data sets, the machine line, rc, t0
SECTIONS="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy
  --section WarpStateStats --section SchedulerStats --section LaunchStats --section InstructionStats"
profile() { # name kernel-regex launch-count bench-args...
  local name=$1 re=$2 count=$3; shift 3
  timeout "${NCU_T:-90}" ncu $SECTIONS -k "regex:$re" --launch-skip 0 --launch-count "$count" \
      "$BIN/bench_estep_cuda" --no-stream --no-em --reps 1 "$@" >"$OUT/ncu_$name.log" 2>&1
  echo "ncu $name: exit $?"
}
if command -v ncu >/dev/null; then
  # The spherical kernel and its row conversion apart: with both in one regex, --launch-count 2 caught two
  # conversions (the sub-chunks' features kernels run first) and no E-step kernel.
  profile sph_fast 'estep_kernel' 1 --shapes 0 --modes hopper-fast
  profile sph_features 'features_kernel' 1 --shapes 0 --modes hopper-fast
  profile diag_fast 'estep_split_kernel' 1 --shapes 1 --modes hopper-fast
  profile diag_accurate 'lse_parts_kernel|lse_merge_kernel|estep_kernel' 3 --shapes 1 --modes hopper-accurate
  grep -hE "^  [a-zA-Z_:<>0-9, ]+\(|Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L1/TEX Cache Throughput|L2 Cache Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Executed Ipc A|SM Busy|Block Limit Shared|Dynamic Shared" \
      "$OUT"/ncu_*.log | cut -c1-160 | head -120
else
  echo "no ncu"; rc=1
fi
echo "profiles: $(( $(date +%s) - t0 )) s"
timeout 120 "$BIN/bench_estep_cuda" --no-stream --shapes 0 --modes hopper-fast --em-reproducible --em-no-refine \
    >"$OUT/bench_em.log" 2>&1 || rc=1
grep -E "^EM|EStepCuda:" "$OUT/bench_em.log"
echo "total $(( $(date +%s) - t0 )) s, rc $rc"
exit $rc
