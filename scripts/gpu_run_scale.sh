#!/usr/bin/env bash
# Scale runs on a GPU machine, in one call (issues 4 and 8): the GPU tests on
# every visible GPU, bench_scale_cuda (1 GPU vs all GPUs on 100M rows, a 1B-row
# uint8 pass generated on the fly), bench_trainer (the whole GmmTrainer, CPU
# backend against the CUDA backend, 20 EM iterations on 10M rows), and the recall
# check of GPU training (GMM-IVF trained with the CUDA backend, fast and
# accurate, against the CPU-trained one on siftsmall and bigann10k: recall@10
# within 0.005 at every nprobe).
#
# bench_trainer and faiss-gmm-eval need FAISS and OpenBLAS, which GPU machines
# lack: build them on the development machine (cmake -DFAISS_GMM_ENABLE_CUDA=ON
# -DFAISS_GMM_WITH_HDF5=OFF ...) and carry them with the shared libraries they
# load, in an ignored folder, with the data sets under .device-carry/shared:
#   $CARRY/bin/{test_estep_cuda,bench_scale_cuda,bench_trainer,faiss-gmm-eval}
#   $CARRY/lib/{libblas.so.3,liblapack.so.3,libopenblas.so.0,libgfortran.so.5,libquadmath.so.0}
# e.g. run(command="bash scripts/gpu_run_scale.sh", kind="nvidia-h200-x2", carry=[".device-carry/lead"]).
# Stages: SCALE_STAGES="test scale trainer recall" (default: all). Logs go to $OUT.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
CARRY=${CARRY:-$PWD/.device-carry/lead}
STAGES=${SCALE_STAGES:-"test scale trainer recall"}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$CARRY/lib:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0
[ -d .device-carry/shared ] && export FAISS_GMM_SHARED_DIR=${FAISS_GMM_SHARED_DIR:-$PWD/.device-carry/shared}

{
  echo "== machine"
  nvidia-smi --query-gpu=index,name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv
  nvidia-smi topo -m 2>/dev/null | head -6
  echo "cores: $(nproc)"; free -g | head -2
} 2>&1 | tee "$OUT/machine.txt"

rc=0
for stage in $STAGES; do
  case $stage in
    test)
      echo "== GPU tests (every visible GPU)"
      "$CARRY/bin/test_estep_cuda" 2>&1 | tee "$OUT/test.log" | grep -E "^\[  (PASSED|FAILED)|^\[==|GPUs|FAIL" | tail -20
      [ "${PIPESTATUS[0]}" = 0 ] || rc=1 ;;
    scale)
      echo "== bench_scale_cuda ${SCALE_ARGS:-}"
      "$CARRY/bin/bench_scale_cuda" ${SCALE_ARGS:-} 2>&1 | tee "$OUT/scale.log"
      [ "${PIPESTATUS[0]}" = 0 ] || rc=1 ;;
    trainer)
      echo "== bench_trainer ${TRAINER_ARGS:-10000000 1024 128 20}"
      OMP_NUM_THREADS=$(nproc) "$CARRY/bin/bench_trainer" ${TRAINER_ARGS:-10000000 1024 128 20} 2>&1 \
          | tee "$OUT/trainer.log"
      [ "${PIPESTATUS[0]}" = 0 ] || rc=1 ;;
    recall)
      echo "== recall@10 of GMM-IVF trained on the GPU vs on the CPU"
      root=${FAISS_GMM_SHARED_DIR:-$PWD/../shared}/datasets
      for ds in siftsmall bigann10k; do
        for variant in cpu cuda-fast cuda-accurate; do
          args=(--gmm-device "${variant%%-*}")
          [ "$variant" = cuda-fast ] && args+=(--gmm-fast)
          "$CARRY/bin/faiss-gmm-eval" --dataset $ds --data-root "$root" --methods gmm "${args[@]}" --no-plot --quiet \
              --out "$OUT/recall-$variant" >"$OUT/recall-$variant-$ds.log" 2>&1 || { echo "eval $ds $variant failed"; rc=1; }
        done
        for variant in cuda-fast cuda-accurate; do
          echo "-- $ds: $variant against cpu"
          python3 eval/compare_recall.py "$OUT/recall-cpu/$ds.csv" "$OUT/recall-$variant/$ds.csv" || rc=1
        done
      done ;;
  esac
done
exit $rc
