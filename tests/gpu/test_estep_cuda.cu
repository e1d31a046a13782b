// The CUDA E-step against the float64 reference (reference_estep): every
// statistic, fresh random inputs of many shapes (ragged N, K and d; K = 1; tiny
// N), both covariance types, both precision modes, float32 and uint8 rows,
// every memory path (pageable, pinned, device-resident, several chunks, several
// workers), siftsmall, NaN-poisoned scratch buffers, and the error paths.
// Every test skips when no GPU is visible.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"
#include "faiss_gmm/VectorSource.h"
#include "gpu/EStepCuda.h"
#include "gpu/detail/Sm90Primitives.cuh"
#include "gpu/detail/heuristics.h"
#include "tests/gpu/gpu_error_bounds.h"
#include "tests/gpu/reproducible_bits.h"

using namespace faiss_gmm;
using faiss_gmm::gpu::EStepCuda;
using faiss_gmm::gpu::EStepCudaAlgorithm;
using faiss_gmm::gpu::EStepCudaOptions;
using faiss_gmm::testing::expect_same_bits;
using faiss_gmm::testing::ReproLayout;
using faiss_gmm::testing::reproducible_layouts;

namespace {

// Tolerances: derived per case from the rounding-error bound of the mode's arithmetic
// (tests/gpu/gpu_error_bounds.h: fp32, TF32, fp16 and 2×fp16 operands, tensor-core
// accumulation, the exponentials' approximation, the sums' lengths) on the case's own model
// and rows, plus the float64 reference's own error (tests/error_bounds.h): expect_close.

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
const Problem* g_problem = nullptr; // the case being compared (for its error bound)

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

/// Largest error seen per mode (Blocked accurate, Blocked fast tf32, Hopper fp16, Hopper accurate
/// 2×fp16) and largest ratio of an error to its bound, printed at the end of the run.
double g_max_err[4] = {0, 0, 0, 0};
double g_max_ratio[4] = {0, 0, 0, 0};

double norm2(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return std::sqrt(s);
}

/// Bounds of compare()'s errors for the case g_problem in a mode: |Δ_i| <= b_i elementwise
/// (gpu_estep_error_bound) gives ‖Δ‖ <= ‖b‖, divided as compare() divides. Cached per case and
/// mode (O(n·K·d) in double, like the reference).
Errors derived_bounds(const SufficientStats& ref, bool hopper, bool fast) {
    struct Entry {
        const Problem* p;
        int64_t n, K, d;
        double loglik;
        int mode;
        Errors tol;
    };
    static std::vector<Entry> cache;
    const Problem& p = *g_problem;
    const int mode = (hopper ? 2 : 0) + (fast ? 1 : 0);
    for (const Entry& e : cache)
        if (e.p == &p && e.n == p.n && e.K == p.K && e.d == p.d && e.loglik == ref.loglik && e.mode == mode) return e.tol;
    const SufficientStats b = faiss_gmm::testing::gpu_estep_error_bound(
            p.model, p.center.data(), VectorBlock{p.x.data(), DataType::Float32, p.n, p.d},
            faiss_gmm::testing::gpu_arithmetic(hopper, fast));
    auto rel = [](const std::vector<double>& bound, const std::vector<double>& r) {
        const double den = norm2(r);
        return den > 0 ? norm2(bound) / den : norm2(bound); // rel_err's convention
    };
    Errors t;
    t.loglik = b.loglik / std::max(1e-300, std::fabs(ref.loglik));
    t.nk = rel(b.nk, ref.nk);
    const double scale = sum_x_scale(ref, p.model);
    t.sum_x = scale > 0 ? norm2(b.sum_x) / scale : norm2(b.sum_x);
    t.sum_sq = rel(b.sum_sq, ref.sum_sq);
    cache.push_back({&p, p.n, p.K, p.d, ref.loglik, mode, t});
    return t;
}
EStepCudaAlgorithm g_algo = EStepCudaAlgorithm::Blocked; // algorithm under test

void expect_close(const SufficientStats& got, const SufficientStats& ref, bool fast, const std::string& label) {
    const Errors e = compare(got, ref);
    // Hopper requests for shapes the kernels do not cover (heuristics.h: d > 128) run Blocked:
    // labelled, bounded and counted as what ran (a Hopper shape's arithmetic is its mode's).
    const bool hopper = g_algo == EStepCudaAlgorithm::Hopper && gpu::detail::hopper_covers(ref.d);
    const Errors tol = derived_bounds(ref, hopper, fast);
    printf("  [%s %s] %-44s n=%.0f loglik=%.2e nk=%.2e sum_x=%.2e (plain %.2e) sum_sq=%.2e | bounds %.1e %.1e %.1e %.1e\n",
           hopper ? "hopper " : "blocked", hopper ? (fast ? "fp16" : "2f16") : fast ? "tf32" : "accu", label.c_str(),
           got.n, e.loglik, e.nk, e.sum_x, e.sum_x_plain, e.sum_sq, tol.loglik, tol.nk, tol.sum_x, tol.sum_sq);
    const int slot = hopper ? (fast ? 2 : 3) : fast ? 1 : 0;
    g_max_err[slot] = std::max(g_max_err[slot], e.max());
    for (auto [err, bound] : {std::pair{e.loglik, tol.loglik}, std::pair{e.nk, tol.nk}, std::pair{e.sum_x, tol.sum_x},
                              std::pair{e.sum_sq, tol.sum_sq}}) {
        if (bound > 0) g_max_ratio[slot] = std::max(g_max_ratio[slot], err / bound);
    }
    EXPECT_EQ(got.n, ref.n) << label;
    EXPECT_LE(e.loglik, tol.loglik) << label;
    EXPECT_LE(e.nk, tol.nk) << label;
    EXPECT_LE(e.sum_x, tol.sum_x) << label;
    EXPECT_LE(e.sum_sq, tol.sum_sq) << label;
}

/// The Hopper kernels' reproducible block in these tests (opts()): what hopper_reproducible_block_rows
/// = 0 takes for many rows (heuristics.h hopper_auto_block_rows), and problem sizes in it.
constexpr int64_t kHopperBlockRows = 4 * kReproducibleBlockRows;

EStepCudaOptions opts(bool fast) {
    EStepCudaOptions o;
    o.fast_math = fast;
    o.algorithm = g_algo;
    o.poison_buffers = true; // any read of an unwritten scratch element turns the statistics into NaN
    o.hopper_reproducible_block_rows = kHopperBlockRows; // (the auto choice: ReproducibleBlocksFollowTheExpectedRows)
    return o;
}

SufficientStats reference(const Problem& p) {
    g_model = &p.model;
    g_problem = &p;
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

// ---- Probes of the wgmma operand layouts the Hopper kernels use (Sm90Kernels.cuh), one
// warpgroup, one product each: when the E-step is wrong on a GPU, these say whether the
// shared-memory layouts / descriptors are (K-major pair of GEMM1, MN-major pair of GEMM2).
namespace s9 = faiss_gmm::gpu::detail::sm90;

/// D (64×128) = A (64×32) · Bᵀ, B 128×32; A and B row-major in global memory, K-major in
/// shared memory: core matrix (8 rows × 8 k) (rb, kb) at byte kb·rows·16 + rb·128.
__global__ void probe_kmajor_kernel(const __half* A, const __half* B, float* D) {
    __shared__ __align__(128) __half sA[64 * 32];
    __shared__ __align__(128) __half sB[128 * 32];
    const int tid = threadIdx.x;
    for (int i = tid; i < 64 * 32; i += 128) sA[((i % 32 / 8) * 64 + i / 32) * 8 + i % 8] = A[i];
    for (int i = tid; i < 128 * 32; i += 128) sB[((i % 32 / 8) * 128 + i / 32) * 8 + i % 8] = B[i];
    s9::fence_proxy_async();
    __syncthreads();
    float d[64];
    for (int i = 0; i < 64; i++) d[i] = 0.f;
    s9::fence_operand(d);
    s9::wgmma_fence();
    for (int kk = 0; kk < 2; kk++) {
        const uint64_t da = s9::make_desc(s9::smem_u32(sA) + kk * 2 * 64 * 16, 64 * 16, 128);
        const uint64_t db = s9::make_desc(s9::smem_u32(sB) + kk * 2 * 128 * 16, 128 * 16, 128);
        s9::Wgmma<128, 0, 0>::mma(d, da, db, kk > 0 ? 1 : 0);
    }
    s9::wgmma_commit();
    s9::wgmma_wait<0>();
    s9::fence_operand(d);
    const int w = tid / 32, g = (tid % 32) / 4, t = tid % 4;
    for (int j = 0; j < 16; j++) {
        D[(16 * w + g) * 128 + 8 * j + 2 * t] = d[4 * j];
        D[(16 * w + g) * 128 + 8 * j + 2 * t + 1] = d[4 * j + 1];
        D[(16 * w + g + 8) * 128 + 8 * j + 2 * t] = d[4 * j + 2];
        D[(16 * w + g + 8) * 128 + 8 * j + 2 * t + 1] = d[4 * j + 3];
    }
}

/// D (64×136) = Aᵀ · B with A given as 32 × 64 (rows × comps, row-major) and B as 32 × 136
/// (rows × features): both MN-major in shared memory: element (row r, col c) at byte
/// (c/8)·32·16 + r·16 + (c%8)·2 (the R and X' layouts of GEMM2).
__global__ void probe_mnmajor_kernel(const __half* A, const __half* B, float* D) {
    __shared__ __align__(128) __half sA[32 * 64];
    __shared__ __align__(128) __half sB[32 * 136];
    const int tid = threadIdx.x;
    for (int i = tid; i < 32 * 64; i += 128) sA[((i % 64) / 8) * 32 * 8 + (i / 64) * 8 + i % 8] = A[i];
    for (int i = tid; i < 32 * 136; i += 128) sB[((i % 136) / 8) * 32 * 8 + (i / 136) * 8 + i % 8] = B[i];
    s9::fence_proxy_async();
    __syncthreads();
    float d[68];
    for (int i = 0; i < 68; i++) d[i] = 0.f;
    s9::fence_operand(d);
    s9::wgmma_fence();
    for (int kr = 0; kr < 2; kr++) {
        const uint64_t da = s9::make_desc(s9::smem_u32(sA) + kr * 2 * 128, 128, 32 * 16);
        const uint64_t db = s9::make_desc(s9::smem_u32(sB) + kr * 2 * 128, 128, 32 * 16);
        s9::Wgmma<136, 1, 1>::mma(d, da, db, 1);
    }
    s9::wgmma_commit();
    s9::wgmma_wait<0>();
    s9::fence_operand(d);
    const int w = tid / 32, g = (tid % 32) / 4, t = tid % 4;
    for (int j = 0; j < 17; j++) {
        D[(16 * w + g) * 136 + 8 * j + 2 * t] = d[4 * j];
        D[(16 * w + g) * 136 + 8 * j + 2 * t + 1] = d[4 * j + 1];
        D[(16 * w + g + 8) * 136 + 8 * j + 2 * t] = d[4 * j + 2];
        D[(16 * w + g + 8) * 136 + 8 * j + 2 * t + 1] = d[4 * j + 3];
    }
}

/// GPU 0 is a Hopper (9.0) and this build carries the sm_90a kernels (the probes above are
/// compiled for the same architectures as the library).
bool hopper_available() { return faiss_gmm::gpu::hopper_kernels_available(0); }

class EStepCudaTest : public ::testing::Test {
  protected:
    void TearDown() override { g_algo = EStepCudaAlgorithm::Blocked; }
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
    for (bool fast : {false, true}) {
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

TEST_F(EStepCudaTest, RetainedRowsGiveTheSameStatistics) {
    // retain_rows() copies the rows to the GPUs (two workers on GPU 0, then every
    // visible GPU: each worker holds its share); whole, sliced and straddling calls
    // then read the copies without any host-to-device copy, rows elsewhere still
    // stream, and release_rows() goes back to streaming.
    std::vector<std::vector<int>> device_sets = {{0, 0}};
    if (gpu::cuda_device_count() > 1) {
        device_sets.emplace_back();
        for (int i = 0; i < gpu::cuda_device_count(); i++) device_sets.back().push_back(i);
    }
    for (const auto& devices : device_sets)
    for (bool fast : {false, true}) {
        for (bool u8 : {false, true}) {
            Problem p = make_problem(3001, 50, 72, CovarianceType::Spherical, fast ? 61 : 62, u8);
            const VectorBlock rows = u8 ? VectorBlock{p.x8.data(), DataType::UInt8, p.n, p.d} : float_rows(p);
            EStepCudaOptions o = opts(fast);
            o.devices = devices;
            EStepCuda es(p.K, p.d, o);
            es.set_model(p.model, p.center.data());
            es.retain_rows(rows);
            ASSERT_TRUE(es.rows_retained()) << "3001 rows must fit on the GPU";
            const std::string label = std::string(u8 ? "uint8" : "float32") + " retained";
            const SufficientStats ref = reference(p);

            SufficientStats whole(p.K, p.d, p.cov);
            es.accumulate(rows, whole);
            expect_close(whole, ref, fast, label + ", whole, " + std::to_string(devices.size()) + " workers");
            for (const auto& r : es.last_report()) EXPECT_EQ(r.h2d_bytes, 0.0) << "retained rows were copied again";

            SufficientStats pieces(p.K, p.d, p.cov); // both workers' halves, then a slice straddling them
            es.accumulate(rows.slice(0, 1000), pieces);
            es.accumulate(rows.slice(1000, 1001), pieces);
            es.accumulate(rows.slice(2001, 1000), pieces);
            expect_close(pieces, ref, fast, label + ", three slices");

            const auto* bytes = static_cast<const uint8_t*>(rows.data);
            const std::vector<uint8_t> elsewhere(bytes, bytes + rows.n * rows.row_bytes());
            SufficientStats other(p.K, p.d, p.cov);
            es.accumulate(VectorBlock{elsewhere.data(), rows.type, rows.n, rows.d}, other);
            expect_close(other, ref, fast, label + ", the same rows elsewhere (streamed)");

            SufficientStats after(p.K, p.d, p.cov);
            es.release_rows();
            EXPECT_FALSE(es.rows_retained());
            es.accumulate(rows, after);
            expect_close(after, ref, fast, label + ", released");
        }
    }
}

TEST_F(EStepCudaTest, PinnedInPlaceRowsStreamByDma) {
    // retain_rows() with EStepCudaRetain::Pin (what Auto does when rows do not fit on the GPUs):
    // the caller's pageable rows are registered, passes copy them by DMA (no staging buffers),
    // statistics are unchanged, and release_rows() unregisters them (registering again works).
    for (bool fast : {false, true}) {
        Problem p = make_problem(5000, 300, 128, CovarianceType::Spherical, fast ? 63 : 64, false);
        const SufficientStats ref = reference(p);
        EStepCudaOptions o = opts(fast);
        o.chunk_rows = 1500; // several chunks through the double buffers
        o.retain = gpu::EStepCudaRetain::Pin;
        EStepCuda es(p.K, p.d, o);
        es.set_model(p.model, p.center.data());
        for (int round = 0; round < 2; round++) {
            es.retain_rows(float_rows(p));
            ASSERT_TRUE(es.rows_pinned());
            EXPECT_FALSE(es.rows_retained());
            SufficientStats got(p.K, p.d, p.cov);
            es.accumulate(float_rows(p), got);
            expect_close(got, ref, fast, "pinned in place, round " + std::to_string(round));
            for (const auto& r : es.last_report()) {
                EXPECT_EQ(r.pinned_bytes, 0u) << "pinned rows went through staging buffers";
                EXPECT_GT(r.h2d_bytes, 0.0);
            }
            es.release_rows();
            EXPECT_FALSE(es.rows_pinned());
        }
        EStepCudaOptions oi = o;
        oi.retain = gpu::EStepCudaRetain::Ignore;
        EStepCuda ignore(p.K, p.d, oi);
        ignore.set_model(p.model, p.center.data());
        ignore.retain_rows(float_rows(p));
        EXPECT_FALSE(ignore.rows_pinned());
        EXPECT_FALSE(ignore.rows_retained());
    }
}

TEST_F(EStepCudaTest, SanitizerSmall) {
    // Small enough to run under compute-sanitizer (memcheck, racecheck). Hopper: clusters of 2
    // (K = 130) and the two-pass path (K = 1100), spherical and diagonal (d = 40: the kernels at
    // 2d = 80 → 96; d = 100: the wide kernel in fast mode, the 32-row two-pass kernels of
    // Sm90DiagSplitKernels.cuh in accurate mode, K = 130 and 1100, and with one plane in fast mode).
    // combo 3: the accurate Hopper kernels (clusters of 2, two warpgroups' partials each; two
    // passes at K = 1100).
    for (int combo = 0; combo < 4; combo++) {
        const bool fast = combo == 1 || combo == 2;
        g_algo = combo < 2 ? EStepCudaAlgorithm::Blocked : EStepCudaAlgorithm::Hopper;
        for (auto cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
            Problem p = make_problem(300, 130, 40, cov, fast ? 41 : 42, false);
            EStepCudaOptions o = opts(fast);
            o.chunk_rows = 200;
            expect_close(run_gpu(p, o, float_rows(p)), reference(p), fast, std::string("small ") + to_string(cov));
        }
        if (combo >= 2) { // diagonal d = 100: the wide kernel (fast), Sm90DiagSplitKernels.cuh (accurate)
            Problem p = make_problem(300, 130, 100, CovarianceType::Diagonal, fast ? 45 : 46, false);
            EStepCudaOptions o = opts(fast);
            o.chunk_rows = 200;
            expect_close(run_gpu(p, o, float_rows(p)), reference(p), fast, "small diagonal d=100");
        }
        if (combo == 3) { // the accurate diagonal two passes with 9 component tiles, chunks of 5 tiles of 32 rows
            Problem p = make_problem(300, 1100, 100, CovarianceType::Diagonal, 49, false);
            EStepCudaOptions o = opts(false);
            o.chunk_rows = 150;
            expect_close(run_gpu(p, o, float_rows(p)), reference(p), false, "small accurate diagonal d=100 K=1100");
        }
        if (combo == 2) {
            Problem pd = make_problem(300, 1100, 40, CovarianceType::Diagonal, 47, false);
            EStepCudaOptions od = opts(true);
            od.chunk_rows = 200;
            expect_close(run_gpu(pd, od, float_rows(pd)), reference(pd), true, "small diagonal two-pass K=1100");
            // d = 100: the one-plane two passes of Sm90DiagSplitKernels.cuh (K = 1100, and K = 130 when asked)
            for (int64_t K : {int64_t(1100), int64_t(130)}) {
                Problem pw = make_problem(300, K, 100, CovarianceType::Diagonal, 50 + K, false);
                EStepCudaOptions ow = opts(true);
                ow.chunk_rows = 150;
                ow.hopper_diag_wide = 2;
                expect_close(run_gpu(pw, ow, float_rows(pw)), reference(pw), true,
                             "small fast diagonal d=100 two passes K=" + std::to_string(K));
            }
            Problem q = make_problem(300, 130, 40, CovarianceType::Spherical, 44, false);
            EStepCudaOptions oq = opts(true);
            oq.chunk_rows = 200;
            oq.hopper_exchange = 1;
            expect_close(run_gpu(q, oq, float_rows(q)), reference(q), true, "small spherical, exchange=1");
            Problem p = make_problem(300, 1100, 40, CovarianceType::Spherical, 43, false);
            EStepCudaOptions o = opts(true);
            o.chunk_rows = 200;
            expect_close(run_gpu(p, o, float_rows(p)), reference(p), true, "small two-pass K=1100");
        }
        if (combo == 3) { // accurate two passes: chunks of 150 rows = 3 tiles of 64 (+ a padding tile)
            for (auto cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
                Problem p = make_problem(300, 1100, 40, cov, 48, false);
                EStepCudaOptions o = opts(false);
                o.chunk_rows = 150;
                expect_close(run_gpu(p, o, float_rows(p)), reference(p), false,
                             std::string("small accurate two-pass K=1100 ") + to_string(cov));
            }
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
        // As a Problem, so that expect_close's derived bound is computed for these rows and this model.
        Problem p;
        p.n = n, p.K = K, p.d = d, p.cov = cov;
        p.x = x;
        p.center = center;
        p.model = m;
        const SufficientStats ref = reference(p);
        for (int mode = 0; mode < 4; mode++) { // Blocked accurate, Blocked TF32, Hopper fast, Hopper accurate
            const bool fast = mode == 1 || mode == 2;
            g_algo = mode < 2 ? EStepCudaAlgorithm::Blocked : EStepCudaAlgorithm::Hopper;
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

// ---------------------------------------------------------------- Hopper (sm_90a) algorithm

TEST_F(EStepCudaTest, Sm90WgmmaLayouts) {
    if (!hopper_available()) GTEST_SKIP() << "not a Hopper GPU (or no sm_90a build): wgmma probes skipped";
    std::mt19937_64 rng(3);
    std::uniform_int_distribution<int> ud(-8, 8);
    auto run_probe = [&](bool mn) {
        const int na = mn ? 32 * 64 : 64 * 32, nb = mn ? 32 * 136 : 128 * 32, nd = mn ? 64 * 136 : 64 * 128;
        std::vector<__half> a(na), b(nb);
        std::vector<float> af(na), bf(nb), d(nd);
        for (int i = 0; i < na; i++) a[i] = __float2half(af[i] = float(ud(rng)) * 0.25f);
        for (int i = 0; i < nb; i++) b[i] = __float2half(bf[i] = float(ud(rng)) * 0.5f);
        __half *da = nullptr, *db = nullptr;
        float* dd = nullptr;
        ASSERT_EQ(cudaMalloc(&da, na * 2), cudaSuccess);
        ASSERT_EQ(cudaMalloc(&db, nb * 2), cudaSuccess);
        ASSERT_EQ(cudaMalloc(&dd, nd * 4), cudaSuccess);
        ASSERT_EQ(cudaMemcpy(da, a.data(), na * 2, cudaMemcpyHostToDevice), cudaSuccess);
        ASSERT_EQ(cudaMemcpy(db, b.data(), nb * 2, cudaMemcpyHostToDevice), cudaSuccess);
        ASSERT_EQ(cudaMemset(dd, 0xff, nd * 4), cudaSuccess);
        if (mn) {
            probe_mnmajor_kernel<<<1, 128>>>(da, db, dd);
        } else {
            probe_kmajor_kernel<<<1, 128>>>(da, db, dd);
        }
        ASSERT_EQ(cudaGetLastError(), cudaSuccess);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        ASSERT_EQ(cudaMemcpy(d.data(), dd, nd * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cudaFree(da);
        cudaFree(db);
        cudaFree(dd);
        double maxerr = 0;
        int bad = 0;
        const int N = mn ? 136 : 128;
        for (int m = 0; m < 64; m++)
            for (int n = 0; n < N; n++) {
                double ref = 0;
                for (int k = 0; k < 32; k++)
                    ref += mn ? double(af[k * 64 + m]) * bf[k * 136 + n] : double(af[m * 32 + k]) * bf[n * 32 + k];
                const double err = std::fabs(ref - d[m * N + n]);
                if (!(err <= 1e-3)) {
                    if (bad < 5) printf("  probe %s: D[%d][%d] = %g, expected %g\n", mn ? "MN" : "K", m, n, d[m * N + n], ref);
                    bad++;
                }
                maxerr = std::max(maxerr, std::isfinite(err) ? err : INFINITY);
            }
        printf("  wgmma probe %s-major: %d of %d wrong, max abs error %.3g\n", mn ? "MN" : "K", bad, 64 * N, maxerr);
        EXPECT_EQ(bad, 0) << (mn ? "MN-major (GEMM2) layout" : "K-major (GEMM1) layout");
    };
    run_probe(false);
    run_probe(true);
}

/// Runs the Hopper algorithm and checks it really ran (on a Hopper GPU with the sm_90a build),
/// and, when expect_cluster ≥ 0, with that cluster size (0: two passes).
/// `report`, if given, receives GPU 0's report of the call.
SufficientStats run_hopper(const Problem& p, EStepCudaOptions o, const VectorBlock& rows, const char* expect,
                           int expect_cluster = -1, gpu::EStepCudaReport* report = nullptr) {
    o.algorithm = EStepCudaAlgorithm::Hopper;
    EStepCuda es(p.K, p.d, o);
    es.set_model(p.model, p.center.data());
    SufficientStats got(p.K, p.d, p.cov);
    es.accumulate(rows, got);
    if (hopper_available()) {
        EXPECT_STREQ(es.last_report()[0].algorithm, expect);
        if (expect_cluster >= 0) {
            EXPECT_EQ(es.last_report()[0].cluster, expect_cluster) << "n=" << p.n << " K=" << p.K << " d=" << p.d;
        }
    }
    if (report && !es.last_report().empty()) *report = es.last_report()[0];
    return got;
}

TEST_F(EStepCudaTest, HopperLargeKStatisticsAddedOnThreads) {
    // Above 2^21 values of statistics (K = 20000, d = 128: 2.6M) HopperEStep::add_to adds the
    // downloaded sums on the core's thread pool, disjoint components per piece; the statistics
    // stay within the mode's bound of the float64 reference, fast (two passes) and accurate, and a
    // second call adds onto the first (each value twice its one-call sum, exactly: the same doubles added).
    g_algo = EStepCudaAlgorithm::Hopper;
    Problem p = make_problem(1200, 20000, 128, CovarianceType::Spherical, 540, false);
    const SufficientStats ref = reference(p);
    for (bool fast : {true, false}) {
        const std::string what = std::string("K=20000 ") + (fast ? "fast" : "accurate");
        EStepCudaOptions o = opts(fast);
        o.devices = {0};
        o.algorithm = EStepCudaAlgorithm::Hopper;
        EStepCuda es(p.K, p.d, o);
        es.set_model(p.model, p.center.data());
        SufficientStats once(p.K, p.d, p.cov), twice(p.K, p.d, p.cov);
        es.accumulate(float_rows(p), once);
        if (hopper_available()) EXPECT_STREQ(es.last_report()[0].algorithm, "hopper") << what;
        expect_close(once, ref, fast, what);
        es.accumulate(float_rows(p), twice);
        es.accumulate(float_rows(p), twice);
        for (int64_t k = 0; k < p.K; k++) {
            ASSERT_EQ(twice.nk[size_t(k)], 2 * once.nk[size_t(k)]) << what << ", component " << k;
            ASSERT_EQ(twice.sum_sq[size_t(k)], 2 * once.sum_sq[size_t(k)]) << what << ", component " << k;
        }
        for (size_t i = 0; i < once.sum_x.size(); i++) ASSERT_EQ(twice.sum_x[i], 2 * once.sum_x[i]) << what;
    }
}

TEST_F(EStepCudaTest, HopperRandomShapes) {
    // Ragged N, K (clusters of 1..8 CTAs, and K > 1024: two passes) and d (padded to 32/64/96/128).
    const Shape shapes[] = {
            {1, 1, 5},       {2, 3, 8},        {7, 3, 17},       {100, 1, 96},     {1000, 5, 100},
            {777, 130, 128}, {3001, 257, 64},  {2000, 129, 33},  {4100, 300, 128}, {64, 2, 1},
            {1000, 640, 127}, {1500, 1000, 32}, {5000, 1024, 128}, {300, 1025, 96}, {2000, 1500, 128},
            {129, 2100, 60}, {20000, 384, 128},
    };
    g_algo = EStepCudaAlgorithm::Hopper;
    uint64_t seed = 500;
    for (const Shape& s : shapes) {
        Problem p = make_problem(s.n, s.K, s.d, CovarianceType::Spherical, seed++, false);
        SufficientStats ref = reference(p);
        char label[96];
        snprintf(label, sizeof(label), "n=%lld K=%lld d=%lld", (long long)s.n, (long long)s.K, (long long)s.d);
        expect_close(run_hopper(p, opts(true), float_rows(p), "hopper"), ref, true, label);
        if (s.K > 128 && s.K <= 1024) { // clusters of 2..8: the barrier.cluster exchange too
            EStepCudaOptions o = opts(true);
            o.hopper_exchange = 1;
            expect_close(run_hopper(p, o, float_rows(p), "hopper"), ref, true, std::string(label) + " exch=1");
        }
    }
}

/// One problem through the Hopper path's memory paths: pageable and pinned rows in chunks of 700,
/// device-resident rows in chunks of 1024 (one worker), `workers` workers on GPU 0 in chunks of 900.
void check_hopper_memory_paths(const Problem& p, const SufficientStats& ref, bool fast, int workers,
                               const std::string& tag) {
    EStepCudaOptions o = opts(fast);
    o.chunk_rows = 700;
    expect_close(run_hopper(p, o, float_rows(p), "hopper"), ref, fast, tag + "pageable, 8 chunks");
    const size_t bytes = p.x.size() * 4;
    float* pinned = nullptr;
    ASSERT_EQ(cudaMallocHost(&pinned, bytes), cudaSuccess);
    std::copy(p.x.begin(), p.x.end(), pinned);
    expect_close(run_hopper(p, o, VectorBlock{pinned, DataType::Float32, p.n, p.d}, "hopper"), ref, fast,
                 tag + "pinned, 8 chunks");
    cudaFreeHost(pinned);
    float* dev = nullptr;
    ASSERT_EQ(cudaMalloc(&dev, bytes), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dev, p.x.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
    EStepCudaOptions o1 = opts(fast);
    o1.devices = {0};
    o1.chunk_rows = 1024;
    expect_close(run_hopper(p, o1, VectorBlock{dev, DataType::Float32, p.n, p.d}, "hopper"), ref, fast,
                 tag + "device-resident, 5 chunks");
    cudaFree(dev);
    EStepCudaOptions o2 = opts(fast);
    o2.devices = std::vector<int>(size_t(workers), 0);
    o2.chunk_rows = 900;
    expect_close(run_hopper(p, o2, float_rows(p), "hopper"), ref, fast,
                 tag + std::to_string(workers) + " workers on GPU 0");
}

/// Accurate mode on p: the flush interval, which only bounds fp32 accumulation error (every tile,
/// and never before the end), then uint8 rows of each shape (p's covariance type, seeds counted
/// up from `seed`). Labels start with `what`.
void check_hopper_accurate_flush_and_uint8(const Problem& p, const SufficientStats& ref,
                                           const std::vector<Shape>& uint8_shapes, uint64_t seed,
                                           const std::string& what) {
    for (int flush : {1, 1000000}) {
        EStepCudaOptions of = opts(false);
        of.hopper_flush_tiles = flush;
        expect_close(run_hopper(p, of, float_rows(p), "hopper"), ref, false,
                     what + " flush every " + std::to_string(flush) + " tiles");
    }
    for (Shape s : uint8_shapes) {
        Problem q = make_problem(s.n, s.K, s.d, p.cov, seed++, true);
        expect_close(run_hopper(q, opts(false), VectorBlock{q.x8.data(), DataType::UInt8, q.n, q.d}, "hopper"),
                     reference(q), false,
                     what + " uint8 n=" + std::to_string(s.n) + " K=" + std::to_string(s.K) +
                             " d=" + std::to_string(s.d));
    }
}

/// Accurate mode on one of the Hopper path's multi-pass kernels: ragged shapes, then one
/// 5000 × 1200 × 128 problem through the memory paths (3 workers) and the flush interval, then
/// uint8 rows; seeds counted up from `seed`. Labels start with `what`, the memory paths' with
/// `memory_tag`.
void check_hopper_accurate_passes(CovarianceType cov, const std::vector<Shape>& shapes,
                                  const std::vector<Shape>& uint8_shapes, uint64_t seed, const std::string& what,
                                  const std::string& memory_tag) {
    for (const Shape& s : shapes) {
        Problem p = make_problem(s.n, s.K, s.d, cov, seed++, false);
        char label[96];
        snprintf(label, sizeof(label), "%s n=%lld K=%lld d=%lld", what.c_str(), (long long)s.n, (long long)s.K,
                 (long long)s.d);
        expect_close(run_hopper(p, opts(false), float_rows(p), "hopper"), reference(p), false, label);
    }
    Problem p = make_problem(5000, 1200, 128, cov, seed++, false);
    const SufficientStats ref = reference(p);
    check_hopper_memory_paths(p, ref, false, 3, memory_tag);
    check_hopper_accurate_flush_and_uint8(p, ref, uint8_shapes, seed, what);
}

TEST_F(EStepCudaTest, HopperChunksUint8Workers) {
    g_algo = EStepCudaAlgorithm::Hopper;
    {
        Problem p = make_problem(5000, 300, 128, CovarianceType::Spherical, 601, false);
        check_hopper_memory_paths(p, reference(p), true, 2, ""); // chunks of 700 rows: 6 ragged tiles
    }
    {
        Problem p = make_problem(3000, 1200, 64, CovarianceType::Spherical, 602, false);
        EStepCudaOptions o = opts(true);
        o.chunk_rows = 1000;
        expect_close(run_hopper(p, o, float_rows(p), "hopper"), reference(p), true, "two-pass, 3 chunks");
    }
    int seed = 610;
    for (Shape s : {Shape{1000, 50, 128}, Shape{257, 3, 100}, Shape{5, 1, 96}, Shape{700, 1100, 32}}) {
        Problem p = make_problem(s.n, s.K, s.d, CovarianceType::Spherical, seed++, true);
        expect_close(run_hopper(p, opts(true), VectorBlock{p.x8.data(), DataType::UInt8, p.n, p.d}, "hopper"),
                     reference(p), true,
                     "uint8 n=" + std::to_string(s.n) + " K=" + std::to_string(s.K) + " d=" + std::to_string(s.d));
    }
}

TEST_F(EStepCudaTest, HopperFastBiasBeyondHalfRangeRunsTwoPasses) {
    // The one-pass fast kernel takes the bias and ‖x‖² terms of the logits as fp16 weights of its
    // last GEMM1 step (ModelEncoding.cpp: encode_bias_weights). A component with a log-weight of
    // -1e12 has a bias no fp16 column can hold, so the model runs the two passes (cluster 0), which
    // add those terms in fp32, and keeps fast mode's accuracy; the component gets no responsibility.
    // The same for the wide kernel of diagonal models with d > 64 (its bias columns hold b_k), and
    // above K = 1024, where the two passes of folded models take the bias columns and these do not.
    g_algo = EStepCudaAlgorithm::Hopper;
    uint64_t seed = 640;
    const auto sph = CovarianceType::Spherical, diag = CovarianceType::Diagonal;
    const std::pair<CovarianceType, Shape> cases[] = {
            {sph, {3000, 300, 100}}, {diag, {3000, 300, 100}}, {sph, {1000, 1100, 100}}, {diag, {1000, 1100, 60}}};
    for (const auto& [cov, s] : cases) {
        Problem p = make_problem(s.n, s.K, s.d, cov, seed++, false);
        const double w3 = std::exp(double(p.model.log_weights[3]));
        for (auto& lw : p.model.log_weights) lw = float(double(lw) - std::log1p(-w3));
        p.model.log_weights[3] = -1e12f;
        const SufficientStats ref = reference(p);
        const gpu::detail::EncodedModel em = gpu::detail::encode_model(p.model, p.center.data(), true, true);
        ASSERT_TRUE(em.hopper && !em.hopper->folded);
        expect_close(run_hopper(p, opts(true), float_rows(p), "hopper", 0), ref, true,
                     std::string(to_string(cov)) + " K=" + std::to_string(s.K) + ", log-weight -1e12, two passes");
        EXPECT_EQ(ref.nk[3], 0.0);
    }
}

TEST_F(EStepCudaTest, HopperFastFarRowsBeyondTheBiasColumns) {
    // The one-pass fast kernel's bias columns hold u = c_q·s_q‖x'‖² in fp16 (TileShapes.h:
    // BiasColumn); where it would pass 65504 the kernel clamps u and adds the rest of a_k‖x'‖² in
    // fp32. A scale mixture (means near the center, variances apart) has c_q ≥ 4, so rows with
    // ‖x'‖² twice the clamp, whose s_q‖x'‖² (GEMM2's column) is still in fp16's range, take that
    // path; with them the statistics stay within fast mode's bound. K = 1100: the same in both of
    // the two passes (lse_kernel, estep_kernel), which take the bias columns for folded models.
    g_algo = EStepCudaAlgorithm::Hopper;
    for (int64_t K : {int64_t(50), int64_t(1100)}) {
        Problem p = make_problem(3000, K, 16, CovarianceType::Spherical, K > 1024 ? 651 : 650, false);
        for (auto& v : p.model.means) v = float(v / 1000.0);
        const gpu::detail::EncodedModel em = gpu::detail::encode_model(p.model, p.center.data(), true, true);
        ASSERT_TRUE(em.hopper && em.hopper->folded);
        ASSERT_GE(em.hopper->cq, 4.f);
        const double xsat = 65504.0 / (double(em.hopper->sq) * em.hopper->cq);
        const double v = std::sqrt(2 * xsat / double(p.d)); // ‖x'‖² = 2·xsat
        int far = 0;
        for (int64_t i = 0; i < p.n; i += 75, far++)
            for (int64_t j = 0; j < p.d; j++) p.x[size_t(i * p.d + j)] = float(p.center[size_t(j)] + (j % 2 ? v : -v));
        ASSERT_EQ(far, 40);
        expect_close(run_hopper(p, opts(true), float_rows(p), "hopper", K > 1024 ? 0 : 1), reference(p), true,
                     "K=" + std::to_string(K) + ", 40 rows with ‖x'‖² = 2 × the bias columns' range");
    }
}

TEST_F(EStepCudaTest, HopperFallsBackToBlocked) {
    // d > 128 is no Hopper case: Blocked runs, with its accuracy. Diagonal fast mode with K > 1024
    // and d > 64 (no fast kernel) runs the 2×fp16 kernels, with theirs.
    g_algo = EStepCudaAlgorithm::Hopper;
    Problem pd = make_problem(1000, 1100, 65, CovarianceType::Diagonal, 701, false);
    expect_close(run_hopper(pd, opts(true), float_rows(pd), "hopper"), reference(pd), true,
                 "diagonal fast K=1100 d=65 -> hopper 2xfp16");
    g_algo = EStepCudaAlgorithm::Blocked; // what runs (labels and error slots)
    Problem pe = make_problem(1000, 40, 129, CovarianceType::Diagonal, 704, false);
    expect_close(run_hopper(pe, opts(false), float_rows(pe), "blocked"), reference(pe), false,
                 "diagonal accurate d=129 -> blocked");
    Problem pw = make_problem(500, 20, 200, CovarianceType::Spherical, 702, false);
    expect_close(run_hopper(pw, opts(true), float_rows(pw), "blocked"), reference(pw), true, "d=200 -> blocked");
    // One object, the model switching between the fast one-pass kernel (spherical) and the 2×fp16
    // passes a fast diagonal model with d > 64 and K > 1024 runs.
    EStepCudaOptions o = opts(true);
    o.algorithm = EStepCudaAlgorithm::Auto;
    EStepCuda es(1100, 100, o);
    for (int i = 0; i < 3; i++) {
        const auto cov = i == 1 ? CovarianceType::Diagonal : CovarianceType::Spherical;
        Problem p = make_problem(800, 1100, 100, cov, 710 + i, false);
        es.set_model(p.model, p.center.data());
        SufficientStats got(p.K, p.d, p.cov);
        es.accumulate(float_rows(p), got);
        g_algo = hopper_available() ? EStepCudaAlgorithm::Hopper : EStepCudaAlgorithm::Blocked;
        if (hopper_available()) EXPECT_STREQ(es.last_report()[0].algorithm, "hopper");
        expect_close(got, reference(p), true, std::string("Auto, model ") + std::to_string(i) + " " + to_string(cov));
    }
}

// Diagonal models on the Hopper path: the logits are one product of the features [x | x²]
// against [μ/σ² | −1/(2σ²)] and GEMM2 gives Σ r x and Σ r x² (d ≤ 64: the spherical kernels at
// 2d ≤ 128, fast and accurate; 64 < d ≤ 128, fast: the wide kernel for K ≤ 1024, else the
// 2×fp16 passes). Tolerances: the derived
// bounds of expect_close (gpu_error_bounds.h, whose logit and statistics terms cover the
// features [x' | x'²]): the arithmetic is that of the spherical kernels on 2d features (fp16
// operands and responsibilities, u = 2^-11, in fast mode; 2×fp16, ~2^-22 per product, in accurate
// mode), with x² scaled apart from x (s_q) so that both halves keep fp16's relative precision.
TEST_F(EStepCudaTest, HopperDiagonalRandomShapes) {
    const Shape shapes[] = {
            {1, 1, 5},        {2, 3, 8},        {7, 3, 17},       {100, 1, 96},     {1000, 5, 100},
            {777, 130, 128},  {3001, 257, 64},  {2000, 129, 33},  {4100, 300, 128}, {64, 2, 1},
            {1000, 640, 127}, {1500, 1000, 32}, {5000, 1024, 128}, {300, 1025, 60}, {2000, 1500, 64},
            {129, 2100, 20},  {20000, 384, 128}, {3000, 200, 65},  {65, 70, 96},     {999, 1024, 97},
            {1500, 1100, 100}, {700, 2100, 128}, // fast: K > 1024, d > 64: the one-plane two passes
    };
    g_algo = EStepCudaAlgorithm::Hopper;
    uint64_t seed = 1500;
    for (bool fast : {true, false}) {
        for (const Shape& s : shapes) {
            Problem p = make_problem(s.n, s.K, s.d, CovarianceType::Diagonal, seed++, false);
            const bool covered = gpu::detail::hopper_covers(s.d);
            char label[96];
            snprintf(label, sizeof(label), "diagonal %s n=%lld K=%lld d=%lld", fast ? "fast" : "accurate",
                     (long long)s.n, (long long)s.K, (long long)s.d);
            expect_close(run_hopper(p, opts(fast), float_rows(p), covered ? "hopper" : "blocked"), reference(p), fast,
                         label);
        }
    }
}

TEST_F(EStepCudaTest, HopperDiagonalChunksUint8WorkersSubChunks) {
    g_algo = EStepCudaAlgorithm::Hopper;
    int seed = 1600;
    // d = 128 (the wide kernel), d = 50 (the spherical kernels at 2d = 100 → 128), both modes where covered.
    for (int64_t d : {int64_t(128), int64_t(50)}) {
        for (bool fast : {true, false}) {
            if (!gpu::detail::hopper_covers(d)) continue;
            Problem p = make_problem(5000, 300, d, CovarianceType::Diagonal, seed++, false);
            const SufficientStats ref = reference(p);
            const std::string tag = std::string("diagonal ") + (fast ? "fast" : "accurate") + " d=" + std::to_string(d);
            check_hopper_memory_paths(p, ref, fast, 2, tag + ", ");
            EStepCudaOptions o3 = opts(fast);
            o3.hopper_sub_tiles = 1; // sub-chunks whose features run under the previous kernel
            o3.hopper_flush_tiles = 1;
            expect_close(run_hopper(p, o3, float_rows(p), "hopper"), ref, fast, tag + ", sub-chunks, flush every tile");
        }
    }
    for (Shape s : {Shape{1000, 50, 128}, Shape{257, 3, 100}, Shape{5, 1, 96}, Shape{3000, 1024, 128},
                    Shape{700, 1100, 32}, Shape{2000, 600, 64}}) {
        for (bool fast : {true, false}) {
            Problem q = make_problem(s.n, s.K, s.d, CovarianceType::Diagonal, seed++, true);
            const bool covered = gpu::detail::hopper_covers(s.d);
            expect_close(run_hopper(q, opts(fast), VectorBlock{q.x8.data(), DataType::UInt8, q.n, q.d},
                                    covered ? "hopper" : "blocked"),
                         reference(q), fast,
                         std::string("diagonal uint8 ") + (fast ? "fast" : "accurate") + " n=" + std::to_string(s.n) +
                                 " K=" + std::to_string(s.K) + " d=" + std::to_string(s.d));
        }
    }
}

TEST_F(EStepCudaTest, HopperAccurateRandomShapes) {
    // The accurate (2×fp16) kernel: ragged N, K (clusters of 1..8, warpgroups whose 64 components
    // are all padding) and d, against the float64 reference at the accurate tolerance (1e-4).
    const Shape shapes[] = {
            {1, 1, 5},        {2, 3, 8},        {7, 3, 17},       {100, 1, 96},     {1000, 5, 100},
            {777, 130, 128},  {3001, 257, 64},  {2000, 129, 33},  {4100, 300, 128}, {64, 2, 1},
            {1000, 640, 127}, {1500, 1000, 32}, {5000, 1024, 128}, {20000, 384, 128}, {65, 70, 128},
    };
    g_algo = EStepCudaAlgorithm::Hopper;
    uint64_t seed = 800;
    for (const Shape& s : shapes) {
        Problem p = make_problem(s.n, s.K, s.d, CovarianceType::Spherical, seed++, false);
        SufficientStats ref = reference(p);
        char label[96];
        snprintf(label, sizeof(label), "accurate n=%lld K=%lld d=%lld", (long long)s.n, (long long)s.K,
                 (long long)s.d);
        expect_close(run_hopper(p, opts(false), float_rows(p), "hopper"), ref, false, label);
    }
}

TEST_F(EStepCudaTest, HopperAccurateChunksUint8WorkersFlush) {
    g_algo = EStepCudaAlgorithm::Hopper;
    Problem p = make_problem(60000, 512, 128, CovarianceType::Spherical, 901, false);
    SufficientStats ref = reference(p);
    EStepCudaOptions o = opts(false);
    o.chunk_rows = 7000; // 9 chunks of ragged tiles
    expect_close(run_hopper(p, o, float_rows(p), "hopper"), ref, false, "accurate pageable, 9 chunks");
    EStepCudaOptions o2 = opts(false);
    o2.devices = {0, 0};
    expect_close(run_hopper(p, o2, float_rows(p), "hopper"), ref, false, "accurate 2 workers on GPU 0");
    const std::vector<Shape> uint8_shapes = {{1000, 50, 128}, {257, 3, 100}, {5, 1, 96}, {3000, 1024, 128}};
    check_hopper_accurate_flush_and_uint8(p, ref, uint8_shapes, 910, "accurate");
}

TEST_F(EStepCudaTest, HopperAccurateTwoPass) {
    // Accurate mode above K = 1024: lse_split_kernel (pairs of 64-row tiles: odd tile counts leave
    // a padding tile), then the second pass on row splits × component tiles (Sm90SplitKernels.cuh).
    // Ragged N, K (the last component tile partly or all but one padding) and d; chunks with odd
    // tile counts (of 700 rows: 11 tiles of 64, a padding tile each; of 900: 15 tiles), pinned and
    // device-resident rows, 3 workers, flush every tile and never, uint8.
    g_algo = EStepCudaAlgorithm::Hopper;
    const std::vector<Shape> shapes = {
            {1, 1025, 5},      {2, 1100, 8},    {65, 1500, 17},    {129, 2100, 60},  {300, 1025, 96},
            {2000, 1500, 128}, {777, 2049, 33}, {4100, 3000, 127}, {3000, 1153, 64}, {64, 4096, 128},
    };
    const std::vector<Shape> uint8_shapes = {{700, 1100, 32}, {1001, 2000, 100}, {5, 1300, 96}};
    check_hopper_accurate_passes(CovarianceType::Spherical, shapes, uint8_shapes, 2600, "accurate two-pass",
                                 "accurate two-pass ");
}

TEST_F(EStepCudaTest, HopperDiagonalAccurateWide) {
    // Accurate mode, diagonal, 64 < d ≤ 128 (features [x | x²] padded to 192 or 256): the two
    // passes of Sm90DiagSplitKernels.cuh (32-row tiles, lse_parts → merge → GEMM2 with the
    // responsibilities in registers) at any K. Ragged N (1 row, 31 / 33 rows: a partial tile, one
    // tile and a row), K (one component, a last component tile of 1..127, two passes' Kt up to
    // 24) and d (65 → 192, 97 → 256); then chunks, pinned and device-resident rows, 3 workers, the
    // flush interval, uint8 rows. Tolerances: gpu_error_bounds.h (the 2×fp16 bound holds as derived
    // there for these kernels too).
    g_algo = EStepCudaAlgorithm::Hopper;
    const std::vector<Shape> shapes = {
            {1, 1, 65},      {2, 3, 70},        {31, 5, 96},      {33, 130, 97},   {65, 1100, 128},
            {777, 300, 100}, {4100, 1024, 128}, {3001, 2049, 127}, {1000, 129, 80}, {64, 3000, 66},
    };
    const std::vector<Shape> uint8_shapes = {{700, 1100, 96}, {1001, 300, 128}, {5, 2, 80}};
    check_hopper_accurate_passes(CovarianceType::Diagonal, shapes, uint8_shapes, 2700, "accurate diagonal",
                                 "accurate diagonal d=128 ");
}

TEST_F(EStepCudaTest, HopperDiagonalFastTwoPass) {
    // Fast mode, diagonal, 64 < d ≤ 128: the two passes of Sm90DiagSplitKernels.cuh with one fp16
    // plane (K > 1024 always; K ≤ 1024 when hopper_diag_wide = 2, else the one-pass wide kernel).
    // Ragged N, K and d as in HopperDiagonalAccurateWide, each run by the two passes (the report's
    // cluster 0 says so) and, where K ≤ 1024, by the wide kernel too; then 5000 × 1200 × 128
    // through the memory paths (2 workers), the flush interval and uint8 rows. Tolerances:
    // gpu_error_bounds.h (the fp16 bound, derived there for these kernels).
    g_algo = EStepCudaAlgorithm::Hopper;
    auto two_pass = [](int64_t K) {
        EStepCudaOptions o = opts(true);
        if (K <= 1024) o.hopper_diag_wide = 2;
        return o;
    };
    EStepCudaOptions wide = opts(true);
    wide.hopper_diag_wide = 1;
    uint64_t seed = 2800;
    const std::vector<Shape> shapes = {
            {1, 1, 65},      {2, 3, 70},        {31, 5, 96},       {33, 130, 97},  {65, 1100, 128},
            {777, 300, 100}, {4100, 1024, 128}, {3001, 2049, 127}, {1000, 129, 80}, {64, 3000, 66},
    };
    for (const Shape& s : shapes) {
        Problem p = make_problem(s.n, s.K, s.d, CovarianceType::Diagonal, seed++, false);
        const SufficientStats ref = reference(p);
        char label[96];
        snprintf(label, sizeof(label), "fast diagonal two passes n=%lld K=%lld d=%lld", (long long)s.n,
                 (long long)s.K, (long long)s.d);
        expect_close(run_hopper(p, two_pass(s.K), float_rows(p), "hopper", 0), ref, true, label);
        if (s.K <= 1024) {
            const int Kt = int((s.K + 127) / 128);
            expect_close(run_hopper(p, wide, float_rows(p), "hopper", Kt), ref, true,
                         std::string(label) + ", wide kernel");
        }
    }
    Problem p = make_problem(5000, 1200, 128, CovarianceType::Diagonal, seed++, false);
    const SufficientStats ref = reference(p);
    check_hopper_memory_paths(p, ref, true, 2, "fast diagonal two passes ");
    for (int flush : {1, 1000000}) {
        EStepCudaOptions of = opts(true);
        of.hopper_flush_tiles = flush;
        expect_close(run_hopper(p, of, float_rows(p), "hopper", 0), ref, true,
                     "fast diagonal two passes, flush every " + std::to_string(flush) + " tiles");
    }
    for (Shape s : {Shape{700, 1100, 96}, Shape{1001, 300, 128}, Shape{5, 2, 80}}) {
        Problem q = make_problem(s.n, s.K, s.d, CovarianceType::Diagonal, seed++, true);
        expect_close(run_hopper(q, two_pass(s.K), VectorBlock{q.x8.data(), DataType::UInt8, q.n, q.d}, "hopper", 0),
                     reference(q), true,
                     "fast diagonal two passes uint8 n=" + std::to_string(s.n) + " K=" + std::to_string(s.K) +
                             " d=" + std::to_string(s.d));
    }
}

TEST_F(EStepCudaTest, HopperSubChunksPipelined) {
    // Large chunks are cut into up to 4 sub-chunks whose features run on a second stream under
    // the cluster kernel of the previous one; hopper_sub_tiles = 1 makes small problems take that
    // path too (sub-chunks with fewer tiles than clusters included).
    g_algo = EStepCudaAlgorithm::Hopper;
    auto sub_opts = [](bool fast) {
        EStepCudaOptions o = opts(fast);
        o.hopper_sub_tiles = 1;
        return o;
    };
    int seed = 950;
    for (bool fast : {true, false}) {
        for (Shape s : {Shape{5000, 300, 128}, Shape{3000, 1024, 96}, Shape{700, 100, 40}, Shape{70, 5, 8}}) {
            Problem p = make_problem(s.n, s.K, s.d, CovarianceType::Spherical, seed++, true);
            const SufficientStats ref = reference(p);
            const std::string label = std::string(fast ? "fast" : "accurate") + " sub-chunks n=" +
                                      std::to_string(s.n) + " K=" + std::to_string(s.K) + " d=" + std::to_string(s.d);
            expect_close(run_hopper(p, sub_opts(fast), float_rows(p), "hopper"), ref, fast, label);
            for (int growth : {1, 3}) { // equal sub-chunks; each 3× the one before (the default is auto)
                EStepCudaOptions og = sub_opts(fast);
                og.hopper_sub_chunk_growth = growth;
                expect_close(run_hopper(p, og, float_rows(p), "hopper"), ref, fast,
                             label + ", growth " + std::to_string(growth));
            }
            EStepCudaOptions o = sub_opts(fast);
            o.chunk_rows = 1100; // several chunks, each cut again
            expect_close(run_hopper(p, o, VectorBlock{p.x8.data(), DataType::UInt8, p.n, p.d}, "hopper"), ref, fast,
                         label + ", uint8, chunks of 1100");
        }
    }
}

TEST_F(EStepCudaTest, HopperMaxClustersCapsTheLaunch) {
    // hopper_max_clusters launches at most that many clusters; the chunk's tiles are shared among
    // them (more tiles per cluster), with the same statistics within the mode's bound: K = 256
    // (clusters of 2) and K = 1000 (clusters of 8), sub-chunks on, uint8 rows in several chunks.
    g_algo = EStepCudaAlgorithm::Hopper;
    int seed = 990;
    for (bool fast : {true, false}) {
        for (Shape s : {Shape{9000, 256, 128}, Shape{5000, 1000, 64}}) {
            Problem p = make_problem(s.n, s.K, s.d, CovarianceType::Spherical, seed++, true);
            const SufficientStats ref = reference(p);
            for (int cap : {1, 3}) {
                EStepCudaOptions o = opts(fast);
                o.hopper_max_clusters = cap;
                o.hopper_sub_tiles = 1;
                const std::string label = std::string(fast ? "fast" : "accurate") + " hopper_max_clusters=" +
                                          std::to_string(cap) + " n=" + std::to_string(s.n) +
                                          " K=" + std::to_string(s.K);
                const int cluster = (s.K + 127) / 128;
                gpu::EStepCudaReport r;
                expect_close(run_hopper(p, o, float_rows(p), "hopper", cluster, &r), ref, fast, label);
                if (hopper_available()) EXPECT_EQ(r.blocks, cap * cluster) << label;
                o.chunk_rows = 2200;
                expect_close(run_hopper(p, o, VectorBlock{p.x8.data(), DataType::UInt8, p.n, p.d}, "hopper"), ref,
                             fast, label + ", uint8, chunks of 2200");
            }
        }
    }
}

TEST_F(EStepCudaTest, HopperMemoryStaysSmallForLargeK) {
    // GPU memory is O(chunk·d + K·d): at K = 20000 (two passes) the partial sums are one K × (d+8)
    // slice per row split, not one per SM (that was 5.8 GB here); accurate mode: doubles, hi/lo.
    g_algo = EStepCudaAlgorithm::Hopper;
    Problem p = make_problem(500, 20000, 128, CovarianceType::Spherical, 970, false);
    const SufficientStats ref = reference(p);
    for (bool fast : {true, false}) {
        EStepCudaOptions o = opts(fast);
        o.devices = {0};
        o.chunk_rows = 4096;
        EStepCuda es(p.K, p.d, o);
        es.set_model(p.model, p.center.data());
        SufficientStats got(p.K, p.d, p.cov);
        es.accumulate(float_rows(p), got);
        expect_close(got, ref, fast, std::string(fast ? "fast" : "accurate") + " K=20000 two passes");
        const double mb = double(es.last_report()[0].device_bytes) / 1e6;
        printf("  %s, K=20000, d=128, chunks of 4096 rows: %.1f MB held on the GPU\n", fast ? "fast" : "accurate", mb);
        EXPECT_LT(mb, 200.0);
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
    // Removed or out-of-range options are refused before any work.
    for (int knob = 0; knob < 9; knob++) {
        EStepCudaOptions o;
        if (knob == 0) o.algorithm = EStepCudaAlgorithm(1); // Fused, removed
        if (knob == 1) o.hopper_exchange = 2;
        if (knob == 2) o.hopper_flush_tiles = 0;
        if (knob == 3) o.hopper_sub_tiles = 0;
        if (knob == 4) o.hopper_diag_wide = 3;
        if (knob == 5) o.hopper_diag_wide = -1;
        if (knob == 6) o.hopper_max_clusters = -1;
        if (knob == 7) o.hopper_sub_chunk_growth = -1;
        if (knob == 8) o.hopper_sub_chunk_growth = 5;
        EXPECT_THROW(EStepCuda(4, 8, o), std::invalid_argument) << "knob " << knob;
    }
    // An impossible allocation is an exception, not an abort.
    EStepCudaOptions huge;
    huge.chunk_rows = int64_t(1) << 40;
    EStepCuda big(4, 8, huge);
    EXPECT_THROW(big.set_model(p.model, p.center.data()), std::runtime_error);
}

// ---- Reproducible sums (issue 13): accumulate_reproducible gives the same bits for any
// number of workers (several on GPU 0 stand for several GPUs of one kind: each worker has its
// own stream, buffers and limbs, as on its own GPU), any chunk size, rows retained or
// streamed, and a call cut into pieces on block boundaries; and its sums are as accurate as
// accumulate()'s (the same derived bounds, expect_close).

/// The statistics of `pieces` calls (row ranges [cuts[i], cuts[i+1]), block-aligned) summed reproducibly.
SufficientStats run_reproducible(const Problem& p, const EStepCudaOptions& o, const VectorBlock& rows,
                                 const std::vector<int64_t>& cuts, bool retain, int64_t* refined = nullptr) {
    const ReproLayout layout{"", o.devices, o.chunk_rows, cuts, retain};
    return faiss_gmm::testing::run_reproducible(p.model, p.center.data(), p.x.data(), o, rows, layout, refined);
}

/// One model and mode: the reference layout (1 worker, default chunks, one call) against the
/// float64 reference, then every other layout against it bit for bit, the layouts' pieces and
/// chunks cut on the backend's block (EStep::reproducible_block_rows; hopper_block_rows > 0 sets
/// the Hopper kernels' one).
void check_reproducible(const Problem& p, bool fast, EStepCudaAlgorithm algo, const std::string& what,
                        bool expect_refined = false, int64_t hopper_block_rows = 0) {
    g_algo = algo;
    const VectorBlock rows = float_rows(p);
    EStepCudaOptions o = opts(fast);
    if (hopper_block_rows > 0) o.hopper_reproducible_block_rows = hopper_block_rows;
    const int64_t R = EStepCuda(p.K, p.d, o).reproducible_block_rows(p.cov), n = p.n;
    // Larger blocks where the Hopper kernels' partials are fp32: fp16 products, d ≤ 64 if diagonal.
    const bool float_partials = algo != EStepCudaAlgorithm::Blocked && p.d <= 128 && hopper_available() && fast &&
                                !(p.cov == CovarianceType::Diagonal && p.d > 64);
    EXPECT_EQ(R, float_partials ? o.hopper_reproducible_block_rows : kReproducibleBlockRows) << what;
    ASSERT_GT(n, 2 * R) << what << ": the layouts cut the rows on blocks of " << R;
    o.devices = {0};
    int64_t refined = 0;
    const SufficientStats base = run_reproducible(p, o, rows, {0, n}, false, &refined);
    EXPECT_EQ(refined > 0, expect_refined) << what << ": refined components " << refined;
    // accumulate()'s derived bound covers the reproducible sums too. They differ from its sums by
    // each block partial's cut to the limbs' grid: at most 2^-64·s per partial and value
    // (ReproducibleLimbs.h), s < 2B the grid's scale for the row bound B (1 for N_k, max|x_j| for
    // Σ r x, the squared-distance bound for the second moments; scale_exponent_for), so at most
    // nb·2^-63·B per value over nb ≤ n/4096 + 1 blocks. Against the measures of compare(): N_k's
    // norm is ≥ n/√K, so ≤ 2K·2^-63/4096 ≤ 2^-62 relative (K ≤ 4096 here); Σ r x's scale and the
    // second moments' norm grow as n times a typical row's size, so even with B 10^6 times that
    // size the cut is ≤ √(K·d)·10^6·2^-62/4096 < 1e-13 relative, 10^5 below the bounds' smallest
    // term, 2^-24 (fp32 accumulation): no term is added for the cut.
    expect_close(base, reference(p), fast, what + " reproducible");
    for (const ReproLayout& l : reproducible_layouts(R, n)) {
        expect_same_bits(faiss_gmm::testing::run_reproducible(p.model, p.center.data(), p.x.data(), o, rows, l),
                         base, what + ", " + l.name);
    }
}

TEST_F(EStepCudaTest, ReproducibleBitsBlocked) {
    // 3 whole blocks and a short one; spherical and diagonal, fp32 and TF32 products.
    const int64_t n = 3 * kReproducibleBlockRows + 1234;
    for (CovarianceType cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        Problem p = make_problem(n, 70, 40, cov, cov == CovarianceType::Spherical ? 901 : 902, false);
        check_reproducible(p, false, EStepCudaAlgorithm::Blocked, std::string("blocked accurate ") + to_string(cov));
        check_reproducible(p, true, EStepCudaAlgorithm::Blocked, std::string("blocked tf32 ") + to_string(cov));
    }
    // d > 32 lanes and a ragged last lane group.
    Problem p = make_problem(2 * kReproducibleBlockRows + 5, 9, 150, CovarianceType::Diagonal, 903, false);
    check_reproducible(p, false, EStepCudaAlgorithm::Blocked, "blocked accurate diagonal d=150");
}

TEST_F(EStepCudaTest, ReproducibleBitsBlockedRefined) {
    // A collapsed component (variance 1e-9 of the data's, on a row far from the center): Blocked
    // with exact log-densities and the narrow components' direct sums (issue 13 item 4).
    for (CovarianceType cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        Problem p = make_problem(2 * kReproducibleBlockRows + 777, 20, 24, cov, 904, false);
        for (int64_t j = 0; j < p.d; j++) p.model.means[j] = p.x[5 * p.d + j] - p.center[j];
        for (int64_t j = 0; j < (cov == CovarianceType::Diagonal ? p.d : 1); j++) p.model.variances[j] = 1e-8f;
        check_reproducible(p, false, EStepCudaAlgorithm::Auto, std::string("refined ") + to_string(cov), true,
                           kReproducibleBlockRows);
    }
}

TEST_F(EStepCudaTest, ReproducibleBitsHopper) {
    // One pass with clusters of 1 and 3 CTAs (fast and 2×fp16 accurate), and two passes (K > 1024,
    // fast; accurate: ReproducibleBitsHopperAccurateTwoPass); blocks of the default size, and of
    // kReproducibleBlockRows (the smallest: a block's Σ log2 Z slots fill the stride exactly). Rows:
    // 3 blocks and a short one of the mode's block (2×fp16: 4096 rows, heuristics.h).
    int seed = 910;
    for (int64_t K : {100, 300}) {
        Problem p = make_problem(3 * kHopperBlockRows + 1234, K, 96, CovarianceType::Spherical, seed++, false);
        check_reproducible(p, true, EStepCudaAlgorithm::Hopper, "hopper fp16 K=" + std::to_string(K));
        Problem q = make_problem(3 * kReproducibleBlockRows + 1234, K, 96, CovarianceType::Spherical, seed++, false);
        check_reproducible(q, false, EStepCudaAlgorithm::Hopper, "hopper 2xfp16 K=" + std::to_string(K));
        if (K == 300) {
            check_reproducible(q, true, EStepCudaAlgorithm::Hopper, "hopper fp16 K=300, 4096-row blocks", false,
                               kReproducibleBlockRows);
        }
    }
    {
        // Sub-chunks (whole waves of blocks, HopperLaunch.cuh) need more blocks than clusters: 33
        // blocks on clusters of 8 CTAs (K = 1024, 15 clusters on an H100). One worker in one
        // launch against 2 workers cut into sub-chunks of one wave (hopper_sub_tiles = 1).
        g_algo = EStepCudaAlgorithm::Hopper;
        const int64_t big = 33 * kHopperBlockRows - 100;
        Problem q = make_problem(big, 1024, 32, CovarianceType::Spherical, seed++, false);
        EStepCudaOptions o = opts(true);
        o.hopper_sub_tiles = 1;
        o.devices = {0, 0};
        for (bool fast : {true, false}) {
            EStepCudaOptions a = opts(fast), b = o;
            b.fast_math = fast;
            expect_same_bits(run_reproducible(q, b, float_rows(q), {0, big}, false),
                             run_reproducible(q, a, float_rows(q), {0, big}, false),
                             std::string(fast ? "hopper fp16" : "hopper 2xfp16") +
                                     " K=1024, 33 blocks: sub-chunks of one wave on 2 workers vs one launch");
        }
    }
    Problem p = make_problem(2 * kHopperBlockRows + 100, 1100, 64, CovarianceType::Spherical, seed++, false);
    check_reproducible(p, true, EStepCudaAlgorithm::Hopper, "hopper fp16 two passes K=1100");
}

TEST_F(EStepCudaTest, ReproducibleBitsHopperAccurateTwoPass) {
    // Accurate mode above K = 1024: lse_split_kernel writes each 64-row tile's Σ log2 Z to its
    // block's slot, the second pass each block's sums to its own slice (whole blocks per row split).
    Problem p = make_problem(2 * kReproducibleBlockRows + 100, 1100, 64, CovarianceType::Spherical, 920, false);
    check_reproducible(p, false, EStepCudaAlgorithm::Hopper, "hopper 2xfp16 two passes K=1100");
}

TEST_F(EStepCudaTest, ReproducibleBitsHopperDiagonal) {
    // Diagonal models on Hopper write the [Σ r x | Σ r x² | N_k] layout per block: the spherical
    // kernels at 2d ≤ 128 (fast and accurate) and the wide kernel (d > 64, fast, 64-row tiles).
    // Rows: 3 blocks and a short one of the kernel's block (fp32 partials at d = 48, fp16: the
    // larger blocks; heuristics.h).
    const int64_t n = 3 * kReproducibleBlockRows + 1234;
    Problem f = make_problem(3 * kHopperBlockRows + 1234, 100, 48, CovarianceType::Diagonal, 932, false);
    check_reproducible(f, true, EStepCudaAlgorithm::Hopper, "hopper diagonal fp16 d=48");
    Problem p = make_problem(n, 100, 48, CovarianceType::Diagonal, 930, false);
    check_reproducible(p, false, EStepCudaAlgorithm::Hopper, "hopper diagonal 2xfp16 d=48");
    Problem w = make_problem(n, 100, 128, CovarianceType::Diagonal, 931, false);
    check_reproducible(w, true, EStepCudaAlgorithm::Hopper, "hopper diagonal wide fp16 d=128");
    // Accurate, d > 64 (Sm90DiagSplitKernels.cuh): 32-row tiles, whole blocks per row split, Σ log2 Z
    // per 64-row tile from the merge kernel; fast above K = 1024: the same passes with one fp16 plane.
    check_reproducible(w, false, EStepCudaAlgorithm::Hopper, "hopper diagonal 2xfp16 d=128 (32-row two passes)");
    Problem w2 = make_problem(n, 1100, 100, CovarianceType::Diagonal, 933, false);
    check_reproducible(w2, true, EStepCudaAlgorithm::Hopper, "hopper diagonal fp16 d=100 K=1100 (one-plane two passes)");
}

TEST_F(EStepCudaTest, ReproducibleBlocksFollowTheExpectedRows) {
    // hopper_reproducible_block_rows = 0 (the default): the fp32-partial Hopper kernels sum 4 × 4096
    // rows per block from 8M expected rows on (heuristics.h), everything else 4096; set_model()
    // must follow expect_rows(), whose blocks it sets up.
    if (!hopper_available()) GTEST_SKIP() << "needs the Hopper kernels (sm_90a)";
    Problem p = make_problem(3 * kReproducibleBlockRows + 10, 64, 32, CovarianceType::Spherical, 970, false);
    for (bool fast : {true, false}) {
        g_algo = EStepCudaAlgorithm::Auto;
        EStepCudaOptions o = opts(fast);
        o.hopper_reproducible_block_rows = 0; // auto
        EStepCuda es(p.K, p.d, o);
        EXPECT_EQ(es.reproducible_block_rows(p.cov), kReproducibleBlockRows); // nothing expected yet
        es.expect_rows(int64_t(10) << 20);
        EXPECT_EQ(es.reproducible_block_rows(p.cov), fast ? 4 * kReproducibleBlockRows : kReproducibleBlockRows);
        EXPECT_EQ(es.reproducible_block_rows(CovarianceType::Diagonal), fast ? 4 * kReproducibleBlockRows
                                                                             : kReproducibleBlockRows); // d = 32
        StatsAccumulator acc(p.K, p.d, p.cov);
        faiss_gmm::testing::set_row_bounds_of(p.x.data(), p.n, p.center.data(), p.model, acc);
        EXPECT_THROW(es.accumulate_reproducible(float_rows(p), acc), std::logic_error) << "no set_model() after it";
        es.set_model(p.model, p.center.data());
        es.accumulate_reproducible(float_rows(p), acc); // one block of 16384 rows holds all 12298
        SufficientStats got;
        acc.result(got);
        expect_close(got, reference(p), fast, std::string("expected 10M rows, ") + (fast ? "fast" : "accurate"));
        es.expect_rows(int64_t(1) << 20);
        EXPECT_EQ(es.reproducible_block_rows(p.cov), kReproducibleBlockRows);
    }
}

TEST_F(EStepCudaTest, SanitizerReproducible) {
    // The reproducible path's kernels under compute-sanitizer (memcheck, racecheck): one block and
    // a short one, 2 workers, chunks of one block, on every algorithm: Blocked (spherical,
    // diagonal, refined), Hopper fast (clusters of 2; two passes) and accurate (clusters of 2; two
    // passes), the Hopper kernels with blocks of 2 × 4096 rows (slots past one 4096-row block's).
    constexpr int64_t kHopperRows = 2 * kReproducibleBlockRows;
    struct Case {
        CovarianceType cov;
        int64_t K;
        bool fast;
        EStepCudaAlgorithm algo;
        bool narrow;
    };
    const Case cases[] = {
            {CovarianceType::Spherical, 130, false, EStepCudaAlgorithm::Blocked, false},
            {CovarianceType::Diagonal, 130, true, EStepCudaAlgorithm::Blocked, false},
            {CovarianceType::Spherical, 30, false, EStepCudaAlgorithm::Auto, true},
            {CovarianceType::Spherical, 130, true, EStepCudaAlgorithm::Hopper, false},
            {CovarianceType::Spherical, 130, false, EStepCudaAlgorithm::Hopper, false},
            {CovarianceType::Spherical, 1100, true, EStepCudaAlgorithm::Hopper, false},
            {CovarianceType::Spherical, 1100, false, EStepCudaAlgorithm::Hopper, false},
    };
    int seed = 950;
    for (const Case& c : cases) {
        g_algo = c.algo;
        const int64_t R = c.algo == EStepCudaAlgorithm::Hopper ? kHopperRows : kReproducibleBlockRows;
        Problem p = make_problem(R + 300, c.K, 40, c.cov, seed++, false);
        if (c.narrow) {
            for (int64_t j = 0; j < p.d; j++) p.model.means[j] = p.x[3 * p.d + j] - p.center[j];
            p.model.variances[0] = 1e-8f;
        }
        EStepCudaOptions o = opts(c.fast);
        o.devices = {0, 0};
        o.chunk_rows = kReproducibleBlockRows; // (rounded up to one block)
        o.hopper_reproducible_block_rows = kHopperRows;
        const int64_t n = p.n;
        const SufficientStats got = run_reproducible(p, o, float_rows(p), {0, n}, false);
        expect_close(got, reference(p), c.fast, "sanitizer reproducible K=" + std::to_string(c.K));
    }
    // Accurate diagonal, d > 64 (Sm90DiagSplitKernels.cuh).
    g_algo = EStepCudaAlgorithm::Hopper;
    Problem p = make_problem(kHopperRows + 300, 130, 100, CovarianceType::Diagonal, seed++, false);
    const int64_t n = p.n;
    EStepCudaOptions o = opts(false);
    o.devices = {0, 0};
    o.chunk_rows = kReproducibleBlockRows;
    o.hopper_reproducible_block_rows = kHopperRows;
    expect_close(run_reproducible(p, o, float_rows(p), {0, n}, false), reference(p), false,
                 "sanitizer reproducible accurate diagonal d=100");
}

TEST_F(EStepCudaTest, ReproducibleRowBoundsThatDoNotHoldAreAnError) {
    // The device's integers have headroom for block partials below 2^22 of their grid's scale
    // (gpu/detail/ReproducibleLimbs.h): row bounds far below the rows' values (scale 2^-29, where
    // a block's Σ r x is about 2^29 times the data's size) end the call with an error naming
    // them, instead of limbs that wrapped. Blocked and Hopper (fast, accurate).
    Problem p = make_problem(kReproducibleBlockRows + 300, 130, 40, CovarianceType::Spherical, 960, false);
    for (EStepCudaAlgorithm algo : {EStepCudaAlgorithm::Blocked, EStepCudaAlgorithm::Hopper}) {
        for (bool fast : {true, false}) {
            g_algo = algo;
            EStepCudaOptions o = opts(fast);
            o.devices = {0};
            EStepCuda es(p.K, p.d, o);
            es.set_model(p.model, p.center.data());
            StatsAccumulator acc(p.K, p.d, p.cov);
            acc.set_row_bounds(1e-9, 1e-9);
            const std::string label = std::string(algo == EStepCudaAlgorithm::Hopper ? "hopper" : "blocked") +
                                      (fast ? " fast" : " accurate");
            try {
                es.accumulate_reproducible(float_rows(p), acc);
                ADD_FAILURE() << label << ": no error";
            } catch (const std::runtime_error& e) {
                EXPECT_NE(std::string(e.what()).find("row bounds"), std::string::npos) << label << ": " << e.what();
            }
            // The same object with bounds that hold: a normal call.
            StatsAccumulator good(p.K, p.d, p.cov);
            faiss_gmm::testing::set_row_bounds_of(p.x.data(), p.n, p.center.data(), p.model, good);
            es.accumulate_reproducible(float_rows(p), good);
            SufficientStats got;
            good.result(got);
            expect_close(got, reference(p), fast, "after the error: " + label);
        }
    }
}

TEST_F(EStepCudaTest, ZZSummary) {
    printf("max relative error over all cases (largest error/bound): accurate %.3e (%.3f), fast tf32 %.3e (%.3f), "
           "hopper fp16 %.3e (%.3f), hopper accurate 2xfp16 %.3e (%.3f)\n",
           g_max_err[0], g_max_ratio[0], g_max_err[1], g_max_ratio[1], g_max_err[2], g_max_ratio[2], g_max_err[3],
           g_max_ratio[3]);
}
