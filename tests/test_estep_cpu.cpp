// The CPU E-step against the float64 brute-force reference, on fresh random
// inputs of many shapes, both covariance types, float32 and uint8 rows, and on
// siftsmall.
#include <gtest/gtest.h>

#include <random>

#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/VectorSource.h"
#include "error_bounds.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using namespace faiss_gmm::testing;

namespace {

struct Shape {
    int64_t n, d, K;
    int block;
};

// Ragged shapes: d not a multiple of 8, K = 1, K larger than a block, N smaller
// than a block, N not a multiple of the block.
const Shape kShapes[] = {
        {1, 3, 1, 256},   {7, 5, 3, 256},     {300, 17, 1, 64},  {513, 13, 40, 64},
        {1000, 33, 300, 128}, {257, 96, 64, 256}, {2000, 128, 16, 256}, {130, 100, 7, 1},
};

SufficientStats run_cpu(const GmmModel& m, const std::vector<float>& center, const VectorBlock& rows, int block) {
    EStepCpu estep(block);
    estep.set_model(m, center.data());
    SufficientStats s(m.K, m.d, m.covariance_type);
    estep.accumulate(rows, s);
    return s;
}

SufficientStats run_reference(const GmmModel& m, const std::vector<float>& center, const VectorBlock& rows) {
    std::vector<float> xf(size_t(rows.n) * rows.d);
    for (int64_t i = 0; i < rows.n; i++) rows.row_to_float(i, xf.data() + i * rows.d);
    SufficientStats s(m.K, m.d, m.covariance_type);
    reference_estep(m, center.data(), rows.n, xf.data(), s);
    return s;
}

/// `got` (the E-step with `block` rows per block) against the float64 reference,
/// each statistic within the rounding-error bound computed for these rows and
/// this model (error_bounds.h: estep_error_bound).
void expect_matches_reference(const SufficientStats& got, const GmmModel& m, const std::vector<float>& center,
                              const VectorBlock& rows, int block, const std::string& where) {
    expect_stats_within_bound(got, run_reference(m, center, rows), estep_error_bound(m, center.data(), rows, block),
                              where);
}

} // namespace

class EStepCpuShapes : public ::testing::TestWithParam<std::tuple<int, CovarianceType>> {};

TEST_P(EStepCpuShapes, Float32MatchesFloat64Reference) {
    const Shape sh = kShapes[std::get<0>(GetParam())];
    const CovarianceType type = std::get<1>(GetParam());
    std::vector<float> centers;
    const uint64_t seed = 1000 + std::get<0>(GetParam()) * 7 + int(type);
    std::vector<float> x = clustered_data(sh.n, sh.d, sh.K, 1.0f, seed, &centers);
    // Variances comparable to the spread, so many rows have several non-negligible responsibilities.
    GmmModel m = random_model(sh.K, sh.d, type, 1.0f, seed + 1, &centers);
    std::vector<float> center(sh.d);
    std::mt19937_64 rng{seed + 2};
    std::normal_distribution<float> g;
    for (auto& c : center) c = 0.1f * g(rng);
    VectorBlock rows{x.data(), DataType::Float32, sh.n, sh.d};
    expect_matches_reference(run_cpu(m, center, rows, sh.block), m, center, rows, sh.block,
                             "n=" + std::to_string(sh.n) + " d=" + std::to_string(sh.d) + " K=" + std::to_string(sh.K));
}

INSTANTIATE_TEST_SUITE_P(AllShapes, EStepCpuShapes,
                         ::testing::Combine(::testing::Range(0, int(std::size(kShapes))),
                                            ::testing::Values(CovarianceType::Spherical, CovarianceType::Diagonal)));

