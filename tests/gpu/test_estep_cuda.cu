// The CUDA E-step against the float64 reference (reference_estep): every
// statistic, fresh random inputs of many shapes (ragged N, K and d; K = 1; tiny
// N), both covariance types, both precision modes, float32 and uint8 rows,
// every memory path (pageable, pinned, device-resident, several chunks, several
// workers), siftsmall, NaN-poisoned scratch buffers, and the error paths.
// Every test skips when no GPU is visible.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"
#include "faiss_gmm/VectorSource.h"
#include "gpu/EStepCuda.h"

using namespace faiss_gmm;
using faiss_gmm::gpu::EStepCuda;
using faiss_gmm::gpu::EStepCudaAlgorithm;
using faiss_gmm::gpu::EStepCudaOptions;

namespace {

constexpr double kTolAccurate = 1e-4;
constexpr double kTolFast = 5e-3;  // the issue's budget; met by the default fast mode (TF32)
// bf16 products (EStepCudaOptions::fast_bf16) were measured up to ~5.5e-3 (siftsmall, K = 100):
// over the 5e-3 budget, which is why TF32 is the default fast mode. They are held to 1e-2 here.
constexpr double kTolFastBf16 = 1e-2;

struct Problem {
    int64_t n = 0, K = 0, d = 0;
    CovarianceType cov = CovarianceType::Spherical;
    std::vector<float> x;      // n × d, data frame
    std::vector<uint8_t> x8;   // same values when integral (uint8 problems)
    std::vector<float> center; // d
    GmmModel model;            // centered frame
};

/// Rows from a random mixture whose components overlap (soft responsibilities),
/// offset from the origin so that centering matters; a model near the truth.
Problem make_problem(int64_t n, int64_t K, int64_t d, CovarianceType cov, uint64_t seed, bool uint8_rows) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::uniform_real_distribution<double> ud(0.0, 1.0);
    Problem p;
    p.n = n;
    p.K = K;
    p.d = d;
    p.cov = cov;
    const double sigma = uint8_rows ? 12.0 : 3.0;
    const double spread = sigma * std::sqrt(8.0 / double(d)) + 0.2 * sigma;
    const double offset = uint8_rows ? 120.0 : 40.0;
    std::vector<double> mu(K * d);
    for (auto& v : mu) v = offset + spread * nd(rng);
    p.x.resize(n * d);
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = int64_t(ud(rng) * K) % K;
        const double s = sigma * (0.7 + 0.6 * ud(rng));
        for (int64_t j = 0; j < d; j++) {
            double v = mu[k * d + j] + s * nd(rng);
            if (uint8_rows) v = std::min(255.0, std::max(0.0, std::round(v)));
            p.x[i * d + j] = float(v);
        }
    }
    if (uint8_rows) {
        p.x8.resize(n * d);
        for (size_t i = 0; i < p.x.size(); i++) p.x8[i] = uint8_t(p.x[i]);
    }
    p.center.assign(d, 0.f);
    std::vector<double> mean(d, 0.0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) mean[j] += p.x[i * d + j];
    for (int64_t j = 0; j < d; j++) p.center[j] = float(mean[j] / double(n));

    GmmModel m(K, d, cov);
    double wsum = 0;
    std::vector<double> w(K);
    for (auto& v : w) wsum += (v = 0.5 + ud(rng));
    for (int64_t k = 0; k < K; k++) {
        m.log_weights[k] = float(std::log(w[k] / wsum));
        for (int64_t j = 0; j < d; j++) {
            m.means[k * d + j] = float(mu[k * d + j] - p.center[j] + 0.3 * sigma * nd(rng));
        }
    }
    for (auto& v : m.variances) v = float(sigma * sigma * (0.6 + 0.8 * ud(rng)));
    p.model = m;
    return p;
}

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        if (!std::isfinite(a[i])) return INFINITY;
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct Errors {
    double n = 0, loglik = 0, nk = 0, sum_x = 0, sum_sq = 0;
    double sum_x_plain = 0; // ‖Δ‖/‖ref‖, printed only (see sum_x_scale)
    double max() const { return std::max({n, loglik, nk, sum_x, sum_sq}); }
};

