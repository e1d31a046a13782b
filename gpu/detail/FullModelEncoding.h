// Host-only encoding of a full-covariance GmmModel (issue 17) for the CUDA E-step
// (FullEStep.h): the precision factors side by side as one K·d-wide matrix, so that the
// per-component projections y_k = (x − c)ᵀU_k of a block of rows are one GEMM, and the terms
// that turn them into log-densities. No CUDA here (tests/gpu/test_model_encoding.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "gpu/detail/FullSm90Layout.h"

namespace faiss_gmm::gpu::detail {

/// log2 p(x, k) = logc2_k − ½·log2(e)·‖(x − c)ᵀU_k − mproj_k‖², x − c the centered row (the
/// model is in that frame): GmmModel::log_joint's full form with μ_kᵀU_k precomputed, in log2
/// units as the responsibility kernel expects. Everything is computed in double, then rounded.
struct FullModel {
    int64_t K = 0, d = 0;
    std::vector<float> w;     ///< (K·d) × d, row k·d + j = column j of U_k (U_k[i][j], zero for i > j)
    std::vector<float> mproj; ///< K·d: μ_kᵀU_k
    std::vector<float> logc2; ///< K: log2(e)·(log w_k − d/2 log 2π + Σ_j log U_k,jj)
    std::vector<float> means; ///< K × d: μ_k (the second moments are about them)
    // The fused kernel's operands (FullFusedKernel.cuh): U_k in fp16 with a power-of-two scale s_k
    // (max|U_k|·s_k in [2^13, 2^14): exact to undo, far from fp16's overflow), transposed and padded
    // to DP × DP, split in hi = fp16(v) and lo = fp16(v − hi) for the accurate kernel.
    int DP = 0;                  ///< d rounded up to a multiple of 32 (the kernel's instantiations)
    std::vector<uint16_t> wh, wl; ///< K × DP × DP halves: [k][j][i] = s_k·U_k[i][j] (hi, lo); zero padding
    std::vector<float> kinv;     ///< K: 1/s_k
    std::vector<float> mproj_padded; ///< K × DP: mproj with zero padding
};
FullModel encode_full(const GmmModel& model);

/// wh or wl of a FullModel (K × DP × DP, [k][j][i]) in the Hopper kernel's layout for column
/// groups of W (FullSm90Layout.h): K × full_sm90_factor_halves(DP, W).
std::vector<uint16_t> pack_full_factors_sm90(const std::vector<uint16_t>& w, int64_t K, int64_t DP, int64_t W);

/// Largest d the GPU's full-covariance kernels take (the second-moment kernel's shared tile and its
/// warps' 16 × 16 blocks cover 128 columns); a larger model is refused with an error naming this limit.
constexpr int64_t kMaxFullDim = 128;

} // namespace faiss_gmm::gpu::detail
