// Kernels of the Hopper E-step (EStepCudaAlgorithm::Hopper): spherical
// covariances, d ≤ 128, fast mode (fp16 tensor-core products, fp32
// accumulation), wgmma + thread-block clusters + bulk copies (sm_90a).
// Diagonal covariances run the same kernels on the features [x | x²]
// (features_kernel with diag = 1; a_k = 0, the x² weights −1/(2σ²) in W):
// d ≤ 64 here, 64 < d ≤ 128 on the wide kernel (Sm90SplitKernels.cuh).
//
// Why this shape (1M × 1024 × 128 on an H200 is the target; ~2.7e11 MACs per
// product, 1e9 exponentials):
//  * Two products per E-step instead of three. The responsibilities of a row
//    need its log-sum-exp over ALL K components, but the statistic Σ_n r_nk x_n
//    contracts over rows, so a per-row normalizer cannot be applied after the
//    fact (no flash-attention style rescaling). The old Fused path therefore ran
//    an LSE pass and then recomputed the logits (3 products). Here a cluster of
//    C = ceil(K/128) ≤ 8 CTAs owns all K components at once (128 per CTA), walks
//    the same rows in lockstep, and exchanges per-row partial (max, sum-exp)
//    through distributed shared memory: one product for the logits, one for Rᵀ·X.
//  * The Rᵀ·X accumulator of a CTA (128 components × (d+8) features, fp32) stays
//    in registers (two warpgroups × 64 components) over a long range of rows
//    (~500 tiles of 128 rows at the target shape), so statistics leave the chip
//    once per CTA: O(clusters·K·d) partial sums, reduced by a small kernel.
//  * Tensor cores through wgmma, both operands from shared memory, no swizzle
//    (core matrices are 128 contiguous bytes, so the tensor cores read them
//    without bank conflicts). Tiles arrive by bulk copies (one instruction per
//    tile, completing on an mbarrier), 4 stages deep; the features kernel writes
//    the rows already in that tiled order, so each copy is one contiguous block.
//  * Software pipeline per tile i (both warpgroups in step):
//        GEMM1(i) issued (async)              logits S = X·Wᵀ, 128 rows × 128 comps
//        finish(i−1): cluster wait, normalizer f per row, R(i−1) = e·f → smem
//        wait GEMM1(i); barrier
//        GEMM2(i−1) issued (async)            acc += R(i−1)ᵀ · [x | 1 | ‖x‖²]
//        epilogue(i): logits → per-row max, e = 2^(s−max), Σe → every CTA
//        wait GEMM2(i−1); barrier; refill the freed stage
//    so the exponentials of tile i run under GEMM2(i−1) and the normalization
//    of tile i−1 under GEMM1(i). The partials travel as st.async stores that
//    count down the receiver's mbarrier (no per-tile cluster barrier: its
//    release compiled to a GPU-scope MEMBAR per tile and cost ~10 %).
//  * N_k and Σ r‖x‖² come out of GEMM2 as two extra feature columns (a column of
//    ones and a column of ‖x‖²·s_q), so the element-wise work per logit is ~5
//    instructions and one exponential (with the bias columns below).
//  * Precision (fast mode): fp16 operands with power-of-two scales chosen from
//    the model (typical |x|·s_x ≈ 16, max|w|·s_w ≈ 2^6; 11-bit mantissa against
//    bf16's 8), fp32 accumulation. The large terms of the logit (bias, a·‖x‖²)
//    enter GEMM1 as fp16 hi + lo pairs (below), ~22 bits each. Responsibilities
//    enter Rᵀ·X as fp16 (relative rounding 2^-12).
//  * The bias columns (kBias): the 8 feature columns after x hold, besides 1 and
//    s_q‖x‖² for GEMM2, u = c_q·s_q‖x‖² in fp16 hi + lo, and c_b twice
//    (TileShapes.h: BiasColumn); W's block of 8 after DP (Args::Wb) holds a_k and
//    b_k as fp16 hi + lo pairs. One more k-step of GEMM1 (its other 8 columns are
//    zeros at Shape::oZero) then gives the whole logit, and the epilogue is one
//    FMA and one exponential per logit (it was 3 FMAs and a shared-memory load of
//    (a_k, b_k) per 2 logits). Rows whose u saturates (c_q·s_q‖x‖² > 65504) get
//    the rest of a_k‖x‖² in fp32 (a warp-uniform branch, rare); models whose
//    weights do not fit fp16 run the two passes (HopperShape::folded).
//  * K > 1024: two passes with the same tiles: lse_kernel (online log-sum-exp
//    over all components, one CTA per 128 rows) then estep_kernel<.., true>
//    (one CTA per 128 components × a range of rows, responsibilities from the
//    stored log Z, no exchange). Folded models take the bias columns in both
//    passes (kBias), so a logit is again one FMA before its exponential; the
//    others (HopperShape::folded false) add a_k‖x‖² + b_k in fp32.
//
// Layouts (halves; "chunk" = 8 consecutive features of one row = 16 bytes):
//  * G, tile T (128 rows × FW features, FW = DP + 8): chunk (r, fb) at half
//    offset T·128·FW + (fb·128 + r)·8. In shared memory the same block: core
//    matrix (8 rows × 8 features) (rb, fb) at byte fb·2048 + rb·128. Features:
//    [s_x·x (DP, zero padded) | 1 | s_q·‖x‖² | 0 × 6]; padding rows are all 0.
//  * W, component tile c (128 comps × DP): chunk (k, fb) at c·128·DP + (fb·128 + k)·8.
//  * R in shared memory (128 rows × 128 comps): comp k, row r at byte
//    (k/8)·2048 + r·16 + (k%8)·2: core matrices of 8 rows × 8 comps, comps
//    contiguous: the MN-major A operand of GEMM2 (M = comps, K = rows), and what a
//    thread's accumulator fragment (row g, comps 2t, 2t+1) writes as one 32-bit store.
//  * wgmma accumulator of m64nN: thread (warp w of the warpgroup, lane g·4+t)
//    holds d[4j+{0,1,2,3}] = (row 16w+g, col 8j+2t), (16w+g, 8j+2t+1),
//    (16w+g+8, 8j+2t), (16w+g+8, 8j+2t+1).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/detail/Sm90Pipeline.cuh"
#include "gpu/detail/ReproducibleLimbs.h" // kLoglikSlots
#include "gpu/detail/Sm90Primitives.cuh"
#include "gpu/detail/TileShapes.h" // kBM, kKc, kThreads, kMaxCluster, kSmemLimit, kNegBig, kPosBig