/// sum_x of centered rows can cancel to ~0 (with K = 1 it is Σ(x − mean) = 0), which makes
/// ‖Δ‖/‖ref‖ meaningless there. Its error is measured against the magnitude of its terms,
/// the Cauchy–Schwarz bound sqrt(Σ_k N_k · Σ_n r_nk‖x_n‖²) ≥ ‖sum_x‖, taken from the reference.
double sum_x_scale(const SufficientStats& ref, const GmmModel& m) {
    double tot = 0;
    for (int64_t k = 0; k < ref.K; k++) {
        double s2 = 0; // Σ_n r_nk ‖x_n‖² = Σ_j [sum_sq_kj + 2 μ_kj sum_x_kj − N_k μ_kj²]
        for (int64_t j = 0; j < ref.d; j++) {
            const double mu = m.means[k * ref.d + j], sx = ref.sum_x[k * ref.d + j];
            s2 += 2 * mu * sx - ref.nk[k] * mu * mu;
            if (ref.covariance_type == CovarianceType::Diagonal) s2 += ref.sum_sq[k * ref.d + j];
        }
        if (ref.covariance_type == CovarianceType::Spherical) s2 += ref.sum_sq[k];
        tot += ref.nk[k] * std::max(0.0, s2);
    }
    return std::sqrt(tot);
}

const GmmModel* g_model = nullptr; // model of the case being compared (for sum_x_scale)

Errors compare(const SufficientStats& got, const SufficientStats& ref) {
    Errors e;
    e.n = std::fabs(got.n - ref.n) / std::max(1.0, ref.n);
    e.loglik = std::isfinite(got.loglik) ? std::fabs(got.loglik - ref.loglik) / std::max(1e-300, std::fabs(ref.loglik))
                                         : INFINITY;
    e.nk = rel_err(got.nk, ref.nk);
    e.sum_x_plain = rel_err(got.sum_x, ref.sum_x);
    {
        double num = 0;
        for (size_t i = 0; i < ref.sum_x.size(); i++) num += (got.sum_x[i] - ref.sum_x[i]) * (got.sum_x[i] - ref.sum_x[i]);
        const double scale = g_model ? sum_x_scale(ref, *g_model) : 0.0;
        e.sum_x = std::isfinite(num) ? (scale > 0 ? std::sqrt(num) / scale : std::sqrt(num)) : INFINITY;
    }
    e.sum_sq = rel_err(got.sum_sq, ref.sum_sq);
    return e;
}

/// Largest error seen per mode (accurate, fast bf16, fast tf32), printed at the end of the run.
double g_max_err[3] = {0, 0, 0};
bool g_tf32 = true; // fast mode flavour: TF32 (default) or bf16 (EStepCudaOptions::fast_bf16)
EStepCudaAlgorithm g_algo = EStepCudaAlgorithm::Blocked; // algorithm under test

void expect_close(const SufficientStats& got, const SufficientStats& ref, bool fast, const std::string& label) {
    const Errors e = compare(got, ref);
    const double tol = fast ? (g_tf32 ? kTolFast : kTolFastBf16) : kTolAccurate;
    printf("  [%s %s] %-44s n=%.0f loglik=%.2e nk=%.2e sum_x=%.2e (plain %.2e) sum_sq=%.2e\n",
           g_algo == EStepCudaAlgorithm::Blocked ? "blocked" : "fused  ", fast ? (g_tf32 ? "tf32" : "bf16") : "accu",
           label.c_str(), got.n, e.loglik, e.nk, e.sum_x, e.sum_x_plain,
           e.sum_sq);
    const int slot = fast ? (g_tf32 ? 1 : 2) : 0;
    g_max_err[slot] = std::max(g_max_err[slot], e.max());
    EXPECT_EQ(got.n, ref.n) << label;
    EXPECT_LE(e.loglik, tol) << label;
    EXPECT_LE(e.nk, tol) << label;
    EXPECT_LE(e.sum_x, tol) << label;
    EXPECT_LE(e.sum_sq, tol) << label;
}

EStepCudaOptions opts(bool fast) {
    EStepCudaOptions o;
    o.fast_math = fast;
    o.fast_bf16 = !g_tf32;
    o.algorithm = g_algo;
    o.poison_buffers = true; // any read of an unwritten scratch element turns the statistics into NaN
    return o;
}

SufficientStats reference(const Problem& p) {
    g_model = &p.model;
    SufficientStats ref(p.K, p.d, p.cov);
    reference_estep(p.model, p.center.data(), p.n, p.x.data(), ref);
    return ref;
}

SufficientStats run_gpu(const Problem& p, const EStepCudaOptions& o, const VectorBlock& rows) {
    EStepCuda es(p.K, p.d, o);
    es.set_model(p.model, p.center.data());
    SufficientStats got(p.K, p.d, p.cov);
    es.accumulate(rows, got);
    return got;
}

