// Accurate mode of the Hopper E-step (EStepCudaAlgorithm::Hopper without fast_math):
// the one-pass cluster kernel of Sm90Kernels.cuh with every tensor-core product
// split in two fp16 halves ("2×fp16", three products per GEMM), for spherical
// models, d ≤ 128 and K ≤ 1024 (two passes above: see "K > 1024" below). The
// fast kernel's design notes (cluster of C = ceil(K/128) CTAs, per-row
// (max, sum-exp) exchanged through distributed shared memory, software
// pipeline GEMM1(i) | finish(i−1) | GEMM2(i−1) | epilogue(i)) hold here; what
// differs, and why:
//
//  * Precision. Every fp16 operand v is stored as hi = fp16(v) and
//    lo = fp16(v − hi); a product is hi·hi + hi·lo + lo·hi, so what is dropped
//    (lo·lo and the rounding of lo) is ~2^-24 of |a||b|: fp32-level products on
//    fp16 tensor cores (3 products at the fp16 rate are 1.5 of TF32's cost and
//    more precise than 3×TF32's 2×10-bit split). Both GEMMs are split:
//      GEMM1  S = Xh·Whᵀ + Xh·Wlᵀ + Xl·Whᵀ       (logits)
//      GEMM2  A += Rhᵀ·X'h + Rhᵀ·X'l + Rlᵀ·X'h   (Σ r·[x | 1 | ‖x‖²])
//    Power-of-two scales keep the halves normal: the typical centered value is
//    scaled to ~1 (so values up to ~6.5e4 × typical fit fp16, and lo ~2^-12
//    stays above fp16's normal range), responsibilities are scaled by 2^12
//    (so r down to ~2^-26 keeps a normal lo half) and the host undoes it.
//  * Accumulation. The tensor cores' fp32 accumulation of Rᵀ·X' over a CTA's
//    whole row range (~1000 tiles) would lose digits, so every `flush_tiles`
//    tiles a CTA adds its accumulator into its own slice of a double buffer
//    (no atomics: each (cluster, component) slice has one writer) and restarts
//    from 0; a final kernel sums the clusters' slices in double.
//  * Tiles of 64 rows instead of 128 (shared memory: W, R and X each come in two
//    halves). Warpgroup w owns components 64w .. 64w+63 of the CTA in BOTH
//    products: GEMM1 is 64 rows × its 64 components (m64n64), so R is written
//    and read by the same warpgroup, and a row's log-sum-exp merges 2·C
//    partials (one per CTA and warpgroup).
//
// Layouts (halves; as in Sm90Kernels.cuh with 64-row tiles):
//  * G, tile T: [hi block | lo block], each 64 rows × FW: chunk (r, fb) at
//    (fb·64 + r)·8 within the block; features [s_x·x (DP) | 1 | s_q‖x‖² | 0 × 6]
//    in hi, [lo of the same | 0 | lo | 0 × 6] in lo; padding rows all 0.
//  * W: [hi: Kt × 128 × DP | lo: same], each tiled as in Sm90Kernels.cuh.
//  * R hi and lo in shared memory (64 rows × 128 comps each): comp k, row r at byte
//    (k/8)·1024 + r·16 + (k%8)·2.
//
// K > 1024 (two passes, as the fast kernel's): lse_split_kernel computes log2 Z of every row
// with the split logits (pass 1), then estep_split_kernel<DP, 2, true> runs without clusters,
// block b owning component tile b % Kt and row split b / Kt (pass 2): it recomputes the same
// split logits, r = 2^(logit − log2 Z) (no exchange), and GEMM2 as above. Pass 1 keeps both
// warpgroups busy on one tile each (64 rows × the 128 components of a W stage, m64n128, three
// products per 16 features) and streams the Kt hi/lo weight tiles through two stages; a stage
// is released (named barrier 1 + stage: the other 7 warps arrive, warp 0 waits and refills) as
// soon as its products are done and its (a, b) read, so one warpgroup's products overlap the
// other's exponentials. (An mbarrier counting the warps did the same; compute-sanitizer's
// racecheck does not see its arrive → wait as ordering the reads before the bulk copy.) Per
// pair of 64-row tiles the weights are read once from L2 (Kt × 66 KB): 128 rows per W read, as
// the fast LSE kernel's; 64 would double the L2 traffic (~65 GB at 1M × 16384). Measured on an
// H100 at 1M × 16384 × 128: 65 ms for both passes (Blocked fp32: 353 ms; bench/results/
// gpu_accurate_twopass.md).
//
// The wide kernel (estep_split_kernel<DP, 1>, fast mode) is this kernel with one plane: only
// the hi·hi products, fp16 responsibilities (× 2^12, so small ones stay normal), the same
// 64-row tiles, double flushes and exchange. It serves diagonal models with d > 64, whose
// features [x | x²] are DP = 192 or 256 wide (Sm90Kernels.cuh: features_kernel): the fast
// kernel's 128-row tile at DP = 256 needs 68 KB per stage and 132 + 64 accumulator registers
// per thread, the 64-row tile 34 KB and 132 + 32. GEMM1 is then m64n64 per warpgroup (both
// operands from shared memory: ~128 B/clock of operand traffic, the SM's shared-memory rate,
// where m64n128 needs ~96), the price of fitting.
#pragma once

