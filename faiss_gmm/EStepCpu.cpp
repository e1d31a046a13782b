#include "EStepCpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>

#include "detail/blas.h"
#include "detail/cpu_features.h"
#include "detail/fast_exp.h"

namespace faiss_gmm {

namespace {

/// Per-thread accumulators: the statistics of the blocks one thread processed
/// (accumulate()), or of one reproducible block (accumulate_reproducible()).
using ThreadStats = SufficientStats;

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
    std::vector<float> scores;   // B × K: GEMM output, then log p, then r
    std::vector<float> d2;       // B × K: ‖x − μ_k‖² (spherical)
    std::vector<float> expbuf;   // K: exp(log p − max) of the current row
    std::vector<float> loglik;   // B: log p(x) when the caller does not want it
    std::vector<float> row_buf;  // d: a row in its own frame, for exact log-densities
    std::vector<float> gemm_out; // K × D: Rᵀ·features (dense path)
    std::vector<float> block_nk; // K: N_k of the block (dense path)
    std::vector<float> block_sq; // K: Σ r‖x − μ_k‖² of the block (dense path, spherical)
    std::vector<int> nz_k;       // non-zero responsibilities of the block (sparse path): component,
    std::vector<float> nz_r;     // value,
    std::vector<int> nz_row_end; // and where each row's entries end
    std::vector<float> proj;     // B × (one group's components)·d: (x − c)ᵀU_k, band by band (full)
    std::vector<uint8_t> full_cancelled; // B: some log-density of the row may have cancelled (full)
    std::vector<float> zbuf;     // B × d: √r (x − μ_k) of the rows with r > 0 (full)
    std::vector<float> syrk_out; // d × d: Σ r (x − μ_k)(x − μ_k)ᵀ of the block (full)
    ThreadStats stats;           // accumulate()'s statistics of this thread's blocks, or one reproducible block's
    // Full covariances in accumulate_reproducible: the second moments are not summed
    // into stats (K·d(d+1)/2 doubles per thread) but deferred: the block's non-zero
    // responsibilities are listed here, and flush_full_pairs sums and deposits each
    // component's second moment on its own (see accumulate_reproducible).
    bool defer_full_pairs = false;
    int64_t pair_row0 = 0;              // the current sub-block's first row in the reproducible block
    std::vector<int32_t> pair_row;      // row in the reproducible block,
    std::vector<int32_t> pair_k;        // component,
    std::vector<float> pair_r;          // responsibility (> 0), in row order
    int64_t pairs_at_cut = 0;           // listing: the list's length at the block's last cut
    std::vector<int32_t> cuts;          // listing: the block's cuts (ListedPairs::cuts)
    std::vector<int64_t> pair_start;    // K + 1: counting sort by component (sort_pairs)
    ListedPairs sorted;                 // one flush's pairs by component (one-walk path)
    std::vector<double> moment;         // d(d+1)/2: one component's second moment
};

EStepCpu::~EStepCpu() = default;

EStepCpu::Workspace& EStepCpu::workspace(int thread) {
    return *workspaces_[thread];
}

void EStepCpu::reserve_workspaces(int nthreads) {
    // Kept across calls: fresh multi-megabyte buffers every call cost page
    // faults and (transparent huge) page zeroing, measurable per EM iteration.
    while (int(workspaces_.size()) < nthreads) workspaces_.push_back(std::make_unique<Workspace>());
}

EStepCpu::EStepCpu(int block_size, int nthreads, int64_t full_scratch_floats)
    : block_size_(block_size), nthreads_(nthreads), full_scratch_floats_(full_scratch_floats) {
    if (block_size < 1) {
        throw std::invalid_argument("EStepCpu: block_size must be >= 1");
    }
    if (full_scratch_floats < 1) {
        throw std::invalid_argument("EStepCpu: full_scratch_floats must be >= 1, got " +
                                    std::to_string(full_scratch_floats));
    }
    if (nthreads_ <= 0) nthreads_ = omp_get_max_threads();
}

void EStepCpu::set_model(const GmmModel& model, const float* center) {
    model.validate();
    end_listing(); // the lists belong to the previous model
    pairs_seen_ = 0;
    const int64_t K = model.K, d = model.d;
    if (model.covariance_type == CovarianceType::Full) {
        // Everything but the factors: the U_k are held once, in the product's banded
        // layout (set_full_model), which refine_row_full reads too. A second copy was
        // K·d² floats (16 MiB at K = 256, d = 128), and copying it a transient one more.
        model_.K = K;
        model_.d = d;
        model_.covariance_type = model.covariance_type;
        model_.log_weights = model.log_weights;
        model_.means = model.means;
        std::vector<float>().swap(model_.variances);
    } else {
        model_ = model;
    }
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
    } else if (model.covariance_type == CovarianceType::Full) {
        mean_sqnorm_.clear();
        inv_two_var_.clear();
        set_full_model(model);
    } else {
        gemm_weights_.resize(size_t(K) * 2 * d);
        mean_sqnorm_.clear();
        inv_two_var_.clear();
        for (int64_t k = 0; k < K; k++) {
            for (int64_t j = 0; j < d; j++) {
                const double var = model.variances[k * d + j];
                gemm_weights_[k * 2 * d + j] = float(double(model.means[k * d + j]) / var);
                gemm_weights_[k * 2 * d + d + j] = float(-0.5 / var);
            }
        }
    }
    exact_ = exact_log_density(model, center);
}

