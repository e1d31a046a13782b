// The CUDA E-step for full covariances (issue 17, gpu/detail/FullEStep.h) against the float64
// reference (reference_estep): every statistic within the error bound of the GPU's arithmetic
// (full_stats_bound below), fresh random inputs of ragged shapes (N, K, d = 1 … 128), both
// precision modes, float32 and uint8 rows, several chunks, several workers, rows retained on the
// GPU, a near-singular covariance, NaN-poisoned scratch buffers, the errors, and reproducible sums
// (the same bits for any workers, chunks and pieces). The relative
// errors are printed beside the issue's budgets (accurate 1e-4, fast 5e-3). Every test skips when
// no GPU is visible.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"
#include "faiss_gmm/VectorSource.h"
#include "gpu/EStepCuda.h"
#include "gpu/detail/FullEStep.h"
#include "gpu/detail/HopperEStep.h" // hopper_supported
#include "tests/gpu/reproducible_bits.h"
#include "tests/relative_error.h"
#include "tests/test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::gpu::EStepCuda;
using faiss_gmm::gpu::EStepCudaOptions;
using faiss_gmm::testing::clustered_data;
using faiss_gmm::testing::expect_same_bits;
using faiss_gmm::testing::ReproLayout;
using faiss_gmm::testing::reproducible_layouts;
using faiss_gmm::testing::run_reproducible;
using faiss_gmm::testing::set_row_bounds_of;
using faiss_gmm::testing::random_model;
using faiss_gmm::testing::random_spd;
using faiss_gmm::testing::relative_l2_error;