VectorBlock float_rows(const Problem& p) { return VectorBlock{p.x.data(), DataType::Float32, p.n, p.d}; }

class EStepCudaTest : public ::testing::Test {
  protected:
    void TearDown() override {
        g_tf32 = true;
        g_algo = EStepCudaAlgorithm::Blocked;
    }
    void SetUp() override {
        if (gpu::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU visible: GPU tests skipped";
    }
};

struct Shape {
    int64_t n, K, d;
};

const Shape kShapes[] = {
        {1, 1, 5},      {2, 3, 8},      {7, 3, 17},     {100, 1, 96},   {1000, 5, 100},  {777, 130, 128},
        {3001, 257, 64}, {513, 64, 784}, {300, 10, 960}, {2000, 129, 33}, {4100, 300, 128}, {64, 2, 1},
};

void run_shapes(bool fast, CovarianceType cov) {
    uint64_t seed = fast ? 100 : 200;
    if (cov == CovarianceType::Diagonal) seed += 1000;
    for (const Shape& s : kShapes) {
        Problem p = make_problem(s.n, s.K, s.d, cov, seed++, false);
        SufficientStats ref = reference(p);
        SufficientStats got = run_gpu(p, opts(fast), float_rows(p));
        char label[96];
        snprintf(label, sizeof(label), "%s n=%lld K=%lld d=%lld", to_string(cov), (long long)s.n, (long long)s.K,
                 (long long)s.d);
        expect_close(got, ref, fast, label);
    }
}

} // namespace

TEST_F(EStepCudaTest, RandomShapesSphericalAccurate) { run_shapes(false, CovarianceType::Spherical); }
TEST_F(EStepCudaTest, RandomShapesSphericalFast) { run_shapes(true, CovarianceType::Spherical); }
TEST_F(EStepCudaTest, RandomShapesDiagonalAccurate) { run_shapes(false, CovarianceType::Diagonal); }
TEST_F(EStepCudaTest, RandomShapesDiagonalFast) { run_shapes(true, CovarianceType::Diagonal); }

TEST_F(EStepCudaTest, RandomShapesFastBf16) {
    g_tf32 = false;
    run_shapes(true, CovarianceType::Spherical);
    run_shapes(true, CovarianceType::Diagonal);
}

TEST_F(EStepCudaTest, RandomShapesFusedAllModes) {
    g_algo = EStepCudaAlgorithm::Fused;
    for (bool fast : {false, true}) {
        run_shapes(fast, CovarianceType::Spherical);
        run_shapes(fast, CovarianceType::Diagonal);
    }
    g_tf32 = false;
    run_shapes(true, CovarianceType::Spherical);
}

TEST_F(EStepCudaTest, Uint8Rows) {
    int seed = 7;
    for (bool fast : {false, true}) {
        for (auto cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
            for (Shape s : {Shape{1000, 50, 128}, Shape{257, 3, 100}, Shape{5, 1, 960}}) {
                Problem p = make_problem(s.n, s.K, s.d, cov, seed++, true);
                SufficientStats ref = reference(p);
                SufficientStats got = run_gpu(p, opts(fast), VectorBlock{p.x8.data(), DataType::UInt8, p.n, p.d});
                expect_close(got, ref, fast,
                             std::string("uint8 ") + to_string(cov) + " n=" + std::to_string(s.n) +
                                     " K=" + std::to_string(s.K) + " d=" + std::to_string(s.d));
            }
        }
    }
}

