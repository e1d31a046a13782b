// The shared definition of where the fast E-steps' expanded float32 log-density may
// have cancelled (faiss_gmm/ExactLogDensity.h, issue 13): the error bound holds for a
// float32 evaluation of the expanded form, including rows where it cancels; the exact
// terms are log_joint's; the per-model test of narrow components (which the CUDA
// backend uses to pick its refining path) flags the issue's cases and no ordinary model.
// Host-only: runs in CI.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "faiss_gmm/ExactLogDensity.h"
#include "faiss_gmm/GmmModel.h"

using namespace faiss_gmm;

namespace {

/// log p(x, k) in float32 from the expanded form, summed in order, as the fast E-steps
/// evaluate it (the bound holds for any summation order; this is one). x: the centered row.
float expanded_log_density(const GmmModel& m, const float* x, int64_t k) {
    const int64_t d = m.d;
    const double c = m.log_constants()[size_t(k)];
    const float* mu = m.means.data() + k * d;
    if (m.covariance_type == CovarianceType::Spherical) {
        float xn = 0, dot = 0;
        double mn = 0;
        for (int64_t j = 0; j < d; j++) {
            xn += x[j] * x[j];
            dot += x[j] * mu[j];
            mn += double(mu[j]) * mu[j];
        }
        const float d2 = xn + float(mn) - 2.0f * dot;
        return float(c) - float(0.5 / double(m.variances[size_t(k)])) * d2;
    }
    float s = 0;
    for (int64_t j = 0; j < d; j++) {
        const double var = m.variances[size_t(k * d + j)];
        s += x[j] * float(double(mu[j]) / var);
        s += x[j] * x[j] * float(-0.5 / var);
    }
    return float(c) + s;
}

/// Rows near `offset` in every coordinate (variance 1), a model with a variance 1e-6 of the
/// data's on row 0, one collapsed onto row 1 (1e-9), two near-duplicate means and ordinary
/// ones: the issue's cases. centered: the model's means and the rows are in the frame of the
/// data mean.
struct Case {
    GmmModel model;
    std::vector<float> x;      // n × d, the E-step's frame
    std::vector<float> center; // d
};
Case issue_case(int64_t n, int64_t d, float offset, CovarianceType type, bool centered) {
    std::mt19937_64 rng(7);
    std::normal_distribution<float> g(0.0f, 1.0f);
    Case c;
    std::vector<float> raw(size_t(n * d)), mean(size_t(d), 0.0f);
    for (auto& v : raw) v = offset + g(rng);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) mean[size_t(j)] += raw[size_t(i * d + j)] / float(n);
    c.center = centered ? mean : std::vector<float>(size_t(d), 0.0f);
    c.x = raw;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) c.x[size_t(i * d + j)] -= c.center[size_t(j)];
    GmmModel m(6, d, type);
    auto set = [&](int64_t k, const float* mu, float var) {
        for (int64_t j = 0; j < d; j++) m.means[size_t(k * d + j)] = mu[j];
        for (int64_t j = 0; j < m.nvar(); j++) m.variances[size_t(k * m.nvar() + j)] = var;
    };
    std::vector<float> mid(static_cast<size_t>(d)), near;
    for (int64_t j = 0; j < d; j++) mid[size_t(j)] = mean[size_t(j)] - c.center[size_t(j)];
    near = mid;
    near[0] += 1e-4f;
    set(0, &c.x[0], 1e-6f);
    set(1, &c.x[size_t(d)], 1e-9f);
    set(2, mid.data(), 1.0f);
    set(3, near.data(), 1.0f);
    set(4, &c.x[size_t(5 * d)], 2.0f);
    set(5, &c.x[size_t(9 * d)], 2.0f);
    c.model = m;
    return c;
}

} // namespace