namespace {

constexpr double kU = 5.9604644775390625e-08; // float32 unit roundoff 2^-24
constexpr double kLn2 = 0.69314718055994530942;

double gamma(double n, double u = kU) { return n * u / (1 - n * u); }

bool have_gpu() { return gpu::cuda_device_count() > 0; }
/// The fused path can run the wgmma kernel (FullHopperKernel.cuh) here (full_sm90_kernel).
bool hopper_gpu() {
    static const bool hopper = have_gpu() && gpu::detail::hopper_supported(0); // (a probe kernel: once)
    return hopper;
}

/// Rows of a block: FullEStep::set_model takes block_bytes / (4·K·d) (blocked) or block_bytes /
/// (4·K rounded up to 4) (fused) rows, at least 32; the bound uses this upper limit for the float
/// sums over a block.
int64_t max_block_rows(const EStepCudaOptions& o, int64_t n, int64_t K) {
    return std::min<int64_t>(n, std::max<int64_t>(32, o.block_bytes / (4 * K)));
}

/// How the log-densities were computed (EStepCudaOptions::algorithm: Blocked, else fused).
enum class Path { BlockedFp32, BlockedTf32, FusedFp16, FusedSplit };
Path path_of(const EStepCudaOptions& o) {
    const bool blocked = o.algorithm == gpu::EStepCudaAlgorithm::Blocked;
    return blocked ? (o.fast_math ? Path::BlockedTf32 : Path::BlockedFp32)
                   : (o.fast_math ? Path::FusedFp16 : Path::FusedSplit);
}

/// Bounds of |GPU − exact| for every statistic, from the GPU's arithmetic (FullKernels.cuh),
/// per (row n, component k), x' = x − c (rounded once in float: u), U = U_k, m = μ_kᵀU rounded (u):
///  * projections p_j = Σ_i x'_i U_ij, |Δp_j| <= e_p·a_j + abs_j, a_j = Σ_i |x'_i||U_ij|, plus the
///    rounding of x' (u·a_j). Tensor-core sums are allowed 2u per addition (truncating accumulators):
///    blocked fp32: e_p = γ_d; blocked TF32 and fused fp16: operands rounded by 2^-11 each,
///    e_p = (1 + 2^-11)² (1 + γ_d(2u)) − 1; fused split (hi + lo halves, three products): each operand
///    within 2^-22 of its value after the split, lo·lo dropped (2^-22): e_p = 3·2^-22 + γ_{3d}(2u).
///    Fused operands are scaled by powers of two putting their largest entry near 2^14 (row by row,
///    component by component), so fp16's underflow costs at most 2^-25 scaled = 2^-37 of that
///    largest entry per operand: abs_j = 2^-36 (max|U_k|·Σ_i|x'_i| + max|x'|·Σ_i|U_ij|);
///  * y_j = p_j − m_j in float: δy_j = (1 + u)(|Δp_j| + u|m_j|) + u|y_j|;
///  * q = Σ y² in float (any order): |Δq| <= γ_d Σ ŷ² + Σ (2|y_j| δy_j + δy_j²), Σ ŷ² <= q + that sum;
///  * log2 p = fma(−½log2 e, q̂, c₂) with c₂ and ½log2 e rounded: |Δ ln p| <= ½(1 + 3u)(|Δq| + u q)
///    + 2u(|c| + |ln p|) =: E_nk (nats);
///  * the responsibility kernel (float, BlockedKernels.cuh): ln p(x) is off by L_n = log Σ_k r_nk
///    e^{E_nk} from the log-densities, plus its own rounding: lz₂ = m + log2f(s) with s a K-term float
///    sum (γ_K), log2f and the addition (2u|lz₂| in log2 units); r̂_k = exp2f(fl(S_k − lz₂)): the
///    subtraction (u|S_k − lz₂|) and exp2f (2 ulp: 4u); so |Δr| <= r·expm1(E_nk + L_n + ln2·(2u|lz₂|
///    + u|S_k − lz₂|) + γ_K + 6u) + 2^-149 (exp2f's underflow);
///  * N_k, Σ r x: a GEMM over a block of B rows, double sums over blocks (1e-15 spare); accurate
///    modes fp32 (γ_B): |ΔN_k| <= Σ_n (Δr + γ_B r), |ΔΣ r x| <= Σ_n (Δr + (γ_B + 2u) r)|x'|; fast
///    modes TF32 (cuBLAS's operand conversion taken as at most 2^-10, truncation, per operand;
///    tensor-core sums 2u per addition): e_N = (1 + 2^-10)(1 + γ_B(2u)) − 1 for N_k (the ones are
///    exact), e_X = (1 + 2^-10)²(1 + γ_B(2u)) − 1 + 2u for Σ r x;
///  * S_ab = Σ r (x'_a − μ_a)(x'_b − μ_b): z = fl(√r·fl(x' − μ)) (√r correctly rounded: 4u per z,
///    8u per product), tensor-core products over the block (2u per addition) with TF32 operands
///    (rounded to nearest, 2^-11): fast modes z_a·z_b within (1 + 2^-11)² − 1, B additions; accurate
///    modes z = hi + lo within 2^-22, hi·hi + hi·lo + lo·hi, lo·lo dropped: (1 + 2^-22)² − 1 + 2^-22,
///    3B additions; double sums: Σ_n (Δr + e_S r)|x'_a − μ_a||x'_b − μ_b|, e_S = (1 + 8u)(1 + e_z)
///    (1 + γ(2u)) − 1; pairs with r < 1e-6 enter through |x' − μ|∞² on every entry of their component
///    (cheaper, still a bound);
///  * loglik: Σ_n (L_n + ln2·2u|lz₂| + γ_K + 2u|ln p(x)|).
/// Second-order terms are covered by the spare factors (1 + 3u, 2u on constants).
struct FullBound {
    SufficientStats tol;
    double worst_rel_r = 0; // the largest relative bound of a responsibility > 1e-3 (how tight)
};

FullBound full_stats_bound(const GmmModel& m, const float* center, int64_t n, const std::vector<float>& x, Path path,
                           int64_t block_rows) {
    const int64_t K = m.K, d = m.d, nsq = SufficientStats::nsq_of(CovarianceType::Full, d);
    FullBound fb;
    fb.tol.reset(K, d, CovarianceType::Full);
    const std::vector<double> c = m.log_constants();
    const double h = std::ldexp(1.0, -11);
    const double ep = path == Path::BlockedFp32  ? gamma(double(d))
                      : path == Path::FusedSplit ? 3 * std::ldexp(1.0, -22) + gamma(double(3 * d), 2 * kU)
                                                 : (1 + h) * (1 + h) * (1 + gamma(double(d), 2 * kU)) - 1;
    const bool fused = path == Path::FusedFp16 || path == Path::FusedSplit;
    std::vector<double> umax(K, 0.0);
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < d * d; i++) umax[k] = std::max(umax[k], std::fabs(double(m.precision_cholesky(k)[i])));
    const double gb = gamma(double(block_rows)), gk = gamma(double(K));
    const bool fast = path == Path::BlockedTf32 || path == Path::FusedFp16;
    const double ez = fast ? (1 + h) * (1 + h) - 1 : std::pow(1 + std::ldexp(1.0, -22), 2) - 1 + std::ldexp(1.0, -22);
    const double es = (1 + 8 * kU) * (1 + ez) * (1 + gamma(double((fast ? 1 : 3) * block_rows), 2 * kU)) - 1;
    const double t10 = std::ldexp(1.0, -10), gb2 = gamma(double(block_rows), 2 * kU);
    const double en = fast ? (1 + t10) * (1 + gb2) - 1 : gb;
    const double ex = fast ? (1 + t10) * (1 + t10) * (1 + gb2) - 1 + 2 * kU : gb + 2 * kU;
    std::vector<double> xp(d), logp(K), err(K), slack(K, 0.0), diff(d);
    std::vector<double> mproj(size_t(K * d));
    for (int64_t k = 0; k < K; k++) {
        const float* U = m.precision_cholesky(k);
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t i = 0; i <= j; i++) s += double(m.means[k * d + i]) * U[i * d + j];
            mproj[size_t(k * d + j)] = s;
        }
    }
    for (int64_t r = 0; r < n; r++) {
        double xsum = 0, xmax = 0;
        for (int64_t j = 0; j < d; j++) {
            xp[j] = double(x[r * d + j]) - (center ? double(center[j]) : 0.0);
            xsum += std::fabs(xp[j]);
            xmax = std::max(xmax, std::fabs(xp[j]));
        }
        double mx = -INFINITY;
        for (int64_t k = 0; k < K; k++) {
            const float* U = m.precision_cholesky(k);
            double q = 0, cross = 0;
            for (int64_t j = 0; j < d; j++) {
                double p = 0, a = 0, usum = 0;
                for (int64_t i = 0; i <= j; i++) {
                    p += xp[i] * U[i * d + j];
                    a += std::fabs(xp[i] * U[i * d + j]);
                    usum += std::fabs(double(U[i * d + j]));
                }
                const double y = p - mproj[size_t(k * d + j)];
                const double dp = (ep + kU) * a + (fused ? std::ldexp(umax[k] * xsum + xmax * usum, -36) : 0.0);
                const double dy = (1 + kU) * (dp + kU * std::fabs(mproj[size_t(k * d + j)])) + kU * std::fabs(y);
                q += y * y;
                cross += 2 * std::fabs(y) * dy + dy * dy;
            }
            const double dq = gamma(double(d)) * (q + cross) + cross;
            logp[k] = c[k] - 0.5 * q; // = m.log_joint(x', k) up to double rounding
            err[k] = 0.5 * (1 + 3 * kU) * (dq + kU * q) + 2 * kU * (std::fabs(c[k]) + std::fabs(logp[k]));
            mx = std::max(mx, logp[k]);
        }
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += std::exp(logp[k] - mx);
        const double lse = mx + std::log(s);
        double lsum = 0;
        for (int64_t k = 0; k < K; k++) lsum += std::exp(logp[k] - lse + err[k]);
        const double L = std::log(std::max(lsum, 1.0));
        const double lz2 = lse / kLn2;
        fb.tol.loglik += L + kLn2 * 2 * kU * std::fabs(lz2) + gk + 2 * kU * std::fabs(lse);
        for (int64_t k = 0; k < K; k++) {
            const double rk = std::exp(logp[k] - lse);
            const double t = err[k] + L + kLn2 * (2 * kU * std::fabs(lz2) + kU * std::fabs(logp[k] / kLn2 - lz2)) +
                             gk + 6 * kU;
            const double rel = std::expm1(t);
            // r·expm1(t) <= exp(log r + t) keeps a vanishing r with a large t finite; a
            // responsibility is at most 1 (+ its rounding), whatever t says.
            const double dr = std::min(t < 30 ? rk * rel : std::exp(logp[k] - lse + t), 1 + 1e-6) +
                              std::ldexp(1.0, -149);
            if (rk > 1e-3) fb.worst_rel_r = std::max(fb.worst_rel_r, rel);
            fb.tol.nk[k] += dr + en * rk;
            const double cx = dr + ex * rk, cs = dr + es * rk;
            double dmax = 0;
            for (int64_t j = 0; j < d; j++) {
                fb.tol.sum_x[k * d + j] += cx * std::fabs(xp[j]);
                diff[j] = std::fabs(xp[j] - double(m.means[k * d + j]));
                dmax = std::max(dmax, diff[j]);
            }
            if (rk < 1e-6) {
                slack[k] += cs * dmax * dmax;
                continue;
            }
            double* sq = fb.tol.sum_sq.data() + k * nsq;
            for (int64_t a = 0; a < d; a++)
                for (int64_t b = a; b < d; b++) sq[SufficientStats::sq_index(a, b, d)] += cs * diff[a] * diff[b];
        }
    }
    // the pairs with r < 1e-6, on every entry of their component
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < nsq; i++) fb.tol.sum_sq[k * nsq + i] += slack[k];
    return fb;
}

