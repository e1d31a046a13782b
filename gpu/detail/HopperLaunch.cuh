// Launchers of the Hopper kernels for one tile width DP (HopperLaunch.h), included only by the
// per-DP instantiation files HopperKernels{32,64,96,128}.cu: kernel attributes, cluster
// occupancy, and a chunk's launches (features, one-pass cluster kernel cut into sub-chunks or
// the two-pass kernels, partial reduction).
#pragma once

#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <type_traits>

#include "gpu/detail/CudaUtils.h"
#include "gpu/detail/HopperLaunch.h"
#include "gpu/detail/Sm90DiagSplitKernels.cuh"
#include "gpu/detail/Sm90Kernels.cuh"
#include "gpu/detail/Sm90SplitKernels.cuh"
#include "gpu/detail/heuristics.h"

namespace faiss_gmm::gpu::detail::sm90 {

/// Launch configuration of the one-pass kernels: `clusters` thread-block clusters of C CTAs.
struct ClusterLaunch {
    cudaLaunchConfig_t cfg{};
    cudaLaunchAttribute attr[1];
    ClusterLaunch(int clusters, int C, size_t smem, cudaStream_t stream) {
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = unsigned(C);
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.gridDim = dim3(unsigned(clusters * C));
        cfg.blockDim = dim3(kThreads);
        cfg.dynamicSmemBytes = smem;
        cfg.stream = stream;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    ClusterLaunch(const ClusterLaunch&) = delete; // cfg points into attr
    ClusterLaunch& operator=(const ClusterLaunch&) = delete;
};

/// The kernels of a tile width: DP ≤ 128, the fast (128-row), two-pass and accurate (split) kernels;
/// DP = 192, 256 (diagonal models' [x | x²] with d > 64), the wide kernel (fast, Sm90SplitKernels.cuh)
/// and the two passes of the diagonal kernels (Sm90DiagSplitKernels.cuh: 2×fp16, or one fp16 plane).
template <int DP>
constexpr bool kWideOnly = DP > 128;

template <int DP>
void set_attributes() {
    constexpr auto smem = cudaFuncAttributeMaxDynamicSharedMemorySize;
    if constexpr (kWideOnly<DP>) {
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(split::estep_split_kernel<DP, 1>, smem, split::Shape<DP, 1>::kSmem));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(dsplit::lse_parts_kernel<DP, 1>, smem, dsplit::Shape<DP, 1>::kSmem1));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(dsplit::lse_parts_kernel<DP, 1>,
                                                  cudaFuncAttributePreferredSharedMemoryCarveout, 100)); // 2 CTAs/SM
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(dsplit::estep_kernel<DP, 1>, smem, dsplit::Shape<DP, 1>::kSmem2));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(dsplit::lse_parts_kernel<DP, 2>, smem, dsplit::Shape<DP, 2>::kSmem1));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(dsplit::estep_kernel<DP, 2>, smem, dsplit::Shape<DP, 2>::kSmem2));
    } else {
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(estep_kernel<DP, false>, smem, Shape<DP>::kSmem));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(estep_kernel<DP, true, false>, smem, Shape<DP>::kSmem));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(estep_kernel<DP, true, true>, smem, Shape<DP>::kSmem));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(lse_kernel<DP, false>, smem, Shape<DP>::kLseSmem));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(lse_kernel<DP, true>, smem, Shape<DP>::kLseSmem));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(split::estep_split_kernel<DP, 2>, smem, split::Shape<DP, 2>::kSmem));
        FAISS_GMM_CUDA_CHECK(
                cudaFuncSetAttribute(split::estep_split_kernel<DP, 2, true>, smem, split::Shape<DP, 2>::kSmem));
        FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(split::lse_split_kernel<DP>, smem, split::LseShape<DP>::kSmem));
    }
}

/// is_split: the accurate kernel's clusters, else the fast one-pass kernel's (the wide kernel's for DP > 128).
template <int DP>
int max_active_clusters(bool is_split, int C, int sm_count, cudaStream_t stream) {
    int n = 0;
    if constexpr (kWideOnly<DP>) {
        const ClusterLaunch l(sm_count, C, split::Shape<DP, 1>::kSmem, stream);
        FAISS_GMM_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, split::estep_split_kernel<DP, 1>, &l.cfg));
    } else if (is_split) {
        const ClusterLaunch l(sm_count, C, split::Shape<DP, 2>::kSmem, stream);
        FAISS_GMM_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, split::estep_split_kernel<DP, 2>, &l.cfg));
    } else {
        const ClusterLaunch l(sm_count, C, Shape<DP>::kSmem, stream);
        FAISS_GMM_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, estep_kernel<DP, false>, &l.cfg));
    }
    return n;
}