namespace faiss_gmm::gpu::detail::sm90 {

template <int DP>
struct Shape {
    static_assert(DP % 32 == 0 && DP >= 32 && DP <= 128, "DP: 32, 64, 96 or 128");
    static constexpr int FW = DP + 8;         // features per row in G
    static constexpr int FWC = FW / 8;        // chunks per row
    static constexpr int kTileBytes = kBM * FW * 2;
    static constexpr int kRowBytes = kBM * 4; // one float per row
    static constexpr int kWBytes = kKc * DP * 2;
    static constexpr int kWbBytes = kKc * 8 * 2; // kBias: the weights of the bias columns (Args::Wb)
    static constexpr int kZeroBytes = kBM * 8 * 2; // kBias: zeros, the second half of GEMM1's last k-step
    static constexpr int kABBytes = kKc * 8;  // (a_k, b_k) per component
    static constexpr int kRBytes = kBM * kKc * 2;
    static constexpr int kSlotBytes = 2 * kMaxCluster * kBM * 8;
    static constexpr int kStageBytes = kTileBytes + 2 * kRowBytes; // tile | ‖x‖² | log2 Z
    // estep_kernel
    static constexpr int oW = 0;
    static constexpr int oWb = oW + kWBytes; // W's block of 8 features after DP
    static constexpr int oAB = oWb + kWbBytes;
    static constexpr int oR = oAB + kABBytes;
    static constexpr int oSlot = oR + kRBytes;
    static constexpr int oStage = oSlot + kSlotBytes;
    static constexpr int kFixed = oStage + kZeroBytes + 128; // + zeros + mbarriers
    static constexpr int kStages = (kSmemLimit - kFixed) / kStageBytes >= 4 ? 4 : 3;
    static constexpr int oZero = oStage + kStages * kStageBytes; // above every stage: descriptors reach it
    static constexpr int oBar = oZero + kZeroBytes;
    static constexpr int kSmem = oBar + 128;
    static_assert(kSmem <= kSmemLimit, "estep_kernel shared memory");
    // lse_kernel: X tile + ‖x‖², two stages of (W tile + ab + Wb), the zeros (kBias; above the
    // stages: the descriptors' leading byte offsets reach them), mbarriers. Two CTAs per SM.
    static constexpr int kLseStage = kWBytes + kABBytes + kWbBytes;
    static constexpr int oLseW = kTileBytes + kRowBytes;
    static constexpr int oLseZero = oLseW + 2 * kLseStage;
    static constexpr int oLseBar = oLseZero + kZeroBytes;
    static constexpr int kLseSmem = oLseBar + 64;
    static_assert(2 * (kLseSmem + 1024) <= 228 * 1024, "lse_kernel: two CTAs per SM");
};

struct Args {
    const __half* G;   // tiles × 128 × FW, tiled (see above)
    const float* xx;   // tiles × 128: ‖x‖² (centered, unscaled); 0 for padding rows
    float* lse;        // tiles × 128: log2 Z (lse_kernel out, estep_kernel<.., true> in); +big for padding
    const __half* W;   // Kt × 128 × DP, tiled
    const float* ab;   // Kp × 2: (a_k, b_k): logit2 = kinv·(x̃·w̃) + a_k‖x‖² + b_k; padding (0, -1e30)
    const __half* Wb;  // kBias: Kt × 128 × 8, the weights of the bias columns (TileShapes.h: BiasColumn)
    int K;             // kBias: components (those of the last tile past K are masked)
    float xsat;        // kBias: ‖x‖² beyond which the bias columns' u saturates (65504 / (s_q·c_q))
    float* part;       // parts × Kp × FW: per-CTA partial Σ r·[x̃ | 1 | ‖x‖²·s_q]
    double* loglik;    // Σ_n ln Z_n, added atomically
    int n;             // valid rows of the chunk
    int tiles;         // ceil(n / 128)
    int Kt;            // component tiles (Kp = 128·Kt)
    float kinv;        // 1 / (s_x · s_w)
    int exchange;      // one pass: 0 = st.async + mbarrier per tile; 1 = barrier.cluster per tile (see epilogue)
    // Reproducible sums (ReproducibleKernels.cuh), block_tiles > 0: a part is whole blocks of
    // block_tiles tiles, and each block's sums go to part slice `block` (not the part's), its
    // Σ log2 Z to llslots[block][llslot_stride] (not loglik): no order-dependent accumulation.
    int block_tiles;
    double* llslots;
    int llslot_stride; // slots per block (HopperChunkArgs::llslot_stride)
};

// ---------------------------------------------------------------- the bias columns' edges

/// Which of this thread's wgmma accumulator columns 8j + 2t and 8j + 2t + 1 (j < J, t = lane % 4)
/// are below `valid`, as bits 2j and 2j + 1: all set when the J·8 columns are (the kernels with bias
/// columns, whose padding components have no kNegBig bias, mask the others: mask_columns).
template <int J>
__device__ __forceinline__ uint32_t valid_column_bits(int valid, int t) {
    static_assert(J <= 16, "32 bits");
    if (valid >= 8 * J) return ~0u;
    uint32_t bits = 0;
    for (int j = 0; j < J; j++) {
        bits |= (8 * j + 2 * t < valid ? 1u : 0u) << (2 * j);
        bits |= (8 * j + 2 * t + 1 < valid ? 1u : 0u) << (2 * j + 1);
    }
    return bits;
}

/// The accumulator's columns whose bit (valid_column_bits) is clear, in both rows of the
/// fragment, set to kNegBig: 2^(kinv·acc − m) is then exactly 0. (bits is uniform per warpgroup.)
template <int J>
__device__ __forceinline__ void mask_columns(float (&acc)[4 * J], uint32_t bits) {
    if (bits == ~0u) return;
#pragma unroll
    for (int j = 0; j < J; j++) {
        const bool v0 = (bits >> (2 * j)) & 1u, v1 = (bits >> (2 * j + 1)) & 1u;
        acc[4 * j + 0] = v0 ? acc[4 * j + 0] : kNegBig;
        acc[4 * j + 1] = v1 ? acc[4 * j + 1] : kNegBig;
        acc[4 * j + 2] = v0 ? acc[4 * j + 2] : kNegBig;
        acc[4 * j + 3] = v1 ? acc[4 * j + 3] : kNegBig;
    }
}

/// Rows whose ‖x‖² (x0, x1: this thread's two rows) is beyond the bias columns' range (u = c_q·s_q‖x‖²
/// clamped at 65504: ≥ 4096/c_q × the typical ‖x‖², rare) get the rest of a_k‖x‖² in fp32, in units of
/// the accumulator (kinv); a_k from ab4 as in the fp32 path. A warp-uniform branch.
__device__ __forceinline__ void add_far_rows(float (&acc)[64], const float4* ab4, int t, float x0, float x1,
                                             float xsat, float kinv) {
    if (!__any_sync(0xffffffffu, x0 > xsat || x1 > xsat)) return;
    const float c0 = x0 > xsat ? (x0 - xsat) / kinv : 0.f;
    const float c1 = x1 > xsat ? (x1 - xsat) / kinv : 0.f;
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const float4 ab = ab4[4 * j + t];
        acc[4 * j + 0] = fmaf(ab.x, c0, acc[4 * j + 0]);
        acc[4 * j + 1] = fmaf(ab.z, c0, acc[4 * j + 1]);
        acc[4 * j + 2] = fmaf(ab.x, c1, acc[4 * j + 2]);
        acc[4 * j + 3] = fmaf(ab.z, c1, acc[4 * j + 3]);
    }
}

