"""faiss_gmm: train the IVF coarse quantizer of FAISS with a Gaussian Mixture
Model, on faiss's own Python index objects; plus a scikit-learn-style
GaussianMixture estimator on the same engine."""

import faiss  # noqa: F401  (faiss's Python package must be importable: our indexes are its objects)

from ._core import CovarianceType, Device, GmmIterationStats, GmmModel, GmmParams, InitMethod, cuda_available
from . import _core

# Indexes are shared with faiss's Python package by C++ address, so it must be
# built from the same faiss version as this module (same class layouts).
if faiss.__version__ != _core.faiss_version:
    raise ImportError(f"faiss_gmm was built against faiss {_core.faiss_version} but the faiss Python package is "
                      f"{faiss.__version__} ({faiss.__file__}); rebuild faiss_gmm against that faiss")

from .index import (  # noqa: E402
    deserialize_index,
    get_gmm_model,
    get_gmm_params,
    get_iteration_stats,
    index_factory,
    is_gmm_index,
    read_index,
    serialize_index,
    train_ivf,
    UnverifiedIndexWarning,
    write_index,
)

from .mixture import ConvergenceWarning, GaussianMixture, NotFittedError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "CovarianceType", "Device", "GmmIterationStats", "GmmModel", "GmmParams", "InitMethod", "cuda_available",
    "index_factory", "train_ivf", "write_index", "read_index", "serialize_index", "deserialize_index",
    "is_gmm_index", "get_gmm_model", "get_gmm_params", "get_iteration_stats", "UnverifiedIndexWarning",
    "GaussianMixture", "ConvergenceWarning", "NotFittedError",
]
