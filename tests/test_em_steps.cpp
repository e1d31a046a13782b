// The EM steps as functions (issue 15, item 5): each against a direct
// computation in double on fresh random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "faiss_gmm/BlockAlignedRows.h"
#include "faiss_gmm/em_steps.h"
#include "error_bounds.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using faiss_gmm::testing::random_model;
constexpr double kU = faiss_gmm::testing::kUnitRoundoff; // float32's 2^-24

namespace {

GlobalRows all_rows(int64_t n) {
    GlobalRows g;
    g.range = {0, n};
    g.total = n;
    return g;
}

} // namespace

TEST(EmSteps, MStepIsTheClosedFormWithFloorAndEmptyComponents) {
    const int64_t n = 3000, d = 7, K = 5;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 61);
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmModel model = random_model(K, d, type, 1.0f, 62);
        for (int64_t j = 0; j < d; j++) model.means[size_t(4 * d + j)] = 1e4f; // component 4: no mass
        SufficientStats stats(K, d, type);
        reference_estep(model, nullptr, n, x.data(), stats);
        GmmParams p;
        p.reg_covar = 1e-4;
        const double floor = 0.9; // above some of the variances: floored
        GmmModel got = model;
        const em::MStepResult r = em::m_step(stats, p, floor, got);
        ASSERT_EQ(r.empty, std::vector<int64_t>{4});
        int floored = 0;
        double sq = 0;
        for (int64_t k = 0; k < 4; k++) {
            const double nk = stats.nk[size_t(k)];
            sq += nk * nk;
            // float(log w): off by <= u·|log w|, so exp of it by that relative (+ a few 2^-53).
            const double w = nk / stats.n;
            EXPECT_NEAR(std::exp(double(got.log_weights[size_t(k)])), w, w * (kU * std::fabs(std::log(w)) + 0x1p-50));
            std::vector<double> mu(d), shift(d);
            double shift_sq = 0;
            for (int64_t j = 0; j < d; j++) {
                mu[size_t(j)] = stats.sum_x[size_t(k * d + j)] / nk;
                shift[size_t(j)] = mu[size_t(j)] - model.means[size_t(k * d + j)];
                shift_sq += shift[size_t(j)] * shift[size_t(j)];
                // The same double expression as m_step's, then float32 rounding: <= u·|μ|.
                EXPECT_NEAR(got.means[size_t(k * d + j)], mu[size_t(j)], kU * std::fabs(mu[size_t(j)]));
            }
            for (int64_t j = 0; j < model.nvar(); j++) {
                double v = type == CovarianceType::Spherical
                        ? (stats.sum_sq[size_t(k)] / nk - shift_sq) / double(d)
                        : stats.sum_sq[size_t(k * d + j)] / nk - shift[size_t(j)] * shift[size_t(j)];
                v += p.reg_covar;
                if (v < floor) {
                    v = floor;
                    floored++;
                }
                // The same double expression as m_step's, then float32 rounding: <= u·v.
                EXPECT_NEAR(got.variances[size_t(k * model.nvar() + j)], v, kU * v);
            }
        }
        sq += stats.nk[4] * stats.nk[4];
        EXPECT_EQ(r.nfloored, floored);
        EXPECT_GT(floored, 0) << "the test should exercise the floor";
        // The same double operations in the same order (an FMA contraction of Σ N_k² could
        // differ): within γ^double_8 of the value.
        const double want = sq * K / (stats.n * stats.n);
        EXPECT_NEAR(r.imbalance_factor, want, faiss_gmm::testing::gamma_double(8) * want);
        // The empty component keeps its mean and variances.
        for (int64_t j = 0; j < d; j++) EXPECT_EQ(got.means[size_t(4 * d + j)], 1e4f);
    }
}

