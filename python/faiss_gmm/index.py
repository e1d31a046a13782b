"""GMM-trained IVF indexes that are faiss's own Python objects.

The index is always created by faiss's Python package (python3-faiss): we
rewrite the description ("IVF1024_GMM,PQ16" -> "IVF1024,PQ16"), call
faiss.index_factory, and put a GmmQuantizer into its IVF through the C++
address `int(index.this)`. The IVF owns the quantizer (own_fields), so the
Python wrapper of the index is the one owner of everything and C++ keeps no
pointer to it after a call returns. From then on faiss's own train() calls the
quantizer's virtual train(), which runs EM.

Saving: faiss.write_index writes such an index as a plain FAISS index (the
quantizer is an IndexFlatL2 subclass, written as a flat index holding the
means); faiss.read_index reads it back as a plain IVF that searches exactly the
same but has lost the GMM (weights, variances). faiss_gmm.write_index /
read_index / serialize_index / deserialize_index write the same FAISS bytes
(through faiss's own writer) followed by the trailer and checksum of gmm_io (C++:
faiss_gmm/gmm_io.h, so files pass between C++ and Python with every setting), and
read it back with the GmmQuantizer re-installed.
"""

import os
import types
import warnings

import faiss
import numpy as np

from . import _core
from ._params import PARAM_NAMES as _PARAM_NAMES
from ._params import covariance_type as _covariance_type
from ._params import make_params

__all__ = [
    "index_factory", "train_ivf", "write_index", "read_index", "serialize_index", "deserialize_index",
    "is_gmm_index", "get_gmm_model", "get_gmm_params", "get_iteration_stats", "UnverifiedIndexWarning",
]


def _ptr(index):
    """The C++ address of a faiss index object from faiss's Python package."""
    if not isinstance(index, faiss.Index):
        raise TypeError(f"expected a faiss.Index (from faiss's Python package), got {type(index).__name__}")
    return int(index.this)


def index_factory(d, description, metric=faiss.METRIC_L2, params=None, **kwargs):
    """faiss.index_factory plus the coarse-quantizer tokens IVF<nlist>_GMM
    (spherical covariances), IVF<nlist>_GMMdiag (diagonal) and IVF<nlist>_GMMfull (full).

    Returns the index faiss.index_factory builds for the description without
    "_GMM" (a faiss.Index of faiss's own package), whose IVF's coarse quantizer
    is trained by EM when idx.train(xt) is called. GMM settings come from
    `params` (a GmmParams) and/or keyword arguments named as GmmParams' fields:
    niter, tol, seed, init ("kmeans" | "k-means++"), init_niter,
    max_points_per_centroid, min_points_per_centroid, min_variance_ratio,
    reg_covar, min_component_weight, device ("cpu" | "cuda" | "auto"),
    fast_math, chunk_size, block_size, verbose. The covariance type comes from
    the token. Only METRIC_L2 (GMM densities are Euclidean; for cosine search
    normalize the vectors and use L2, which ranks them identically).
    """
    parsed = _core.parse_ivf_description(description)  # the C++ parser; ValueError for a malformed token
    # Options beyond _GMM / _GMMdiag / _GMMfull (spill: IVF1024_GMM_spill1.2, _soar, _gsoar, _resp, ...)
    # need an index type that faiss's SWIG layer does not know (faiss_gmm.spill has
    # it), and IVF tokens of FAISS's own with options (IVF64_HNSW32) are not GMM:
    # refused here instead of silently dropped.
    odd = parsed["token"] if parsed["found"] and len(parsed["option_items"]) != 1 else parsed["faiss_ivf_token"]
    if odd:
        raise ValueError(f'"{odd}" in "{description}": only IVF<nlist>_GMM, _GMMdiag and _GMMfull are '
                         "supported by faiss_gmm.index_factory in Python (spill / probing options are not "
                         "available from Python yet)")
    if not parsed["gmm"]:
        raise ValueError(f'"{description}" has no IVF<nlist>_GMM, _GMMdiag or _GMMfull token '
                         "(use faiss.index_factory for plain FAISS indexes)")
    faiss_description, cov = parsed["faiss_description"], parsed["covariance_type"]
    if metric != faiss.METRIC_L2:
        raise ValueError(f"faiss_gmm.index_factory supports only faiss.METRIC_L2 (got metric {metric}); for "
                         "cosine / inner-product search of normalized vectors use L2, which ranks them identically")
    if "covariance_type" in kwargs and _covariance_type(kwargs["covariance_type"]) != cov:
        raise ValueError(f"covariance_type={kwargs['covariance_type']!r} contradicts the description "
                         f'"{description}" (use IVF<n>_GMM for spherical, IVF<n>_GMMdiag for diagonal, IVF<n>_GMMfull for full)')
    p = make_params(params, **kwargs)
    p.covariance_type = cov
    try:
        index = faiss.index_factory(int(d), faiss_description, metric)
    except RuntimeError as e:
        raise ValueError(f'FAISS cannot build "{faiss_description}" (from "{description}"): {e}') from None
    _core.install_gmm_quantizer(_ptr(index), p)
    return _keep_gmm_on_pickle(index)