struct Case {
    int64_t n, K, d;
    double cond;  // of each covariance
    float sigma;  // spread of the rows about their cluster centers (overlap → soft responsibilities)
    bool uint8_rows = false;
};

struct Problem {
    std::vector<float> x;      // n × d (the uint8 values as floats for uint8 cases)
    std::vector<uint8_t> x8;
    std::vector<float> center; // d
    GmmModel model;            // centered frame
};

Problem make_problem(const Case& c, uint64_t seed) {
    Problem p;
    std::vector<float> centers;
    p.x = clustered_data(c.n, c.d, c.K, c.sigma, seed, &centers);
    std::mt19937_64 rng{seed + 7};
    if (c.uint8_rows) {
        // rows of a byte data set: the clustered rows scaled and shifted into [0, 255], rounded
        for (auto& v : p.x) v = std::min(255.f, std::max(0.f, std::round(128.f + 12.f * v)));
        for (auto& v : centers) v = 128.f + 12.f * v;
        p.x8.assign(p.x.begin(), p.x.end());
    }
    p.center.assign(c.d, 0.f);
    for (int64_t i = 0; i < c.n; i++)
        for (int64_t j = 0; j < c.d; j++) p.center[j] += p.x[i * c.d + j] / float(c.n);
    for (int64_t k = 0; k < c.K; k++)
        for (int64_t j = 0; j < c.d; j++) centers[k * c.d + j] -= p.center[j];
    const double scale = c.uint8_rows ? 144.0 : 1.0; // the byte rows are the float ones × 12
    p.model = random_model(c.K, c.d, CovarianceType::Full, float(scale), seed + 1, &centers);
    for (int64_t k = 0; k < c.K; k++) {
        p.model.set_covariance(k, random_spd(c.d, scale * c.sigma * c.sigma * 1.5, c.cond, rng).data());
    }
    return p;
}

