#!/usr/bin/env bash
# Downloads public ANN benchmark datasets and converts them into the files
# faiss-gmm-eval reads (base / query .fvecs|.fbin|.u8bin, ground truth .ivecs).
# For users with internet access; the conversion steps are the project's own
# tool (faiss-gmm-dataset), tested offline on local files (tests/test_datasets_fetch.cpp
# runs this script against file:// URLs).
#
# usage: scripts/fetch_datasets.sh [--dest DIR] [--tool PATH] DATASET...
#
# DATASET:
#   sift1m            TEXMEX ANN_SIFT1M  (1M x 128 float, 10K queries, ground truth shipped)
#   gist1m            TEXMEX ANN_GIST1M  (1M x 960 float, 1K queries, ground truth shipped)
#   deep1m deep10m deep100m   prefixes of Deep1B (96-d float, big-ann-benchmarks .fbin), 10K public
#                     queries; ground truth computed locally (exact, L2)
#   deep:N            the first N rows of Deep1B
#   bigann1m bigann10m bigann:N   prefixes of BIGANN / SIFT1B (128-d uint8 .u8bin), 10K queries,
#                     ground truth computed locally
#   annb:NAME         an ann-benchmarks file, e.g. annb:glove-25-angular, annb:sift-128-euclidean,
#                     annb:fashion-mnist-784-euclidean, annb:gist-960-euclidean; its train/test/neighbors
#                     become NAME_base.fvecs / NAME_query.fvecs / NAME_groundtruth.ivecs
#
# Environment (defaults in brackets):
#   FAISS_GMM_DATA       destination [$HOME/faiss-gmm-data]
#   FAISS_GMM_DATASET_TOOL  the faiss-gmm-dataset binary [<repo>/build/datasets/faiss-gmm-dataset]
#   TEXMEX_URL           [ftp://ftp.irisa.fr/local/texmex/corpus]
#   BIGANN_URL           [https://dl.fbaipublicfiles.com/billion-scale-ann-benchmarks/bigann]
#   DEEP_URL             [https://storage.yandexcloud.net/yandex-research/ann-datasets/DEEP]
#   ANN_BENCHMARKS_URL   [http://ann-benchmarks.com]
#   GT_K                 neighbours per query of computed ground truth [100]
#
# Each dataset lands in DEST/<name>/ with a SOURCE.txt (URLs, sha256 of what was
# downloaded, metric) and the faiss-gmm-eval command that evaluates it. Downloads
# go to *.part first and are kept, so an interrupted run resumes (curl -C -).
# Deep/BIGANN subsets download only the bytes of the first N rows (HTTP range) and
# the tool rewrites the header; nothing of 1B size is fetched.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${FAISS_GMM_DATA:-$HOME/faiss-gmm-data}
tool=${FAISS_GMM_DATASET_TOOL:-$repo/build/datasets/faiss-gmm-dataset}
texmex_url=${TEXMEX_URL:-ftp://ftp.irisa.fr/local/texmex/corpus}
bigann_url=${BIGANN_URL:-https://dl.fbaipublicfiles.com/billion-scale-ann-benchmarks/bigann}
deep_url=${DEEP_URL:-https://storage.yandexcloud.net/yandex-research/ann-datasets/DEEP}
annb_url=${ANN_BENCHMARKS_URL:-http://ann-benchmarks.com}
gt_k=${GT_K:-100}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) dest=$2; shift 2 ;;
    --tool) tool=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    -*) echo "fetch_datasets: unknown option $1" >&2; usage 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -gt 0 ] || usage 2
if [ ! -x "$tool" ]; then
  echo "fetch_datasets: $tool not found: build the project first (or set FAISS_GMM_DATASET_TOOL)" >&2
  exit 1
fi
mkdir -p "$dest"

log() { echo "[fetch_datasets] $*" >&2; }

# download URL OUT [BYTES]: whole file, or only its first BYTES bytes (HTTP range).
download() {
  local url=$1 out=$2 bytes=${3:-}
  if [ -s "$out" ]; then log "have $out"; return; fi
  log "downloading $url${bytes:+ (first $bytes bytes)}"
  local quiet=(); [ -t 2 ] || quiet=(-sS) # progress meter only on a terminal
  if [ -n "$bytes" ]; then
    curl "${quiet[@]}" -fL --retry 3 -r "0-$((bytes - 1))" -o "$out.part" "$url"
    local got; got=$(stat -c %s "$out.part")
    if [ "$got" -ne "$bytes" ]; then
      echo "fetch_datasets: $url: got $got bytes, expected $bytes (server ignores ranges or file too small)" >&2
      exit 1
    fi
  else
    curl "${quiet[@]}" -fL --retry 3 -C - -o "$out.part" "$url"
  fi
  mv "$out.part" "$out"
}

record() { # dir, lines...
  local dir=$1; shift
  printf '%s\n' "$@" > "$dir/SOURCE.txt"
}

eval_hint() { # dir base query gt metric
  log "done: $1"
  echo "  faiss-gmm-eval --base $2 --query $3 --gt $4 --metric $5 --name $(basename "$1")" >&2
}

