// EM: the log-likelihood never decreases, a planted mixture is recovered, both
// initializations work, degenerate data trains without NaN and reports what it
// did, runs are deterministic, and bad input is refused before any work.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>

#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/GmmTrainer.h"
#include "error_bounds.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using namespace faiss_gmm::testing;

namespace {

void expect_finite_model(const GmmModel& m) {
    for (float v : m.log_weights) ASSERT_TRUE(std::isfinite(v));
    for (float v : m.means) ASSERT_TRUE(std::isfinite(v));
    // Full: the precisions' Cholesky factors have zeros below the diagonal (validate() checks their shape).
    const bool full = m.covariance_type == CovarianceType::Full;
    for (float v : m.variances) ASSERT_TRUE(std::isfinite(v) && (full || v > 0));
    EXPECT_NO_THROW(m.validate());
}

/// The CPU E-step, which also adds up, for each model it is given, the rounding-error
/// bound of the log-likelihood it returns (estep_error_bound on the rows it sees).
class BoundedEStep : public EStep {
  public:
    explicit BoundedEStep(int block_size) : inner_(block_size), block_size_(block_size) {}
    void set_model(const GmmModel& model, const float* center) override {
        model_ = model;
        center_.assign(center, center + model.d);
        loglik_bounds.push_back(0);
        inner_.set_model(model, center);
    }
    void accumulate(const VectorBlock& rows, SufficientStats& stats) override {
        inner_.accumulate(rows, stats);
        loglik_bounds.back() += estep_error_bound(model_, center_.data(), rows, block_size_).loglik;
    }
    void accumulate_reproducible(const VectorBlock& rows, StatsAccumulator& acc) override {
        inner_.accumulate_reproducible(rows, acc);
        loglik_bounds.back() += estep_error_bound(model_, center_.data(), rows, block_size_).loglik;
    }
    const char* name() const override { return inner_.name(); }
    std::vector<double> loglik_bounds; ///< per set_model() call: |Σ log p̃ − Σ log p| bound

  private:
    EStepCpu inner_;
    int block_size_;
    GmmModel model_;
    std::vector<float> center_;
};

} // namespace

TEST(GmmTrainer, LogLikelihoodNeverDecreases) {
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal, CovarianceType::Full}) {
        for (InitMethod init : {InitMethod::FaissKMeans, InitMethod::KMeansPlusPlus}) {
            std::vector<float> x = clustered_data(4000, 12, 10, 1.5f, 3);
            GmmParams p;
            p.covariance_type = type;
            p.init = init;
            p.niter = 30;
            p.tol = 0;
            p.init_niter = 2;
            GmmTrainer t(p);
            auto estep = std::make_unique<BoundedEStep>(p.block_size);
            BoundedEStep* bounded = estep.get();
            t.set_estep(std::move(estep));
            GmmModel m = t.fit(4000, 12, x.data(), 10);
            expect_finite_model(m);
            ASSERT_EQ(t.n_iter, 30);
            ASSERT_EQ(bounded->loglik_bounds.size(), t.iteration_stats.size()); // one E-step per iteration
            // Exact EM never lowers the log-likelihood L of the (float32) model: L(θ') >= L(θ) +
            // Q(θ'|θ) − Q(θ|θ), and an M-step from perturbed statistics, rounded to float, loses
            // only a term quadratic in its parameter errors (~N·d·(1e-6)², far below the rest).
            // What is compared is each iteration's float E-step value, within its bound B_i of
            // L: the mean log-likelihood may drop by at most (B_{i−1} + B_i)/n.
            for (size_t i = 1; i < t.iteration_stats.size(); i++) {
                const double prev = t.iteration_stats[i - 1].loglik, cur = t.iteration_stats[i].loglik;
                const double tol = (bounded->loglik_bounds[i - 1] + bounded->loglik_bounds[i]) / double(t.n_train);
                EXPECT_GE(cur, prev - tol) << to_string(type) << " " << to_string(init) << " iteration " << i;
            }
            EXPECT_EQ(t.total_splits, 0);
        }
    }
}

