// Reproducible sums of the CUDA E-step (issue 13; EStepCuda::accumulate_reproducible):
// the statistics of every kReproducibleBlockRows-row block, counted from the call's first
// row, become integer limbs on the grids of the caller's StatsAccumulator, and integers add
// exactly in any order. So the model is the same bits whatever the chunking, the number of
// workers (GPUs) or the scheduling of CTAs, as long as each block's partial is computed the
// same way: one thread block (or cluster) walks the block's rows in a fixed order from a zero
// accumulator (Sm90Kernels.cuh, Sm90SplitKernels.cuh), or cuBLAS runs the same product
// shape on the block alone (BlockedEStep.cu).
//
// Why integer limbs on the device and not the block partials on the host: a block partial
// is K·(d+2) values (0.5 MB at K = 1024, d = 128; 256 blocks per million rows), so moving
// them would cost more than the E-step; the limbs of a whole call are 4 integers per value,
// downloaded once, and added to the accumulator in one pass (StatsAccumulator::add_limbs).
//
// Layout of a worker's limbs (int64, two's complement; unsigned for atomicAdd):
//   [ExactSums::kLimbs limbs of Σ ln Z | FixedPointSums::kLimbs × nvalues, limb-major]
// with the values in StatsAccumulator order: N_k (K), Σ r x (K·d), second moments (K·nsq).
// download() carries the value limbs and turns them into doubles in place (exact integers,
// what FixedPointSums stores): the host then adds them without a conversion per limb.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "faiss_gmm/ReproducibleSum.h"
#include "gpu/detail/DeviceResources.h"

namespace faiss_gmm::gpu::detail {

constexpr int kReproRows = int(kReproducibleBlockRows);
constexpr int kLoglikLimbs = ExactSums::kLimbs;
constexpr int kValueLimbs = FixedPointSums::kLimbs;
/// Per-block slots of Σ log2 Z that the Hopper kernels write (a block's 64 row threads of
/// the cluster's first CTA, or the two-pass LSE kernel's tiles), summed in slot order.
constexpr int kLoglikSlots = 64;
constexpr double kLn2 = 0.69314718055994530942;

/// The grids of the caller's StatsAccumulator: value v of the three ranges uses 2^-exponent.
struct LimbGrid {
    double inv_nk = 1, inv_x = 1, inv_sq = 1; ///< 1 / scale of N_k, Σ r x, second moments
    int64_t nvalues = 0;                      ///< K + K·d + K·nsq
    int64_t x_begin = 0, sq_begin = 0;        ///< first Σ r x and second-moment value (K, K + K·d)
};

/// A worker's limbs of one reproducible call: on the GPU while its chunks run, then on the host.
class ReproducibleLimbs {
  public:
    /// Start of a call: sizes the limbs for `grid` on `device` and zeroes them.
    void begin(int device, const LimbGrid& grid, cudaStream_t stream);
    const LimbGrid& grid() const { return grid_; }
    unsigned long long* loglik() const { return dev_.as<unsigned long long>(); }
    unsigned long long* values() const { return dev_.as<unsigned long long>() + kLoglikLimbs; }
    /// Σ ln Z of `nblocks` blocks, each the sum of its `per_block` slots (in order) times `unit`
    /// (ln 2 for slots in log2 units), added exactly.
    void add_loglik_blocks(const double* slots, int nblocks, int per_block, double unit, cudaStream_t stream);
    /// Carries the value limbs into canonical form, as doubles, downloads all limbs (synchronizes
    /// `stream`). Until the next begin() the device's value limbs are doubles.
    void download(cudaStream_t stream);
    /// The downloaded limbs of Σ ln Z (kLoglikLimbs, ExactSums::add_limbs).
    const int64_t* host() const { return static_cast<const int64_t*>(host_.get()); }
    /// The downloaded value limbs, kValueLimbs × grid().nvalues (limb-major) exact integers as
    /// doubles, canonical (FixedPointSums::add_limbs).
    const double* host_values() const { return reinterpret_cast<const double*>(host() + kLoglikLimbs); }
    size_t device_bytes() const { return dev_.bytes(); }

  private:
    size_t count() const { return size_t(kLoglikLimbs) + size_t(kValueLimbs) * size_t(grid_.nvalues); }
    LimbGrid grid_;
    DeviceBuffer dev_;
    PinnedBuffer host_;
};

} // namespace faiss_gmm::gpu::detail
