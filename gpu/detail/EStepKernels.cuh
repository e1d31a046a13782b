// Kernels of the CUDA E-step. Layout and math, shared by both passes:
//
//  * Features G (one row per data row, in the centered frame): spherical [x],
//    diagonal [x | x²]; Dfeat = d or 2d values, zero-padded to Dw 32-bit words.
//    Fast mode packs two bf16 values per word; accurate mode stores each value
//    as a tf32 "hi" word plus a tf32 "lo" word (residual) in a second plane, so
//    the 3×TF32 products hi·hi + hi·lo + lo·hi reach fp32 accuracy.
//  * Weights W (one row per component, same word layout), in log2 units:
//    logit2[n,k] = G_n·W_k + bias_k + acoef_k·‖x_n‖². The large-magnitude terms
//    (bias, ‖x‖²) stay in fp32 outside the low-precision product.
//  * With 32-bit words, a bf16 m16n8k16 fragment and a tf32 m16n8k8 fragment
//    have the same word layout, so one tile loader and ldmatrix addressing serve
//    both; only the mma instruction (and the hi/lo planes) differ.
//
// Pass 1 (logz_kernel): each block owns 128 rows and streams all components
// through shared memory, keeping an online log-sum-exp per row; writes
// logZ (log2 units) per row and adds Σ logZ to the log-likelihood.
// Pass 2 (accumulate_kernel): each block owns 128 components, one chunk of 128
// output features and a range of rows; per 64-row tile it recomputes the
// logits Sᵀ (components × rows) with tensor cores, turns them into
// responsibilities in registers, and feeds them straight back as the A operand
// of Rᵀ·G (the flash-attention register reuse). Statistics stay in registers
// over the block's whole row range and are added to global memory once per
// block: O(blocks·K·d) atomics, never O(N/tile·K·d), and nothing of size N×K.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace faiss_gmm::gpu::detail {

constexpr int kThreads = 256;     // 8 warps per block, both passes
constexpr int kChunkWords = 16;   // granularity of Dw (words per row are a multiple of this)
constexpr int kP1Rows = 128;      // pass 1: rows per block
constexpr int kP1Comps = 128;     // pass 1: components per tile
constexpr int kP2Comps = 128;     // pass 2: components per block (16 per warp)
constexpr int kP2Rows = 64;       // pass 2: rows per tile
constexpr int kP2Feats = 128;     // pass 2: output features per block
constexpr float kNegBig = -1e30f; // bias of padding components: exp2 gives exactly 0
constexpr float kPosBig = 1e30f;  // logZ of padding rows: their responsibilities are 0

struct KernelArgs {
    const uint32_t* G;   // planes × [rows][Dw]
    size_t g_plane;      // words between planes of G
    const uint32_t* W;   // planes × [Kp][Dw]
    size_t w_plane;
    const float* bias;   // Kp, log2 units (kNegBig for padding)
    const float* acoef;  // Kp, coefficient of ‖x‖² (spherical), 0 otherwise
    const float* xx;     // rows: ‖x_n‖² (centered)
    float* logz2;        // rows: log2 Z_n (pass 1 out, pass 2 in)
    double* loglik;      // 1
    double* acc_f;       // K × Dfeat: Σ r G
    double* acc_nk;      // K
    double* acc_sxx;     // K: Σ r ‖x‖²
    int n;               // rows in this chunk
    int K;
    int Kp;              // K rounded up to 128
    int Dw;              // words per row (multiple of kChunkWords)
    int Dfeat;           // features per row (d or 2d)
    int tiles_per_split; // pass 2: 64-row tiles per block
};

// ---------------------------------------------------------------- primitives

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
    unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    int src_size = pred ? 16 : 0; // 0: nothing is read, the 16 bytes are zero-filled
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const uint32_t* smem) {
    unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const uint32_t* smem) {
    unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi); // .x (low half) = lo
    return *reinterpret_cast<uint32_t*>(&h);
}