void EStepCpu::set_full_model(const GmmModel& model) {
    const int64_t K = model.K, d = model.d;
    model.precision_mean_projections(mean_proj_);
    band_end_.clear();
    band_offset_.assign(1, 0);
    for (int64_t j0 = 0; j0 < d; j0 += kFullBandColumns) {
        const int64_t j1 = std::min(d, j0 + kFullBandColumns);
        band_end_.push_back(j1);
        band_offset_.push_back(band_offset_.back() + (j1 - j0) * j1);
    }
    full_group_ = std::clamp<int64_t>(full_scratch_floats_ / (int64_t(block_size_) * d), 1, K);
    // Group g (components [k0, k0 + ng)) starts at k0 · band_offset_.back(); its band c
    // (columns [j0, j1)) at + ng · band_offset_[c], row (k0 + kl, j) at + (kl·(j1 − j0) + j − j0)·j1,
    // holding U_k[0..j1, j] (U_k[m, j] = 0 for m > j: the band's only zeros). Written
    // straight from the model: no K·d² stacked copy next to it.
    const int64_t per_component = band_offset_.back();
    gemm_weights_.resize(size_t(K * per_component));
    for (int64_t k0 = 0; k0 < K; k0 += full_group_) {
        const int64_t ng = std::min(full_group_, K - k0);
        int64_t j0 = 0;
        for (size_t c = 0; c < band_end_.size(); c++) {
            const int64_t j1 = band_end_[c];
            float* band = gemm_weights_.data() + k0 * per_component + ng * band_offset_[c];
            for (int64_t kl = 0; kl < ng; kl++) {
                const float* U = model.precision_cholesky(k0 + kl);
                for (int64_t j = j0; j < j1; j++) {
                    float* row = band + (kl * (j1 - j0) + j - j0) * j1;
                    for (int64_t m = 0; m < j1; m++) row[m] = m <= j ? U[m * d + j] : 0.0f;
                }
            }
            j0 = j1;
        }
    }
}

void EStepCpu::full_group_product(int64_t B, int64_t k0, int64_t ng, Workspace& ws) const {
    const int64_t d = model_.d;
    const float* w = gemm_weights_.data() + k0 * band_offset_.back();
    int64_t j0 = 0;
    for (size_t c = 0; c < band_end_.size(); c++) {
        const int64_t j1 = band_end_[c], width = ng * (j1 - j0);
        detail::gemm_abt(int(B), int(width), int(j1), ws.features.data(), int(d), w + ng * band_offset_[c], int(j1),
                         ws.proj.data() + B * ng * j0, int(width));
        j0 = j1;
    }
}