fetch_texmex() { # name (sift|gist)
  local n=$1 dir="$dest/${1}1m"
  mkdir -p "$dir"
  download "$texmex_url/$n.tar.gz" "$dir/$n.tar.gz"
  tar -xzf "$dir/$n.tar.gz" -C "$dir"
  for f in base query groundtruth learn; do
    local src="$dir/$n/${n}_$f"
    if [ -f "$src.fvecs" ]; then mv "$src.fvecs" "$dir/${n}_$f.fvecs"; fi
    if [ -f "$src.ivecs" ]; then mv "$src.ivecs" "$dir/${n}_$f.ivecs"; fi
  done
  rmdir "$dir/$n" 2>/dev/null || true
  # The tool validates every file (sizes, dimensions) while printing its shape.
  for f in "$dir/${n}_base.fvecs" "$dir/${n}_query.fvecs" "$dir/${n}_groundtruth.ivecs"; do "$tool" info "$f" >&2; done
  record "$dir" "source: $texmex_url/$n.tar.gz" "sha256: $(sha256sum "$dir/$n.tar.gz" | cut -d' ' -f1)" "metric: l2"
  eval_hint "$dir" "$dir/${n}_base.fvecs" "$dir/${n}_query.fvecs" "$dir/${n}_groundtruth.ivecs" l2
}

fetch_prefix() { # kind (deep|bigann) nrows
  local kind=$1 nrows=$2 url ext d es
  case "$kind" in
    deep) url=$deep_url; ext=fbin; d=96; es=4 ;;
    bigann) url=$bigann_url; ext=u8bin; d=128; es=1 ;;
  esac
  [[ "$nrows" =~ ^[0-9]+$ ]] && [ "$nrows" -gt 0 ] || { echo "fetch_datasets: bad row count '$nrows'" >&2; exit 2; }
  local label=$nrows
  if [ $((nrows % 1000000)) -eq 0 ]; then label=$((nrows / 1000000))m; fi
  local dir="$dest/$kind$label"
  mkdir -p "$dir"
  download "$url/base.1B.$ext" "$dir/base.prefix.$ext" $((8 + nrows * d * es))
  # The prefix still carries the 1B header: keep exactly nrows rows, with a header saying so.
  "$tool" convert "$dir/base.prefix.$ext" "$dir/${kind}${label}_base.$ext" --allow-prefix --rows "0:$nrows" >&2
  rm -f "$dir/base.prefix.$ext"
  download "$url/query.public.10K.$ext" "$dir/${kind}_query.$ext"
  "$tool" info "$dir/${kind}_query.$ext" >&2
  if [ ! -s "$dir/${kind}${label}_groundtruth.ivecs" ]; then
    log "computing exact ground truth (k = $gt_k, L2) for $nrows rows"
    "$tool" groundtruth "$dir/${kind}${label}_base.$ext" "$dir/${kind}_query.$ext" \
        "$dir/${kind}${label}_groundtruth.ivecs" --k "$gt_k" --metric l2 >&2
  fi
  record "$dir" "source: $url/base.1B.$ext (first $nrows rows), $url/query.public.10K.$ext" \
      "sha256 base: $(sha256sum "$dir/${kind}${label}_base.$ext" | cut -d' ' -f1)" \
      "ground truth: computed by faiss-gmm-dataset groundtruth (exact, k = $gt_k)" "metric: l2"
  eval_hint "$dir" "$dir/${kind}${label}_base.$ext" "$dir/${kind}_query.$ext" "$dir/${kind}${label}_groundtruth.ivecs" l2
}

fetch_annb() { # name
  local n=$1 dir="$dest/$1"
  mkdir -p "$dir"
  download "$annb_url/$n.hdf5" "$dir/$n.hdf5"
  "$tool" ann-benchmarks "$dir/$n.hdf5" "$dir" "$n" >&2
  local metric; metric=$(cat "$dir/${n}_metric.txt")
  case "$metric" in
    euclidean) metric=l2 ;;
    angular) ;;
    *) log "note: metric '$metric' is not evaluated by faiss-gmm-eval (GMM-IVF is L2 / angular only)" ;;
  esac
  record "$dir" "source: $annb_url/$n.hdf5" "sha256: $(sha256sum "$dir/$n.hdf5" | cut -d' ' -f1)" "metric: $metric"
  eval_hint "$dir" "$dir/${n}_base.fvecs" "$dir/${n}_query.fvecs" "$dir/${n}_groundtruth.ivecs" "$metric"
}

for name in "${names[@]}"; do
  case "$name" in
    sift1m) fetch_texmex sift ;;
    gist1m) fetch_texmex gist ;;
    deep1m) fetch_prefix deep 1000000 ;;
    deep10m) fetch_prefix deep 10000000 ;;
    deep100m) fetch_prefix deep 100000000 ;;
    deep:*) fetch_prefix deep "${name#deep:}" ;;
    bigann1m) fetch_prefix bigann 1000000 ;;
    bigann10m) fetch_prefix bigann 10000000 ;;
    bigann:*) fetch_prefix bigann "${name#bigann:}" ;;
    annb:*) fetch_annb "${name#annb:}" ;;
    *) echo "fetch_datasets: unknown dataset '$name'" >&2; usage 2 ;;
  esac
done