// ---------------------------------------------------------------- features

/// The features kernels' read of one row chunk: y = x[row][8l .. 8l+7] − c (zeros past d, for
/// lanes l ≥ XC and for rows ≥ n) and ss = ‖x[row] − c‖², summed over the half warp of the row.
/// vec: rows can be read with 16-byte (float) / 8-byte (uint8) loads (aligned base, d a multiple
/// of 4 / 8).
template <typename Tin>
__device__ __forceinline__ float load_centered_chunk(const Tin* __restrict__ x, int n, int d,
                                                     const float* __restrict__ center, int row, int l, int XC,
                                                     int vec, float (&y)[8]) {
#pragma unroll
    for (int e = 0; e < 8; e++) y[e] = 0.f;
    const int j0 = l * 8;
    if (row < n && l < XC) {
        const Tin* xr = x + size_t(row) * d;
        if (vec && j0 + 8 <= d) {
            float v[8];
            if constexpr (sizeof(Tin) == 4) {
                const float4 a = __ldg(reinterpret_cast<const float4*>(xr + j0));
                const float4 b = __ldg(reinterpret_cast<const float4*>(xr + j0 + 4));
                v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
            } else {
                const uint2 a = __ldg(reinterpret_cast<const uint2*>(xr + j0));
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    v[e] = float((a.x >> (8 * e)) & 0xffu);
                    v[4 + e] = float((a.y >> (8 * e)) & 0xffu);
                }
            }
            const float4 c0 = __ldg(reinterpret_cast<const float4*>(center + j0));
            const float4 c1 = __ldg(reinterpret_cast<const float4*>(center + j0 + 4));
            y[0] = v[0] - c0.x, y[1] = v[1] - c0.y, y[2] = v[2] - c0.z, y[3] = v[3] - c0.w;
            y[4] = v[4] - c1.x, y[5] = v[5] - c1.y, y[6] = v[6] - c1.z, y[7] = v[7] - c1.w;
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++)
                if (j0 + e < d) y[e] = float(xr[j0 + e]) - __ldg(center + j0 + e);
        }
    }
    float ss = 0.f;
#pragma unroll
    for (int e = 0; e < 8; e++) ss = fmaf(y[e], y[e], ss);
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off); // within the half warp
    return ss;
}

/// Two floats → fp16 pair bits (clamped to fp16's range first): the hi plane; Planes = 2 also
/// gives lo = fp16(v − hi), the accurate kernel's second plane (Sm90SplitKernels.cuh).
template <int Planes>
__device__ __forceinline__ void to_planes(float a, float b, uint32_t& hi, uint32_t& lo) {
    a = fminf(fmaxf(a, -65504.f), 65504.f);
    b = fminf(fmaxf(b, -65504.f), 65504.f);
    hi = pack_half2(a, b);
    if constexpr (Planes == 2) {
        const float2 back = __half22float2(*reinterpret_cast<const __half2*>(&hi));
        lo = pack_half2(a - back.x, b - back.y);
    }
}

/// Rows (float or uint8; d values) → tiled fp16 features G and ‖x − c‖² (fp32), for every
/// Hopper kernel: tiles of BM rows (128: fast kernel; 64: accurate and wide kernels) and
/// Planes fp16 planes per tile (2: the accurate kernel's hi and lo blocks). Features
/// (Sm90Kernels.cuh, Sm90SplitKernels.cuh): spherical [s_x·x (DP) | 1 | s_q‖x‖² | 0 × 6];
/// diagonal (diag = 1) [s_x·x (DP/2) | s_q·x² (DP/2) | 1 | 0 × 7]: the logits are then
/// one product against [μ/σ² | −1/(2σ²)] and GEMM2 gives Σ r x and Σ r x² together.
/// Half a warp per row (lane l converts x features 8l .. 8l+7, one 16-byte chunk, and for
/// diag their squares), 16 rows per block, rows up to tiles·BM (padding rows written as
/// zeros). vec: rows can be read with 16-byte (float) / 8-byte (uint8) loads.
/// The fast kernels' 128-row tiles and the wide kernel's 64-row tiles also get the bias columns
/// (TileShapes.h: BiasColumn), from cq and cb (HopperShape).
template <typename Tin, int DP, int BM, int Planes>
__global__ void __launch_bounds__(256) features_kernel(const Tin* __restrict__ x, int n, int d,
                                                       const float* __restrict__ center, float sx, float sq, int diag,
                                                       float cq, float cb, __half* __restrict__ G,
                                                       float* __restrict__ xxg, int rows_padded, int vec) {
    constexpr int FW = DP + 8, XC = DP / 8; // XC ≤ 32 chunks of features; chunk XC = [1 | s_q‖x‖² | 0…]
    const int XH = diag ? XC / 2 : XC;      // chunks of x (≤ 16: one per lane)
    const int row = blockIdx.x * 16 + (threadIdx.x >> 4);
    const int l = threadIdx.x & 15;
    const bool valid = row < n;
    float y[8];
    const float ss = load_centered_chunk(x, n, d, center, row, l, XH, vec, y);
    if (row >= rows_padded) return;
    const int tile = row / BM, r = row - tile * BM;
    __half* Gh = G + size_t(tile) * Planes * BM * FW;
    __half* Gl = Gh + BM * FW; // Planes = 2 only
    auto put = [&](int chunk, const float (&v)[8]) {
        uint4 h, lo;
        to_planes<Planes>(v[0], v[1], h.x, lo.x);
        to_planes<Planes>(v[2], v[3], h.y, lo.y);
        to_planes<Planes>(v[4], v[5], h.z, lo.z);
        to_planes<Planes>(v[6], v[7], h.w, lo.w);
        *reinterpret_cast<uint4*>(Gh + size_t(chunk * BM + r) * 8) = h;
        if constexpr (Planes == 2) *reinterpret_cast<uint4*>(Gl + size_t(chunk * BM + r) * 8) = lo;
    };
    if (l < XH) {
        float v[8];
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = sx * y[e];
        put(l, v);
        if (diag) {
#pragma unroll
            for (int e = 0; e < 8; e++) v[e] = sq * y[e] * y[e];
            put(XH + l, v);
        }
    }
    if (l == (XC < 16 ? XC : 0)) { // N_k (and Σ r‖x‖², spherical) come out of GEMM2 through this chunk
        const float q = sq * ss;
        float v[8] = {valid ? 1.f : 0.f, valid && !diag ? q : 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        if constexpr (BM >= split::kBM && Planes == 1) {
            if (valid) {
                const float u = diag ? 0.f : fminf(cq * q, 65504.f); // put rounds it to fp16, and u − fp16(u) too
                v[kColU] = u;
                v[kColULo] = u - __half2float(__float2half_rn(u));
                v[kColU2] = u;
                v[kColB] = cb;
                v[kColB2] = cb;
            }
        }
        put(XC, v);
        xxg[row] = valid ? ss : 0.f;
    }
}

/// acc[k][f] += Σ_p part[p][k][f] (k < K), in double: deterministic order. T: float (fast
/// kernel's per-CTA partials) or double (accurate kernel's per-cluster sums, Sm90SplitKernels.cuh).
template <typename T>
__global__ void reduce_parts_kernel(const T* __restrict__ part, int nparts, int Kp, int K, int FW,
                                    double* __restrict__ acc) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= K * FW) return;
    double s = 0;
    for (int p = 0; p < nparts; p++) s += double(part[size_t(p) * Kp * FW + i]);
    acc[i] += s;
}