#include "gpu/detail/Sm90Kernels.cuh"

namespace faiss_gmm::gpu::detail::sm90::split {

// kBM (64 rows per tile) and kRScale: TileShapes.h; the flush interval: EStepCudaOptions::hopper_flush_tiles
constexpr int kMaxParts = 2 * kMaxCluster;  // per-row partials: (CTA, warpgroup)

/// Planes = 2: the accurate kernel (hi and lo halves of every operand), DP ≤ 128. Planes = 1:
/// the wide kernel (fast mode, one fp16 plane) for diagonal models with d > 64, whose features
/// [x | x²] are DP = 192 or 256 wide: the fast kernel's 128-row tiles would not fit (shared
/// memory: a 68 KB tile per stage; registers: 132 accumulators of GEMM2 besides 64 of GEMM1).
template <int DP, int Planes>
struct Shape {
    static_assert(Planes == 1 || Planes == 2, "Planes: 1 (wide) or 2 (accurate)");
    static_assert(DP % 32 == 0 && DP >= 32 && DP <= (Planes == 2 ? 128 : 256),
                  "DP: 32 .. 128 (accurate), .. 256 (wide)");
    static constexpr int FW = DP + 8;
    static constexpr int kHalfTileBytes = kBM * FW * 2; // the hi (or lo) block of a tile
    static constexpr int kTileBytes = Planes * kHalfTileBytes;
    static constexpr int kRowBytes = kBM * 4;
    static constexpr int kWBytes = kKc * DP * 2;        // hi (or lo) of a component tile
    // The wide kernel takes the bias b_k through the bias columns, as the fast kernel does
    // (Sm90Kernels.cuh): W's block of 8 after DP, and zeros for the second half of that k-step.
    static constexpr bool kFold = Planes == 1;
    static constexpr int kWbBytes = kFold ? kKc * 8 * 2 : 0;
    static constexpr int kZeroBytes = kFold ? kKc * 8 * 2 : 0; // ≥ 64 rows × 8 (X), 128 comps × 8 (W)
    static constexpr int kABBytes = kKc * 8;
    static constexpr int kRBytes = kBM * kKc * 2;       // hi (or lo) of R
    static constexpr int kSlotBytes = 2 * kMaxParts * kBM * 8;
    static constexpr int kStageBytes = kTileBytes + 2 * kRowBytes; // tile | ‖x‖² | log2 Z (two passes)
    static constexpr int oW = 0;                         // hi, lo at + kWBytes
    static constexpr int oWb = oW + Planes * kWBytes;     // (wide kernel)
    static constexpr int oAB = oWb + kWbBytes;
    static constexpr int oR = oAB + kABBytes;            // hi, lo at + kRBytes
    static constexpr int oSlot = oR + Planes * kRBytes;
    static constexpr int oStage = oSlot + kSlotBytes;
    static constexpr int kFixed = oStage + kZeroBytes + 128; // + zeros (wide) + mbarriers
    static constexpr int kStages = (kSmemLimit - kFixed) / kStageBytes >= 3 ? 3 : 2;
    static constexpr int oZero = oStage + kStages * kStageBytes; // above every stage: descriptors reach it
    static constexpr int oBar = oZero + kZeroBytes;
    static constexpr int kSmem = oBar + 128;
    static_assert(kSmem <= kSmemLimit, "estep_split_kernel shared memory");
    static_assert(oStage % 128 == 0 && kStageBytes % 128 == 0 && kHalfTileBytes % 128 == 0, "alignment");
};

struct Args {
    const __half* G;  // tiles × [hi | lo] × 64 × FW (see above)
    const float* xx;  // tiles × 64: ‖x − c‖² (unscaled); 0 for padding rows
    const __half* W;  // [hi | lo] × Kt × 128 × DP
    const float* ab;  // Kp × 2, as in Sm90Kernels.cuh
    const __half* Wb; // wide kernel: Kt × 128 × 8, the weights of the bias columns (TileShapes.h: BiasColumn)
    int K;            // wide kernel: components (those of the last tile past K are masked)
    double* part;     // clusters × Kp × FW: Σ 2^12·r·[x̃ | 1 | ‖x‖²·s_q], one slice per cluster
    double* loglik;   // Σ_n ln Z_n, added atomically
    float* lse;       // two passes: tiles × 64 log2 Z (lse_split_kernel out, estep_split_kernel<.., true> in)
    int n;            // valid rows of the chunk
    int tiles;        // ceil(n / 64)
    int Kt;           // component tiles (one pass: = cluster size ≤ 8)
    float kinv;       // 1 / (s_x · s_w)
    int flush_tiles;  // accumulator → part every this many tiles
    // Reproducible sums, as in sm90::Args: block_tiles > 0: whole blocks per cluster, each
    // block's sums written to part slice `block` and its Σ log2 Z to llslots (flush_tiles unused).
    int block_tiles;
    double* llslots;
    int llslot_stride; // slots per block
};

/// acc2 (+)= Rᵀ·X' for FW features (64-row tiles: 8 features of X' are 1024 bytes apart). wgmma
/// has N ≤ 256, so FW = 264 (DP = 256) is two instructions, features 0..135 and 136..263; the
/// second's accumulator registers are acc2[68..] (the m64nN layout puts column 8j + 2t at d[4j..]).
template <int FW>
__device__ __forceinline__ void gemm2_mma(float (&acc2)[FW / 2], uint64_t dR, uint64_t dX) {
    if constexpr (FW <= 256) {
        Wgmma<FW, 1, 1>::mma(acc2, dR, dX, 1);
    } else {
        static_assert(FW == 264, "FW > 256: only DP = 256 is split");
        Wgmma<136, 1, 1>::mma(*reinterpret_cast<float(*)[68]>(&acc2[0]), dR, dX, 1);
        Wgmma<128, 1, 1>::mma(*reinterpret_cast<float(*)[64]>(&acc2[68]), dR, dX + uint64_t(17 * 1024 / 16), 1);
    }
}

/// acc (=, then +=) the logits' products over DP features, m64nN wgmma: Xh·Whᵀ, and for Planes = 2
/// also Xh·Wlᵀ + Xl·Whᵀ. X in 64-row blocks (16 features: +2048 B), W in 128-component tiles (+4096 B).
template <int DP, int N, int Planes>
__device__ __forceinline__ void split_products(float (&acc)[N / 2], uint64_t dXh, uint64_t dXl, uint64_t dWh,
                                               uint64_t dWl) {
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++) {
        const uint64_t xo = uint64_t(kk * 128), wo = uint64_t(kk * 256);
        Wgmma<N, 0, 0>::mma(acc, dXh + xo, dWh + wo, kk > 0 ? 1 : 0);
        if constexpr (Planes == 2) {
            Wgmma<N, 0, 0>::mma(acc, dXh + xo, dWl + wo, 1);
            Wgmma<N, 0, 0>::mma(acc, dXl + xo, dWh + wo, 1);
        }
    }
}

