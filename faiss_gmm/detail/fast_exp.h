// exp(x) for x <= 0 in float, written so that GCC vectorizes loops calling it
// (no library call, no branches). Cephes-style: x = n·ln2 + r, |r| <= ln2/2,
// exp(r) by a degree-6 polynomial, 2^n by building the float's exponent bits.
// Max relative error about 2 ulp on [-87, 0]; below -87 it returns 0.
#pragma once

#include <cstdint>

#include <immintrin.h>

namespace faiss_gmm::detail {

// always_inline so that it is inlined into (and vectorized with) the AVX2
// builds of its callers too.
inline __attribute__((always_inline)) float exp_nonpositive(float x) {
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
    const float scale = __builtin_bit_cast(float, bits);
    return underflow ? 0.0f : p * scale;
}

/// e[k] = exp(s[k] − shift), or 0 where s[k] − shift < drop (drop > −87), and
/// returns Σ e. Scalar version of exp_shifted_sum_avx2.
inline float exp_shifted_sum(const float* s, float shift, float drop, int64_t K, float* e) {
    float sum = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        const float t = s[k] - shift;
        const float ex = t < drop ? 0.0f : exp_nonpositive(t);
        e[k] = ex;
        sum += ex;
    }
    return sum;
}

/// exp_shifted_sum with AVX2+FMA, 8 lanes at a time: the same Cephes reduction
/// and polynomial as exp_nonpositive. Written with intrinsics because GCC will
/// not if-convert the scalar version's clamps (they "could trap" under the
/// default -ftrapping-math), so it never vectorizes it.
__attribute__((target("avx2,fma"))) inline float exp_shifted_sum_avx2(const float* s, float shift, float drop,
                                                                      int64_t K, float* e) {
    const __m256 vshift = _mm256_set1_ps(shift), vdrop = _mm256_set1_ps(drop);
    const __m256 vmin = _mm256_set1_ps(-87.0f), vlog2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 vhalf = _mm256_set1_ps(0.5f), vone = _mm256_set1_ps(1.0f);
    const __m256 vln2hi = _mm256_set1_ps(0.693359375f), vln2lo = _mm256_set1_ps(-2.12194440e-4f);
    __m256 vsum = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        const __m256 t = _mm256_sub_ps(_mm256_loadu_ps(s + k), vshift);
        const __m256 keep = _mm256_cmp_ps(t, vdrop, _CMP_GE_OQ);
        const __m256 x = _mm256_max_ps(t, vmin);
        // n = trunc(x·log2e − 0.5), as exp_nonpositive rounds (x ≤ 0).
        const __m256 fn = _mm256_round_ps(_mm256_fmsub_ps(x, vlog2e, vhalf), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __m256 r = _mm256_fnmadd_ps(fn, vln2hi, x);
        r = _mm256_fnmadd_ps(fn, vln2lo, r);
        __m256 p = _mm256_set1_ps(1.9875691500e-4f);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
        p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), vone);
        const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fn), _mm256_set1_epi32(127)), 23);
        const __m256 ex = _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), keep);
        _mm256_storeu_ps(e + k, ex);
        vsum = _mm256_add_ps(vsum, ex);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(vsum), _mm256_extractf128_ps(vsum, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float sum = _mm_cvtss_f32(h);
    return sum + exp_shifted_sum(s + k, shift, drop, K - k, e + k);
}

} // namespace faiss_gmm::detail