namespace {

/// The per-row fused pass over one block's GEMM output (rows × K in `scores`).
/// For each row: log-densities and their max; exp(log p − max) and its sum
/// (entries more than 1e12 below the max are exactly 0); then either log r
/// (log_resp_out) or the responsibilities, written back into `scores`, with
/// their count of non-zeros (which picks the block's accumulation path).
struct FusedPassArgs {
    int64_t rows, K;
    bool spherical;
    bool full;                // scores hold log p already (full_group_log_densities, refine_full_rows)
    const float* log_const;   // K
    const float* mean_sqnorm; // K (spherical)
    const float* inv_two_var; // K (spherical)
    const float* sqnorm;      // rows (spherical)
    float* scores;            // rows × K
    float* d2;                // rows × K (spherical): ‖x − μ_k‖² out
    float* expbuf;            // K
    float* loglik_out;        // rows
    float* log_resp_out;      // rows × K or nullptr: log r instead of r
    // Exact log-densities where the expanded form may have lost accuracy:
    const VectorBlock* block; // the block's rows, in their own frame
    int64_t d;
    const float* err_slope;   // K: error bound of log p = slope·‖x − c‖² + offset
    const float* err_offset;  // K
    const double* exact_const;   // K
    const float* quad_const;     // K: exact_const as float (log p = quad_const − ½ Σ (x − μ)²/σ²)
    const double* exact_means;   // K × d, in the rows' frame
    const double* exact_inv_var; // K or K × d (not full)
    const float* full_bands;     // full: the U_k in the product's banded layout (set_full_model)
    int64_t full_group;          // full: components per group of that layout
    const int64_t* band_offset;  // full: EStepCpu::band_offset_
    float* row_buf;              // d
};

/// Full covariances: column j of U_k, entries 0..j, in the banded layout of
/// EStepCpu::set_full_model (group k0 = k − k mod full_group, band c = j / kFullBandColumns).
FAISS_GMM_ALWAYS_INLINE const float* full_factor_column(const FusedPassArgs& a, int64_t k, int64_t j) {
    const int64_t k0 = k - k % a.full_group, ng = std::min(a.full_group, a.K - k0);
    const int64_t c = j / EStepCpu::kFullBandColumns, j0 = c * EStepCpu::kFullBandColumns;
    const int64_t j1 = std::min(a.d, j0 + EStepCpu::kFullBandColumns);
    const int64_t per_component = a.band_offset[(a.d + EStepCpu::kFullBandColumns - 1) / EStepCpu::kFullBandColumns];
    return a.full_bands + k0 * per_component + ng * a.band_offset[c] + ((k - k0) * (j1 - j0) + j - j0) * j1;
}

// kRefineTolerance, kRefineRelative, kRefineWindow and may_have_cancelled():
// ExactLogDensity.h, shared with the CUDA backend.

/// The row in its own frame (a.row_buf) minus the exact mean of component k, in double.
FAISS_GMM_ALWAYS_INLINE void exact_difference(const FusedPassArgs& a, int64_t k, double* diff) {
    const double* mu = a.exact_means + k * a.d;
    for (int64_t j = 0; j < a.d; j++) diff[j] = double(a.row_buf[j]) - mu[j];
}

/// Full covariances: recomputes in double, from the row in its own frame, the
/// log-densities of row i whose float32 value may have cancelled (err in a.d2 from
/// full_group_log_densities); the same test and window as refine_row.
FAISS_GMM_NOINLINE void refine_row_full(const FusedPassArgs& a, int64_t i, std::vector<double>& diff) {
    const int64_t K = a.K, d = a.d;
    float* s = a.scores + i * K;
    const float* err = a.d2 + i * K;
    float lower = -INFINITY;
    for (int64_t k = 0; k < K; k++) lower = std::max(lower, s[k] - err[k]);
    bool loaded = false;
    diff.resize(d);
    for (int64_t k = 0; k < K; k++) {
        if (!may_have_cancelled(err[k], a.quad_const[k] - s[k]) || s[k] + err[k] < lower - kRefineWindow) continue;
        if (!loaded) {
            a.block->row_to_float(i, a.row_buf);
            loaded = true;
        }
        exact_difference(a, k, diff.data());
        double q = 0;
        for (int64_t j = 0; j < d; j++) {
            const float* u = full_factor_column(a, k, j); // U_k[0..j, j], widened to double exactly
            double y = 0;
            for (int64_t m = 0; m <= j; m++) y += diff[m] * u[m];
            q += y * y;
        }
        s[k] = float(a.exact_const[k] - 0.5 * q);
    }
}

/// Full covariances, sweep 0 of the fused pass, for components [k0, k0 + ng):
/// log p(x, k) = c_k − ½‖y‖² with y = (x − c)ᵀU_k − μ_kᵀU_k from full_group_product
/// (band c, columns [j0, j1): B × ng × (j1 − j0) floats at proj + B·ng·j0), and its
/// error bound (full_log_density_error) into a.d2. Rows where some pair may have
/// cancelled are flagged in `cancelled`, for refine_full_rows once every group is in.
/// The sum of ‖y‖² runs band by band whatever the group size, so the bits do not
/// depend on it.
FAISS_GMM_ALWAYS_INLINE void full_group_log_densities_body(const FusedPassArgs& a, int64_t k0, int64_t ng,
                                                           const float* proj, const float* mean_proj,
                                                           const int64_t* band_end, int64_t nbands,
                                                           uint8_t* cancelled) {
    const int64_t K = a.K, d = a.d, B = a.rows;
    for (int64_t i = 0; i < B; i++) {
        const float xnorm = std::sqrt(a.sqnorm[i]);
        int flagged = 0;
        for (int64_t kl = 0; kl < ng; kl++) {
            const int64_t k = k0 + kl;
            float q = 0;
            int64_t j0 = 0;
            for (int64_t c = 0; c < nbands; c++) {
                const int64_t w = band_end[c] - j0;
                const float* __restrict p = proj + B * ng * j0 + (i * ng + kl) * w;
                const float* __restrict m = mean_proj + k * d + j0;
                float qb = 0;
#pragma omp simd reduction(+ : qb)
                for (int64_t j = 0; j < w; j++) {
                    const float y = p[j] - m[j];
                    qb += y * y;
                }
                q += qb;
                j0 = band_end[c];
            }
            const float t = 0.5f * q;
            const float err = full_log_density_error(a.err_slope[k] * xnorm + a.err_offset[k], t, d);
            a.scores[i * K + k] = a.log_const[k] - t;
            a.d2[i * K + k] = err;
            flagged |= may_have_cancelled(err, t) ? 1 : 0;
        }
        cancelled[i] |= uint8_t(flagged);
    }
}

FAISS_GMM_TARGET_AVX2 void full_group_log_densities_avx2(const FusedPassArgs& a, int64_t k0, int64_t ng,
                                                         const float* proj, const float* mean_proj,
                                                         const int64_t* band_end, int64_t nbands,
                                                         uint8_t* cancelled) {
    full_group_log_densities_body(a, k0, ng, proj, mean_proj, band_end, nbands, cancelled);
}
void full_group_log_densities_baseline(const FusedPassArgs& a, int64_t k0, int64_t ng, const float* proj,
                                       const float* mean_proj, const int64_t* band_end, int64_t nbands,
                                       uint8_t* cancelled) {
    full_group_log_densities_body(a, k0, ng, proj, mean_proj, band_end, nbands, cancelled);
}

/// The flagged rows of a block through refine_row_full.
void refine_full_rows(const FusedPassArgs& a, const uint8_t* cancelled) {
    if (!a.block) return;
    std::vector<double> diff;
    for (int64_t i = 0; i < a.rows; i++) {
        if (cancelled[i]) refine_row_full(a, i, diff);
    }
}

/// Recomputes the log-densities of row i that may be wrong (may_have_cancelled) and
/// returns the row's new maximum. Called only for rows where sweep 1 found a
/// component whose expanded form may have cancelled (rare for ordinary models).
FAISS_GMM_NOINLINE float refine_row(const FusedPassArgs& a, int64_t i) {
    const int64_t K = a.K, d = a.d;
    float* s = a.scores + i * K;
    const float xn = a.sqnorm[i];
    // The row's best log-density is at least lower = max_k (s_k − err_k); a
    // component can matter only if s_k + err_k reaches lower − kRefineWindow.
    float lower = -INFINITY;
    for (int64_t k = 0; k < K; k++) lower = std::max(lower, s[k] - (a.err_slope[k] * xn + a.err_offset[k]));
    bool loaded = false;
    for (int64_t k = 0; k < K; k++) {
        const float err = a.err_slope[k] * xn + a.err_offset[k];
        const float term = a.quad_const[k] - s[k];
        if (!may_have_cancelled(err, term) || s[k] + err < lower - kRefineWindow) continue;
        if (!loaded) {
            a.block->row_to_float(i, a.row_buf);
            loaded = true;
        }
        const double* mu = a.exact_means + k * d;
        double q = 0, dist = 0;
        if (a.spherical) {
            for (int64_t j = 0; j < d; j++) {
                const double diff = double(a.row_buf[j]) - mu[j];
                dist += diff * diff;
            }
            q = dist * a.exact_inv_var[k];
            a.d2[i * K + k] = float(dist);
        } else {
            const double* inv = a.exact_inv_var + k * d;
            for (int64_t j = 0; j < d; j++) {
                const double diff = double(a.row_buf[j]) - mu[j];
                q += diff * diff * inv[j];
            }
        }
        s[k] = float(a.exact_const[k] - 0.5 * q);
    }
    float new_max = -INFINITY;
    for (int64_t k = 0; k < K; k++) new_max = std::max(new_max, s[k]);
    return new_max;
}

/// Returns the number of non-zero responsibilities (0 with log_resp_out).
FAISS_GMM_ALWAYS_INLINE int64_t fused_pass_body(const FusedPassArgs& a, bool use_avx2) {
    const int64_t K = a.K;
    const float kDrop = EStepCpu::kNegligibleLogRatio;
    const float* __restrict log_const = a.log_const;
    float* __restrict e = a.expbuf;
    int64_t nnz = 0;
    for (int64_t i = 0; i < a.rows; i++) {
        float* __restrict s = a.scores + i * K;
        // Sweep 1: log p(x, k) into s (spherical: ‖x − μ_k‖² kept in d2), and
        // whether some component's expanded form may have cancelled: its error
        // bound exceeds kRefineTolerance and kRefineRelative of its quadratic
        // term (rare: a row near a component far narrower than ‖x − c‖²·2^-24).
        float mx = -INFINITY;
        int cancelled = 0;
        const float xn = a.sqnorm[i];
        const float* __restrict err_slope = a.err_slope;
        const float* __restrict err_offset = a.err_offset;
        if (a.full) {
            // log p and its refinement: full_group_log_densities and refine_full_rows, before this pass.
#pragma omp simd reduction(max : mx)
            for (int64_t k = 0; k < K; k++) mx = s[k] > mx ? s[k] : mx;
        } else if (a.spherical) {
            const float* __restrict mean_sqnorm = a.mean_sqnorm;
            const float* __restrict inv_two_var = a.inv_two_var;
            float* __restrict d2 = a.d2 + i * K;
#pragma omp simd reduction(max : mx) reduction(+ : cancelled)
            for (int64_t k = 0; k < K; k++) {
                float dist = xn + mean_sqnorm[k] - 2.0f * s[k];
                dist = dist < 0.0f ? 0.0f : dist; // rounding can make a tiny distance negative
                d2[k] = dist;
                const float term = dist * inv_two_var[k];
                const float lp = log_const[k] - term;
                s[k] = lp;
                mx = lp > mx ? lp : mx;
                const float err = err_slope[k] * xn + err_offset[k];
                cancelled += may_have_cancelled(err, term) ? 1 : 0;
            }
        } else {
            const float* __restrict quad_const = a.quad_const;
#pragma omp simd reduction(max : mx) reduction(+ : cancelled)
            for (int64_t k = 0; k < K; k++) {
                const float lp = s[k] + log_const[k];
                s[k] = lp;
                mx = lp > mx ? lp : mx;
                const float term = quad_const[k] - lp; // ½ Σ (x − μ)²/σ², as evaluated
                const float err = err_slope[k] * xn + err_offset[k];
                cancelled += may_have_cancelled(err, term) ? 1 : 0;
            }
        }
        if (cancelled && a.block) mx = refine_row(a, i);
        // Sweep 2: exp(log p − max), summed.
        const float sum = use_avx2 ? detail::exp_shifted_sum_avx2(s, mx, kDrop, K, e)
                                   : detail::exp_shifted_sum(s, mx, kDrop, K, e);
        const float lse = mx + std::log(sum);
        a.loglik_out[i] = lse;
        if (a.log_resp_out) {
            // log r_k = log p(x, k) − log p(x), without the drop threshold.
            float* __restrict out = a.log_resp_out + i * K;
#pragma omp simd
            for (int64_t k = 0; k < K; k++) out[k] = s[k] - lse;
            continue;
        }
        // Sweep 3: responsibilities into s, counting the non-zero ones.
        const float inv = 1.0f / sum;
        int64_t row_nnz = 0;
#pragma omp simd reduction(+ : row_nnz)
        for (int64_t k = 0; k < K; k++) {
            const float r = e[k] * inv;
            s[k] = r;
            row_nnz += r > 0.0f ? 1 : 0;
        }
        nnz += row_nnz;
    }
    return nnz;
}

FAISS_GMM_TARGET_AVX2 int64_t fused_pass_avx2(const FusedPassArgs& a) { return fused_pass_body(a, true); }
int64_t fused_pass_baseline(const FusedPassArgs& a) { return fused_pass_body(a, false); }

int64_t fused_pass(const FusedPassArgs& a) {
    return detail::cpu_has_avx2_fma() ? fused_pass_avx2(a) : fused_pass_baseline(a);
}

/// Dense accumulation of a block's N_k and (spherical) Σ r‖x − μ_k‖², in float
/// over the block's rows (at most a few hundred terms each), added to the
/// thread's double accumulators by the caller.
FAISS_GMM_ALWAYS_INLINE void sum_dense_weights_body(int64_t B, int64_t K, const float* resp, const float* d2,
                                                    float* __restrict block_nk, float* __restrict block_sq) {
    for (int64_t i = 0; i < B; i++) {
        const float* __restrict r = resp + i * K;
#pragma omp simd
        for (int64_t k = 0; k < K; k++) block_nk[k] += r[k];
        if (d2) {
            const float* __restrict dist = d2 + i * K;
#pragma omp simd
            for (int64_t k = 0; k < K; k++) block_sq[k] += r[k] * dist[k];
        }
    }
}

FAISS_GMM_TARGET_AVX2 void sum_dense_weights_avx2(int64_t B, int64_t K, const float* resp, const float* d2,
                                                  float* block_nk, float* block_sq) {
    sum_dense_weights_body(B, K, resp, d2, block_nk, block_sq);
}
void sum_dense_weights_baseline(int64_t B, int64_t K, const float* resp, const float* d2, float* block_nk,
                                float* block_sq) {
    sum_dense_weights_body(B, K, resp, d2, block_nk, block_sq);
}

/// The non-zero responsibilities of a block (rows × K) as lists: component,
/// value, and where each row's entries end. Branch-free; nz_k / nz_r must have
/// room for nnz + 1 entries.
void list_nonzeros(int64_t B, int64_t K, const float* resp, int* nz_k, float* nz_r, int* nz_row_end) {
    int64_t t = 0;
    for (int64_t i = 0; i < B; i++) {
        const float* r = resp + i * K;
        for (int64_t k = 0; k < K; k++) {
            nz_k[t] = int(k);
            nz_r[t] = r[k];
            t += r[k] > 0.0f ? 1 : 0;
        }
        nz_row_end[i] = int(t);
    }
}

/// Sparse accumulation: each listed (row, k) adds r·x to Σ r x and r·(x − μ_k)²
/// to the second moment, the latter computed directly rather than from
/// ‖x‖² − 2x·μ + ‖μ‖², which cancels for rows close to their mean. Its cost is
/// the d-long double loops, hence the AVX2 build.
FAISS_GMM_ALWAYS_INLINE void accumulate_sparse_body(int64_t B, int64_t d, int64_t D, bool spherical,
                                                    const float* features, const float* means, const int* nz_k,
                                                    const float* nz_r, const int* nz_row_end, double* sum_x,
                                                    double* sum_sq) {
    int64_t t = 0;
    for (int64_t i = 0; i < B; i++) {
        const float* __restrict x = features + i * D;
        for (; t < nz_row_end[i]; t++) {
            const int64_t k = nz_k[t];
            const double r = nz_r[t];
            const float* __restrict mu = means + k * d;
            double* __restrict sx = sum_x + k * d;
#pragma omp simd
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
                double* __restrict sq = sum_sq + k * d;
#pragma omp simd
                for (int64_t j = 0; j < d; j++) {
                    const double diff = double(x[j]) - mu[j];
                    sq[j] += r * diff * diff;
                }
            }
        }
    }
}

