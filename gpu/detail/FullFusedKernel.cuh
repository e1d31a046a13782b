// The fused log-density kernel of the full-covariance E-step (FullEStep.h, issue 17): for a tile of
// kFusedRows rows and a range of components, y = (x − c)ᵀU_k − μ_kᵀU_k is computed on tensor cores
// (mma.sync m16n8k16, fp16 operands, fp32 accumulators; sm_80 and later) and reduced to the log2
// density in registers: the B × K·d projections never reach global memory (the blocked steps write
// and read them back: bench/results/gpu_full_covariance.md has both).
//
// Layout: 8 warps, each 16 rows × all DP columns of y (acc[DP/8][4] fp32). The rows' A fragments
// stay in registers for every component; U_k (fp16, transposed [j][i], rows padded by 8 halves so
// that the 32-bit fragment loads hit 32 distinct banks) and μ_kᵀU_k go through shared memory, two
// stages deep with cp.async, so the next component loads while this one multiplies. U_k is upper
// triangular: the k-steps below the diagonal of an n-tile are skipped (72 of 128 MMAs at DP = 128).
// Epilogue per component (full_quad_norms): y = acc·(1/(s_row·s_k)) − m (powers of two: exact
// scaling, one rounding), Σ y² over the thread's columns, then over the 4 lanes of a quad; the 32
// components of a round are staged in shared memory and stored as 128-byte rows of S.
//
// Operands: rows and U_k carry power-of-two scales that put their largest entry in [2^13, 2^14)
// (fp16 keeps 11 bits over its normal range; smaller entries lose at most 2^-25 absolute, scaled).
// Fast mode: one product of the fp16 values (2^-11 relative per operand). Accurate (kSplit): each
// operand is hi + lo (lo = fp16(v − hi)), three products hi·hi + hi·lo + lo·hi (what is dropped,
// lo·lo and the residues, is ≲ 3·2^-22 of |x||U|), as the spherical Hopper kernel does.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace faiss_gmm::gpu::detail {

constexpr int kFusedRows = 128; ///< rows per CTA (8 warps × 16)
constexpr int kFusedRound = 32; ///< components per staged round of S

/// Shared memory of the fused kernel: two stages of U_k (hi, and lo when split) and μ_kᵀU_k, and the S round.
inline size_t full_fused_smem_bytes(int DP, bool split) {
    const size_t w = size_t(DP) * (DP + 8) * 2;
    return 2 * ((split ? 2 : 1) * w + size_t(DP) * 4) + size_t(kFusedRows) * (kFusedRound + 1) * 4;
}

/// Rows → fp16 operands of the fused kernel: Xh (and Xl) = s_b·(x − c) (n × DP halves, zero
/// padding), s_b a power of two putting max_j |x_bj − c_j| in [2^13, 2^14) (1 for a zero row);
/// rinv[b] = 1/s_b. F: the centered rows (fp32, stride ldF). One warp per row.
__global__ void __launch_bounds__(256) full_half_rows_kernel(const float* __restrict__ F, int ldF, int n, int d,
                                                             int DP, __half* __restrict__ Xh, __half* __restrict__ Xl,
                                                             float* __restrict__ rinv) {
    const int row = blockIdx.x * 8 + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= n) return;
    const float* f = F + size_t(row) * ldF;
    float mx = 0.f;
    for (int j = lane; j < d; j += 32) mx = fmaxf(mx, fabsf(f[j]));
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    int e = 0;
    frexpf(mx, &e); // mx in [2^(e−1), 2^e); 0 → e = 0
    e = mx > 0.f ? min(max(e, -100), 100) : 14;
    const float s = ldexpf(1.f, 14 - e);
    for (int j = lane; j < DP; j += 32) {
        const float v = j < d ? s * f[j] : 0.f;
        const __half hi = __float2half_rn(v);
        Xh[size_t(row) * DP + j] = hi;
        if (Xl) Xl[size_t(row) * DP + j] = __float2half_rn(v - __half2float(hi));
    }
    if (lane == 0) rinv[row] = ldexpf(1.f, e - 14);
}