TEST(ExactLogDensity, BoundHoldsForTheExpandedFloat32Form) {
    // Every row of the issue's cases (where the expanded form cancels by tens of nats and more)
    // and of an ordinary model: |float32 − log_joint| <= slope·‖x − c‖² + offset. The bound is
    // rigorous (D·u of the magnitudes), so no slack is added beyond the float rounding of the
    // bound itself (relative 2^-23).
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        for (bool centered : {false, true}) {
            const int64_t n = 200, d = 16;
            Case c = issue_case(n, d, 1000.0f, type, centered);
            const ExactLogDensity e = exact_log_density(c.model, c.center.data());
            double worst = 0, largest_error = 0;
            for (int64_t i = 0; i < n; i++) {
                const float* x = &c.x[size_t(i * d)];
                std::vector<double> xd(x, x + d);
                float xn = 0;
                for (int64_t j = 0; j < d; j++) xn += x[j] * x[j];
                for (int64_t k = 0; k < c.model.K; k++) {
                    const double err = std::fabs(double(expanded_log_density(c.model, x, k)) -
                                                 c.model.log_joint(xd.data(), k));
                    const double bound = double(e.err_slope[size_t(k)]) * xn + e.err_offset[size_t(k)];
                    worst = std::max(worst, err / (bound * (1 + 1e-6)));
                    largest_error = std::max(largest_error, err);
                }
            }
            EXPECT_LE(worst, 1.0) << to_string(type) << (centered ? " centered" : " uncentered");
            // The case has teeth: the expanded form is off by nats somewhere.
            EXPECT_GT(largest_error, 1.0) << to_string(type) << (centered ? " centered" : " uncentered");
        }
    }
}

TEST(ExactLogDensity, ExactTermsAreLogJoint) {
    Case c = issue_case(20, 8, 1000.0f, CovarianceType::Diagonal, false);
    const ExactLogDensity e = exact_log_density(c.model, c.center.data());
    const int64_t d = c.model.d;
    for (int64_t k = 0; k < c.model.K; k++) {
        std::vector<double> x(static_cast<size_t>(d));
        for (int64_t j = 0; j < d; j++) x[size_t(j)] = c.x[size_t(3 * d + j)];
        double q = 0;
        for (int64_t j = 0; j < d; j++) {
            const double diff = x[size_t(j)] + c.center[size_t(j)] - e.exact_means[size_t(k * d + j)];
            q += diff * diff * e.exact_inv_var[size_t(k * d + j)];
        }
        // Both in double from the same float inputs, summed in other orders: a few ulps (2^-52) of
        // the magnitudes, which here reach 1e10 (row 3 against the collapsed component).
        const double want = c.model.log_joint(x.data(), k);
        EXPECT_NEAR(e.exact_const[size_t(k)] - 0.5 * q, want, 1e-13 * std::max(1.0, std::fabs(want)));
    }
}

TEST(ExactLogDensity, MayHaveCancelledIsTheCpuTest) {
    EXPECT_FALSE(may_have_cancelled(kRefineTolerance, 0.0f));          // within the absolute tolerance
    EXPECT_FALSE(may_have_cancelled(1e-3f, 1e-3f / kRefineRelative)); // within the relative one
    EXPECT_TRUE(may_have_cancelled(1e-3f, 1e-3f / kRefineRelative / 2));
    EXPECT_TRUE(may_have_cancelled(30.0f, 5.0f));
}

TEST(ExactLogDensity, NarrowComponentsAreTheIssuesCasesOnly) {
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        const std::string what = to_string(type);
        // Centered: the variance-1e-6 and collapsed components; the near-duplicate means and the
        // ordinary ones (variance 1–2, near the center) are not narrow.
        Case c = issue_case(50, 16, 1000.0f, type, true);
        EXPECT_EQ(narrow_components(exact_log_density(c.model, c.center.data())), (std::vector<int64_t>{0, 1}))
                << what;
        // Uncentered at 1000: every component's expanded form cancels (‖μ‖² ≈ 1.6e7 against σ² ≤ 2).
        Case u = issue_case(50, 16, 1000.0f, type, false);
        EXPECT_EQ(narrow_components(exact_log_density(u.model, nullptr)).size(), size_t(6)) << what;
    }
    // Ordinary models: the GPU benchmark's (d = 128, means = rows of clusters with spread 1 per
    // dimension, variance 0.35, centered) and a SIFT-like uncentered one (coordinates ~0–100,
    // cluster variance ~300 per dimension) have no narrow component.
    std::mt19937_64 rng(3);
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (int which = 0; which < 2; which++) {
        GmmModel m(256, 128, CovarianceType::Spherical);
        for (auto& v : m.means) v = which == 0 ? 1.1f * g(rng) : std::fabs(20.0f + 25.0f * g(rng));
        for (auto& v : m.variances) v = which == 0 ? 0.35f : 300.0f;
        EXPECT_TRUE(narrow_components(exact_log_density(m, nullptr)).empty()) << "ordinary model " << which;
    }
}
