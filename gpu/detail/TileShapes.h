// Tile shapes of the Hopper kernels that the host needs too (model encoding, buffer sizes,
// launch shapes): plain constants without CUDA headers, so host-only code and its tests
// (tests/gpu/test_model_encoding.cpp) share them with the kernels.
#pragma once

namespace faiss_gmm::gpu::detail {

constexpr float kNegBig = -1e30f; // bias of padding components: exp2 gives exactly 0
constexpr float kPosBig = 1e30f;  // log2 Z of padding rows: their responsibilities are 0

namespace sm90 {
constexpr int kBM = 128;           // rows per tile (fast kernel)
constexpr int kKc = 128;           // components per CTA (per component tile)
constexpr int kThreads = 256;      // two warpgroups
constexpr int kMaxCluster = 8;     // portable cluster size: K ≤ 1024 in one pass
constexpr int kSmemLimit = 232448; // 227 KB per block on sm_90

/// The 8 feature columns after x in the fast kernels' 128-row tiles (features_kernel) and the
/// weights HopperModel::Wb puts on them for the one-pass kernel's last GEMM1 step
/// (q = s_q‖x‖², u = fp16(c_q·q) and u_lo = fp16(c_q·q − u); A = a_k/(kinv·s_q·c_q) and
/// B = b_k/(kinv·c_b), each split into fp16 hi + lo):
///   column   0: 1 (N_k)   1: q (Σ r‖x‖²)   2: u   3: u_lo   4: u     5: c_b   6: c_b   7: 0
///   weight   0            0                A_hi   A_hi      A_lo    B_hi     B_lo     0
/// Columns 0 and 1 are GEMM2's statistics (weight 0 in GEMM1); diagonal models have a_k = 0 and
/// zeros in columns 1-4. Padding rows are all zeros.
enum BiasColumn { kColOne = 0, kColQ = 1, kColU = 2, kColULo = 3, kColU2 = 4, kColB = 5, kColB2 = 6 };

namespace split {
constexpr int kBM = 64;           // rows per tile (accurate kernel)
constexpr float kRScale = 4096.f; // responsibilities × 2^12 before the split (undone on the host)
} // namespace split
} // namespace sm90

} // namespace faiss_gmm::gpu::detail