/// The epilogue's arithmetic of a component, shared by this kernel and its Hopper version
/// (FullHopperKernel.cuh), whose accumulators have the same m16n8 layout per warp (n-tile nt at
/// acc[4nt .. 4nt + 3]: rows g and g + 8, columns 8nt + 2t and + 1): y = acc·s − m with s = 1/(s_row·s_k)
/// (powers of two: exact scaling, one rounding), ‖y‖² of the thread's two rows over its columns, then
/// over the 4 lanes of the quad (qa: row g, qb: row g + 8). m: μ_kᵀU_k (DP floats, 8-byte aligned).
template <int NT>
__device__ __forceinline__ void full_quad_norms(const float (&acc)[4 * NT], const float* m, int t, float sa, float sb,
                                                float& qa, float& qb) {
    qa = 0.f;
    qb = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const float2 mm = *reinterpret_cast<const float2*>(m + 8 * nt + 2 * t);
        const float ya0 = fmaf(acc[4 * nt + 0], sa, -mm.x), ya1 = fmaf(acc[4 * nt + 1], sa, -mm.y);
        const float yb0 = fmaf(acc[4 * nt + 2], sb, -mm.x), yb1 = fmaf(acc[4 * nt + 3], sb, -mm.y);
        qa = fmaf(ya0, ya0, qa);
        qa = fmaf(ya1, ya1, qa);
        qb = fmaf(yb0, yb0, qb);
        qb = fmaf(yb1, yb1, qb);
    }
    qa += __shfl_xor_sync(0xffffffffu, qa, 1);
    qa += __shfl_xor_sync(0xffffffffu, qa, 2);
    qb += __shfl_xor_sync(0xffffffffu, qb, 1);
    qb += __shfl_xor_sync(0xffffffffu, qb, 2);
}

/// log2 p(x, k) from ‖y‖² and logc2_k: c2 − ½·log2(e)·q (both fused kernels).
__device__ __forceinline__ float full_log2_density(float q, float c2) {
    return fmaf(-0.72134752044448170368f, q, c2);
}

