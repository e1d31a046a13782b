// The CUDA E-step's choices in one place, host-only: which algorithm runs a model under
// EStepCudaAlgorithm::Auto (and Hopper), how many rows a chunk holds, how a Hopper chunk is
// cut into sub-chunks and how many partial-sum slices its launches write, how many threads
// copy pageable rows. bench/results/gpu_NVIDIA-H200.md has the measurements behind them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "faiss_gmm/ReproducibleSum.h"
#include "gpu/detail/TileShapes.h"

namespace faiss_gmm::gpu::detail {

/// True when the Hopper kernels compute this model: spherical and diagonal models with d ≤ 128,
/// any K, in both modes (fast: fp16 products, accurate: 2×fp16, at every shape). Spherical: one pass with clusters for
/// K ≤ 1024, two passes above. Diagonal (features [x | x²], 2d wide): d ≤ 64 runs the spherical
/// kernels at 2d ≤ 128; 64 < d ≤ 128 runs the wide fp16 kernel (fast mode, K ≤ 1024: one pass
/// only) or the two passes of Sm90DiagSplitKernels.cuh (2×fp16, or one fp16 plane: hopper_diag_two_pass).
/// Everything else runs Blocked.
inline bool hopper_covers(int64_t d) { return d <= 128; }

/// Diagonal models with 64 < d ≤ 128 (features DP > 128): true when they run the two passes of
/// Sm90DiagSplitKernels.cuh (32-row tiles, any K): accurate mode, and fast mode above one
/// cluster's reach (K > 1024) or when `choice` (EStepCudaOptions::hopper_diag_wide) is 2; else
/// fast mode runs the one-pass wide kernel of Sm90SplitKernels.cuh, which was faster at K = 1024
/// on an H100 (1M rows, d = 128: 3.90 against 4.45 ms of device time; d = 96: 3.41 against 3.70;
/// bench/results/gpu_diag_fast_two_pass.md). Since pass 1 runs two CTAs per SM the two are even
/// (3.90 against 3.96 ms at d = 128, 3.37 against 3.28 at d = 96, one run each), so the choice stayed.
inline bool hopper_diag_two_pass(bool split, int Kt, int choice) {
    return split || Kt > sm90::kMaxCluster || choice == 2;
}

/// Whether the Hopper kernels of this shape and mode keep fp32 partial sums (the fp16 kernels with
/// DP ≤ 128: one pass, or two above K = 1024). Their reproducible blocks are
/// EStepCudaOptions::hopper_reproducible_block_rows; the other Hopper kernels (2×fp16, and the fp16
/// kernels of diagonal models with d > 64: the wide kernel, the one-plane two passes) sum fp32 runs
/// of at most flush_tiles tiles into double partials, and keep blocks of kReproducibleBlockRows, so
/// that their fp32 runs stay that short.
inline bool hopper_float_partials(bool diag, int64_t d, bool fast) {
    return fast && !(diag && d > 64);
}

/// Rows of the fp32-partial Hopper kernels' reproducible blocks when
/// EStepCudaOptions::hopper_reproducible_block_rows is 0 (auto), from the rows a fit will sum
/// (EStep::expect_rows). A cluster sums whole blocks, so a call's last wave of blocks leaves
/// clusters idle for up to one block time. On an H100 at K = 1024, d = 128 (bench/results/
/// gpu_reproducible_sums.md, run 10), blocks of 4 × 4096 rows wrote and cut fewer partials, ~0.2 ms
/// less device time per 10M-row EM iteration net of their last wave, but a single 1M-row call took
/// 0.34 ms more (62 blocks on 15 clusters: 5 waves for 4.1 blocks of work each). The larger blocks
/// are taken from 8M rows on, where a call holds ~30 waves and more.
constexpr int64_t kHopperLargeBlocksFromRows = int64_t(8) << 20;
inline int64_t hopper_auto_block_rows(int64_t expected_rows) {
    return expected_rows >= kHopperLargeBlocksFromRows ? 4 * kReproducibleBlockRows : kReproducibleBlockRows;
}

/// Device bytes per chunk row: the raw rows (double-buffered, float32 worst case) plus the
/// algorithm's features (Hopper: FW halves, twice for hi/lo, + ‖x‖²; Blocked: ld2 floats).
inline double hopper_bytes_per_row(int64_t d, int FW, bool split) {
    return 2.0 * d * 4 + double(FW) * 2 * (split ? 2 : 1) + 8;
}
inline double blocked_bytes_per_row(int64_t d, int64_t ld2) { return 2.0 * d * 4 + double(ld2) * 4; }

/// Rows per chunk from the memory budget: ~2 GB of chunk buffers (at most a quarter of the free
/// memory), between 1024 rows and 1M rows, a multiple of 128.
inline int64_t auto_chunk_rows(double bytes_per_row, size_t free_bytes) {
    const double budget = std::min(2.0e9, 0.25 * double(free_bytes));
    const int64_t rows = std::clamp<int64_t>(int64_t(budget / bytes_per_row), 1024, int64_t(1) << 20);
    return rows / 128 * 128;
}

/// Blocked: rows per block so that the block × Kp2 logits take block_bytes, at least 128.
inline int64_t blocked_block_rows(int64_t block_bytes, int64_t Kp2, int64_t chunk_rows) {
    return std::clamp<int64_t>(block_bytes / (Kp2 * 4), 128, std::max<int64_t>(128, chunk_rows));
}

/// Threads per GPU copying pageable rows into pinned staging buffers (one thread moves
/// ~10 GB/s, far below PCIe): `requested`, or up to 16 of the machine's, shared by the GPUs.
inline int host_copy_threads(int requested, unsigned hardware_threads, int workers) {
    const int threads = requested > 0 ? requested : int(std::max(1u, std::min(16u, hardware_threads)));
    return std::max(1, threads / std::max(1, workers));
}

/// Hopper one-pass kernel: a chunk of `tiles` row tiles run by Q clusters is cut into up to
/// kMaxSubChunks sub-chunks of at least sub_tiles tiles per cluster (a few hundred keep the
/// launches' fill and drain small), so that the features of one run under the kernel of another.
constexpr int kMaxSubChunks = 4;
inline int hopper_sub_chunks(int tiles, int sub_tiles, int Q) {
    return std::clamp(tiles / std::max(1, sub_tiles * Q), 1, kMaxSubChunks);
}

/// First tiles t0[0..nsub] of `nsub` ≤ `tiles` sub-chunks (t0[nsub] = tiles) when each holds `growth`
/// times the tiles of the one before (1: equal sub-chunks; 2 with 4 sub-chunks: 1/15, 2/15, 4/15,
/// 8/15 of the tiles), every sub-chunk at least one tile.
inline void hopper_sub_chunk_starts(int tiles, int nsub, int growth, int* t0) {
    int64_t total = 0, w = 1;
    for (int s = 0; s < nsub; s++, w *= growth) total += w;
    int64_t before = 0;
    w = 1;
    for (int s = 0; s <= nsub; s++, w *= growth) {
        t0[s] = int(int64_t(tiles) * before / total);
        before += w;
    }
    for (int s = 1; s < nsub; s++) t0[s] = std::max(t0[s], t0[s - 1] + 1);         // no empty sub-chunk…
    for (int s = nsub - 1; s > 0; s--) t0[s] = std::min(t0[s], t0[s + 1] - 1);      // …at either end
}

/// Sub-chunk growth (EStepCudaOptions::hopper_sub_chunk_growth) when it is 0: 2 when the one-pass
/// kernel's `blocks` leave SMs free, where the features of later sub-chunks run under the kernel, so
/// a smaller first sub-chunk leaves fewer of them unhidden; 1 (equal sub-chunks) when the kernel holds
/// every SM, where the features take SMs from it whatever the sizes. On an H100 (bench/results/
/// gpu_pipeline_queue.md), growth 2 took 1M × 1024 × 128 spherical (120 of 132 SMs) 2.4 % less device
/// time (fast; −1.6 % accurate, −1.9 % diagonal d = 64), and 4M × 256 × 128 (132 of 132) 0 to 3.8 % more.
inline int hopper_auto_sub_chunk_growth(int blocks, int sm_count) { return blocks < sm_count ? 2 : 1; }

/// Hopper two-pass kernel (K > 1024): row splits of the second pass, one CTA per component tile
/// and split, about one CTA per SM.
inline int hopper_row_splits(int tiles, int sm_count, int Kt) { return std::max(1, std::min(tiles, sm_count / Kt)); }

/// Partial-sum slices (each Kt·128 × FW) the Hopper launches write: one pass, one per cluster
/// and sub-chunk; two passes, one per row split.
inline int64_t hopper_partial_slices(bool one_pass, int max_clusters, int sm_count, int Kt) {
    return one_pass ? int64_t(kMaxSubChunks) * std::max(max_clusters, 1) : std::max<int64_t>(1, sm_count / Kt);
}

} // namespace faiss_gmm::gpu::detail