TEST(GmmTrainer, RecoversPlantedMixture) {
    // Three well-separated anisotropic components with known weights and variances.
    const int64_t d = 6, K = 3, n = 30000;
    const double w[K] = {0.5, 0.3, 0.2};
    const double mu[K][d] = {{0, 0, 0, 0, 0, 0}, {20, 0, 5, 0, 0, -10}, {-15, 12, 0, 3, 8, 0}};
    const double var[K][d] = {{1, 4, 1, 1, 2, 1}, {9, 1, 1, 4, 1, 1}, {2, 2, 2, 2, 2, 2}};
    std::mt19937_64 rng{42};
    std::normal_distribution<double> g;
    std::discrete_distribution<int> comp(w, w + K);
    std::vector<float> x(n * d);
    for (int64_t i = 0; i < n; i++) {
        const int k = comp(rng);
        for (int64_t j = 0; j < d; j++) x[i * d + j] = float(mu[k][j] + std::sqrt(var[k][j]) * g(rng));
    }
    GmmParams p;
    p.covariance_type = CovarianceType::Diagonal;
    p.niter = 100;
    p.tol = 1e-7;
    p.max_points_per_centroid = 0; // all 30000 rows
    // With K = 3, a random k-means start misses a cluster most of the time; D²
    // seeding covers all three.
    p.init = InitMethod::KMeansPlusPlus;
    GmmTrainer t(p);
    GmmModel m = t.fit(n, d, x.data(), K);
    for (int k = 0; k < K; k++) {
        // Find the learned component closest to planted k.
        int best = 0;
        double bestd = INFINITY;
        for (int c = 0; c < K; c++) {
            double dd = 0;
            for (int j = 0; j < d; j++) dd += std::pow(m.means[c * d + j] - mu[k][j], 2);
            if (dd < bestd) bestd = dd, best = c;
        }
        // Sampling error (the components are >= 10 sd apart: responsibilities are 0/1 up to
        // far less than these, so EM's estimates are the per-component sample moments); the
        // seed is fixed, so each outcome is deterministic, and these are the chances a
        // random seed would fail:
        // mean: ‖μ̂ − μ‖² = Σ_j var_j/n_k · χ²₁, <= max_j var_j/n_k · χ²₆ (n_k = w_k·n >= 6000):
        //   0.15² >= 22·(9/9000), P(χ²₆ > 22) = 1.2e-3;
        EXPECT_LT(std::sqrt(bestd), 0.15) << "mean of component " << k;
        // weight: sd sqrt(w(1 − w)/n) <= 0.0029: 0.01 is 3.5 sd, P = 5e-4;
        EXPECT_NEAR(std::exp(m.log_weights[best]), w[k], 0.01) << "weight of component " << k;
        // variance: relative sd sqrt(2/n_k) <= 0.018: 0.1 is 5.5 sd, P < 4e-8 per entry.
        for (int j = 0; j < d; j++) {
            EXPECT_NEAR(m.variances[best * d + j], var[k][j], 0.1 * var[k][j]) << "variance " << k << "," << j;
        }
    }
    EXPECT_TRUE(t.converged);
}

TEST(GmmTrainer, SphericalRecoversPlantedVariances) {
    const int64_t d = 10, K = 2, n = 20000;
    std::mt19937_64 rng{5};
    std::normal_distribution<double> g;
    std::vector<float> x(n * d);
    for (int64_t i = 0; i < n; i++) {
        const bool second = i % 4 == 0; // weight 0.25
        for (int64_t j = 0; j < d; j++) x[i * d + j] = float((second ? 30.0 : 0.0) + (second ? 3.0 : 1.0) * g(rng));
    }
    GmmParams p;
    p.niter = 50;
    p.max_points_per_centroid = 0;
    GmmTrainer t(p);
    GmmModel m = t.fit(n, d, x.data(), K);
    const int s = m.means[0] > 15 ? 0 : 1; // index of the "second" component
    // The weight is exactly 1/4 by construction (every 4th row) and the clusters are 10 sd
    // apart in each of 10 dimensions (responsibilities 0/1 to far below 2^-24): EM's weight
    // is 0.25 up to float32 rounding of log w, u·|log 0.25|, and a few u of the E-step sums.
    EXPECT_NEAR(std::exp(m.log_weights[s]), 0.25, 0.25 * 8 * kUnitRoundoff * (1 + std::log(4.0)));
    // Spherical variance = mean over 10 dimensions of n_k-sample variances (seed fixed):
    // relative sd sqrt(2/(10·n_k)): 0.0063 (n_k = 5000) and 0.0037 (15000); tolerances of
    // 5.3 sd (0.3 of 9) and 5.5 sd (0.02 of 1): P < 2e-7 each for a random seed.
    EXPECT_NEAR(m.variances[s], 9.0, 0.3);
    EXPECT_NEAR(m.variances[1 - s], 1.0, 0.02);
}

