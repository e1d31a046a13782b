// Shared by the GoogleTest suites: random models and data, float64 comparisons,
// and the location of ../shared/datasets.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"

namespace faiss_gmm::testing {

/// Where ../shared/datasets is, relative to the project root.
inline std::string shared_dataset(const std::string& rel) {
    return std::string(FAISS_GMM_SOURCE_DIR) + "/../shared/datasets/" + rel;
}

/// Points drawn around K random centers (spread `sigma`) so responsibilities are
/// neither all hard nor all flat.
inline std::vector<float> clustered_data(int64_t n, int64_t d, int64_t K, float sigma, uint64_t seed,
                                         std::vector<float>* centers_out = nullptr) {
    std::mt19937_64 rng{seed};
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> centers(size_t(K) * d);
    for (auto& c : centers) c = 3.0f * g(rng);
    std::vector<float> x(size_t(n) * d);
    std::uniform_int_distribution<int64_t> pick(0, K - 1);
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = pick(rng);
        for (int64_t j = 0; j < d; j++) x[i * d + j] = centers[k * d + j] + sigma * g(rng);
    }
    if (centers_out) *centers_out = centers;
    return x;
}

/// A random symmetric positive definite d × d matrix (row-major, double) with
/// eigenvalues spread geometrically over [base / cond, base] along random axes
/// (a product of d random Householder reflections).
inline std::vector<double> random_spd(int64_t d, double base, double cond, std::mt19937_64& rng) {
    std::normal_distribution<double> g;
    std::vector<double> q(size_t(d * d), 0.0), v(d);
    for (int64_t i = 0; i < d; i++) q[i * d + i] = 1.0;
    for (int64_t r = 0; r < d; r++) { // Q ← Q (I − 2vvᵀ/vᵀv)
        double vv = 0;
        for (auto& x : v) vv += (x = g(rng)) * x;
        for (int64_t i = 0; i < d; i++) {
            double qv = 0;
            for (int64_t j = 0; j < d; j++) qv += q[i * d + j] * v[j];
            for (int64_t j = 0; j < d; j++) q[i * d + j] -= 2 * qv * v[j] / vv;
        }
    }
    std::vector<double> s(size_t(d * d), 0.0);
    for (int64_t m = 0; m < d; m++) {
        const double lambda = base * std::pow(cond, -double(m) / double(std::max<int64_t>(d - 1, 1)));
        for (int64_t i = 0; i < d; i++) {
            for (int64_t j = 0; j < d; j++) s[i * d + j] += q[i * d + m] * lambda * q[j * d + m];
        }
    }
    return s;
}

/// A random valid model: means near the data, variances in [0.5, 2]·base, random weights;
/// full covariances: random_spd with eigenvalues in [base/4, base]·[0.5, 2].
inline GmmModel random_model(int64_t K, int64_t d, CovarianceType type, float base_var, uint64_t seed,
                             const std::vector<float>* means_from = nullptr) {
    std::mt19937_64 rng{seed};
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::uniform_real_distribution<float> u(0.5f, 2.0f);
    GmmModel m(K, d, type);
    for (size_t i = 0; i < m.means.size(); i++) m.means[i] = means_from ? (*means_from)[i] + 0.3f * g(rng) : 3.0f * g(rng);
    if (type == CovarianceType::Full) {
        for (int64_t k = 0; k < K; k++) m.set_covariance(k, random_spd(d, base_var * u(rng), 4.0, rng).data());
    } else {
        for (auto& v : m.variances) v = base_var * u(rng);
    }
    double s = 0;
    std::vector<double> w(K);
    for (auto& x : w) s += (x = u(rng));
    for (int64_t k = 0; k < K; k++) m.log_weights[k] = float(std::log(w[k] / s));
    return m;
}

/// max_i |a_i − b_i| / max(max_i |b_i|, tiny): error relative to the statistic's scale.
inline double max_rel_error(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 1e-30;
    for (size_t i = 0; i < a.size(); i++) {
        num = std::max(num, std::fabs(a[i] - b[i]));
        den = std::max(den, std::fabs(b[i]));
    }
    return num / den;
}

/// Every statistic of `got` within rel_tol of `ref` (each array relative to its own scale).
inline void expect_stats_near(const SufficientStats& got, const SufficientStats& ref, double rel_tol,
                              const std::string& where) {
    EXPECT_EQ(got.n, ref.n) << where;
    EXPECT_NEAR(got.loglik, ref.loglik, rel_tol * std::fabs(ref.loglik) + 1e-9) << where << " loglik";
    EXPECT_LE(max_rel_error(got.nk, ref.nk), rel_tol) << where << " nk";
    EXPECT_LE(max_rel_error(got.sum_x, ref.sum_x), rel_tol) << where << " sum_x";
    EXPECT_LE(max_rel_error(got.sum_sq, ref.sum_sq), rel_tol) << where << " sum_sq";
}

/// The same model to the bit (operator== on the float vectors; no NaN in a valid model).
inline void expect_models_identical(const GmmModel& a, const GmmModel& b, const std::string& where) {
    EXPECT_EQ(a.means, b.means) << where;
    EXPECT_EQ(a.variances, b.variances) << where;
    EXPECT_EQ(a.log_weights, b.log_weights) << where;
}

/// Runs fn and checks it throws Ex with `needle` in its message.
template <class Ex>
void expect_error(const std::function<void()>& fn, const std::string& needle, const std::string& what = "") {
    try {
        fn();
        ADD_FAILURE() << what << ": no exception";
    } catch (const Ex& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
                << what << ": message does not name the problem (\"" << needle << "\"): " << e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << what << ": wrong exception type: " << e.what();
    }
}

} // namespace faiss_gmm::testing
