// Host-only encoding of a full-covariance model for the CUDA E-step (gpu/detail/FullModelEncoding.h),
// without a GPU (runs in CI): the K·d-wide factor matrix and μ_kᵀU_k give GmmModel::log_joint's
// log-density, and the fused kernel's fp16 operands (power-of-two scales, hi/lo split, transposed
// and padded layout) reproduce s_k·U_k within the split's bound, and the Hopper kernel's packed layout
// (FullSm90Layout.h) holds each of them once.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "gpu/detail/FullModelEncoding.h"
#include "gpu/detail/ModelEncoding.h"
#include "tests/test_helpers.h"

using namespace faiss_gmm;
using namespace faiss_gmm::gpu::detail;

namespace {

constexpr double kU = 5.9604644775390625e-08; // float32 unit roundoff 2^-24

/// A full model with random SPD covariances (condition number cond) and means ~3.
GmmModel full_model(int64_t K, int64_t d, double cond, uint64_t seed) {
    GmmModel m = faiss_gmm::testing::random_model(K, d, CovarianceType::Full, 1.0f, seed);
    std::mt19937_64 rng{seed + 1};
    for (int64_t k = 0; k < K; k++) m.set_covariance(k, faiss_gmm::testing::random_spd(d, 2.0, cond, rng).data());
    return m;
}

} // namespace

TEST(FullModelEncoding, LogDensityOfTheEncodingIsLogJoint) {
    // log2 p = logc2 − ½ log2(e)·‖xᵀ[W rows of k] − mproj_k‖², evaluated here in double from the
    // float encoding: each encoded value is the double one rounded once (u relative), so the
    // difference from log_joint is within 4u·(|c| + Σ_j (|x|·|U_j| + |m_j|)·(|y_j| + 1)) (nats).
    for (int64_t d : {1, 5, 33, 128}) {
        const int64_t K = 3;
        const GmmModel m = full_model(K, d, 100.0, 1700 + uint64_t(d));
        const FullModel fm = encode_full(m);
        ASSERT_EQ(fm.w.size(), size_t(K * d * d));
        ASSERT_EQ(fm.DP, int((d + 31) / 32 * 32));
        std::mt19937_64 rng{99};
        std::normal_distribution<double> g;
        std::vector<double> x(d);
        for (auto& v : x) v = 3.0 * g(rng);
        const std::vector<double> c = m.log_constants();
        for (int64_t k = 0; k < K; k++) {
            double q = 0, bound = std::fabs(c[k]);
            for (int64_t j = 0; j < d; j++) {
                double p = 0, a = 0;
                for (int64_t i = 0; i < d; i++) {
                    p += x[i] * double(fm.w[size_t((k * d + j) * d + i)]);
                    a += std::fabs(x[i] * double(fm.w[size_t((k * d + j) * d + i)]));
                }
                const double y = p - double(fm.mproj[size_t(k * d + j)]);
                q += y * y;
                bound += (a + std::fabs(double(fm.mproj[size_t(k * d + j)]))) * (std::fabs(y) + 1);
            }
            const double got = double(fm.logc2[size_t(k)]) / 1.4426950408889634 - 0.5 * q;
            EXPECT_NEAR(got, m.log_joint(x.data(), k), 4 * kU * bound) << "d=" << d << " k=" << k;
        }
    }
}

