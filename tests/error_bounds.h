// Rounding-error bounds the tests' tolerances come from, in one place: the unit
// roundoffs, γ_n, the fast exp's checked error, and a bound on the CPU E-step's
// float32 statistics against the float64 reference computed from the test's own
// model and rows (estep_error_bound), with the elementwise check that uses it.
//
// Standard model (Higham, "Accuracy and Stability of Numerical Algorithms", §2-3):
// fl(a op b) = (a op b)(1 + θ), |θ| <= u; a sum or dot product of n terms, in ANY
// order and with or without FMA, is off by at most γ_n · Σ|terms|, γ_n = n·u/(1 − n·u).
// That covers every conventional (non-Strassen) GEMM blocking and kernel (OpenBLAS
// Haswell, Sandybridge, Prescott, ..., reference BLAS), any OpenMP thread count and
// both the AVX2 and baseline builds.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"
#include "faiss_gmm/VectorSource.h"

namespace faiss_gmm::testing {

constexpr double kUnitRoundoff = 0x1p-24;       ///< float32, round to nearest
constexpr double kUnitRoundoffDouble = 0x1p-53; ///< float64

/// γ_n = n·u/(1 − n·u): relative error bound of an n-term sum / dot product.
inline double gamma(double n, double u = kUnitRoundoff) { return n * u / (1.0 - n * u); }
inline double gamma_double(double n) { return gamma(n, kUnitRoundoffDouble); }

/// Relative error of detail::exp_nonpositive and exp_shifted_sum_avx2 on
/// [-87, 0]: 1 ulp (2^-23) of the result. test_fast_exp checks every float of
/// [-87, -2^-25] (and a dense sample above) against std::exp in double.
constexpr double kFastExpRelError = 0x1p-23;
/// Relative error of logf / log from glibc: documented below 1 ulp; 2 ulp used.
constexpr double kLogfRelError = 4 * kUnitRoundoff;
/// std::exp / std::log in double (glibc: below 1 ulp).
constexpr double kLibmDoubleRelError = 2 * kUnitRoundoffDouble;

/// (1 + a)(1 + b) − 1 without the cancellation of computing it that way.
inline double grow(double a, double b) { return a + b + a * b; }

namespace detail_bounds {

/// Error of one row's responsibilities and log-likelihood, in one arithmetic:
/// from bounds δ_k on its log-densities l_k (reference values in double).
struct RowErrors {
    std::vector<double> rho; ///< |r̃_k − r_k| <= rho_k · r_k
    double loglik = 0;       ///< |log p̃(x) − log p(x)|
};

/// The CPU E-step's fused pass (EStepCpu.cpp, fused_pass_body): mx = max_k l̃_k;
/// e_k = exp~(fl(l̃_k − mx)), 0 where fl(l̃_k − mx) < drop; sum = Σ e_k in float;
/// r_k = fl(e_k · fl(1/sum)); log p = fl(mx + logf(sum)). With |l̃_k − l_k| <= δ_k:
/// - component j can be kept only if l_j + δ_j >= l_max − δ_{k_max} + drop(1 + u) (set P),
///   dropped only if l_j − δ_j < max(l + δ) + drop (set Q);
/// - a kept e_j/A, A = Σ_all exp(l_j − mx), is r_j·e^{±a_j}, a_j = δ_j + u|drop|(1 + u)
///   (the rounding of l̃_j − mx, |l̃_j − mx| <= |drop|) − log(1 − ε_exp); the float sum
///   adds (1 ± γ_{K−1}) per term;
/// - r̃_k/r_k = e^{η}(1 ± γ_2) / (r_k e^{η}(1 ± γ_{K−1}) + Σ_{j≠k} ...), |η| <= a_k, is
///   increasing in η, so it lies in [e^{−a_k}(1 − γ_2)/((1 + γ_{K−1})(r_k e^{−a_k} + U_k)),
///   e^{a_k}(1 + γ_2)/((1 − γ_{K−1})(r_k e^{a_k} + L_k))], U_k = Σ_{j∈P, j≠k} r_j e^{a_j},
///   L_k = Σ_{j∉Q, j≠k} r_j e^{−a_j}: a dominant component (r_k ≈ 1) is barely affected;
///   one that may be dropped is off by up to r_k itself (rho >= 1);
/// - log p − (mx + log A) = log(sum/A) + logf's error + the final addition's, sum/A in
///   [(1 − γ_{K−1}) Σ_{j∉Q} r_j e^{−a_j}, (1 + γ_{K−1}) Σ_{j∈P} r_j e^{a_j}].
/// mx cancels from both (it is the shift actually used), so its own error does not enter.
inline void float_row(const std::vector<double>& l, const std::vector<double>& r, const std::vector<double>& delta,
                      double lse, RowErrors& out) {
    const int64_t K = int64_t(l.size());
    const double u = kUnitRoundoff, drop = double(EStepCpu::kNegligibleLogRatio);
    const double gsum = gamma(double(K - 1)), g2 = gamma(2);
    int64_t kmax = 0;
    double hi_max = -INFINITY;
    for (int64_t k = 0; k < K; k++) {
        if (l[k] > l[kmax]) kmax = k;
        hi_max = std::max(hi_max, l[k] + delta[k]);
    }
    const double keep_floor = l[kmax] - delta[kmax] + drop * (1 + u);
    const double a0 = u * std::fabs(drop) * (1 + u) - std::log1p(-kFastExpRelError);
    // Each term's excess over r_j in the upper and lower sums (log1p/expm1
    // throughout: these ratios are within ~1e-6 of 1).
    std::vector<double> up(static_cast<size_t>(K)), low(static_cast<size_t>(K));
    std::vector<bool> may_keep(static_cast<size_t>(K)), may_drop(static_cast<size_t>(K));
    double up_sum = 0, low_sum = 0;
    for (int64_t k = 0; k < K; k++) {
        may_keep[size_t(k)] = l[k] + delta[k] >= keep_floor;
        may_drop[size_t(k)] = l[k] - delta[k] < hi_max + drop;
        const double a = delta[k] + a0;
        up_sum += up[size_t(k)] = may_keep[size_t(k)] ? r[k] * std::expm1(a) : -r[k];
        low_sum += low[size_t(k)] = may_drop[size_t(k)] ? -r[k] : r[k] * std::expm1(-a);
    }
    out.rho.assign(size_t(K), 0.0);
    for (int64_t k = 0; k < K; k++) {
        const double a = delta[k] + a0;
        double rho = 1.0; // dropped: r̃ = 0
        if (may_keep[size_t(k)]) {
            // r_k e^{±a} + (U_k or L_k) = 1 + r_k expm1(±a) + (the others' excesses).
            const double hi = a + std::log1p(g2) - std::log1p(-gsum) -
                              std::log1p(r[k] * std::expm1(a) + (low_sum - low[size_t(k)]));
            const double lo = -a + std::log1p(-g2) - std::log1p(gsum) -
                              std::log1p(r[k] * std::expm1(-a) + (up_sum - up[size_t(k)]));
            rho = std::max(std::expm1(hi), -std::expm1(lo));
            if (may_drop[size_t(k)]) rho = std::max(rho, 1.0);
        }
        out.rho[size_t(k)] = rho;
    }
    const double log_up = std::log1p(gsum) + std::log1p(up_sum);
    const double log_low = std::log1p(-gsum) + std::log1p(low_sum);
    // |log sum| <= log K + δ_max (A <= K·e^{l_max − mx}) + log up.
    const double ratio = std::max(log_up, -log_low);
    const double log_sum = std::log(double(K)) + delta[kmax] + std::max(0.0, log_up);
    const double before_add = ratio + kLogfRelError * log_sum;
    out.loglik = before_add + u * (1 + u) * (std::fabs(lse) + before_add);
}

/// The float64 reference (reference_estep): l̂ = log_joint, lse = mx + log Σ exp(l̂ − mx),
/// r = exp(l̂_k − lse), all in double, nothing dropped. The same argument as
/// float_row with u = 2^-53 and libm's exp/log; the rounding of l̂_j − mx is
/// u·(l_max − l_j + δ_j + δ_max).
inline void reference_row(const std::vector<double>& l, const std::vector<double>& r,
                          const std::vector<double>& delta, double lse, RowErrors& out) {
    const int64_t K = int64_t(l.size());
    const double u = kUnitRoundoffDouble, eps = kLibmDoubleRelError;
    double lmax = -INFINITY, dmax = 0;
    for (int64_t k = 0; k < K; k++) {
        lmax = std::max(lmax, l[k]);
        dmax = std::max(dmax, delta[k]);
    }
    double up_excess = 0, low_extra = 0;
    for (int64_t k = 0; k < K; k++) {
        const double a = delta[k] + u * (lmax - l[k] + delta[k] + dmax);
        up_excess += r[k] * std::expm1(a);
        low_extra += r[k] * -std::expm1(-a);
    }
    const double log_up = std::log1p(eps) + std::log1p(gamma_double(double(K))) + std::log1p(up_excess);
    const double log_low = std::log1p(-eps) + std::log1p(-gamma_double(double(K))) + std::log1p(-low_extra);
    const double ratio = std::max(log_up, -log_low);
    const double log_sum = std::log(double(K)) + dmax + std::max(0.0, log_up);
    const double before_add = ratio + eps * log_sum;
    out.loglik = before_add + u * (1 + u) * (std::fabs(lse) + before_add);
    out.rho.assign(size_t(K), 0.0);
    // r = exp(fl(l̂_k − lse~)) (1 ± ε): exponent off by δ_k + |Δlse| + its rounding.
    for (int64_t k = 0; k < K; k++) {
        const double arg = delta[k] + out.loglik;
        out.rho[size_t(k)] = std::expm1(arg + u * (1 + u) * (std::fabs(l[k] - lse) + arg) + std::log1p(eps));
    }
}

/// Adds one row's contribution to the bounds of N_k, Σ r x and the second
/// moment, for statistics formed as Σ_blocks(sum of `block` rows in arithmetic u)
/// followed by `outer` double additions (blocks, threads, chunks). x_shift_u:
/// the rounding of x' = x − c (u for the float E-step, 2^-53 for the reference).
/// |r̃ − r| <= rho·r; x̃' = x'(1 ± x_shift_u); products and sums per Higham:
///   N_k:        r·[(1 + rho)(1 + γ_B) − 1]
///   Σ r x:      r|x'_j|·[(1 + rho)(1 + x_shift_u)(1 + γ_{B+1}) − 1]
///   diagonal Σ r (x − μ)², formed as Σ r x̃² − 2μ Σ r x̃ + N μ² (dense) or directly (sparse):
///               r (|x'_j| + |μ_j|)²·[(1 + rho)(1 + γ_{B+5}) − 1]
///   spherical Σ r ‖x − μ‖², from the GEMM's distance d̃ (|d̃ − dist| <= dist_err):
///               r·[(1 + rho)(1 + γ_{B+1})(dist + dist_err) − dist]
/// each times (1 + γ^{double}_outer).
struct RowStatsTerms {
    double u, x_shift_u;
    double block, outer;
};

inline void add_row_stats_bound(const RowStatsTerms& a, const GmmModel& m, const std::vector<double>& xp,
                                const std::vector<double>& r, const std::vector<double>& rho,
                                const std::vector<double>& dist, const std::vector<double>& dist_err,
                                SufficientStats& bound) {
    const int64_t K = m.K, d = m.d;
    const double go = gamma_double(a.outer);
    const double gB = gamma(a.block, a.u), gB1 = gamma(a.block + 1, a.u), gB5 = gamma(a.block + 5, a.u);
    for (int64_t k = 0; k < K; k++) {
        const double rk = r[size_t(k)], rh = rho[size_t(k)];
        if (rk == 0 && rh == 0) continue;
        bound.nk[size_t(k)] += rk * grow(grow(rh, gB), go);
        const double fx = grow(grow(grow(rh, a.x_shift_u), gB1), go);
        const double fsq = grow(grow(rh, gB5), go);
        for (int64_t j = 0; j < d; j++) {
            const double ax = std::fabs(xp[size_t(j)]), am = std::fabs(double(m.means[size_t(k * d + j)]));
            bound.sum_x[size_t(k * d + j)] += rk * ax * fx;
            if (m.covariance_type == CovarianceType::Diagonal) bound.sum_sq[size_t(k * d + j)] += rk * (ax + am) * (ax + am) * fsq;
        }
        if (m.covariance_type == CovarianceType::Spherical) {
            const double f = grow(grow(rh, gB1), go);
            bound.sum_sq[size_t(k)] += rk * (f * dist[size_t(k)] + (1 + f) * dist_err[size_t(k)]);
        }
    }
}

} // namespace detail_bounds

/// Per-row error analysis of the CPU E-step (float32) and of the float64
/// reference, each against exact arithmetic on the same float rows, model and
/// center: log-densities l_k, responsibilities r_k and log p(x) of one row with
/// the bounds of both computations' errors on them. Rigorous to first order in u
/// (second-order terms are folded into γ's with a few spare terms).
///
/// The float E-step (EStepCpu::process_block) evaluates, with x̃' = fl(x − c):
///  spherical: d̃ = ‖x̃'‖² + ‖μ‖² − 2 x̃'·μ (float sum, BLAS dot, ‖μ‖² rounded):
///    |d̃ − ‖x' − μ‖²| <= γ_{d+6} S, S = Σ_j (|x'_j| + |μ_j|)² (γ_{d+3} for the
///    expanded form, 2u(1 + u)Σ|x'|(|x'| + |μ|) for the shift); then
///    l̃ = fl(c̃ − fl(d̃ · fl(1/(2σ²)))), so |l̃ − l| <= (1 + γ_3) γ_{d+6} S/(2σ²) + γ_3 (dist/(2σ²) + |c|);
///  diagonal: l̃ = fl(BLAS[x̃', x̃'²]·[μ/σ², −1/(2σ²)] + c̃), 2d products with inputs
///    off by at most γ_4: |l̃ − l| <= γ_{2d+6} Σ_j (|x'_j||μ_j| + x'_j²/2)/σ_j² + γ_2 (|c₀| + Σ μ²/(2σ²)),
///    c = c₀ − Σ μ²/(2σ²) the constant log_constants() holds;
///  the exact recomputation (refine_row) is within u·|l| of l, inside both bounds.
/// The reference's log_joint sums 3d double terms: |l̂ − l| <= γ^{double}_{3d+8}·
///   (|log w| + ½ Σ_j (log 2π + |log σ²_j| + (|x'_j| + |μ_j|)²/σ²_j)).
/// Rows beyond float32's exponent range or a center > 2^20·|x − c| (where the
/// shift's double rounding would matter) are outside what this covers.
class EStepRowErrors {
  public:
    /// The E-step was given (m, center): m is in the frame of x − center. With
    /// model_in_data_frame, m is in the rows' own frame and the E-step was given
    /// m.translated(−center) (GmmPosteriors' convention): that float32 translation's
    /// rounding, |Δμ_j| <= u|μ_j − c_j|, moves each log-density by at most
    /// Σ_j (|x'_j − μ'_j| u|μ'_j| + (u μ'_j)²/2)/σ²_j (primes: the frame of c), added here.
    EStepRowErrors(const GmmModel& m, const float* center, bool model_in_data_frame = false)
        : m_(m), center_(center), moved_(model_in_data_frame) {
        const int64_t K = m.K, d = m.d;
        const bool spherical = m.covariance_type == CovarianceType::Spherical;
        const_mag_.resize(size_t(K));
        ref_const_.resize(size_t(K));
        means_.resize(m.means.size());
        for (int64_t k = 0; k < K; k++) {
            double c0 = double(m.log_weights[size_t(k)]), mu_term = 0, ref = std::fabs(double(m.log_weights[size_t(k)]));
            for (int64_t j = 0; j < d; j++) {
                const double var = m.variance(k, j);
                const double mu = double(m.means[size_t(k * d + j)]) - (moved_ && center ? double(center[j]) : 0.0);
                means_[size_t(k * d + j)] = mu;
                c0 -= 0.5 * (kLog2Pi + std::log(var));
                mu_term += 0.5 * mu * mu / var;
                ref += 0.5 * (kLog2Pi + std::fabs(std::log(var)));
            }
            // The E-step's constant: log w − ½Σ log(2πσ²) (spherical), minus Σ μ²/(2σ²) (diagonal).
            const_mag_[size_t(k)] = spherical ? std::fabs(c0) : std::fabs(c0) + mu_term;
            ref_const_[size_t(k)] = ref;
        }
        xp.resize(size_t(d));
        for (auto* v : {&l, &r, &dist, &dist_err, &dist_err_ref, &delta_float, &delta_ref}) v->resize(size_t(K));
    }

