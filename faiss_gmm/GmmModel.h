// The mixture itself: weights, means and variances of K Gaussian components in
// dimension d, spherical or diagonal. This is the one place where the GMM
// log-density is defined; the CPU and CUDA E-steps and the tests all use it.
// Nothing here depends on FAISS.
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
    std::vector<float> variances;   ///< K (spherical) or K * d (diagonal), all > 0

    GmmModel() = default;
    GmmModel(int64_t K, int64_t d, CovarianceType type); ///< uniform weights, zero means, unit variances

    /// Variances stored per component: 1 (spherical) or d (diagonal).
    int64_t nvar() const { return covariance_type == CovarianceType::Spherical ? 1 : d; }
    /// σ²_kj, for either covariance type.
    float variance(int64_t k, int64_t j) const {
        return variances[covariance_type == CovarianceType::Spherical ? k : k * d + j];
    }

    /// Throws std::invalid_argument unless sizes match K and d, every value is
    /// finite, every variance is > 0 and the weights sum to 1 (within 1e-3).
    void validate() const;

    /// THE definition of the component log-density, in double precision:
    ///   log p(x, k) = log w_k - 1/2 Σ_j [ log(2π σ²_kj) + (x_j - μ_kj)² / σ²_kj ]
    /// x has d entries, already in the model's frame. Used by the reference E-step
    /// and the tests; the fast backends evaluate algebraically equal forms.
    double log_joint(const double* x, int64_t k) const;

    /// Constant part of log p(x, k) for the expanded forms used by the fast E-steps:
    ///   spherical: log p(x,k) = c_k - ‖x − μ_k‖² / (2σ²_k),   c_k = log w_k − d/2 · log(2π σ²_k)
    ///   diagonal:  log p(x,k) = c_k + Σ_j x_j μ_kj/σ²_kj − Σ_j x_j²/(2σ²_kj),
    ///              c_k = log w_k − 1/2 Σ_j [log(2π σ²_kj) + μ²_kj/σ²_kj]
    /// Computed in double, returned as K values.
    std::vector<double> log_constants() const;

    /// The same model with means shifted by +offset (d values): used to move a
    /// model trained on centered data back to the data's frame.
    GmmModel translated(const float* offset) const;
};

} // namespace faiss_gmm