/// bf16 operands, fp32 accumulation (fast mode).
struct MathBf16 {
    static constexpr int kPlanes = 1;
    static constexpr int kElemsPerWord = 2;
    static constexpr int kChunk = 32; // words of the reduction dimension per pipeline stage
    static constexpr int kStages = 4; // cp.async stages in flight (hides L2 latency)
    __device__ __forceinline__ static void mma(float (&c)[4], const uint32_t* a, const uint32_t* /*a_lo*/,
                                               const uint32_t* b, const uint32_t* /*b_lo*/) {
        asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                "{%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
};

/// 1×TF32 operands, fp32 accumulation (fast mode, tf32 flavour: ~4× smaller
/// rounding error than bf16 at half its tensor-core rate).
struct MathTf32 {
    static constexpr int kPlanes = 1;
    static constexpr int kElemsPerWord = 1;
    static constexpr int kChunk = 32;
    static constexpr int kStages = 4;
    __device__ __forceinline__ static void mma(float (&c)[4], const uint32_t* a, const uint32_t* /*a_lo*/,
                                               const uint32_t* b, const uint32_t* /*b_lo*/) {
        asm volatile(
                "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                "{%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
};

/// 3×TF32: a·b ≈ a_hi·b_hi + a_hi·b_lo + a_lo·b_hi, small terms first (accurate mode).
struct Math3xTf32 {
    static constexpr int kPlanes = 2;
    static constexpr int kElemsPerWord = 1;
    static constexpr int kChunk = 16; // two planes: half the words per stage fit the same smem
    static constexpr int kStages = 4;
    __device__ __forceinline__ static void mma1(float (&c)[4], const uint32_t* a, const uint32_t* b) {
        asm volatile(
                "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                "{%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
    __device__ __forceinline__ static void mma(float (&c)[4], const uint32_t* a, const uint32_t* a_lo,
                                               const uint32_t* b, const uint32_t* b_lo) {
        mma1(c, a_lo, b);
        mma1(c, a, b_lo);
        mma1(c, a, b);
    }
};

/// Copies a tile of `rows` rows × `words` words (multiple of 4) from each plane
/// of a row-major [*, ld] word matrix into smem (stride `sstride` words, planes
/// `rows * sstride` apart). Rows ≥ rows_valid and words ≥ ld are zero-filled.
template <int kPlanes>
__device__ __forceinline__ void load_tile(uint32_t* smem, int sstride, const uint32_t* g, size_t plane,
                                          int ld, int row0, int rows, int rows_valid, int word0, int words) {
    const int vec_per_row = words / 4;
    const int total = kPlanes * rows * vec_per_row;
    for (int i = threadIdx.x; i < total; i += kThreads) {
        const int p = i / (rows * vec_per_row);
        const int rem = i - p * rows * vec_per_row;
        const int r = rem / vec_per_row;
        const int v = rem - r * vec_per_row;
        const int gr = row0 + r;
        const int gw = word0 + v * 4;
        const bool ok = gr < rows_valid && gw < ld;
        const uint32_t* src = ok ? g + p * plane + size_t(gr) * ld + gw : g;
        cp_async16(smem + (p * rows + r) * sstride + v * 4, src, ok);
    }
}

// ---------------------------------------------------------------- convert

/// Rows (float or uint8, d values) → centered features G and ‖x‖². One warp per row.
template <typename Tin, class M>
__global__ void __launch_bounds__(kThreads) convert_kernel(const Tin* __restrict__ x, int n, int d,
                                                           const float* __restrict__ center, int diag,
                                                           int Dw, uint32_t* __restrict__ G, size_t plane,
                                                           float* __restrict__ xx) {
    const int row = blockIdx.x * (kThreads / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= n) return;
    const Tin* xr = x + size_t(row) * d;
    auto feat = [&](int e) -> float {
        if (e < d) return float(xr[e]) - center[e];
        if (diag && e < 2 * d) {
            const float y = float(xr[e - d]) - center[e - d];
            return y * y;
        }
        return 0.f;
    };
    uint32_t* gr = G + size_t(row) * Dw;
    for (int w = lane; w < Dw; w += 32) {
        if (M::kElemsPerWord == 2) {
            gr[w] = pack_bf16(feat(2 * w), feat(2 * w + 1));
        } else {
            const float v = feat(w);
            const uint32_t hi = to_tf32(v);
            gr[w] = hi;
            if (M::kPlanes == 2) gr[plane + w] = to_tf32(v - __uint_as_float(hi));
        }
    }
    float ss = 0.f;
    for (int j = lane; j < d; j += 32) {
        const float y = float(xr[j]) - center[j];
        ss = fmaf(y, y, ss);
    }
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) xx[row] = ss;
}

// ---------------------------------------------------------------- pass 1

template <class M>
__host__ __device__ constexpr int logz_smem_words() {
    return M::kStages * M::kPlanes * (kP1Rows + kP1Comps) * (M::kChunk + 4);
}

template <class M>
__global__ void __launch_bounds__(kThreads) logz_kernel(KernelArgs a) {
    constexpr int P = M::kPlanes;
    constexpr int CW = M::kChunk;
    constexpr int NS = M::kStages;
    constexpr int S = CW + 4; // padded smem row: conflict-free ldmatrix
    constexpr int kStage = P * (kP1Rows + kP1Comps) * S;
    extern __shared__ __align__(16) uint32_t smem[];
    __shared__ float red_m[2][kP1Rows], red_s[2][kP1Rows];
    __shared__ double red_ll[kThreads / 32];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int wm = warp >> 1, wn = warp & 1; // 4 × 2 warps: 32 rows × 64 components each
    const int row0 = blockIdx.x * kP1Rows;
    const int nkc = (a.Dw + CW - 1) / CW;
    const int total = (a.Kp / kP1Comps) * nkc;

    float xxr[4], m[4], s[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int row = row0 + wm * 32 + (r >> 1) * 16 + (r & 1) * 8 + g;
        xxr[r] = row < a.n ? a.xx[row] : 0.f;
        m[r] = kNegBig;
        s[r] = 0.f;
    }
    float acc[2][8][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[i][j][q] = 0.f;

    auto load_stage = [&](int st, int it) {
        const int kt = it / nkc, kc = it - kt * nkc;
        uint32_t* As = smem + st * kStage;
        uint32_t* Bs = As + P * kP1Rows * S;
        load_tile<P>(As, S, a.G, a.g_plane, a.Dw, row0, kP1Rows, a.n, kc * CW, CW);
        load_tile<P>(Bs, S, a.W, a.w_plane, a.Dw, kt * kP1Comps, kP1Comps, a.Kp, kc * CW, CW);
    };

    const int arow = (lane & 7) + ((lane >> 3) & 1) * 8, acol = (lane >> 4) * 4;
    const int brow = (lane & 7) + (lane >> 4) * 8, bcol = ((lane >> 3) & 1) * 4;

    // NS-stage cp.async pipeline; one commit group per iteration (possibly empty).
#pragma unroll
    for (int st = 0; st < NS - 1; st++) {
        if (st < total) load_stage(st, st);
        cp_async_commit();
    }
    for (int it = 0; it < total; it++) {
        cp_async_wait<NS - 2>();
        __syncthreads(); // stage `it` landed for all threads; everyone is done with stage it-1
        if (it + NS - 1 < total) load_stage((it + NS - 1) % NS, it + NS - 1);
        cp_async_commit();

        const uint32_t* As = smem + (it % NS) * kStage;
        const uint32_t* Bs = As + P * kP1Rows * S;
        const int kw0 = (it % nkc) * CW;
#pragma unroll
        for (int ks = 0; ks < CW / 8; ks++) {
            if (kw0 + ks * 8 >= a.Dw) break; // zero-filled tail of the last chunk
            uint32_t af[2][P][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int p = 0; p < P; p++)
                    ldmatrix_x4(af[mt][p], As + p * kP1Rows * S + (wm * 32 + mt * 16 + arow) * S + ks * 8 + acol);
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t bf[P][4];
#pragma unroll
                for (int p = 0; p < P; p++)
                    ldmatrix_x4(bf[p], Bs + p * kP1Comps * S + (wn * 64 + np * 16 + brow) * S + ks * 8 + bcol);
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    M::mma(acc[mt][2 * np], af[mt][0], af[mt][P - 1], &bf[0][0], &bf[P - 1][0]);
                    M::mma(acc[mt][2 * np + 1], af[mt][0], af[mt][P - 1], &bf[0][2], &bf[P - 1][2]);
                }
            }
        }

        const int kt = it / nkc;
        if (it - kt * nkc == nkc - 1) {
            // Online log-sum-exp over this tile of components.
            float bb[8][2], aa[8][2];
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    const int comp = kt * kP1Comps + wn * 64 + nt * 8 + 2 * t + j;
                    bb[nt][j] = __ldg(a.bias + comp);
                    aa[nt][j] = __ldg(a.acoef + comp);
                }
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int mt = r >> 1, h = r & 1;
                float l[16];
                float tmax = kNegBig;
#pragma unroll
                for (int nt = 0; nt < 8; nt++)
#pragma unroll
                    for (int j = 0; j < 2; j++) {
                        const float v = acc[mt][nt][2 * h + j] + fmaf(aa[nt][j], xxr[r], bb[nt][j]);
                        l[nt * 2 + j] = v;
                        tmax = fmaxf(tmax, v);
                    }
                const float mnew = fmaxf(m[r], tmax);
                float sum = s[r] * exp2f(m[r] - mnew);
#pragma unroll
                for (int q = 0; q < 16; q++) sum += exp2f(l[q] - mnew);
                s[r] = sum;
                m[r] = mnew;
            }
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 8; j++)
#pragma unroll
                    for (int q = 0; q < 4; q++) acc[i][j][q] = 0.f;
        }
    }

    // Combine the 4 lanes of a row, then the 2 warps that share the rows.
#pragma unroll
    for (int r = 0; r < 4; r++) {
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[r], off);
            const float so = __shfl_xor_sync(0xffffffffu, s[r], off);
            const float mn = fmaxf(m[r], mo);
            s[r] = s[r] * exp2f(m[r] - mn) + so * exp2f(mo - mn);
            m[r] = mn;
        }
        if (t == 0) {
            const int rl = wm * 32 + (r >> 1) * 16 + (r & 1) * 8 + g;
            red_m[wn][rl] = m[r];
            red_s[wn][rl] = s[r];
        }
    }
    __syncthreads();
    double ll = 0;
    if (tid < kP1Rows) {
        const float m0 = red_m[0][tid], m1 = red_m[1][tid];
        const float mn = fmaxf(m0, m1);
        const float sum = red_s[0][tid] * exp2f(m0 - mn) + red_s[1][tid] * exp2f(m1 - mn);
        const float lz = mn + log2f(sum);
        const int row = row0 + tid;
        if (row < a.n) {
            a.logz2[row] = lz;
            ll = double(lz) * 0.69314718055994530942;
        }
    }
    for (int off = 16; off > 0; off >>= 1) ll += __shfl_xor_sync(0xffffffffu, ll, off);
    if (lane == 0) red_ll[warp] = ll;
    __syncthreads();
    if (tid == 0) {
        double tot = 0;
        for (int w = 0; w < kThreads / 32; w++) tot += red_ll[w];
        atomicAdd(a.loglik, tot);
    }
}