TEST(GmmTrainer, DeterministicForSameSeed) {
    std::vector<float> x = clustered_data(5000, 16, 20, 1.0f, 9);
    auto run = [&](int64_t seed) {
        GmmParams p;
        p.seed = seed;
        p.niter = 5;
        GmmTrainer t(p);
        return t.fit(5000, 16, x.data(), 20);
    };
    GmmModel a = run(7), b = run(7), c = run(8);
    EXPECT_EQ(a.means, b.means);
    EXPECT_EQ(a.variances, b.variances);
    EXPECT_EQ(a.log_weights, b.log_weights);
    EXPECT_NE(a.means, c.means);
}

TEST(GmmTrainer, SubsamplesLikeFaiss) {
    std::vector<float> x = clustered_data(10000, 8, 4, 1.0f, 10);
    GmmParams p;
    p.max_points_per_centroid = 100;
    p.niter = 3;
    GmmTrainer t(p);
    t.fit(10000, 8, x.data(), 4);
    EXPECT_EQ(t.n_train, 400);
}

TEST(GmmTrainer, GivenInitialModelIsUsed) {
    std::vector<float> centers;
    std::vector<float> x = clustered_data(3000, 5, 4, 0.5f, 12, &centers);
    GmmModel init = random_model(4, 5, CovarianceType::Spherical, 1.0f, 13, &centers);
    GmmParams p;
    p.init = InitMethod::Given;
    p.niter = 0;
    GmmTrainer t(p);
    GmmModel m = t.fit(3000, 5, x.data(), 4, &init);
    // No iteration: the model comes back as given, up to the float round trip of centering,
    // float(float(μ − c) + c): <= u(|μ − c| + |μ|)(1 + u), c the (float) data mean.
    std::vector<double> c(5, 0.0);
    for (int64_t i = 0; i < 3000; i++)
        for (int j = 0; j < 5; j++) c[size_t(j)] += double(x[size_t(i * 5 + j)]) / 3000;
    for (size_t i = 0; i < m.means.size(); i++) {
        const double mu = init.means[i], cj = c[i % 5];
        const double tol = kUnitRoundoff * (std::fabs(mu) + std::fabs(cj) + std::fabs(mu)) * 1.01;
        EXPECT_NEAR(m.means[i], init.means[i], tol);
    }
    EXPECT_EQ(m.variances, init.variances);
}

TEST(GmmTrainer, DegenerateDataTrainsWithoutNaN) {
    const int64_t d = 8;
    // All rows identical.
    {
        std::vector<float> x(500 * d, 3.0f);
        GmmParams p;
        p.niter = 5;
        GmmTrainer t(p);
        GmmModel m = t.fit(500, d, x.data(), 4);
        expect_finite_model(m);
        EXPECT_GT(t.total_floored, 0) << "identical rows must hit the variance floor";
    }
    // Fewer distinct points than K.
    {
        std::vector<float> x(600 * d);
        for (int64_t i = 0; i < 600; i++)
            for (int64_t j = 0; j < d; j++) x[i * d + j] = float((i % 3) * 10 + j);
        GmmParams p;
        p.niter = 10;
        p.covariance_type = CovarianceType::Diagonal;
        GmmTrainer t(p);
        GmmModel m = t.fit(600, d, x.data(), 8);
        expect_finite_model(m);
        EXPECT_GT(t.total_floored, 0);
    }
    // A zero-variance dimension, small and large scales, data far from the origin.
    for (float scale : {1e-6f, 1.0f, 1e6f}) {
        std::vector<float> x = clustered_data(2000, d, 5, 1.0f, 14);
        for (int64_t i = 0; i < 2000; i++) {
            x[i * d + 3] = 7.0f; // zero variance
            for (int64_t j = 0; j < d; j++) x[i * d + j] = x[i * d + j] * scale + (scale == 1.0f ? 1e4f : 0.0f);
        }
        for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal, CovarianceType::Full}) {
            GmmParams p;
            p.niter = 8;
            p.covariance_type = type;
            GmmTrainer t(p);
            GmmModel m = t.fit(2000, d, x.data(), 5);
            expect_finite_model(m);
            for (const auto& s : t.iteration_stats) EXPECT_TRUE(std::isfinite(s.loglik)) << "scale " << scale;
            if (type == CovarianceType::Diagonal) EXPECT_GT(t.total_floored, 0) << "the constant dimension";
        }
    }
}

