// The sufficient statistics of one E-step. They are sums over rows, so chunks,
// threads, GPUs and processes combine by adding them (add(), or an allreduce of
// the flat() view). Nothing here depends on FAISS.
#pragma once

#include <cstdint>
#include <vector>

#include "GmmParams.h"

namespace faiss_gmm {

struct GmmModel;

/// Statistics of rows x_n (in the E-step's frame) under the E-step's model, with
/// responsibilities r_nk = p(k | x_n):
struct SufficientStats {
    int64_t K = 0;
    int64_t d = 0;
    CovarianceType covariance_type = CovarianceType::Spherical;

    double n = 0;                ///< number of rows accumulated
    double loglik = 0;           ///< Σ_n log p(x_n)
    std::vector<double> nk;      ///< K:      N_k = Σ_n r_nk
    std::vector<double> sum_x;   ///< K * d:  Σ_n r_nk x_n
    /// Second moment about the E-step model's means μ_k (not the new ones, which
    /// avoids the cancellation of Σ r x² − N μ² in the M-step):
    ///   spherical: K entries      Σ_n r_nk ‖x_n − μ_k‖²
    ///   diagonal:  K * d entries  Σ_n r_nk (x_nj − μ_kj)²
    std::vector<double> sum_sq;

    SufficientStats() = default;
    SufficientStats(int64_t K, int64_t d, CovarianceType type) { reset(K, d, type); }
    void reset(int64_t K, int64_t d, CovarianceType type);
    void clear(); ///< zero every value, keep the shape
    /// Adds other (same shape, else std::invalid_argument).
    void add(const SufficientStats& other);

    /// All values in one array (n, loglik, nk, sum_x, sum_sq), for reductions
    /// (MPI_Allreduce, NCCL, host sums); from_flat() is the inverse.
    std::vector<double> flat() const;
    void from_flat(const double* values, size_t count);
};

/// Float64 brute-force E-step, straight from GmmModel::log_joint: the reference
/// the fast backends are tested against. Rows are used as x − center (center may
/// be nullptr). O(n·K·d) in double; meant for tests and small inputs.
void reference_estep(
        const GmmModel& model,
        const float* center,
        int64_t n,
        const float* x,
        SufficientStats& stats);

} // namespace faiss_gmm
