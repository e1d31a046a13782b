// Reproducible sums of the CUDA E-step (issue 13; EStepCuda::accumulate_reproducible):
// the statistics of every kReproducibleBlockRows-row block, counted from the call's first
// row, become integers on the grids of the caller's StatsAccumulator, and integers add
// exactly in any order. So the model is the same bits whatever the chunking, the number of
// workers (GPUs) or the scheduling of CTAs, as long as each block's partial is computed the
// same way: one thread block (or cluster) walks the block's rows in a fixed order from a zero
// accumulator (Sm90Kernels.cuh, Sm90SplitKernels.cuh), or cuBLAS runs the same product
// shape on the block alone (BlockedEStep.cu).
//
// Why integers on the device and not the block partials on the host: a block partial is
// K·(d+2) values (0.5 MB at K = 1024, d = 128; 256 blocks per million rows), so moving them
// would cost more than the E-step; the integers of a whole call are downloaded once and added
// to the accumulator in one pass (StatsAccumulator::add_limbs).
//
// The device format (LimbFormat.h): a partial v on a grid of scale s becomes q = v/s truncated
// toward zero to a multiple of 2^-64, as two int64 integers per value (both of q's sign),
//   hi = trunc(q · 2^24),  lo = trunc((q · 2^24 − hi) · 2^40),  |lo| < 2^40,
// added with 64-bit integer atomics (two per value, where the CPU's FixedPointSums format, four
// 32-bit limbs down to 2^-96, took four). The 2^-64 grid is a function of v and s alone, so the
// sums stay order-independent; it costs at most 2^-64·s per block partial, far below the
// partial's own fp32 rounding (2^-24 of its size per row). Headroom: a partial with
// |q| ≥ kMaxPartialOverScale = 2^22 (64x what a 16-block group of rows within the bounds
// gives) or not finite sets the overflow flag instead of adding, and a call of at most
// kMaxPieceRows = 2^24 rows (longer calls are cut into pieces) adds at most 2^12 partials per
// value: |Σ hi| < 2^58, |Σ lo| < 2^52, no wrap.
// download() cuts the sums into three balanced 32-bit limbs
//   Σ q = L0 + L1·2^-32 + L2·2^-64,  L1, L2 in [−2^31, 2^31),
// limb-major int32, which is what FixedPointSums::add_limbs takes (its limb 3 stays zero): 12
// bytes per value to download (the four canonical double limbs were 32); |L0| ≥ 2^31 (bounds
// far off) sets the overflow flag too. The call throws when the flag is set.
//
// Layout of a worker's limbs on the device (8-byte words):
//   [ExactSums::kLimbs limbs of Σ ln Z | overflow flag | 3 × nvalues int32 (download(), padded
//    to 8 bytes) | hi × nvalues | lo × nvalues]
// with the values in StatsAccumulator order: N_k (K), Σ r x (K·d), second moments (K·nsq).
// The first three parts are what download() fetches.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "faiss_gmm/ReproducibleSum.h"
#include "gpu/detail/DeviceResources.h"
#include "gpu/detail/LimbFormat.h"

namespace faiss_gmm::gpu::detail {

constexpr int kReproRows = int(kReproducibleBlockRows);
constexpr int kLoglikLimbs = ExactSums::kLimbs;
static_assert(kHostLimbs <= FixedPointSums::kLimbs, "the downloaded limbs are FixedPointSums' first ones");
/// Per-block slots of Σ log2 Z that the Hopper kernels write (a block's 64 row threads of
/// the cluster's first CTA, or the two-pass LSE kernel's tiles), summed in slot order.
constexpr int kLoglikSlots = 64;
constexpr double kLn2 = 0.69314718055994530942;

/// The grids of the caller's StatsAccumulator: value v of the three ranges uses 2^-exponent.
struct LimbGrid {
    double inv_nk = 1, inv_x = 1, inv_sq = 1; ///< 1 / scale of N_k, Σ r x, second moments
    int64_t nvalues = 0;                      ///< K + K·d + K·nsq
    int64_t x_begin = 0, sq_begin = 0;        ///< first Σ r x and second-moment value (K, K + K·d)
    unsigned long long* overflow = nullptr;   ///< set by ReproducibleLimbs::begin (device flag)
};

/// A worker's limbs of one reproducible call: on the GPU while its chunks run, then on the host.
class ReproducibleLimbs {
  public:
    /// Start of a call: sizes the limbs for `grid` on `device` and zeroes them.
    void begin(int device, const LimbGrid& grid, cudaStream_t stream);
    /// The call's grid with the device's overflow flag (what the kernels take).
    const LimbGrid& grid() const { return grid_; }
    unsigned long long* loglik() const { return dev_.as<unsigned long long>(); }
    /// The device accumulators: hi at [0, nvalues), lo at [nvalues, 2·nvalues).
    unsigned long long* values() const { return dev_.as<unsigned long long>() + acc_offset(); }
    /// Σ ln Z of `nblocks` blocks, each the sum of its `per_block` slots (in order) times `unit`
    /// (ln 2 for slots in log2 units), added exactly.
    void add_loglik_blocks(const double* slots, int nblocks, int per_block, double unit, cudaStream_t stream);
    /// Cuts the accumulators into the balanced 32-bit limbs and downloads them with Σ ln Z's
    /// limbs and the overflow flag (synchronizes `stream`).
    void download(cudaStream_t stream);
    /// A partial of the downloaded call was off the grid (fixed_limbs): its limbs are wrong.
    bool overflowed() const { return host()[kLoglikLimbs] != 0; }
    /// The downloaded limbs of Σ ln Z (kLoglikLimbs, ExactSums::add_limbs).
    const int64_t* host() const { return static_cast<const int64_t*>(host_.get()); }
    /// The downloaded value limbs: kHostLimbs × grid().nvalues int32 (limb-major), as
    /// FixedPointSums::add_limbs takes them.
    const int32_t* host_values() const { return reinterpret_cast<const int32_t*>(host() + kLoglikLimbs + 1); }
    size_t device_bytes() const { return dev_.bytes(); }

  private:
    /// 8-byte words: Σ ln Z's limbs and the flag, then the int32 limbs (padded).
    size_t download_words() const {
        return size_t(kLoglikLimbs) + 1 + (size_t(kHostLimbs) * size_t(grid_.nvalues) + 1) / 2;
    }
    size_t acc_offset() const { return download_words(); }
    size_t count() const { return acc_offset() + size_t(kDeviceLimbs) * size_t(grid_.nvalues); }
    LimbGrid grid_;
    DeviceBuffer dev_;
    PinnedBuffer host_;
};

} // namespace faiss_gmm::gpu::detail
