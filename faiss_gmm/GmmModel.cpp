#include "GmmModel.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace faiss_gmm {

namespace {
constexpr double kLog2Pi = 1.8378770664093454835606594728112;

/// In place: the upper triangle of the row-major n × n matrix `a` (U upper
/// triangular, nonzero diagonal) becomes U⁻¹; the strict lower triangle is not read.
void invert_upper_triangular(std::vector<double>& a, int64_t n) {
    for (int64_t j = n - 1; j >= 0; j--) {
        a[j * n + j] = 1.0 / a[j * n + j];
        // Column j of U⁻¹ above the diagonal: V_ij = −(Σ_{i<m<=j} U_im V_mj) / U_ii.
        for (int64_t i = j - 1; i >= 0; i--) {
            double s = 0;
            for (int64_t m = i + 1; m <= j; m++) s += a[i * n + m] * a[m * n + j];
            a[i * n + j] = -s / a[i * n + i];
        }
    }
}
} // namespace

GmmModel::GmmModel(int64_t K_, int64_t d_, CovarianceType type)
        : K(K_), d(d_), covariance_type(type) {
    if (K < 1 || d < 1) {
        throw std::invalid_argument("GmmModel: need K >= 1 and d >= 1, got K = " + std::to_string(K) +
                                    ", d = " + std::to_string(d));
    }
    log_weights.assign(K, float(-std::log(double(K))));
    means.assign(size_t(K) * d, 0.0f);
    if (type == CovarianceType::Full) {
        variances.assign(size_t(K) * d * d, 0.0f); // U_k = I
        for (int64_t k = 0; k < K; k++) {
            for (int64_t j = 0; j < d; j++) variances[size_t((k * d + j) * d + j)] = 1.0f;
        }
    } else {
        variances.assign(size_t(K) * nvar(), 1.0f);
    }
}

double GmmModel::variance(int64_t k, int64_t j) const {
    switch (covariance_type) {
        case CovarianceType::Spherical: return variances[k];
        case CovarianceType::Diagonal: return variances[k * d + j];
        case CovarianceType::Full: break;
    }
    // Σ = (U Uᵀ)⁻¹ = VᵀV with V = U⁻¹ upper triangular: Σ_jj = Σ_m V_mj². Column j
    // of V solves U v = e_j by back substitution (v_m = 0 below row j).
    const float* U = precision_cholesky(k);
    std::vector<double> v(j + 1);
    double s = 0;
    for (int64_t m = j; m >= 0; m--) {
        double acc = m == j ? 1.0 : 0.0;
        for (int64_t t = m + 1; t <= j; t++) acc -= double(U[m * d + t]) * v[t];
        v[m] = acc / double(U[m * d + m]);
        s += v[m] * v[m];
    }
    return s;
}

std::vector<double> GmmModel::covariance(int64_t k) const {
    std::vector<double> cov(size_t(d * d), 0.0);
    if (covariance_type != CovarianceType::Full) {
        for (int64_t j = 0; j < d; j++) cov[j * d + j] = variance(k, j);
        return cov;
    }
    std::vector<double> v(size_t(d * d), 0.0);
    const float* U = precision_cholesky(k);
    for (int64_t i = 0; i < d; i++) {
        for (int64_t j = i; j < d; j++) v[i * d + j] = U[i * d + j];
    }
    invert_upper_triangular(v, d);
    for (int64_t i = 0; i < d; i++) {
        for (int64_t j = i; j < d; j++) {
            double s = 0;
            for (int64_t m = 0; m <= i; m++) s += v[m * d + i] * v[m * d + j]; // (VᵀV)_ij, V upper
            cov[i * d + j] = cov[j * d + i] = s;
        }
    }
    return cov;
}