FAISS_GMM_TARGET_AVX2 void accumulate_sparse_avx2(int64_t B, int64_t d, int64_t D, bool spherical,
                                                  const float* features, const float* means, const int* nz_k,
                                                  const float* nz_r, const int* nz_row_end, double* sum_x,
                                                  double* sum_sq) {
    accumulate_sparse_body(B, d, D, spherical, features, means, nz_k, nz_r, nz_row_end, sum_x, sum_sq);
}
void accumulate_sparse_baseline(int64_t B, int64_t d, int64_t D, bool spherical, const float* features,
                                const float* means, const int* nz_k, const float* nz_r, const int* nz_row_end,
                                double* sum_x, double* sum_sq) {
    accumulate_sparse_body(B, d, D, spherical, features, means, nz_k, nz_r, nz_row_end, sum_x, sum_sq);
}

/// z = √r (x − μ) (d floats): a row's factor in Σ r (x − μ)(x − μ)ᵀ = Σ z zᵀ.
inline void scaled_difference(const float* x, const float* mu, float r, int64_t d, float* z) {
    const float sr = std::sqrt(r);
    for (int64_t j = 0; j < d; j++) z[j] = sr * (x[j] - mu[j]);
}

} // namespace

void EStepCpu::process_block(const VectorBlock& rows, Workspace& ws, float* log_resp, float* loglik) const {
    const int64_t B = rows.n, K = model_.K, d = model_.d;
    const bool spherical = model_.covariance_type == CovarianceType::Spherical;
    const bool full = model_.covariance_type == CovarianceType::Full;
    const int64_t D = model_.covariance_type == CovarianceType::Diagonal ? 2 * d : d;
    ws.features.resize(size_t(B) * D);
    ws.sqnorm.resize(B);
    ws.scores.resize(size_t(B) * K);
    if (spherical || full) ws.d2.resize(size_t(B) * K);
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
        if (D == 2 * d) {
            for (int64_t j = 0; j < d; j++) f[d + j] = f[j] * f[j];
        }
    }

    if (!full) {
        detail::gemm_abt(int(B), int(K), int(D), ws.features.data(), gemm_weights_.data(), ws.scores.data());
    }

    if (!loglik) {
        ws.loglik.resize(B);
        loglik = ws.loglik.data();
    }
    ws.row_buf.resize(d);
    FusedPassArgs args{B,
                       K,
                       spherical,
                       full,
                       log_const_.data(),
                       mean_sqnorm_.data(),
                       inv_two_var_.data(),
                       ws.sqnorm.data(),
                       ws.scores.data(),
                       ws.d2.data(),
                       ws.expbuf.data(),
                       loglik,
                       log_resp,
                       &rows,
                       d,
                       exact_.err_slope.data(),
                       exact_.err_offset.data(),
                       exact_.exact_const.data(),
                       exact_.quad_const.data(),
                       exact_.exact_means.data(),
                       exact_.exact_inv_var.data(),
                       full ? gemm_weights_.data() : nullptr,
                       full_group_,
                       band_offset_.data(),
                       ws.row_buf.data()};
    if (full) {
        // One group of components at a time: its product stays in cache.
        ws.proj.resize(size_t(B) * full_group_ * d);
        ws.full_cancelled.assign(B, 0);
        const auto group_pass =
                detail::cpu_has_avx2_fma() ? full_group_log_densities_avx2 : full_group_log_densities_baseline;
        for (int64_t k0 = 0; k0 < K; k0 += full_group_) {
            const int64_t ng = std::min(full_group_, K - k0);
            full_group_product(B, k0, ng, ws);
            group_pass(args, k0, ng, ws.proj.data(), mean_proj_.data(), band_end_.data(),
                       int64_t(band_end_.size()), ws.full_cancelled.data());
        }
        refine_full_rows(args, ws.full_cancelled.data());
    }
    const int64_t nnz = fused_pass(args);
    if (log_resp) return; // log_responsibilities(): no statistics

    ThreadStats& acc = ws.stats;
    acc.n += double(B);
    for (int64_t i = 0; i < B; i++) acc.loglik += double(loglik[i]);
    if (full) {
        accumulate_full_block(B, ws);
        return;
    }

    if (B * K < kMinDensePairs || nnz * kDenseFractionDenominator < B * K) {
        // Sparse: lists of the non-zero responsibilities.
        ws.nz_k.resize(nnz + 1);
        ws.nz_r.resize(nnz + 1);
        ws.nz_row_end.resize(B);
        list_nonzeros(B, K, ws.scores.data(), ws.nz_k.data(), ws.nz_r.data(), ws.nz_row_end.data());
        for (int64_t t = 0; t < nnz; t++) acc.nk[ws.nz_k[t]] += double(ws.nz_r[t]);
        (detail::cpu_has_avx2_fma() ? accumulate_sparse_avx2 : accumulate_sparse_baseline)(
                B, d, D, spherical, ws.features.data(), model_.means.data(), ws.nz_k.data(), ws.nz_r.data(),
                ws.nz_row_end.data(), acc.sum_x.data(), acc.sum_sq.data());
        return;
    }

    // Dense: N_k (and Σ r‖x − μ‖²) by a pass over R, Rᵀ · features by sgemm.
    ws.block_nk.assign(K, 0.0f);
    ws.block_sq.assign(spherical ? K : 0, 0.0f);
    (detail::cpu_has_avx2_fma() ? sum_dense_weights_avx2 : sum_dense_weights_baseline)(
            B, K, ws.scores.data(), spherical ? ws.d2.data() : nullptr, ws.block_nk.data(), ws.block_sq.data());
    for (int64_t k = 0; k < K; k++) acc.nk[k] += double(ws.block_nk[k]);
    if (spherical) {
        for (int64_t k = 0; k < K; k++) acc.sum_sq[k] += double(ws.block_sq[k]);
    }
    ws.gemm_out.resize(size_t(K) * D);
    detail::gemm_atb(int(K), int(D), int(B), ws.scores.data(), ws.features.data(), ws.gemm_out.data());
    for (int64_t k = 0; k < K; k++) {
        const float* g = ws.gemm_out.data() + k * D;
        double* sx = acc.sum_x.data() + k * d;
        for (int64_t j = 0; j < d; j++) sx[j] += g[j];
        if (!spherical) {
            // Second moment about μ_k from Σ r x and Σ r x²: needs this block's N_k.
            const float* mu = model_.means.data() + k * d;
            double* sq = acc.sum_sq.data() + k * d;
            const double nk = ws.block_nk[k];
            for (int64_t j = 0; j < d; j++) {
                const double m = mu[j];
                sq[j] += double(g[d + j]) - 2.0 * m * double(g[j]) + nk * m * m;
            }
        }
    }
}