def train_ivf(index, xt, params=None, **kwargs):
    """Trains an untrained faiss IVF index (a faiss.Index of faiss's Python
    package: IndexIVF*, or one behind IndexPreTransform / IndexIDMap /
    IndexRefine) with a GMM coarse quantizer, then trains the rest (PQ, SQ,
    OPQ, PCA...) as faiss.Index.train does. Parameters as for index_factory
    (covariance_type="spherical" | "diag" here). Returns the index."""
    ptr = _ptr(index)
    p = make_params(params, **kwargs)
    xt = np.asarray(xt)
    if xt.ndim != 2 or xt.shape[1] != index.d:
        raise ValueError(f"xt must have shape (n, {index.d}), got {xt.shape}")
    xt = np.ascontiguousarray(xt, dtype=np.float32)
    _core.install_gmm_quantizer(ptr, p)  # ValueError for a non-IVF, IP or trained index
    # Checked here so that bad input is a ValueError: raised inside faiss's
    # train() it would reach Python as faiss's generic RuntimeError.
    nlist = _core.ivf_nlist(ptr)  # install_gmm_quantizer found the IVF: not None
    if xt.shape[0] < nlist:
        raise ValueError(f"train_ivf: {xt.shape[0]} training vectors for nlist = {nlist} components "
                         "(need at least nlist; FAISS recommends 39 * nlist or more)")
    for i0 in range(0, xt.shape[0], 65536):  # in blocks: no n×d temporary
        bad = ~np.isfinite(xt[i0:i0 + 65536])
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"train_ivf: xt[{i0 + r}, {c}] is {xt[i0 + r, c]} (NaN or infinity)")
    # faiss's train releases the GIL itself (its SWIG wrappers do, for every call).
    index.train(xt)
    return _keep_gmm_on_pickle(index)


def is_gmm_index(index):
    """True when the index's IVF (or the index itself) has a GmmQuantizer."""
    return _core.has_gmm_quantizer(_ptr(index))


def get_gmm_model(index):
    """A copy of the trained GMM (GmmModel: K, d, covariance_type, log_weights,
    means, variances as numpy arrays), or None when untrained / not GMM."""
    return _core.gmm_model_of_index(_ptr(index))


def get_gmm_params(index):
    """The GmmParams of the index's GmmQuantizer, or None."""
    return _core.gmm_params_of_index(_ptr(index))


def get_iteration_stats(index):
    """Per-iteration statistics (GmmIterationStats) of the last GMM training."""
    return _core.iteration_stats_of_index(_ptr(index))


def _write(index, fname):
    """faiss's Python copy writes the FAISS part into a callback writer; gmm_io
    (C++) checksums it on the way, appends the trailers and the checksum footer,
    and for a file replaces it atomically."""
    ptr = _ptr(index)
    sink = _core.GmmFileWriter(None if fname is None else os.fspath(fname))
    try:
        writer = faiss.PyCallbackIOWriter(sink.write)
        try:
            faiss.write_index(index, writer)
        finally:
            del writer
    except RuntimeError as e:
        sink.abort()
        if sink.error:  # the reason (e.g. "No space left on device"), not faiss's "py err"
            raise RuntimeError(sink.error) from None
        raise
    except BaseException:
        sink.abort()
        raise
    return sink.finish(ptr)


def _note(info):
    if info.note:
        warnings.warn(info.note, UnverifiedIndexWarning, stacklevel=3)


class UnverifiedIndexWarning(UserWarning):
    """A file of an older format (no checksum) was read without verification."""


