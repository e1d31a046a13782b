#include "GmmModel.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace faiss_gmm {

namespace {
constexpr double kLog2Pi = 1.8378770664093454835606594728112;
}

GmmModel::GmmModel(int64_t K_, int64_t d_, CovarianceType type)
        : K(K_), d(d_), covariance_type(type) {
    if (K < 1 || d < 1) {
        throw std::invalid_argument("GmmModel: need K >= 1 and d >= 1, got K = " + std::to_string(K) +
                                    ", d = " + std::to_string(d));
    }
    log_weights.assign(K, float(-std::log(double(K))));
    means.assign(size_t(K) * d, 0.0f);
    variances.assign(size_t(K) * nvar(), 1.0f);
}

void GmmModel::validate() const {
    auto fail = [](const std::string& what) { throw std::invalid_argument("GmmModel: " + what); };
    if (K < 1 || d < 1) {
        fail("need K >= 1 and d >= 1, got K = " + std::to_string(K) + ", d = " + std::to_string(d));
    }
    if (covariance_type != CovarianceType::Spherical && covariance_type != CovarianceType::Diagonal) {
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
    for (size_t i = 0; i < variances.size(); i++) {
        if (!(variances[i] > 0) || !std::isfinite(variances[i])) {
            fail("variance of component " + std::to_string(i / nvar()) + " is " + std::to_string(variances[i]) + " (must be finite and > 0)");
        }
    }
}

double GmmModel::log_joint(const double* x, int64_t k) const {
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

GmmModel GmmModel::translated(const float* offset) const {
    GmmModel m = *this;
    for (int64_t k = 0; k < K; k++) {
        for (int64_t j = 0; j < d; j++) {
            m.means[k * d + j] = float(double(means[k * d + j]) + double(offset[j]));
        }
    }
    return m;
}

} // namespace faiss_gmm