/// One-pass chunk of n rows in tiles of L::kBM: L::features(first_tile, tiles, rows) of sub-chunk
/// s+1 on feat_stream while L::kernel(sub, first_tile, tiles, rows, clusters) runs sub-chunk s on
/// `stream` (rows: the valid rows of those tiles); sub-chunk s writes its partial sums to its own
/// slices, so one reduction at the end sums all of them. Returns the number of partial slices.
/// (The launchers are classes, not lambdas: nvcc 13's front end fails on these lambdas with
/// "internal error … i_copy_expr_tree".)
template <class L>
int one_pass(const HopperChunkArgs& a, const L& launch, HopperLaunchShape& shape) {
    constexpr int BM = L::kBM;
    const int tiles = int((a.n + BM - 1) / BM);
    const int Q = std::min(a.max_clusters, tiles);
    // Reproducible sums (bt > 0): sub-chunks of whole blocks, and of whole waves of Q blocks (but
    // the last), since a cluster sums whole blocks: 64 blocks on 15 clusters would take 5 block
    // times for 4.3 blocks of work, where 60 take 4.
    const int bt = a.block_tiles, blocks = bt > 0 ? (tiles + bt - 1) / bt : 0, waves = bt > 0 ? (blocks + Q - 1) / Q : 0;
    const int nsub = bt > 0 ? std::min(hopper_sub_chunks(tiles, a.sub_tiles, Q), waves)
                            : hopper_sub_chunks(tiles, a.sub_tiles, Q);
    int t0[kMaxSubChunks + 1];
    if (bt > 0) {
        for (int sub = 0; sub <= nsub; sub++) {
            t0[sub] = std::min(tiles, int(std::min<int64_t>(blocks, int64_t(waves) * sub / nsub * Q)) * bt);
        }
    } else {
        const int growth = a.sub_growth > 0 ? a.sub_growth : hopper_auto_sub_chunk_growth(Q * a.C, a.sm_count);
        hopper_sub_chunk_starts(tiles, nsub, growth, t0);
    }
    auto rows = [&](int sub) { return int(std::min<int64_t>(a.n - int64_t(t0[sub]) * BM, int64_t(t0[sub + 1] - t0[sub]) * BM)); };
    // The features may overwrite G only after the kernels of the previous chunk read it.
    FAISS_GMM_CUDA_CHECK(cudaEventRecord(a.feat_gate, a.stream));
    FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(a.feat_stream, a.feat_gate, 0));
    for (int sub = 0; sub < nsub; sub++) {
        launch.features(t0[sub], t0[sub + 1] - t0[sub], rows(sub), a.feat_stream);
        FAISS_GMM_CUDA_CHECK(cudaEventRecord(a.feat_done[sub], a.feat_stream));
    }
    // Sub-chunks with fewer clusters than Q leave slices unwritten: launch.kernel zeroes them.
    for (int sub = 0; sub < nsub; sub++) {
        FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(a.stream, a.feat_done[sub], 0));
        const int nt = t0[sub + 1] - t0[sub];
        launch.kernel(sub, t0[sub], nt, rows(sub), std::min(Q, nt), Q);
        if (bt > 0 && a.blocks_enqueued) a.blocks_enqueued(a.blocks_ctx, t0[sub] / bt, (t0[sub + 1] + bt - 1) / bt);
    }
    shape.blocks = Q * a.C;
    shape.cluster = a.C;
    return nsub * Q;
}

/// acc += Σ of the partial slices, in double (deterministic order).
template <typename T>
void reduce_parts(const HopperChunkArgs& a, int nparts) {
    const int count = a.K * a.model.FW;
    reduce_parts_kernel<<<unsigned((count + 255) / 256), 256, 0, a.stream>>>(
            a.buf->part.as<const T>(), nparts, a.model.Kt * kKc, a.K, a.model.FW, a.buf->acc.as<double>());
    FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::reduce_parts_kernel");
}

/// The one-pass kernels: the fast cluster kernel (128-row tiles, fp16 features, float partials),
/// and the 64-row kernel of Sm90SplitKernels.cuh (double partial sums) with hi/lo features
/// (Split: accurate mode) or one plane (Wide: fast mode, DP > 128).
enum class OnePass { Fast, Wide, Split };

