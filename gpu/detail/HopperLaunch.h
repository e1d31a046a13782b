// The host's contract with the Hopper kernels of one tile width DP (32, 64, 96, 128): what a
// chunk launch needs (HopperChunkArgs) and the launchers, instantiated per DP in
// HopperKernels{32,64,96,128}.cu and chosen by hopper_kernels(DP), the one runtime → template
// switch of the Hopper path (HopperEStep.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/detail/DeviceResources.h"
#include "gpu/detail/ModelEncoding.h"

namespace faiss_gmm::gpu::detail {

/// What the Hopper path holds on the GPU (HopperEStep owns it).
struct HopperBuffers {
    DeviceBuffer center;   ///< d floats: the rows' center
    DeviceBuffer W, ab;    ///< HopperModel::W (halves), HopperModel::ab
    DeviceBuffer Wb;       ///< HopperModel::Wb (halves; fast one-pass kernel)
    DeviceBuffer mu, mu_sq; ///< the model's means (K × d floats) and ‖μ_k‖² (K doubles): finalize_sums_kernel
    DeviceBuffer G, xx;    ///< a chunk's features (halves, tiled) and ‖x − c‖² per row
    DeviceBuffer lse;      ///< two passes: log2 Z per row
    DeviceBuffer lse_parts; ///< accurate diagonal, d > 64: (max, sum) per row and component tile (Sm90DiagSplitKernels.cuh)
    DeviceBuffer part;     ///< partial sums: float (fast) or double (split) slices of Kt·128 × FW
    DeviceBuffer acc;      ///< K × FW doubles: the call's sums (reduce_parts_kernel adds to them)
    DeviceBuffer out;      ///< K × (d+2) doubles: the statistics' increments
    DeviceBuffer loglik;   ///< 1 double
    // Reproducible sums (HopperChunkArgs::block_tiles > 0), allocated on first use:
    DeviceBuffer block_part; ///< one slice per reproducible block of the chunk (float fast, double split)
    DeviceBuffer llslots;    ///< llslot_stride doubles per block: Σ log2 Z in pieces (ReproducibleKernels.cuh)
};

/// One chunk of the Hopper path: the rows, the model's shape, the knobs, the buffers and streams.
struct HopperChunkArgs {
    const void* x = nullptr; ///< n rows of d values (device memory), float32 or uint8
    bool uint8 = false;
    int64_t n = 0;
    int d = 0, K = 0;
    HopperShape model;
    int C = 0;            ///< cluster size of the one-pass kernel; 0: two passes
    int max_clusters = 0; ///< clusters of C CTAs that fit the GPU at once
    int sm_count = 0;
    int sub_tiles = 128;  ///< EStepCudaOptions::hopper_sub_tiles
    int sub_growth = 0;   ///< EStepCudaOptions::hopper_sub_chunk_growth (0: auto)
    int exchange = 0;     ///< EStepCudaOptions::hopper_exchange
    int flush_tiles = 64; ///< EStepCudaOptions::hopper_flush_tiles
    /// Reproducible sums: tiles per block (HopperEStep's block_rows; the chunk starts on a block);
    /// every block's sums go to its own slice of buf->block_part, nothing is reduced. 0: as usual.
    int block_tiles = 0;
    /// Reproducible sums: Σ log2 Z slots per block in buf->llslots (kLoglikSlots per
    /// kReproducibleBlockRows rows: one per 64-row tile, or per thread of a one-pass CTA).
    int llslot_stride = 0;
    const HopperBuffers* buf = nullptr;
    cudaStream_t stream = nullptr;      ///< the kernels' stream (high priority)
    cudaStream_t feat_stream = nullptr; ///< sub-chunks' features (low priority)
    cudaEvent_t feat_gate = nullptr;
    const cudaEvent_t* feat_done = nullptr; ///< kMaxSubChunks events
    /// Reproducible sums: the one-pass launches call this once the kernel of a sub-chunk is
    /// enqueued, with the chunk's blocks [b0, b1) it sums (HopperEStep makes their limbs on
    /// feat_stream, on the SMs the clusters leave idle, while the next sub-chunk runs).
    void (*blocks_enqueued)(void* ctx, int b0, int b1) = nullptr;
    void* blocks_ctx = nullptr;
};

/// Thread blocks and cluster size of the last launch (EStepCudaReport::blocks, ::cluster).
struct HopperLaunchShape {
    int blocks = 0, cluster = 0;
};

/// The launchers of one tile width.
struct HopperKernels {
    /// Raises the kernels' dynamic shared memory limits (once per device and model shape).
    void (*set_attributes)();
    /// Clusters of C CTAs of the one-pass kernel (split: the accurate one) active at once.
    int (*max_active_clusters)(bool split, int C, int sm_count, cudaStream_t stream);
    /// Enqueues the features, main kernel(s) and partial reduction of one chunk.
    HopperLaunchShape (*chunk)(const HopperChunkArgs& a);
};

template <int DP>
const HopperKernels& hopper_kernels_for();
/// The launchers for tile width DP (32, 64, 96 or 128).
const HopperKernels& hopper_kernels(int DP);

} // namespace faiss_gmm::gpu::detail