// (finalize_sums_kernel, which turns the reduced sums into the statistics' increments, is in
// HopperEStep.cu.)

// ---------------------------------------------------------------- main kernel

/// kLse = false: one pass; launched as clusters of C = Kt ≤ 8 CTAs, CTA `rank`
/// owning component tile `rank`; the clusters split the row tiles.
/// kLse = true: second pass for K > 1024; block b owns component tile b % Kt and
/// row split b / Kt; log2 Z per row comes from lse_kernel.
/// kBias: the bias columns give the whole logit (folded models; always in the one pass).
template <int DP, bool kLse, bool kBias = !kLse>
__global__ void __launch_bounds__(kThreads, 1) estep_kernel(const Args a) {
#if FAISS_GMM_SM90A
    using S = Shape<DP>;
    constexpr int FW = S::FW;
    constexpr int NS = S::kStages;
    extern __shared__ __align__(128) uint8_t smem[];

    const int tid = threadIdx.x, wg = tid >> 7, wq = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
    int ctile, part_id, C = 1, rank = 0, tile0, tile1;
    if constexpr (!kLse) {
        rank = int(cluster_ctarank());
        C = int(cluster_nctarank());
        ctile = rank;
        part_id = int(blockIdx.x) / C; // cluster q of Q
        part_tiles(a.tiles, part_id, int(gridDim.x) / C, a.block_tiles, tile0, tile1);
    } else {
        ctile = int(blockIdx.x) % a.Kt;
        part_id = int(blockIdx.x) / a.Kt; // row split s of Sn
        part_tiles(a.tiles, part_id, int(gridDim.x) / a.Kt, a.block_tiles, tile0, tile1);
    }
    const int ntile = tile1 - tile0;
    const int r0 = wg * 64 + wq * 16 + g; // this thread's rows in a tile: r0, r0 + 8
    const int Kp = a.Kt * kKc;

    PipelineBarriers<NS> bars(smem + S::oBar);
    uint64_t* const wbar = bars.wbar;
    uint64_t* const xbar = bars.xbar; // [2]: partials of tiles i with i % 2 == b have arrived (exchange 0)
    const bool async_x = a.exchange == 0;
    const float4* ab4 = reinterpret_cast<const float4*>(smem + S::oAB);
    const uint32_t sW = smem_u32(smem + S::oW), sR = smem_u32(smem + S::oR);
    uint8_t* stage_base = smem + S::oStage;
    float2* slots = reinterpret_cast<float2*>(smem + S::oSlot); // [2][kMaxCluster][kBM]

    static_assert(kBias || kLse, "the one pass needs the bias columns");
    if constexpr (kBias) { // the zeros GEMM1's last k-step reads (before init's barrier)
        reinterpret_cast<uint2*>(smem + S::oZero)[tid] = make_uint2(0u, 0u); // 256 × 8 bytes
        fence_proxy_async();
    }
    bars.init(tid, !kLse);
    auto load_tile = [&](int stage, int i) { // local tile i
        uint8_t* st = stage_base + stage * S::kStageBytes;
        uint64_t* bar = bars.full + stage;
        const int tile = tile0 + i;
        mbar_expect_tx(bar, S::kTileBytes + (kLse ? 2 : 1) * S::kRowBytes);
        bulk_g2s(st, a.G + size_t(tile) * kBM * FW, S::kTileBytes, bar);
        bulk_g2s(st + S::kTileBytes, a.xx + size_t(tile) * kBM, S::kRowBytes, bar);
        if constexpr (kLse) bulk_g2s(st + S::kTileBytes + S::kRowBytes, a.lse + size_t(tile) * kBM, S::kRowBytes, bar);
    };
    if (tid == 0) {
        mbar_expect_tx(wbar, S::kWBytes + S::kABBytes + (kBias ? S::kWbBytes : 0));
        bulk_g2s(smem + S::oW, a.W + size_t(ctile) * kKc * DP, S::kWBytes, wbar);
        bulk_g2s(smem + S::oAB, a.ab + size_t(ctile) * kKc * 2, S::kABBytes, wbar);
        if constexpr (kBias) bulk_g2s(smem + S::oWb, a.Wb + size_t(ctile) * kKc * 8, S::kWbBytes, wbar);
        for (int s = 0; s < NS && s < ntile; s++) load_tile(s, s);
    }
    mbar_wait(wbar, 0);

    float acc1[64];      // logits of 64 rows × 128 comps (this warpgroup's rows)
    float acc2[FW / 2];  // Σ r·features: 64 comps (this warpgroup's) × FW
#pragma unroll
    for (int i = 0; i < FW / 2; i++) acc2[i] = 0.f;
    uint32_t e16[32];    // e = 2^(logit − m_own) of the last epilogue, fp16 pairs: [2j] row r0, [2j+1] row r0+8
    float mown[2] = {0.f, 0.f};
    double ll = 0;

    // Descriptors: the start address (16-byte units) is the low field, so stepping along K adds a
    // constant to the descriptor (no carry: shared addresses stay below 256 KB).
    // GEMM1: A = X (M = rows, K = features), K-major: LBO = next 8 features (2048 B), SBO = next 8
    // rows (128 B); B = W (N = comps, K = features), K-major: LBO = 2048 B, SBO = next 8 comps (128 B).
    // GEMM2: A = Rᵀ (M = comps, K = rows), MN-major: LBO = next 8 rows (128 B), SBO = next 8 comps
    // (2048 B); B = X' (K = rows, N = features), MN-major: LBO = next 8 rows (128 B), SBO = next 8
    // features (2048 B).
    const uint64_t dW = make_desc(sW, 2048, 128);
    const uint64_t dR = make_desc(sR + wg * 8 * 2048, 128, 2048);
    // kBias: GEMM1's last k-step multiplies the tile's 8 columns after x (TileShapes.h:
    // BiasColumn) by Wb, so that it gives the whole logit; its second 8 columns are the zeros at
    // oZero on both sides (the leading byte offset of a descriptor reaches them).
    const uint32_t sZ = smem_u32(smem + S::oZero), sWb = smem_u32(smem + S::oWb);
    const uint64_t dWb = make_desc(sWb, sZ - sWb, 128);
    auto gemm1 = [&](int stage) {
        const uint32_t sX = smem_u32(stage_base + stage * S::kStageBytes) + wg * 8 * 128;
        const uint64_t dX = make_desc(sX, 2048, 128);
        fence_operand(acc1);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++)
            Wgmma<128, 0, 0>::mma(acc1, dX + uint64_t(kk * 256), dW + uint64_t(kk * 256), kk > 0 ? 1 : 0);
        if constexpr (kBias) {
            const uint32_t sXb = sX + (DP / 8) * 2048; // the bias columns; zeros at sZ + wg · 1024
            Wgmma<128, 0, 0>::mma(acc1, make_desc(sXb, sZ - (sXb - wg * 8 * 128), 128), dWb, 1);
        }
        wgmma_commit();
    };
    // kBias: this thread's components 8j + 2t (+1) of the tile that are < K (the others' bias
    // columns are zeros, not kNegBig: mask_columns).
    const uint32_t comp_bits = kBias ? valid_column_bits<16>(a.K - ctile * kKc, t) : ~0u;
    auto gemm2 = [&](int stage) {
        const uint64_t dX = make_desc(smem_u32(stage_base + stage * S::kStageBytes), 128, 2048);
        fence_operand(acc2);
        wgmma_fence();
#pragma unroll
        for (int kr = 0; kr < kBM / 16; kr++)
            Wgmma<FW, 1, 1>::mma(acc2, dR + uint64_t(kr * 16), dX + uint64_t(kr * 16), 1);
        wgmma_commit();
    };
    // Responsibilities of tile i (local index) → R in shared memory.
    auto finish = [&](int i) {
        float f[2] = {1.f, 1.f};
        if constexpr (!kLse) {
            if (async_x) {
                mbar_wait(xbar + (i & 1), uint32_t(i >> 1) & 1u); // every CTA's partials of tile i have landed
            } else {
                cluster_wait(); // every CTA's partials of tile i are in our slots
            }
            const float2* sl = slots + (i & 1) * kMaxCluster * kBM;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                // The 4 lanes of a row merge the C partials together: lane t takes CTAs t and t + 4
                // (4 MUFU operations per row and lane instead of C + 2).
                const int r = r0 + 8 * h;
                const float2 pa = t < C ? sl[t * kBM + r] : make_float2(kNegBig, 0.f);
                const float2 pb = t + 4 < C ? sl[(t + 4) * kBM + r] : make_float2(kNegBig, 0.f);
                float M = fmaxf(pa.x, pb.x);
                M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, 1));
                M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, 2));
                float sum = pa.y * ex2(pa.x - M) + pb.y * ex2(pb.x - M);
                sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                const float L = M + lg2(sum); // log2 Z of the row
                const bool valid = (tile0 + i) * kBM + r < a.n;
                f[h] = valid ? ex2(mown[h] - L) : 0.f;
                if (valid && rank == 0 && t == 0) ll += double(L);
            }
        }
        const uint32_t f0 = pack_half2(f[0], f[0]), f1 = pack_half2(f[1], f[1]);
        // Core columns j and j + 1 (comps 8j .. 8j + 15) of the warp's 16 rows in one stmatrix: matrix
        // m = 2·(column − j) + (rows + 8); lane 8m + i addresses row i of matrix m. Each lane's
        // registers hold (row r0 or r0 + 8, comps 8j + 2t, + 1): the accumulator layout.
        const int lm = lane >> 3, li = lane & 7;
        const uint32_t rrow = sR + (lm >> 1) * 2048 + (wg * 64 + wq * 16 + (lm & 1) * 8 + li) * 16;