TEST(FullModelEncoding, HalfOperandsReproduceTheScaledFactor) {
    // hi = fp16(s·U), lo = fp16(s·U − hi): |s·U − hi − lo| <= 2^-11·|s·U − hi| + 2^-25 <= 2^-22·|s·U| +
    // 2^-25 (fp16 keeps 11 bits; its smallest subnormal step is 2^-24); s a power of two with
    // max|s·U_k| in [2^13, 2^14); the transposed layout [k][j][i] = s·U_k[i][j], zero padding.
    const int64_t K = 4, d = 45;
    const GmmModel m = full_model(K, d, 1e4, 1800);
    const FullModel fm = encode_full(m);
    const int64_t DP = fm.DP;
    ASSERT_EQ(DP, 64);
    for (int64_t k = 0; k < K; k++) {
        const double s = 1.0 / double(fm.kinv[size_t(k)]);
        int e = 0;
        EXPECT_EQ(std::frexp(s, &e), 0.5) << "the scale is a power of two";
        double mx = 0;
        for (int64_t j = 0; j < DP; j++) {
            for (int64_t i = 0; i < DP; i++) {
                const size_t at = size_t((k * DP + j) * DP + i);
                const double v = i < d && j < d ? s * double(m.precision_cholesky(k)[i * d + j]) : 0.0;
                const double hi = host_f16_value(fm.wh[at]), lo = host_f16_value(fm.wl[at]);
                EXPECT_LE(std::fabs(v - hi - lo), std::ldexp(std::fabs(v), -22) + std::ldexp(1.0, -25))
                        << "k=" << k << " j=" << j << " i=" << i;
                mx = std::max(mx, std::fabs(v));
            }
            EXPECT_EQ(fm.mproj_padded[size_t(k * DP + j)], j < d ? fm.mproj[size_t(k * d + j)] : 0.f);
        }
        EXPECT_GE(mx, 8192.0);
        EXPECT_LT(mx, 16384.0);
    }
}

TEST(FullModelEncoding, HopperLayoutStoresEveryNonZeroOnce) {
    // FullSm90Layout.h: for every width DP and column grouping W the Hopper kernel is built for, the
    // stored entries map one-to-one onto [0, full_sm90_factor_halves), and every entry of the upper
    // triangle (i <= j: the factor's non-zeros) is stored; so is the whole 8 × 8 block it lies in.
    for (int64_t DP : {32, 64, 96, 128}) {
        for (int64_t W : {int64_t(0), int64_t(32), int64_t(64), DP}) {
            if (W > DP) continue;
            const int64_t H = full_sm90_factor_halves(DP, W);
            std::vector<int> hits(size_t(H), 0);
            for (int64_t j = 0; j < DP; j++) {
                for (int64_t i = 0; i < DP; i++) {
                    const int64_t at = full_sm90_factor_index(DP, W, j, i);
                    if (i <= j) ASSERT_GE(at, 0) << "DP=" << DP << " W=" << W << " j=" << j << " i=" << i;
                    if (at < 0) continue;
                    ASSERT_LT(at, H);
                    hits[size_t(at)]++;
                }
            }
            for (int64_t a = 0; a < H; a++) ASSERT_EQ(hits[size_t(a)], 1) << "DP=" << DP << " W=" << W << " at " << a;
        }
    }
    // The exact triangle (W = 0) at DP = 128: 72 of the 128 core-matrix pairs (18 KiB of 32).
    EXPECT_EQ(full_sm90_factor_halves(128, 0), 72 * 128);
    EXPECT_EQ(full_sm90_factor_halves(128, 128), 128 * 128);
}

TEST(FullModelEncoding, PackedFactorsAreTheEncodedOnes) {
    // pack_full_factors_sm90 moves each stored entry of wh to its place, and no non-zero is left behind.
    const int64_t K = 3, d = 70;
    const FullModel fm = encode_full(full_model(K, d, 1e3, 1900));
    const int64_t DP = fm.DP;
    for (int64_t W : {int64_t(0), int64_t(32), int64_t(64), DP}) {
        const std::vector<uint16_t> packed = pack_full_factors_sm90(fm.wh, K, DP, W);
        const int64_t H = full_sm90_factor_halves(DP, W);
        ASSERT_EQ(int64_t(packed.size()), K * H);
        for (int64_t k = 0; k < K; k++) {
            for (int64_t j = 0; j < DP; j++) {
                for (int64_t i = 0; i < DP; i++) {
                    const uint16_t v = fm.wh[size_t((k * DP + j) * DP + i)];
                    const int64_t at = full_sm90_factor_index(DP, W, j, i);
                    if (at < 0) ASSERT_EQ(v, 0) << "a non-zero left out: W=" << W << " j=" << j << " i=" << i;
                    else ASSERT_EQ(packed[size_t(k * H + at)], v) << "W=" << W << " k=" << k << " j=" << j << " i=" << i;
                }
            }
        }
    }
}