/// kLse = false: one pass, clusters of C = Kt ≤ 8 CTAs (CTA `rank` owns component tile
/// `rank`); the clusters split the row tiles. kLse = true (accurate, K > 1024): second pass,
/// no cluster; block b owns component tile b % Kt and row split b / Kt, log2 Z per row comes
/// from lse_split_kernel. Planes: see Shape.
template <int DP, int Planes, bool kLse = false>
__global__ void __launch_bounds__(kThreads, 1) estep_split_kernel(const Args a) {
#if FAISS_GMM_SM90A
    using S = Shape<DP, Planes>;
    constexpr bool kSplit = Planes == 2;
    static_assert(kSplit || !kLse, "two passes: the accurate kernel only");
    // The wide kernel runs diagonal models (a_k = 0): its bias columns carry b_k alone, no ‖x‖² term.
    static_assert(!S::kFold || DP > 128, "the wide kernel: diagonal models with d > 64");
    constexpr int FW = S::FW;
    constexpr int NS = S::kStages;
    extern __shared__ __align__(128) uint8_t smem[];

    const int tid = threadIdx.x, wg = tid >> 7, wq = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
    int rank = 0, C = 1, ctile, q; // q: cluster (one pass) or row split (two passes) → its partial slice
    int tile0, tile1;
    if constexpr (kLse) {
        ctile = int(blockIdx.x) % a.Kt;
        q = int(blockIdx.x) / a.Kt;
        part_tiles(a.tiles, q, int(gridDim.x) / a.Kt, a.block_tiles, tile0, tile1);
    } else {
        rank = int(cluster_ctarank());
        C = int(cluster_nctarank());
        ctile = rank;
        q = int(blockIdx.x) / C; // cluster q of gridDim.x / C
        part_tiles(a.tiles, q, int(gridDim.x) / C, a.block_tiles, tile0, tile1);
    }
    const int P = 2 * C; // partials per row (one pass)
    const int ntile = tile1 - tile0;
    const int r0 = wq * 16 + g;  // GEMM1: this thread's rows r0, r0 + 8 of a tile
    const int c0 = wg * 64;      // this warpgroup's components within the CTA
    const int Kp = a.Kt * kKc;

    PipelineBarriers<NS> bars(smem + S::oBar);
    uint64_t* const wbar = bars.wbar;
    uint64_t* const xbar = bars.xbar; // [2]: every partial of tiles i with i % 2 == b has arrived
    const float4* ab4 = reinterpret_cast<const float4*>(smem + S::oAB);
    const uint32_t sW = smem_u32(smem + S::oW), sR = smem_u32(smem + S::oR);
    uint8_t* stage_base = smem + S::oStage;
    float2* slots = reinterpret_cast<float2*>(smem + S::oSlot); // [2][kMaxParts][kBM]

    if constexpr (S::kFold) { // the zeros GEMM1's last k-step reads (before init's barrier)
        reinterpret_cast<uint2*>(smem + S::oZero)[tid] = make_uint2(0u, 0u); // 256 × 8 bytes
        fence_proxy_async();
    }
    bars.init(tid, !kLse);
    auto load_tile = [&](int stage, int i) { // local tile i
        uint8_t* st = stage_base + stage * S::kStageBytes;
        uint64_t* bar = bars.full + stage;
        const int tile = tile0 + i;
        mbar_expect_tx(bar, S::kTileBytes + (kLse ? 2 : 1) * S::kRowBytes);
        bulk_g2s(st, a.G + size_t(tile) * Planes * kBM * FW, S::kTileBytes, bar);
        bulk_g2s(st + S::kTileBytes, a.xx + size_t(tile) * kBM, S::kRowBytes, bar);
        if constexpr (kLse) bulk_g2s(st + S::kTileBytes + S::kRowBytes, a.lse + size_t(tile) * kBM, S::kRowBytes, bar);
    };
    if (tid == 0) {
        const size_t wlo = size_t(a.Kt) * kKc * DP;
        mbar_expect_tx(wbar, Planes * S::kWBytes + S::kABBytes + S::kWbBytes);
        bulk_g2s(smem + S::oW, a.W + size_t(ctile) * kKc * DP, S::kWBytes, wbar);
        if (kSplit) bulk_g2s(smem + S::oW + S::kWBytes, a.W + wlo + size_t(ctile) * kKc * DP, S::kWBytes, wbar);
        bulk_g2s(smem + S::oAB, a.ab + size_t(ctile) * kKc * 2, S::kABBytes, wbar);
        if constexpr (S::kFold) bulk_g2s(smem + S::oWb, a.Wb + size_t(ctile) * kKc * 8, S::kWbBytes, wbar);
        for (int s = 0; s < NS && s < ntile; s++) load_tile(s, s);
    }
    mbar_wait(wbar, 0);

    float acc1[32];     // logits: 64 rows × this warpgroup's 64 comps
    float acc2[FW / 2]; // 2^12 Σ r·features: this warpgroup's 64 comps × FW
#pragma unroll
    for (int i = 0; i < FW / 2; i++) acc2[i] = 0.f;
    // 2^(logit − m_own) of the last epilogue: fp32 (split in finish), or (one plane) fp16 pairs
    // already × kRScale, which keeps them normal down to 2^-26 (registers: acc2 has up to 132).
    float e[kSplit ? 32 : 1];
    uint32_t e16[kSplit ? 1 : 16];
    float mown[2] = {0.f, 0.f};
    double ll = 0;

    // Descriptors (see Sm90Kernels.cuh): with 64-row tiles the stride between 8-feature (or
    // 8-component) core-matrix columns of X and R is 64·16 = 1024 bytes. Steps along K add
    // 16·2 features = 2 core columns (GEMM1: X 2048 B = 128 units, W 4096 B = 256 units) or
    // 16 rows = 2 core rows (GEMM2: 256 B = 16 units).
    const uint64_t dWh = make_desc(sW + wg * 8 * 128, 2048, 128);
    const uint64_t dWl = make_desc(sW + S::kWBytes + wg * 8 * 128, 2048, 128); // (kSplit only)
    const uint64_t dRh = make_desc(sR + wg * 8 * 1024, 128, 1024);
    const uint64_t dRl = make_desc(sR + S::kRBytes + wg * 8 * 1024, 128, 1024);
    // Wide kernel: GEMM1's last k-step multiplies the tile's 8 columns after x by this warpgroup's
    // 64 components of Wb (the bias b_k as an fp16 hi + lo pair, TileShapes.h: BiasColumn); its
    // second 8 columns are the zeros at oZero on both sides.
    const uint32_t sZ = smem_u32(smem + S::oZero), sWb = smem_u32(smem + S::oWb);
    const uint64_t dWb = make_desc(sWb + wg * 8 * 128, sZ - sWb, 128);
    auto gemm1 = [&](int stage) {
        const uint32_t sX = smem_u32(stage_base + stage * S::kStageBytes);
        const uint64_t dXh = make_desc(sX, 1024, 128), dXl = make_desc(sX + S::kHalfTileBytes, 1024, 128);
        fence_operand(acc1);
        wgmma_fence();
        split_products<DP, 64, Planes>(acc1, dXh, dXl, dWh, dWl);
        if constexpr (S::kFold) {
            const uint32_t sXb = sX + (DP / 8) * 1024; // the bias columns of the tile's 64 rows
            Wgmma<64, 0, 0>::mma(acc1, make_desc(sXb, sZ - sXb, 128), dWb, 1);
        }
        wgmma_commit();
    };
    // Wide kernel: this thread's components c0 + 8j + 2t (+1) of the tile that are < K.
    const uint32_t comp_bits = S::kFold ? valid_column_bits<8>(a.K - ctile * kKc - c0, t) : ~0u;
    auto gemm2 = [&](int stage) {
        const uint32_t sX = smem_u32(stage_base + stage * S::kStageBytes);
        const uint64_t dXh = make_desc(sX, 128, 1024), dXl = make_desc(sX + S::kHalfTileBytes, 128, 1024);
        fence_operand(acc2);
        wgmma_fence();
#pragma unroll
        for (int kr = 0; kr < kBM / 16; kr++) {
            const uint64_t o = uint64_t(kr * 16);
            gemm2_mma<FW>(acc2, dRh + o, dXh + o);
            if constexpr (kSplit) {
                gemm2_mma<FW>(acc2, dRh + o, dXl + o);
                gemm2_mma<FW>(acc2, dRl + o, dXh + o);
            }
        }
        wgmma_commit();
    };
    // Responsibilities of tile i (local index) × 2^12 → R hi/lo in shared memory.
    auto finish = [&](int i) {
        float f[2] = {kRScale, kRScale}; // two passes: e = 2^(logit − log2 Z) already (padding rows: 0)
        if constexpr (!kLse) {
            mbar_wait(xbar + (i & 1), uint32_t(i >> 1) & 1u); // every partial of tile i has landed
            const float2* sl = slots + (i & 1) * kMaxParts * kBM;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = r0 + 8 * h;
                float M = kNegBig;
                for (int p = t; p < P; p += 4) M = fmaxf(M, sl[p * kBM + r].x);
                M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, 1));
                M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, 2));
                float sum = 0.f;
                for (int p = t; p < P; p += 4) {
                    const float2 v = sl[p * kBM + r];
                    sum += v.y * ex2(v.x - M);
                }
                sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                const float L = M + lg2(sum); // log2 Z of the row
                const bool valid = (tile0 + i) * kBM + r < a.n;
                f[h] = valid ? ex2(mown[h] - L) * (kSplit ? kRScale : 1.f) : 0.f; // (one plane: e16 has it)
                if (valid && rank == 0 && wg == 0 && t == 0) ll += double(L);
            }
        }
        uint8_t* Rh = smem + S::oR;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            // comps c0 + 8j + 2t, +1 → core column 8wg + j, bytes 4t..4t+3 of the row's 16
            const int off = (8 * wg + j) * 1024 + r0 * 16 + t * 4;
            if constexpr (kSplit) {
                uint8_t* Rl = Rh + S::kRBytes;
                auto put = [&](int at, float u, float v) {
                    const __half2 h = __floats2half2_rn(u, v);
                    const float2 back = __half22float2(h);
                    const __half2 l = __floats2half2_rn(u - back.x, v - back.y);
                    *reinterpret_cast<__half2*>(Rh + at) = h;
                    *reinterpret_cast<__half2*>(Rl + at) = l;
                };
                put(off, e[4 * j + 0] * f[0], e[4 * j + 1] * f[0]);
                put(off + 8 * 16, e[4 * j + 2] * f[1], e[4 * j + 3] * f[1]);
            } else {
                *reinterpret_cast<uint32_t*>(Rh + off) = hmul2_u32(e16[2 * j], pack_half2(f[0], f[0]));
                *reinterpret_cast<uint32_t*>(Rh + off + 8 * 16) = hmul2_u32(e16[2 * j + 1], pack_half2(f[1], f[1]));
            }
        }
        fence_proxy_async(); // R is read by wgmma next
    };
    // Logits of tile i (in acc1) → e, own max, partial (max, sum) to every CTA of the cluster.
    auto epilogue = [&](int i, int stage) {
        const float* xs = reinterpret_cast<const float*>(stage_base + stage * S::kStageBytes + S::kTileBytes);
        const float x0 = xs[r0], x1 = xs[r0 + 8];
        if constexpr (kLse) { // e = 2^(logit − log2 Z), log2 Z of the rows after ‖x‖² in the stage
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float4 ab = ab4[32 * wg + 4 * j + t];
                e[4 * j + 0] = ex2(fmaf(acc1[4 * j + 0], a.kinv, fmaf(ab.x, x0, ab.y)) - xs[kBM + r0]);
                e[4 * j + 1] = ex2(fmaf(acc1[4 * j + 1], a.kinv, fmaf(ab.z, x0, ab.w)) - xs[kBM + r0]);
                e[4 * j + 2] = ex2(fmaf(acc1[4 * j + 2], a.kinv, fmaf(ab.x, x1, ab.y)) - xs[kBM + r0 + 8]);
                e[4 * j + 3] = ex2(fmaf(acc1[4 * j + 3], a.kinv, fmaf(ab.z, x1, ab.w)) - xs[kBM + r0 + 8]);
            }
            return;
        }
        // Accurate kernel: logit = kinv·acc + a_k‖x‖² + b_k in fp32. Wide kernel: acc1 holds the whole
        // logit in units of kinv (the bias columns), so the max is taken on it, components past K
        // are masked first, and e = 2^(kinv·acc − m) is one FMA and one exponential.
        if constexpr (S::kFold) {
            (void)x0;
            (void)x1;
            mask_columns<8>(acc1, comp_bits);
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float4 ab = ab4[32 * wg + 4 * j + t]; // (a, b) of comps c0 + 8j + 2t, +1
                acc1[4 * j + 0] = fmaf(acc1[4 * j + 0], a.kinv, fmaf(ab.x, x0, ab.y));
                acc1[4 * j + 1] = fmaf(acc1[4 * j + 1], a.kinv, fmaf(ab.z, x0, ab.w));
                acc1[4 * j + 2] = fmaf(acc1[4 * j + 2], a.kinv, fmaf(ab.x, x1, ab.y));
                acc1[4 * j + 3] = fmaf(acc1[4 * j + 3], a.kinv, fmaf(ab.z, x1, ab.w));
            }
        }
        float mx[2][4] = {{kNegBig, kNegBig, kNegBig, kNegBig}, {kNegBig, kNegBig, kNegBig, kNegBig}};