namespace {

/// Σ = RᵀR: the upper triangle of r (n × n row-major) becomes R. Returns false at the
/// first pivot that is not positive (its index in *bad_pivot, its value in *bad_value),
/// true when Σ is positive definite. A pivot at or below (n + 2)·2^-53 of the largest
/// diagonal entry counts as not positive: it is within the rounding of the
/// factorization itself (a singular Σ, e.g. fewer rows than dimensions, lands there).
bool cholesky_upper(const double* cov, int64_t n, std::vector<double>& r, int64_t* bad_pivot, double* bad_value) {
    r.assign(size_t(n * n), 0.0);
    double max_diag = 0;
    for (int64_t i = 0; i < n; i++) max_diag = std::max(max_diag, std::fabs(cov[i * n + i]));
    const double tiny = double(n + 2) * std::ldexp(1.0, -53) * max_diag;
    for (int64_t i = 0; i < n; i++) {
        double diag = cov[i * n + i];
        for (int64_t m = 0; m < i; m++) diag -= r[m * n + i] * r[m * n + i];
        if (!(diag > tiny) || !std::isfinite(diag)) {
            *bad_pivot = i;
            *bad_value = diag;
            return false;
        }
        r[i * n + i] = std::sqrt(diag);
        for (int64_t j = i + 1; j < n; j++) {
            double s = cov[i * n + j];
            for (int64_t m = 0; m < i; m++) s -= r[m * n + i] * r[m * n + j];
            r[i * n + j] = s / r[i * n + i];
        }
    }
    return true;
}

/// Σ with its eigenvalues below `floor` raised to it (cyclic Jacobi in double, from
/// the upper triangle of cov), into out; returns how many were raised.
int floor_eigenvalues(const double* cov, int64_t n, double floor, std::vector<double>& out) {
    std::vector<double> a(size_t(n * n)), v(size_t(n * n), 0.0);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = i; j < n; j++) a[i * n + j] = a[j * n + i] = cov[i * n + j];
        v[i * n + i] = 1.0;
    }
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int64_t i = 0; i < n; i++) {
            diag += a[i * n + i] * a[i * n + i];
            for (int64_t j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
        }
        if (off <= 1e-30 * diag) break; // off-diagonal mass below double's resolution
        for (int64_t p = 0; p < n; p++) {
            for (int64_t q = p + 1; q < n; q++) {
                const double apq = a[p * n + q];
                if (apq == 0) continue;
                const double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                const double t = (theta >= 0 ? 1 : -1) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
                const double c = 1 / std::sqrt(t * t + 1), s = t * c;
                for (int64_t m = 0; m < n; m++) { // A ← A·J
                    const double amp = a[m * n + p], amq = a[m * n + q];
                    a[m * n + p] = c * amp - s * amq;
                    a[m * n + q] = s * amp + c * amq;
                }
                for (int64_t m = 0; m < n; m++) { // A ← Jᵀ·A
                    const double apm = a[p * n + m], aqm = a[q * n + m];
                    a[p * n + m] = c * apm - s * aqm;
                    a[q * n + m] = s * apm + c * aqm;
                }
                for (int64_t m = 0; m < n; m++) { // V ← V·J
                    const double vmp = v[m * n + p], vmq = v[m * n + q];
                    v[m * n + p] = c * vmp - s * vmq;
                    v[m * n + q] = s * vmp + c * vmq;
                }
            }
        }
    }
    int raised = 0;
    std::vector<double> lambda(n);
    for (int64_t i = 0; i < n; i++) {
        lambda[i] = a[i * n + i];
        if (!(lambda[i] >= floor)) {
            lambda[i] = floor;
            raised++;
        }
    }
    out.assign(size_t(n * n), 0.0);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = i; j < n; j++) {
            double s = 0;
            for (int64_t m = 0; m < n; m++) s += v[i * n + m] * lambda[m] * v[j * n + m];
            out[i * n + j] = out[j * n + i] = s;
        }
    }
    return raised;
}

} // namespace

