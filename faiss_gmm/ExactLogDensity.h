// Exact log-densities where the fast E-steps' expanded form may have cancelled
// (issue 13, item 4): the one definition the CPU backend (EStepCpu) and the CUDA
// backend (gpu/) share. The fast E-steps evaluate log p(x, k) from
// ‖x‖² − 2x·μ + ‖μ‖² (spherical) or x·(μ/σ²) − ½x²·(1/σ²) − ½Σμ²/σ² (diagonal) in
// float32, which cancels when σ² is far below ‖x‖²·2^-24 (a component collapsed onto
// a row, a narrow component far from the center). Here: a bound of that float32
// error per component, the per-row test that sends a (row, component) pair to an
// exact recomputation in double in the rows' own frame, and the per-model test of
// which components are narrow enough for the CUDA backend to run its refining path.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "GmmModel.h"

#if defined(__CUDACC__)
#define FAISS_GMM_HOST_DEVICE __host__ __device__
#else
#define FAISS_GMM_HOST_DEVICE
#endif

namespace faiss_gmm {

/// log p(x, k) is recomputed in double from Σ_j (x_j − μ_kj)²/σ²_kj for every
/// component whose float32 value may be off by more than this many nats ...
constexpr float kRefineTolerance = 1e-6f;
/// ... and whose bound exceeds this fraction of its quadratic term ½ Σ (x − μ)²/σ²
/// (the expanded form has cancelled). Below it, the float32 evaluation is the
/// E-step's ordinary accuracy.
constexpr float kRefineRelative = 1e-4f;
/// ... and that may carry a responsibility above ~1e-7 (its log-density, plus its
/// error bound, is within this many nats of the row's best lower bound): a
/// responsibility then moves by at most ~2·kRefineTolerance.
constexpr float kRefineWindow = 16.2f; // log(1e7)

/// The per-(row, component) test: the error bound `err` (nats) of the float32
/// log-density exceeds kRefineTolerance and kRefineRelative of the quadratic term
/// `term` (= the float32 quad_const − log p). Branch-free (vectorizes on the CPU).
FAISS_GMM_HOST_DEVICE inline bool may_have_cancelled(float err, float term) {
    return (err > kRefineTolerance) & (err > kRefineRelative * term);
}

/// Full covariances: the fast E-step evaluates y = (x − c)ᵀU_k − μ_kᵀU_k (one
/// float32 GEMM, the second term precomputed in double and rounded) and ½‖y‖².
/// The subtraction cancels when ‖y‖ is far below ‖x − c‖·‖U_k‖. With u = 2^-24,
/// γ_n = nu/(1 − nu) and ‖·‖_F the Frobenius norm, each y_j is off by at most
///   (γ_{d+1} ‖x − c‖ + u ‖μ_k‖)(1 + u) ‖U_k,:j‖ + u |y_j|
/// (d products of the float row — itself rounded once when centered — summed in any
/// order, Cauchy–Schwarz on Σ_i |x_i||U_ij|; μ_kᵀU_k rounded once; the subtraction
/// rounded once), so ‖ŷ − y‖ <= a + u‖y‖ with a = slope·‖x − c‖ + offset
/// (ExactLogDensity::err_slope, err_offset for full models). Then
///   |½‖ŷ‖² − ½‖y‖²| <= ‖ŷ − y‖‖ŷ‖ + ½‖ŷ − y‖²
/// and the float32 sum of d squares adds γ_d of ½‖ŷ‖². This returns that bound
/// (nats) from a and the evaluated term t = ½‖ŷ‖², with (1 + (d + 4)u) covering the
/// u‖y‖ terms and the rounding of t itself. The relative part (≈ (d + 3)u·t) stays
/// below kRefineRelative·t for d < 1600, so only the cancelling part `a` sends a
/// pair to refinement.
FAISS_GMM_HOST_DEVICE inline float full_log_density_error(float a, float t, int64_t d) {
    const float u = 5.9604645e-8f; // 2^-24
    const float grow = 1.0f + float(d + 4) * u;
    const float norm_y = sqrtf(2.0f * t);
    return grow * (a * norm_y + a * a + float(d + 3) * u * t);
}

/// Per component, what the test and the exact recomputation need.
struct ExactLogDensity {
    int64_t K = 0, d = 0;
    bool spherical = true;
    bool full = false;
    /// Spherical and diagonal: |float32 log p(x, k) − exact| <= err_slope[k]·‖x − c‖² +
    /// err_offset[k] (nats), x − c the row in the E-step's (centered) frame. Full: the
    /// bound of ‖ŷ − y‖ is err_slope[k]·‖x − c‖ + err_offset[k] (full_log_density_error).
    std::vector<float> err_slope, err_offset;
    std::vector<double> exact_const; ///< log w_k − ½ Σ_j log(2π σ²_kj), in double
    std::vector<float> quad_const;   ///< the same in float (term = quad_const − log p)
    std::vector<double> exact_means; ///< K × d: μ_k + center (the rows' own frame), in double
    std::vector<double> exact_inv_var; ///< 1/σ²: K (spherical) or K × d; full: empty (the model's float U_k serve)
    std::vector<double> mean_sq;     ///< K: ‖μ_k‖² in the E-step's frame
    std::vector<double> trace_var;   ///< K: Σ_j σ²_kj
};

/// The terms above for a model whose means are in the frame of rows − center
/// (center: d values, or nullptr for none). The bound is that of float32 products
/// summed in float32 (unit roundoff 2^-24): a sum of D = d (spherical) or 2d
/// (diagonal) products has an error below D·u of the sum of their magnitudes, plus
/// the three float additions, and 2|x·μ| <= ‖x‖² + ‖μ‖².
ExactLogDensity exact_log_density(const GmmModel& model, const float* center);

/// A component is narrow when, at a row typical of it (‖x − μ_k‖² = Σ_j σ²_kj, in
/// the direction away from the center: ‖x − c‖ = ‖μ_k‖ + sqrt(Σ_j σ²_kj)), the
/// float32 error bound exceeds this fraction of that row's quadratic term (d/2):
/// the expanded form has lost more than ~7 of float32's 24 bits on the component's
/// own rows (σ² far below ‖μ‖²·2^-24·d: a collapse, or a variance ~1e-6 of the
/// data's far from the center). An ordinary model has none: at d = 128 a component
/// must lie ~200 σ from the center (‖μ‖²/σ² ≳ 4·10^4) to count.
constexpr double kNarrowRelative = 1e-2;

/// The narrow components of a model (ascending indices; empty for ordinary models).
/// Spherical and diagonal only (the CUDA backend's test; its full-covariance path refines nothing):
/// std::invalid_argument for a full model.
/// The CUDA backend refines only models that have some: its fused Hopper kernels
/// never materialize the log-densities, so the test is per model (gpu/EStepCuda.h).
std::vector<int64_t> narrow_components(const ExactLogDensity& e);

} // namespace faiss_gmm
