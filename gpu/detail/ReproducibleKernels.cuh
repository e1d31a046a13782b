// Device side of the CUDA E-step's reproducible sums (ReproducibleLimbs.h has the design):
// a value on the caller's grids as integers (fixed_limbs: the device format of LimbFormat.h,
// truncated toward zero at 2^-64 of the scale; deposit_exact: ExactSums' limbs, exact), added with
// integer atomics.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/detail/ReproducibleLimbs.h"

namespace faiss_gmm::gpu::detail {

/// v / scale on the device grid (LimbFormat.h: grid_limbs); a partial the grid cannot hold (the
/// caller's row bounds do not hold for it) sets the grid's overflow flag and adds nothing.
__device__ __forceinline__ void fixed_limbs(const LimbGrid& grid, double v, double inv_scale,
                                            long long l[kDeviceLimbs]) {
    if (!grid_limbs(v * inv_scale, l)) atomicOr(grid.overflow, 1ull);
}

/// Adds a finite double exactly to ExactSums limbs (atomically: integer adds commute), as
/// ExactSums::add places it: its 53-bit mantissa shifted to the limb of its exponent.
__device__ __forceinline__ void deposit_exact(double v, unsigned long long* limbs) {
    if (v == 0) return;
    constexpr double kTwo32 = 4294967296.0, kTwoM32 = 1.0 / 4294967296.0;
    int e = 0;
    const double m = frexp(v, &e);
    const double mantissa = ldexp(m, 53);
    const int p = e - 53 - ExactSums::kMinExponent;
    const int limb = p >> 5;
    const double x = ldexp(mantissa, p & 31);
    const double a = trunc(x * kTwoM32);
    const double b = trunc(a * kTwoM32);
    atomicAdd(limbs + limb, (unsigned long long)(long long)(x - a * kTwo32));
    atomicAdd(limbs + limb + 1, (unsigned long long)(long long)(a - b * kTwo32));
    atomicAdd(limbs + limb + 2, (unsigned long long)(long long)b);
}

/// Adds one value's limbs (accumulated in registers: sums of fixed_limbs) to the worker's
/// accumulators atomically (ReproducibleLimbs::values()).
__device__ __forceinline__ void add_value_limbs(const LimbGrid& grid, unsigned long long* values, int64_t i,
                                                const long long l[kDeviceLimbs]) {
#pragma unroll
    for (int j = 0; j < kDeviceLimbs; j++) {
        if (l[j] != 0) atomicAdd(values + size_t(j) * grid.accumulators() + i, (unsigned long long)l[j]);
    }
}

// ---- The statistics of one Hopper block from its raw sums (HopperEStep), computed the same way by
// the kernels' epilogue (add_block_limbs) and by block_limbs_kernel (HopperEStep.cu), so that both
// give the same bits: every double operation is written out (no contraction into FMAs left to
// the compiler), and the spherical cross term is summed in the epilogue's order (cross_step over a
// lane's columns, then quad_sum).

/// Σ r (x − μ)² about the mean from the raw sums: raw_sq·q_scale − 2·cross + nk·mu_sq, rounded
/// step by step as written (cross = μ·Σ r x, mu_sq = ‖μ‖²; diagonal: per feature).
__device__ __forceinline__ double moment_about_mean(double raw_sq, double q_scale, double cross, double nk,
                                                    double mu_sq) {
    return __dadd_rn(__dsub_rn(__dmul_rn(raw_sq, q_scale), 2.0 * cross), __dmul_rn(nk, mu_sq));
}

/// One column's term of the spherical cross term μ·Σ r x (f = Σ r x_j scaled).
__device__ __forceinline__ double cross_step(double s, float mu, double f) { return __fma_rn(double(mu), f, s); }

/// Σ over the 4 lanes of a quad (lanes 4q .. 4q + 3): xor 1, then xor 2, so every lane of the
/// quad gets the same bits. All 32 lanes call it.
__device__ __forceinline__ double quad_sum(double s) {
    s = __dadd_rn(s, __shfl_xor_sync(0xffffffffu, s, 1));
    return __dadd_rn(s, __shfl_xor_sync(0xffffffffu, s, 2));
}

/// The epilogue of a reproducible block in the Hopper kernels (BlockLimbArgs::values set): this
/// thread's block sums, in the kernels' wgmma accumulator layout — acc2[4j + 2h + e] is component
/// comp0 + 8h, column 8j + 2t + e, t = lane % 4 (columns [s_x·Σ r x (DP) | N_k | s_q·Σ r ‖x‖² | 0…],
/// diagonal [s_x·Σ r x (DP/2) | s_q·Σ r x² (DP/2) | N_k | 0…], DP = FW − 8) — become the block's
/// statistics (Σ r x, N_k, second moments about μ_k, as finalize_sums_kernel computes them for
/// a whole call), cut into the device integers (fixed_limbs) and added atomically at their
/// hopper_limb_slot. Every lane of the warp calls it (quad shuffles); the quad of lanes t = 0..3
/// holds one component pair.
/// (Not inlined, on a copy of the sums in local memory: inlined beside the kernels' live
/// accumulators, its double arithmetic made ptxas spill, 288 bytes per thread in the fast kernel
/// at DP = 128 and 1.5 KB in the wide one at DP = 256, against 0 and 24 bytes with the call; the
/// call costs a few hundred bytes of local memory traffic per thread once per 4096-row block.)
template <int FW>
__device__ __noinline__ void add_block_limbs_of(const float* acc2, const BlockLimbArgs& L, int comp0) {
    constexpr int DP = FW - 8;
    static_assert(DP % 16 == 0, "the diagonal's x² columns start on a column group");
    const int lane = threadIdx.x & 31, t = lane & 3, d = L.d;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int k = comp0 + 8 * h;
        const bool live = k < L.K; // (padding components of the last tile: nothing to add)
        const int64_t kd = int64_t(live ? k : 0) * d;
        // N_k: column DP, held by the quad's lane t = 0.
        const double nk = __shfl_sync(0xffffffffu, __dmul_rn(double(acc2[DP / 2 + 2 * h]), L.n_scale), lane & ~3);
        double cross = 0;
        if (!L.diag) {
#pragma unroll
            for (int j = 0; j < DP / 8; j++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int col = 8 * j + 2 * t + e;
                    if (col < d) cross = cross_step(cross, L.mu[kd + col], __dmul_rn(double(acc2[4 * j + 2 * h + e]), L.x_scale));
                }
            }
            cross = quad_sum(cross);
        }
        if (!live) continue; // (after the shuffles: every lane takes part in them)
        const int64_t slot0 = hopper_limb_slot(k, 2 * t, FW); // column 8j + 2t + e: + (4j + e)·32
#pragma unroll
        for (int j = 0; j < FW / 8; j++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int col = 8 * j + 2 * t + e;
                const double raw = double(acc2[4 * j + 2 * h + e]);
                double v, inv;
                if (col < d) { // Σ r x_j
                    v = __dmul_rn(raw, L.x_scale);
                    inv = L.grid.inv_x;
                } else if (col == DP) {
                    v = nk;
                    inv = L.grid.inv_nk;
                } else if (L.diag && j >= DP / 16 && col < DP / 2 + d) { // Σ r (x_j − μ_j)², j = col − DP/2
                    const float mu = L.mu[kd + col - DP / 2];
                    const double f = __dmul_rn(double(acc2[4 * (j >= DP / 16 ? j - DP / 16 : 0) + 2 * h + e]), L.x_scale);
                    v = moment_about_mean(raw, L.q_scale, __dmul_rn(double(mu), f), nk, __dmul_rn(double(mu), double(mu)));
                    inv = L.grid.inv_sq;
                } else if (!L.diag && col == DP + 1) { // Σ r ‖x − μ_k‖²
                    v = moment_about_mean(raw, L.q_scale, cross, nk, L.mu_sq[k]);
                    inv = L.grid.inv_sq;
                } else {
                    continue; // padding columns
                }
                long long l[kDeviceLimbs];
                fixed_limbs(L.grid, v, inv, l);
                add_value_limbs(L.grid, L.values, slot0 + (4 * j + e) * 32, l);
            }
        }
    }
}

/// What the kernels call once block sums are complete in acc2 (their GEMM2 accumulator, this
/// thread's components comp0 and comp0 + 8): add_block_limbs_of on a copy.
template <int FW>
__device__ __forceinline__ void add_block_limbs(const float (&acc2)[FW / 2], const BlockLimbArgs& L, int comp0) {
    float sums[FW / 2];
#pragma unroll
    for (int i = 0; i < FW / 2; i++) sums[i] = acc2[i];
    add_block_limbs_of<FW>(sums, L, comp0);
}

} // namespace faiss_gmm::gpu::detail
