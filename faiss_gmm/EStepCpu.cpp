#include "EStepCpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "detail/blas.h"
#include "detail/fast_exp.h"

namespace faiss_gmm {

namespace {

/// Per-thread accumulators: the statistics of the blocks one thread processed.
struct ThreadStats {
    double n = 0, loglik = 0;
    std::vector<double> nk, sum_x, sum_sq;
};

/// Sparse path when fewer than this fraction of a block's responsibilities are
/// non-zero: nnz·d scalar FMAs beat a dense B×K×d sgemm by a wide margin then.
constexpr int64_t kDenseFractionDenominator = 8;
/// Blocks with fewer (row, component) pairs always take the sparse path: the
/// sgemm would not pay for itself, and the sparse path computes ‖x − μ‖²
/// without the cancellation of the expanded form.
constexpr int64_t kMinDensePairs = 4096;

} // namespace

struct EStepCpu::Workspace {
    std::vector<float> features; // B × D: x − center (spherical) or [x − c, (x − c)²] (diagonal)
    std::vector<float> sqnorm;   // B: ‖x − c‖² (spherical)
    std::vector<float> scores;   // B × K: GEMM output, then d2 or log p, then r
    std::vector<float> expbuf;   // K: exp(log p − max) of the current row
    std::vector<float> gemm_out; // K × D: Rᵀ·features (dense path)
    std::vector<int> nz_k;       // non-zero responsibilities of the block: component,
    std::vector<float> nz_r;     // value,
    std::vector<float> nz_d2;    // ‖x − μ_k‖² (spherical),
    std::vector<int> nz_row_end; // and where each row's entries end
    ThreadStats* acc = nullptr;  // where the block's statistics go (nullptr: none)
};

EStepCpu::EStepCpu(int block_size, int nthreads) : block_size_(block_size), nthreads_(nthreads) {
    if (block_size < 1) {
        throw std::invalid_argument("EStepCpu: block_size must be >= 1");
    }
    if (nthreads_ <= 0) nthreads_ = omp_get_max_threads();
}

void EStepCpu::set_model(const GmmModel& model, const float* center) {
    model.validate();
    model_ = model;
    const int64_t K = model.K, d = model.d;
    center_.assign(d, 0.0f);
    if (center) std::copy(center, center + d, center_.begin());

    const std::vector<double> c = model.log_constants();
    log_const_.assign(c.begin(), c.end());
    if (model.covariance_type == CovarianceType::Spherical) {
        gemm_weights_ = model.means;
        mean_sqnorm_.resize(K);
        inv_two_var_.resize(K);
        for (int64_t k = 0; k < K; k++) {
            double s = 0;
            for (int64_t j = 0; j < d; j++) s += double(model.means[k * d + j]) * model.means[k * d + j];
            mean_sqnorm_[k] = float(s);
            inv_two_var_[k] = float(0.5 / double(model.variances[k]));
        }
    } else {
        gemm_weights_.resize(size_t(K) * 2 * d);
        for (int64_t k = 0; k < K; k++) {
            for (int64_t j = 0; j < d; j++) {
                const double var = model.variances[k * d + j];
                gemm_weights_[k * 2 * d + j] = float(double(model.means[k * d + j]) / var);
                gemm_weights_[k * 2 * d + d + j] = float(-0.5 / var);
            }
        }
    }
}

namespace {

/// The per-row fused pass over one block's GEMM output (rows × K in `scores`).
/// For each row: log-densities and their max; exp(log p − max) and its sum
/// (entries more than 1e12 below the max are exactly 0); then the
/// responsibilities, written back into `scores` (for the dense Rᵀ·X sgemm) and
/// listed sparsely with their components (for everything else).
/// Compiled twice (AVX2+FMA and baseline) and picked at load time, since the
/// distribution's FAISS and our build cannot assume AVX2.
struct FusedPassArgs {
    int64_t rows, K;
    bool spherical;
    const float* log_const;   // K
    const float* mean_sqnorm; // K (spherical)
    const float* inv_two_var; // K (spherical)
    const float* sqnorm;      // rows (spherical)
    float* scores;            // rows × K
    float* expbuf;            // K
    float* loglik_out;        // rows
    float* log_resp_out;      // rows × K or nullptr: log r instead of the sparse lists
};

__attribute__((target_clones("arch=haswell", "default")))
void fused_pass(const FusedPassArgs& a, std::vector<int>& nz_k, std::vector<float>& nz_r,
                std::vector<float>& nz_d2, std::vector<int>& nz_row_end) {
    const int64_t K = a.K;
    const float kDrop = EStepCpu::kNegligibleLogRatio;
    for (int64_t i = 0; i < a.rows; i++) {
        float* s = a.scores + i * K;
        float* e = a.expbuf;
        // Sweep 1: log p(x, k), kept in s; for spherical, ‖x − μ_k‖² goes to e first.
        float mx = -INFINITY;
        if (a.spherical) {
            const float xn = a.sqnorm[i];
#pragma omp simd reduction(max : mx)
            for (int64_t k = 0; k < K; k++) {
                float d2 = xn + a.mean_sqnorm[k] - 2.0f * s[k];
                d2 = d2 < 0.0f ? 0.0f : d2; // rounding can make a tiny distance negative
                e[k] = d2;
                const float lp = a.log_const[k] - d2 * a.inv_two_var[k];
                s[k] = lp;
                mx = lp > mx ? lp : mx;
            }
        } else {
#pragma omp simd reduction(max : mx)
            for (int64_t k = 0; k < K; k++) {
                const float lp = s[k] + a.log_const[k];
                s[k] = lp;
                mx = lp > mx ? lp : mx;
            }
        }
        // Sweep 2: exp(log p − max), summed. d2 of spherical rows moves to s's
        // slot once its log p is consumed: afterwards s = d2, e = exp.
        float sum = 0.0f;
        if (a.spherical) {
#pragma omp simd reduction(+ : sum)
            for (int64_t k = 0; k < K; k++) {
                const float t = s[k] - mx;
                const float ex = t < kDrop ? 0.0f : detail::exp_nonpositive(t);
                s[k] = e[k];
                e[k] = ex;
                sum += ex;
            }
        } else {
#pragma omp simd reduction(+ : sum)
            for (int64_t k = 0; k < K; k++) {
                const float t = s[k] - mx;
                const float ex = t < kDrop ? 0.0f : detail::exp_nonpositive(t);
                e[k] = ex;
                sum += ex;
            }
        }
        const float log_sum = std::log(sum);
        a.loglik_out[i] = mx + log_sum;
        if (a.log_resp_out) {
            // log r_k = log p(x, k) − log p(x), without the drop threshold. For
            // spherical rows s now holds d2: rebuild log p from it.
            float* out = a.log_resp_out + i * K;
            const float lse = mx + log_sum;
            for (int64_t k = 0; k < K; k++) {
                const float lp = a.spherical ? a.log_const[k] - s[k] * a.inv_two_var[k] : s[k];
                out[k] = lp - lse;
            }
            continue;
        }
        // Sweep 3: responsibilities, dense into s and sparse into the lists.
        const float inv = 1.0f / sum;
        for (int64_t k = 0; k < K; k++) {
            const float r = e[k] * inv;
            if (r > 0.0f) {
                nz_k.push_back(int(k));
                nz_r.push_back(r);
                if (a.spherical) nz_d2.push_back(s[k]);
            }
            s[k] = r;
        }
        nz_row_end.push_back(int(nz_k.size()));
    }
}

/// Sparse accumulation: each listed (row, k) adds r·x to Σ r x and r·(x − μ_k)²
/// to the second moment, the latter computed directly rather than from
/// ‖x‖² − 2x·μ + ‖μ‖², which cancels for rows close to their mean. Cloned for
/// AVX2 like fused_pass: the d-long double loops are its whole cost.
__attribute__((target_clones("arch=haswell", "default")))
void accumulate_sparse(int64_t B, int64_t d, int64_t D, bool spherical, const float* features, const float* means,
                       const int* nz_k, const float* nz_r, const int* nz_row_end, double* sum_x, double* sum_sq) {
    int64_t t = 0;
    for (int64_t i = 0; i < B; i++) {
        const float* x = features + i * D;
        for (; t < nz_row_end[i]; t++) {
            const int64_t k = nz_k[t];
            const double r = nz_r[t];
            const float* mu = means + k * d;
            double* sx = sum_x + k * d;
            for (int64_t j = 0; j < d; j++) sx[j] += r * x[j];
            if (spherical) {
                double sq = 0;
#pragma omp simd reduction(+ : sq)
                for (int64_t j = 0; j < d; j++) {
                    const double diff = double(x[j]) - mu[j];
                    sq += diff * diff;
                }
                sum_sq[k] += r * sq;
            } else {
                double* sq = sum_sq + k * d;
                for (int64_t j = 0; j < d; j++) {
                    const double diff = double(x[j]) - mu[j];
                    sq[j] += r * diff * diff;
                }
            }
        }
    }
}

} // namespace

void EStepCpu::process_block(const VectorBlock& rows, Workspace& ws, float* log_resp, float* loglik) const {
    const int64_t B = rows.n, K = model_.K, d = model_.d;
    const bool spherical = model_.covariance_type == CovarianceType::Spherical;
    const int64_t D = spherical ? d : 2 * d;
    ws.features.resize(size_t(B) * D);
    ws.sqnorm.resize(B);
    ws.scores.resize(size_t(B) * K);
    ws.expbuf.resize(K);

    // Rows in the model's frame, as float (uint8 rows are converted here).
    for (int64_t i = 0; i < B; i++) {
        float* f = ws.features.data() + i * D;
        rows.row_to_float(i, f);
        float sq = 0;
        for (int64_t j = 0; j < d; j++) {
            f[j] -= center_[j];
            sq += f[j] * f[j];
        }
        ws.sqnorm[i] = sq;
        if (!spherical) {
            for (int64_t j = 0; j < d; j++) f[d + j] = f[j] * f[j];
        }
    }

    detail::gemm_abt(int(B), int(K), int(D), ws.features.data(), gemm_weights_.data(), ws.scores.data());

    std::vector<float> loglik_local;
    if (!loglik) {
        loglik_local.resize(B);
        loglik = loglik_local.data();
    }
    ws.nz_k.clear();
    ws.nz_r.clear();
    ws.nz_d2.clear();
    ws.nz_row_end.clear();
    FusedPassArgs args{B, K, spherical, log_const_.data(), mean_sqnorm_.data(), inv_two_var_.data(),
                       ws.sqnorm.data(), ws.scores.data(), ws.expbuf.data(), loglik, log_resp};
    fused_pass(args, ws.nz_k, ws.nz_r, ws.nz_d2, ws.nz_row_end);
    if (!ws.acc) return;

    ThreadStats& acc = *ws.acc;
    acc.n += double(B);
    for (int64_t i = 0; i < B; i++) acc.loglik += double(loglik[i]);

    // N_k from the sparse lists (in double).
    const int64_t nnz = int64_t(ws.nz_k.size());
    for (int64_t t = 0; t < nnz; t++) acc.nk[ws.nz_k[t]] += double(ws.nz_r[t]);

    if (B * K < kMinDensePairs || nnz * kDenseFractionDenominator < B * K) {
        accumulate_sparse(B, d, D, spherical, ws.features.data(), model_.means.data(), ws.nz_k.data(),
                          ws.nz_r.data(), ws.nz_row_end.data(), acc.sum_x.data(), acc.sum_sq.data());
    } else {
        // Dense: Rᵀ · features by sgemm (scores now holds R).
        if (spherical) {
            for (int64_t t = 0; t < nnz; t++) acc.sum_sq[ws.nz_k[t]] += double(ws.nz_r[t]) * ws.nz_d2[t];
        }
        ws.gemm_out.resize(size_t(K) * D);
        detail::gemm_atb(int(K), int(D), int(B), ws.scores.data(), ws.features.data(), ws.gemm_out.data());
        std::vector<double> block_nk;
        if (!spherical) {
            // Second moment about μ_k from Σ r x and Σ r x²: needs this block's N_k.
            block_nk.assign(K, 0.0);
            for (int64_t t = 0; t < nnz; t++) block_nk[ws.nz_k[t]] += ws.nz_r[t];
        }
        for (int64_t k = 0; k < K; k++) {
            const float* g = ws.gemm_out.data() + k * D;
            double* sx = acc.sum_x.data() + k * d;
            for (int64_t j = 0; j < d; j++) sx[j] += g[j];
            if (!spherical) {
                const float* mu = model_.means.data() + k * d;
                double* sq = acc.sum_sq.data() + k * d;
                for (int64_t j = 0; j < d; j++) {
                    const double m = mu[j];
                    sq[j] += double(g[d + j]) - 2.0 * m * double(g[j]) + block_nk[k] * m * m;
                }
            }
        }
    }
}

void EStepCpu::accumulate(const VectorBlock& rows, SufficientStats& stats) {
    if (model_.K == 0) throw std::logic_error("EStepCpu::accumulate called before set_model");
    if (rows.d != model_.d) {
        throw std::invalid_argument("EStepCpu: rows have dimension " + std::to_string(rows.d) +
                                    ", the model has " + std::to_string(model_.d));
    }
    if (stats.K != model_.K || stats.d != model_.d || stats.covariance_type != model_.covariance_type) {
        throw std::invalid_argument("EStepCpu: statistics shape does not match the model");
    }
    if (rows.n == 0) return;

    const int64_t nblocks = (rows.n + block_size_ - 1) / block_size_;
    const int nt = int(std::min<int64_t>(nthreads_, nblocks));
    std::vector<ThreadStats> per_thread(nt);
    detail::SingleThreadedBlas single_threaded_blas;
    std::string error;

#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        ThreadStats& acc = per_thread[t];
        acc.nk.assign(model_.K, 0.0);
        acc.sum_x.assign(size_t(model_.K) * model_.d, 0.0);
        acc.sum_sq.assign(stats.sum_sq.size(), 0.0);
        Workspace ws;
        ws.acc = &acc;
        // Static round-robin over blocks: the same blocks go to the same thread
        // for a given thread count, which makes the sums deterministic.
#pragma omp for schedule(static, 1)
        for (int64_t b = 0; b < nblocks; b++) {
            const int64_t i0 = b * block_size_;
            const int64_t n = std::min<int64_t>(block_size_, rows.n - i0);
            try {
                process_block(rows.slice(i0, n), ws, nullptr, nullptr);
            } catch (const std::exception& ex) {
#pragma omp critical
                error = ex.what();
            }
        }
    }
    if (!error.empty()) throw std::runtime_error("EStepCpu: " + error);