VectorBlock rows_of(const Problem& p, const Case& c) {
    return c.uint8_rows ? VectorBlock{p.x8.data(), DataType::UInt8, c.n, c.d}
                        : VectorBlock{p.x.data(), DataType::Float32, c.n, c.d};
}

/// Absolute errors a reproducible call adds to each N_k, Σ r x and second moment: every partial
/// (a group) is truncated toward zero to a multiple of 2^-64 of its grid's scale (the device
/// format, gpu/detail/LimbFormat.h).
struct Truncation {
    double nk = 0, x = 0, sq = 0;
};

/// Checks every statistic of `got` against the reference within the bound (fp32 sums over at
/// most block_rows rows, plus `trunc`); returns the largest relative error over the statistics
/// (the issue's measure).
double compare(const Case& c, const Problem& p, const EStepCudaOptions& o, const SufficientStats& got,
               int64_t block_rows, const Truncation& trunc, const std::string& label) {
    SufficientStats ref(c.K, c.d, CovarianceType::Full);
    reference_estep(p.model, p.center.data(), c.n, p.x.data(), ref);
    FullBound fb = full_stats_bound(p.model, p.center.data(), c.n, p.x, path_of(o), block_rows);
    for (auto& t : fb.tol.nk) t += trunc.nk;
    for (auto& t : fb.tol.sum_x) t += trunc.x;
    for (auto& t : fb.tol.sum_sq) t += trunc.sq;
    // (1e-15 of each value on top: the double sums over blocks, chunks, workers and atomics)
    EXPECT_EQ(got.n, ref.n) << label;
    EXPECT_NEAR(got.loglik, ref.loglik, fb.tol.loglik * (1 + 1e-9) + 1e-15 * std::fabs(ref.loglik)) << label;
    int bad = 0; // the first few failures are enough to read
    auto near = [&](const std::vector<double>& g, const std::vector<double>& r, const std::vector<double>& t,
                    const char* what) {
        for (size_t i = 0; i < r.size(); i++) {
            const double tol = t[i] * (1 + 1e-9) + 1e-15 * std::fabs(r[i]);
            if (!(std::fabs(g[i] - r[i]) <= tol) && bad++ < 8) {
                ADD_FAILURE() << label << " " << what << "[" << i << "]: got " << g[i] << ", ref " << r[i]
                              << ", bound " << tol;
            }
        }
    };
    near(got.nk, ref.nk, fb.tol.nk, "nk");
    near(got.sum_x, ref.sum_x, fb.tol.sum_x, "sum_x");
    near(got.sum_sq, ref.sum_sq, fb.tol.sum_sq, "sum_sq");
    const double e_ll = std::fabs(got.loglik - ref.loglik) / std::max(1e-300, std::fabs(ref.loglik));
    const double e_nk = relative_l2_error(got.nk, ref.nk), e_x = relative_l2_error(got.sum_x, ref.sum_x);
    const double e_sq = relative_l2_error(got.sum_sq, ref.sum_sq);
    const double worst = std::max({e_ll, e_nk, e_x, e_sq});
    std::printf("  %-50s rel. error: loglik %.1e nk %.1e sum_x %.1e sum_sq %.1e (budget %.0e); r bound %.1e\n",
                label.c_str(), e_ll, e_nk, e_x, e_sq, o.fast_math ? 5e-3 : 1e-4, fb.worst_rel_r);
    return worst;
}

