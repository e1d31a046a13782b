// detail::exp_nonpositive and exp_shifted_sum_avx2 (the E-step's exp) against
// std::exp in double on every float of [-87, -2^-25] and densely below: the
// relative error the E-step's error bound (error_bounds.h: kFastExpRelError)
// relies on is then a checked property of the function, not an estimate.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "error_bounds.h"
#include "faiss_gmm/detail/cpu_features.h"
#include "faiss_gmm/detail/fast_exp.h"

using namespace faiss_gmm;

namespace {

/// Calls visit(chunk, count) on the floats t of [-87, 0], in chunks of up to
/// kChunk: every float with |t| >= 2^-25 (every t the polynomial and the 2^n
/// scaling really act on: 268M values), and every 61st bit pattern below it,
/// 0 included (there exp(t) is within 2^-25 of 1 and the function returns 1 or
/// its lower neighbour: these are sampled, not all 0.9G of them checked).
constexpr int64_t kChunk = 4096;
template <class Visit>
void for_floats_of_minus_87_to_0(Visit visit) {
    const uint32_t tiny = __builtin_bit_cast(uint32_t, 0x1p-25f), last = __builtin_bit_cast(uint32_t, 87.0f);
    std::vector<float> chunk(kChunk);
    int64_t count = 0;
    auto emit = [&](uint32_t bits) {
        chunk[size_t(count++)] = -__builtin_bit_cast(float, bits);
        if (count == kChunk) {
            visit(chunk.data(), count);
            count = 0;
        }
    };
    for (uint32_t b = 0; b < tiny; b += 61) emit(b);
    for (uint32_t b = tiny; b <= last; b++) emit(b);
    if (count > 0) visit(chunk.data(), count);
}

/// max |got − exp(t)| / exp(t) over the chunk, exp in double (its own error,
/// below 2^-52 relative, is negligible beside the 2^-24 scale checked here).
double max_rel_error(const float* t, const float* got, int64_t count) {
    double worst = 0;
    for (int64_t i = 0; i < count; i++) {
        const double want = std::exp(double(t[i]));
        worst = std::max(worst, std::fabs(double(got[i]) - want) / want);
    }
    return worst;
}

} // namespace

TEST(FastExp, ScalarWithinStatedErrorOnEveryFloat) {
    double worst = 0;
    std::vector<float> got(kChunk);
    for_floats_of_minus_87_to_0([&](const float* t, int64_t count) {
        for (int64_t i = 0; i < count; i++) got[size_t(i)] = detail::exp_nonpositive(t[i]);
        worst = std::max(worst, max_rel_error(t, got.data(), count));
    });
    EXPECT_LE(worst, faiss_gmm::testing::kFastExpRelError);
}

TEST(FastExp, Avx2WithinStatedErrorOnEveryFloat) {
    if (!detail::cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU: the E-step uses the scalar exp";
    double worst = 0;
    std::vector<float> got(kChunk);
    for_floats_of_minus_87_to_0([&](const float* t, int64_t count) {
        // shift 0, drop −87: every t of the range is kept (t >= drop).
        detail::exp_shifted_sum_avx2(t, 0.0f, -87.0f, count, got.data());
        worst = std::max(worst, max_rel_error(t, got.data(), count));
    });
    EXPECT_LE(worst, faiss_gmm::testing::kFastExpRelError);
}
