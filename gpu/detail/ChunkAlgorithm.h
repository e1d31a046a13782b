// What one algorithm of the CUDA E-step does on one GPU for the worker that drives it
// (EStepCuda.cu): take an encoded model, turn chunks of rows in device memory into sums on
// the GPU, and hand back the statistics' increments. Each algorithm owns its buffers and
// finishes its own sums (Hopper on the GPU, Blocked on the host).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "faiss_gmm/SufficientStats.h"
#include "faiss_gmm/VectorSource.h"
#include "gpu/EStepCuda.h"
#include "gpu/detail/ModelEncoding.h"
#include "gpu/detail/ReproducibleLimbs.h"

namespace faiss_gmm::gpu::detail {

class ChunkAlgorithm {
  public:
    virtual ~ChunkAlgorithm() = default;
    /// "blocked", "hopper", "full-fused" or "full-blocked" (EStepCudaReport::algorithm).
    virtual const char* name() const = 0;
    /// Device bytes per chunk row for this model (sizes the chunks, heuristics.h).
    virtual double bytes_per_row(const EncodedModel& em) const = 0;
    /// Uploads the model and sizes the buffers for chunks of up to chunk_rows rows.
    virtual void set_model(const EncodedModel& em, int64_t chunk_rows, cudaStream_t stream) = 0;
    /// Zeroes the sums (start of an accumulate() call).
    virtual void begin(cudaStream_t stream) = 0;
    /// Start of an accumulate_reproducible() call (ReproducibleLimbs.h): the chunks, which then
    /// start on kReproducibleBlockRows blocks of the call, go block by block to integer limbs on
    /// `grid`, each block summed in an order fixed by its rows alone; download() fetches the
    /// limbs (loglik_limbs(), value_limbs()), not the sums. begin() returns to ordinary sums.
    virtual void begin_reproducible(const LimbGrid& grid, cudaStream_t stream) = 0;
    /// The rows of the unit a reproducible call sums on its own (set by set_model): the chunks,
    /// the workers' shares and the pieces of a call that give the same bits are whole units,
    /// counted from the call's first row. kReproducibleBlockRows, or a multiple (FullEStep.h).
    virtual int64_t reproducible_block_rows() const { return kReproducibleBlockRows; }
    /// A reproducible call's chunks hold a multiple of this many units where they can (set by
    /// set_model): the parts that sum whole units side by side (HopperEStep: its clusters or row
    /// splits), so that each part gets as many units as the others, not one more than some.
    virtual int64_t reproducible_chunk_units() const { return 1; }
    /// The limbs the last reproducible call downloaded: Σ ln Z's, and the values' (kHostLimbs
    /// int32 limbs each, ReproducibleLimbs.h).
    const int64_t* loglik_limbs() const { return limbs_.host(); }
    const int32_t* value_limbs() const { return limbs_.host_values(); }
    bool limbs_overflowed() const { return limbs_.overflowed(); }
    /// Enqueues the work on n rows of `type` at device pointer x.
    virtual void chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport& report) = 0;
    /// Downloads the sums (synchronizes `stream`).
    virtual void download(cudaStream_t stream) = 0;
    /// Adds the downloaded sums to stats' per-component sums (about the model's means).
    virtual void add_to(SufficientStats& stats) const = 0;
    /// Σ ln Z of the downloaded rows.
    virtual double loglik() const = 0;
    virtual size_t device_bytes() const = 0;

  protected:
    bool by_block_ = false;    // a reproducible call is running (begin_reproducible)
    ReproducibleLimbs limbs_;  // its limbs
};

} // namespace faiss_gmm::gpu::detail
