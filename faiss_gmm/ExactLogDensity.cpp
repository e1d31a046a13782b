#include "ExactLogDensity.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace faiss_gmm {

namespace {
constexpr double kLog2Pi = 1.8378770664093454835606594728112; // log(2π)
} // namespace

namespace {

/// The full-covariance terms (see full_log_density_error in the header). No copy of
/// the U_k: the exact recomputation widens the float factors as it reads them (a
/// double copy was K·d² doubles, 32 MiB at K = 256, d = 128).
void exact_log_density_full(const GmmModel& model, const float* center, ExactLogDensity& e) {
    const int64_t K = model.K, d = model.d;
    const double u = std::ldexp(1.0, -24), gamma = double(d + 1) * u / (1 - double(d + 1) * u);
    const std::vector<double> c = model.log_constants();
    for (int64_t k = 0; k < K; k++) {
        double fro = 0, mu_sq = 0;
        for (int64_t i = 0; i < d * d; i++) fro += double(model.variances[k * d * d + i]) * model.variances[k * d * d + i];
        for (int64_t j = 0; j < d; j++) {
            const double mu = model.means[k * d + j];
            mu_sq += mu * mu;
            e.exact_means[size_t(k * d + j)] = mu + (center ? double(center[j]) : 0.0);
        }
        e.exact_const[k] = c[k];
        e.quad_const[k] = float(c[k]);
        e.mean_sq[k] = mu_sq;
        e.trace_var[k] = 0; // unused for full models (no narrow-component test)
        e.err_slope[k] = float(gamma * (1 + u) * std::sqrt(fro));
        e.err_offset[k] = float(u * (1 + u) * std::sqrt(mu_sq) * std::sqrt(fro));
    }
}

} // namespace

ExactLogDensity exact_log_density(const GmmModel& model, const float* center) {
    const int64_t K = model.K, d = model.d;
    ExactLogDensity e;
    e.K = K;
    e.d = d;
    e.spherical = model.covariance_type == CovarianceType::Spherical;
    e.full = model.covariance_type == CovarianceType::Full;
    const double u = std::ldexp(1.0, -24);
    e.err_slope.resize(K);
    e.err_offset.resize(K);
    e.exact_const.resize(K);
    e.quad_const.resize(K);
    e.mean_sq.resize(K);
    e.trace_var.resize(K);
    e.exact_means.resize(size_t(K) * d);
    if (e.full) {
        exact_log_density_full(model, center, e);
        return e;
    }
    e.exact_inv_var.resize(model.variances.size());
    for (int64_t k = 0; k < K; k++) {
        double log_det = 0, max_inv = 0, mu_term = 0, mu_sq = 0, trace = 0;
        // A spherical component's log-variance once, not d times (set_model runs this every EM
        // iteration); the sum below adds the same value d times, as before.
        const double sph_log_var = e.spherical ? std::log(double(model.variances[k])) : 0.0;
        for (int64_t j = 0; j < d; j++) {
            const double var = model.variance(k, j), mu = model.means[k * d + j];
            log_det += kLog2Pi + (e.spherical ? sph_log_var : std::log(var));
            max_inv = std::max(max_inv, 1.0 / var);
            mu_term += mu * mu / var;
            mu_sq += mu * mu;
            trace += var;
            e.exact_means[size_t(k * d + j)] = mu + (center ? double(center[j]) : 0.0);
        }
        for (int64_t j = 0; j < model.nvar(); j++) {
            e.exact_inv_var[size_t(k * model.nvar() + j)] = 1.0 / double(model.variances[k * model.nvar() + j]);
        }
        e.exact_const[k] = double(model.log_weights[k]) - 0.5 * log_det;
        e.quad_const[k] = float(e.exact_const[k]);
        e.mean_sq[k] = mu_sq;
        e.trace_var[k] = trace;
        // Spherical: ½(‖x‖² + ‖μ‖² − 2x·μ)/σ² with d products and 3 additions, |2x·μ| ≤ ‖x‖² + ‖μ‖²;
        // diagonal: 2d products and 3 additions, |x·μ/σ²| ≤ ... ≤ max(1/σ²)‖x‖² + Σμ²/σ².
        const double slope = e.spherical ? 2 * u * double(d + 3) * 0.5 * max_inv : u * double(2 * d + 3) * max_inv;
        const double offset = e.spherical ? slope * mu_sq : u * double(2 * d + 3) * mu_term;
        e.err_slope[k] = float(slope);
        e.err_offset[k] = float(offset);
    }
    return e;
}

std::vector<int64_t> narrow_components(const ExactLogDensity& e) {
    if (e.full) throw std::invalid_argument("narrow_components: not defined for full covariances");
    std::vector<int64_t> out;
    for (int64_t k = 0; k < e.K; k++) {
        const double norm = std::sqrt(e.mean_sq[k]) + std::sqrt(e.trace_var[k]); // ‖x − c‖ of the typical row
        const double err = double(e.err_slope[k]) * norm * norm + double(e.err_offset[k]);
        if (err > kNarrowRelative * 0.5 * double(e.d)) out.push_back(k);
    }
    return out;
}

} // namespace faiss_gmm