    for (const ThreadStats& acc : per_thread) {
        stats.n += acc.n;
        stats.loglik += acc.loglik;
        for (size_t i = 0; i < acc.nk.size(); i++) stats.nk[i] += acc.nk[i];
        for (size_t i = 0; i < acc.sum_x.size(); i++) stats.sum_x[i] += acc.sum_x[i];
        for (size_t i = 0; i < acc.sum_sq.size(); i++) stats.sum_sq[i] += acc.sum_sq[i];
    }
}

void EStepCpu::log_responsibilities(const VectorBlock& rows, float* log_resp, float* loglik) {
    if (model_.K == 0) throw std::logic_error("EStepCpu::log_responsibilities called before set_model");
    if (rows.d != model_.d) {
        throw std::invalid_argument("EStepCpu: rows have dimension " + std::to_string(rows.d) +
                                    ", the model has " + std::to_string(model_.d));
    }
    const int64_t nblocks = (rows.n + block_size_ - 1) / block_size_;
    detail::SingleThreadedBlas single_threaded_blas;
#pragma omp parallel num_threads(int(std::min<int64_t>(nthreads_, std::max<int64_t>(nblocks, 1))))
    {
        Workspace ws;
        std::vector<float> local_resp;
#pragma omp for schedule(static, 1)
        for (int64_t b = 0; b < nblocks; b++) {
            const int64_t i0 = b * block_size_;
            const int64_t n = std::min<int64_t>(block_size_, rows.n - i0);
            float* lr = log_resp ? log_resp + i0 * model_.K : nullptr;
            if (!lr) {
                local_resp.resize(size_t(n) * model_.K);
                lr = local_resp.data();
            }
            process_block(rows.slice(i0, n), ws, lr, loglik ? loglik + i0 : nullptr);
        }
    }
}

} // namespace faiss_gmm
