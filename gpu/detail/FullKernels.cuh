// Kernels of the full-covariance E-step (FullEStep.h, issue 17). Per block of B rows:
//  1. the log2-density of each (row, component) (B × K): fused (FullFusedKernel.cuh), or blocked:
//     cuBLAS P = X_c·[U_1 … U_K] (B × K·d, fp32 output; fp32 or TF32 products), X_c the centered
//     rows, U_k the precision's upper Cholesky factor (FullModelEncoding.h), then
//     full_log_density_kernel: the squared norm of each d-wide slice of P minus μ_kᵀU_k;
//  2. blocked_responsibilities_kernel (BlockedKernels.cuh): log-sum-exp, responsibilities in
//     place, Σ ln Z;
//  3. cuBLAS (fp32): Rᵀ·[x | 1] → Σ r x and N_k;
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

/// Rows of the second-moment kernel's shared tile.
constexpr int kMomentRows = 32;

/// acc[k·nsq + sq_index(a, b)] += Σ_rows r_bk (x_ba − μ_ka)(x_bb − μ_kb), a <= b < d <= 128:
/// one CTA per (component k = blockIdx.x, segment blockIdx.y of seg_rows rows). The CTA reads its
/// component's responsibilities 256 rows at a time and compacts the rows with r > 0 (ballot and a
/// block prefix, in row order: the sums do not depend on timing) into a shared list; each full
/// tile of kMomentRows listed rows becomes z = √r·(x − μ_k) in shared memory, and each thread adds
/// an 8 × 8 piece of zᵀz (rows ty + 16p, columns tx + 16q) to fp32 registers. Rows without
/// responsibility (most of them, for a component among many) cost one read of r.
/// F: centered rows, stride ldF; R: responsibilities, stride ldR. part (reproducible sums): the
/// CTA writes its fp32 sums, zeros included, to part[(blockIdx.y·K + k)·nsq + ·] instead of adding
/// them to acc (acc unused), so that the segments can be summed in a fixed order.
__global__ void __launch_bounds__(256) full_second_moment_kernel(const float* __restrict__ F, int ldF, int n, int d,
                                                                 const float* __restrict__ R, int ldR,
                                                                 const float* __restrict__ means, int seg_rows,
                                                                 double* __restrict__ acc, float* __restrict__ part) {
    __shared__ float z[kMomentRows][128];
    __shared__ int list_row[kMomentRows + 256];
    __shared__ float list_sr[kMomentRows + 256];
    __shared__ int warp_count[8];
    const int k = blockIdx.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tx = tid & 15, ty = tid >> 4;
    const int begin = blockIdx.y * seg_rows;
    const int end = min(n, begin + seg_rows);
    const float* mu = means + size_t(k) * d;
    float c[8][8];
#pragma unroll
    for (int p = 0; p < 8; p++)
#pragma unroll
        for (int q = 0; q < 8; q++) c[p][q] = 0.f;
    // z = √r·(x − μ_k) of listed rows [first, first + count) (zeros past count), then c += zᵀz.
    auto tile = [&](int first, int count) {
        for (int e = tid; e < kMomentRows * 128; e += 256) {
            const int i = e >> 7, j = e & 127;
            z[i][j] = (i < count && j < d) ? list_sr[first + i] * (F[size_t(list_row[first + i]) * ldF + j] - mu[j])
                                           : 0.f;
        }
        __syncthreads();
#pragma unroll 4
        for (int i = 0; i < kMomentRows; i++) {
            float a[8], bb[8];
#pragma unroll
            for (int p = 0; p < 8; p++) a[p] = z[i][ty + 16 * p];
#pragma unroll
            for (int q = 0; q < 8; q++) bb[q] = z[i][tx + 16 * q];
#pragma unroll
            for (int p = 0; p < 8; p++)
#pragma unroll
                for (int q = 0; q < 8; q++) c[p][q] = fmaf(a[p], bb[q], c[p][q]);
        }
        __syncthreads(); // z is rewritten by the next tile
    };
    int listed = 0; // rows in the list (block-uniform), fewer than kMomentRows between rounds
    for (int row0 = begin; row0 < end; row0 += 256) {
        const int b = row0 + tid;
        const float r = b < end ? R[size_t(b) * ldR + k] : 0.f;
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
    for (int p = 0; p < 8; p++) {
        const int a = ty + 16 * p;
#pragma unroll
        for (int q = 0; q < 8; q++) {
            const int b = tx + 16 * q;
            // packed upper triangle, row by row (SufficientStats::sq_index)
            if (a < d && b < d && a <= b) {
                const int64_t at = int64_t(a) * d - int64_t(a) * (a - 1) / 2 + (b - a);
                if (mine) mine[at] = c[p][q];
                else if (c[p][q] != 0.f) atomicAdd(out + at, double(c[p][q]));
            }
        }
    }
}

} // namespace faiss_gmm::gpu::detail