/// Runs the GPU E-step (accumulate) on the problem and compares it with the reference.
double check(const Case& c, const Problem& p, const EStepCudaOptions& o, const std::string& label,
             bool retain = false) {
    EStepCuda es(c.K, c.d, o);
    es.set_model(p.model, p.center.data());
    const VectorBlock rows = rows_of(p, c);
    if (retain) es.retain_rows(rows);
    SufficientStats got(c.K, c.d, CovarianceType::Full);
    es.accumulate(rows, got);
    const char* algorithm = o.algorithm == gpu::EStepCudaAlgorithm::Blocked ? "full-blocked"
                            : hopper_gpu() && o.full_sm90_kernel           ? "full-fused-sm90"
                                                                           : "full-fused";
    for (const auto& r : es.last_report()) EXPECT_STREQ(r.algorithm, r.rows ? algorithm : "") << label;
    return compare(c, p, o, got, max_block_rows(o, c.n, c.K), Truncation(), label);
}

const char* path_name(Path p) {
    return p == Path::BlockedFp32 ? "blocked fp32" : p == Path::BlockedTf32 ? "blocked tf32"
                                   : p == Path::FusedFp16   ? "fused fp16"
                                                            : "fused split";
}

/// The path and, on Hopper, which fused kernel: "fused fp16 (sm80 kernel)", "fused split (groups 0)".
std::string variant_name(const EStepCudaOptions& o) {
    std::string v = path_name(path_of(o));
    if (o.algorithm == gpu::EStepCudaAlgorithm::Blocked || !hopper_gpu()) return v;
    if (!o.full_sm90_kernel) return v + " (sm80 kernel)";
    return v + " (wgmma kernel, groups " + std::to_string(o.hopper_full_group) + ")";
}

