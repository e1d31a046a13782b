# Sourced by the device scripts scripts/gpu_run_{diag,exact,full,full_sm90,repro,twopass,suite}.sh, never run alone;
# copy it with them (the whole scripts/ folder) into the carried folder. What they share:
#   D    the carried folder (this file's folder/..), BIN its prebuilt binaries (D/bin),
#   OUT  the device tool's output folder (D/out when run elsewhere),
#   FAISS_GMM_SHARED_DIR  the data sets under D/shared when they were carried,
# then the machine line (OUT/machine.txt), rc=0 and the start time t0 for the caller's totals; the
# sharded gtest runs (shard_tests) and the side-by-side compute-sanitizer runs (sanitize,
# sanitizer_summary) of gpu_run_suite.sh, gpu_run_repro.sh and gpu_run_compare.sh.
set -u
D=${D:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BIN=${BIN:-$D/bin}
OUT=${OUT:-$D/out}
mkdir -p "$OUT"
if [ -d "$D/shared" ]; then export FAISS_GMM_SHARED_DIR=${FAISS_GMM_SHARED_DIR:-$D/shared}; fi
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/machine.txt"
rc=0
t0=$(date +%s)

# shard_tests BINARY FILTER LOG TIMEOUT: $SHARDS gtest shards of $BIN/BINARY (the cases FILTER) side
# by side in the background (their pids appended to the caller's pids array; each cut at TIMEOUT
# seconds), logged to $OUT/LOG0.log, LOG1.log, …; the caller waits for them.
shard_tests() {
  local i
  for i in $(seq 0 $((SHARDS - 1))); do
    GTEST_TOTAL_SHARDS=$SHARDS GTEST_SHARD_INDEX=$i timeout "$4" "$BIN/$1" --gtest_filter="$2" >"$OUT/$3$i.log" 2>&1 &
    pids+=($!)
  done
}

# sanitize TOOL BINARY FILTER: compute-sanitizer TOOL on the gtest cases FILTER of $BIN/BINARY, in
# the background (its pid appended to the caller's pids array; cut at $SAN_TIMEOUT seconds), logged
# to $OUT/san_TOOL_BINARY_FILTER.log. sanitizer_summary: one line per such log, and the sanitizer's
# own report where it found something.
sanitize() {
  timeout "${SAN_TIMEOUT:-100}" compute-sanitizer --tool "$1" --error-exitcode 3 "$BIN/$2" --gtest_filter="$3" \
      >"$OUT/san_$1_$2_${3//\*/}.log" 2>&1 &
  pids+=($!)
}
sanitizer_summary() {
  local f
  for f in "$OUT"/san_*.log; do
    echo "$(basename "$f"): $(grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED) ' "$f" | tr '\n' ' ')"
    grep -qE "ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards" "$f" || grep -hE "^=========|Failure" "$f" | head -8
  done
}
