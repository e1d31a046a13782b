// Device side of the CUDA E-step's reproducible sums (ReproducibleLimbs.h has the design):
// a value cut into the limbs of the caller's grids, exactly as the CPU's FixedPointSums and
// ExactSums cut it, so that the GPU's limbs and the CPU's add up to the same integers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/detail/ReproducibleLimbs.h"

namespace faiss_gmm::gpu::detail {

/// v / scale cut into FixedPointSums' limbs: l0 = trunc(q), then 32 bits per limb, truncated
/// below 2^-96 (the same operations as FixedPointSums::add_segment, so the same integers).
__device__ __forceinline__ void fixed_limbs(double v, double inv_scale, long long l[kValueLimbs]) {
    constexpr double kTwo32 = 4294967296.0;
    double q = v * inv_scale;
    double t = trunc(q);
    l[0] = (long long)t;
    q = (q - t) * kTwo32;
    t = trunc(q);
    l[1] = (long long)t;
    q = (q - t) * kTwo32;
    t = trunc(q);
    l[2] = (long long)t;
    q = (q - t) * kTwo32;
    l[3] = (long long)trunc(q);
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

/// Adds one value's limbs (accumulated in registers) to the worker's limbs atomically.
__device__ __forceinline__ void add_value_limbs(unsigned long long* values, int64_t nvalues, int64_t i,
                                                const long long l[kValueLimbs]) {
#pragma unroll
    for (int j = 0; j < kValueLimbs; j++) {
        if (l[j] != 0) atomicAdd(values + size_t(j) * nvalues + i, (unsigned long long)l[j]);
    }
}

} // namespace faiss_gmm::gpu::detail
