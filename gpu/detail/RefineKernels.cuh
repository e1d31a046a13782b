// Kernels of the Blocked E-step's refinement (issue 13, exact log-densities), run only for a
// model with narrow components (faiss_gmm/ExactLogDensity.h, EStepCudaOptions::exact_log_densities):
//  * blocked_refine_kernel, between the logits GEMM and the responsibilities kernel: turns the
//    block's GEMM products into full logits and recomputes in double, in the rows' own frame,
//    the (row, component) pairs whose float32 value may have cancelled — the CPU backend's test
//    (may_have_cancelled, within kRefineWindow of the row's best) on every component;
//  * narrow_sums_kernel + sum_segments_kernel, after the responsibilities: the narrow components'
//    Σ r, Σ r (x − m) and Σ r (x − m)² (m = μ + c) directly in double, which the expansion
//    Σ r‖x‖² − 2μ·Σ r x + N‖μ‖² of the GEMM's sums would cancel; fixed order (deterministic).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "faiss_gmm/ExactLogDensity.h"

namespace faiss_gmm::gpu::detail {

/// Device copies of ExactLogDensity's arrays (BlockedEStep owns them).
struct RefineArgs {
    const float* err_slope;      // K: bound of the float32 log-density error, nats per ‖x − c‖²
    const float* err_offset;     // K
    const float* quad_const;     // K: term = quad_const − log p (nats)
    const double* exact_const;   // K
    const double* exact_means;   // K × d: μ + c
    const double* exact_inv_var; // K (spherical) or K × d
    int spherical;
};

constexpr float kRefineLn2 = 0.69314718055994530942f;
constexpr double kRefineLog2e = 1.4426950408889634074;

__device__ inline double warp_sum_double(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

/// In place: S[b][k] (GEMM products) → the full logit v = S + acoef_k·xx_b + bias_k in log2
/// units, computed as blocked_responsibilities_kernel computes it, then the pairs that may have
/// cancelled (err = slope·‖x − c‖² + offset, term = quad_const − v·ln 2, in nats) and may carry
/// responsibility (v·ln 2 + err ≥ the row's max of (v·ln 2 − err) − kRefineWindow) replaced by
/// log2 e·(exact_const − ½ Σ_j (x_j − m_kj)²/σ²_kj) in double from the raw row x. The
/// responsibilities kernel then runs with zero bias and no ‖x‖² term. One warp per row.
template <typename Tin>
__global__ void __launch_bounds__(256) blocked_refine_kernel(float* __restrict__ S, int n, int K, int ldS,
                                                             const float* __restrict__ bias,
                                                             const float* __restrict__ acoef,
                                                             const float* __restrict__ F, int ldF, int xx_col,
                                                             const Tin* __restrict__ x, int d, RefineArgs ra) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int row = blockIdx.x * 8 + warp;
    if (row >= n) return; // uniform per warp
    float* sr = S + size_t(row) * ldS;
    const float* fr = F + size_t(row) * ldF;
    // ‖x − c‖² for the bound: the features' column (spherical), or the sum over x − c (diagonal).
    float xx = 0.f;
    if (xx_col >= 0) {
        xx = fr[xx_col];
    } else {
        for (int j = lane; j < d; j += 32) xx = fmaf(fr[j], fr[j], xx);
        for (int off = 16; off > 0; off >>= 1) xx += __shfl_xor_sync(0xffffffffu, xx, off);
    }
    const float xx_logit = xx_col >= 0 ? xx : 0.f;
    float lower = -INFINITY;
    bool cancelled = false;
    for (int k = lane; k < K; k += 32) {
        const float v = sr[k] + fmaf(acoef[k], xx_logit, bias[k]);
        sr[k] = v;
        const float s = v * kRefineLn2, err = fmaf(ra.err_slope[k], xx, ra.err_offset[k]);
        cancelled |= may_have_cancelled(err, ra.quad_const[k] - s);
        lower = fmaxf(lower, s - err);
    }
    if (!__any_sync(0xffffffffu, cancelled)) return;
    for (int off = 16; off > 0; off >>= 1) lower = fmaxf(lower, __shfl_xor_sync(0xffffffffu, lower, off));
    const Tin* xr = x + size_t(row) * d;
    for (int base = 0; base < K; base += 32) {
        const int k = base + lane;
        bool refine = false;
        if (k < K) {
            const float s = sr[k] * kRefineLn2, err = fmaf(ra.err_slope[k], xx, ra.err_offset[k]);
            refine = may_have_cancelled(err, ra.quad_const[k] - s) && s + err >= lower - kRefineWindow;
        }
        for (unsigned mask = __ballot_sync(0xffffffffu, refine); mask != 0; mask &= mask - 1) {
            const int kk = base + __ffs(int(mask)) - 1;
            const double* m = ra.exact_means + size_t(kk) * d;
            const double* inv = ra.exact_inv_var + (ra.spherical ? size_t(kk) : size_t(kk) * d);
            double q = 0;
            for (int j = lane; j < d; j += 32) {
                const double diff = double(xr[j]) - m[j];
                q += diff * diff * (ra.spherical ? 1.0 : inv[j]);
            }
            q = warp_sum_double(q);
            if (ra.spherical) q *= inv[0];
            if (lane == 0) sr[kk] = float((ra.exact_const[kk] - 0.5 * q) * kRefineLog2e);
        }
    }
}

/// Per narrow component f (component narrow[f]) and segment of seg_rows rows of the block: Σ r,
/// Σ r (x − m) and Σ r (x − m)² per dimension in double, m = μ + c, into
/// part[(seg·F + f)·(2d + 1) + {0..d−1: Σ r (x − m), d..2d−1: Σ r (x − m)², 2d: Σ r}]. R: the
/// block's responsibilities (ldS per row); rows with r = 0 (most, for a narrow component) are
/// skipped. Each thread sums its dimensions over the segment's rows in order.
constexpr int kNarrowThreads = 128;
template <typename Tin>
__global__ void __launch_bounds__(kNarrowThreads) narrow_sums_kernel(const float* __restrict__ R, int n, int ldS,
                                                                     const Tin* __restrict__ x, int d,
                                                                     const int* __restrict__ narrow, int F,
                                                                     const double* __restrict__ exact_means,
                                                                     int seg_rows, double* __restrict__ part) {
    __shared__ float r_tile[kNarrowThreads];
    const int f = blockIdx.x, seg = blockIdx.y, k = narrow[f];
    const int i0 = seg * seg_rows, i1 = min(n, i0 + seg_rows);
    double* out = part + (size_t(seg) * F + f) * size_t(2 * d + 1);
    const double* m = exact_means + size_t(k) * d;
    for (int j0 = 0; j0 < d; j0 += kNarrowThreads) {
        const int j = j0 + threadIdx.x;
        const double mj = j < d ? m[j] : 0.0;
        double ax = 0, aq = 0, ar = 0;
        for (int t0 = i0; t0 < i1; t0 += kNarrowThreads) {
            __syncthreads();
            r_tile[threadIdx.x] = t0 + int(threadIdx.x) < i1 ? R[size_t(t0 + threadIdx.x) * ldS + k] : 0.f;
            __syncthreads();
            const int count = min(kNarrowThreads, i1 - t0);
            for (int t = 0; t < count; t++) {
                const float r = r_tile[t];
                if (r > 0.f) {
                    ar += r;
                    if (j < d) {
                        const double diff = double(x[size_t(t0 + t) * d + j]) - mj;
                        ax += r * diff;
                        aq += r * diff * diff;
                    }
                }
            }
        }
        if (j < d) {
            out[j] = ax;
            out[d + j] = aq;
        }
        if (j0 == 0 && threadIdx.x == 0) out[2 * d] = ar;
    }
}

/// acc[e] += Σ_seg part[seg·count + e], the segments in order.
__global__ void sum_segments_kernel(const double* __restrict__ part, int nseg, size_t count,
                                   double* __restrict__ acc) {
    const size_t e = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
    if (e >= count) return;
    double s = 0;
    for (int g = 0; g < nseg; g++) s += part[size_t(g) * count + e];
    acc[e] += s;
}

} // namespace faiss_gmm::gpu::detail