std::string name_of(const Case& c, const EStepCudaOptions& o) {
    char b[160];
    std::snprintf(b, sizeof(b), "n=%lld K=%lld d=%lld cond=%g%s %s", (long long)c.n, (long long)c.K, (long long)c.d,
                  c.cond, c.uint8_rows ? " uint8" : "", variant_name(o).c_str());
    return b;
}

/// The four ways (fused or blocked log-densities, fast or accurate), scratch buffers NaN-poisoned;
/// on Hopper then also the fused path's wgmma kernel, accurate and fast (six ways; the first four
/// keep their places, which some tests pick by index).
std::vector<EStepCudaOptions> all_paths() {
    std::vector<EStepCudaOptions> v;
    for (bool blocked : {false, true}) {
        for (bool fast : {false, true}) {
            EStepCudaOptions o;
            o.devices = {0};
            o.fast_math = fast;
            o.algorithm = blocked ? gpu::EStepCudaAlgorithm::Blocked : gpu::EStepCudaAlgorithm::Auto;
            o.poison_buffers = true; // scratch reads of unwritten data show as NaN
            o.full_sm90_kernel = false; // (the Hopper default: the wgmma paths follow)
            v.push_back(o);
        }
    }
    if (hopper_gpu()) {
        for (int i : {0, 1}) { // fused accurate, fused fast
            EStepCudaOptions o = v[size_t(i)];
            o.full_sm90_kernel = true;
            v.push_back(o);
        }
    }
    return v;
}

// ---- Reproducible sums (issue 13): accumulate_reproducible sums each group of G blocks
// (FullEStep.h) on its own into integer limbs: the same bits for 1, 2 and 3 workers, any chunk
// size, rows retained or streamed, and calls cut into pieces on group boundaries; and within the
// bound of accumulate()'s arithmetic with fp32 sums over a group, plus the limbs' truncation.

/// block_bytes that make FullEStep's reproducible group `blocks` blocks for K components (its S
/// buffer of G × K log-densities, K rounded up to 4, holds exactly that many blocks).
int64_t block_bytes_for_group(int64_t K, int64_t blocks) {
    return (K + 3) / 4 * 4 * 4 * blocks * kReproducibleBlockRows;
}

/// One case and path: one worker, default chunks, one call against the float64 reference; every
/// other layout (tests/gpu/reproducible_bits.h) against it bit for bit.
void check_reproducible(const Case& c, const Problem& p, EStepCudaOptions o, int64_t group_blocks,
                        const std::string& what) {
    o.block_bytes = block_bytes_for_group(c.K, group_blocks);
    const int64_t G = group_blocks * kReproducibleBlockRows;
    ASSERT_EQ(gpu::detail::full_reproducible_group_rows(c.K, o.block_bytes), G) << what;
    const VectorBlock rows = rows_of(p, c);
    const SufficientStats base =
            run_reproducible(p.model, p.center.data(), p.x.data(), o, rows, {"1 worker", {0}, 0, {0, c.n}, false});
    // The bound of the group's sums: fp32 over at most G rows; one row more covers the double
    // sum of a group's moment segments (at most 2·SMs of them: γ(2^-53) < 2^-40 of Σ|partials|,
    // against γ_G's 2^-24 per row). The limbs: one truncation per group below 2^-64 of the scale.
    StatsAccumulator grids(c.K, c.d, CovarianceType::Full);
    set_row_bounds_of(p.x.data(), c.n, p.center.data(), p.model, grids);
    const double groups = double((c.n + G - 1) / G);
    Truncation t;
    t.nk = groups * std::ldexp(1.0, -64);
    t.x = groups * std::ldexp(1.0, grids.x_exponent() - 64);
    t.sq = groups * std::ldexp(1.0, grids.sq_exponent() - 64);
    compare(c, p, o, base, std::min(c.n, G) + 1, t, what + " reproducible");
    for (const ReproLayout& l : reproducible_layouts(G, c.n)) {
        expect_same_bits(run_reproducible(p.model, p.center.data(), p.x.data(), o, rows, l), base,
                         what + ", " + l.name);
    }
}

} // namespace