int GmmModel::set_covariance(int64_t k, const double* cov, double eigen_floor) {
    if (covariance_type != CovarianceType::Full) {
        throw std::logic_error("GmmModel::set_covariance: the model's covariances are not full");
    }
    const std::string who = "GmmModel: covariance of component " + std::to_string(k);
    std::vector<double> r, floored;
    int64_t bad_pivot = -1;
    double bad_value = 0;
    bool pd = cholesky_upper(cov, d, r, &bad_pivot, &bad_value);
    int raised = 0;
    if (pd && eigen_floor > 0) {
        invert_upper_triangular(r, d); // U; λ_min(Σ) = 1/‖U‖₂² >= 1/‖U‖_F²
        double fro = 0;
        for (int64_t i = 0; i < d; i++) {
            for (int64_t j = i; j < d; j++) fro += r[i * d + j] * r[i * d + j];
        }
        if (1.0 / fro < eigen_floor) pd = false; // some eigenvalue may be below the floor: decompose
    } else if (pd) {
        invert_upper_triangular(r, d);
    }
    if (!pd && eigen_floor > 0) {
        raised = floor_eigenvalues(cov, d, eigen_floor, floored);
        pd = cholesky_upper(floored.data(), d, r, &bad_pivot, &bad_value);
        if (pd) invert_upper_triangular(r, d);
    }
    if (!pd) {
        throw std::invalid_argument(who + " is not positive definite (pivot " + std::to_string(bad_pivot) +
                                    " of its Cholesky factorization is " + std::to_string(bad_value) +
                                    "): raise reg_covar or min_variance_ratio, or use fewer components");
    }
    float* U = variances.data() + k * d * d;
    for (int64_t i = 0; i < d; i++) {
        for (int64_t j = 0; j < d; j++) {
            const double v = j >= i ? r[i * d + j] : 0.0;
            if (!std::isfinite(float(v)) || (j == i && !(float(v) > 0))) {
                throw std::invalid_argument(who + ": its precision's Cholesky factor (" + std::to_string(v) +
                                            ") is not representable in float32: rescale the data");
            }
            U[i * d + j] = float(v);
        }
    }
    return raised;
}

void GmmModel::validate() const {
    auto fail = [](const std::string& what) { throw std::invalid_argument("GmmModel: " + what); };
    if (K < 1 || d < 1) {
        fail("need K >= 1 and d >= 1, got K = " + std::to_string(K) + ", d = " + std::to_string(d));
    }
    if (covariance_type != CovarianceType::Spherical && covariance_type != CovarianceType::Diagonal &&
        covariance_type != CovarianceType::Full) {
        fail("unknown covariance type");
    }
    if (int64_t(log_weights.size()) != K) fail("log_weights has " + std::to_string(log_weights.size()) + " entries, expected K = " + std::to_string(K));
    if (int64_t(means.size()) != K * d) fail("means has " + std::to_string(means.size()) + " entries, expected K*d = " + std::to_string(K * d));
    if (int64_t(variances.size()) != K * nvar()) fail("variances has " + std::to_string(variances.size()) + " entries, expected " + std::to_string(K * nvar()));
    double wsum = 0;
    for (int64_t k = 0; k < K; k++) {
        if (!std::isfinite(log_weights[k])) fail("log weight of component " + std::to_string(k) + " is not finite");
        wsum += std::exp(double(log_weights[k]));
    }
    if (std::fabs(wsum - 1.0) > 1e-3) fail("weights sum to " + std::to_string(wsum) + ", not 1");
    for (size_t i = 0; i < means.size(); i++) {
        if (!std::isfinite(means[i])) fail("mean of component " + std::to_string(i / d) + " is not finite");
    }
    if (covariance_type == CovarianceType::Full) {
        for (int64_t k = 0; k < K; k++) {
            const float* U = precision_cholesky(k);
            for (int64_t i = 0; i < d; i++) {
                for (int64_t j = 0; j < d; j++) {
                    const float v = U[i * d + j];
                    const bool ok = j < i ? v == 0.0f : std::isfinite(v) && (j > i || v > 0);
                    if (!ok) {
                        fail("precision Cholesky factor of component " + std::to_string(k) + " has " +
                             std::to_string(v) + " at (" + std::to_string(i) + ", " + std::to_string(j) +
                             "): it must be upper triangular with a finite, positive diagonal");
                    }
                }
            }
        }
        return;
    }
    for (size_t i = 0; i < variances.size(); i++) {
        if (!(variances[i] > 0) || !std::isfinite(variances[i])) {
            fail("variance of component " + std::to_string(i / nvar()) + " is " + std::to_string(variances[i]) + " (must be finite and > 0)");
        }
    }
}