TEST(EmSteps, ReseedSplitsTheHeaviestComponentInTwo) {
    const int64_t K = 3, d = 4;
    GmmModel model = random_model(K, d, CovarianceType::Diagonal, 1.0f, 63);
    SufficientStats stats(K, d, CovarianceType::Diagonal);
    stats.n = 100;
    stats.nk = {70, 30, 0};
    model.log_weights = {float(std::log(0.7)), float(std::log(0.3)), float(std::log(1e-30))};
    em::MStepResult m;
    m.empty = {2};
    m.min_mass = 1e-3;
    const GmmModel before = model;
    std::mt19937_64 rng(1);
    EXPECT_EQ(em::reseed_empty(m, stats, rng, model), 1);
    double wsum = 0;
    for (float lw : model.log_weights) wsum += std::exp(double(lw));
    // Renormalized in float: each log w off by <= u·(|log w| + 1) (its own rounding, the
    // subtraction's, float(log Σw) and Σw's deviation from 1, all a few u), so the sum of
    // the weights by Σ w·u(|log w| + 1).
    double wsum_tol = 0;
    for (float lw : model.log_weights) wsum_tol += std::exp(double(lw)) * kU * (std::fabs(double(lw)) + 1);
    EXPECT_NEAR(wsum, 1.0, wsum_tol);
    // log 0.35 = float(float(log 0.7) − log 2) − float(log Σw): three float roundings of
    // values <= 1.1 plus Σw's own deviation from 1 (<= 3u): <= 5.5u in the log; 8u used.
    EXPECT_NEAR(std::exp(double(model.log_weights[0])), 0.35, 0.35 * 8 * kU);
    EXPECT_EQ(model.log_weights[0], model.log_weights[2]);
    for (int64_t j = 0; j < d; j++) {
        const double delta = 0.1 * std::sqrt(double(before.variance(0, j)));
        const double mu = before.means[size_t(j)];
        // float(μ ± δ): off by <= u(|μ| + δ); their float sum adds <= u·2|μ| more.
        EXPECT_NEAR(std::fabs(model.means[size_t(j)] - mu), delta, 2 * kU * (std::fabs(mu) + delta));
        EXPECT_NEAR(model.means[size_t(j)] + model.means[size_t(2 * d + j)], 2 * mu, 4 * kU * (std::fabs(mu) + delta));
        EXPECT_EQ(model.variances[size_t(2 * d + j)], model.variances[size_t(j)]);
    }
    // Nothing to split: no split, weights still normalized.
    stats.nk = {0, 0, 0};
    m.empty = {0, 1, 2};
    EXPECT_EQ(em::reseed_empty(m, stats, rng, model), 0);
}

TEST(EmSteps, SubsampleKeepsTheRowsOneProcessPicks) {
    const int64_t n = 5000, d = 3, K = 4;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 64);
    MemoryVectorSource src(n, d, x.data());
    SingleProcessCommunicator comm;
    GmmParams p;
    p.max_points_per_centroid = 300; // 1200 of 5000
    const em::TrainingRows t = em::subsample(comm, src, all_rows(n), K, p, false);
    ASSERT_EQ(t.global.total, 1200);
    const std::vector<int64_t> want = sample_rows(n, 1200, p.seed, 0, n);
    std::vector<uint8_t> scratch;
    for (size_t i = 0; i < want.size(); i++) {
        const VectorBlock b = t.rows->read(int64_t(i), 1, scratch);
        std::vector<float> row(d);
        b.row_to_float(0, row.data());
        for (int64_t j = 0; j < d; j++) ASSERT_EQ(row[size_t(j)], x[size_t(want[i] * d + j)]) << "sample row " << i;
    }
    p.max_points_per_centroid = 0;
    EXPECT_EQ(em::subsample(comm, src, all_rows(n), K, p, false).rows, &src);
}

