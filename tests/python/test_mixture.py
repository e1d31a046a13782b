"""faiss_gmm.GaussianMixture against sklearn.mixture.GaussianMixture."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import faiss_gmm
from faiss_gmm import GaussianMixture

N_ITER = 12


def start(x, centers, cov, seed=1):
    """The same starting model for both: perturbed true centers, uniform
    weights, unit precisions."""
    rng = np.random.default_rng(seed)
    k, d = centers.shape
    means = centers + rng.standard_normal((k, d))
    prec = {"spherical": np.full(k, 0.8), "diag": np.full((k, d), 0.8),
            "full": np.tile(0.8 * np.eye(d), (k, 1, 1))}[cov]
    return dict(means_init=means, weights_init=np.full(k, 1.0 / k), precisions_init=prec)


def sklearn_lower_bounds(x, k, cov, init, n_iter):
    """sklearn's lower bound at every iteration: one EM iteration per fit() with
    warm_start, so lower_bound_ after fit i is that of iteration i."""
    sk = SkGaussianMixture(k, covariance_type=cov, max_iter=1, warm_start=True, reg_covar=1e-6, **init)
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after each single iteration
        for _ in range(n_iter):
            sk.fit(x)
            bounds.append(sk.lower_bound_)
    return np.array(bounds), sk


@pytest.mark.parametrize("cov", ["spherical", "diag", "full"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_sklearn_iteration_by_iteration(blobs, cov, dtype):
    x, labels, centers = blobs
    k = centers.shape[0]
    init = start(x, centers, cov)
    ours = GaussianMixture(k, covariance_type=cov, max_iter=N_ITER, tol=0, **init)
    ours.fit(x.astype(dtype))
    ref, sk = sklearn_lower_bounds(x, k, cov, init, N_ITER)
    assert ours.n_iter_ == N_ITER and len(ours.lower_bounds_) == N_ITER
    np.testing.assert_allclose(ours.lower_bounds_, ref, rtol=1e-4)
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-4)
    np.testing.assert_allclose(ours.weights_, sk.weights_, atol=1e-5)
    np.testing.assert_allclose(ours.means_, sk.means_, atol=1e-3)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-3)
    # Predictions on well-separated data: identical labels, matching posteriors.
    np.testing.assert_array_equal(ours.predict(x), sk.predict(x))
    np.testing.assert_allclose(ours.predict_proba(x), sk.predict_proba(x), atol=1e-4)
    np.testing.assert_allclose(ours.score_samples(x), sk.score_samples(x), rtol=1e-4)
    assert ours.score(x) == pytest.approx(sk.score(x), rel=1e-4)
    assert ours.bic(x) == pytest.approx(sk.bic(x), rel=1e-4)
    assert ours.aic(x) == pytest.approx(sk.aic(x), rel=1e-4)


@pytest.mark.parametrize("cov", ["spherical", "diag", "full"])
def test_attribute_shapes_as_sklearn(blobs, cov):
    x, _, centers = blobs
    k, d = centers.shape
    ours = GaussianMixture(k, covariance_type=cov, max_iter=5, random_state=0).fit(x)
    sk = SkGaussianMixture(k, covariance_type=cov, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(x)
    for name in ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]:
        assert getattr(ours, name).shape == getattr(sk, name).shape, name
        assert getattr(ours, name).dtype == np.float64, name
    assert isinstance(ours.converged_, bool) and isinstance(ours.n_iter_, int)
    assert isinstance(ours.lower_bound_, float)
    assert ours.n_features_in_ == d
    assert ours.predict(x).shape == (len(x),)
    assert ours.predict_proba(x).shape == (len(x), k)
    np.testing.assert_allclose(ours.predict_proba(x).sum(axis=1), 1.0, rtol=1e-5)
    assert ours.score_samples(x).shape == (len(x),)


def test_own_initialization_converges_and_separates(blobs):
    x, labels, centers = blobs
    k = centers.shape[0]
    for init in ["kmeans", "k-means++"]:
        # k-means seeding can merge two blobs (a local optimum): n_init keeps the
        # best of several starts, as in sklearn.
        gm = GaussianMixture(k, init_params=init, n_init=8, random_state=0, tol=1e-6, max_iter=200).fit(x)
        assert gm.converged_ and gm.n_iter_ < 200
        pred = gm.predict(x)
        # Each true cluster maps to one component (up to relabelling).
        assert len({(a, b) for a, b in zip(labels, pred)}) == k
    # fit_predict, n_init, warm_start, get/set_params.
    gm = GaussianMixture(k, n_init=2, random_state=3)
    assert gm.fit_predict(x).shape == (len(x),)
    gm.set_params(warm_start=True, max_iter=3)
    lb = gm.lower_bound_
    gm.fit(x)
    assert gm.lower_bound_ >= lb - 1e-6
    assert gm.get_params()["max_iter"] == 3
    xs, ls = gm.sample(100, random_state=0)
    assert xs.shape == (100, x.shape[1]) and ls.shape == (100,)


def test_means_init_only(blobs):
    """sklearn semantics: what is not given comes from the data."""
    x, _, centers = blobs
    k = centers.shape[0]
    gm = GaussianMixture(k, means_init=centers, max_iter=20, tol=1e-6).fit(x)
    sk = SkGaussianMixture(k, covariance_type="spherical", means_init=centers, max_iter=20, tol=1e-6).fit(x)
    np.testing.assert_array_equal(gm.predict(x), sk.predict(x))
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-4)
    gm2 = GaussianMixture(k, weights_init=np.full(k, 1.0 / k), random_state=0, max_iter=20).fit(x)
    assert gm2.converged_


def test_uint8_input():
    rng = np.random.default_rng(5)
    centers = rng.integers(30, 220, (4, 16))
    lab = rng.integers(0, 4, 2000)
    x8 = np.clip(centers[lab] + rng.normal(0, 4, (2000, 16)), 0, 255).astype(np.uint8)
    a = GaussianMixture(4, covariance_type="diag", random_state=0, max_iter=20).fit(x8)
    b = GaussianMixture(4, covariance_type="diag", random_state=0, max_iter=20).fit(x8.astype(np.float32))
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-5)
    np.testing.assert_array_equal(a.predict(x8), b.predict(x8.astype(np.float32)))


def test_no_convergence_warns(blobs):
    x, _, centers = blobs
    with pytest.warns(faiss_gmm.ConvergenceWarning, match="did not converge"):
        GaussianMixture(centers.shape[0], max_iter=1, tol=1e-9, random_state=0).fit(x)


@pytest.mark.filterwarnings("ignore::faiss_gmm.ConvergenceWarning")
def test_bad_input(blobs):
    x, _, _ = blobs
    gm = GaussianMixture(3, max_iter=2, random_state=0)
    with pytest.raises(ValueError, match="dtype int64"):
        gm.fit(x.astype(np.int64))
    with pytest.raises(ValueError, match="2D"):
        gm.fit(x[:, 0])
    with pytest.raises(ValueError, match="empty"):
        gm.fit(np.zeros((0, 4), np.float32))
    bad = x.copy()
    bad[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*row 17|row 17.*NaN"):
        gm.fit(bad)
    bad[17, 2] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        gm.fit(bad)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(10).fit(x[:5])
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixture(3, covariance_type="tied").fit(x)
    d = x.shape[1]
    with pytest.raises(ValueError, match=r"precisions_init should have the shape \(3, 8, 8\)"):
        GaussianMixture(3, covariance_type="full", precisions_init=np.ones((3, d))).fit(x)
    not_pd = np.tile(np.eye(d), (3, 1, 1))
    not_pd[1, 0, 0] = -1.0
    with pytest.raises(ValueError, match=r"precisions_init\[1\] should be symmetric, positive-definite"):
        GaussianMixture(3, covariance_type="full", precisions_init=not_pd).fit(x)
    with pytest.raises(ValueError, match="init_params"):
        GaussianMixture(3, init_params="random").fit(x)
    with pytest.raises(ValueError, match="means_init should have the shape"):
        GaussianMixture(3, means_init=np.zeros((2, x.shape[1]))).fit(x)
    with pytest.raises(ValueError, match="weights_init should be normalized"):
        GaussianMixture(3, weights_init=np.array([0.5, 0.5, 0.5])).fit(x)
    with pytest.raises(ValueError, match="precisions_init should be positive"):
        GaussianMixture(3, precisions_init=np.array([1.0, -1.0, 1.0])).fit(x)
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianMixture(3, reg_covar=-1).fit(x)
    with pytest.raises(faiss_gmm.NotFittedError):
        GaussianMixture(3).predict(x)
    gm.fit(x)
    with pytest.raises(ValueError, match="features"):
        gm.predict(x[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        gm.predict(bad * np.nan)
    with pytest.raises(ValueError, match="dtype"):
        gm.predict_proba(x.astype(np.complex64))
    if not faiss_gmm.cuda_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            GaussianMixture(3, device="cuda").fit(x)
    # device="auto" falls back to the CPU.
    assert GaussianMixture(3, device="auto", max_iter=2, random_state=0).fit(x).backend_


def test_predict_never_makes_n_by_k():
    """predict / score_samples on 200k rows × 512 components would need
    400 MB for the posteriors: their peak extra memory must stay far below.
    Checked through the process's peak RSS in a subprocess."""
    code = r"""
import numpy as np, faiss_gmm
def status(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":")) / 1024
rng = np.random.default_rng(0)
x = rng.standard_normal((200_000, 8)).astype(np.float32)
gm = faiss_gmm.GaussianMixture(512, max_iter=1, tol=0, max_points_per_centroid=8, random_state=0).fit(x[:20_000])
gm.predict(x[:1000]); gm.score_samples(x[:1000])
labels = np.empty(len(x), np.int64); ll = np.empty(len(x))  # the outputs themselves (3.2 MB)
del labels, ll
open("/proc/self/clear_refs", "w").write("5")  # peak RSS mark := current RSS
before = status("VmRSS")
labels = gm.predict(x); ll = gm.score_samples(x)
print(status("VmHWM") - before)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    extra_mib = float(out.stdout.strip().splitlines()[-1])
    assert extra_mib < 100, f"predict/score_samples grew the peak RSS by {extra_mib:.0f} MiB"


@pytest.mark.parametrize("cov", ["spherical", "diag"])
def test_score_samples_exact_for_narrow_and_collapsed_components(cov):
    """Issue 13: with sklearn's reg_covar = 1e-6 a component can collapse onto a
    row; the float32 expanded distance then cancels. score_samples and
    predict_proba must match a direct float64 evaluation (Σ (x − μ)² / σ², not
    the expanded form, which cancels even in sklearn's float64 here: by ~2 nats
    on the collapsed row): log p(x) within 1e-6 relative, responsibilities within
    1e-5 (the C++ test states the bounds). The engine holds rows and models in
    float32, so the reference gets the same float32 values: what is compared is
    the arithmetic, not the rounding of the inputs."""
    rng = np.random.default_rng(5)
    n, d = 500, 12
    f32 = lambda a: np.asarray(a, dtype=np.float32).astype(np.float64)
    x = f32(1000.0 + rng.standard_normal((n, d)))
    means = f32(np.stack([x[0], x[1], x.mean(0), x.mean(0) + np.r_[1e-4, np.zeros(d - 1)], x[5], x[9]]))
    var = f32([1e-6, 1e-9, 1.0, 1.0, 2.0, 2.0])
    weights = np.exp(f32(np.log(np.full(6, 1 / 6))))
    variances = var if cov == "spherical" else np.repeat(var[:, None], d, axis=1)
    full_var = np.repeat(var[:, None], d, axis=1)
    log_joint = (np.log(weights)[None, :] - 0.5 * np.sum(np.log(2 * np.pi * full_var), axis=1)[None, :]
                 - 0.5 * np.sum((x[:, None, :] - means[None, :, :]) ** 2 / full_var[None, :, :], axis=2))
    mx = log_joint.max(axis=1, keepdims=True)
    want = (mx + np.log(np.exp(log_joint - mx).sum(axis=1, keepdims=True)))[:, 0]
    want_proba = np.exp(log_joint - want[:, None])
    ctype = faiss_gmm._core.CovarianceType.Spherical if cov == "spherical" else faiss_gmm._core.CovarianceType.Diagonal
    ours = GaussianMixture(6, covariance_type=cov)
    ours.model_ = faiss_gmm._core.GmmModel.from_arrays(weights, means, variances, ctype)
    ours.n_features_in_ = d
    got = ours.score_samples(x)
    assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) <= 1e-6
    assert np.max(np.abs(ours.predict_proba(x) - want_proba)) <= 1e-5
    assert ours.predict(x)[0] == 0 and ours.predict(x)[1] == 1


def test_estimator_and_index_share_the_library_posteriors():
    """GaussianMixture.predict / score_samples and an IVF's GmmQuantizer (what its
    spill rules use) both evaluate posteriors through faiss_gmm::GmmPosteriors, with
    the same centering: on the index's own model they give the same numbers, bit for
    bit (tests/test_posteriors.cpp checks that API against float64)."""
    import faiss
    rng = np.random.default_rng(3)
    d = 16
    x = (100.0 + rng.standard_normal((4000, d)) + np.repeat(rng.standard_normal((8, d)) * 4, 500, axis=0))
    x = x.astype(np.float32)
    index = faiss_gmm.index_factory(d, "IVF8_GMMdiag,Flat", niter=5)
    index.train(x)
    model = faiss_gmm.get_gmm_model(index)
    log_resp, loglik = faiss_gmm._core.index_log_posteriors(int(index.this), x)
    est = GaussianMixture(8, covariance_type="diag")
    est.model_ = model
    est.n_features_in_ = d
    assert np.array_equal(est.score_samples(x), loglik.astype(np.float64))
    assert np.array_equal(est.predict(x), np.argmax(log_resp, axis=1))
    assert isinstance(index, faiss.Index)
