# Sourced by the device scripts scripts/gpu_run_{diag,exact,full,repro,twopass,suite}.sh, never run alone;
# copy it with them (the whole scripts/ folder) into the carried folder. What they share:
#   D    the carried folder (this file's folder/..), BIN its prebuilt binaries (D/bin),
#   OUT  the device tool's output folder (D/out when run elsewhere),
#   FAISS_GMM_SHARED_DIR  the data sets under D/shared when they were carried,
# then the machine line (OUT/machine.txt), rc=0 and the start time t0 for the caller's totals.
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
