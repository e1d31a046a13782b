// The Hopper full-covariance kernel's layout of one component's fp16 factor s_k·U_k
// (FullHopperKernel.cuh), as plain constexpr arithmetic for the host (FullModelEncoding.cpp packs
// the factors; tests/gpu/test_full_model_encoding.cpp checks the packing) and the device (the
// kernel's product descriptors).
//
// wgmma reads B (K = the rows i of U_k, N = its columns j) as core matrices of 8 columns × 8 rows,
// 128 contiguous bytes (column j at byte 16·(j % 8), rows i inner). A k-step s covers rows
// i in [16s, 16s + 16): two row blocks of 8. U_k[i][j] = 0 for i > j, so a step multiplies only
// the columns from 16s on; the layout stores, for each step, both of its row blocks from column
// block first_block(s) to the end:
//  * W = 0: first_block = 2s, one product of N = DP − 16s columns per step (the exact triangle);
//  * W > 0: the columns in groups of W (a multiple of 16; the last group may be narrower), and a
//    step multiplies every group that holds a column ≥ 16s, whole: first_block = (W/8)·⌊16s/W⌋.
//    Groups keep the accumulator registers of different products disjoint, which ptxas needs to
//    keep the products in flight (with W = 0 it serializes them: ptxas C7511).
// The zeros inside a stored block are stored too.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define FAISS_GMM_SM90_LAYOUT_FN __host__ __device__ constexpr
#else
#define FAISS_GMM_SM90_LAYOUT_FN constexpr
#endif

namespace faiss_gmm::gpu::detail {

/// First column block (of 8 columns) stored for k-step s.
FAISS_GMM_SM90_LAYOUT_FN int64_t full_sm90_first_block(int64_t W, int64_t s) {
    return W == 0 ? 2 * s : (W / 8) * ((16 * s) / W);
}
/// Core matrices per row block of k-step s.
FAISS_GMM_SM90_LAYOUT_FN int64_t full_sm90_step_width(int64_t DP, int64_t W, int64_t s) {
    return DP / 8 - full_sm90_first_block(W, s);
}
/// Offset (halves) of k-step s in a component: the two row blocks of every earlier step.
FAISS_GMM_SM90_LAYOUT_FN int64_t full_sm90_step_offset(int64_t DP, int64_t W, int64_t s) {
    int64_t at = 0;
    for (int64_t p = 0; p < s; p++) at += 2 * full_sm90_step_width(DP, W, p) * 64;
    return at;
}
/// Halves of one component (DP/16 steps).
FAISS_GMM_SM90_LAYOUT_FN int64_t full_sm90_factor_halves(int64_t DP, int64_t W) {
    return full_sm90_step_offset(DP, W, DP / 16);
}
/// Where entry (column j, row i) of a component's factor lies (halves), or −1 when the layout does
/// not store it (a zero: a column block before the step's first).
FAISS_GMM_SM90_LAYOUT_FN int64_t full_sm90_factor_index(int64_t DP, int64_t W, int64_t j, int64_t i) {
    const int64_t s = i / 16, first = full_sm90_first_block(W, s), jb = j / 8;
    if (jb < first) return -1;
    return full_sm90_step_offset(DP, W, s) + ((i / 8) - 2 * s) * full_sm90_step_width(DP, W, s) * 64 +
           (jb - first) * 64 + (j % 8) * 8 + i % 8;
}

} // namespace faiss_gmm::gpu::detail
