#!/bin/sh
# The user's install path, end to end, offline, with Debian's packages only:
# build the faiss_gmm wheel with pip + setuptools (no build isolation: nothing
# is downloaded), install it into a fresh virtual environment that sees
# Debian's numpy/faiss (--system-site-packages), import it from outside the
# source tree and run a smoke test. CI runs this.
#
# Usage: python/build_wheel_and_smoke_test.sh [CMAKE_BUILD_DIR]
#   CMAKE_BUILD_DIR: package the module of this already-configured CMake build
#   (only its faiss_gmm_python target is built) instead of a private build
#   under build-wheel/ (a full build of the library: several minutes).
# Needs: python3-pip python3-setuptools python3-wheel python3-venv, plus the
# build packages (cmake, g++, libfaiss-dev, libopenblas-dev, pybind11-dev,
# python3-dev) and python3-numpy python3-faiss at run time.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ $# -ge 1 ]; then
  FAISS_GMM_CMAKE_BUILD_DIR=$(cd "$1" && pwd)
  export FAISS_GMM_CMAKE_BUILD_DIR
fi

echo "== building the wheel"
(cd "$ROOT" && "$PY" -m pip wheel --no-build-isolation --no-deps --no-index -w "$WORK/dist" .)
WHEEL=$(ls "$WORK"/dist/faiss_gmm-*.whl)
echo "== built $(basename "$WHEEL")"

echo "== installing into a virtual environment (--system-site-packages)"
"$PY" -m venv --system-site-packages "$WORK/venv"
# --no-index: dependencies (numpy, faiss==1.7.3) must be satisfied by Debian's packages.
"$WORK/venv/bin/python" -m pip install --no-index "$WHEEL"

echo "== smoke test"
cd "$WORK"
"$WORK/venv/bin/python" -W ignore - <<'PYEOF'
import faiss, numpy as np, faiss_gmm, os
assert "venv" in faiss_gmm.__file__, faiss_gmm.__file__   # the installed copy, not the source tree
rng = np.random.default_rng(0)
xb = rng.standard_normal((5000, 16)).astype(np.float32)
index = faiss_gmm.index_factory(16, "IVF16_GMM,Flat", niter=3)
assert isinstance(index, faiss.Index)
index.train(xb)
index.add(xb)
faiss.ParameterSpace().set_index_parameter(index, "nprobe", 4)
_, I = index.search(xb[:10], 1)
assert (I[:, 0] == np.arange(10)).all()
faiss_gmm.write_index(index, "smoke.index")
assert faiss_gmm.get_gmm_model(faiss_gmm.read_index("smoke.index")).K == 16
gm = faiss_gmm.GaussianMixture(4, max_iter=10, random_state=0).fit(xb)
assert gm.predict(xb).shape == (5000,)
print("faiss_gmm", faiss_gmm.__version__, "from", os.path.dirname(faiss_gmm.__file__), ": smoke test OK")
PYEOF
