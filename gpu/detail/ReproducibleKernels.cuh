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
        if (l[j] != 0) atomicAdd(values + size_t(j) * grid.nvalues + i, (unsigned long long)l[j]);
    }
}

} // namespace faiss_gmm::gpu::detail