    /// Analyses one row (its float values, before the shift by the center).
    void analyse(const float* x) {
        const int64_t K = m_.K, d = m_.d;
        const bool spherical = m_.covariance_type == CovarianceType::Spherical;
        const double g3 = gamma(3), g2 = gamma(2), gd6 = gamma(double(d + 6)), g2d6 = gamma(double(2 * d + 6));
        const double gref = gamma_double(double(3 * d + 8)), gref_dist = gamma_double(double(d + 6));
        for (int64_t j = 0; j < d; j++) xp[size_t(j)] = double(x[j]) - (center_ ? double(center_[j]) : 0.0);
        std::vector<double> own_frame(x, x + d);
        double lmax = -INFINITY;
        for (int64_t k = 0; k < K; k++) {
            double dk = 0, sk = 0, tk = 0, qk = 0, moved = 0;
            for (int64_t j = 0; j < d; j++) {
                const double xj = xp[size_t(j)], mu = means_[size_t(k * d + j)], var = m_.variance(k, j);
                const double s = (std::fabs(xj) + std::fabs(mu)) * (std::fabs(xj) + std::fabs(mu));
                dk += (xj - mu) * (xj - mu);
                sk += s;
                tk += (std::fabs(xj) * std::fabs(mu) + 0.5 * xj * xj) / var;
                qk += s / var;
                const double dmu = kUnitRoundoff * std::fabs(mu);
                moved += (std::fabs(xj - mu) * dmu + 0.5 * dmu * dmu) / var;
            }
            const double w = 0.5 / m_.variance(k, 0);
            l[size_t(k)] = m_.log_joint(moved_ ? own_frame.data() : xp.data(), k);
            lmax = std::max(lmax, l[size_t(k)]);
            dist[size_t(k)] = dk;
            dist_err[size_t(k)] = gd6 * sk;
            dist_err_ref[size_t(k)] = gref_dist * sk;
            delta_float[size_t(k)] = (spherical ? (1 + g3) * w * gd6 * sk + g3 * (w * dk + const_mag_[size_t(k)])
                                                : g2d6 * tk + g2 * const_mag_[size_t(k)]) +
                                     (moved_ ? moved * (1 + kUnitRoundoff) : 0.0);
            delta_ref[size_t(k)] = gref * (ref_const_[size_t(k)] + 0.5 * qk);
        }
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += std::exp(l[size_t(k)] - lmax);
        lse = lmax + std::log(s);
        for (int64_t k = 0; k < K; k++) r[size_t(k)] = std::exp(l[size_t(k)] - lse);
        detail_bounds::float_row(l, r, delta_float, lse, flt);
        detail_bounds::reference_row(l, r, delta_ref, lse, ref);
    }

