// The barrier and pipeline setup shared by the one-pass Hopper kernels, fast
// (Sm90Kernels.cuh: estep_kernel) and accurate (Sm90SplitKernels.cuh:
// estep_split_kernel): their mbarriers, the row tiles of a cluster, and the software
// pipeline per row tile,
//     GEMM1(i) issued | finish(i−1) | wait GEMM1; barrier | GEMM2(i−1) issued |
//     epilogue(i) | wait GEMM2 | after_gemm2(i) | barrier | refill the freed stage,
// so that the exponentials of tile i run under GEMM2(i−1) and the normalization of
// tile i−1 under GEMM1(i) (Sm90Kernels.cuh has the why). The kernels give the steps as
// lambdas; everything is inlined, so the code is what the kernels had written out.
#pragma once

#include <cstdint>

#include "gpu/detail/Sm90Primitives.cuh"

namespace faiss_gmm::gpu::detail::sm90 {

/// The mbarriers at `base` in shared memory: NS stage barriers (tile i has landed in stage
/// i % NS), one for the CTA's weights, two for the exchange of per-row partials (tiles i with
/// i % 2 == b).
template <int NS>
struct PipelineBarriers {
    uint64_t* full;
    uint64_t* wbar;
    uint64_t* xbar;
    __device__ __forceinline__ explicit PipelineBarriers(uint8_t* base)
            : full(reinterpret_cast<uint64_t*>(base)), wbar(full + NS), xbar(wbar + 1) {}
    /// Thread 0 initializes them, then the block synchronizes; in_cluster: then the cluster too, so
    /// that every CTA runs before anyone writes into its shared memory.
    __device__ __forceinline__ void init(int tid, bool in_cluster) {
        if (tid == 0) {
            for (int s = 0; s < NS; s++) mbar_init(full + s, 1);
            mbar_init(wbar, 1);
            mbar_init(xbar, 1);
            mbar_init(xbar + 1, 1);
            fence_mbar_init();
        }
        __syncthreads();
        if (in_cluster) {
            cluster_arrive();
            cluster_wait();
        }
    }
};

/// Row tiles [tile0, tile1) of part q of Q (clusters, or row splits) of `tiles`.
__device__ __forceinline__ void part_tiles(int tiles, int q, int Q, int& tile0, int& tile1) {
    tile0 = int(int64_t(tiles) * q / Q);
    tile1 = int(int64_t(tiles) * (q + 1) / Q);
}

/// Reproducible sums (block_tiles > 0): the same, in whole blocks of block_tiles tiles (one
/// kReproducibleBlockRows block each), so that every block is summed by one part alone; the
/// last block may be short. block_tiles = 0: part_tiles above.
__device__ __forceinline__ void part_tiles(int tiles, int q, int Q, int block_tiles, int& tile0, int& tile1) {
    if (block_tiles <= 0) {
        part_tiles(tiles, q, Q, tile0, tile1);
        return;
    }
    const int blocks = (tiles + block_tiles - 1) / block_tiles;
    tile0 = min(tiles, int(int64_t(blocks) * q / Q) * block_tiles);
    tile1 = min(tiles, int(int64_t(blocks) * (q + 1) / Q) * block_tiles);
}

/// The pipeline over ntile row tiles (local indices), stages full[0 .. NS): load(stage, i) fills
/// a stage with local tile i (thread 0 only; the first NS are loaded by the caller's prologue),
/// gemm1(stage), finish(i), gemm2(stage), epilogue(i, stage), after_gemm2(i) as described above.
/// acc1 / acc2: the two GEMMs' accumulators (fenced around the waits).
template <int NS, class Acc1, class Acc2, class Load, class Gemm1, class Finish, class Gemm2, class Epilogue,
          class AfterGemm2>
__device__ __forceinline__ void run_tile_pipeline(int ntile, int tid, uint64_t* full, Acc1& acc1, Acc2& acc2,
                                                  Load&& load, Gemm1&& gemm1, Finish&& finish, Gemm2&& gemm2,
                                                  Epilogue&& epilogue, AfterGemm2&& after_gemm2) {
    for (int i = 0; i < ntile; i++) {
        const int stage = i % NS;
        mbar_wait(full + stage, uint32_t(i / NS) & 1u);
        gemm1(stage);
        if (i > 0) finish(i - 1);
        wgmma_wait<0>();
        fence_operand(acc1);
        __syncthreads(); // R(i−1) complete (both warpgroups' rows)
        if (i > 0) gemm2((i - 1) % NS);
        epilogue(i, stage);
        wgmma_wait<0>();
        fence_operand(acc2);
        after_gemm2(i);
        __syncthreads(); // every warpgroup is done with R and with the stage of tile i−1
        if (tid == 0 && i >= 1 && i - 1 + NS < ntile) load((i - 1) % NS, i - 1 + NS);
    }
    if (ntile > 0) {
        finish(ntile - 1);
        __syncthreads();
        gemm2((ntile - 1) % NS);
        wgmma_wait<0>();
        fence_operand(acc2);
    }
}

} // namespace faiss_gmm::gpu::detail::sm90
