"""pytest setup for the faiss_gmm Python tests.

faiss_gmm must be importable: from an installed wheel, or from the build tree
(`PYTHONPATH=<build>/python`, which is what `ctest` sets). When it is not, and
FAISS_GMM_BUILD_DIR names a build directory (default: <repo>/build), that
build's python/ directory is tried, so `python3 -m pytest tests/python` works
straight after the README build command."""

import importlib.util
import os
import sys

# From the repository root, the C++ directory faiss_gmm/ would be picked up as a
# namespace package: only a spec with a real origin counts as installed.
_spec = importlib.util.find_spec("faiss_gmm")
if _spec is None or _spec.origin is None:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    build = os.environ.get("FAISS_GMM_BUILD_DIR", os.path.join(repo, "build"))
    sys.path.insert(0, os.path.join(build, "python"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def blobs():
    """Well-separated spherical blobs: (x float64 (n, d), true labels, centers)."""
    rng = np.random.default_rng(0)
    k, d, n = 6, 8, 3000
    centers = rng.standard_normal((k, d)) * 12
    labels = rng.integers(0, k, n)
    widths = rng.uniform(0.7, 1.5, k)
    x = centers[labels] + rng.standard_normal((n, d)) * widths[labels, None]
    return x, labels, centers
