"""faiss_gmm.GaussianMixture against sklearn.mixture.GaussianMixture."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import faiss_gmm
from estep_bounds import U, U_DOUBLE, estep_bounds, gamma, posterior_bounds, sklearn_delta
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


f32 = lambda a: np.asarray(a, dtype=np.float32).astype(np.float64)  # noqa: E731


def mirrored(blobs):
    """The blobs' rows as float32 values and their mirror images, and the mirrored centers:
    the data mean is exactly 0, so the engine's centering shifts nothing and the bounds of
    estep_bounds (rows in the model's frame) apply to the rows as given."""
    x0, labels, centers = blobs
    return f32(np.vstack([x0, -x0])), np.concatenate([labels, labels + len(centers)]), np.vstack([centers, -centers])


def assert_em_step_within_bounds(x, weights0, means0, variances0, ours, sk, cov):
    """Our EM step and sklearn's float64 step, both from (weights0, means0, variances0)
    (float32 values) on the float32 rows x (center 0): each quantity within a rigorous bound,
    the float32 E-step's (estep_bounds, as tests/error_bounds.h) carried through the M-step,
    plus float32 storage of the result, sklearn's own float64 sums (γ^double_{n+8} of their
    magnitudes) and log-densities (sklearn_delta)."""
    n, d = x.shape
    spherical = cov == "spherical"
    log_w = np.log(weights0)
    # The engine holds log w in float32, normalized: <= u(|log w_k| + max_j |log w_j| + 1) off
    # sklearn's log of the same weights (one rounding each, and the log of their sum).
    extra = (1.01 * U * (np.abs(log_w) + np.abs(log_w).max() + 1)
             + sklearn_delta(x, means0, variances0, log_w, spherical))
    b = estep_bounds(x, means0, variances0, log_w, spherical, 256, extra_delta=extra)
    N = b["N"]
    sk_sum = gamma(n + 8, U_DOUBLE)  # sklearn's n-row float64 sums, relative to their magnitudes
    # log-likelihood of the starting model (mean over rows).
    assert abs(ours.lower_bounds_[-1] - sk.lower_bound_) <= (b["loglik"] + sk_sum * np.abs(b["lse"]).sum()) / n
    # Weights N_k/n: ours off by B_N/n, then float32 log w (u|log w|), then renormalized.
    w = N / n
    w_err = b["nk"] / n + w * 1.01 * U * (np.abs(np.log(w)) + 1)
    w_tol = w_err + w * 1.01 * w_err.sum() + sk_sum * w + 1e-14  # + sklearn's 10·eps in N_k
    assert np.all(np.abs(ours.weights_ - sk.weights_) <= w_tol)
    # Means Σ r x/N: ours off by (B_sx + |μ| B_N)/(N − B_N), then float32 (u|μ|).
    mu = sk.means_
    mu_err = (b["sum_x"] + np.abs(mu) * b["nk"][:, None]) / (N - b["nk"])[:, None]
    mu_abs = np.einsum("ik,ij->kj", b["r"], np.abs(x)) / N[:, None]
    assert np.all(np.abs(ours.means_ - mu) <= mu_err + U * np.abs(mu) + sk_sum * mu_abs)
    # Variances: Σ r (x − μ_old)²/N − (μ − μ_old)² (+ reg_covar): ours off by
    # (B_sq + V_old B_N)/(N − B_N) + (2|shift| + Δμ)Δμ, then float32 (u·v); sklearn's
    # avg x² − 2μ avg x + μ² cancels: γ^double_{n+8} of Σ r (|x| + |μ|)²/N.
    shift = np.abs(mu - means0)
    shift_term = (2 * shift + mu_err) * mu_err
    p_new = np.einsum("ik,ij->kj", b["r"], x ** 2) / N[:, None] + 2 * mu_abs * np.abs(mu) + mu ** 2
    if spherical:
        v_old = np.sum(b["r"] * b["dist"], axis=0) / N
        v_err = ((b["sum_sq"] + v_old * b["nk"]) / (N - b["nk"]) + shift_term.sum(axis=1)) / d
        v_sk = sk_sum * p_new.sum(axis=1) / d
    else:
        v_old = np.einsum("ik,ikj->kj", b["r"], (x[:, None, :] - means0[None]) ** 2) / N[:, None]
        v_err = (b["sum_sq"] + v_old * b["nk"][:, None]) / (N - b["nk"])[:, None] + shift_term
        v_sk = sk_sum * p_new
    v = sk.covariances_
    assert np.all(np.abs(ours.covariances_ - v) <= v_err + U * v + v_sk)


def sklearn_at(model, cov):
    """sklearn's GaussianMixture holding the parameters of our fitted `model` (no fit)."""
    sk = SkGaussianMixture(model.n_components, covariance_type=cov)
    sk.weights_, sk.means_, sk.covariances_ = model.weights_, model.means_, model.covariances_
    sk.precisions_cholesky_ = 1.0 / np.sqrt(model.covariances_)
    sk.precisions_ = 1.0 / model.covariances_
    sk.converged_, sk.n_iter_, sk.lower_bound_ = True, model.n_iter_, model.lower_bound_
    return sk


def assert_posteriors_match_sklearn(model, x, cov):
    """score_samples, predict_proba, predict, score, bic and aic of our fitted model against
    sklearn's float64 evaluation of the same parameters, on float32 rows x (center 0):
    within the bounds of both sides (posterior_bounds; sklearn_delta and its float64
    log-sum-exp, γ^double_{K+8} of |log p| + 1)."""
    n, d = x.shape
    K = model.n_components
    spherical = cov == "spherical"
    w, means, var = model.weights_, model.means_, model.covariances_
    log_w = np.log(w)
    b = estep_bounds(x, means, var, log_w, spherical, 256,
                     extra_delta=1.01 * U * (np.abs(log_w) + np.abs(log_w).max() + 1))
    ll_ours, proba_ours = posterior_bounds(b)
    sk_d = sklearn_delta(x, means, var, log_w, spherical)
    ll_sk = sk_d.max() + gamma(K + 8, U_DOUBLE) * (np.abs(b["lse"]) + 1)
    proba_sk = b["r"] * np.expm1(sk_d[None, :] + ll_sk[:, None]
                                 + gamma(4, U_DOUBLE) * (np.abs(b["l"] - b["lse"][:, None]) + 1))
    sk = sklearn_at(model, cov)
    ll_tol = ll_ours + ll_sk
    assert np.all(np.abs(model.score_samples(x) - sk.score_samples(x)) <= ll_tol)
    # predict_proba returns float32: u·r more, and results below float32's smallest normal
    # (2^-126) may come out 0 or subnormal: 2^-126 absolute.
    proba_f32 = U * b["r"] + 2.0 ** -126
    assert np.all(np.abs(model.predict_proba(x) - sk.predict_proba(x)) <= proba_ours + proba_sk + proba_f32)
    # score: the mean (float64 sums on both sides); bic / aic: −2·n·score + a parameter count.
    score_tol = ll_tol.sum() / n + 2 * gamma(n + 8, U_DOUBLE) * np.abs(b["lse"]).mean()
    assert abs(model.score(x) - sk.score(x)) <= score_tol
    size = 2 * n * (score_tol + U_DOUBLE * np.abs(b["lse"]).mean()) + 8 * U_DOUBLE * abs(sk.bic(x))
    assert abs(model.bic(x) - sk.bic(x)) <= size
    assert abs(model.aic(x) - sk.aic(x)) <= size
    # predict: the same component wherever the top two log-densities are further apart than
    # both sides' errors of them (here: every row, the blobs being far apart).
    order = np.argsort(b["l"], axis=1)
    top, second = order[:, -1], order[:, -2]
    rows = np.arange(n)
    err = b["delta"] + sk_d[None, :]
    clear = b["l"][rows, top] - b["l"][rows, second] > err[rows, top] + err[rows, second]
    assert clear.all()
    np.testing.assert_array_equal(model.predict(x), sk.predict(x))


@pytest.mark.filterwarnings("ignore::faiss_gmm.ConvergenceWarning")
@pytest.mark.parametrize("cov", ["spherical", "diag"])
def test_matches_sklearn_iteration_by_iteration(blobs, cov):
    """A whole run of N_ITER iterations checked one EM step at a time: from the model ours
    holds before each iteration, our step and sklearn's float64 step agree within the
    rigorous one-step bound (assert_em_step_within_bounds), so nothing rests on an argument
    about how errors accumulate over iterations; then our fitted model's posteriors against
    sklearn's evaluation of the same parameters (assert_posteriors_match_sklearn). float64
    and float32 input give the same float32 rows, hence the same model bit for bit."""
    x, _, centers = mirrored(blobs)
    n, d = x.shape
    k = centers.shape[0]
    rng = np.random.default_rng(1)
    means0 = f32(centers + rng.standard_normal((k, d)))
    var0 = np.full(k, 2.0) if cov == "spherical" else np.full((k, d), 2.0)  # exact in float32
    model = (np.full(k, 1.0 / k), means0, var0)
    init = dict(weights_init=model[0], means_init=model[1], precisions_init=1.0 / model[2])
    ours = GaussianMixture(k, covariance_type=cov, max_iter=1, tol=0, warm_start=True, **init)
    ours32 = GaussianMixture(k, covariance_type=cov, max_iter=1, tol=0, warm_start=True, **init)
    for _ in range(N_ITER):
        ours.fit(x)
        ours32.fit(x.astype(np.float32))
        for name in ("weights_", "means_", "covariances_", "lower_bound_"):
            assert np.array_equal(getattr(ours, name), getattr(ours32, name)), name
        sk = SkGaussianMixture(k, covariance_type=cov, max_iter=1, tol=0, reg_covar=1e-6, weights_init=model[0],
                               means_init=model[1], precisions_init=1.0 / model[2])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning after one iteration
            sk.fit(x)
        assert_em_step_within_bounds(x, *model, ours, sk, cov)
        model = (ours.weights_, ours.means_, ours.covariances_)
    assert_posteriors_match_sklearn(ours, x, cov)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_full_matches_sklearn_partition(blobs, dtype):
    """Full covariances (their E-step's bound is C++ only: tests/test_full_covariance.cpp):
    properties that need no tolerance. From the same start, ours and sklearn assign every row
    to the same component, its own blob (the blobs are 12 sd apart, start() keeps their
    order), and float64 and float32 input give the same model bit for bit."""
    x, labels, centers = blobs
    k = centers.shape[0]
    init = start(x, centers, "full")
    ours = GaussianMixture(k, covariance_type="full", max_iter=N_ITER, tol=0, **init).fit(x.astype(dtype))
    other = GaussianMixture(k, covariance_type="full", max_iter=N_ITER, tol=0, **init)
    other.fit(x.astype(np.float32 if dtype == np.float64 else np.float64))
    assert np.array_equal(ours.means_, other.means_) and np.array_equal(ours.covariances_, other.covariances_)
    _, sk = sklearn_lower_bounds(x, k, "full", init, N_ITER)
    assert ours.n_iter_ == N_ITER and len(ours.lower_bounds_) == N_ITER
    np.testing.assert_array_equal(ours.predict(x), sk.predict(x))
    np.testing.assert_array_equal(ours.predict(x), labels)


@pytest.mark.filterwarnings("ignore::faiss_gmm.ConvergenceWarning")
@pytest.mark.parametrize("cov", ["spherical", "diag"])
def test_one_em_step_within_rounding_bounds_of_sklearn(blobs, cov):
    """One E-step and M-step from the same model against sklearn's float64 EM step, each
    quantity within a rigorous bound (assert_em_step_within_bounds): the rows are float32
    values and their mirror images, so the data mean is exactly 0 and the engine's
    centering shifts nothing; the model's values are float32 too."""
    x, _, centers = mirrored(blobs)
    n, d = x.shape
    k = centers.shape[0]
    rng = np.random.default_rng(7)
    means0 = f32(centers + rng.standard_normal((k, d)))
    prec = np.full(k, 0.5) if cov == "spherical" else np.full((k, d), 0.5)  # variance 2, exact in float
    init = dict(means_init=means0, weights_init=np.full(k, 1.0 / k), precisions_init=prec)
    ours = GaussianMixture(k, covariance_type=cov, max_iter=1, tol=0, **init).fit(x)
    sk = SkGaussianMixture(k, covariance_type=cov, max_iter=1, tol=0, reg_covar=1e-6, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(x)
    assert_em_step_within_bounds(x, np.full(k, 1.0 / k), means0, 1.0 / prec, ours, sk, cov)


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
    # exp(fl(l̃_k − log p̃)) in float: the row sums to 1 within ε_exp + γ_{K−1} (the float sum
    # in log p̃) + logf's 2 ulp of log K + u|log p| + u·27.63 (the rounding of l̃_k − log p̃ for
    # every non-negligible k) + expf's 2u + K·e^-27.63 (dropped terms): K + 40 + |log p| units of u.
    tol = U * (k + 40 + np.abs(ours.score_samples(x)))
    assert np.all(np.abs(ours.predict_proba(x).sum(axis=1) - 1.0) <= tol)
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
    # Exact EM never lowers the log-likelihood; each measured value is within the E-step's
    # bound of exact (estep_bounds, at the model between the two measurements, in the
    # engine's centered frame: argued, since the models entering those iterations are EM
    # steps of a converged fit away from it).
    c = x.mean(axis=0)
    spherical = gm.covariance_type == "spherical"
    b = estep_bounds(x - c, gm.means_ - c, gm.covariances_, np.log(gm.weights_), spherical, gm.block_size)
    gm.fit(x)
    assert gm.lower_bound_ >= lb - 2 * b["loglik"] / len(x)
    assert gm.get_params()["max_iter"] == 3
    xs, ls = gm.sample(100, random_state=0)
    assert xs.shape == (100, x.shape[1]) and ls.shape == (100,)


@pytest.mark.filterwarnings("ignore::faiss_gmm.ConvergenceWarning")
def test_means_init_only(blobs):
    """sklearn semantics: what is not given comes from the data. Both runs from the same means
    end with the same partition (exact labels, no tolerance), and our fitted model's posteriors
    match sklearn's evaluation of the same parameters within the bounds of both
    (assert_posteriors_match_sklearn; mirrored rows: center 0)."""
    x, _, centers = mirrored(blobs)
    k = centers.shape[0]
    gm = GaussianMixture(k, means_init=centers, max_iter=20, tol=1e-6).fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkGaussianMixture(k, covariance_type="spherical", means_init=centers, max_iter=20, tol=1e-6).fit(x)
    np.testing.assert_array_equal(gm.predict(x), sk.predict(x))
    assert_posteriors_match_sklearn(gm, x, "spherical")
    x, _, centers = blobs
    gm2 = GaussianMixture(k, weights_init=np.full(k, 1.0 / k), random_state=0, max_iter=20).fit(x)
    assert gm2.converged_


def test_uint8_input():
    rng = np.random.default_rng(5)
    centers = rng.integers(30, 220, (4, 16))
    lab = rng.integers(0, 4, 2000)
    x8 = np.clip(centers[lab] + rng.normal(0, 4, (2000, 16)), 0, 255).astype(np.uint8)
    a = GaussianMixture(4, covariance_type="diag", random_state=0, max_iter=20).fit(x8)
    b = GaussianMixture(4, covariance_type="diag", random_state=0, max_iter=20).fit(x8.astype(np.float32))
    # uint8 values are exact in float32 and every step reads rows as float32: the same
    # arithmetic on the same values, bit for bit.
    np.testing.assert_array_equal(a.lower_bounds_, b.lower_bounds_)
    np.testing.assert_array_equal(a.predict(x8), b.predict(x8.astype(np.float32)))


def test_no_convergence_warns(blobs):
    x, _, centers = blobs
    with pytest.warns(faiss_gmm.ConvergenceWarning, match="did not converge"):
        GaussianMixture(centers.shape[0], max_iter=1, tol=1e-9, random_state=0).fit(x)


@pytest.mark.filterwarnings("ignore::faiss_gmm.ConvergenceWarning")
def test_bad_input(blobs):
    x, _, _ = blobs
    gm = GaussianMixture(3, max_iter=2, random_state=0)
    with pytest.raises(ValueError, match="Complex data not supported"):
        gm.fit(x.astype(np.complex128))
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array instead"):
        gm.fit(x[:, 0])
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)"):
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
    with pytest.raises(ValueError, match="Complex data not supported"):
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