void EStepCpu::accumulate_full_block(int64_t B, Workspace& ws) const {
    const int64_t K = model_.K, d = model_.d, nsq = SufficientStats::nsq_of(CovarianceType::Full, d);
    ThreadStats& acc = ws.stats;
    const float* resp = ws.scores.data();
    // N_k by a pass over R, Σ r x by sgemm (Rᵀ · features), in float over the block.
    ws.block_nk.assign(K, 0.0f);
    (detail::cpu_has_avx2_fma() ? sum_dense_weights_avx2 : sum_dense_weights_baseline)(
            B, K, resp, nullptr, ws.block_nk.data(), nullptr);
    ws.gemm_out.resize(size_t(K) * d);
    detail::gemm_atb(int(K), int(d), int(B), resp, ws.features.data(), ws.gemm_out.data());
    for (int64_t k = 0; k < K; k++) {
        acc.nk[k] += double(ws.block_nk[k]);
        for (int64_t j = 0; j < d; j++) acc.sum_x[k * d + j] += double(ws.gemm_out[k * d + j]);
    }
    if (ws.defer_full_pairs) {
        for (int64_t i = 0; i < B; i++) {
            for (int64_t k = 0; k < K; k++) {
                const float r = resp[i * K + k];
                if (!(r > 0.0f)) continue;
                ws.pair_row.push_back(int32_t(ws.pair_row0 + i));
                ws.pair_k.push_back(int32_t(k));
                ws.pair_r.push_back(r);
            }
        }
        return;
    }
    // Σ r (x − μ_k)(x − μ_k)ᵀ about the E-step's means (no cancellation in the
    // M-step): per component, the rows that carry its responsibility scaled by √r,
    // then one syrk. Cost ∝ the non-zero responsibilities, usually a few per row.
    ws.zbuf.resize(size_t(B) * d);
    for (int64_t k = 0; k < K; k++) {
        const float* mu = model_.means.data() + k * d;
        int64_t m = 0;
        for (int64_t i = 0; i < B; i++) {
            const float r = resp[i * K + k];
            if (!(r > 0.0f)) continue;
            scaled_difference(ws.features.data() + i * d, mu, r, d, ws.zbuf.data() + m * d);
            m++;
        }
        add_second_moment_of_rows(m, ws, acc.sum_sq.data() + k * nsq);
    }
}