// ---------------------------------------------------------------- pass 2

template <class M>
__host__ __device__ constexpr int accumulate_feat_words() {
    return kP2Feats / M::kElemsPerWord;
}
template <class M>
__host__ __device__ constexpr int accumulate_smem_words() {
    return M::kStages * M::kPlanes * (kP2Comps + kP2Rows) * (M::kChunk + 4) +
           M::kPlanes * kP2Rows * (accumulate_feat_words<M>() + 4) + 2 * kP2Rows;
}

template <class M>
__global__ void __launch_bounds__(kThreads, 1) accumulate_kernel(KernelArgs a) {
    constexpr int P = M::kPlanes;
    constexpr int CW = M::kChunk;
    constexpr int NS = M::kStages;
    constexpr int S = CW + 4;
    constexpr int kStage = P * (kP2Comps + kP2Rows) * S;
    constexpr int FW = accumulate_feat_words<M>();
    constexpr int SF = FW + 4;
    extern __shared__ __align__(16) uint32_t smem[];
    uint32_t* Gf = smem + NS * kStage;
    float* slz = reinterpret_cast<float*>(Gf + P * kP2Rows * SF);
    float* sxn = slz + kP2Rows;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int kt = blockIdx.x, fc = blockIdx.y;
    const int ntiles = (a.n + kP2Rows - 1) / kP2Rows;
    const int tile0 = blockIdx.z * a.tiles_per_split;
    const int tile1 = min(ntiles, tile0 + a.tiles_per_split);
    if (tile0 >= tile1) return;
    const int nkc = (a.Dw + CW - 1) / CW;
    const int total = (tile1 - tile0) * nkc;
    const int fvalid = min(kP2Feats, a.Dfeat - fc * kP2Feats);
    const int comp_lo = kt * kP2Comps + warp * 16 + g; // this thread's two components
    const float b_lo = a.bias[comp_lo], b_hi = a.bias[comp_lo + 8];
    const float a_lo = a.acoef[comp_lo], a_hi = a.acoef[comp_lo + 8];

    float acc1[8][4], acc2[kP2Feats / 8][4];
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int q = 0; q < 4; q++) acc1[j][q] = 0.f;
#pragma unroll
    for (int j = 0; j < kP2Feats / 8; j++)
