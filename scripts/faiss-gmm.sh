#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs the Debian packages the
# project needs (only those missing), configures and builds, then runs what was
# asked:
#   scripts/faiss-gmm.sh demo [demo options]   k-means IVF vs GMM-IVF vs the recommended recipe
#                                               on Fashion-MNIST; builds only the library and the demo
#   scripts/faiss-gmm.sh test    every target, then every test suite (C++ via ctest, Python via pytest)
#   scripts/faiss-gmm.sh build   install + build everything
# Each step prints a line with the time elapsed since the start.
# Environment: BUILD_DIR (default build), JOBS (default nproc), CMAKE_ARGS (appended to the configure line).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
JOBS="${JOBS:-$(nproc)}"
# Debian's interpreter: python3-faiss, numpy and pytest are installed for it.
PYTHON=/usr/bin/python3
START_NS=$(date +%s%N)

# "[  12.3 s] what happens now"
step() {
  local now_ns
  now_ns=$(date +%s%N)
  printf '[%7.1f s] %s\n' "$(( (now_ns - START_NS) / 1000000 ))e-3" "$*"
}

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
    step "Debian packages: all ${#PACKAGES[@]} installed"
    return
  fi
  step "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  step "Debian packages installed"
}

# A GPU the CUDA backend could run on (the driver lists one).
have_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

# configure_and_build all|demo. "all" builds every target with the CUDA backend
# wherever nvcc exists (CI compiles it without a GPU); "demo" builds the library
# and the demo only, with CUDA only when a GPU is present, so the first command on
# a fresh machine spends its time on the demo.
configure_and_build() {
  local what=$1
  local cuda_args=() target_args=() quiet_args=()
  if [ "$what" = demo ] && ! have_gpu; then
    cuda_args+=(-DFAISS_GMM_ENABLE_CUDA=OFF)
  else
    # Explicitly AUTO: a demo configured OFF in the same build directory must not stick.
    cuda_args+=(-DFAISS_GMM_ENABLE_CUDA=AUTO)
    if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
      cuda_args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
    fi
  fi
  if [ "$what" = demo ]; then
    target_args+=(--target faiss-gmm-demo)
    quiet_args+=(--log-level=WARNING)
  fi
  step "configuring in $BUILD_DIR (${cuda_args[0]})"
  cmake -S "$ROOT" -B "$BUILD_DIR" "${quiet_args[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DPython_EXECUTABLE="$PYTHON" -DPYTHON_EXECUTABLE="$PYTHON" "${cuda_args[@]}" ${CMAKE_ARGS:-}
  step "building ${target_args[1]:-every target} with $JOBS jobs"
  cmake --build "$BUILD_DIR" -j "$JOBS" "${target_args[@]}"
  step "built"
}

run_tests() {
  # ctest runs the GoogleTest binaries and the pytest suite (test python_tests).
  step "tests (ctest)"
  (cd "$BUILD_DIR" && ctest --output-on-failure -j "$JOBS")
  for extra in "$ROOT"/scripts/test_*.sh; do
    [ -e "$extra" ] || continue
    step "$(basename "$extra")"
    BUILD_DIR="$BUILD_DIR" PYTHON="$PYTHON" bash "$extra"
  done
}

cmd="${1:-}"
case "$cmd" in
  build) install_missing_packages; configure_and_build all ;;
  test) install_missing_packages; configure_and_build all; run_tests; step "all tests passed" ;;
  demo)
    install_missing_packages
    configure_and_build demo
    step "running the demo (its own lines count from its start)"
    "$BUILD_DIR/demo/faiss-gmm-demo" "${@:2}"
    step "demo done" ;;
  *) echo "usage: $0 {demo|test|build}" >&2; exit 2 ;;
esac
