// The full-covariance log-density kernel for Hopper (sm_90a; FullEStep.h, issue 17): what
// FullFusedKernel.cuh computes (log2 p(x_b, k) for a tile of rows and a range of components, the
// projections (x − c)ᵀU_k reduced in registers, never written), with warpgroup products (wgmma)
// instead of mma.sync. Why (bench/results/gpu_full_covariance.md): the mma.sync kernel's 8 warps each
// read the whole U_k from shared memory for their 16 rows, and each CTA of 128 rows loads all
// 32 KiB of U_k from L2 per component, 256 GB per million rows at K = 1024, d = 128.
//
// Here:
//  * a CTA holds 64·WG rows (WG = 4 consumer warpgroups in fast mode, 2 in split mode, whose
//    operands take twice the shared memory), the rows' fp16 operands loaded once into shared memory;
//  * a producer warp streams the components' factors through a ring of stages with bulk copies
//    (an mbarrier per stage says it landed; a named barrier per stage, which the consumer warps
//    arrive at once they have read it and the producer waits at before refilling it, says it is
//    free: with an mbarrier there, compute-sanitizer's racecheck reports the refill's bulk copy
//    against the epilogue's reads of μ_kᵀU_k, as it did for Sm90DiagSplitKernels.cuh), in the packed layout of
//    FullSm90Layout.h: only the column blocks of each k-step that its products read (per
//    component at DP = 128: 18 KiB for W = 0, 20 for 32, 24 for 64, 32 for DP), so in fast mode,
//    with twice the rows per CTA, the L2 traffic per row falls 2.7× (W = 64) to 3.6× (W = 0);
//  * k-step s of the triangular product multiplies only the columns from 16s on (both operands
//    K-major from shared memory), in column groups of W (EStepCudaOptions::hopper_full_group,
//    FullSm90Layout.h): W = 0 is one wgmma of N = DP − 16s per step, the exact triangle of the
//    mma.sync kernel, but ptxas serializes products whose accumulator registers overlap partly;
//    W = 32 / 64 / DP multiply whole groups (some zeros) with disjoint accumulators;
//  * the warpgroups run free of each other (no CTA-wide barrier per component), so one's epilogue
//    (the same arithmetic as FullFusedKernel.cuh, the same registers per thread: the wgmma
//    accumulator of a warp is the m16n8 layout) overlaps another's products; each stages its rows'
//    log-densities for kFusedRound components and stores them as 128-byte rows of S.
// The arithmetic is the mma.sync kernel's (fp16 operands with power-of-two scales, fp32 tensor-core
// sums; split: hi·hi + hi·lo + lo·hi), so tests/gpu/test_estep_cuda_full.cu checks both against the
// same bound.
//
// Status (2026-12-07): the default on Hopper (EStepCudaOptions::full_sm90_kernel). On an H100 its GPU
// tests pass (every path and column grouping within the bound), compute-sanitizer memcheck and
// racecheck are clean, and a fast call at 1M × 1024 × 128 took 82 ms of device time against the
// mma.sync kernel's 125 in the same run (bench/results/gpu_full_covariance.md, "Now (2026-12-07)").
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "gpu/detail/FullFusedKernel.cuh"    // kFusedRound
#include "gpu/detail/FullSm90Layout.h"      // the packed factor layout
#include "gpu/detail/Sm90Primitives.cuh"