void EStepCpu::add_second_moment_of_rows(int64_t m, Workspace& ws, double* sq) const {
    if (m == 0) return;
    const int64_t d = model_.d;
    ws.syrk_out.resize(size_t(d) * d);
    detail::syrk_ata_upper(int(d), int(m), ws.zbuf.data(), ws.syrk_out.data());
    for (int64_t a = 0; a < d; a++) {
        const float* c = ws.syrk_out.data() + a * d;
        for (int64_t b = a; b < d; b++) sq[SufficientStats::sq_index(a, b, d)] += double(c[b]);
    }
}

void EStepCpu::sort_pairs(Workspace& ws, ListedPairs& out) const {
    const int64_t K = model_.K, npairs = int64_t(ws.pair_r.size());
    pairs_seen_ += npairs;
    // Counting sort by component; stable, so each component's rows stay in row order.
    ws.pair_start.assign(size_t(K) + 1, 0);
    for (int64_t t = 0; t < npairs; t++) ws.pair_start[size_t(ws.pair_k[t]) + 1]++;
    for (int64_t k = 0; k < K; k++) ws.pair_start[k + 1] += ws.pair_start[k];
    out.k.resize(size_t(npairs));
    out.row.resize(size_t(npairs));
    out.r.resize(size_t(npairs));
    for (int64_t t = 0; t < npairs; t++) {
        const size_t to = size_t(ws.pair_start[ws.pair_k[t]]++);
        out.k[to] = ws.pair_k[t];
        out.row[to] = uint16_t(ws.pair_row[t]);
        out.r[to] = ws.pair_r[t];
    }
    out.cuts.clear();
    ws.pair_row.clear();
    ws.pair_k.clear();
    ws.pair_r.clear();
}

