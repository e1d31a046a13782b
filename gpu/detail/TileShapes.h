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

namespace split {
constexpr int kBM = 64;           // rows per tile (accurate kernel)
constexpr float kRScale = 4096.f; // responsibilities × 2^12 before the split (undone on the host)
} // namespace split
} // namespace sm90

} // namespace faiss_gmm::gpu::detail