#pragma unroll
        for (int j = 0; j < 16; j += 2) {
            uint32_t v[4] = {e16[2 * j], e16[2 * j + 1], e16[2 * j + 2], e16[2 * j + 3]};
            if constexpr (!kLse) {
                v[0] = hmul2_u32(v[0], f0);
                v[1] = hmul2_u32(v[1], f1);
                v[2] = hmul2_u32(v[2], f0);
                v[3] = hmul2_u32(v[3], f1);
            }
            stmatrix_x4(rrow + j * 2048, v[0], v[1], v[2], v[3]);
        }
        fence_proxy_async(); // R is read by wgmma next
    };
    // Logits of tile i (in acc1) → e16, own max, partial sums to every CTA of the cluster.
    // kBias: acc1 holds the whole logit in units of kinv (GEMM1's last k-step added the bias and
    // ‖x‖² terms), so e = 2^(kinv·acc − m) is one FMA and one exponential; the one pass takes the
    // max on acc1. Otherwise (second pass, models not folded): logit = kinv·acc + a_k‖x‖² + b_k in
    // fp32. Second pass: m = log2 Z of the row.
    auto epilogue = [&](int i, int stage) {
        const uint8_t* st = stage_base + stage * S::kStageBytes;
        const float* xs = reinterpret_cast<const float*>(st + S::kTileBytes);
        const float x0 = xs[r0], x1 = xs[r0 + 8];
        if constexpr (kBias) {
            add_far_rows(acc1, ab4, t, x0, x1, a.xsat, a.kinv);
            mask_columns<16>(acc1, comp_bits); // components past K in the last tile
        }
        float m0, m1;
        if constexpr (kLse) {
            const float* ls = reinterpret_cast<const float*>(st + S::kTileBytes + S::kRowBytes);
            m0 = ls[r0];
            m1 = ls[r0 + 8];
            if constexpr (!kBias) {
#pragma unroll
                for (int j = 0; j < 16; j++) {
                    const float4 ab = ab4[4 * j + t]; // (a, b) of comps 8j+2t, 8j+2t+1
                    acc1[4 * j + 0] = fmaf(acc1[4 * j + 0], a.kinv, fmaf(ab.x, x0, ab.y));
                    acc1[4 * j + 1] = fmaf(acc1[4 * j + 1], a.kinv, fmaf(ab.z, x0, ab.w));
                    acc1[4 * j + 2] = fmaf(acc1[4 * j + 2], a.kinv, fmaf(ab.x, x1, ab.y));
                    acc1[4 * j + 3] = fmaf(acc1[4 * j + 3], a.kinv, fmaf(ab.z, x1, ab.w));
                }
            }
        } else {
            // Max in 4 independent chains per row (the serial chains were latency-bound).
            float mx[2][4] = {{kNegBig, kNegBig, kNegBig, kNegBig}, {kNegBig, kNegBig, kNegBig, kNegBig}};
#pragma unroll
            for (int j = 0; j < 16; j++) {
                mx[0][j & 3] = fmaxf(mx[0][j & 3], fmaxf(acc1[4 * j + 0], acc1[4 * j + 1]));
                mx[1][j & 3] = fmaxf(mx[1][j & 3], fmaxf(acc1[4 * j + 2], acc1[4 * j + 3]));
            }
            m0 = fmaxf(fmaxf(mx[0][0], mx[0][1]), fmaxf(mx[0][2], mx[0][3]));
            m1 = fmaxf(fmaxf(mx[1][0], mx[1][1]), fmaxf(mx[1][2], mx[1][3]));
#pragma unroll
            for (int off = 1; off <= 2; off <<= 1) {
                m0 = fmaxf(m0, __shfl_xor_sync(0xffffffffu, m0, off));
                m1 = fmaxf(m1, __shfl_xor_sync(0xffffffffu, m1, off));
            }
            m0 *= a.kinv; // log2 units from here on
            m1 *= a.kinv;
        }
        // 2^(logit − m): kBias has the logit as kinv · acc1, the others in acc1.
        auto exp2_shifted = [&](float v, float m) { return kBias ? ex2(fmaf(v, a.kinv, -m)) : ex2(v - m); };
        float sm[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const float e0 = exp2_shifted(acc1[4 * j + 0], m0), e1 = exp2_shifted(acc1[4 * j + 1], m0);
            const float e2 = exp2_shifted(acc1[4 * j + 2], m1), e3 = exp2_shifted(acc1[4 * j + 3], m1);
            if constexpr (!kLse) {
                sm[0][j & 3] += e0 + e1;
                sm[1][j & 3] += e2 + e3;
            }
            e16[2 * j] = pack_half2(e0, e1);
            e16[2 * j + 1] = pack_half2(e2, e3);
        }
        if constexpr (!kLse) {
            float s0 = (sm[0][0] + sm[0][1]) + (sm[0][2] + sm[0][3]);
            float s1 = (sm[1][0] + sm[1][1]) + (sm[1][2] + sm[1][3]);
#pragma unroll
            for (int off = 1; off <= 2; off <<= 1) {
                s0 += __shfl_xor_sync(0xffffffffu, s0, off);
                s1 += __shfl_xor_sync(0xffffffffu, s1, off);
            }
            mown[0] = m0;
            mown[1] = m1;
            // Partials of our 128 rows to every CTA of the cluster (lane t → CTAs t, t + 4), into
            // slot [i % 2][rank]. exchange 0: asynchronous stores that count down the receiver's
            // mbarrier xbar[i % 2], which the receiver armed for C·128·8 bytes (thread 0 below).
            // Reuse of a slot is safe without a barrier: a CTA sends tile i + 2 only after it has
            // received our tile i + 1 partials, which we send after reading tile i (finish(i)).
            // exchange 1: plain remote stores ordered by barrier.cluster (arrive.release here,
            // wait.acquire in finish), which costs a GPU-scope fence per tile.
            float2* sl = slots + ((i & 1) * kMaxCluster + rank) * kBM;
            // (C ≤ 8: lane t sends to CTAs t and t + 4, two predicated sends instead of a loop.)
            if (async_x) {
                if (tid == 0) mbar_expect_tx(xbar + (i & 1), uint32_t(C * kBM * 8));
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int c = t + 4 * h;
                    if (c < C) {
                        st_async_f2(sl + r0, xbar + (i & 1), uint32_t(c), m0, s0);
                        st_async_f2(sl + r0 + 8, xbar + (i & 1), uint32_t(c), m1, s1);
                    }
                }
            } else {
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int c = t + 4 * h;
                    if (c < C) {
                        st_cluster_f2(sl + r0, uint32_t(c), m0, s0);
                        st_cluster_f2(sl + r0 + 8, uint32_t(c), m1, s1);
                    }
                }
                cluster_arrive();
            }
        }
    };

    // Partial statistics of this CTA into slice `slice`: comps ctile·128 + 64wg + 16wq + g (+8),
    // features 8j + 2t (+1).
    auto store_part = [&](int slice) {
        float* P = a.part + (size_t(slice) * Kp + size_t(ctile) * kKc + r0) * FW;
#pragma unroll
        for (int j = 0; j < FW / 8; j++) {
            *reinterpret_cast<float2*>(P + 8 * j + 2 * t) = make_float2(acc2[4 * j + 0], acc2[4 * j + 1]);
            *reinterpret_cast<float2*>(P + 8 * FW + 8 * j + 2 * t) = make_float2(acc2[4 * j + 2], acc2[4 * j + 3]);
        }
    };
    // Reproducible sums: local tiles [.., i_end) are done and tile i_end − 1 ends a block: its
    // sums (from 0 at the block's first tile, in tile order) and Σ log2 Z leave, then restart.
    auto flush_block = [&](int i_end) {
        const int block = (tile0 + i_end - 1) / a.block_tiles;
        store_part(block);
#pragma unroll
        for (int j = 0; j < FW / 2; j++) acc2[j] = 0.f;
        if constexpr (!kLse) {
            if (rank == 0 && t == 0) a.llslots[size_t(block) * a.llslot_stride + (tid >> 2)] = ll;
            ll = 0;
        }
    };
    const bool by_block = a.block_tiles > 0;
    // (Running finish(i−1) after GEMM1(i) completes instead, which gives the exchange all of
    // GEMM1 to land, measured no faster on an H200: bench/results.)
    run_tile_pipeline<NS>(ntile, tid, bars.full, acc1, acc2, load_tile, gemm1, finish, gemm2, epilogue, [&](int i) {
        if (by_block && i > 0 && (tile0 + i) % a.block_tiles == 0) flush_block(i);
    });
    if constexpr (!kLse) {
        if (async_x) { // no CTA leaves while asynchronous stores of the cluster may be in flight
            cluster_arrive();
            cluster_wait();
        }
    }
    if (by_block) {
        if (ntile > 0) flush_block(ntile);
        return;
    }
    store_part(part_id);
    if constexpr (!kLse) {
        if (rank == 0) {
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) ll += __shfl_xor_sync(0xffffffffu, ll, off);
            if (lane == 0) atomicAdd(a.loglik, ll * 0.69314718055994530942);
        }
    }
