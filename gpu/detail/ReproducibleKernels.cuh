// Device side of the CUDA E-step's reproducible sums (ReproducibleLimbs.h has the design):
// a value on the caller's grids as integers (fixed_limbs: the device format, rounded down to
// 2^-64 of the scale; deposit_exact: ExactSums' limbs, exact), added with integer atomics.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/detail/ReproducibleLimbs.h"

namespace faiss_gmm::gpu::detail {

/// v / scale on the device grid of ReproducibleLimbs.h: l[0] = floor(q·2^32), l[1] = the next 32
/// bits (in [0, 2^32)), for q = v / scale (exact: scales are powers of two; q·2^32 − l[0] and its
/// scaling too, so the result is v / scale rounded down to a multiple of 2^-64). A partial that
/// cannot be on the grid (|q| ≥ kMaxPartialOverScale, or not finite: the caller's row bounds do
/// not hold) sets the grid's overflow flag and adds nothing.
__device__ __forceinline__ void fixed_limbs(const LimbGrid& grid, double v, double inv_scale,
                                            long long l[kDeviceLimbs]) {
    constexpr double kTwo32 = 4294967296.0;
    const double q = v * inv_scale;
    if (!(fabs(q) < kMaxPartialOverScale)) { // (NaN too)
        atomicOr(grid.overflow, 1ull);
        l[0] = l[1] = 0;
        return;
    }
    const double h = floor(q * kTwo32);
    l[0] = (long long)h;
    l[1] = (long long)floor((q * kTwo32 - h) * kTwo32);
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
        if (l[j] != 0) atomicAdd(values + size_t(j) * grid.nvalues + i, (unsigned long long)l[j]);
    }
}

} // namespace faiss_gmm::gpu::detail
