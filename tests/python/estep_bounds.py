"""Rounding-error bounds of one CPU E-step (float32) and the M-step that follows,
against exact arithmetic, for the Python tests that compare with scikit-learn's
float64 EM. The derivation is the one written out in tests/error_bounds.h
(EStepRowErrors, add_row_stats_bound); this is the float E-step part only, for
rows already in the model's frame (center 0). scikit-learn's own float64 error
is added by the caller as an explicit γ^double term."""

import numpy as np

U = 2.0 ** -24            # float32 unit roundoff
U_DOUBLE = 2.0 ** -53
FAST_EXP = 2.0 ** -23     # error_bounds.h kFastExpRelError, checked by test_fast_exp on every float
LOGF = 4 * U              # glibc logf: < 1 ulp documented, 2 ulp used
DROP = float(np.float32(-27.63))  # EStepCpu::kNegligibleLogRatio


def gamma(n, u=U):
    return n * u / (1 - n * u)


def grow(a, b):
    """(1 + a)(1 + b) − 1."""
    return a + b + a * b


def estep_bounds(x, means, variances, log_weights, spherical, block, extra_delta=0.0):
    """x (n, d): the float32 rows as float64, center 0; the model's float32 values
    as float64 (variances (K,) or (K, d)); log_weights as the reference uses them.
    extra_delta (K,): any further error of the E-step's log-densities (e.g. the
    float32 rounding of log w). Returns the exact l, r, log p, N_k and bounds of
    |float E-step − exact| for loglik (sum), nk, sum_x, sum_sq."""
    n, d = x.shape
    K = means.shape[0]
    var = np.repeat(variances[:, None], d, axis=1) if spherical else variances
    c0 = log_weights - 0.5 * np.sum(np.log(2 * np.pi * var), axis=1)
    diff = x[:, None, :] - means[None, :, :]
    l = c0[None, :] - 0.5 * np.sum(diff ** 2 / var[None], axis=2)
    ax, am = np.abs(x)[:, None, :], np.abs(means)[None, :, :]
    p = (ax + am) ** 2                       # (|x'_j| + |μ_j|)², (n, K, d)
    S = p.sum(axis=2)
    dist = np.sum(diff ** 2, axis=2)
    if spherical:
        w = 0.5 / variances[None, :]
        delta = (1 + gamma(3)) * w * gamma(d + 6) * S + gamma(3) * (w * dist + np.abs(c0)[None, :])
    else:
        t = np.sum((ax * am + 0.5 * ax ** 2) / var[None], axis=2)
        const_mag = np.abs(c0) + 0.5 * np.sum(means ** 2 / var, axis=1)
        delta = gamma(2 * d + 6) * t + gamma(2) * const_mag[None, :]
    delta = delta + extra_delta
    lmax = l.max(axis=1, keepdims=True)
    lse = lmax[:, 0] + np.log(np.exp(l - lmax).sum(axis=1))
    r = np.exp(l - lse[:, None])
    # Responsibilities (error_bounds.h, detail_bounds::float_row).
    kmax = np.argmax(l, axis=1)
    rows = np.arange(n)
    keep_floor = (lmax[:, 0] - delta[rows, kmax] + DROP * (1 + U))[:, None]
    may_keep = l + delta >= keep_floor
    may_drop = l - delta < (l + delta).max(axis=1, keepdims=True) + DROP
    a = delta + U * abs(DROP) * (1 + U) - np.log1p(-FAST_EXP)
    up = np.where(may_keep, r * np.expm1(a), -r)
    low = np.where(may_drop, -r, r * np.expm1(-a))
    up_sum, low_sum = up.sum(axis=1, keepdims=True), low.sum(axis=1, keepdims=True)
    gsum, g2 = gamma(K - 1), gamma(2)
    hi = a + np.log1p(g2) - np.log1p(-gsum) - np.log1p(r * np.expm1(a) + (low_sum - low))
    lo = -a + np.log1p(-g2) - np.log1p(gsum) - np.log1p(r * np.expm1(-a) + (up_sum - up))
    rho = np.where(may_keep, np.maximum(np.expm1(hi), -np.expm1(lo)), 1.0)
    rho = np.where(may_keep & may_drop, np.maximum(rho, 1.0), rho)
    log_up = np.log1p(gsum) + np.log1p(up_sum[:, 0])
    log_low = np.log1p(-gsum) + np.log1p(low_sum[:, 0])
    log_sum = np.log(K) + delta[rows, kmax] + np.maximum(0.0, log_up)
    before = np.maximum(log_up, -log_low) + LOGF * log_sum
    loglik = before + U * (1 + U) * (np.abs(lse) + before)
    # Statistics (error_bounds.h, detail_bounds::add_row_stats_bound).
    B = min(block, n)
    go = gamma(n + 8, U_DOUBLE)
    nk = np.sum(r * grow(grow(rho, gamma(B)), go), axis=0)
    fx = grow(grow(grow(rho, U), gamma(B + 1)), go)
    sum_x = np.einsum("ik,ij->kj", r * fx, np.abs(x))
    if spherical:
        f = grow(grow(rho, gamma(B + 1)), go)
        sum_sq = np.sum(r * (f * dist + (1 + f) * gamma(d + 6) * S), axis=0)
    else:
        fsq = grow(grow(rho, gamma(B + 5)), go)
        sum_sq = np.einsum("ik,ikj->kj", r * fsq, p)
    return dict(l=l, r=r, lse=lse, N=r.sum(axis=0), p=p, dist=dist, delta=delta, rho=rho,
                loglik_rows=loglik, loglik=loglik.sum(), nk=nk, sum_x=sum_x, sum_sq=sum_sq)


def posterior_bounds(b):
    """From estep_bounds' result b: bounds of score_samples (log p(x) per row) and of
    predict_proba (GmmPosteriors, error_bounds.h EStepRowErrors::log_resp_bound: log r̃ =
    fl(l̃_k − log p̃), then expf (1 ulp, so 2u with its rounding)) against exact arithmetic."""
    ll = b["loglik_rows"]
    f = b["delta"] + ll[:, None]
    log_r = f + U * (1 + U) * (np.abs(b["l"] - b["lse"][:, None]) + f)
    return ll, b["r"] * np.expm1(log_r + np.log1p(2 * U))


def sklearn_delta(x, means, variances, log_weights, spherical):
    """(K,) bound on sklearn's float64 log-densities against exact arithmetic: its
    log det and Σ_j (x_j·p_j − μ_j·p_j)², p = √precision, are sums of ≤ 2d + 4 terms of
    magnitude ≤ |log w| + ½ Σ_j (log 2π + |log σ²_j| + (|x_j| + |μ_j|)²/σ²_j), each with
    a few roundings (the square root, the products): γ^double_{4d+16} of that (max over rows)."""
    n, d = x.shape
    var = np.repeat(variances[:, None], d, axis=1) if spherical else variances
    mag = np.abs(log_weights) + 0.5 * np.sum(np.log(2 * np.pi) + np.abs(np.log(var)), axis=1)
    quad = 0.5 * np.max(np.sum((np.abs(x)[:, None, :] + np.abs(means)[None]) ** 2 / var[None], axis=2), axis=0)
    return gamma(4 * d + 16, U_DOUBLE) * (mag + quad)
