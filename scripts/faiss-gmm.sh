#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs the Debian packages the
# project needs (only those missing), configures and builds, then runs what was
# asked:
#   scripts/faiss-gmm.sh demo    GMM-IVF vs k-means IVF on Fashion-MNIST
#   scripts/faiss-gmm.sh test    every test suite (C++ via ctest, Python via pytest)
#   scripts/faiss-gmm.sh build   install + build only
# Environment: BUILD_DIR (default build), JOBS (default nproc).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
JOBS="${JOBS:-$(nproc)}"
# Debian's interpreter: python3-faiss, numpy and pytest are installed for it.
PYTHON=/usr/bin/python3

PACKAGES=(
  build-essential cmake pkg-config
  libfaiss-dev libopenblas-dev libgtest-dev
  pybind11-dev python3-dev python3-faiss python3-numpy python3-pytest
  python3-matplotlib python3-sklearn python3-setuptools python3-wheel python3-pip python3-venv
  zlib1g-dev libhdf5-dev
  libopenmpi-dev openmpi-bin
  clang libclang-rt-14-dev libomp-dev clang-tidy cppcheck
  dataset-fashion-mnist
)

install_missing_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return
  fi
  echo "== installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

configure_and_build() {
  local cuda_args=()
  # The CUDA backend compiles wherever nvcc exists (CI included); it runs only on a GPU.
  if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
    cuda_args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  fi
  echo "== configuring in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
        -DPython_EXECUTABLE="$PYTHON" -DPYTHON_EXECUTABLE="$PYTHON" "${cuda_args[@]}" ${CMAKE_ARGS:-}
  echo "== building with $JOBS jobs"
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

run_tests() {
  # ctest runs the GoogleTest binaries and the pytest suite (test python_tests).
  echo "== tests (ctest)"
  (cd "$BUILD_DIR" && ctest --output-on-failure -j "$JOBS")
  for extra in "$ROOT"/scripts/test_*.sh; do
    [ -e "$extra" ] || continue
    echo "== $(basename "$extra")"
    BUILD_DIR="$BUILD_DIR" PYTHON="$PYTHON" bash "$extra"
  done
}

cmd="${1:-}"
case "$cmd" in
  build) install_missing_packages; configure_and_build ;;
  test) install_missing_packages; configure_and_build; run_tests ;;
  demo) install_missing_packages; configure_and_build; "$BUILD_DIR/demo/faiss-gmm-demo" "${@:2}" ;;
  *) echo "usage: $0 {demo|test|build}" >&2; exit 2 ;;
esac