    /// |log p̃(x) − log p̂(x)|: the E-step's log-likelihood of the row against the reference's.
    double loglik_bound() const { return flt.loglik + ref.loglik; }
    /// |log r̃_k − log r̂_k| for log_responsibilities() (log r = fl(l̃_k − log p̃), no drop).
    double log_resp_bound(int64_t k) const {
        const double f = delta_float[size_t(k)] + flt.loglik, g = delta_ref[size_t(k)] + ref.loglik;
        const double gap = std::fabs(l[size_t(k)] - lse);
        return f + kUnitRoundoff * (1 + kUnitRoundoff) * (gap + f) + g + kUnitRoundoffDouble * (1 + kUnitRoundoffDouble) * (gap + g);
    }

    // The row's values (exact arithmetic on x' = x − c, in double) and bounds.
    std::vector<double> xp, l, r, dist;
    double lse = 0;
    std::vector<double> dist_err, dist_err_ref;  ///< |d̃ − dist| (float GEMM form), reference's
    std::vector<double> delta_float, delta_ref;  ///< |l̃_k − l_k|, |l̂_k − l_k|
    detail_bounds::RowErrors flt, ref;           ///< responsibilities' and log p's errors

  private:
    static constexpr double kLog2Pi = 1.8378770664093454835606594728112;
    const GmmModel& m_;
    const float* center_;
    bool moved_;
    std::vector<double> means_; ///< the model's means in the frame of x − center, in double
    std::vector<double> const_mag_, ref_const_;
};

/// A rigorous first-order bound on |EStepCpu::accumulate(rows) − reference_estep(rows)|,
/// elementwise for loglik, nk, sum_x and sum_sq (n is exact: bound.n = 0), for an
/// EStepCpu with `block_size` rows per block, any thread count, BLAS kernel or
/// ISA path: the float E-step's error plus the float64 reference's own
/// (EStepRowErrors), carried through the sums (detail_bounds::add_row_stats_bound).
inline SufficientStats estep_error_bound(const GmmModel& m, const float* center, const VectorBlock& rows,
                                         int64_t block_size) {
    const int64_t n = rows.n;
    SufficientStats bound(m.K, m.d, m.covariance_type);
    const double block = double(std::min(block_size, std::max<int64_t>(n, 1)));
    // Float E-step: blocks of `block` rows in float, then up to n + 8 double additions
    // (blocks, threads, chunks); the reference: n-row double sums (+ d for ‖x − μ‖²).
    const detail_bounds::RowStatsTerms float_terms{kUnitRoundoff, kUnitRoundoff, block, double(n) + 8};
    const detail_bounds::RowStatsTerms ref_terms{kUnitRoundoffDouble, kUnitRoundoffDouble, double(n + m.d), 0};
    EStepRowErrors row(m, center);
    std::vector<float> xf(size_t(m.d));
    double loglik_abs = 0;
    for (int64_t i = 0; i < n; i++) {
        rows.row_to_float(i, xf.data());
        row.analyse(xf.data());
        bound.loglik += row.loglik_bound();
        loglik_abs += std::fabs(row.lse);
        detail_bounds::add_row_stats_bound(float_terms, m, row.xp, row.r, row.flt.rho, row.dist, row.dist_err, bound);
        detail_bounds::add_row_stats_bound(ref_terms, m, row.xp, row.r, row.ref.rho, row.dist, row.dist_err_ref, bound);
    }
    // Both sides add the n log-likelihoods in double.
    bound.loglik += 2 * gamma_double(double(n) + 8) * loglik_abs;
    bound.n = 0;
    return bound;
}

/// Each statistic of `got` within its own bound of `ref`, elementwise; the row
/// count exactly. A bound that is not finite would make the check vacuous: it fails.
inline void expect_stats_within_bound(const SufficientStats& got, const SufficientStats& ref,
                                      const SufficientStats& bound, const std::string& where) {
    EXPECT_EQ(got.n, ref.n) << where;
    EXPECT_TRUE(std::isfinite(bound.loglik)) << where << " loglik bound";
    EXPECT_LE(std::fabs(got.loglik - ref.loglik), bound.loglik) << where << " loglik";
    auto check = [&](const std::vector<double>& g, const std::vector<double>& rf, const std::vector<double>& b,
                     const char* name) {
        for (size_t t = 0; t < g.size(); t++) {
            if (!std::isfinite(b[t]) || !(std::fabs(g[t] - rf[t]) <= b[t])) {
                ADD_FAILURE() << where << " " << name << "[" << t << "]: |" << g[t] << " - " << rf[t]
                              << "| = " << std::fabs(g[t] - rf[t]) << " > bound " << b[t];
                return; // one report per array
            }
        }
    };
    check(got.nk, ref.nk, bound.nk, "nk");
    check(got.sum_x, ref.sum_x, bound.sum_x, "sum_x");
    check(got.sum_sq, ref.sum_sq, bound.sum_sq, "sum_sq");
}

} // namespace faiss_gmm::testing
