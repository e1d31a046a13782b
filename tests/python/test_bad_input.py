"""The bad-input matrix at the Python boundary (issue 7): every malformed input
is a clear exception naming the problem, raised before FAISS (whose asserts
abort the process) sees it; nothing crashes, hangs or returns garbage."""

import os
import warnings

import faiss
import numpy as np
import pytest

import faiss_gmm

D = 8


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((4, D)) * 5
    return (centers[rng.integers(0, 4, 800)] + rng.standard_normal((800, D))).astype(np.float32)


@pytest.fixture(scope="module")
def index_bytes(x):
    idx = faiss_gmm.index_factory(D, "IVF4_GMM,Flat", niter=5, seed=1)
    idx.train(x)
    idx.add(x[:100])
    return np.asarray(faiss_gmm.serialize_index(idx)), faiss.serialize_index(idx).size


# ---------------------------------------------------------------- estimator

@pytest.mark.parametrize("pos", [(0, 0), (799, D - 1), (123, 3)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_anywhere(x, pos, bad):
    y = x.copy()
    y[pos] = bad
    with pytest.raises(ValueError, match=rf"\b{pos[0]}\b"):
        faiss_gmm.GaussianMixture(3, random_state=0).fit(y)
    with pytest.raises(ValueError, match=rf"\b{pos[0]}\b"):
        faiss_gmm.train_ivf(faiss.index_factory(D, "IVF3,Flat"), y)


@pytest.mark.parametrize("k", [0, -2, 2.5, "3"])
def test_bad_n_components(x, k):
    with pytest.raises(ValueError, match="n_components"):
        faiss_gmm.GaussianMixture(k).fit(x)


def test_sizes(x):
    with pytest.raises(ValueError, match="n_samples"):
        faiss_gmm.GaussianMixture(801).fit(x)  # K > N
    # scikit-learn's messages (check_estimator looks for them).
    with pytest.raises(ValueError, match=r"0 sample\(s\) \(shape=\(0, 8\)\) while a minimum of 1"):
        faiss_gmm.GaussianMixture(1).fit(np.zeros((0, D), np.float32))  # N = 0
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(10, 0\)\) while a minimum of 1"):
        faiss_gmm.GaussianMixture(1).fit(np.zeros((10, 0), np.float32))  # d = 0
    with pytest.raises(ValueError, match="2D"):
        faiss_gmm.GaussianMixture(1).fit(x[:, 0])
    idx = faiss_gmm.index_factory(D, "IVF64_GMM,Flat")
    with pytest.raises(ValueError, match="nlist"):
        faiss_gmm.train_ivf(faiss.index_factory(D, "IVF64,Flat"), x[:50])
    # Through faiss's own train(): our C++ check, as faiss's RuntimeError.
    with pytest.raises(RuntimeError, match="only N = 50"):
        idx.train(x[:50])


def test_dimension_mismatch(x):
    gm = faiss_gmm.GaussianMixture(2, random_state=0).fit(x)
    for method in (gm.predict, gm.predict_proba, gm.score_samples):
        with pytest.raises(ValueError, match=str(D)):
            method(x[:, :5])
    with pytest.raises(ValueError, match="shape"):
        faiss_gmm.train_ivf(faiss.index_factory(D + 1, "IVF4,Flat"), x)
    with pytest.raises(ValueError, match="means_init"):
        faiss_gmm.GaussianMixture(2, means_init=np.zeros((2, D + 1))).fit(x)


def test_unsupported_dtypes(x):
    # As scikit-learn: complex data and strings are refused, sparse matrices too.
    with pytest.raises(ValueError, match="Complex data not supported"):
        faiss_gmm.GaussianMixture(1).fit(x.astype(np.complex64))
    with pytest.raises(ValueError, match="not compatible with arrays of bytes/strings"):
        faiss_gmm.GaussianMixture(1).fit(np.array([["a"] * D] * 10))
    with pytest.raises(TypeError, match="sparse"):
        scipy_sparse = pytest.importorskip("scipy.sparse")
        faiss_gmm.GaussianMixture(1).fit(scipy_sparse.csr_matrix(x))


def test_integer_and_object_input_is_converted_to_float64(x):
    # As scikit-learn's check_array(dtype="numeric"): the same model as from the float64 array.
    xi = np.round(x * 10).astype(np.int64)
    ref = faiss_gmm.GaussianMixture(3, random_state=0, max_iter=3).fit(xi.astype(np.float64))
    for variant in (xi, xi.astype(np.int32), xi.astype(object)):
        got = faiss_gmm.GaussianMixture(3, random_state=0, max_iter=3).fit(variant)
        assert np.array_equal(got.means_, ref.means_)
        assert np.array_equal(got.predict(variant), ref.predict(xi.astype(np.float64)))


def test_uint8_data_is_read_as_bytes_not_floats():
    # uint8 rows are accepted as values 0..255 (not reinterpreted as float bits).
    rng = np.random.default_rng(3)
    u8 = rng.integers(0, 256, (600, 4)).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = faiss_gmm.GaussianMixture(2, random_state=0, max_iter=5).fit(u8)
    assert np.all(np.isfinite(gm.means_)) and gm.means_.min() >= 0 and gm.means_.max() <= 255


# ---------------------------------------------------------------- factory strings

@pytest.mark.parametrize("desc", ["IVF16_GMM,Foo", "IVF_GMM,Flat", "IVFx_GMM,Flat", "IVF16_GMMtied,Flat",
                                  "IVF16_GMM,IVF8_GMM,Flat", "IVF16,Flat", "HNSW32", ""])
def test_unsupported_factory_strings(desc):
    with pytest.raises(ValueError):
        faiss_gmm.index_factory(D, desc)


def test_inner_product_refused():
    with pytest.raises(ValueError, match="METRIC_L2"):
        faiss_gmm.index_factory(D, "IVF16_GMM,Flat", faiss.METRIC_INNER_PRODUCT)


# ---------------------------------------------------------------- corrupt index bytes and files

def test_corrupt_index_bytes(index_bytes):
    full, prefix = index_bytes
    assert prefix < full.size, "no GMM trailer was written"
    garbage = ((np.arange(4096) * 131 + 7) % 256).astype(np.uint8)
    for bad in (full[:3], full[: prefix // 2], garbage):
        with pytest.raises(RuntimeError):
            faiss_gmm.deserialize_index(bad)
    for cut in (2, 9, 30, 100):
        with pytest.raises(RuntimeError, match="truncated"):
            faiss_gmm.deserialize_index(full[: prefix + cut])
    bad = full.copy()
    bad[prefix] ^= 0xFF
    with pytest.raises(RuntimeError, match="magic"):
        faiss_gmm.deserialize_index(bad)
    bad = full.copy()
    bad[prefix + 8: prefix + 16] = np.frombuffer(np.int64(1 << 40).tobytes(), np.uint8)
    with pytest.raises(RuntimeError, match="implausible K"):
        faiss_gmm.deserialize_index(bad)


def test_corrupt_index_files(tmp_path, index_bytes):
    full, prefix = index_bytes
    with pytest.raises(RuntimeError):
        faiss_gmm.read_index(tmp_path / "missing.index")
    (tmp_path / "empty.index").write_bytes(b"")
    with pytest.raises(RuntimeError):
        faiss_gmm.read_index(tmp_path / "empty.index")
    (tmp_path / "cut.index").write_bytes(full[:-10].tobytes())
    with pytest.raises(RuntimeError, match="truncated"):
        faiss_gmm.read_index(tmp_path / "cut.index")
    (tmp_path / "ok.index").write_bytes(full.tobytes())
    assert faiss_gmm.is_gmm_index(faiss_gmm.read_index(os.fspath(tmp_path / "ok.index")))
