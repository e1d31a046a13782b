"""faiss_gmm.index_factory / train_ivf / I/O: the objects are faiss's own
Python indexes and every faiss function works on them."""

import faiss
import numpy as np
import pytest

from estep_bounds import U, gamma
import faiss_gmm

D = 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((40, D)).astype(np.float32) * 4
    xb = centers[rng.integers(0, 40, 6000)] + rng.standard_normal((6000, D)).astype(np.float32)
    xq = xb[:50] + 0.1 * rng.standard_normal((50, D)).astype(np.float32)
    return xb[:3000], xb, xq


@pytest.fixture(scope="module")
def trained(data):
    xt, xb, _ = data
    # PQ4x4: 16 centroids per sub-quantizer keeps faiss's own PQ training quick.
    idx = faiss_gmm.index_factory(D, "IVF32_GMM,PQ4x4", niter=8, seed=3)
    idx.train(xt)
    idx.add(xb)
    return idx


def test_factory_returns_a_faiss_index(data):
    idx = faiss_gmm.index_factory(D, "IVF32_GMM,Flat")
    assert isinstance(idx, faiss.Index)
    assert isinstance(idx, faiss.IndexIVFFlat)
    assert faiss_gmm.is_gmm_index(idx)
    assert not idx.is_trained
    assert faiss_gmm.get_gmm_model(idx) is None  # untrained


def test_train_add_search(trained, data):
    _, xb, xq = data
    assert trained.is_trained and trained.ntotal == len(xb)
    model = faiss_gmm.get_gmm_model(trained)
    assert model.K == 32 and model.d == D
    assert model.means.shape == (32, D) and model.variances.shape == (32,)
    # Each row's float responsibilities sum to 1 within γ_2 + γ_{K−1}; N_k are float sums of
    # 256-row blocks (γ_256), then float32 log w (u|log w|): |Σ w − 1| <= γ_{K+257} + u(max|log w| + 1).
    lw = model.log_weights.astype(np.float64)
    tol = gamma(32 + 257) + U * (np.abs(lw).max() + 1)
    assert abs(np.exp(lw).sum() - 1.0) <= tol
    stats = faiss_gmm.get_iteration_stats(trained)
    assert 1 <= len(stats) <= 8
    # The quantizer holds the GMM means: that is what IVF assigns with.
    q = faiss.downcast_index(faiss.extract_index_ivf(trained).quantizer)
    np.testing.assert_array_equal(q.reconstruct_n(0, 32), model.means)
    faiss.extract_index_ivf(trained).nprobe = 32
    D_, I = trained.search(xq, 5)
    assert I.shape == (50, 5) and (I >= 0).all()
    # Queries are perturbed database rows: the row itself is usually found. A breakage floor,
    # not a derived bound: every list is probed, but PQ4x4 codes are lossy and their recall is
    # not derived here.
    assert np.mean(I[:, 0] == np.arange(50)) > 0.8


def test_parameter_space_and_extract(trained):
    faiss.ParameterSpace().set_index_parameter(trained, "nprobe", 16)
    ivf = faiss.extract_index_ivf(trained)
    assert ivf.nprobe == 16
    assert ivf.nlist == 32


@pytest.mark.parametrize("description, cov", [
    ("IVF16_GMM,Flat", "spherical"),
    ("IVF16_GMMdiag,SQ8", "diag"),
    ("IVF16_GMMfull,Flat", "full"),
    ("PCA8,IVF16_GMM,Flat", "spherical"),
    ("OPQ4_16,IVF16_GMM,PQ4x4", "spherical"),
    ("IVF16_GMM,PQ4x4fs", "spherical"),
])
def test_factory_variants(description, cov, data):
    xt, xb, xq = data
    idx = faiss_gmm.index_factory(D, description, niter=3)
    # faiss's own OPQ training is slow on this machine (~20 s per 1000 rows).
    idx.train(xt[:400] if description.startswith("OPQ") else xt[:2000])
    model = faiss_gmm.get_gmm_model(idx)
    assert model is not None and model.K == 16
    # (A parenthesized mapping: `a == b if c else d` asserted the truthy enum d for spherical.)
    assert model.covariance_type == {"spherical": faiss_gmm.CovarianceType.Spherical,
                                     "diag": faiss_gmm.CovarianceType.Diagonal,
                                     "full": faiss_gmm.CovarianceType.Full}[cov]
    idx.add(xb[:1000])
    _, I = idx.search(xq[:5], 3)
    assert (I >= 0).all()