/// The launchers of one_pass for one of the OnePass kernels.
template <typename Tin, int DP, OnePass Kind>
struct OnePassLaunch {
    static constexpr bool Tile64 = Kind != OnePass::Fast;
    static constexpr int kBM = Tile64 ? split::kBM : sm90::kBM;
    static constexpr int kPlanes = Kind == OnePass::Split ? 2 : 1; // hi/lo blocks per tile of G
    using Part = std::conditional_t<Tile64, double, float>;
    const HopperChunkArgs& a;
    const Tin* x;
    int vec;
    __half* G(int t0) const { return a.buf->G.as<__half>() + size_t(t0) * kPlanes * kBM * a.model.FW; }
    float* xx(int t0) const { return a.buf->xx.as<float>() + size_t(t0) * kBM; }
    void features(int t0, int nt, int rows, cudaStream_t st) const {
        features_kernel<Tin, DP, kBM, kPlanes><<<unsigned(nt * kBM / 16), 256, 0, st>>>(
                x + size_t(t0) * kBM * a.d, rows, a.d, a.buf->center.as<float>(), a.model.sx, a.model.sq,
                a.model.diag ? 1 : 0, a.model.cq, a.model.cb, G(t0), xx(t0), nt * kBM, vec);
        FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::features_kernel");
    }
    /// The kernel's arguments for tiles [t0, t0 + nt) holding `rows` valid rows, partial slices from `part`.
    auto args(int t0, int nt, int rows, Part* part) const {
        std::conditional_t<Tile64, split::Args, Args> k{};
        k.G = G(t0);
        k.xx = xx(t0);
        k.W = a.buf->W.as<const __half>();
        k.ab = a.buf->ab.as<const float>();
        if constexpr (Kind != OnePass::Split) { // the bias columns
            k.Wb = a.buf->Wb.as<const __half>();
            k.K = a.K;
        }
        if constexpr (Kind == OnePass::Fast) { // diagonal models (a_k = 0) need no ‖x‖² term
            k.xsat = a.model.diag ? FLT_MAX : 65504.f / (a.model.sq * a.model.cq);
        }
        k.part = part;
        k.loglik = a.buf->loglik.as<double>();
        k.n = rows;
        k.tiles = nt;
        k.Kt = a.model.Kt;
        k.kinv = a.model.kinv;
        k.block_tiles = a.block_tiles;
        k.llslots = a.block_tiles > 0 ? a.buf->llslots.as<double>() + size_t(t0 / a.block_tiles) * a.llslot_stride : nullptr;
        k.llslot_stride = a.llslot_stride;
        k.lse = a.buf->lse.as<float>(); // (two passes only)
        if constexpr (Tile64) {
            k.flush_tiles = a.flush_tiles;
        } else {
            k.exchange = a.exchange;
        }
        return k;
    }
    /// Sub-chunk `sub` on Q of the Q0 clusters: the fast kernel's CTAs write their partial sums
    /// (no accumulation) and the split kernel's clusters theirs, so slices of the clusters a
    /// short sub-chunk does not use are zeroed.
    void kernel(int sub, int t0, int nt, int rows, int Q, int Q0) const {
        const size_t slice = size_t(a.model.Kt) * kKc * a.model.FW;
        const bool by_block = a.block_tiles > 0; // reproducible sums: one slice per block, each written once
        Part* part = by_block ? a.buf->block_part.as<Part>() + size_t(t0 / a.block_tiles) * slice
                              : a.buf->part.as<Part>() + size_t(sub) * Q0 * slice;
        const auto k = args(t0, nt, rows, part);
        if constexpr (Tile64) {
            const ClusterLaunch l(Q, a.C, split::Shape<DP, kPlanes>::kSmem, a.stream);
            FAISS_GMM_CUDA_CHECK(cudaLaunchKernelEx(&l.cfg, split::estep_split_kernel<DP, kPlanes>, k));
        } else {
            const ClusterLaunch l(Q, a.C, Shape<DP>::kSmem, a.stream);
            FAISS_GMM_CUDA_CHECK(cudaLaunchKernelEx(&l.cfg, estep_kernel<DP, false>, k));
        }
        if (Q < Q0 && !by_block) {
            FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(part + Q * slice, 0, (Q0 - Q) * slice * sizeof(Part), a.stream));
        }
    }
};