TEST_F(EStepCudaTest, StreamingChunksPageablePinnedDevice) {
    for (int combo = 0; combo < 4; combo++) {
        const bool fast = combo & 1;
        g_algo = combo < 2 ? EStepCudaAlgorithm::Blocked : EStepCudaAlgorithm::Fused;
        Problem p = make_problem(5000, 300, 128, CovarianceType::Spherical, fast ? 11 : 12, false);
        SufficientStats ref = reference(p);
        EStepCudaOptions o = opts(fast);
        o.chunk_rows = 700; // 8 chunks, the last one ragged: exercises the double buffers
        o.block_bytes = 300 * 304 * 4; // Blocked: 304-row blocks, several per chunk
        expect_close(run_gpu(p, o, float_rows(p)), ref, fast, "pageable, 8 chunks");

        const size_t bytes = p.x.size() * 4;
        float* pinned = nullptr;
        ASSERT_EQ(cudaMallocHost(&pinned, bytes), cudaSuccess);
        std::copy(p.x.begin(), p.x.end(), pinned);
        expect_close(run_gpu(p, o, VectorBlock{pinned, DataType::Float32, p.n, p.d}), ref, fast, "pinned, 8 chunks");
        cudaFreeHost(pinned);

        float* dev = nullptr;
        ASSERT_EQ(cudaMalloc(&dev, bytes), cudaSuccess);
        ASSERT_EQ(cudaMemcpy(dev, p.x.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
        EStepCudaOptions o1 = opts(fast);
        o1.devices = {0};
        o1.chunk_rows = 1024;
        expect_close(run_gpu(p, o1, VectorBlock{dev, DataType::Float32, p.n, p.d}), ref, fast,
                     "device-resident, 5 chunks");
        cudaFree(dev);
    }
}

TEST_F(EStepCudaTest, SeveralWorkers) {
    // Two workers on one GPU exercise the row split and the host reduction even
    // on a one-GPU machine; every visible GPU is used when there are several.
    const int ndev = gpu::cuda_device_count();
    for (bool fast : {false, true}) {
        Problem p = make_problem(3333, 77, 100, CovarianceType::Diagonal, fast ? 21 : 22, false);
        SufficientStats ref = reference(p);
        EStepCudaOptions o = opts(fast);
        o.devices = {0, 0};
        o.chunk_rows = 500;
        o.block_bytes = 77 * 128 * 4 * 2; // Blocked: 256-row blocks
        expect_close(run_gpu(p, o, float_rows(p)), ref, fast, "2 workers on GPU 0");
        if (ndev > 1) {
            o.devices.clear();
            for (int i = 0; i < ndev; i++) o.devices.push_back(i);
            expect_close(run_gpu(p, o, float_rows(p)), ref, fast, std::to_string(ndev) + " GPUs");
        }
    }
}

TEST_F(EStepCudaTest, AccumulateAddsAndModelCanChange) {
    for (bool fast : {false, true}) {
        Problem p = make_problem(2000, 40, 64, CovarianceType::Spherical, fast ? 31 : 32, false);
        const int64_t h = 1234;
        SufficientStats ref = reference(p);
        // Start from the reference statistics of the first rows, add the rest on the GPU.
        SufficientStats got(p.K, p.d, p.cov);
        reference_estep(p.model, p.center.data(), h, p.x.data(), got);
        EStepCuda es(p.K, p.d, opts(fast));
        es.set_model(p.model, p.center.data());
        es.accumulate(float_rows(p).slice(h, p.n - h), got);
        expect_close(got, ref, fast, "reference(first) + gpu(rest)");

        // A second model (diagonal) on the same object.
        Problem q = make_problem(2000, 40, 64, CovarianceType::Diagonal, fast ? 33 : 34, false);
        es.set_model(q.model, q.center.data());
        SufficientStats got2(q.K, q.d, q.cov);
        es.accumulate(float_rows(q), got2);
        expect_close(got2, reference(q), fast, "model switched to diagonal");
    }
}

TEST_F(EStepCudaTest, SanitizerSmall) {
    // Small enough to run under compute-sanitizer (memcheck, racecheck).
    for (int combo = 0; combo < 4; combo++) {
        const bool fast = combo & 1;
        g_algo = combo < 2 ? EStepCudaAlgorithm::Blocked : EStepCudaAlgorithm::Fused;
        for (auto cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
            Problem p = make_problem(300, 130, 40, cov, fast ? 41 : 42, false);
            EStepCudaOptions o = opts(fast);
            o.chunk_rows = 200;
            expect_close(run_gpu(p, o, float_rows(p)), reference(p), fast, std::string("small ") + to_string(cov));
        }
    }
}

TEST_F(EStepCudaTest, Siftsmall) {
    // FAISS_GMM_SHARED_DIR overrides ../shared (GPU machines get a copy of the data elsewhere).
    const char* shared = std::getenv("FAISS_GMM_SHARED_DIR");
    const std::string path = (shared ? std::string(shared) : std::string(FAISS_GMM_SOURCE_DIR) + "/../shared") +
                             "/datasets/siftsmall/siftsmall_base.fvecs";
    std::ifstream probe(path);
    if (!probe.good()) GTEST_SKIP() << "siftsmall not found at " << path;
    VecsFileSource src(path);
    const int64_t n = src.ntotal(), d = src.d(), K = 100;
    std::vector<float> x(n * d);
    read_as_float(src, 0, n, x.data());
    std::vector<float> center(d, 0.f);
    std::vector<double> mean(d, 0), var(d, 0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) mean[j] += x[i * d + j];
    for (int64_t j = 0; j < d; j++) center[j] = float(mean[j] /= n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) var[j] += (x[i * d + j] - mean[j]) * (x[i * d + j] - mean[j]) / n;
    double mvar = 0;
    for (double v : var) mvar += v / d;
    std::vector<uint8_t> x8(n * d);
    for (size_t i = 0; i < x.size(); i++) x8[i] = uint8_t(std::lround(std::min(255.f, std::max(0.f, x[i]))));
    bool integral = true;
    for (size_t i = 0; i < x.size(); i++) integral = integral && float(x8[i]) == x[i];

    std::mt19937_64 rng(5);
    for (auto cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmModel m(K, d, cov);
        for (int64_t k = 0; k < K; k++) {
            const int64_t r = int64_t(rng() % uint64_t(n));
            for (int64_t j = 0; j < d; j++) m.means[k * d + j] = x[r * d + j] - center[j];
        }
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < m.nvar(); j++)
                m.variances[k * m.nvar() + j] = float((cov == CovarianceType::Spherical ? mvar : var[j] + 1.0) / 4);
        SufficientStats ref(K, d, cov);
        reference_estep(m, center.data(), n, x.data(), ref);
        g_model = &m;
        for (int mode = 0; mode < 6; mode++) {
            const bool fast = mode % 3 > 0;
            g_tf32 = mode % 3 != 2; // 1: TF32, 2: bf16
            g_algo = mode < 3 ? EStepCudaAlgorithm::Blocked : EStepCudaAlgorithm::Fused;
            EStepCuda es(K, d, opts(fast));
            es.set_model(m, center.data());
            SufficientStats got(K, d, cov);
            es.accumulate(VectorBlock{x.data(), DataType::Float32, n, d}, got);
            expect_close(got, ref, fast, std::string("siftsmall float32 ") + to_string(cov));
            if (integral) {
                SufficientStats got8(K, d, cov);
                es.accumulate(VectorBlock{x8.data(), DataType::UInt8, n, d}, got8);
                expect_close(got8, ref, fast, std::string("siftsmall uint8 ") + to_string(cov));
            }
        }
    }
}

TEST_F(EStepCudaTest, MakeEstepCudaFollowsParams) {
    GmmParams params;
    params.fast_math = true;
    auto es = gpu::make_estep_cuda(params, 10, 16);
    EXPECT_NE(std::string(es->name()).find("cuda"), std::string::npos);
    EXPECT_NE(std::string(es->name()).find("tf32"), std::string::npos);
    Problem p = make_problem(500, 10, 16, CovarianceType::Spherical, 51, false);
    es->set_model(p.model, p.center.data());
    SufficientStats got(p.K, p.d, p.cov);
    es->accumulate(float_rows(p), got);
    expect_close(got, reference(p), true, "make_estep_cuda(fast_math)");
}

TEST_F(EStepCudaTest, ErrorsAreExceptions) {
    Problem p = make_problem(100, 4, 8, CovarianceType::Spherical, 61, false);
    EXPECT_THROW(EStepCuda(4, 8, [] {
                     EStepCudaOptions o;
                     o.devices = {999};
                     return o;
                 }()),
                 std::invalid_argument);
    EStepCuda es(4, 8);
    SufficientStats st(4, 8, CovarianceType::Spherical);
    EXPECT_THROW(es.accumulate(float_rows(p), st), std::logic_error); // no model yet
    GmmModel wrong(5, 8, CovarianceType::Spherical);
    EXPECT_THROW(es.set_model(wrong, nullptr), std::invalid_argument);
    es.set_model(p.model, p.center.data());
    SufficientStats bad(4, 8, CovarianceType::Diagonal);
    EXPECT_THROW(es.accumulate(float_rows(p), bad), std::invalid_argument);
    VectorBlock wrong_d{p.x.data(), DataType::Float32, 10, 7};
    EXPECT_THROW(es.accumulate(wrong_d, st), std::invalid_argument);
    // An impossible allocation is an exception, not an abort.
    EStepCudaOptions huge;
    huge.chunk_rows = int64_t(1) << 40;
    EStepCuda big(4, 8, huge);
    EXPECT_THROW(big.set_model(p.model, p.center.data()), std::runtime_error);
}

TEST_F(EStepCudaTest, ZZSummary) {
    printf("max relative error over all cases: accurate %.3e (tol %.0e), fast tf32 %.3e (tol %.0e), "
           "fast bf16 %.3e (tol %.0e)\n",
           g_max_err[0], kTolAccurate, g_max_err[1], kTolFast, g_max_err[2], kTolFastBf16);
}