TEST(GmmTrainer, ReseedsEmptyComponents) {
    // Start with two components on top of each other far from all data: one of
    // them gets no mass and must be re-seeded by splitting the heaviest one.
    std::vector<float> x = clustered_data(2000, 4, 3, 0.5f, 15);
    GmmModel init(3, 4, CovarianceType::Spherical);
    for (int64_t j = 0; j < 4; j++) {
        init.means[0 * 4 + j] = x[j];
        init.means[1 * 4 + j] = 1e4f;
        init.means[2 * 4 + j] = x[4 + j];
    }
    init.variances = {1.0f, 1e-3f, 1.0f};
    GmmParams p;
    p.init = InitMethod::Given;
    p.niter = 10;
    GmmTrainer t(p);
    GmmModel m = t.fit(2000, 4, x.data(), 3, &init);
    EXPECT_GE(t.total_splits, 1);
    EXPECT_EQ(t.iteration_stats[0].nsplit, 1);
    expect_finite_model(m);
    EXPECT_LT(std::fabs(m.means[4]), 1e3f) << "the empty component was moved to the data";
}

TEST(GmmTrainer, BadInputIsRefused) {
    std::vector<float> x = clustered_data(100, 4, 2, 1.0f, 16);
    GmmTrainer t;
    EXPECT_THROW(t.fit(100, 4, x.data(), 0), std::invalid_argument);
    EXPECT_THROW(t.fit(100, 4, x.data(), 101), std::invalid_argument);
    EXPECT_THROW(t.fit(0, 4, x.data(), 1), std::invalid_argument);
    for (float bad : {NAN, INFINITY, -INFINITY}) {
        std::vector<float> y = x;
        y[57 * 4 + 2] = bad;
        try {
            t.fit(100, 4, y.data(), 2);
            FAIL() << "non-finite data accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("row 57"), std::string::npos) << e.what();
        }
    }
    GmmParams p;
    p.niter = -1;
    EXPECT_THROW(GmmTrainer{p}, std::invalid_argument);
    p = GmmParams();
    p.init = InitMethod::Given;
    GmmTrainer given(p);
    EXPECT_THROW(given.fit(100, 4, x.data(), 2), std::invalid_argument) << "Given without a model";
    GmmModel wrong(2, 5, CovarianceType::Spherical);
    EXPECT_THROW(given.fit(100, 4, x.data(), 2, &wrong), std::invalid_argument) << "d mismatch";
}

TEST(GmmTrainer, StreamsUint8FromAVecsFile) {
    // A .bvecs file read chunk by chunk with a chunk far smaller than the data.
    const std::string path = shared_dataset("bigann10k/bigann10k_base.bvecs");
    std::unique_ptr<VecsFileSource> src;
    try {
        src = std::make_unique<VecsFileSource>(path);
    } catch (const std::exception& e) {
        GTEST_SKIP() << "bigann10k not available: " << e.what();
    }
    GmmParams p;
    p.niter = 4;
    p.chunk_size = 777;
    p.max_points_per_centroid = 0;
    GmmTrainer t(p);
    GmmModel streamed = t.fit(*src, 16);
    // The same rows converted to float in memory give the same model.
    std::vector<float> x(src->ntotal() * src->d());
    read_as_float(*src, 0, src->ntotal(), x.data());
    p.chunk_size = 1 << 20;
    GmmTrainer t2(p);
    GmmModel whole = t2.fit(src->ntotal(), src->d(), x.data(), 16);
    ASSERT_EQ(t.iteration_stats.size(), t2.iteration_stats.size());
    // Reproducible sums: the chunking and the element type of the same values
    // change nothing, to the bit.
    for (size_t i = 0; i < t.iteration_stats.size(); i++) {
        EXPECT_EQ(t.iteration_stats[i].loglik, t2.iteration_stats[i].loglik) << "iteration " << i;
    }
    faiss_gmm::testing::expect_models_identical(streamed, whole, "uint8 streamed vs float in memory");
}

