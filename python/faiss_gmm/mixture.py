"""GaussianMixture: scikit-learn's estimator API on the faiss_gmm EM engine.

Same constructor arguments, methods and fitted attributes as
sklearn.mixture.GaussianMixture for the spherical, diagonal and full covariance
types, with the same conventions: lower_bound_ is the mean log-likelihood of
the model entering the last EM iteration, convergence is |Δ lower bound| < tol,
reg_covar is added to every variance (full: to the covariance's diagonal).
Differences, all deliberate:

* covariance_type "tied" is not supported; the default is "spherical" (what an
  IVF quantizer needs). "full" keeps sklearn's shapes: covariances_,
  precisions_ and precisions_cholesky_ (upper triangular, as sklearn's) are
  (n_components, n_features, n_features); precisions_init is (K, d, d).
* init_params "kmeans" runs faiss k-means (init_niter iterations), not
  sklearn's KMeans; "k-means++" is D² seeding; "random"/"random_from_data" are
  not supported. means_init / weights_init / precisions_init work as in sklearn.
* The E-step runs in float32 (blocked BLAS, centered data) and never holds an
  n_samples × n_components array; float64 input is converted block by block.
  predict_proba returns float32 (its N×K result is the one N×K array made).
* Input: float32, float64 and uint8 arrays are read in place; other numeric
  input (integers, booleans, object arrays of numbers) is converted to float64
  as scikit-learn does. The estimator passes scikit-learn's check_estimator and
  pickles (the model's float32 arrays travel as they are: an unpickled
  estimator predicts bit for bit as the original).
* A component whose mass falls below 1e-3 rows is re-seeded by splitting the
  heaviest one (sklearn would let it degenerate).
* Extra arguments: device ("cpu" | "cuda" | "auto"), max_points_per_centroid
  (0 = fit on all rows, as sklearn; k > 0 subsamples k·n_components rows as
  FAISS does), min_variance_ratio (a variance floor relative to the data's
  variance; 0 = none, as sklearn), init_niter, block_size.
"""

import numbers
import warnings

import numpy as np

from . import _core
from ._params import covariance_type as _covariance_type
from ._params import make_params

__all__ = ["GaussianMixture", "ConvergenceWarning", "NotFittedError"]

class ConvergenceWarning(UserWarning):
    """EM stopped at max_iter before |Δ lower bound| < tol (as sklearn's)."""


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before fit() (as sklearn's)."""


# Kept as they are (the engine reads them in place); every other numeric dtype is
# converted to float64 first, as scikit-learn's check_array(dtype="numeric") does.
_NATIVE_DTYPES = (np.float32, np.float64, np.uint8)


def _check_array(X, what="X"):
    """X as a C-contiguous 2-D array of float32, float64 or uint8, with
    scikit-learn's conventions and error messages: integer, boolean and object
    arrays of numbers are converted to float64; sparse matrices, complex data,
    1-D input and empty arrays are refused with the messages its estimators give
    (sklearn.utils.validation.check_array), so code written against scikit-learn
    sees the same errors."""
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):  # scipy.sparse without importing scipy
        raise TypeError("A sparse matrix was passed, but dense data is required. Use X.toarray() to convert to a "
                        "dense numpy array (faiss_gmm does not support sparse input).")
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported\n{arr}\n")
    if arr.dtype.type not in _NATIVE_DTYPES:
        if arr.dtype.kind in "USV":
            raise ValueError(f"dtype='numeric' is not compatible with arrays of bytes/strings ({what} has dtype "
                             f"{arr.dtype}). Convert your data to numeric values explicitly instead.")
        if arr.dtype.kind not in "biufO":
            raise ValueError(f"{what} has dtype {arr.dtype}; faiss_gmm accepts numeric arrays "
                             f"(convert with {what}.astype(np.float32))")
        # numpy's own TypeError / ValueError for entries that are not numbers, as in scikit-learn.
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        if arr.ndim < 2:
            raise ValueError(f"Expected 2D array, got {'scalar array' if arr.ndim == 0 else '1D array'} instead:\n"
                             f"array={arr}.\nReshape your data either using array.reshape(-1, 1) if your data has "
                             "a single feature or array.reshape(1, -1) if it contains a single sample.")
        raise ValueError(f"Found array with dim {arr.ndim}. Expected <= 2 (a 2D array for {what}).")
    if arr.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required.")
    if arr.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    return np.ascontiguousarray(arr)