#pragma unroll
        for (int q = 0; q < 4; q++) acc2[j][q] = 0.f;
    float nk_r[2] = {0.f, 0.f}, sxx_r[2] = {0.f, 0.f};

    auto load_stage = [&](int st, int it) {
        const int tile = tile0 + it / nkc, kc = it % nkc;
        uint32_t* As = smem + st * kStage;
        uint32_t* Bs = As + P * kP2Comps * S;
        load_tile<P>(As, S, a.W, a.w_plane, a.Dw, kt * kP2Comps, kP2Comps, a.Kp, kc * CW, CW);
        load_tile<P>(Bs, S, a.G, a.g_plane, a.Dw, tile * kP2Rows, kP2Rows, a.n, kc * CW, CW);
    };
    auto load_extras = [&](int tile) {
        load_tile<P>(Gf, SF, a.G, a.g_plane, a.Dw, tile * kP2Rows, kP2Rows, a.n, fc * FW, FW);
        if (tid < kP2Rows) {
            const int row = tile * kP2Rows + tid;
            slz[tid] = row < a.n ? a.logz2[row] : kPosBig;
            sxn[tid] = row < a.n ? a.xx[row] : 0.f;
        }
    };

    const int arow = (lane & 7) + ((lane >> 3) & 1) * 8, acol = (lane >> 4) * 4;
    const int brow = (lane & 7) + (lane >> 4) * 8, bcol = ((lane >> 3) & 1) * 4;

    // NS-stage pipeline as in pass 1. The extras of a tile (Gf, logZ, ‖x‖²) go in
    // their own group, committed at the end of the previous tile: the wait at the
    // top of an iteration covers them two iterations later, so tiles of fewer than
    // NS-1 chunks wait for them explicitly before their epilogue.
    load_extras(tile0);