TEST(EStepCpu, Uint8RowsMatchReference) {
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        const int64_t n = 700, d = 37, K = 20;
        std::mt19937_64 rng{77};
        std::uniform_int_distribution<int> byte(0, 255);
        std::vector<uint8_t> x(size_t(n) * d);
        for (auto& v : x) v = uint8_t(byte(rng));
        std::vector<float> center(d, 127.5f);
        GmmModel m = random_model(K, d, type, 5000.0f, 78);
        for (auto& mu : m.means) mu *= 20.0f;
        VectorBlock rows{x.data(), DataType::UInt8, n, d};
        expect_matches_reference(run_cpu(m, center, rows, 64), m, center, rows, 64, to_string(type));
    }
}

TEST(EStepCpu, Float64RowsAreReadInPlaceAsTheirFloat32Values) {
    // float64 rows (numpy's default) are converted block by block inside the
    // E-step: the statistics equal those of the same rows converted to float32
    // beforehand, exactly, and the float64 reference.
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        const int64_t n = 900, d = 29, K = 13;
        std::mt19937_64 rng{91};
        std::normal_distribution<double> g(0.0, 3.0);
        std::vector<double> x64(size_t(n) * d);
        for (auto& v : x64) v = g(rng);
        std::vector<float> x32(x64.begin(), x64.end());
        std::vector<float> center(d, 0.25f);
        GmmModel m = random_model(K, d, type, 9.0f, 92);
        const VectorBlock rows64{x64.data(), DataType::Float64, n, d};
        const VectorBlock rows32{x32.data(), DataType::Float32, n, d};
        const SufficientStats got = run_cpu(m, center, rows64, 64);
        const SufficientStats same = run_cpu(m, center, rows32, 64);
        EXPECT_EQ(got.loglik, same.loglik);
        EXPECT_EQ(got.nk, same.nk);
        EXPECT_EQ(got.sum_x, same.sum_x);
        EXPECT_EQ(got.sum_sq, same.sum_sq);
        expect_matches_reference(got, m, center, rows32, 64, to_string(type));
    }
}

TEST(EStepCpu, Float64RowsOutsideFloat32AreRefused) {
    const double bad[] = {std::nan(""), 1e300, -INFINITY};
    for (double v : bad) {
        std::vector<double> x(4 * 3, 1.0);
        x[7] = v;
        try {
            check_finite(VectorBlock{x.data(), DataType::Float64, 4, 3}, 10);
            ADD_FAILURE() << "accepted " << v;
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("row 12, column 1"), std::string::npos) << e.what();
        }
    }
}

TEST(EStepCpu, DenseAndSparsePathsAgree) {
    // Very wide variances: every responsibility is significant, so the dense
    // sgemm path runs; narrow ones exercise the sparse path. Both against float64.
    for (float var : {1e4f, 1e-2f}) {
        for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
            std::vector<float> centers;
            std::vector<float> x = clustered_data(600, 24, 32, 1.0f, 5, &centers);
            GmmModel m = random_model(32, 24, type, var, 6, &centers);
            std::vector<float> center(24, 0.0f);
            VectorBlock rows{x.data(), DataType::Float32, 600, 24};
            expect_matches_reference(run_cpu(m, center, rows, 128), m, center, rows, 128,
                                     "var=" + std::to_string(var));
        }
    }
}

TEST(EStepCpu, StatsAreAdditiveAcrossChunks) {
    std::vector<float> centers;
    std::vector<float> x = clustered_data(1000, 16, 8, 1.0f, 11, &centers);
    GmmModel m = random_model(8, 16, CovarianceType::Diagonal, 1.0f, 12, &centers);
    std::vector<float> center(16, 0.0f);
    EStepCpu estep(100);
    estep.set_model(m, center.data());
    SufficientStats whole(8, 16, m.covariance_type), parts(8, 16, m.covariance_type);
    estep.accumulate(VectorBlock{x.data(), DataType::Float32, 1000, 16}, whole);
    SufficientStats a(8, 16, m.covariance_type), b(8, 16, m.covariance_type);
    // Chunk boundaries on block boundaries: the same blocks, summed in another order.
    estep.accumulate(VectorBlock{x.data(), DataType::Float32, 400, 16}, a);
    estep.accumulate(VectorBlock{x.data() + 400 * 16, DataType::Float32, 600, 16}, b);
    parts.add(a);
    parts.add(b);
    // Not a rounding-error comparison: the same block partials, added in double in
    // another order, differ by at most γ^double_12·Σ|partials| (10 blocks + 2
    // threads), below 1e-14 of each statistic's scale here; 1e-12 leaves room
    // for that and nothing else.
    expect_stats_near(parts, whole, 1e-12, "chunked");
}