#else
    (void)a;
    __trap();
#endif
}

// ---------------------------------------------------------------- LSE pass (K > 1024)

// The LSE passes' arithmetic, shared by lse_kernel (fast) and split::lse_split_kernel (accurate):
// a thread holds, of the m64n128 fragment of one component tile, rows r0 and r0 + 8 × 32 comps.

/// Logits (log2 units) of one component tile in acc: kinv·(x̃·w̃) + a_k‖x‖² + b_k, with (a, b)
/// from ab4 and x0, x1 the rows' ‖x‖²; tmax: their max per row (this thread's 32 columns).
__device__ __forceinline__ void tile_logits(float (&acc)[64], const float4* ab4, int t, float kinv, float x0,
                                            float x1, float (&tmax)[2]) {
    tmax[0] = kNegBig;
    tmax[1] = kNegBig;
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const float4 ab = ab4[4 * j + t];
        acc[4 * j + 0] = fmaf(acc[4 * j + 0], kinv, fmaf(ab.x, x0, ab.y));
        acc[4 * j + 1] = fmaf(acc[4 * j + 1], kinv, fmaf(ab.z, x0, ab.w));
        acc[4 * j + 2] = fmaf(acc[4 * j + 2], kinv, fmaf(ab.x, x1, ab.y));
        acc[4 * j + 3] = fmaf(acc[4 * j + 3], kinv, fmaf(ab.z, x1, ab.w));
        tmax[0] = fmaxf(tmax[0], fmaxf(acc[4 * j + 0], acc[4 * j + 1]));
        tmax[1] = fmaxf(tmax[1], fmaxf(acc[4 * j + 2], acc[4 * j + 3]));
    }
}