def test_faiss_write_read_gives_plain_ivf(trained, data, tmp_path):
    _, _, xq = data
    faiss.ParameterSpace().set_index_parameter(trained, "nprobe", 8)
    fname = str(tmp_path / "plain.index")
    faiss.write_index(trained, fname)
    back = faiss.read_index(fname)
    assert isinstance(back, faiss.IndexIVFPQ)
    assert not faiss_gmm.is_gmm_index(back)  # the GMM model is not in a faiss file...
    faiss.ParameterSpace().set_index_parameter(back, "nprobe", 8)
    # ... but the index searches identically: the quantizer's means are saved.
    np.testing.assert_array_equal(back.search(xq, 5)[1], trained.search(xq, 5)[1])
    # faiss.serialize_index too.
    back2 = faiss.deserialize_index(faiss.serialize_index(trained))
    back2.nprobe = 8
    np.testing.assert_array_equal(back2.search(xq, 5)[1], trained.search(xq, 5)[1])


def test_faiss_gmm_write_read_keeps_the_model(trained, data, tmp_path):
    _, _, xq = data
    faiss.ParameterSpace().set_index_parameter(trained, "nprobe", 8)
    fname = str(tmp_path / "gmm.index")
    faiss_gmm.write_index(trained, fname)
    back = faiss_gmm.read_index(fname)
    assert isinstance(back, faiss.IndexIVFPQ) and faiss_gmm.is_gmm_index(back)
    m0, m1 = faiss_gmm.get_gmm_model(trained), faiss_gmm.get_gmm_model(back)
    np.testing.assert_array_equal(m0.means, m1.means)
    np.testing.assert_array_equal(m0.variances, m1.variances)
    np.testing.assert_array_equal(m0.log_weights, m1.log_weights)
    assert faiss_gmm.get_gmm_params(back).niter == 8
    assert back.nprobe == 8 and back.ntotal == trained.ntotal
    np.testing.assert_array_equal(back.search(xq, 5)[1], trained.search(xq, 5)[1])
    # A faiss_gmm file is still a valid faiss file (the trailer comes after).
    plain = faiss.read_index(fname)
    np.testing.assert_array_equal(plain.search(xq, 5)[1], trained.search(xq, 5)[1])
    # Serialization round trip, and faiss_gmm reading a plain faiss file.
    back2 = faiss_gmm.deserialize_index(faiss_gmm.serialize_index(trained))
    np.testing.assert_array_equal(faiss_gmm.get_gmm_model(back2).variances, m0.variances)
    faiss.write_index(trained, str(tmp_path / "plain.index"))
    assert not faiss_gmm.is_gmm_index(faiss_gmm.read_index(str(tmp_path / "plain.index")))


def test_corrupt_trailer_is_an_error(trained, tmp_path):
    data = faiss_gmm.serialize_index(trained)
    with pytest.raises(RuntimeError, match="truncated|GMM trailer"):
        faiss_gmm.deserialize_index(data[:-10])
    with pytest.raises(RuntimeError, match="bad magic"):
        faiss_gmm.deserialize_index(np.concatenate([faiss.serialize_index(trained), np.zeros(64, np.uint8)]))


def test_train_ivf_on_a_python_made_index(data):
    xt, xb, xq = data
    quantizer = faiss.IndexFlatL2(D)
    ivf = faiss.IndexIVFFlat(quantizer, D, 16)
    faiss_gmm.train_ivf(ivf, xt, niter=4, covariance_type="diag")
    assert ivf.is_trained and faiss_gmm.get_gmm_model(ivf).variances.shape == (16, D)
    ivf.add(xb)
    assert ivf.search(xq, 4)[1].shape == (50, 4)
    # Behind a pre-transform, with a GmmParams object.
    p = faiss_gmm.GmmParams()
    p.niter = 3
    idx = faiss.index_factory(D, "PCA8,IVF16,Flat")
    faiss_gmm.train_ivf(idx, xt, p)
    assert faiss_gmm.get_gmm_model(idx).d == 8
    idx.add(xb)
    assert idx.search(xq, 4)[1].shape == (50, 4)