namespace {

/// The CPU E-step, counting the rows of each accumulate() call and the rows
/// offered for retention, and asking for large calls as the GPU backend does.
class CallCountingEStep : public EStep {
  public:
    void set_model(const GmmModel& model, const float* center) override { inner_.set_model(model, center); }
    void accumulate(const VectorBlock& rows, SufficientStats& stats) override {
        calls.push_back(rows.n);
        inner_.accumulate(rows, stats);
    }
    const char* name() const override { return "counting"; }
    int64_t preferred_rows_per_call() const override { return 2 * kReproducibleBlockRows + 100; }
    void retain_rows(const VectorBlock& rows) override { retained.push_back(rows.n); }
    void release_rows() override { released++; }
    std::vector<int64_t> calls, retained;
    int released = 0;

  private:
    EStepCpu inner_;
};

/// In-memory rows handed out through the scratch buffer, as a file with
/// per-row headers or a converting source does.
class CopyingSource : public VectorSource {
  public:
    CopyingSource(int64_t n, int64_t d, const float* x) : n_(n), d_(d), x_(x) {}
    int64_t ntotal() const override { return n_; }
    int64_t d() const override { return d_; }
    DataType type() const override { return DataType::Float32; }
    VectorBlock read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const override {
        check_range(i0, n);
        scratch.resize(size_t(n) * d_ * sizeof(float));
        std::memcpy(scratch.data(), x_ + i0 * d_, scratch.size());
        return VectorBlock{scratch.data(), DataType::Float32, n, d_};
    }

  private:
    int64_t n_, d_;
    const float* x_;
};

} // namespace

TEST(GmmTrainer, BackendPreferenceSetsRowsPerCallAndRetainsRowsOnlyWhenRowsCostNoCopy) {
    const int64_t n = 5 * kReproducibleBlockRows + 300, d = 8, K = 4;
    const std::vector<float> x = clustered_data(n, d, K, 0.5f, 5);
    GmmParams p;
    p.niter = 1;
    p.tol = 0;
    p.chunk_size = 1500;
    p.max_points_per_centroid = 0;
    p.init = InitMethod::KMeansPlusPlus;
    const MemoryVectorSource in_memory(n, d, x.data());
    const CopyingSource copying(n, d, x.data());
    for (const VectorSource* src : {static_cast<const VectorSource*>(&in_memory), static_cast<const VectorSource*>(&copying)}) {
        GmmTrainer trainer(p);
        auto estep = std::make_unique<CallCountingEStep>();
        CallCountingEStep* counter = estep.get();
        trainer.set_estep(std::move(estep));
        trainer.fit(*src, K);
        // Views into memory: the backend's 2R + 100 rows per call, and all rows
        // offered for retention once (then withdrawn); copies: chunk_size (1500),
        // nothing retained. Both rounded down to whole reproducible blocks of R
        // rows (at least one), so that the sums do not depend on the call size.
        const bool views = src == &in_memory;
        const int64_t R = kReproducibleBlockRows;
        const std::vector<int64_t> expected = views ? std::vector<int64_t>{2 * R, 2 * R, n - 4 * R}
                                                    : std::vector<int64_t>{R, R, R, R, R, n - 5 * R};
        EXPECT_EQ(counter->calls, expected);
        EXPECT_EQ(counter->retained, views ? std::vector<int64_t>{n} : std::vector<int64_t>{});
        EXPECT_EQ(counter->released, views ? 1 : 0);
    }
}
