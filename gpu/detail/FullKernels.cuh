// Kernels of the full-covariance E-step (FullEStep.h, issue 17). Per block of B rows:
//  1. the log2-density of each (row, component) (B × K): fused (FullFusedKernel.cuh), or blocked:
//     cuBLAS P = X_c·[U_1 … U_K] (B × K·d, fp32 output; fp32 or TF32 products), X_c the centered
//     rows, U_k the precision's upper Cholesky factor (FullModelEncoding.h), then
//     full_log_density_kernel: the squared norm of each d-wide slice of P minus μ_kᵀU_k;
//  2. blocked_responsibilities_kernel (BlockedKernels.cuh): log-sum-exp, responsibilities in
//     place, Σ ln Z;
//  3. cuBLAS (fp32; TF32 in fast mode): Rᵀ·[x | 1] → Σ r x and N_k;
//  4. full_second_moment_kernel: Σ r (x − μ_k)(x − μ_k)ᵀ per component over the rows with r > 0,
//     the packed upper triangle SufficientStats uses, in fp32 over the block, added to double sums.
// Memory O(B·K·d + K·d²) blocked, O(B·K + K·d²) fused: nothing of size N × K·d exists.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace faiss_gmm::gpu::detail {

/// Rows (one per warp) and components of a CTA of full_log_density_kernel: the grid covers the
/// block's rows × components, so a block of a few hundred rows still fills the GPU.
constexpr int kDensityRows = 8;
constexpr int kDensityComponents = 64; // a multiple of 32: each round of 32 is stored together

/// Blocked path: S[b][k] = logc2_k − ½·log2(e)·Σ_j (P[b][k·d + j] − mproj[k·d + j])², b < n, k < K
/// (columns K..ldS−1 are left to the responsibility kernel). One warp per (row, component range);
/// four components at a time (independent loads in flight); the 32 values of a round are stored together.
__global__ void __launch_bounds__(256) full_log_density_kernel(const float* __restrict__ P, int n, int K, int d,
                                                               const float* __restrict__ mproj,
                                                               const float* __restrict__ logc2,
                                                               float* __restrict__ S, int ldS) {
    const int row = blockIdx.x * kDensityRows + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= n) return;
    const float* pr = P + size_t(row) * size_t(K) * size_t(d);
    float* sr = S + size_t(row) * ldS;
    float mine = 0.f; // lane l keeps the value of component (round·32 + l)
    // (a grid-stride loop over component ranges: gridDim.y stays within its limit of 65535)
    for (int k0 = blockIdx.y * kDensityComponents; k0 < K; k0 += gridDim.y * kDensityComponents) {
        const int k1 = min(K, k0 + kDensityComponents);
        for (int kb = k0; kb < k1; kb += 4) {
            float q[4] = {0.f, 0.f, 0.f, 0.f};
            for (int j = lane; j < d; j += 32) {
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    if (kb + u < k1) {
                        const float y = pr[size_t(kb + u) * d + j] - mproj[size_t(kb + u) * d + j];
                        q[u] = fmaf(y, y, q[u]);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int k = kb + u;
                if (k >= k1) break;
                float v = q[u];
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                if (lane == (k & 31)) mine = fmaf(-0.72134752044448170368f, v, logc2[k]); // ½·log2(e)
                if ((k & 31) == 31 || k == k1 - 1) {
                    const int kk = (k & ~31) + lane;
                    if (kk <= k) sr[kk] = mine;
                }
            }
        }
    }
}

/// Rows of the second-moment kernel's shared tile (4 k-steps of its m16n8k8 products).
constexpr int kMomentRows = 32;
/// Row stride of that tile (floats): the fragment loads of a warp (row 8s + t, column c + g for
/// lane 4g + t) then fall on 32 distinct banks.
constexpr int kMomentLd = 128 + 8;
/// 16 × 16 blocks of the upper triangle of a 128 × 128 second moment (36) per warp of 8, rounded up.
constexpr int kMomentBlocksPerWarp = 5;

/// Round to TF32 (nearest, ties away; the low 13 bits zero): the operand rounding the bound assumes
/// (mma reads only the top 19 bits of an unrounded operand, i.e. truncates).
__device__ __forceinline__ uint32_t to_tf32(float v) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
    return r;
}