def test_factory_errors(data):
    xt = data[0]
    with pytest.raises(ValueError, match="no IVF<nlist>_GMM"):
        faiss_gmm.index_factory(D, "IVF16,Flat")
    with pytest.raises(ValueError, match="only IVF<nlist>_GMM"):
        faiss_gmm.index_factory(D, "IVF16_GMMtied,Flat")
    with pytest.raises(ValueError, match="spill"):
        faiss_gmm.index_factory(D, "IVF16_GMM_spill1.2,Flat")
    with pytest.raises(ValueError, match="METRIC_L2"):
        faiss_gmm.index_factory(D, "IVF16_GMM,Flat", faiss.METRIC_INNER_PRODUCT)
    with pytest.raises(ValueError, match="FAISS cannot build"):
        faiss_gmm.index_factory(D, "IVF16_GMM,Blah")
    with pytest.raises(TypeError, match="unknown GMM parameter"):
        faiss_gmm.index_factory(D, "IVF16_GMM,Flat", nitre=3)
    with pytest.raises(ValueError, match="niter"):
        faiss_gmm.index_factory(D, "IVF16_GMM,Flat", niter=-1)
    with pytest.raises(ValueError, match="contradicts"):
        faiss_gmm.index_factory(D, "IVF16_GMM,Flat", covariance_type="diag")
    with pytest.raises(ValueError, match="device"):
        faiss_gmm.index_factory(D, "IVF16_GMM,Flat", device="tpu")
    trained = faiss.index_factory(D, "IVF16,Flat")
    trained.train(xt)
    with pytest.raises(ValueError, match="already trained"):
        faiss_gmm.train_ivf(trained, xt)
    with pytest.raises(ValueError, match="not an IndexIVF"):
        faiss_gmm.train_ivf(faiss.IndexFlatL2(D), xt)
    with pytest.raises(TypeError, match="faiss.Index"):
        faiss_gmm.train_ivf("not an index", xt)
    # Too few training vectors for nlist, NaN: train_ivf checks first (ValueError);
    # through faiss's own idx.train the C++ message arrives as faiss's RuntimeError.
    idx = faiss_gmm.index_factory(D, "IVF64_GMM,Flat")
    with pytest.raises(ValueError, match="nlist = 64"):
        faiss_gmm.train_ivf(idx, xt[:10])
    with pytest.raises(RuntimeError, match="N >= K"):
        idx.train(xt[:10])
    bad = xt.copy()
    bad[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        faiss_gmm.train_ivf(faiss_gmm.index_factory(D, "IVF16_GMM,Flat"), bad)
    with pytest.raises(RuntimeError, match="NaN"):
        faiss_gmm.index_factory(D, "IVF16_GMM,Flat").train(bad)


def test_cuda_device_without_cuda(data):
    if faiss_gmm.cuda_available():
        pytest.skip("a CUDA backend is available")
    idx = faiss_gmm.index_factory(D, "IVF16_GMM,Flat", device="cuda")
    with pytest.raises(RuntimeError, match="CUDA|Cuda"):
        idx.train(data[0])


def test_index_outlives_python_references(data):
    """The IVF owns the GmmQuantizer: dropping every other reference and
    collecting garbage must leave a working index (and not crash at exit)."""
    import gc
    xt, xb, xq = data
    idx = faiss_gmm.index_factory(D, "IVF16_GMM,Flat", niter=2)
    q = faiss.extract_index_ivf(idx).quantizer  # non-owning wrapper
    del q
    gc.collect()
    idx.train(xt)
    idx.add(xb)
    assert idx.search(xq, 1)[1].shape == (50, 1)
    del idx
    gc.collect()


def test_factory_parses_with_the_library_parser():
    # faiss_gmm.index_factory reads descriptions through the C++ parser of the IVF
    # token (faiss_gmm/ivf_token.h), the one the C++ factory and the evaluation use.
    p = faiss_gmm._core.parse_ivf_description("OPQ8_16,IVF64_GMMdiag_soar_spill1.5,PQ8")
    assert p["found"] and p["gmm"] and p["spill"]
    assert p["spill_rule"] == "soar"
    assert p["covariance_type"] == faiss_gmm._core.CovarianceType.Diagonal
    assert p["faiss_description"] == "OPQ8_16,IVF64,PQ8"
    assert p["nlist"] == 64 and p["token"] == "IVF64_GMMdiag_soar_spill1.5"
    assert p["option_items"] == ["GMMdiag", "soar", "spill1.5"]
    assert faiss_gmm._core.parse_ivf_description("IVF64_HNSW32,Flat")["faiss_ivf_token"] == "IVF64_HNSW32"
    with pytest.raises(ValueError, match="was removed"):
        faiss_gmm.index_factory(D, "IVF16_GMM_probepost,Flat")
    with pytest.raises(ValueError, match="only IVF<nlist>_GMM"):
        faiss_gmm.index_factory(D, "IVF16_HNSW32,Flat")