double GmmModel::log_joint(const double* x, int64_t k) const {
    if (covariance_type == CovarianceType::Full) {
        const float* U = precision_cholesky(k);
        const float* mu = means.data() + k * d;
        double quad = 0, log_det = 0;
        for (int64_t j = 0; j < d; j++) {
            double y = 0; // ((x − μ)ᵀ U)_j: U is upper triangular, rows 0..j
            for (int64_t i = 0; i <= j; i++) y += (x[i] - double(mu[i])) * double(U[i * d + j]);
            quad += y * y;
            log_det += std::log(double(U[j * d + j]));
        }
        return double(log_weights[k]) - 0.5 * double(d) * kLog2Pi + log_det - 0.5 * quad;
    }
    double acc = 0;
    for (int64_t j = 0; j < d; j++) {
        const double var = variance(k, j);
        const double diff = x[j] - double(means[k * d + j]);
        acc += kLog2Pi + std::log(var) + diff * diff / var;
    }
    return double(log_weights[k]) - 0.5 * acc;
}

std::vector<double> GmmModel::log_constants() const {
    std::vector<double> c(K);
    for (int64_t k = 0; k < K; k++) {
        double acc = 0;
        if (covariance_type == CovarianceType::Spherical) {
            acc = double(d) * (kLog2Pi + std::log(double(variances[k])));
        } else if (covariance_type == CovarianceType::Full) {
            acc = double(d) * kLog2Pi;
            for (int64_t j = 0; j < d; j++) acc -= 2.0 * std::log(double(precision_cholesky(k)[j * d + j]));
        } else {
            for (int64_t j = 0; j < d; j++) {
                const double var = variances[k * d + j];
                const double mu = means[k * d + j];
                acc += kLog2Pi + std::log(var) + mu * mu / var;
            }
        }
        c[k] = double(log_weights[k]) - 0.5 * acc;
    }
    return c;
}

void GmmModel::stacked_precision_factors(std::vector<float>& w, std::vector<float>& mean_proj) const {
    precision_mean_projections(mean_proj);
    w.assign(size_t(K * d) * size_t(d), 0.0f);
    for (int64_t k = 0; k < K; k++) {
        const float* U = precision_cholesky(k);
        for (int64_t j = 0; j < d; j++) {
            for (int64_t i = 0; i <= j; i++) w[size_t((k * d + j) * d + i)] = U[i * d + j];
        }
    }
}

void GmmModel::precision_mean_projections(std::vector<float>& mean_proj) const {
    if (covariance_type != CovarianceType::Full) {
        throw std::invalid_argument("GmmModel: precision factors of a model that is not full-covariance");
    }
    mean_proj.resize(size_t(K * d));
    for (int64_t k = 0; k < K; k++) {
        const float* U = precision_cholesky(k);
        const float* mu = means.data() + k * d;
        for (int64_t j = 0; j < d; j++) {
            double m = 0;
            for (int64_t i = 0; i <= j; i++) m += double(mu[i]) * U[i * d + j];
            mean_proj[size_t(k * d + j)] = float(m);
        }
    }
}

GmmModel GmmModel::translated(const float* offset) const {
    GmmModel m = *this;
    m.translate(offset);
    return m;
}

void GmmModel::translate(const float* offset) {
    for (int64_t k = 0; k < K; k++) {
        for (int64_t j = 0; j < d; j++) {
            means[k * d + j] = float(double(means[k * d + j]) + double(offset[j]));
        }
    }
}

} // namespace faiss_gmm
