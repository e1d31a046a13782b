// Kernels of the blocked E-step (EStepCudaOptions::algorithm = Blocked): the
// GPU twin of the CPU backend. Per block of B rows, cuBLAS computes the logits
// S = F·Wᵀ (B × K, fp32 output; fp32, TF32 or bf16 products), one kernel turns
// each row of S into responsibilities in place (log-sum-exp, exp) and adds
// log Z to the log-likelihood, and cuBLAS computes Rᵀ·[x | x² | 1 | ‖x‖²], whose
// columns hold Σ r x, Σ r x², N_k and Σ r ‖x‖²; that product is added to double
// accumulators. Memory is O(B·K + K·d) with B chosen so that B·K stays bounded:
// nothing of size N×K exists.
#pragma once
// (The non-template kernels are static: BlockedEStep.cu and FullEStep.cu both include this file.)

#include <cuda_runtime.h>

#include <cstdint>

namespace faiss_gmm::gpu::detail {

/// Rows → F2 = [x − c | (x − c)² (diagonal) | 1 | ‖x − c‖² (spherical)], fp32,
/// row stride ld (≥ the used width, padding zeroed). One warp per row.
template <typename Tin>
__global__ void __launch_bounds__(256) blocked_features_kernel(const Tin* __restrict__ x, int n, int d,
                                                               const float* __restrict__ center, int diag, int ld,
                                                               float* __restrict__ F) {
    const int row = blockIdx.x * 8 + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= n) return;
    const Tin* xr = x + size_t(row) * d;
    float* fr = F + size_t(row) * ld;
    float ss = 0.f;
    for (int j = lane; j < d; j += 32) {
        const float y = float(xr[j]) - center[j];
        fr[j] = y;
        if (diag) fr[d + j] = y * y;
        ss = fmaf(y, y, ss);
    }
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    const int used = diag ? 2 * d : d;
    for (int j = used + lane; j < ld; j += 32) {
        float v = 0.f;
        if (j == used) v = 1.f;
        if (!diag && j == used + 1) v = ss;
        fr[j] = v;
    }
}

/// In place: S[b][k] (logits without bias, natural-log weights folded to log2)
/// → r[b][k] = exp2(S + bias_k + acoef_k·xx_b − log2 Z_b). One warp per row,
/// two reads of the row (online max/sum, then the exponentials); adds Σ ln Z.
/// xx_b is read from column xx_col of F (spherical) or is 0 (acoef = 0). ll_slots (reproducible
/// sums): each thread block writes its Σ ln Z to ll_slots[blockIdx.x] instead of adding it.
static __global__ void __launch_bounds__(256) blocked_responsibilities_kernel(float* __restrict__ S, int n, int K, int ldS,
                                                                       const float* __restrict__ bias,
                                                                       const float* __restrict__ acoef,
                                                                       const float* __restrict__ F, int ldF,
                                                                       int xx_col, double* __restrict__ loglik,
                                                                       double* __restrict__ ll_slots = nullptr) {
    __shared__ double red[8];
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int row = blockIdx.x * 8 + warp;
    double ll = 0;
    if (row < n) {
        float* sr = S + size_t(row) * ldS;
        const float xx = xx_col >= 0 ? F[size_t(row) * ldF + xx_col] : 0.f;
        float m = -1e30f, s = 0.f;
        for (int k = lane; k < K; k += 32) {
            const float v = sr[k] + fmaf(acoef[k], xx, bias[k]);
            if (v > m) {
                s = s * exp2f(m - v) + 1.f;
                m = v;
            } else {
                s += exp2f(v - m);
            }
        }
        for (int off = 16; off > 0; off >>= 1) {
            const float mo = __shfl_xor_sync(0xffffffffu, m, off);
            const float so = __shfl_xor_sync(0xffffffffu, s, off);
            const float mn = fmaxf(m, mo);
            s = s * exp2f(m - mn) + so * exp2f(mo - mn);
            m = mn;
        }
        const float lz = m + log2f(s);
        for (int k = lane; k < K; k += 32) sr[k] = exp2f(sr[k] + fmaf(acoef[k], xx, bias[k]) - lz);
        for (int k = K + lane; k < ldS; k += 32) sr[k] = 0.f; // padding columns take no mass
        ll = double(lz) * 0.69314718055994530942;
    }
    if (lane == 0) red[warp] = ll;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < 8; w++) t += red[w];
        if (ll_slots) {
            ll_slots[blockIdx.x] = t;
        } else {
            atomicAdd(loglik, t);
        }
    }
}

/// acc[i] += tmp[i] (double accumulation of the per-block fp32 products).
static __global__ void add_to_double_kernel(const float* __restrict__ tmp, double* __restrict__ acc, size_t count) {
    const size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
    if (i < count) acc[i] += double(tmp[i]);
}

} // namespace faiss_gmm::gpu::detail