TEST(EStepCudaFull, ReproducibleBits) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
    // Groups of 2 blocks: 3 whole groups and a short one, all four paths; K = 20 cuts the moment
    // kernel into segments (K < 2·SMs), uint8 rows on one path.
    Case c{3 * 2 * kReproducibleBlockRows + 1234, 20, 24, 10, 2.f};
    const Problem p = make_problem(c, 9600);
    for (const auto& o : all_paths()) check_reproducible(c, p, o, 2, name_of(c, o));
    Case c8 = c;
    c8.uint8_rows = true;
    const Problem p8 = make_problem(c8, 9601);
    check_reproducible(c8, p8, all_paths()[1], 2, name_of(c8, all_paths()[1]));
    // d = 128 (the widest fused tile), groups of one block; K = 300: one moment segment per component.
    const Case w{2 * kReproducibleBlockRows + 77, 6, 128, 4, 1.f};
    const Problem pw = make_problem(w, 9602);
    for (int i : {0, 1}) check_reproducible(w, pw, all_paths()[i], 1, name_of(w, all_paths()[i]));
    const Case k{2 * kReproducibleBlockRows + 500, 300, 16, 4, 2.f};
    const Problem pk = make_problem(k, 9603);
    check_reproducible(k, pk, all_paths()[1], 1, name_of(k, all_paths()[1]));
}

TEST(EStepCudaFull, SanitizerReproducibleFull) {
    // The reproducible path's kernels under compute-sanitizer (memcheck, racecheck): a group of 2
    // blocks and a short one, 2 workers, chunks of one group, 3 pieces, fused and blocked.
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
    const Case c{2 * kReproducibleBlockRows + 300, 7, 20, 4, 2.f};
    const Problem p = make_problem(c, 9700);
    const VectorBlock rows = rows_of(p, c);
    const int64_t G = 2 * kReproducibleBlockRows;
    for (int i : {0, 3}) {
        EStepCudaOptions o = all_paths()[i];
        o.block_bytes = block_bytes_for_group(c.K, 2);
        const std::string what = std::string("sanitizer reproducible ") + variant_name(o);
        const SufficientStats one =
                run_reproducible(p.model, p.center.data(), p.x.data(), o, rows, {"1", {0}, 0, {0, c.n}, false});
        const SufficientStats cut = run_reproducible(p.model, p.center.data(), p.x.data(), o, rows,
                                                     {"3 pieces, 2 workers", {0, 0}, G, {0, G, c.n}, false});
        expect_same_bits(cut, one, what);
    }
}

TEST(EStepCudaFull, RaggedShapesWithinTheBound) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
    // d = 1, d not a multiple of 4, K = 1, N below a block and not a multiple of the tiles, d = 128;
    // σ near the clusters' spacing in small d makes responsibilities soft.
    const Case cases[] = {{1, 1, 1, 1, 1.f},      {7, 3, 5, 4, 2.f},     {513, 40, 13, 4, 2.f},
                          {1000, 20, 64, 1e3, 1.f}, {700, 8, 128, 4, 1.f}, {300, 130, 33, 4, 3.f},
                          {2049, 5, 2, 4, 3.f}};
    uint64_t seed = 9100;
    for (const Case& c : cases) {
        const Problem p = make_problem(c, seed++);
        for (const auto& o : all_paths()) check(c, p, o, name_of(c, o));
    }
}