TEST(EmSteps, DataMomentsMatchADirectComputation) {
    const int64_t n = 3 * kReproducibleBlockRows + 17, d = 5;
    std::vector<float> x = clustered_data(n, d, 3, 2.0f, 65);
    MemoryVectorSource src(n, d, x.data());
    SingleProcessCommunicator comm;
    BlockAlignedRows blocks(comm, src, all_rows(n), kReproducibleBlockRows, 1 << 16);
    const em::DataMoments m = em::data_moments(comm, blocks, d, n);
    // Against a plain double loop, whose sum of n terms is within n·2^-53·Σ|x|
    // of exact (the moments are the exact sums, rounded): so are the means, and
    // the variance within 2·n·2^-53·(Σ x²/n + mean²) per dimension.
    const double u = std::ldexp(1.0, -53);
    double var = 0, var_tol = 0;
    for (int64_t j = 0; j < d; j++) {
        double s = 0, s2 = 0, sa = 0, lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            const double v = x[size_t(i * d + j)];
            s += v;
            s2 += v * v;
            sa += std::fabs(v);
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        EXPECT_NEAR(m.mean[size_t(j)], s / n, 2 * u * sa + u * std::fabs(s / n));
        EXPECT_EQ(m.min[size_t(j)], lo);
        EXPECT_EQ(m.max[size_t(j)], hi);
        var += s2 / n - (s / n) * (s / n);
        var_tol += 4 * u * double(n) * (s2 / n + (s / n) * (s / n));
    }
    EXPECT_NEAR(m.variance, var / d, var_tol / d);
    x[size_t(2 * kReproducibleBlockRows + 3) * d + 4] = NAN;
    try {
        em::data_moments(comm, BlockAlignedRows(comm, src, all_rows(n), kReproducibleBlockRows, 1 << 16), d, n);
        FAIL() << "NaN accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("input row " + std::to_string(2 * kReproducibleBlockRows + 3) +
                                             ", column 4 is NaN"),
                  std::string::npos)
                << e.what();
    }
}

TEST(EmSteps, GivenInitialModelIsTranslatedIntoTheCenteredFrame) {
    const int64_t d = 3, K = 2;
    const GmmModel given = random_model(K, d, CovarianceType::Spherical, 1.0f, 66);
    std::vector<float> x(size_t(10 * d), 1.0f);
    MemoryVectorSource src(10, d, x.data());
    SingleProcessCommunicator comm;
    em::TrainingRows t;
    t.rows = &src;
    t.global = all_rows(10);
    GmmParams p;
    p.init = InitMethod::Given;
    const std::vector<float> center = {1.0f, -2.0f, 0.5f};
    const GmmModel m = em::initial_model(comm, t, K, p, center, 1e-3, 1.0, &given);
    for (int64_t k = 0; k < K; k++) {
        for (int64_t j = 0; j < d; j++) {
            EXPECT_EQ(m.means[size_t(k * d + j)], float(double(given.means[size_t(k * d + j)]) - center[size_t(j)]));
        }
    }
    EXPECT_EQ(m.variances, given.variances);
}

TEST(EmSteps, RowBoundsAreTheDirectComputation) {
    // row_bounds sums the spherical ‖μ_k‖² of several components at once (independent chains),
    // each over j in order: the bits of one component at a time, for K not a multiple of the
    // chains. Diagonal and full: max |μ_kj|. x_bound: the largest distance of the data's range
    // from the center.
    const int64_t d = 13;
    for (int64_t K : {1, 3, 4, 9}) {
        for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal, CovarianceType::Full}) {
            const GmmModel model = random_model(K, d, type, 3.0f, uint64_t(70 + K));
            em::DataMoments m;
            std::mt19937_64 rng{uint64_t(K)};
            std::uniform_real_distribution<double> u(-5.0, 5.0);
            std::vector<float> center(static_cast<size_t>(d));
            for (int64_t j = 0; j < d; j++) {
                m.min.push_back(u(rng) - 5.0);
                m.max.push_back(u(rng) + 5.0);
                center[size_t(j)] = float(u(rng));
            }
            double x = 0, mean_bound = 0;
            for (int64_t j = 0; j < d; j++) {
                x = std::max({x, m.max[size_t(j)] - center[size_t(j)], center[size_t(j)] - m.min[size_t(j)]});
            }
            for (int64_t k = 0; k < K; k++) {
                double sq = 0;
                for (int64_t j = 0; j < d; j++) {
                    const double mu = model.means[size_t(k * d + j)];
                    sq += mu * mu;
                    if (type != CovarianceType::Spherical) mean_bound = std::max(mean_bound, std::fabs(mu));
                }
                if (type == CovarianceType::Spherical) mean_bound = std::max(mean_bound, std::sqrt(sq));
            }
            const double xs = type == CovarianceType::Spherical ? std::sqrt(double(d)) * x : x;
            const em::RowBounds got = em::row_bounds(m, center, model);
            EXPECT_EQ(got.x_bound, x) << "K " << K;
            EXPECT_EQ(got.sq_bound, (xs + mean_bound) * (xs + mean_bound)) << "K " << K << ", type " << int(type);
        }
    }
}