#pragma unroll
        for (int j = 0; j < 8; j++) {
            mx[0][j & 3] = fmaxf(mx[0][j & 3], fmaxf(acc1[4 * j + 0], acc1[4 * j + 1]));
            mx[1][j & 3] = fmaxf(mx[1][j & 3], fmaxf(acc1[4 * j + 2], acc1[4 * j + 3]));
        }
        float m0 = fmaxf(fmaxf(mx[0][0], mx[0][1]), fmaxf(mx[0][2], mx[0][3]));
        float m1 = fmaxf(fmaxf(mx[1][0], mx[1][1]), fmaxf(mx[1][2], mx[1][3]));
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
            m0 = fmaxf(m0, __shfl_xor_sync(0xffffffffu, m0, off));
            m1 = fmaxf(m1, __shfl_xor_sync(0xffffffffu, m1, off));
        }
        if constexpr (S::kFold) {
            m0 *= a.kinv; // log2 units from here on
            m1 *= a.kinv;
        }
        auto exp2_shifted = [&](float v, float m) { return S::kFold ? ex2(fmaf(v, a.kinv, -m)) : ex2(v - m); };
        float sm[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float e0 = exp2_shifted(acc1[4 * j + 0], m0), e1 = exp2_shifted(acc1[4 * j + 1], m0);
            const float e2 = exp2_shifted(acc1[4 * j + 2], m1), e3 = exp2_shifted(acc1[4 * j + 3], m1);
            if constexpr (kSplit) {
                e[4 * j + 0] = e0, e[4 * j + 1] = e1, e[4 * j + 2] = e2, e[4 * j + 3] = e3;
            } else {
                e16[2 * j] = pack_half2(e0 * kRScale, e1 * kRScale);
                e16[2 * j + 1] = pack_half2(e2 * kRScale, e3 * kRScale);
            }
            sm[0][j & 3] += e0 + e1;
            sm[1][j & 3] += e2 + e3;
        }
        float s0 = (sm[0][0] + sm[0][1]) + (sm[0][2] + sm[0][3]);
        float s1 = (sm[1][0] + sm[1][1]) + (sm[1][2] + sm[1][3]);
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
            s0 += __shfl_xor_sync(0xffffffffu, s0, off);
            s1 += __shfl_xor_sync(0xffffffffu, s1, off);
        }
        mown[0] = m0;
        mown[1] = m1;
        // Partial of (this CTA, this warpgroup) for our 64 rows → slot [i % 2][2·rank + wg] of every
        // CTA (lane t → CTAs t, t + 4), by asynchronous stores counting down the receiver's
        // mbarrier xbar[i % 2], armed for P·64·8 bytes. Slot reuse is safe for the reason given
        // in Sm90Kernels.cuh: a CTA sends tile i + 2 only after receiving everyone's tile i + 1.
        float2* sl = slots + ((i & 1) * kMaxParts + 2 * rank + wg) * kBM;
        if (tid == 0) mbar_expect_tx(xbar + (i & 1), uint32_t(P * kBM * 8));
        for (int c = t; c < C; c += 4) {
            st_async_f2(sl + r0, xbar + (i & 1), uint32_t(c), m0, s0);
            st_async_f2(sl + r0 + 8, xbar + (i & 1), uint32_t(c), m1, s1);
        }
    };
    // acc2 → this CTA's slice of the cluster's double partial sums (written by the first flush,
    // added to by later ones), then acc2 = 0. Comps rank·128 + c0 + 16wq + g (+8), features 8j + 2t (+1).
    bool first_flush = true;
    auto flush = [&]() {
        double* Pp = a.part + (size_t(q) * Kp + size_t(ctile) * kKc + c0 + wq * 16 + g) * FW;
#pragma unroll
        for (int j = 0; j < FW / 8; j++) {
            double2* p0 = reinterpret_cast<double2*>(Pp + 8 * j + 2 * t);
            double2* p1 = reinterpret_cast<double2*>(Pp + 8 * FW + 8 * j + 2 * t);
            double2 v0 = make_double2(acc2[4 * j + 0], acc2[4 * j + 1]);
            double2 v1 = make_double2(acc2[4 * j + 2], acc2[4 * j + 3]);
            if (!first_flush) {
                const double2 o0 = *p0, o1 = *p1;
                v0.x += o0.x, v0.y += o0.y, v1.x += o1.x, v1.y += o1.y;
            }
            *p0 = v0;
            *p1 = v1;
            acc2[4 * j + 0] = acc2[4 * j + 1] = acc2[4 * j + 2] = acc2[4 * j + 3] = 0.f;
        }
        first_flush = false;
    };

    // Reproducible sums: tile i_end − 1 ends a block: its sums (from 0 at the block's first
    // tile) → part slice `block`, its Σ log2 Z → the block's slots (threads of rank 0, wg 0).
    auto flush_block = [&](int i_end) {
        const int block = (tile0 + i_end - 1) / a.block_tiles;
        double* Pp = a.part + (size_t(block) * Kp + size_t(ctile) * kKc + c0 + wq * 16 + g) * FW;
#pragma unroll
        for (int j = 0; j < FW / 8; j++) {
            *reinterpret_cast<double2*>(Pp + 8 * j + 2 * t) = make_double2(acc2[4 * j + 0], acc2[4 * j + 1]);
            *reinterpret_cast<double2*>(Pp + 8 * FW + 8 * j + 2 * t) = make_double2(acc2[4 * j + 2], acc2[4 * j + 3]);
            acc2[4 * j + 0] = acc2[4 * j + 1] = acc2[4 * j + 2] = acc2[4 * j + 3] = 0.f;
        }
        if (!kLse && rank == 0 && wg == 0 && t == 0) a.llslots[size_t(block) * a.llslot_stride + (tid >> 2)] = ll;
        ll = 0; // (two passes: lse_split_kernel writes the blocks' Σ log2 Z)
    };
    const bool by_block = a.block_tiles > 0;
    int since_flush = 0;
    run_tile_pipeline<NS>(ntile, tid, bars.full, acc1, acc2, load_tile, gemm1, finish, gemm2, epilogue, [&](int i) {
        if (by_block) {
            if (i > 0 && (tile0 + i) % a.block_tiles == 0) flush_block(i);
        } else if (i > 0 && ++since_flush == a.flush_tiles) {
            flush();
            since_flush = 0;
        }
    });
    if constexpr (!kLse) {
        cluster_arrive(); // no CTA leaves while asynchronous stores of the cluster may be in flight
        cluster_wait();
    }
    if (by_block) {
        if (ntile > 0) flush_block(ntile);
        return;
    }
    flush();
    if (!kLse && rank == 0) {
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) ll += __shfl_xor_sync(0xffffffffu, ll, off);
        if (lane == 0 && wg == 0) atomicAdd(a.loglik, ll * 0.69314718055994530942);
    }