/// The bias columns' logits (acc in units of kinv: GEMM1 gave the whole logit) of one component
/// tile: far rows' fp32 rest (add_far_rows), components past K masked (bits: valid_column_bits), and
/// tmax, the max per row in log2 units (this thread's 32 columns). acc stays in units of kinv
/// (online_lse_update<true> scales it inside its exponentials).
__device__ __forceinline__ void tile_logits_folded(float (&acc)[64], const float4* ab4, int t, float kinv, float x0,
                                                   float x1, float xsat, uint32_t bits, float (&tmax)[2]) {
    add_far_rows(acc, ab4, t, x0, x1, xsat, kinv);
    mask_columns<16>(acc, bits);
    float mx[2][2] = {{kNegBig, kNegBig}, {kNegBig, kNegBig}};
#pragma unroll
    for (int j = 0; j < 16; j++) {
        mx[0][j & 1] = fmaxf(mx[0][j & 1], fmaxf(acc[4 * j + 0], acc[4 * j + 1]));
        mx[1][j & 1] = fmaxf(mx[1][j & 1], fmaxf(acc[4 * j + 2], acc[4 * j + 3]));
    }
    tmax[0] = kinv * fmaxf(mx[0][0], mx[0][1]);
    tmax[1] = kinv * fmaxf(mx[1][0], mx[1][1]);
}

/// The running (max m, Σ 2^(l − m)) s of the two rows, updated with the tile's logits l (tmax: their
/// max): l = acc (log2 units), or kinv·acc when kScaled (tile_logits_folded); the sum in two chains
/// per row (one chain was latency-bound with one CTA per SM).
template <bool kScaled = false>
__device__ __forceinline__ void online_lse_update(const float (&acc)[64], const float (&tmax)[2], float (&m)[2],
                                                  float (&s)[2], float kinv = 1.f) {
    const float n0 = fmaxf(m[0], tmax[0]), n1 = fmaxf(m[1], tmax[1]);
    auto e = [&](float v, float n) { return kScaled ? ex2(fmaf(v, kinv, -n)) : ex2(v - n); };
    float a0 = s[0] * ex2(m[0] - n0), a1 = s[1] * ex2(m[1] - n1), b0 = 0.f, b1 = 0.f;
#pragma unroll
    for (int j = 0; j < 16; j += 2) {
        a0 += e(acc[4 * j + 0], n0) + e(acc[4 * j + 1], n0);
        a1 += e(acc[4 * j + 2], n1) + e(acc[4 * j + 3], n1);
        b0 += e(acc[4 * j + 4], n0) + e(acc[4 * j + 5], n0);
        b1 += e(acc[4 * j + 6], n1) + e(acc[4 * j + 7], n1);
    }
    m[0] = n0;
    m[1] = n1;
    s[0] = a0 + b0;
    s[1] = a1 + b1;
}

/// Merges the running (max, sum) of the 4 threads of each row (lanes differing in bits 0 and 1).
__device__ __forceinline__ void merge_lse_quad(float (&m)[2], float (&s)[2]) {
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[h], off), so = __shfl_xor_sync(0xffffffffu, s[h], off);
            const float n = fmaxf(m[h], mo);
            s[h] = s[h] * ex2(m[h] - n) + so * ex2(mo - n);
            m[h] = n;
        }
    }
}

/// End of an LSE pass (A: Args of either pass-1 kernel): the 4 threads of each row merge their
/// (max, sum), log2 Z of rows row0, row0 + 8 → a.lse, and Σ log2 Z of the tile's rows (the CTA's
/// warps in groups of tile_warps, one row tile each: `tile` is the thread's) → the tile's slot of
/// its block (reproducible sums; tiles past a.tiles, padding, write none), or the CTA's sum, in
/// nats, → a.loglik. In a fixed order: the slots' bits do not depend on the launch.
template <class A>
__device__ __forceinline__ void finish_lse(const A& a, float (&m)[2], float (&s)[2], int row0, int tile,
                                           int tile_warps);

/// log2 Z = m + log2 s of rows row0 and row0 + 8 → lse (+big for padding rows, ≥ n, whose
/// responsibilities are then 0); returns the valid rows' Σ log2 Z.
__device__ __forceinline__ double store_row_lse(const float (&m)[2], const float (&s)[2], int row0, int n,
                                                float* __restrict__ lse) {
    double ll = 0;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int row = row0 + 8 * h;
        const float L = m[h] + lg2(s[h]);
        lse[row] = row < n ? L : kPosBig;
        ll += row < n ? double(L) : 0.0;
    }
    return ll;
}