TEST(EStepCpu, LogResponsibilitiesNormalizeAndMatchReference) {
    const int64_t n = 50, d = 9, K = 6;
    std::vector<float> centers;
    std::vector<float> x = clustered_data(n, d, K, 1.0f, 21, &centers);
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmModel m = random_model(K, d, type, 1.0f, 22, &centers);
        EStepCpu estep(16);
        estep.set_model(m, nullptr);
        std::vector<float> lr(n * K), ll(n);
        estep.log_responsibilities(VectorBlock{x.data(), DataType::Float32, n, d}, lr.data(), ll.data());
        EStepRowErrors row(m, nullptr);
        for (int64_t i = 0; i < n; i++) {
            std::vector<double> xd(x.begin() + i * d, x.begin() + (i + 1) * d);
            double mx = -INFINITY;
            std::vector<double> lp(K);
            for (int64_t k = 0; k < K; k++) mx = std::max(mx, lp[k] = m.log_joint(xd.data(), k));
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += std::exp(lp[k] - mx);
            const double lse = mx + std::log(s);
            // Within the rounding-error bounds of this row (error_bounds.h: EStepRowErrors).
            row.analyse(x.data() + i * d);
            EXPECT_NEAR(ll[i], lse, row.loglik_bound());
            for (int64_t k = 0; k < K; k++) EXPECT_NEAR(lr[i * K + k], lp[k] - lse, row.log_resp_bound(k));
        }
    }
}

TEST(EStepCpu, SiftsmallLargeNormsStayAccurate) {
    const std::string path = shared_dataset("siftsmall/siftsmall_base.fvecs");
    std::unique_ptr<VecsFileSource> src;
    try {
        src = std::make_unique<VecsFileSource>(path);
    } catch (const std::exception& e) {
        GTEST_SKIP() << "siftsmall not available: " << e.what();
    }
    const int64_t n = 2000, d = src->d(), K = 32;
    std::vector<float> x(n * d);
    read_as_float(*src, 0, n, x.data());
    // Center = data mean, model means = some rows: as the trainer does.
    std::vector<float> center(d, 0.0f);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) center[j] += x[i * d + j] / float(n);
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmModel m(K, d, type);
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < d; j++) m.means[k * d + j] = x[(k * 61) * d + j] - center[j];
        // Per-dimension variance of SIFT around a cluster mean is a few hundred:
        // wide enough that some rows split between components.
        for (auto& v : m.variances) v = 1500.0f;
        VectorBlock rows{x.data(), DataType::Float32, n, d};
        expect_matches_reference(run_cpu(m, center, rows, 256), m, center, rows, 256,
                                 std::string("siftsmall ") + to_string(type));
    }
}

TEST(EStepCpu, DeterministicForFixedThreads) {
    std::vector<float> centers;
    std::vector<float> x = clustered_data(5000, 20, 12, 1.0f, 31, &centers);
    GmmModel m = random_model(12, 20, CovarianceType::Spherical, 1.0f, 32, &centers);
    auto run = [&] {
        EStepCpu estep(64, 2);
        estep.set_model(m, nullptr);
        SufficientStats s(12, 20, m.covariance_type);
        estep.accumulate(VectorBlock{x.data(), DataType::Float32, 5000, 20}, s);
        return s.flat();
    };
    EXPECT_EQ(run(), run());
}