#else
    (void)a;
    __trap();
#endif
}

// ---------------------------------------------------------------- LSE pass (accurate, K > 1024)

/// Shared memory of lse_split_kernel: two 64-row tiles (hi | lo each), their ‖x‖², two stages
/// of one component tile's weights (hi | lo | (a, b)), mbarriers.
template <int DP>
struct LseShape {
    static_assert(DP % 32 == 0 && DP >= 32 && DP <= 128, "DP: 32 .. 128");
    static constexpr int FW = DP + 8;
    static constexpr int kHalfTileBytes = kBM * FW * 2;
    static constexpr int kTileBytes = 2 * kHalfTileBytes; // hi | lo of one 64-row tile
    static constexpr int kWBytes = kKc * DP * 2;         // hi (or lo) of a component tile
    static constexpr int kABBytes = kKc * 8;
    static constexpr int kStage = 2 * kWBytes + kABBytes;
    static constexpr int oX = 0;                          // tiles 2b, 2b + 1
    static constexpr int oXX = oX + 2 * kTileBytes;       // their ‖x‖²
    static constexpr int oW = oXX + 2 * kBM * 4;          // stages 0, 1
    static constexpr int oBar = oW + 2 * kStage;
    static constexpr int kSmem = oBar + 64;
    static_assert(kSmem <= kSmemLimit, "lse_split_kernel shared memory");
    static_assert(oW % 128 == 0 && kStage % 128 == 0 && kHalfTileBytes % 128 == 0, "alignment");
};

