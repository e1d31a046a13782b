#!/usr/bin/env bash
# Regenerates every result in eval/README.md: the shared 10K-scale sets at
# nlist 128 (auto) and 64 (and IVF128,SQ8), Fashion-MNIST at nlist 256, and a 100K anisotropic
# synthetic mixture at nlist 512; then results/summary.{md,png}.
# usage: eval/run_all.sh [--summary-only] [BUILD_DIR]   (default: build). About 10 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
summary_only=0
if [ "${1:-}" = "--summary-only" ]; then summary_only=1; shift; fi
build=${1:-$here/../build}
ev=$build/eval/faiss-gmm-eval
ds=$build/datasets/faiss-gmm-dataset
out=$here/results
mkdir -p "$out"
small="siftsmall,bigann10k,glove25-angular,glove25-l2"
methods=kmeans,gmm,gmmdiag

if [ $summary_only = 0 ]; then
"$ev" --dataset "$small" --methods $methods --nlist auto --repeats 3 --out "$out" --tag small-sets
"$ev" --dataset "$small" --methods $methods --nlist 64 --repeats 3 --out "$out" --tag small-sets-nlist64
# 2,000 of the 10,000 test images keep the full sweep (to nprobe 64) within minutes.
"$ev" --dataset fashion-mnist --max-queries 2000 --methods $methods --nlist 256 \
      --nprobe 1,2,4,8,16,32,64 --out "$out" --tag fashion-mnist
# A quantized variant: the same comparison with 8-bit scalar-quantized lists.
"$ev" --dataset siftsmall,glove25-angular --methods $methods --index "IVF128,SQ8" --repeats 3 --out "$out" \
      --tag small-sets-sq8
# Synthetic: 256 anisotropic components (per-dimension std ratio 10, widths ratio 4,
# Zipf-like sizes), 100K base + 1K queries drawn from the same mixture.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ds" generate "$tmp/all.fvecs" --n 101000 --d 32 --components 256 --spread 1 --anisotropy 10 \
      --scale-ratio 4 --skew 0.5 --seed 2024
"$ds" convert "$tmp/all.fvecs" "$tmp/base.fvecs" --rows 0:100000
"$ds" convert "$tmp/all.fvecs" "$tmp/query.fvecs" --rows 100000:1000
"$ev" --base "$tmp/base.fvecs" --query "$tmp/query.fvecs" --name synthetic-aniso-100k --methods $methods \
      --nlist 512 --repeats 3 --out "$out" --tag synthetic-aniso-100k
fi

# One summary table (the rows of each run's table) and one plot with every dataset.
runs="small-sets fashion-mnist synthetic-aniso-100k small-sets-nlist64 small-sets-sq8"
{
  first=1
  for r in $runs; do
    # header (2 lines) from the first file, then the data rows of each
    awk -v first=$first '/^\| dataset/{t=1; h=$0; getline; if(first){print h; print}; next} t&&/^\|/{print} t&&!/^\|/{exit}' "$out/$r.md"
    first=0
  done
  echo
  grep -m1 '^Cost ratio' "$out/small-sets.md"
} > "$out/summary.md"
/usr/bin/python3 "$here/plot_results.py" "$out/small-sets.csv" "$out/summary.png" \
    "recall@10 vs distance computations (k-means IVF vs GMM-IVF)" "$out/fashion-mnist.csv" "$out/synthetic-aniso-100k.csv"
echo "wrote $out/summary.md and $out/summary.png"