TEST(EStepCudaFull, HopperColumnGroupsWithinTheBound) {
    // The wgmma kernel's ways of grouping the triangular product's columns (FullSm90Layout.h: one
    // product per k-step, groups of 32 or 64, the whole row) for every padded width DP = 32 … 128
    // (d = 20, 64, 70, 128; d = 70 pads to 96: groups of 64 end with one of 32), fast and accurate.
    if (!hopper_gpu()) GTEST_SKIP() << "no Hopper GPU running sm_90a code";
    const Case cases[] = {{700, 37, 20, 4, 1.5f}, {513, 40, 64, 1e3, 1.f}, {300, 33, 70, 4, 2.f}, {700, 8, 128, 4, 1.f}};
    uint64_t seed = 9150;
    for (const Case& c : cases) {
        const Problem p = make_problem(c, seed++);
        for (EStepCudaOptions o : all_paths()) {
            if (o.algorithm == gpu::EStepCudaAlgorithm::Blocked || !o.full_sm90_kernel) continue;
            for (int group : {0, 32, 64, 128}) {
                o.hopper_full_group = group;
                check(c, p, o, name_of(c, o));
            }
        }
    }
    // Other widths are refused, naming the option.
    EStepCudaOptions o = all_paths()[0];
    o.full_sm90_kernel = true;
    o.hopper_full_group = 48;
    const Case c{64, 3, 100, 4, 1.f};
    const Problem p = make_problem(c, seed);
    EStepCuda es(c.K, c.d, o);
    try {
        es.set_model(p.model, p.center.data());
        FAIL() << "hopper_full_group = 48 was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("hopper_full_group"), std::string::npos) << e.what();
    }
}

TEST(EStepCudaFull, Uint8Rows) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
    Case c{1500, 10, 24, 10, 1.5f};
    c.uint8_rows = true;
    const Problem p = make_problem(c, 9200);
    for (const auto& o : all_paths()) check(c, p, o, name_of(c, o));
}

TEST(EStepCudaFull, ChunksWorkersAndRetainedRows) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
    const Case c{3001, 12, 40, 10, 2.f};
    const Problem p = make_problem(c, 9300);
    for (EStepCudaOptions o : all_paths()) {
        const std::string path = variant_name(o);
        o.chunk_rows = 700;      // 5 chunks, the last one ragged (double buffers)
        o.block_bytes = 40000;   // blocked: 32 rows per block (the least), ragged; fused: a chunk per block
        check(c, p, o, "5 chunks, " + path);
        o.devices = {0, 0};      // two workers sharing the rows (a device may repeat)
        check(c, p, o, "2 workers, chunks, " + path);
        check(c, p, o, "2 workers, rows retained on the GPU, " + path, true);
    }
}

TEST(EStepCudaFull, NearSingularCovariance) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
    // One component's covariance has eigenvalues from 1 down to 1e-7 (a nearly flat cluster):
    // its precision factor has entries ~3e3, so the expanded form's error grows with ‖x − c‖·‖U‖,
    // which the bound follows; the other components are ordinary.
    const Case c{800, 6, 16, 4, 1.f};
    Problem p = make_problem(c, 9400);
    std::mt19937_64 rng{9401};
    p.model.set_covariance(0, random_spd(c.d, 1.0, 1e7, rng).data());
    for (const auto& o : all_paths()) check(c, p, o, name_of(c, o) + " + cond 1e7 component");
}

TEST(EStepCudaFull, SanitizerFull) {
    // Small and quick, for compute-sanitizer (memcheck; the second-moment kernel's shared tile
    // for racecheck): two workers, chunks, several blocks, float32 and uint8 rows.
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
    Case c{333, 7, 20, 4, 2.f};
    const Problem pf = make_problem(c, 9500);
    c.uint8_rows = true;
    const Problem p8 = make_problem(c, 9501);
    for (EStepCudaOptions o : all_paths()) {
        o.devices = {0, 0};
        o.chunk_rows = 128;
        o.block_bytes = 4000; // 125 (fused) or 32 (blocked) rows per block: ragged blocks
        c.uint8_rows = false;
        check(c, pf, o, "sanitizer float32 " + variant_name(o));
        c.uint8_rows = true;
        check(c, p8, o, "sanitizer uint8 " + variant_name(o));
    }
}

TEST(EStepCudaFull, TooLargeDimensionIsRefused) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
    EXPECT_TRUE(gpu::full_covariance_supported(1024, 128));
    EXPECT_FALSE(gpu::full_covariance_supported(4, 129));
    GmmModel m(2, 129, CovarianceType::Full);
    EStepCuda es(2, 129, all_paths()[0]);
    try {
        es.set_model(m, nullptr);
        FAIL() << "a full model with d = 129 was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("d <= 128"), std::string::npos) << e.what();
    }
}
