// The mixture itself: weights, means and variances of K Gaussian components in
// dimension d, spherical, diagonal or full. This is the one place where the GMM
// log-density is defined; the CPU and CUDA E-steps and the tests all use it.
// Nothing here depends on FAISS.
//
// Full covariances are stored as the Cholesky factor of each precision matrix,
// the form the log-density needs (scikit-learn's `precisions_cholesky_`, same
// convention): U_k upper triangular with U_k U_kᵀ = Σ_k⁻¹, so that
//   log p(x, k) = log w_k − d/2 log 2π + Σ_j log U_k,jj − ½ ‖(x − μ_k)ᵀ U_k‖².
// They live in `variances` (K · d · d values, row-major per component): the one
// array of covariance parameters every serializer (gmm_io, checkpoints, the
// broadcast, Python's pickle) already carries.
#pragma once

#include <cstdint>
#include <vector>

#include "GmmParams.h"

namespace faiss_gmm {

struct GmmModel {
    int64_t K = 0;
    int64_t d = 0;
    CovarianceType covariance_type = CovarianceType::Spherical;
    std::vector<float> log_weights; ///< K entries, log of the mixing weights (sum of weights = 1)
    std::vector<float> means;       ///< K * d, row-major
    /// The covariance parameters: K variances (spherical), K × d (diagonal), all > 0;
    /// full: K × d × d, U_k (upper triangular, positive diagonal) with U_k U_kᵀ = Σ_k⁻¹.
    std::vector<float> variances;

    GmmModel() = default;
    GmmModel(int64_t K, int64_t d, CovarianceType type); ///< uniform weights, zero means, unit (co)variances

    /// Covariance parameters stored per component: 1 (spherical), d (diagonal) or d² (full).
    int64_t nvar() const { return nvar_of(covariance_type, d); }
    static int64_t nvar_of(CovarianceType type, int64_t d) {
        return type == CovarianceType::Spherical ? 1 : type == CovarianceType::Diagonal ? d : d * d;
    }
    /// σ²_kj = Σ_k,jj, for every covariance type (full: computed from U_k, O(d²)).
    double variance(int64_t k, int64_t j) const;
    /// Full only: U_k, d × d row-major (see the top of this file).
    const float* precision_cholesky(int64_t k) const { return variances.data() + k * d * d; }

    /// Σ_k as a d × d row-major matrix in double, for every covariance type
    /// (full: (U_k U_kᵀ)⁻¹ through the inverse of the triangular factor).
    std::vector<double> covariance(int64_t k) const;
    /// Full only: sets component k from its covariance Σ (d × d row-major, symmetric;
    /// only the upper triangle is read): U_k = R⁻¹ with Σ = RᵀR (Cholesky), in double.
    /// eigen_floor > 0 is the variance floor of the other types applied to Σ's
    /// eigenvalues (Σ's variances along its principal axes): eigenvalues below it are
    /// raised to it, and the count of those is returned. The eigendecomposition
    /// (Jacobi, O(d³)) runs only when Σ is not positive definite or the cheap bound
    /// λ_min(Σ) >= 1/‖U‖_F² does not already clear the floor.
    /// Throws std::invalid_argument naming the component when Σ is not positive
    /// definite (and no floor makes it so) or its factor is not representable in float32.
    int set_covariance(int64_t k, const double* cov, double eigen_floor = 0);

    /// Full only: the factors side by side for the blocked E-steps (CPU sgemm, CUDA GEMM and fused
    /// kernel): w = (K·d) × d, row k·d + j = column j of U_k (zero below its diagonal), so that the
    /// rows' projections (x − c)ᵀU_k of every component are one product; mean_proj = μ_kᵀU_k (K·d,
    /// summed in double, then rounded).
    void stacked_precision_factors(std::vector<float>& w, std::vector<float>& mean_proj) const;
    /// Full only: mean_proj = μ_kᵀU_k alone (K·d, summed in double, then rounded), for a
    /// backend that lays the factors out itself.
    void precision_mean_projections(std::vector<float>& mean_proj) const;

    /// Throws std::invalid_argument unless sizes match K and d, every value is
    /// finite, every variance is > 0 (full: U_k upper triangular with a positive
    /// diagonal) and the weights sum to 1 (within 1e-3).
    void validate() const;

    /// THE definition of the component log-density, in double precision:
    ///   log p(x, k) = log w_k - 1/2 Σ_j [ log(2π σ²_kj) + (x_j - μ_kj)² / σ²_kj ]
    ///   full: log w_k − d/2 log 2π + Σ_j log U_k,jj − ½ Σ_j ((x − μ_k)ᵀ U_k)_j²
    /// x has d entries, already in the model's frame. Used by the reference E-step
    /// and the tests; the fast backends evaluate algebraically equal forms.
    double log_joint(const double* x, int64_t k) const;

    /// Constant part of log p(x, k) for the expanded forms used by the fast E-steps:
    ///   spherical: log p(x,k) = c_k - ‖x − μ_k‖² / (2σ²_k),   c_k = log w_k − d/2 · log(2π σ²_k)
    ///   diagonal:  log p(x,k) = c_k + Σ_j x_j μ_kj/σ²_kj − Σ_j x_j²/(2σ²_kj),
    ///              c_k = log w_k − 1/2 Σ_j [log(2π σ²_kj) + μ²_kj/σ²_kj]
    ///   full:      log p(x,k) = c_k − ½ ‖(x − μ_k)ᵀ U_k‖²,  c_k = log w_k − d/2 log 2π + Σ_j log U_k,jj
    /// Computed in double, returned as K values.
    std::vector<double> log_constants() const;

    /// The same model with means shifted by +offset (d values): used to move a
    /// model trained on centered data back to the data's frame.
    GmmModel translated(const float* offset) const;
    /// The same in place (no copy of the covariance parameters).
    void translate(const float* offset);
};

} // namespace faiss_gmm
