#!/usr/bin/env bash
# Prepares the carried folder of scripts/gpu_run_compare.sh (run here, on the dev machine):
#   scripts/gpu_carry_compare.sh BASE_DIR NEW_DIR [OUT_FOLDER]
# BASE_DIR and NEW_DIR hold the two builds' bench_estep_cuda, test_estep_cuda and bench_estep_file
# (e.g. copies of build-gpu/gpu/ after building each tree: cmake --build build-gpu --target
# test_estep_cuda bench_estep_cuda bench_estep_file). They are stripped and packed into
# OUT_FOLDER/bin.tgz (default .device-carry/compare, an ignored folder), with the device scripts and,
# when ../shared is beside the checkout, the siftsmall data set for the Siftsmall case.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,8p' "$0"; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
base=$1 new=$2 out=${3:-$root/.device-carry/compare}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for v in base new; do
  src=$base
  [ $v = new ] && src=$new
  mkdir -p "$stage/bin/$v"
  for b in bench_estep_cuda test_estep_cuda bench_estep_file; do
    [ -x "$src/$b" ] || { echo "missing $src/$b" >&2; exit 1; }
    cp "$src/$b" "$stage/bin/$v/"
  done
  strip "$stage/bin/$v/"*
done
mkdir -p "$out/scripts"
rm -rf "${out:?}/bin"
tar czf "$out/bin.tgz" -C "$stage" bin
cp "$root/scripts/gpu_common.sh" "$root/scripts/gpu_run_compare.sh" "$out/scripts/"
if [ -d "$root/../shared/datasets/siftsmall" ]; then
  mkdir -p "$out/shared/datasets"
  cp -r "$root/../shared/datasets/siftsmall" "$out/shared/datasets/"
fi
echo "$out: $(du -sh "$out" | cut -f1) (the device tool carries at most 64 MiB)"