template <class A>
__device__ __forceinline__ void finish_lse(const A& a, float (&m)[2], float (&s)[2], int row0, int tile,
                                           int tile_warps) {
    const int tid = threadIdx.x, lane = tid & 31;
    merge_lse_quad(m, s);
    double ll = (lane & 3) == 0 ? store_row_lse(m, s, row0, a.n, a.lse) : 0.0;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ll += __shfl_xor_sync(0xffffffffu, ll, off);
    __shared__ double red[kThreads / 32];
    if (lane == 0) red[tid >> 5] = ll;
    __syncthreads();
    if (a.block_tiles > 0) { // reproducible sums: the tile's slot of its block (log2 units)
        if (tid % (32 * tile_warps) == 0 && tile < a.tiles) {
            const int w0 = tid / 32;
            double tot = 0;
            for (int w = w0; w < w0 + tile_warps; w++) tot += red[w];
            a.llslots[size_t(tile / a.block_tiles) * a.llslot_stride + tile % a.block_tiles] = tot;
        }
    } else if (tid == 0) {
        double tot = 0;
        for (int w = 0; w < kThreads / 32; w++) tot += red[w];
        atomicAdd(a.loglik, tot * 0.69314718055994530942);
    }
}

/// One CTA per tile of 128 rows: streams every component tile through two
/// shared-memory stages and keeps an online (max, sum) per row and thread;
/// writes log2 Z (+big for padding rows) and adds Σ ln Z to loglik.
/// kBias: the bias columns give the whole logit (folded models), as in estep_kernel.
template <int DP, bool kBias>
__global__ void __launch_bounds__(kThreads, 2) lse_kernel(const Args a) {
#if FAISS_GMM_SM90A
    using S = Shape<DP>;
    extern __shared__ __align__(128) uint8_t smem[];
    const int tid = threadIdx.x, wg = tid >> 7, wq = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int tile = blockIdx.x;
    const int r0 = wg * 64 + wq * 16 + g;
    uint64_t* bars = reinterpret_cast<uint64_t*>(smem + S::oLseBar); // [0]: X, [1], [2]: W stages
    if constexpr (kBias) { // the zeros GEMM1's last k-step reads (S::kZeroBytes = 256 × 8)
        reinterpret_cast<uint2*>(smem + S::oLseZero)[tid] = make_uint2(0u, 0u);
        fence_proxy_async();
    }
    if (tid == 0) {
        for (int s = 0; s < 3; s++) mbar_init(bars + s, 1);
        fence_mbar_init();
    }
    __syncthreads();
    auto load_w = [&](int stage, int ct) { // W | ab | Wb (kBias)
        uint8_t* st = smem + S::oLseW + stage * S::kLseStage;
        mbar_expect_tx(bars + 1 + stage, S::kWBytes + S::kABBytes + (kBias ? S::kWbBytes : 0));
        bulk_g2s(st, a.W + size_t(ct) * kKc * DP, S::kWBytes, bars + 1 + stage);
        bulk_g2s(st + S::kWBytes, a.ab + size_t(ct) * kKc * 2, S::kABBytes, bars + 1 + stage);
        if constexpr (kBias)
            bulk_g2s(st + S::kWBytes + S::kABBytes, a.Wb + size_t(ct) * kKc * 8, S::kWbBytes, bars + 1 + stage);
    };
    if (tid == 0) {
        mbar_expect_tx(bars, S::kTileBytes + S::kRowBytes);
        bulk_g2s(smem, a.G + size_t(tile) * kBM * S::FW, S::kTileBytes, bars);
        bulk_g2s(smem + S::kTileBytes, a.xx + size_t(tile) * kBM, S::kRowBytes, bars);
        for (int s = 0; s < 2 && s < a.Kt; s++) load_w(s, s);
    }
    mbar_wait(bars, 0);
    const float* xs = reinterpret_cast<const float*>(smem + S::kTileBytes);
    const float x0 = xs[r0], x1 = xs[r0 + 8];
    const uint32_t sX = smem_u32(smem);
    // kBias: the tile's bias columns (feature chunk DP/8) against the stage's Wb; the k-step's other
    // 8 columns are the zeros at oLseZero on both sides (estep_kernel's gemm1 says more).
    const uint32_t sZ = smem_u32(smem + S::oLseZero);
    const uint32_t sXb = sX + (DP / 8) * 2048 + wg * 8 * 128;
    const uint64_t dXb = make_desc(sXb, sZ - (sXb - wg * 8 * 128), 128);
    float m[2] = {kNegBig, kNegBig}, s[2] = {0.f, 0.f};
    float acc[64];
    for (int ct = 0; ct < a.Kt; ct++) {
        const int stage = ct & 1;
        mbar_wait(bars + 1 + stage, uint32_t(ct >> 1) & 1u);
        const uint8_t* st = smem + S::oLseW + stage * S::kLseStage;
        const uint32_t sW = smem_u32(st);
        fence_operand(acc);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < DP / 16; kk++) {
            const uint64_t da = make_desc(sX + kk * 2 * 2048 + wg * 8 * 128, 2048, 128);
            const uint64_t db = make_desc(sW + kk * 2 * 2048, 2048, 128);
            Wgmma<128, 0, 0>::mma(acc, da, db, kk > 0 ? 1 : 0);
        }
        if constexpr (kBias) {
            const uint32_t sWb = sW + S::kWBytes + S::kABBytes;
            Wgmma<128, 0, 0>::mma(acc, dXb, make_desc(sWb, sZ - sWb, 128), 1);
        }
        wgmma_commit();
        wgmma_wait<0>();
        fence_operand(acc);
        float tmax[2];
        const float4* ab4 = reinterpret_cast<const float4*>(st + S::kWBytes);
        if constexpr (kBias) {
            tile_logits_folded(acc, ab4, t, a.kinv, x0, x1, a.xsat, valid_column_bits<16>(a.K - ct * kKc, t), tmax);
            online_lse_update<true>(acc, tmax, m, s, a.kinv);
        } else {
            tile_logits(acc, ab4, t, a.kinv, x0, x1, tmax);
            online_lse_update(acc, tmax, m, s);
        }
        __syncthreads(); // both warpgroups are done with this W stage
        if (tid == 0 && ct + 2 < a.Kt) load_w(stage, ct + 2);
    }
    finish_lse(a, m, s, tile * kBM + r0, tile, kThreads / 32);
#else
    (void)a;
    __trap();
#endif
}

} // namespace faiss_gmm::gpu::detail::sm90
