// Host-only encoding of a GmmModel for the CUDA kernels: the logit coefficients in log2
// units (in double), the Blocked path's fp32 weight matrix, and the Hopper kernels' fp16
// operands (power-of-two scales, hi/lo halves for the accurate kernel, the tiled layout of
// Sm90Kernels.cuh). No CUDA here: tests/gpu/test_model_encoding.cpp checks it on machines
// without a GPU.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "faiss_gmm/ExactLogDensity.h"
#include "faiss_gmm/GmmModel.h"
#include "gpu/detail/FullModelEncoding.h"

namespace faiss_gmm::gpu::detail {

/// float → IEEE half bits, round to nearest even; magnitudes beyond the largest half saturate to ±65504.
uint16_t host_f16(float f);
/// Value of an IEEE half (finite, as host_f16 makes them).
double host_f16_value(uint16_t h);
/// 2^e as a float, e clamped to [-120, 120] (scales stay normal floats).
float pow2i(int e);

/// logit2[n,k] = Σ_e w[k][e]·f_e(x_n) + bias_k + acoef_k·‖x_n‖² in log2 units, features
/// f = [x] (spherical) or [x | x²] (diagonal) of the centered row. GmmModel::log_constants is
/// the definition; everything is computed in double.
struct LogitModel {
    int64_t K = 0, d = 0, Dfeat = 0; ///< Dfeat: d (spherical) or 2d (diagonal)
    bool diag = false;
    std::vector<double> w;       ///< K × Dfeat
    std::vector<float> bias;     ///< K
    std::vector<float> acoef;    ///< K; 0 for diagonal models
    std::vector<float> means;    ///< K × d, the model's means (the statistics are about them)
    std::vector<double> mean_sq; ///< K: ‖μ_k‖²
};
LogitModel encode_logits(const GmmModel& model);

/// Blocked path: W1 (Kp2 × ld2 fp32, rows = components, the first Dfeat columns used) for the
/// cuBLAS logits GEMM against F2 = [x | x² | 1 | ‖x‖²] rows of ld2 floats; padding components
/// have bias kNegBig.
struct BlockedModel {
    int64_t ld2 = 0, Kp2 = 0;
    std::vector<float> w1;    ///< Kp2 × ld2
    std::vector<float> bias;  ///< Kp2
    std::vector<float> acoef; ///< Kp2
};
BlockedModel encode_blocked(const LogitModel& lm);

/// Hopper kernels: fp16 weights with power-of-two scales (exact to undo), tiled as
/// Sm90Kernels.cuh describes. Fast mode puts the typical centered value near 16 (values up to
/// ~4000× typical fit fp16), accurate mode (split: hi + lo halves) near 1 (the lo halves of
/// typical values stay normal); a diagonal model's squares x_j² go near 1 in both modes
/// (coordinates up to 256× typical fit); max|w| goes near 2^14 (accurate) or 2^6 (fast: see
/// encode_hopper).
struct HopperShape {
    bool split = false;         ///< accurate mode: hi/lo fp16 operands (Sm90SplitKernels.cuh)
    bool diag = false;          ///< diagonal: features [s_x·x (DP/2) | s_q·x² (DP/2)], weights [μ/σ² | −1/(2σ²)]
    int DP = 0, FW = 0, Kt = 0; ///< features padded to DP (32/64/96/128; diagonal 64/128/192/256); FW = DP + 8; Kt tiles of 128 components
    float sx = 1, sq = 1;       ///< scales of x and of the squares (‖x‖² spherical, x_j² diagonal)
    float kinv = 1;             ///< 1 / (s_x · s_w)
    /// Fast mode (the last GEMM1 step of the one-pass kernel and of the two passes, Sm90Kernels.cuh,
    /// and of the wide kernel, Sm90SplitKernels.cuh): the values of its ‖x‖² columns (c_q · s_q‖x‖²) and of its
    /// bias columns (c_b), powers of two that keep HopperModel::Wb's entries at most 2^14.
    float cq = 1, cb = 1;
    /// Fast mode: HopperModel::Wb holds the model's bias and ‖x‖² weights. When false (terms
    /// beyond fp16, see encode_bias_weights) the one-pass and wide kernels cannot run the model,
    /// and it runs the two passes at any K, which then add those terms in fp32.
    bool folded = false;
    /// Fast mode without the bias columns: neither the one-pass nor the wide kernel runs it.
    bool fast_unfolded() const { return !split && !folded; }
    /// Fast mode with DP > 128 (diagonal, d > 64): the wide kernel (64-row tiles, one plane) or
    /// the two passes of one plane in 32-row tiles (heuristics.h: hopper_diag_two_pass).
    bool wide() const { return !split && DP > 128; }
    /// Double partial sums, counted in 64-row tiles (reproducible blocks, log-likelihood slots):
    /// the accurate and wide kernels; else fp32 partials of 128-row tiles.
    bool tile64() const { return split || wide(); }
};
struct HopperModel : HopperShape {
    std::vector<uint16_t> W; ///< Kt × 128 × DP halves, tiled; split: the hi block, then the lo block
    std::vector<float> ab;   ///< Kt·128 × 2: (acoef, bias); padding (0, kNegBig)
    /// Fast mode: Kt × 128 × 8 halves, component k's weights of the 8 features after x
    /// (TileShapes.h: BiasColumn): the bias and ‖x‖² terms of its logit, each as an fp16 hi/lo pair, so that
    /// GEMM1 gives the whole logit (in units of kinv); zeros for padding components. Empty
    /// otherwise, and for models whose terms do not fit fp16 (ModelEncoding.cpp:
    /// encode_bias_weights), which then run the two passes (they add the terms in fp32).
    std::vector<uint16_t> Wb;
};
/// Features per row of the Hopper tiles for dimension d ≤ 128: 32, 64, 96 or 128; diagonal
/// models twice that (x and x² each padded so).
int hopper_padded_dim(int64_t d, bool diag = false);
HopperModel encode_hopper(const GmmModel& model, const LogitModel& lm, bool split);

/// Exact log-densities (issue 13) for a model with narrow components (ExactLogDensity.h): the
/// Blocked path's refinement kernels recompute in double the (row, component) pairs the CPU
/// backend would, and sum the narrow components' statistics directly.
struct RefineModel {
    ExactLogDensity exact;       ///< the shared bound and exact terms (means in the rows' frame)
    std::vector<int32_t> narrow; ///< the narrow components, ascending
};
/// The refinement data of a model, or null when it has no narrow component (the normal case:
/// nothing changes). center as for encode_model.
std::unique_ptr<RefineModel> encode_refinement(const GmmModel& model, const float* center);

/// Everything set_model() hands to each GPU: the encodings and the center.
struct EncodedModel {
    LogitModel logits;
    BlockedModel blocked;
    std::unique_ptr<HopperModel> hopper; ///< null when the Hopper kernels do not cover the model (heuristics.h)
    std::unique_ptr<RefineModel> refine; ///< null unless the model has narrow components (then hopper is null)
    std::unique_ptr<FullModel> full;     ///< full covariances only (encode_full_model; logits, blocked, hopper empty)
    std::vector<float> center;           ///< d: the rows' center (zeros when none was given)
};
/// hopper: encode for the Hopper kernels too (the caller checked that they cover the model and
/// that refine is null: a model that needs refinement runs Blocked, see EStepCuda::set_model).
EncodedModel encode_model(const GmmModel& model, const float* center, bool hopper, bool fast,
                          std::unique_ptr<RefineModel> refine = nullptr);

/// A full-covariance model: em.full and the center, nothing else (FullEStep runs it).
EncodedModel encode_full_model(const GmmModel& model, const float* center);

} // namespace faiss_gmm::gpu::detail