#pragma unroll
    for (int st = 0; st < NS - 1; st++) {
        if (st < total) load_stage(st, st);
        cp_async_commit();
    }
    for (int it = 0; it < total; it++) {
        cp_async_wait<NS - 2>();
        __syncthreads();
        if (it + NS - 1 < total) load_stage((it + NS - 1) % NS, it + NS - 1);
        cp_async_commit();

        const uint32_t* As = smem + (it % NS) * kStage;
        const uint32_t* Bs = As + P * kP2Comps * S;
        const int kw0 = (it % nkc) * CW;
#pragma unroll
        for (int ks = 0; ks < CW / 8; ks++) {
            if (kw0 + ks * 8 >= a.Dw) break;
            uint32_t af[P][4];
#pragma unroll
            for (int p = 0; p < P; p++)
                ldmatrix_x4(af[p], As + p * kP2Comps * S + (warp * 16 + arow) * S + ks * 8 + acol);
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t bf[P][4];
#pragma unroll
                for (int p = 0; p < P; p++)
                    ldmatrix_x4(bf[p], Bs + p * kP2Rows * S + (np * 16 + brow) * S + ks * 8 + bcol);
                M::mma(acc1[2 * np], af[0], af[P - 1], &bf[0][0], &bf[P - 1][0]);
                M::mma(acc1[2 * np + 1], af[0], af[P - 1], &bf[0][2], &bf[P - 1][2]);
            }
        }

        const int tile_it = it / nkc;
        if (it - tile_it * nkc != nkc - 1) continue;
        if (nkc < NS - 1) {
            cp_async_wait<0>();
            __syncthreads();
        }

        // Responsibilities of this tile: acc1[nt] holds components (g, g+8) × rows (8nt+2t, +1).
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int r = nt * 8 + 2 * t + j;
                const float lz = slz[r], xn = sxn[r];
                const float p0 = exp2f(acc1[nt][j] + fmaf(a_lo, xn, b_lo) - lz);
                const float p1 = exp2f(acc1[nt][2 + j] + fmaf(a_hi, xn, b_hi) - lz);
                acc1[nt][j] = p0;
                acc1[nt][2 + j] = p1;
                nk_r[0] += p0;
                nk_r[1] += p1;
                sxx_r[0] = fmaf(p0, xn, sxx_r[0]);
                sxx_r[1] = fmaf(p1, xn, sxx_r[1]);
            }

        // Rᵀ·G for this block's feature chunk; R comes straight from registers.
        if constexpr (M::kElemsPerWord == 2) {
            const int lrow = (lane & 7) + ((lane >> 3) & 1) * 8, lcol = (lane >> 4) * 4;
#pragma unroll
            for (int s16 = 0; s16 < kP2Rows / 16; s16++) {
                uint32_t af[4];
                af[0] = pack_bf16(acc1[2 * s16][0], acc1[2 * s16][1]);
                af[1] = pack_bf16(acc1[2 * s16][2], acc1[2 * s16][3]);
                af[2] = pack_bf16(acc1[2 * s16 + 1][0], acc1[2 * s16 + 1][1]);
                af[3] = pack_bf16(acc1[2 * s16 + 1][2], acc1[2 * s16 + 1][3]);
#pragma unroll
                for (int fp = 0; fp < kP2Feats / 16; fp++) {
                    if (fp * 16 < fvalid) {
                        uint32_t bf[4];
                        ldmatrix_x4_trans(bf, Gf + (s16 * 16 + lrow) * SF + fp * 8 + lcol);
                        M::mma(acc2[2 * fp], af, af, &bf[0], &bf[0]);
                        M::mma(acc2[2 * fp + 1], af, af, &bf[2], &bf[2]);
                    }
                }
            }
        } else {
            // k slot t ↔ row 2t, slot t+4 ↔ row 2t+1 (same permutation in A and B).
#pragma unroll
            for (int j = 0; j < 8; j++) {
                uint32_t ah[4], al[4];
                const float c[4] = {acc1[j][0], acc1[j][2], acc1[j][1], acc1[j][3]};
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    ah[q] = to_tf32(c[q]);
                    al[q] = to_tf32(c[q] - __uint_as_float(ah[q]));
                }
                const int r0 = j * 8 + 2 * t;
#pragma unroll
                for (int f = 0; f < kP2Feats / 8; f++) {
                    if (f * 8 < fvalid) {
                        const int col = f * 8 + g;
                        const uint32_t bh[2] = {Gf[r0 * SF + col], Gf[(r0 + 1) * SF + col]};
                        uint32_t bl[2] = {0u, 0u};
                        if constexpr (P == 2) {
                            bl[0] = Gf[kP2Rows * SF + r0 * SF + col];
                            bl[1] = Gf[kP2Rows * SF + (r0 + 1) * SF + col];
                        }
                        M::mma(acc2[f], ah, al, bh, bl);
                    }
                }
            }
        }
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc1[j][q] = 0.f;

        __syncthreads(); // every warp is done with Gf, slz, sxn of this tile
        if (tile0 + tile_it + 1 < tile1) load_extras(tile0 + tile_it + 1);
        cp_async_commit();
    }

    // One addition per statistic per block.
#pragma unroll
    for (int f = 0; f < kP2Feats / 8; f++) {
        if (f * 8 < fvalid) {
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int comp = comp_lo + (q >> 1) * 8;
                const int feat = fc * kP2Feats + f * 8 + 2 * t + (q & 1);
                if (comp < a.K && feat < a.Dfeat) {
                    atomicAdd(a.acc_f + size_t(comp) * a.Dfeat + feat, double(acc2[f][q]));
                }
            }
        }
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float nk = nk_r[h], sx = sxx_r[h];
        for (int off = 1; off <= 2; off <<= 1) {
            nk += __shfl_xor_sync(0xffffffffu, nk, off);
            sx += __shfl_xor_sync(0xffffffffu, sx, off);
        }
        const int comp = comp_lo + h * 8;
        if (fc == 0 && t == 0 && comp < a.K) {
            atomicAdd(a.acc_nk + comp, double(nk));
            atomicAdd(a.acc_sxx + comp, double(sx));
        }
    }
}

} // namespace faiss_gmm::gpu::detail