void EStepCpu::deposit_listed(const VectorBlock& block, const ListedPairs& pairs, int64_t k0, StatsAccumulator& acc,
                              std::mutex& deposit, Workspace& ws) const {
    const int64_t d = model_.d, nsq = SufficientStats::nsq_of(CovarianceType::Full, d);
    const auto first = std::lower_bound(pairs.k.begin(), pairs.k.end(), int32_t(k0));
    const auto last = std::lower_bound(first, pairs.k.end(), int32_t(k0 + acc.K()));
    const int64_t t_end = last - pairs.k.begin();
    ws.zbuf.resize(size_t(block_size_) * d);
    ws.row_buf.resize(d);
    ws.moment.resize(size_t(nsq));
    for (int64_t t = first - pairs.k.begin(); t < t_end;) {
        // [t, u): component k's pairs up to the block's next cut, one deposit.
        const int32_t k = pairs.k[t];
        const auto cut = std::upper_bound(pairs.cuts.begin(), pairs.cuts.end(), int32_t(pairs.row[t]));
        const int64_t row_end = cut == pairs.cuts.end() ? INT64_MAX : *cut;
        int64_t u = t;
        while (u < t_end && pairs.k[u] == k && pairs.row[u] < row_end) u++;
        const float* mu = model_.means.data() + k * d;
        std::fill(ws.moment.begin(), ws.moment.end(), 0.0);
        // One syrk per sub-block of block_size_ rows, in order, as accumulate_full_block
        // does: the same products and the same double sums as the non-deferred path.
        while (t < u) {
            const int64_t sub = pairs.row[t] / block_size_;
            int64_t m = 0;
            for (; t < u && pairs.row[t] / block_size_ == sub; t++, m++) {
                float* x = ws.row_buf.data();
                block.row_to_float(pairs.row[t], x);
                for (int64_t j = 0; j < d; j++) x[j] -= center_[j]; // as process_block's features
                scaled_difference(x, mu, pairs.r[t], d, ws.zbuf.data() + m * d);
            }
            add_second_moment_of_rows(m, ws, ws.moment.data());
        }
        std::lock_guard<std::mutex> lock(deposit);
        acc.add_second_moment(k - k0, ws.moment.data());
    }
}

void EStepCpu::flush_full_pairs(const VectorBlock& rows, Workspace& ws, StatsAccumulator& acc,
                                std::mutex& deposit) const {
    sort_pairs(ws, ws.sorted);
    deposit_listed(rows, ws.sorted, 0, acc, deposit, ws);
}

void EStepCpu::check_call(const VectorBlock& rows, int64_t K, int64_t d, CovarianceType type) const {
    if (model_.K == 0) throw std::logic_error("EStepCpu::accumulate called before set_model");
    if (rows.d != model_.d) {
        throw std::invalid_argument("EStepCpu: rows have dimension " + std::to_string(rows.d) +
                                    ", the model has " + std::to_string(model_.d));
    }
    if (K != model_.K || d != model_.d || type != model_.covariance_type) {
        throw std::invalid_argument("EStepCpu: statistics shape does not match the model");
    }
}

template <class Start, class Block>
void EStepCpu::for_each_block(int64_t nblocks, Start start, Block block) {
    const int nt = int(std::min<int64_t>(nthreads_, nblocks));
    reserve_workspaces(nt);
    detail::SingleThreadedBlas single_threaded_blas;
    std::string error;
#pragma omp parallel num_threads(nt)
    {
        Workspace& ws = workspace(omp_get_thread_num());
        start(ws);
        // Static round-robin over blocks: the same blocks go to the same thread
        // for a given thread count, which makes accumulate()'s sums deterministic.
#pragma omp for schedule(static, 1)
        for (int64_t b = 0; b < nblocks; b++) {
            try {
                block(ws, b);
            } catch (const std::exception& ex) {
#pragma omp critical
                error = ex.what();
            }
        }
    }
    if (!error.empty()) throw std::runtime_error("EStepCpu: " + error);
}

void EStepCpu::accumulate(const VectorBlock& rows, SufficientStats& stats) {
    check_call(rows, stats.K, stats.d, stats.covariance_type);
    if (rows.n == 0) return;
    const int64_t nblocks = (rows.n + block_size_ - 1) / block_size_;
    for_each_block(
            nblocks,
            [&](Workspace& ws) {
                ws.stats.reset(model_.K, model_.d, model_.covariance_type);
                ws.defer_full_pairs = false;
            },
            [&](Workspace& ws, int64_t b) {
                const int64_t i0 = b * block_size_;
                process_block(rows.slice(i0, std::min<int64_t>(block_size_, rows.n - i0)), ws, nullptr, nullptr);
            });
    for (int64_t t = 0; t < std::min<int64_t>(nthreads_, nblocks); t++) stats.add(workspace(int(t)).stats);
}