namespace faiss_gmm::gpu::detail {

/// Shared memory and threads of the Hopper kernel for (DP, split, column groups W).
template <int DP, bool kSplit, int W>
struct FullSm90Shape {
    static constexpr int kWG = kSplit ? 2 : 4;     ///< consumer warpgroups (64 rows each)
    static constexpr int kRows = 64 * kWG;         ///< rows per CTA
    static constexpr int kThreads = 128 * kWG + 32; ///< + the producer warp
    static constexpr int kOperands = kSplit ? 2 : 1; ///< hi (and lo)
    static constexpr int kFactorBytes = int(full_sm90_factor_halves(DP, W)) * 2; ///< one operand of one U_k
    static constexpr int kStageBytes = kOperands * kFactorBytes + DP * 4; ///< + μ_kᵀU_k (fp32, padded)
    static constexpr int kRowBytes = kRows * DP * 2;  ///< one operand of the CTA's rows
    static constexpr int kALbo = kRows * 16;          ///< rows: byte distance of adjacent 8-column blocks
    static constexpr int oStage = kOperands * kRowBytes;
    static constexpr int kSLd = kFusedRound + 1;      ///< staged log-densities: row stride (floats)
    static constexpr int kMaxSmem = 227 * 1024;       ///< an sm_90 CTA's most dynamic shared memory
    /// Three stages where they fit (split mode with wide groups: two).
    static constexpr int kStages = oStage + 3 * kStageBytes + kRows * kSLd * 4 + 3 * 8 <= kMaxSmem ? 3 : 2;
    static constexpr int oS = oStage + kStages * kStageBytes;
    static constexpr int oBar = oS + kRows * kSLd * 4;
    static constexpr int kSmem = oBar + kStages * 8; ///< + an mbarrier per stage
    static_assert(W == 0 || (W % 16 == 0 && W <= DP), "column groups of whole k-steps");
    static_assert(kSmem <= kMaxSmem, "shared memory");
    static_assert(kStageBytes % 16 == 0 && oStage % 16 == 0 && oBar % 8 == 0, "bulk copies and mbarriers align");
};

/// The products of k-step s with column group c onward (W > 0): D[:, group] (+)= A[:, 16s..16s+16) ·
/// B[16s..16s+16, group], one wgmma per group (N = W, or what is left of DP), into the group's
/// accumulator registers.
template <int DP, int W, int s, int c>
__device__ __forceinline__ void full_sm90_groups(float (&acc)[DP / 2], uint64_t da, uint32_t sB, int scale_d) {
    if constexpr (c * W < DP) {
        constexpr int N = DP - c * W < W ? DP - c * W : W;
        constexpr uint32_t kFirst = uint32_t(full_sm90_first_block(W, s));
        constexpr uint32_t kB = uint32_t(full_sm90_step_offset(DP, W, s)) * 2 + (c * W / 8 - kFirst) * 128;
        constexpr uint32_t kBLbo = uint32_t(full_sm90_step_width(DP, W, s)) * 128; // the step's two row blocks
        const uint64_t db = sm90::make_desc(sB + kB, kBLbo, 128);
        sm90::Wgmma<N, 0, 0>::mma(*reinterpret_cast<float(*)[N / 2]>(acc + c * W / 2), da, db, scale_d);
        full_sm90_groups<DP, W, s, c + 1>(acc, da, sB, scale_d);
    }
}

/// k-step s of a warpgroup's product: D[:, 16s..DP) (+)= A[:, 16s..16s+16) · B[16s..16s+16, 16s..DP),
/// A = the warpgroup's 64 rows (sA: K-major core matrices, kALbo apart along K), B = the stage's
/// packed factor (sB). scale_d = 0 starts the sums (step 0, first product: it covers every column).
template <int DP, int W, int kALbo, int s>
__device__ __forceinline__ void full_sm90_step(float (&acc)[DP / 2], uint32_t sA, uint32_t sB, int scale_d) {
    const uint64_t da = sm90::make_desc(sA + uint32_t(2 * s * kALbo), kALbo, 128);
    if constexpr (W == 0) { // one product over the step's non-zero columns
        constexpr int N = DP - 16 * s;
        constexpr uint32_t kB = uint32_t(full_sm90_step_offset(DP, 0, s)) * 2;
        constexpr uint32_t kBLbo = uint32_t(full_sm90_step_width(DP, 0, s)) * 128;
        const uint64_t db = sm90::make_desc(sB + kB, kBLbo, 128);
        sm90::Wgmma<N, 0, 0>::mma(*reinterpret_cast<float(*)[N / 2]>(acc + 8 * s), da, db, scale_d);
    } else {
        full_sm90_groups<DP, W, s, (16 * s) / W>(acc, da, sB, scale_d);
    }
}

/// All k-steps of one component: hi·hi (and hi·lo, lo·hi when split).
template <int DP, int W, int kALbo, bool kSplit, int... S>
__device__ __forceinline__ void full_sm90_products(float (&acc)[DP / 2], uint32_t sAh, uint32_t sAl, uint32_t sBh,
                                                   uint32_t sBl, std::integer_sequence<int, S...>) {
    (full_sm90_step<DP, W, kALbo, S>(acc, sAh, sBh, S == 0 ? 0 : 1), ...);
    if constexpr (kSplit) {
        (full_sm90_step<DP, W, kALbo, S>(acc, sAh, sBl, 1), ...);
        (full_sm90_step<DP, W, kALbo, S>(acc, sAl, sBh, 1), ...);
    }
}

/// S[b][k] = log2 p(x_b, k) for rows [blockIdx.x·kRows, +kRows) ∩ [0, n) and components
/// [blockIdx.y·kc, +kc) ∩ [0, K) (kc a multiple of kFusedRound). Xh/Xl, rinv: full_half_rows_kernel;
/// Wh/Wl: K × full_sm90_factor_halves(DP, W) (pack_full_factors_sm90); kinv, mp (K × DP), logc2:
/// FullModel. Launch with FullSm90Shape::kThreads threads and kSmem bytes of dynamic shared memory.
template <int DP, bool kSplit, int W>
__global__ void __launch_bounds__(FullSm90Shape<DP, kSplit, W>::kThreads, 1) full_sm90_log_density_kernel(
        const __half* __restrict__ Xh, const __half* __restrict__ Xl, const float* __restrict__ rinv, int n,
        const __half* __restrict__ Wh, const __half* __restrict__ Wl, const float* __restrict__ kinv,
        const float* __restrict__ mp, const float* __restrict__ logc2, int K, int kc, float* __restrict__ S, int ldS) {
#if FAISS_GMM_SM90A
    using Sh = FullSm90Shape<DP, kSplit, W>;
    constexpr int NT = DP / 8, ST = Sh::kStages;
    extern __shared__ __align__(128) unsigned char smem[];
    uint64_t* full = reinterpret_cast<uint64_t*>(smem + Sh::oBar);
    // Named barriers: 1 + wg for warpgroup wg's staged rounds, kFreeBarrier + stage for a free stage
    // (the consumer warps and the producer warp).
    constexpr int kFreeBarrier = 1 + Sh::kWG, kFreeCount = Sh::kThreads;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int row0 = blockIdx.x * Sh::kRows;
    const int k0 = blockIdx.y * kc, k1 = min(K, k0 + kc);
    if (k0 >= k1) return;

    // The rows' operands → shared memory once: the 16-byte piece (row r, columns 8c..8c+7) at
    // c·kALbo + 16r (K-major core matrices); zeros past n.
    for (int p = tid; p < Sh::kRows * NT; p += Sh::kThreads) {
        const int r = p / NT, c = p % NT;
        uint4 h = make_uint4(0, 0, 0, 0), l = h;
        if (row0 + r < n) {
            h = *reinterpret_cast<const uint4*>(Xh + size_t(row0 + r) * DP + 8 * c);
            if constexpr (kSplit) l = *reinterpret_cast<const uint4*>(Xl + size_t(row0 + r) * DP + 8 * c);
        }
        *reinterpret_cast<uint4*>(smem + c * Sh::kALbo + 16 * r) = h;
        if constexpr (kSplit) *reinterpret_cast<uint4*>(smem + Sh::kRowBytes + c * Sh::kALbo + 16 * r) = l;
    }
    if (tid == 0) {
        for (int s = 0; s < ST; s++) {
            sm90::mbar_init(full + s, 1); // the producer's arrive.expect_tx
        }
        sm90::fence_mbar_init();
    }
    sm90::fence_proxy_async(); // the rows' st.shared → visible to wgmma
    __syncthreads();           // (the last CTA-wide barrier: the producer warp leaves below)

    if (warp == 4 * Sh::kWG) { // producer: component k into stage (k − k0) % ST
        for (int k = k0, it = 0; k < k1; k++, it++) {
            const int st = it % ST;
            if (it >= ST) sm90::named_sync(kFreeBarrier + st, kFreeCount); // its previous component was read
            if (lane == 0) {
                unsigned char* b = smem + Sh::oStage + st * Sh::kStageBytes;
                const size_t at = size_t(k) * (Sh::kFactorBytes / 2);
                sm90::mbar_expect_tx(full + st, Sh::kStageBytes);
                sm90::bulk_g2s(b, Wh + at, Sh::kFactorBytes, full + st);
                if constexpr (kSplit) sm90::bulk_g2s(b + Sh::kFactorBytes, Wl + at, Sh::kFactorBytes, full + st);
                sm90::bulk_g2s(b + Sh::kOperands * Sh::kFactorBytes, mp + size_t(k) * DP, DP * 4, full + st);
            }
            __syncwarp();
        }
        return;
    }

    // Consumers: warpgroup wg, warp wq of it; this thread's rows rl and rl + 8 of the CTA.
    const int wg = warp >> 2, wq = warp & 3, g = lane >> 2, t = lane & 3;
    const int rl = 64 * wg + 16 * wq + g;
    const float rsa = row0 + rl < n ? rinv[row0 + rl] : 0.f, rsb = row0 + rl + 8 < n ? rinv[row0 + rl + 8] : 0.f;
    float(*sS)[Sh::kSLd] = reinterpret_cast<float(*)[Sh::kSLd]>(smem + Sh::oS);
    const uint32_t sAh = sm90::smem_u32(smem) + uint32_t(wg) * 8 * 128; // the warpgroup's 8 row blocks
    const uint32_t sAl = sAh + Sh::kRowBytes;
    float acc[DP / 2];
    for (int k = k0, it = 0; k < k1; k++, it++) {
        const int st = it % ST;
        sm90::mbar_wait(full + st, uint32_t(it / ST) & 1u);
        const unsigned char* b = smem + Sh::oStage + st * Sh::kStageBytes;
        const uint32_t sBh = sm90::smem_u32(b), sBl = sBh + Sh::kFactorBytes;
        sm90::wgmma_fence();
        sm90::fence_operand(acc);
        full_sm90_products<DP, W, Sh::kALbo, kSplit>(acc, sAh, sAl, sBh, sBl, std::make_integer_sequence<int, DP / 16>());
        sm90::wgmma_commit();
        sm90::wgmma_wait<0>();
        sm90::fence_operand(acc);

        // ‖y‖², y = acc·(1/(s_row·s_k)) − μ_kᵀU_k, for the thread's two rows (FullFusedKernel.cuh).
        const float* m = reinterpret_cast<const float*>(b + Sh::kOperands * Sh::kFactorBytes);
        const float kv = kinv[k];
        float qa, qb;
        full_quad_norms<NT>(acc, m, t, rsa * kv, rsb * kv, qa, qb); // (the mma.sync kernel's arithmetic)
        // This warp is done with the stage (m was read); only a stage that will be refilled is
        // released, so that every arrival has the producer's wait that completes it.
        if (it + ST < k1 - k0) sm90::named_arrive(kFreeBarrier + st, kFreeCount);
        const int col = (k - k0) % kFusedRound;
        if (t == 0) {
            const float c2 = logc2[k];
            sS[rl][col] = full_log2_density(qa, c2);
            sS[rl + 8][col] = full_log2_density(qb, c2);
        }
        if (col == kFusedRound - 1 || k == k1 - 1) { // the warpgroup's 64 rows × this round → S
            sm90::named_sync(1 + wg, 128);
            const int kb = k - col, nc = col + 1, wt = tid & 127;
            for (int e = wt; e < 64 * kFusedRound; e += 128) {
                const int r = 64 * wg + e / kFusedRound, c = e % kFusedRound;
                if (c < nc && row0 + r < n) S[size_t(row0 + r) * ldS + kb + c] = sS[r][c];
            }
            sm90::named_sync(1 + wg, 128); // sS is rewritten by the next round
        }
    }
#else
    (void)Xh; (void)Xl; (void)rinv; (void)n; (void)Wh; (void)Wl; (void)kinv; (void)mp; (void)logc2; (void)K;
    (void)kc; (void)S; (void)ldS;
    __trap();
#endif
}

} // namespace faiss_gmm::gpu::detail