TEST(EStepCpu, NarrowAndCollapsedComponentsHaveExactLogDensities) {
    // Issue 13: ‖x‖² − 2x·μ + ‖μ‖² in float32 cancels when σ² is far below
    // ‖x‖²·2^-24. Rows near 1000 in every coordinate (‖x‖² ≈ 1.6e7, data variance
    // 1), both with and without centering; components: one with variance 1e-6 of
    // the data's (on a row), one collapsed onto a row (1e-9), two near-duplicate
    // means (1e-4 apart), two ordinary ones. Against log_joint in float64:
    //  - log p(x) within 1e-6 relative: the exact recomputation is in double, and
    //    what is stored is float32 (2^-24 relative) plus the log-sum-exp in float
    //    (a few ulps of the row's largest term);
    //  - responsibilities within 1e-5: every log-density that may carry one is
    //    within kRefineTolerance = 1e-6 nats of exact, plus float32 rounding of
    //    log r near 0 (2^-24·|log r|).
    const int64_t n = 600, d = 16;
    std::mt19937_64 rng(41);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(size_t(n * d)), mean(d, 0.0f);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++) x[size_t(i * d + j)] = 1000.0f + g(rng);
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++) mean[size_t(j)] += x[size_t(i * d + j)] / float(n);
    }
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmModel m(6, d, type);
        auto set_component = [&](int64_t k, const float* mu, float var) {
            for (int64_t j = 0; j < d; j++) m.means[size_t(k * d + j)] = mu[j];
            for (int64_t j = 0; j < m.nvar(); j++) m.variances[size_t(k * m.nvar() + j)] = var;
        };
        std::vector<float> near = mean;
        set_component(0, &x[0], 1e-6f);      // narrow, on row 0
        set_component(1, &x[size_t(d)], 1e-9f); // collapsed onto row 1
        set_component(2, mean.data(), 1.0f);
        near[0] += 1e-4f;
        set_component(3, near.data(), 1.0f);  // a near-duplicate of component 2
        set_component(4, &x[size_t(5 * d)], 2.0f);
        set_component(5, &x[size_t(9 * d)], 2.0f);
        for (float& lw : m.log_weights) lw = float(std::log(1.0 / 6));
        for (bool centered : {false, true}) {
            const std::string what = std::string(to_string(type)) + (centered ? ", centered" : ", uncentered");
            // The E-step sees x − c and the model in that frame.
            GmmModel mc = m;
            if (centered) {
                for (int64_t k = 0; k < m.K; k++) {
                    for (int64_t j = 0; j < d; j++) mc.means[size_t(k * d + j)] -= mean[size_t(j)];
                }
            }
            EStepCpu estep(64);
            estep.set_model(mc, centered ? mean.data() : nullptr);
            std::vector<float> log_resp(size_t(n * m.K)), loglik(n);
            estep.log_responsibilities(VectorBlock{x.data(), DataType::Float32, n, d}, log_resp.data(),
                                       loglik.data());
            double worst_ll = 0, worst_r = 0;
            for (int64_t i = 0; i < n; i++) {
                std::vector<double> xi(x.begin() + i * d, x.begin() + (i + 1) * d), lj(size_t(m.K));
                double mx = -INFINITY;
                for (int64_t k = 0; k < m.K; k++) mx = std::max(mx, lj[size_t(k)] = m.log_joint(xi.data(), k));
                double sum = 0;
                for (double v : lj) sum += std::exp(v - mx);
                const double ll = mx + std::log(sum);
                worst_ll = std::max(worst_ll, std::fabs(double(loglik[size_t(i)]) - ll) / std::max(1.0, std::fabs(ll)));
                for (int64_t k = 0; k < m.K; k++) {
                    const double r = std::exp(lj[size_t(k)] - ll);
                    worst_r = std::max(worst_r, std::fabs(std::exp(double(log_resp[size_t(i * m.K + k)])) - r));
                }
            }
            EXPECT_LE(worst_ll, 1e-6) << what << ": log p(x)";
            EXPECT_LE(worst_r, 1e-5) << what << ": responsibilities";
            // Rows 0 and 1 belong to their narrow components, whatever the frame.
            EXPECT_GT(log_resp[0], -1e-5f) << what;
            EXPECT_GT(log_resp[size_t(m.K + 1)], -1e-5f) << what;
        }
    }
}
