"""GmmParams from keyword arguments: the same names as the C++ struct, with
strings accepted for the enums ("spherical"/"diag", "kmeans"/"k-means++",
"cpu"/"cuda"/"auto")."""

import copy

from ._core import CovarianceType, Device, GmmParams, InitMethod

_COVARIANCE = {
    "spherical": CovarianceType.Spherical,
    "diag": CovarianceType.Diagonal,
    "diagonal": CovarianceType.Diagonal,
    "full": CovarianceType.Full,
}
_INIT = {
    "kmeans": InitMethod.FaissKMeans,
    "faiss_kmeans": InitMethod.FaissKMeans,
    "k-means++": InitMethod.KMeansPlusPlus,
    "kmeans++": InitMethod.KMeansPlusPlus,
}
_DEVICE = {"cpu": Device.Cpu, "cuda": Device.Cuda, "gpu": Device.Cuda, "auto": Device.Auto}

# GmmParams' fields, the only keyword arguments accepted (a typo must not be
# silently ignored).
PARAM_NAMES = (
    "covariance_type", "niter", "tol", "seed", "init", "init_niter", "max_points_per_centroid",
    "min_points_per_centroid", "min_variance_ratio", "reg_covar", "min_component_weight", "device",
    "fast_math", "chunk_size", "block_size", "verbose",
)


def _enum(value, table, enum_type, name):
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str) and value.lower() in table:
        return table[value.lower()]
    raise ValueError(f"{name}={value!r} is not valid; expected one of {sorted(table)}")


def covariance_type(value):
    return _enum(value, _COVARIANCE, CovarianceType, "covariance_type")


def init_method(value):
    return _enum(value, _INIT, InitMethod, "init")


def device(value):
    return _enum(value, _DEVICE, Device, "device")


def make_params(params=None, **kwargs):
    """A validated copy of `params` (a GmmParams, or None for the defaults)
    with the keyword arguments applied on top."""
    if params is None:
        p = GmmParams()
    elif isinstance(params, GmmParams):
        p = copy.copy(params)
    else:
        raise TypeError(f"params must be a faiss_gmm.GmmParams, got {type(params).__name__}")
    for name, value in kwargs.items():
        if name not in PARAM_NAMES:
            raise TypeError(f"unknown GMM parameter {name!r}; valid names: {', '.join(PARAM_NAMES)}")
        if name == "covariance_type":
            value = covariance_type(value)
        elif name == "init":
            value = init_method(value)
        elif name == "device":
            value = device(value)
        setattr(p, name, value)
    p.validate()  # std::invalid_argument -> ValueError naming the field
    return p