/// c += a·b, m16n8k8, TF32 operands, fp32 accumulators (the m16n8 layout of FullFusedKernel.cuh).
__device__ __forceinline__ void mma_1688_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// acc[k·nsq + sq_index(a, b)] += Σ_rows r_bk (x_ba − μ_ka)(x_bb − μ_kb), a <= b < d <= 128:
/// one CTA per (component k = blockIdx.x, segment blockIdx.y of seg_rows rows). The CTA reads its
/// component's responsibilities 256 rows at a time (the next 256 loaded while these are listed)
/// and compacts the rows with r > 0 (ballot and a block prefix, in row order: the sums do not depend
/// on timing) into a shared list; each full tile of kMomentRows listed rows becomes z = √r·(x − μ_k)
/// in shared memory, and the 8 warps add zᵀz to the 16 × 16 blocks of the upper triangle (block
/// p = warp + 8j: at d = 128, 36 blocks, 4–5 per warp), with tensor-core products in fp32
/// registers: TF32 operands (kSplit: z = hi + lo, both TF32, hi·hi + hi·lo + lo·hi, within 2^-22 of
/// fp32's products; otherwise hi·hi, 2^-10). Rows without responsibility (most of them, for a
/// component among many) cost one read of r. (The SIMT fp32 version before this computed all
/// d × d entries with 4 FMAs per shared-memory load; it was a third of the fast mode's time at
/// 1M × 1024 × 128 on an H100: bench/results/gpu_full_covariance.md.)
/// F: centered rows, stride ldF; R: responsibilities, stride ldR. part (reproducible sums): the
/// CTA writes its fp32 sums, zeros included, to part[(blockIdx.y·K + k)·nsq + ·] instead of adding
/// them to acc (acc unused), so that the segments can be summed in a fixed order.
template <bool kSplit>
__global__ void __launch_bounds__(256) full_second_moment_kernel(const float* __restrict__ F, int ldF, int n, int d,
                                                                 const float* __restrict__ R, int ldR,
                                                                 const float* __restrict__ means, int seg_rows,
                                                                 double* __restrict__ acc, float* __restrict__ part) {
    constexpr int kOperands = kSplit ? 2 : 1;
    __shared__ uint32_t z[kOperands][kMomentRows][kMomentLd]; // TF32 bits: hi (and lo)
    __shared__ int list_row[kMomentRows + 256];
    __shared__ float list_sr[kMomentRows + 256];
    __shared__ int warp_count[8];
    const int k = blockIdx.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int begin = blockIdx.y * seg_rows;
    const int end = min(n, begin + seg_rows);
    const float* mu = means + size_t(k) * d;
    // The warp's 16 × 16 blocks (ma <= mb) of the upper triangle, numbered row by row.
    const int nb16 = (d + 15) / 16, nblocks = nb16 * (nb16 + 1) / 2;
    int bma[kMomentBlocksPerWarp], bmb[kMomentBlocksPerWarp];
#pragma unroll
    for (int j = 0; j < kMomentBlocksPerWarp; j++) {
        int p = warp + 8 * j, ma = 0;
        while (ma < nb16 && p >= nb16 - ma) p -= nb16 - ma++;
        bma[j] = ma;
        bmb[j] = ma + p;
    }
    float c[kMomentBlocksPerWarp][2][4]; // block j, its two n8 halves, the m16n8 fragment
#pragma unroll
    for (int j = 0; j < kMomentBlocksPerWarp; j++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int e = 0; e < 4; e++) c[j][h][e] = 0.f;
    // z = √r·(x − μ_k) of listed rows [first, first + count) (zeros past count and past d), then c += zᵀz.
    auto tile = [&](int first, int count) {
        for (int e = tid; e < kMomentRows * 128; e += 256) {
            const int i = e >> 7, j = e & 127;
            const float v = (i < count && j < d)
                                    ? list_sr[first + i] * (F[size_t(list_row[first + i]) * ldF + j] - mu[j])
                                    : 0.f;
            const uint32_t hi = to_tf32(v);
            z[0][i][j] = hi;
            if constexpr (kSplit) z[kOperands - 1][i][j] = to_tf32(v - __uint_as_float(hi));
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < kMomentBlocksPerWarp; j++) {
            if (warp + 8 * j >= nblocks) break; // (warp-uniform)
            const int ca = 16 * bma[j] + g, cb = 16 * bmb[j] + g;
#pragma unroll
            for (int s = 0; s < kMomentRows / 8; s++) {
                const int i0 = 8 * s + t, i1 = i0 + 4;
                // A = zᵀ (rows: columns ca, ca + 8 of z; k: tile rows), B = z (columns cb + 8h).
                uint32_t a[kOperands][4], b[kOperands][2][2];
#pragma unroll
                for (int o = 0; o < kOperands; o++) {
                    a[o][0] = z[o][i0][ca];
                    a[o][1] = z[o][i0][ca + 8];
                    a[o][2] = z[o][i1][ca];
                    a[o][3] = z[o][i1][ca + 8];
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        b[o][h][0] = z[o][i0][cb + 8 * h];
                        b[o][h][1] = z[o][i1][cb + 8 * h];
                    }
                }
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    mma_1688_tf32(c[j][h], a[0], b[0][h][0], b[0][h][1]);
                    if constexpr (kSplit) {
                        mma_1688_tf32(c[j][h], a[0], b[1][h][0], b[1][h][1]);
                        mma_1688_tf32(c[j][h], a[1], b[0][h][0], b[0][h][1]);
                    }
                }
            }
        }
        __syncthreads(); // z is rewritten by the next tile
    };
    int listed = 0; // rows in the list (block-uniform), fewer than kMomentRows between rounds
    float r_next = begin + tid < end ? R[size_t(begin + tid) * ldR + k] : 0.f;
    for (int row0 = begin; row0 < end; row0 += 256) {
        const int b = row0 + tid;
        const float r = r_next;
        if (row0 + 256 < end) r_next = b + 256 < end ? R[size_t(b + 256) * ldR + k] : 0.f;
        const bool keep = r > 0.f;
        const unsigned ballot = __ballot_sync(0xffffffffu, keep);
        if (lane == 0) warp_count[warp] = __popc(ballot);
        __syncthreads();
        int before = listed, total = listed;
        for (int w = 0; w < 8; w++) {
            before += w < warp ? warp_count[w] : 0;
            total += warp_count[w];
        }
        if (keep) {
            const int at = before + __popc(ballot & ((1u << lane) - 1u));
            list_row[at] = b;
            list_sr[at] = sqrtf(r);
        }
        __syncthreads();
        int done = 0;
        for (; total - done >= kMomentRows; done += kMomentRows) tile(done, kMomentRows);
        // the rest (< kMomentRows) to the front of the list for the next round
        const int rest = total - done;
        int moved_row = 0;
        float moved_sr = 0.f;
        if (tid < rest) {
            moved_row = list_row[done + tid];
            moved_sr = list_sr[done + tid];
        }
        __syncthreads();
        if (tid < rest) {
            list_row[tid] = moved_row;
            list_sr[tid] = moved_sr;
        }
        __syncthreads();
        listed = rest;
    }
    if (listed > 0) tile(0, listed);
    const int64_t nsq = int64_t(d) * (d + 1) / 2;
    double* out = acc + size_t(k) * nsq;
    float* mine = part ? part + (size_t(blockIdx.y) * gridDim.x + k) * nsq : nullptr;
#pragma unroll
    for (int j = 0; j < kMomentBlocksPerWarp; j++) {
        if (warp + 8 * j >= nblocks) break;
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                // the m16n8 layout: rows g, g + 8; columns 2t, 2t + 1
                const int a = 16 * bma[j] + g + 8 * (e >> 1), bcol = 16 * bmb[j] + 8 * h + 2 * t + (e & 1);
                // packed upper triangle, row by row (SufficientStats::sq_index)
                if (a < d && bcol < d && a <= bcol) {
                    const int64_t at = int64_t(a) * d - int64_t(a) * (a - 1) / 2 + (bcol - a);
                    if (mine) mine[at] = c[j][h][e];
                    else if (c[j][h][e] != 0.f) atomicAdd(out + at, double(c[j][h][e]));
                }
            }
        }
    }
}

} // namespace faiss_gmm::gpu::detail