/// Pass 1 of the accurate kernel for K > 1024: block b, warpgroup w takes 64-row tile 2b + w
/// (the chunk's tiles are padded to an even count: a padding tile's rows are all padding) and
/// runs the split logits Xh·Whᵀ + Xh·Wlᵀ + Xl·Whᵀ of every component tile (m64n128, fp32
/// accumulation), keeping an online (max, sum) per row and thread (Sm90Kernels.cuh helpers, as
/// lse_kernel); writes log2 Z (+big for padding rows) and adds Σ ln Z to loglik, or, for
/// reproducible sums, each tile's Σ log2 Z to its block's slot (tile % block_tiles).
template <int DP>
__global__ void __launch_bounds__(kThreads, 1) lse_split_kernel(const Args a) {
#if FAISS_GMM_SM90A
    using S = LseShape<DP>;
    extern __shared__ __align__(128) uint8_t smem[];
    const int tid = threadIdx.x, wg = tid >> 7, wq = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int tile = 2 * int(blockIdx.x) + wg;
    const int r0 = wq * 16 + g; // this thread's rows r0, r0 + 8 of its warpgroup's tile
    // [0]: the tiles; [1], [2]: W stage full. (Stage s free: named barrier 1 + s.)
    uint64_t* bars = reinterpret_cast<uint64_t*>(smem + S::oBar);
    if (tid == 0) {
        for (int b = 0; b < 3; b++) mbar_init(bars + b, 1);
        fence_mbar_init();
    }
    __syncthreads();
    const size_t wlo = size_t(a.Kt) * kKc * DP; // where the lo halves start
    auto load_w = [&](int stage, int ct) {
        uint8_t* st = smem + S::oW + stage * S::kStage;
        mbar_expect_tx(bars + 1 + stage, S::kStage);
        bulk_g2s(st, a.W + size_t(ct) * kKc * DP, S::kWBytes, bars + 1 + stage);
        bulk_g2s(st + S::kWBytes, a.W + wlo + size_t(ct) * kKc * DP, S::kWBytes, bars + 1 + stage);
        bulk_g2s(st + 2 * S::kWBytes, a.ab + size_t(ct) * kKc * 2, S::kABBytes, bars + 1 + stage);
    };
    if (tid == 0) {
        const int first = 2 * int(blockIdx.x);
        mbar_expect_tx(bars, 2 * S::kTileBytes + 2 * kBM * 4);
        bulk_g2s(smem + S::oX, a.G + size_t(first) * 2 * kBM * S::FW, 2 * S::kTileBytes, bars);
        bulk_g2s(smem + S::oXX, a.xx + size_t(first) * kBM, 2 * kBM * 4, bars);
        for (int st = 0; st < 2 && st < a.Kt; st++) load_w(st, st);
    }
    mbar_wait(bars, 0);
    const float* xs = reinterpret_cast<const float*>(smem + S::oXX) + wg * kBM;
    const float x0 = xs[r0], x1 = xs[r0 + 8];
    const uint32_t sX = smem_u32(smem + S::oX + wg * S::kTileBytes);
    // A = X (M = 64 rows, K = features), K-major, 64-row blocks: LBO = next 8 features (1024 B),
    // SBO = next 8 rows (128 B); B = W as in lse_kernel. Steps of 16 features: X 2048 B, W 4096 B.
    const uint64_t dXh = make_desc(sX, 1024, 128), dXl = make_desc(sX + S::kHalfTileBytes, 1024, 128);
    float m[2] = {kNegBig, kNegBig}, s[2] = {0.f, 0.f};
    float acc[64];
    for (int ct = 0; ct < a.Kt; ct++) {
        const int stage = ct & 1;
        mbar_wait(bars + 1 + stage, uint32_t(ct >> 1) & 1u);
        const uint8_t* st = smem + S::oW + stage * S::kStage;
        const uint64_t dWh = make_desc(smem_u32(st), 2048, 128), dWl = make_desc(smem_u32(st + S::kWBytes), 2048, 128);
        fence_operand(acc);
        wgmma_fence();
        split_products<DP, 128, 2>(acc, dXh, dXl, dWh, dWl);
        wgmma_commit();
        wgmma_wait<0>();
        fence_operand(acc);
        float tmax[2];
        tile_logits(acc, reinterpret_cast<const float4*>(st + 2 * S::kWBytes), t, a.kinv, x0, x1, tmax);
        // The stage is refilled with component tile ct + 2: each warp of 1..7 releases it here (its
        // products are done, its (a, b) read), warp 0 after its exponentials waits for them and
        // refills. A warp arrives at stage s again only after the refill has landed, so the
        // barrier's generations do not mix.
        const bool refill = ct + 2 < a.Kt;
        if (refill && tid >= 32) named_arrive(1 + stage, kThreads);
        online_lse_update(acc, tmax, m, s);
        if (refill && tid < 32) {
            named_sync(1 + stage, kThreads);
            if (lane == 0) load_w(stage, ct + 2);
            __syncwarp();
        }
    }
    finish_lse(a, m, s, tile * kBM + r0, tile, 4); // a warpgroup per tile
#else
    (void)a;
    __trap();
#endif
}

} // namespace faiss_gmm::gpu::detail::sm90::split
