// exp(x) for x <= 0 in float, written so that GCC vectorizes loops calling it
// (no library call, no branches). Cephes-style: x = n·ln2 + r, |r| <= ln2/2,
// exp(r) by a degree-6 polynomial, 2^n by building the float's exponent bits.
// Max relative error about 2 ulp on [-87, 0]; below -87 it returns 0.
#pragma once

#include <cstdint>
#include <cstring>

namespace faiss_gmm::detail {

inline float exp_nonpositive(float x) {
    const float kLog2e = 1.44269504088896341f;
    const float kLn2Hi = 0.693359375f;
    const float kLn2Lo = -2.12194440e-4f;
    const bool underflow = x < -87.0f;
    x = x < -87.0f ? -87.0f : x;
    // Round to nearest by adding 0.5 and truncating toward zero (x·log2e <= 0).
    float fn = x * kLog2e - 0.5f;
    int32_t n = int32_t(fn);
    fn = float(n);
    float r = x - fn * kLn2Hi;
    r = r - fn * kLn2Lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (n + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return underflow ? 0.0f : p * scale;
}

} // namespace faiss_gmm::detail