void EStepCpu::accumulate_reproducible(const VectorBlock& rows, StatsAccumulator& acc) {
    check_call(rows, acc.K(), acc.d(), acc.covariance_type());
    const bool full = model_.covariance_type == CovarianceType::Full;
    if (listing_) {
        if (acc.with_second_moments()) {
            throw std::invalid_argument("EStepCpu: while listing (walk 1 of two), the accumulator must hold no "
                                        "second moments");
        }
        listed_.emplace_back();
        listed_rows_.push_back(rows.n);
    } else if (full && !acc.with_second_moments()) {
        throw std::invalid_argument("EStepCpu: an accumulator without second moments needs begin_listing()");
    }
    if (rows.n == 0) return;
    // A block's partial is computed by one thread, in the same sub-blocks,
    // whatever the thread count, and added exactly: any thread may take it, and
    // the deposits may come in any order, so they go straight into acc (under a
    // lock: a deposit is a few ms next to a block's E-step) rather than into
    // per-thread copies of its limbs (4 limbs + scales per value: 100 MiB a
    // copy for full covariances at K = 256, d = 128).
    //
    // Full covariances: the block's second moments (K·d(d+1)/2 doubles, 16 MiB at K = 256,
    // d = 128) are not held per thread either. The block's non-zero responsibilities are
    // listed while its sub-blocks run, then each component's second moment is summed
    // over the listed rows (one syrk per sub-block, as accumulate() does) and deposited
    // on its own. A dense block lists up to R·K pairs: past kFullDeferredPairs the list
    // is flushed after the sub-block that crossed it. Where the flushes fall depends on
    // the block's rows alone, so the deposits are still a function of the block. While
    // listing, the lists are kept for walk 2 instead, with the flushes' places as cuts.
    const int64_t R = kReproducibleBlockRows;
    const int64_t nblocks = (rows.n + R - 1) / R;
    static_assert(kReproducibleBlockRows <= 65536, "ListedPairs::row is 16-bit");
    std::vector<ListedPairs>* listed = listing_ ? &listed_.back() : nullptr;
    if (listed) listed->resize(size_t(nblocks));
    std::mutex deposit;
    for_each_block(
            nblocks, [&](Workspace& ws) { ws.defer_full_pairs = full; },
            [&](Workspace& ws, int64_t b) {
                if (listed && listing_overflowed_.load()) return; // walk 1 is to be redone: no more work
                const int64_t r0 = b * R, rn = std::min<int64_t>(R, rows.n - r0);
                const VectorBlock block = rows.slice(r0, rn);
                ws.stats.reset(model_.K, model_.d, model_.covariance_type, !full);
                ws.pair_row.clear();
                ws.pair_k.clear();
                ws.pair_r.clear();
                ws.pairs_at_cut = 0;
                ws.cuts.clear();
                for (int64_t i0 = 0; i0 < rn; i0 += block_size_) {
                    ws.pair_row0 = i0;
                    const int64_t sub = std::min<int64_t>(block_size_, rn - i0);
                    process_block(block.slice(i0, sub), ws, nullptr, nullptr);
                    if (full && int64_t(ws.pair_r.size()) - ws.pairs_at_cut >= kFullDeferredPairs) {
                        if (!listed) {
                            flush_full_pairs(block, ws, acc, deposit);
                        } else if (i0 + sub < rn) {
                            ws.cuts.push_back(int32_t(i0 + sub));
                            ws.pairs_at_cut = int64_t(ws.pair_r.size());
                        }
                    }
                }
                if (listed) {
                    ListedPairs& out = (*listed)[size_t(b)];
                    sort_pairs(ws, out);
                    out.cuts = ws.cuts;
                    const int64_t n = int64_t(out.k.size());
                    if (listed_pairs_.fetch_add(n) + n > max_listed_pairs_) listing_overflowed_ = true;
                } else if (full) {
                    flush_full_pairs(block, ws, acc, deposit);
                }
                std::lock_guard<std::mutex> lock(deposit);
                if (full) {
                    acc.add_first_moments(ws.stats);
                } else {
                    acc.add(ws.stats);
                }
            });
}

bool EStepCpu::can_list_responsibilities() const {
    return model_.covariance_type == CovarianceType::Full && model_.K > 0;
}

void EStepCpu::begin_listing(int64_t max_pairs) {
    if (!can_list_responsibilities()) {
        throw std::logic_error("EStepCpu::begin_listing: needs a model with full covariances (set_model first)");
    }
    end_listing();
    listing_ = true;
    max_listed_pairs_ = std::max<int64_t>(max_pairs, 0);
}

void EStepCpu::end_listing() {
    listing_ = false;
    listing_overflowed_ = false;
    listed_pairs_ = 0;
    std::vector<std::vector<ListedPairs>>().swap(listed_);
    std::vector<int64_t>().swap(listed_rows_);
}

int64_t EStepCpu::responsibilities_seen() const {
    return model_.covariance_type == CovarianceType::Full ? pairs_seen_.load() : -1;
}

void EStepCpu::accumulate_listed_second_moments(int64_t call, const VectorBlock& rows, int64_t k0,
                                                StatsAccumulator& acc) {
    if (!listing_ || listing_overflowed_.load()) {
        throw std::logic_error("EStepCpu::accumulate_listed_second_moments: no complete listing (begin_listing, "
                               "then walk 1 without overflow)");
    }
    if (call < 0 || call >= int64_t(listed_.size())) {
        throw std::out_of_range("EStepCpu::accumulate_listed_second_moments: call " + std::to_string(call) +
                                " of walk 1's " + std::to_string(listed_.size()));
    }
    if (rows.n != listed_rows_[size_t(call)] || rows.d != model_.d) {
        throw std::invalid_argument("EStepCpu::accumulate_listed_second_moments: call " + std::to_string(call) +
                                    " had " + std::to_string(listed_rows_[size_t(call)]) + " rows in walk 1, got " +
                                    std::to_string(rows.n) + " (of dimension " + std::to_string(rows.d) + ")");
    }
    if (acc.covariance_type() != CovarianceType::Full || acc.d() != model_.d || !acc.with_second_moments() ||
        k0 < 0 || k0 + acc.K() > model_.K) {
        throw std::invalid_argument("EStepCpu::accumulate_listed_second_moments: the accumulator's components [" +
                                    std::to_string(k0) + ", " + std::to_string(k0 + acc.K()) +
                                    ") are not full covariances of the model's");
    }
    const std::vector<ListedPairs>& listed = listed_[size_t(call)];
    const int64_t R = kReproducibleBlockRows;
    std::mutex deposit;
    for_each_block(
            int64_t(listed.size()), [](Workspace&) {},
            [&](Workspace& ws, int64_t b) {
                const int64_t r0 = b * R;
                deposit_listed(rows.slice(r0, std::min<int64_t>(R, rows.n - r0)), listed[size_t(b)], k0, acc,
                               deposit, ws);
            });
}

void EStepCpu::log_responsibilities(const VectorBlock& rows, float* log_resp, float* loglik) {
    if (model_.K == 0) throw std::logic_error("EStepCpu::log_responsibilities called before set_model");
    if (rows.d != model_.d) {
        throw std::invalid_argument("EStepCpu: rows have dimension " + std::to_string(rows.d) +
                                    ", the model has " + std::to_string(model_.d));
    }
    const int64_t nblocks = (rows.n + block_size_ - 1) / block_size_;
    const int nt = int(std::min<int64_t>(nthreads_, std::max<int64_t>(nblocks, 1)));
    reserve_workspaces(nt);
    detail::SingleThreadedBlas single_threaded_blas;
#pragma omp parallel num_threads(nt)
    {
        Workspace& ws = workspace(omp_get_thread_num());
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