def write_index(index, fname):
    """The FAISS bytes (faiss.write_index's), the GMM trailer (when the index has
    a trained GmmQuantizer, with its probing settings) and a checksum footer.
    The file is replaced atomically: if writing fails (disk full, size limit) the
    previous file is left intact and the error says why. faiss.read_index can read
    the file too (as a plain IVF); faiss_gmm.read_index restores the GMM."""
    _write(index, fname)


def read_index(fname, io_flags=0):
    """Reads a file written by faiss_gmm.write_index (GmmQuantizer restored) or
    by faiss.write_index (returned as faiss reads it). The checksum is verified
    before faiss parses anything; a damaged file raises RuntimeError. Files of
    the older format (no checksum) read with an UnverifiedIndexWarning. Returns a
    faiss.Index of faiss's own package."""
    fname = os.fspath(fname)
    what = f"read_index: {fname}"
    if not os.path.exists(fname):
        raise RuntimeError(f"{what}: cannot open: no such file")
    reader = faiss.FileIOReader(fname)
    try:
        check = _core.check_file_reader(int(reader.this), what)
        try:
            index = faiss.read_index(reader, io_flags)
        except RuntimeError as e:
            raise RuntimeError(f"{what}: not a readable FAISS index (truncated or corrupt): {e}") from None
        info = _core.finish_read(_ptr(index), int(reader.this), check, what)
    finally:
        del reader
    _note(info)
    return _keep_gmm_on_pickle(index)


def serialize_index(index):
    """Like faiss.serialize_index (a uint8 numpy array), with the GMM trailer and
    the checksum footer."""
    return _write(index, None)


def deserialize_index(data):
    """Inverse of serialize_index (also reads faiss.serialize_index output); the
    checksum is verified before faiss parses anything."""
    data = np.ascontiguousarray(data, dtype=np.uint8).ravel()
    what = "deserialize_index"
    check = _core.check_bytes(data, what)
    reader = faiss.VectorIOReader()
    # Only the FAISS part goes to faiss (what follows it is ours).
    faiss.copy_array_to_vector(data[: check.info.faiss_size] if check.has_footer else data, reader.data)
    try:
        index = faiss.read_index(reader)
    except RuntimeError as e:
        raise RuntimeError(f"{what}: not a readable FAISS index (truncated or corrupt): {e}") from None
    info = _core.finish_read(_ptr(index), int(reader.this), check, what)
    _note(info)
    return _keep_gmm_on_pickle(index)


# ---- pickle / copy.deepcopy ----
# faiss's own pickling (index.__getstate__ = faiss.serialize_index) writes FAISS's
# bytes only: a GMM index would come back as a plain IVF without its model. The
# indexes this module returns carry their own __reduce_ex__ (an instance attribute,
# which pickle and copy look up before the class's) that goes through
# serialize_index / deserialize_index, so the GMM model, its params and the
# probing settings survive. An index that reaches Python another way (e.g.
# faiss.downcast_index of a sub-index) pickles as faiss pickles it.

_ENUM_PARAMS = {"covariance_type": _core.CovarianceType, "init": _core.InitMethod, "device": _core.Device}


def _params_state(p):
    """GmmParams as a dict of plain values (enums as ints), for pickle."""
    return {name: int(getattr(p, name)) if name in _ENUM_PARAMS else getattr(p, name) for name in _PARAM_NAMES}


def _params_from_state(state):
    p = _core.GmmParams()
    for name, value in state.items():
        setattr(p, name, _ENUM_PARAMS[name](value) if name in _ENUM_PARAMS else value)
    p.validate()
    return p


def _reduce_gmm_index(index, protocol):
    # An untrained index has no GMM trailer yet (nothing trained to write), so its
    # quantizer's params travel beside the FAISS bytes and are installed again.
    params = None if get_gmm_model(index) is not None else _params_state(get_gmm_params(index))
    return (_unpickle_gmm_index, (bytes(serialize_index(index)), params))


def _unpickle_gmm_index(data, params):
    index = deserialize_index(np.frombuffer(data, dtype=np.uint8))
    if params is not None:
        _core.install_gmm_quantizer(_ptr(index), _params_from_state(params))
    return _keep_gmm_on_pickle(index)


def _keep_gmm_on_pickle(index):
    """index, made to pickle with its GMM when it has a GmmQuantizer."""
    if is_gmm_index(index):
        index.__reduce_ex__ = types.MethodType(_reduce_gmm_index, index)
    return index