/// Accurate mode, K > 1024: the features (tiles padded to an even count: lse_split_kernel takes
/// them in pairs), lse_split_kernel, the second pass on Sn row splits × Kt component tiles, then
/// the double reduction of the Sn slices.
template <typename Tin, int DP>
HopperLaunchShape two_pass_split(const HopperChunkArgs& a, const Tin* x, int vec) {
    const OnePassLaunch<Tin, DP, OnePass::Split> launch{a, x, vec};
    const bool by_block = a.block_tiles > 0;
    const int tiles = int((a.n + split::kBM - 1) / split::kBM), pairs = (tiles + 1) / 2;
    const split::Args k = launch.args(0, tiles, int(a.n), (by_block ? a.buf->block_part : a.buf->part).as<double>());
    launch.features(0, 2 * pairs, int(a.n), a.stream);
    split::lse_split_kernel<DP><<<unsigned(pairs), kThreads, split::LseShape<DP>::kSmem, a.stream>>>(k);
    FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::split::lse_split_kernel");
    const int Sn = hopper_row_splits(tiles, a.sm_count, a.model.Kt);
    split::estep_split_kernel<DP, 2, true>
            <<<unsigned(Sn * a.model.Kt), kThreads, split::Shape<DP, 2>::kSmem, a.stream>>>(k);
    FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::split::estep_split_kernel (second pass)");
    if (!by_block) reduce_parts<double>(a, Sn);
    return HopperLaunchShape{Sn * a.model.Kt, 0};
}

/// Fast mode: the one-pass cluster kernel (K ≤ 1024) or the LSE kernel and the second pass
/// (K > 1024, or models that are not folded: HopperShape::fast_unfolded; folded models take the
/// bias columns there too), then the float reduction; accurate mode: the one-pass split kernel (K ≤ 1024) or
/// two_pass_split, then the double reduction. (DP ≤ 128.)
template <typename Tin, int DP>
HopperLaunchShape chunk_fast_or_split(const HopperChunkArgs& a, const Tin* x, int vec) {
    // Reproducible sums (a.block_tiles > 0): the blocks' slices stay for the caller's limbs.
    const bool by_block = a.block_tiles > 0;
    HopperLaunchShape shape;
    if (a.model.split) {
        if (a.C == 0) return two_pass_split<Tin, DP>(a, x, vec);
        const int nparts = one_pass(a, OnePassLaunch<Tin, DP, OnePass::Split>{a, x, vec}, shape);
        if (!by_block) reduce_parts<double>(a, nparts);
        return shape;
    }
    const OnePassLaunch<Tin, DP, OnePass::Fast> launch{a, x, vec};
    if (a.C > 0) {
        const int nparts = one_pass(a, launch, shape);
        if (!by_block) reduce_parts<float>(a, nparts);
        return shape;
    }
    const int tiles = int((a.n + kBM - 1) / kBM);
    const Args k = launch.args(0, tiles, int(a.n), (by_block ? a.buf->block_part : a.buf->part).as<float>());
    launch.features(0, tiles, int(a.n), a.stream);
    const int Sn = hopper_row_splits(tiles, a.sm_count, a.model.Kt);
    auto passes = [&](auto bias) {
        constexpr bool kBias = decltype(bias)::value;
        lse_kernel<DP, kBias><<<unsigned(tiles), kThreads, Shape<DP>::kLseSmem, a.stream>>>(k);
        FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::lse_kernel");
        estep_kernel<DP, true, kBias><<<unsigned(Sn * a.model.Kt), kThreads, Shape<DP>::kSmem, a.stream>>>(k);
        FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::estep_kernel (second pass)");
    };
    if (a.model.folded) {
        passes(std::true_type{});
    } else {
        passes(std::false_type{});
    }
    shape.blocks = Sn * a.model.Kt;
    shape.cluster = 0;
    if (!by_block) reduce_parts<float>(a, Sn);
    return shape;
}