def _seed_sequence(random_state, n):
    """n int seeds from sklearn's random_state conventions: None (numpy's global
    generator), an int, a RandomState or a Generator."""
    if random_state is None:
        return [int(s) for s in np.random.randint(0, 2**31 - 1, size=n)]
    if isinstance(random_state, numbers.Integral):
        rs = np.random.RandomState(int(random_state))
        return [int(random_state)] + [int(s) for s in rs.randint(0, 2**31 - 1, size=n - 1)]
    if isinstance(random_state, np.random.RandomState):
        return [int(s) for s in random_state.randint(0, 2**31 - 1, size=n)]
    if isinstance(random_state, np.random.Generator):
        return [int(s) for s in random_state.integers(0, 2**31 - 1, size=n)]
    raise ValueError(f"random_state={random_state!r} cannot be used to seed the generator")


class GaussianMixture:
    """Gaussian mixture (spherical, diagonal or full covariances) fitted by EM.

    Parameters follow sklearn.mixture.GaussianMixture; see the module
    docstring for the differences and the extra, engine-level arguments."""

    def __init__(self, n_components=1, *, covariance_type="spherical", tol=1e-3, reg_covar=1e-6, max_iter=100,
                 n_init=1, init_params="kmeans", weights_init=None, means_init=None, precisions_init=None,
                 random_state=None, warm_start=False, verbose=0, verbose_interval=10, device="cpu",
                 max_points_per_centroid=0, min_variance_ratio=0.0, init_niter=10, block_size=256):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval  # accepted for sklearn compatibility; C++ prints every iteration
        self.device = device
        self.max_points_per_centroid = max_points_per_centroid
        self.min_variance_ratio = min_variance_ratio
        self.init_niter = init_niter
        self.block_size = block_size

    # ---- sklearn estimator protocol (get_params / set_params for clone, grid search) ----
    _PARAM_NAMES = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init", "init_params",
                    "weights_init", "means_init", "precisions_init", "random_state", "warm_start", "verbose",
                    "verbose_interval", "device", "max_points_per_centroid", "min_variance_ratio", "init_niter",
                    "block_size")

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._PARAM_NAMES}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self._PARAM_NAMES:
                raise ValueError(f"Invalid parameter {name!r} for estimator GaussianMixture")
            setattr(self, name, value)
        return self

    def __repr__(self):
        return f"GaussianMixture(n_components={self.n_components}, covariance_type={self.covariance_type!r})"

    # ---- fitting ----
    def _check_parameters(self):
        if not isinstance(self.n_components, numbers.Integral) or self.n_components < 1:
            raise ValueError(f"n_components must be an integer >= 1, got {self.n_components!r}")
        if self.covariance_type not in ("spherical", "diag", "full"):
            raise ValueError(f"covariance_type={self.covariance_type!r} is not supported: faiss_gmm fits "
                             "'spherical', 'diag' or 'full' covariances")
        if not isinstance(self.n_init, numbers.Integral) or self.n_init < 1:
            raise ValueError(f"n_init must be an integer >= 1, got {self.n_init!r}")
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 0:
            raise ValueError(f"max_iter must be an integer >= 0, got {self.max_iter!r}")
        if self.init_params not in ("kmeans", "k-means++"):
            raise ValueError(f"init_params={self.init_params!r} is not supported: use 'kmeans' (faiss k-means) "
                             "or 'k-means++', or give means_init / weights_init / precisions_init")

    def _params(self, seed):
        return make_params(
            covariance_type=self.covariance_type, niter=int(self.max_iter), tol=float(self.tol),
            reg_covar=float(self.reg_covar), seed=int(seed), init=self.init_params, init_niter=int(self.init_niter),
            device=self.device, verbose=bool(self.verbose),
            max_points_per_centroid=int(self.max_points_per_centroid),
            min_variance_ratio=float(self.min_variance_ratio), min_points_per_centroid=0,
            block_size=int(self.block_size))

    def _user_initial_model(self, X, params):
        """The complete starting model when any of weights/means/precisions_init
        is given (sklearn semantics: what is not given comes from init_params),
        else None. The given arrays are checked before any work on X."""
        if self.weights_init is None and self.means_init is None and self.precisions_init is None:
            return None
        K, d = self.n_components, X.shape[1]
        cov = _covariance_type(self.covariance_type)
        means = weights = prec = None
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=np.float64)
            if means.shape != (K, d):
                raise ValueError(f"means_init should have the shape ({K}, {d}), but got {means.shape}")
            if not np.all(np.isfinite(means)):
                raise ValueError("means_init should be finite")
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=np.float64)
            if weights.shape != (K,):
                raise ValueError(f"weights_init should have the shape ({K},), but got {weights.shape}")
            if np.any(weights < 0) or np.any(weights > 1):
                raise ValueError("weights_init should be in the range [0, 1]")
            if not np.allclose(np.abs(1.0 - np.sum(weights)), 0.0):
                raise ValueError(f"weights_init should be normalized (sum = 1), but sum = {np.sum(weights):.5f}")
        full = self.covariance_type == "full"
        if self.precisions_init is not None:
            prec = np.asarray(self.precisions_init, dtype=np.float64)
            shape = {"spherical": (K,), "diag": (K, d), "full": (K, d, d)}[self.covariance_type]
            if prec.shape != shape:
                raise ValueError(f"precisions_init should have the shape {shape} for covariance_type="
                                 f"{self.covariance_type!r}, but got {prec.shape}")
            if not np.all(np.isfinite(prec)):
                raise ValueError("precisions_init should be finite")
            if full:
                for k, p in enumerate(prec):
                    if not np.allclose(p, p.T) or np.any(np.linalg.eigvalsh(p) <= 0):
                        raise ValueError(f"precisions_init[{k}] should be symmetric, positive-definite")
            elif not np.all(prec > 0):
                raise ValueError("precisions_init should be positive and finite")

        # Covariances (full: (K, d, d) matrices) or variances, from the precisions.
        variances = None if prec is None else np.linalg.inv(prec) if full else 1.0 / prec
        if weights is None or means is None or variances is None:
            if means is not None:
                # Weights and variances from the hard assignment to the given means;
                # sklearn adds reg_covar to its initial variance estimate too.
                base = _core.model_from_means(X, means, cov, 0.0)
                base_variances = (base.covariances + self.reg_covar * np.eye(d) if full
                                  else base.variances.astype(np.float64) + self.reg_covar)
            else:
                base = _core.fit(X, K, make_params(params, niter=0))["model"]  # initialization only
                base_variances = base.covariances if full else base.variances.astype(np.float64)
            if weights is None:
                weights = np.exp(base.log_weights.astype(np.float64))
                weights /= weights.sum()
            if means is None:
                means = base.means.astype(np.float64)
            if variances is None:
                variances = base_variances
        if full:
            return _core.GmmModel.from_covariances(weights, means, variances)
        return _core.GmmModel.from_arrays(weights, means, variances, cov)

    def fit(self, X, y=None):
        """Fits the mixture to X (n_samples, n_features); returns self."""
        self._check_parameters()
        X = _check_array(X)
        n, d = X.shape
        K = self.n_components
        if n < K:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {K}, n_samples = {n}")
        warm = self.warm_start and hasattr(self, "model_")
        if warm and d != self.n_features_in_:
            raise ValueError(f"X has {d} features, but the warm-started GaussianMixture has {self.n_features_in_}")
        n_init = 1 if warm else int(self.n_init)
        seeds = _seed_sequence(self.random_state, n_init)
        best = None
        for i, seed in enumerate(seeds):
            params = self._params(seed)
            if X.dtype == np.float64 and params.device != _core.Device.Cpu:
                # For a GPU, float64 rows are converted chunk by chunk into a float32
                # buffer of chunk_size rows: ~8 MiB keeps memory small. (The CPU
                # E-step reads float64 rows in place, converting block by block.)
                params.chunk_size = max(2048, (8 << 20) // (4 * d))
            initial = self.model_ if warm else self._user_initial_model(X, params)
            if initial is not None:
                params.init = _core.InitMethod.Given
            result = _core.fit(X, K, params, initial)
            stats = result["iteration_stats"]
            lower_bound = stats[-1].loglik if stats else -np.inf
            if self.max_iter > 0 and self.tol > 0 and not result["converged"]:
                warnings.warn(f"Initialization {i + 1} did not converge. Try different init parameters, or "
                              "increase max_iter, tol or check for degenerate data.", ConvergenceWarning,
                              stacklevel=2)
            if best is None or lower_bound > best[0]:
                best = (lower_bound, result)
        self._set_fitted(best[1], best[0], d)
        return self

    def _set_fitted(self, result, lower_bound, d):
        model = result["model"]
        self.model_ = model
        weights = np.exp(model.log_weights.astype(np.float64))
        self.weights_ = weights / weights.sum()
        self.means_ = model.means.astype(np.float64)
        if self.covariance_type == "full":
            # The model keeps U_k (upper, U_k U_kᵀ = Σ_k⁻¹), sklearn's precisions_cholesky_.
            self.precisions_cholesky_ = model.variances.astype(np.float64)
            self.precisions_ = np.einsum("kij,klj->kil", self.precisions_cholesky_, self.precisions_cholesky_)
            self.covariances_ = model.covariances
        else:
            self.covariances_ = model.variances.astype(np.float64)
            self.precisions_ = 1.0 / self.covariances_
            self.precisions_cholesky_ = 1.0 / np.sqrt(self.covariances_)
        self.converged_ = bool(result["converged"])
        self.n_iter_ = int(result["n_iter"])
        self.lower_bound_ = float(lower_bound)
        self.n_features_in_ = d
        # Not in sklearn: the lower bound of every iteration, and the engine's stats.
        self.iteration_stats_ = list(result["iteration_stats"])
        self.lower_bounds_ = np.array([s.loglik for s in self.iteration_stats_], dtype=np.float64)
        self.backend_ = result["backend"]

    def fit_predict(self, X, y=None):
        return self.fit(X).predict(X)

    # ---- inference (blocked in C++: no N×K intermediate) ----
    def _check_fitted_X(self, X):
        if not hasattr(self, "model_"):
            raise NotFittedError("This GaussianMixture instance is not fitted yet. Call 'fit' with appropriate "
                                 "arguments before using this estimator.")
        X = _check_array(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but GaussianMixture is expecting "
                             f"{self.n_features_in_} features as input.")
        return X

    def predict(self, X):
        """The most probable component of each row, int64 (n_samples,)."""
        X = self._check_fitted_X(X)
        return _core.predict(self.model_, X, int(self.block_size))

    def predict_proba(self, X):
        """Posterior probabilities, float32 (n_samples, n_components)."""
        X = self._check_fitted_X(X)
        return _core.predict_proba(self.model_, X, int(self.block_size))

    def score_samples(self, X):
        """log p(x) of each row, float64 (n_samples,)."""
        X = self._check_fitted_X(X)
        return _core.score_samples(self.model_, X, int(self.block_size))

    def score(self, X, y=None):
        """Mean log-likelihood per sample."""
        return float(self.score_samples(X).mean())

    def _n_parameters(self):
        K, d = self.means_.shape
        cov_params = {"spherical": K, "diag": K * d, "full": K * d * (d + 1) // 2}[self.covariance_type]
        return int(cov_params + K * d + K - 1)

    def bic(self, X):
        """Bayesian information criterion (lower is better)."""
        X = self._check_fitted_X(X)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X):
        """Akaike information criterion (lower is better)."""
        X = self._check_fitted_X(X)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()

    def sample(self, n_samples=1, random_state=None):
        """n_samples draws from the fitted mixture: (X (n_samples, d), labels)."""
        if not hasattr(self, "model_"):
            raise NotFittedError("This GaussianMixture instance is not fitted yet.")
        if n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples}. It must be >= 1")
        rng = np.random.default_rng(random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        labels = np.repeat(np.arange(self.n_components), counts)
        if self.covariance_type == "full":
            z = rng.standard_normal((n_samples, self.means_.shape[1]))
            chol = np.linalg.cholesky(self.covariances_)  # (K, d, d), Σ = C Cᵀ
            return self.means_[labels] + np.einsum("nij,nj->ni", chol[labels], z), labels
        std = np.sqrt(self.covariances_[labels])
        if std.ndim == 1:
            std = std[:, None]
        X = self.means_[labels] + rng.standard_normal((n_samples, self.means_.shape[1])) * std
        return X, labels