__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    const uint32_t s = uint32_t(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/// S[b][k] = log2 p(x_b, k) for rows [blockIdx.x·kFusedRows, +kFusedRows) ∩ [0, n) and components
/// [blockIdx.y·kc, +kc) ∩ [0, K) (kc a multiple of kFusedRound). Xh/Xl, rinv: full_half_rows_kernel;
/// Wh/Wl, kinv, mp (K × DP), logc2: FullModel (FullModelEncoding.h).
template <int DP, bool kSplit>
__global__ void __launch_bounds__(256) full_fused_log_density_kernel(
        const __half* __restrict__ Xh, const __half* __restrict__ Xl, const float* __restrict__ rinv, int n,
        const __half* __restrict__ Wh, const __half* __restrict__ Wl, const float* __restrict__ kinv,
        const float* __restrict__ mp, const float* __restrict__ logc2, int K, int kc, float* __restrict__ S, int ldS) {
    constexpr int NT = DP / 8, KS = DP / 16, LD = DP + 8; // n-tiles, k-steps, smem row stride (halves)
    constexpr int WHALVES = DP * LD;
    constexpr int STAGE = (kSplit ? 2 : 1) * WHALVES * 2 + DP * 4; // bytes per stage
    extern __shared__ __align__(16) unsigned char smem[];
    float(*sS)[kFusedRound + 1] = reinterpret_cast<float(*)[kFusedRound + 1]>(smem + 2 * STAGE);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int row0 = blockIdx.x * kFusedRows;
    const int k0 = blockIdx.y * kc, k1 = min(K, k0 + kc);
    if (k0 >= k1) return;

    // This warp's rows: A fragments (rows g and g + 8 of its 16, columns 2t.. and 2t + 8..) of every k-step.
    const int ra = row0 + warp * 16 + g, rb = ra + 8;
    uint32_t ah[KS][4], al[kSplit ? KS : 1][4];
    auto frag = [&](const __half* X, int r, int col) -> uint32_t {
        return r < n ? *reinterpret_cast<const uint32_t*>(X + size_t(r) * DP + col) : 0u;
    };
#pragma unroll
    for (int s = 0; s < KS; s++) {
        ah[s][0] = frag(Xh, ra, 16 * s + 2 * t);
        ah[s][1] = frag(Xh, rb, 16 * s + 2 * t);
        ah[s][2] = frag(Xh, ra, 16 * s + 2 * t + 8);
        ah[s][3] = frag(Xh, rb, 16 * s + 2 * t + 8);
        if constexpr (kSplit) {
            al[s][0] = frag(Xl, ra, 16 * s + 2 * t);
            al[s][1] = frag(Xl, rb, 16 * s + 2 * t);
            al[s][2] = frag(Xl, ra, 16 * s + 2 * t + 8);
            al[s][3] = frag(Xl, rb, 16 * s + 2 * t + 8);
        }
    }
    const float rsa = ra < n ? rinv[ra] : 0.f, rsb = rb < n ? rinv[rb] : 0.f;

    // One component's U_k (hi, lo) and μ_kᵀU_k into a stage: 16-byte chunks, rows of DP halves.
    auto load = [&](int k, int stage) {
        unsigned char* base = smem + stage * STAGE;
        constexpr int CHUNKS = DP * DP / 8; // 8 halves per chunk
        for (int c = tid; c < CHUNKS; c += 256) {
            const int j = c / (DP / 8), i8 = c % (DP / 8);
            const size_t src = (size_t(k) * DP + j) * DP + i8 * 8;
            cp_async16(reinterpret_cast<__half*>(base) + j * LD + i8 * 8, Wh + src);
            if constexpr (kSplit) cp_async16(reinterpret_cast<__half*>(base) + WHALVES + j * LD + i8 * 8, Wl + src);
        }
        float* m = reinterpret_cast<float*>(base + (kSplit ? 2 : 1) * WHALVES * 2);
        for (int c = tid; c < DP / 4; c += 256) cp_async16(m + 4 * c, mp + size_t(k) * DP + 4 * c);
    };

    load(k0, 0);
    cp_async_commit();
    for (int k = k0; k < k1; k++) {
        const int stage = (k - k0) & 1;
        if (k + 1 < k1) load(k + 1, stage ^ 1);
        cp_async_commit(); // (an empty group on the last component keeps the wait below uniform)
        cp_async_wait<1>();
        __syncthreads();
        const __half* wh = reinterpret_cast<const __half*>(smem + stage * STAGE);
        const __half* wl = wh + WHALVES;
        const float* m = reinterpret_cast<const float*>(smem + stage * STAGE + (kSplit ? 2 : 1) * WHALVES * 2);

        float acc[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            // B fragment rows: column j = 8nt + g of y, its k-step entries 2t.. and 2t + 8..
            const __half* bh = wh + (8 * nt + g) * LD + 2 * t;
#pragma unroll
            for (int s = 0; s <= nt / 2 && s < KS; s++) { // U_k[i][j] = 0 for i > j: k-steps past the diagonal
                const uint32_t b0 = *reinterpret_cast<const uint32_t*>(bh + 16 * s);
                const uint32_t b1 = *reinterpret_cast<const uint32_t*>(bh + 16 * s + 8);
                mma_16816(acc[nt], ah[s], b0, b1);
                if constexpr (kSplit) {
                    const __half* bl = wl + (8 * nt + g) * LD + 2 * t;
                    const uint32_t l0 = *reinterpret_cast<const uint32_t*>(bl + 16 * s);
                    const uint32_t l1 = *reinterpret_cast<const uint32_t*>(bl + 16 * s + 8);
                    mma_16816(acc[nt], ah[s], l0, l1);
                    mma_16816(acc[nt], al[s], b0, b1);
                }
            }
        }
        const float kv = kinv[k];
        float qa, qb;
        full_quad_norms<NT>(*reinterpret_cast<const float(*)[4 * NT]>(&acc[0][0]), m, t, rsa * kv, rsb * kv, qa, qb);
        const int col = (k - k0) % kFusedRound;
        if (t == 0) {
            const float c2 = logc2[k];
            sS[warp * 16 + g][col] = full_log2_density(qa, c2);
            sS[warp * 16 + g + 8][col] = full_log2_density(qb, c2);
        }
        if (col == kFusedRound - 1 || k == k1 - 1) {
            __syncthreads();
            const int kb = k - col, nc = col + 1;
            for (int e = tid; e < kFusedRows * kFusedRound; e += 256) {
                const int r = e / kFusedRound, c = e % kFusedRound;
                if (c < nc && row0 + r < n) S[size_t(row0 + r) * ldS + kb + c] = sS[r][c];
            }
        }
        __syncthreads(); // this stage and sS are rewritten next
    }
    cp_async_wait<0>();
}

} // namespace faiss_gmm::gpu::detail