/// Diagonal models with d > 64 (DP = 192, 256) in two passes (accurate mode at any K: Planes = 2;
/// fast mode where the wide kernel does not run: Planes = 1): the features in 32-row tiles,
/// lse_parts_kernel (Sn row splits × Kt component tiles), lse_merge_kernel, estep_kernel on the
/// same blocks, then the double reduction of the Sn slices (Sm90DiagSplitKernels.cuh).
template <typename Tin, int DP, int Planes>
HopperLaunchShape two_pass_diag(const HopperChunkArgs& a, const Tin* x, int vec) {
    using S = dsplit::Shape<DP, Planes>;
    constexpr int BM = dsplit::kBM;
    const bool by_block = a.block_tiles > 0;
    const int tiles = int((a.n + BM - 1) / BM), Kt = a.model.Kt;
    features_kernel<Tin, DP, BM, Planes><<<unsigned(tiles * BM / 16), 256, 0, a.stream>>>(
            x, int(a.n), a.d, a.buf->center.as<float>(), a.model.sx, a.model.sq, 1, 1.f, 1.f,
            a.buf->G.as<__half>(), a.buf->xx.as<float>(), tiles * BM, vec);
    FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::features_kernel (diagonal, 32-row tiles)");
    dsplit::Args k{};
    k.G = a.buf->G.as<const __half>();
    k.W = a.buf->W.as<const __half>();
    k.ab = a.buf->ab.as<const float>();
    k.lse_parts = a.buf->lse_parts.as<float2>();
    k.lse = a.buf->lse.as<float>();
    k.part = (by_block ? a.buf->block_part : a.buf->part).as<double>();
    k.loglik = a.buf->loglik.as<double>();
    k.llslots = by_block ? a.buf->llslots.as<double>() : nullptr;
    k.n = int(a.n);
    k.tiles = tiles;
    k.Kt = Kt;
    k.kinv = a.model.kinv;
    k.flush_tiles = a.flush_tiles;
    k.block_tiles64 = a.block_tiles; // HopperEStep counts blocks in 64-row tiles (tile64())
    k.block_tiles = a.block_tiles * (split::kBM / BM);
    k.llslot_stride = a.llslot_stride;
    const int Sn = hopper_row_splits(tiles, a.sm_count, Kt);
    // Pass 1 writes each row's partials whatever block computes them: its own row splits, S::kCtas1 CTAs per SM.
    const int Sn1 = hopper_row_splits(tiles, S::kCtas1 * a.sm_count, Kt);
    dsplit::lse_parts_kernel<DP, Planes><<<unsigned(Sn1 * Kt), kThreads, S::kSmem1, a.stream>>>(k);
    FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::dsplit::lse_parts_kernel");
    dsplit::lse_merge_kernel<DP><<<unsigned(((tiles + 1) / 2 * 32 + 255) / 256), 256, 0, a.stream>>>(k);
    FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::dsplit::lse_merge_kernel");
    dsplit::estep_kernel<DP, Planes><<<unsigned(Sn * Kt), kThreads, S::kSmem2, a.stream>>>(k);
    FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::dsplit::estep_kernel");
    if (!by_block) reduce_parts<double>(a, Sn);
    return HopperLaunchShape{Sn * Kt, 0};
}

/// DP ≤ 128: chunk_fast_or_split; DP > 128: the wide kernel (fast, one pass: a.C > 0), then the
/// double reduction, or two_pass_diag (accurate: 2×fp16; fast: one plane).
template <typename Tin, int DP>
HopperLaunchShape chunk_of(const HopperChunkArgs& a, const Tin* x, int vec) {
    if constexpr (kWideOnly<DP>) {
        if (a.model.split) return two_pass_diag<Tin, DP, 2>(a, x, vec);
        if (a.C == 0) return two_pass_diag<Tin, DP, 1>(a, x, vec);
        HopperLaunchShape shape;
        const int nparts = one_pass(a, OnePassLaunch<Tin, DP, OnePass::Wide>{a, x, vec}, shape);
        if (a.block_tiles == 0) reduce_parts<double>(a, nparts); // else the blocks' slices stay for the limbs
        return shape;
    } else {
        return chunk_fast_or_split<Tin, DP>(a, x, vec);
    }
}

template <typename Tin, int DP>
HopperLaunchShape typed_chunk(const HopperChunkArgs& a) {
    const Tin* x = static_cast<const Tin*>(a.x);
    // Rows can be read with 16-byte (float) / 8-byte (uint8) loads: aligned base, d a multiple of 4 / 8.
    const uintptr_t xa = reinterpret_cast<uintptr_t>(x);
    const int vec = sizeof(Tin) == 4 ? (xa % 16 == 0 && a.d % 4 == 0) : (xa % 8 == 0 && a.d % 8 == 0);
    return chunk_of<Tin, DP>(a, x, vec);
}

template <int DP>
HopperLaunchShape chunk(const HopperChunkArgs& a) {
    return a.uint8 ? typed_chunk<uint8_t, DP>(a) : typed_chunk<float, DP>(a);
}

} // namespace faiss_gmm::gpu::detail::sm90

namespace faiss_gmm::gpu::detail {

template <int DP>
const HopperKernels& hopper_kernels_for() {
    static const HopperKernels k{&sm90::set_attributes<DP>, &sm90::max_active_clusters<DP>, &sm90::chunk<DP>};
    return k;
}

} // namespace faiss_gmm::gpu::detail
