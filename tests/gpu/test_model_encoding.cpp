// Host-only parts of the CUDA E-step, without a GPU (runs in CI): the model encoding for the
// kernels (fp16 packing, logit coefficients against GmmModel::log_joint, the Blocked matrix,
// the Hopper scales, hi/lo split and tiling), the heuristics, and the option checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "gpu/EStepCuda.h"
#include "gpu/detail/ModelEncoding.h"
#include "gpu/detail/TileShapes.h"
#include "gpu/detail/heuristics.h"

using namespace faiss_gmm;
using namespace faiss_gmm::gpu::detail;

namespace {

GmmModel random_model(int64_t K, int64_t d, CovarianceType cov, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::uniform_real_distribution<double> ud(0.5, 1.5);
    GmmModel m(K, d, cov);
    std::vector<double> w(K);
    double ws = 0;
    for (auto& v : w) ws += (v = ud(rng));
    for (int64_t k = 0; k < K; k++) m.log_weights[k] = float(std::log(w[k] / ws));
    for (auto& v : m.means) v = float(3.0 * nd(rng));
    for (auto& v : m.variances) v = float(2.0 * ud(rng));
    return m;
}

bool is_pow2(float v) {
    int e = 0;
    return v > 0 && std::frexp(v, &e) == 0.5f;
}

} // namespace

TEST(ModelEncoding, HalfPacking) {
    EXPECT_EQ(host_f16(1.0f), 0x3c00);
    EXPECT_EQ(host_f16(-2.0f), 0xc000);
    EXPECT_EQ(host_f16(0.0f), 0x0000);
    EXPECT_EQ(host_f16(65504.f), 0x7bff);
    EXPECT_EQ(host_f16(1e6f), 0x7bff);       // saturates
    EXPECT_EQ(host_f16(-INFINITY), 0xfbff);  // saturates too
    EXPECT_EQ(host_f16(std::ldexp(1.f, -24)), 0x0001); // smallest subnormal
    EXPECT_EQ(host_f16(std::ldexp(1.f, -25)), 0x0000); // tie, to even
    EXPECT_EQ(host_f16(1.0f + std::ldexp(1.f, -11)), 0x3c00); // tie, to even
    EXPECT_EQ(host_f16(1.0f + 3 * std::ldexp(1.f, -11)), 0x3c02);
    // Every finite half survives value → float → half.
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (((h >> 10) & 31) == 31) continue; // inf / NaN
        const double v = host_f16_value(uint16_t(h));
        const uint16_t back = host_f16(float(v));
        if (h == 0x8000) {
            EXPECT_EQ(back & 0x7fff, 0);
            continue;
        }
        ASSERT_EQ(back, h) << "half 0x" << std::hex << h;
    }
    EXPECT_EQ(pow2i(3), 8.f);
    EXPECT_EQ(pow2i(-500), std::ldexp(1.f, -120));
}

TEST(ModelEncoding, LogitsMatchLogJoint) {
    // logit2 · ln 2 = log p(x, k), the one definition (GmmModel::log_joint).
    for (auto cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        const int64_t K = 7, d = 13;
        const GmmModel m = random_model(K, d, cov, 3);
        const LogitModel lm = encode_logits(m);
        EXPECT_EQ(lm.Dfeat, cov == CovarianceType::Diagonal ? 2 * d : d);
        std::mt19937_64 rng(4);
        std::normal_distribution<double> nd(0.0, 2.0);
        for (int trial = 0; trial < 5; trial++) {
            std::vector<double> x(d);
            double xx = 0;
            for (auto& v : x) xx += (v = nd(rng)) * v;
            for (int64_t k = 0; k < K; k++) {
                double l2 = lm.bias[k] + lm.acoef[k] * xx;
                for (int64_t j = 0; j < d; j++) {
                    l2 += lm.w[k * lm.Dfeat + j] * x[j];
                    if (lm.diag) l2 += lm.w[k * lm.Dfeat + d + j] * x[j] * x[j];
                }
                const double ref = m.log_joint(x.data(), k);
                // Not derived: the float coefficients (2d + 2 of them, each rounded: u = 2^-24) give
                // |error| <= γ_{2d+4}·ln2·(|bias| + |acoef|·‖x‖² + Σ_j |w_j x_j| (+ |w_dj| x_j²)), which
                // can exceed 1e-5·|ref| under cancellation; that bound should replace this relative one.
                EXPECT_NEAR(l2 * std::log(2.0), ref, 1e-5 * std::max(1.0, std::fabs(ref))) << to_string(cov);
            }
        }
        for (int64_t k = 0; k < K; k++) {
            double mm = 0;
            for (int64_t j = 0; j < d; j++) mm += double(m.means[k * d + j]) * m.means[k * d + j];
            EXPECT_DOUBLE_EQ(lm.mean_sq[k], mm);
        }
    }
}

TEST(ModelEncoding, BlockedMatrix) {
    const GmmModel m = random_model(6, 5, CovarianceType::Diagonal, 5);
    const LogitModel lm = encode_logits(m);
    const BlockedModel b = encode_blocked(lm);
    EXPECT_EQ(b.Kp2, 8);                            // K rounded up to 4
    EXPECT_EQ(b.ld2, 12);                           // [x | x² | 1] = 11, rounded up to 4
    for (int64_t k = 0; k < b.Kp2; k++) {
        for (int64_t e = 0; e < b.ld2; e++) {
            const float want = k < lm.K && e < lm.Dfeat ? float(lm.w[k * lm.Dfeat + e]) : 0.f;
            ASSERT_EQ(b.w1[k * b.ld2 + e], want) << k << " " << e;
        }
        EXPECT_EQ(b.bias[k], k < lm.K ? lm.bias[k] : kNegBig);
    }
    EXPECT_EQ(encode_blocked(encode_logits(random_model(3, 5, CovarianceType::Spherical, 6))).ld2, 8); // [x | 1 | ‖x‖²]
}

TEST(ModelEncoding, HopperScalesTilingAndSplit) {
    namespace s9 = sm90;
    for (auto cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        for (bool split : {false, true}) {
            for (int64_t d : {1, 32, 33, 100, 128}) {
                const int64_t K = 130; // two component tiles, the second one mostly padding
                const bool diag = cov == CovarianceType::Diagonal;
                const GmmModel m = random_model(K, d, cov, 7 + d + (diag ? 100 : 0));
                const LogitModel lm = encode_logits(m);
                const HopperModel hm = encode_hopper(m, lm, split);
                EXPECT_EQ(hm.diag, diag);
                EXPECT_EQ(hm.DP, hopper_padded_dim(d, diag));
                EXPECT_EQ(hm.DP, (diag ? 2 : 1) * hopper_padded_dim(d));
                EXPECT_EQ(hm.wide(), !split && hm.DP > 128);
                // Diagonal: x features in [0, DP/2), x² features in [DP/2, DP), the x² weights × s_x/s_q.
                const int64_t half = diag ? hm.DP / 2 : hm.DP, D = lm.Dfeat;
                const double wq = diag ? double(hm.sx) / hm.sq : 1.0;
                EXPECT_EQ(hm.FW, hm.DP + 8);
                EXPECT_EQ(hm.Kt, 2);
                EXPECT_TRUE(is_pow2(hm.sx) && is_pow2(hm.sq)) << hm.sx << " " << hm.sq;
                const size_t wlo = size_t(hm.Kt) * s9::kKc * hm.DP;
                ASSERT_EQ(hm.W.size(), wlo * (split ? 2 : 1));
                // The weights, untiled and unscaled: w̃ = w · s_w with s_w = 1 / (kinv · s_x), max |w̃| near 2^14 (accurate) or 2^6 (fast).
                const double sw = 1.0 / (double(hm.kinv) * hm.sx);
                EXPECT_TRUE(is_pow2(float(sw)));
                double maxw = 0;
                for (int64_t k = 0; k < int64_t(hm.Kt) * s9::kKc; k++) {
                    const int64_t ct = k / s9::kKc, c = k % s9::kKc;
                    for (int64_t j = 0; j < hm.DP; j++) {
                        const size_t at = size_t(ct) * s9::kKc * hm.DP + size_t((j / 8) * s9::kKc + c) * 8 + j % 8;
                        double v = host_f16_value(hm.W[at]);
                        if (split) v += host_f16_value(hm.W[wlo + at]);
                        const int64_t e = j < half ? j : d + (j - half); // weight of feature column j
                        const bool used = k < K && (j < half ? j < d : diag && j - half < d);
                        const double want = used ? lm.w[k * D + e] * sw * (j < half ? 1.0 : wq) : 0.0;
                        maxw = std::max(maxw, std::fabs(want));
                        // fp16 rounding: <= 2^-11 relative (4.9e-4 < 1e-3) for normal values (|w̃| <= 2^14,
                        // no overflow); hi + lo split: <= 2^-22 relative (2.4e-7 < 1e-6); + 1e-7 absolute
                        // covers fp16 subnormals (spacing 2^-24, half of it 3e-8).
                        const double tol = (split ? 1e-6 : 1e-3) * std::fabs(want) + 1e-7;
                        ASSERT_NEAR(v, want, tol) << "k=" << k << " j=" << j << " split=" << split << " diag=" << diag;
                    }
                    EXPECT_EQ(hm.ab[2 * k], k < K ? lm.acoef[k] : 0.f);
                    EXPECT_EQ(hm.ab[2 * k + 1], k < K ? lm.bias[k] : kNegBig);
                }
                EXPECT_GT(maxw, split ? 8192.0 : 32.0);
                EXPECT_LE(maxw, split ? 16384.0 : 64.0);
                // Fast mode: the bias columns' weights (checked against the logits in
                // HopperLogitsOfEncodedFeaturesWithinTheirBound), zero for padding components.
                const bool fold = !split;
                EXPECT_EQ(hm.folded, fold);
                ASSERT_EQ(hm.Wb.size(), fold ? size_t(hm.Kt) * s9::kKc * 8 : 0u);
                if (fold) {
                    EXPECT_TRUE(is_pow2(hm.cq) && is_pow2(hm.cb) && hm.cq <= 64.f) << hm.cq << " " << hm.cb;
                    for (size_t i = size_t(K) * 8; i < hm.Wb.size(); i++) ASSERT_EQ(hm.Wb[i], 0) << i;
                }
            }
        }
    }
}

TEST(ModelEncoding, HopperLogitsOfEncodedFeaturesWithinTheirBound) {
    // End to end on the host: the features the kernels build (features_kernel: s_x·y, and for
    // diagonal models s_q·y² from DP/2 on, in float, then fp16 planes) against the encoded weights,
    // × kinv + a_k‖y‖² + b_k, give the float64 log2-density + log2 π_k of every (row, component)
    // within the encoding's rounding bound. The products are summed in double here: the kernels'
    // fp32 accumulation comes on top and is not part of this bound. Per feature e, with v̂ the
    // stored value of v: fp16 rounding |v̂ − v| ≤ u|v| + 2^-25 (u = 2^-11; 2^-25: half the
    // subnormal spacing); hi + lo (accurate mode) ≤ u²|v| + 2^-24, and the kernels drop lo·lo,
    // ≤ (u|f| + 2^-25)(u|w| + 2^-25); the x² features carry two float roundings (≤ 2^-23 |f|);
    // |f̂ŵ − fw| ≤ ε_f|w| + ε_w|f| + ε_f·ε_w. b_k and a_k are floats (2^-24 relative), and
    // 1e-12 of the terms' magnitude covers double rounding. kinv is a power of two (exact).
    namespace s9 = sm90;
    const double u = std::ldexp(1.0, -11), tiny = std::ldexp(1.0, -25);
    double worst = 0, worst_folded = 0; // largest error / bound (fp32 terms; bias columns)
    int saturated_rows = 0; // rows whose ‖y‖² is beyond the bias columns' range (the fp32 correction)
    for (auto cov : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        for (bool split : {false, true}) {
            for (int64_t d : {5, 64, 100, 128}) {
                const int64_t K = 130;
                const bool diag = cov == CovarianceType::Diagonal;
                const GmmModel m = random_model(K, d, cov, 40 + d + (diag ? 7 : 0));
                const LogitModel lm = encode_logits(m);
                const HopperModel hm = encode_hopper(m, lm, split);
                const int64_t half = diag ? hm.DP / 2 : hm.DP;
                const size_t wlo = size_t(hm.Kt) * s9::kKc * hm.DP;
                std::mt19937_64 rng(77 + d);
                std::normal_distribution<double> nd(0.0, 1.0);
                for (int row = 0; row < 40; row++) {
                    // A row near component (row % K), centered frame (center 0: y = x exactly).
                    std::vector<float> y(static_cast<size_t>(d), 0.f);
                    const int64_t src = row % K;
                    for (int64_t j = 0; j < d; j++) {
                        const double var = m.variances[size_t(diag ? src * d + j : src)];
                        y[size_t(j)] = float(m.means[size_t(src * d + j)] + std::sqrt(var) * 1.5 * nd(rng));
                    }
                    // Every 8th row has one outlier coordinate, 150× the typical value (~3.5 here): its
                    // square must stay in fp16's range (diagonal: s_q puts x² near 1, so up to 256×).
                    if (row % 8 == 7) y[size_t(row % d)] = float(150.0 * 3.5 * (row % 16 == 7 ? 1 : -1));
                    // Spherical, fast: every 8th row (from the 4th) far out, ‖y‖² = 1.5× where the bias
                    // columns' u saturates (the kernel's fp32 correction), its coordinates equal and
                    // within fp16's range after s_x (else the row is left as it is).
                    if (hm.folded && !diag && row % 8 == 3) {
                        const double xsat = 65504.0 / (double(hm.sq) * hm.cq), v = std::sqrt(1.5 * xsat / double(d));
                        if (hm.sx * v < 60000.0)
                            for (int64_t j = 0; j < d; j++) y[size_t(j)] = float(j % 2 ? v : -v);
                    }
                    // Features as the kernel computes them (float), their fp16 planes, and the error model.
                    const size_t DPs = static_cast<size_t>(hm.DP);
                    std::vector<double> f(DPs, 0.0), fh(DPs, 0.0), fl(DPs, 0.0);
                    std::vector<double> ffloat(DPs, 0.0); // extra relative error before fp16
                    double yy = 0;
                    for (int64_t j = 0; j < d; j++) {
                        yy += double(y[size_t(j)]) * y[size_t(j)];
                        f[size_t(j)] = hm.sx * y[size_t(j)];
                        if (diag) {
                            f[size_t(half + j)] = (hm.sq * y[size_t(j)]) * y[size_t(j)]; // float, as in the kernel
                            ffloat[size_t(half + j)] = std::ldexp(1.0, -23);
                        }
                    }
                    for (int64_t e = 0; e < hm.DP; e++) {
                        const uint16_t h = host_f16(float(f[size_t(e)]));
                        fh[size_t(e)] = host_f16_value(h);
                        if (split) fl[size_t(e)] = host_f16_value(host_f16(float(f[size_t(e)] - fh[size_t(e)])));
                    }
                    for (int64_t k = 0; k < K; k++) {
                        const int64_t ct = k / s9::kKc, c = k % s9::kKc;
                        double dot = 0, bound = 0, mag = 0;
                        for (int64_t e = 0; e < hm.DP; e++) {
                            const size_t at = size_t(ct) * s9::kKc * hm.DP + size_t((e / 8) * s9::kKc + c) * 8 + e % 8;
                            const double wh = host_f16_value(hm.W[at]), wl = split ? host_f16_value(hm.W[wlo + at]) : 0;
                            dot += fh[size_t(e)] * wh + (split ? fh[size_t(e)] * wl + fl[size_t(e)] * wh : 0.0);
                            // The exact weight of feature e (what hm.W rounds): lm.w × s_w (× s_x/s_q for x²).
                            const double fa = std::fabs(f[size_t(e)]), wa = std::fabs(wh + wl);
                            const double ef = (split ? u * u * fa + 2 * tiny : u * fa + tiny) + ffloat[size_t(e)] * fa;
                            const double ew = split ? u * u * wa + 2 * tiny : u * wa + tiny;
                            bound += ef * wa + ew * fa + ef * ew + (split ? (u * fa + tiny) * (u * wa + tiny) : 0.0);
                            mag += fa * wa;
                        }
                        const float a_k = hm.ab[size_t(2 * k)], b_k = hm.ab[size_t(2 * k + 1)];
                        const double got = double(hm.kinv) * dot + double(a_k) * yy + double(b_k);
                        // float64 log2 π_k N_k(y).
                        double q = 0, logdet = 0;
                        for (int64_t j = 0; j < d; j++) {
                            const double var = m.variances[size_t(diag ? k * d + j : k)];
                            const double r = double(y[size_t(j)]) - m.means[size_t(k * d + j)];
                            q += r * r / var;
                            logdet += std::log(2 * M_PI * var);
                        }
                        const double want = (double(m.log_weights[size_t(k)]) - 0.5 * logdet - 0.5 * q) / std::log(2.0);
                        const double small = std::fabs(b_k) + std::fabs(a_k) * yy; // the float terms
                        const double tol = double(hm.kinv) * bound + std::ldexp(1.0, -24) * small +
                                           1e-12 * (double(hm.kinv) * mag + small);
                        const double err = std::fabs(got - want);
                        worst = std::max(worst, err / tol);
                        ASSERT_LE(err, tol) << to_string(cov) << " split=" << split << " d=" << d << " row=" << row
                                            << " k=" << k << " got " << got << " want " << want;
                        if (!hm.folded) continue;
                        // The one-pass and wide kernels' logit: kinv × (dot + the bias columns × Wb), the columns
                        // as features_kernel writes them (TileShapes.h: BiasColumn). With U = c_q·s_q‖y‖²
                        // and A, B the exact weights: A_hi(u + u_lo) + A_lo·u misses |A||U − u − u_lo| +
                        // |A_lo u_lo| + |A − A_hi − A_lo||U| ≤ 3u²|A||U| + 2^-24(|A| + |U|) (lo halves may be
                        // subnormal: their rounding ≤ 2^-25 absolute), B_hi + B_lo misses u²|B| + 2^-25;
                        // the kernel's ‖y‖² is a float sum of d squares (≤ (d + 1)·2^-24 relative). Where
                        // U would pass 65504 the kernel clamps it and adds a_k(‖y‖² − 65504/(s_q·c_q)) in
                        // fp32 (the outlier rows here): ≤ 2^-23·|a_k|‖y‖² more.
                        const uint16_t* wb = hm.Wb.data() + size_t(k) * 8;
                        const double Ufull = double(hm.cq) * hm.sq * yy, U = std::min(Ufull, 65504.0);
                        const double corr = Ufull > 65504.0 ? double(a_k) * (yy - 65504.0 / (double(hm.sq) * hm.cq)) : 0.0;
                        const double uh = host_f16_value(host_f16(float(U)));
                        const double ul = host_f16_value(host_f16(float(U - uh)));
                        const double Ah = host_f16_value(wb[s9::kColU]), Al = host_f16_value(wb[s9::kColU2]);
                        const double Bh = host_f16_value(wb[s9::kColB]), Bl = host_f16_value(wb[s9::kColB2]);
                        EXPECT_EQ(wb[s9::kColULo], wb[s9::kColU]);
                        EXPECT_EQ(wb[s9::kColOne], 0);
                        EXPECT_EQ(wb[s9::kColQ], 0);
                        const double fold = Ah * (uh + ul) + Al * uh + double(hm.cb) * (Bh + Bl);
                        const double got1 = double(hm.kinv) * (dot + fold) + corr;
                        const double A = double(a_k) / (double(hm.kinv) * hm.sq * hm.cq), B = double(b_k) / hm.kinv;
                        EXPECT_NEAR(Ah + Al, A, u * u * std::fabs(A) + 2 * tiny) << "k=" << k;
                        EXPECT_NEAR(double(hm.cb) * (Bh + Bl), B, double(hm.cb) * (u * u * std::fabs(B / hm.cb) + 2 * tiny));
                        EXPECT_LE(std::fabs(Ah), 32768.0);
                        EXPECT_LE(std::fabs(Bh), 32768.0);
                        const double fold_bound = 3 * u * u * std::fabs(A * U) + 2 * tiny * (std::fabs(A) + std::fabs(U)) +
                                                  double(hm.cb) * (u * u * std::fabs(B / hm.cb) + 2 * tiny);
                        const double tol1 = double(hm.kinv) * (bound + fold_bound) + std::ldexp(1.0, -24) * small +
                                            double(d + 3) * std::ldexp(1.0, -24) * std::fabs(a_k) * yy +
                                            1e-12 * (double(hm.kinv) * mag + small);
                        const double err1 = std::fabs(got1 - want);
                        worst_folded = std::max(worst_folded, err1 / tol1);
                        ASSERT_LE(err1, tol1) << "folded: " << to_string(cov) << " d=" << d << " row=" << row
                                              << " k=" << k << " got " << got1 << " want " << want << " U " << U;
                        if (k == 0 && Ufull > 65504.0) saturated_rows++;
                    }
                }
            }
        }
    }
    printf("  largest logit error / its bound: %.3f (bias and ‖x‖² terms in fp32), %.3f (in the bias columns); "
           "rows beyond the bias columns' range: %d\n",
           worst, worst_folded, saturated_rows);
    EXPECT_GT(saturated_rows, 0); // the outlier rows exercise the correction
}

TEST(ModelEncoding, BiasBeyondHalfRangeIsNotFolded) {
    // A component whose log-weight term is ~2^40 times the others' logit scale: its bias weight
    // cannot be an fp16 number even with the column value c_b at fp16's largest power of two, so
    // the model is not folded (EStepCuda runs it in two passes, which add the bias in fp32).
    GmmModel m = random_model(200, 16, CovarianceType::Spherical, 12);
    m.log_weights[3] = -1e12f;
    const LogitModel lm = encode_logits(m);
    const HopperModel hm = encode_hopper(m, lm, false);
    EXPECT_FALSE(hm.folded);
    EXPECT_TRUE(hm.Wb.empty());
    const GmmModel plain = random_model(200, 16, CovarianceType::Spherical, 12);
    EXPECT_TRUE(encode_hopper(plain, encode_logits(plain), false).folded);
}

TEST(ModelEncoding, EncodeModelCentersAndChoosesParts) {
    const GmmModel m = random_model(4, 6, CovarianceType::Spherical, 9);
    const std::vector<float> c = {1, 2, 3, 4, 5, 6};
    const EncodedModel a = encode_model(m, c.data(), true, true);
    ASSERT_TRUE(a.hopper);
    EXPECT_FALSE(a.hopper->split);
    EXPECT_EQ(a.center, c);
    const EncodedModel b = encode_model(m, nullptr, false, false);
    EXPECT_FALSE(b.hopper);
    EXPECT_EQ(b.center, std::vector<float>(6, 0.f));
    EXPECT_TRUE(encode_model(m, nullptr, true, false).hopper->split);
    // Fast mode is one fp16 plane at every Hopper shape: diagonal, d > 64, K > 1024 too.
    const GmmModel wide = random_model(1100, 100, CovarianceType::Diagonal, 10);
    EXPECT_FALSE(encode_model(wide, nullptr, true, true).hopper->split);
    EXPECT_TRUE(encode_model(wide, nullptr, true, false).hopper->split);
}

TEST(ModelEncoding, RefinementOnlyForNarrowComponents) {
    // Issue 13: the refinement data exists only for a model with narrow components
    // (faiss_gmm/ExactLogDensity.h), lists exactly those, carries the means in the rows' frame,
    // and excludes the Hopper encoding (such a model runs Blocked + refinement).
    const int64_t K = 8, d = 24;
    GmmModel m = random_model(K, d, CovarianceType::Spherical, 11);
    std::vector<float> center(d, 100.0f);
    EXPECT_EQ(encode_refinement(m, center.data()), nullptr) << "ordinary model";
    m.variances[3] = 1e-9f; // collapsed
    m.variances[6] = 3e-6f; // ~1e-6 of the data's scale (means ~3 per coordinate)
    auto r = encode_refinement(m, center.data());
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->narrow, (std::vector<int32_t>{3, 6}));
    EXPECT_EQ(r->exact.exact_means[size_t(3 * d + 5)], double(m.means[size_t(3 * d + 5)]) + 100.0);
    EXPECT_THROW(encode_model(m, center.data(), true, false, std::move(r)), std::logic_error);
    // The same for diagonal models: one narrow dimension makes its component narrow.
    GmmModel g = random_model(K, d, CovarianceType::Diagonal, 12);
    EXPECT_EQ(encode_refinement(g, nullptr), nullptr);
    g.variances[size_t(5 * d + 7)] = 1e-9f;
    auto rg = encode_refinement(g, nullptr);
    ASSERT_NE(rg, nullptr);
    EXPECT_EQ(rg->narrow, (std::vector<int32_t>{5}));
    const EncodedModel em = encode_model(g, nullptr, false, false, std::move(rg));
    ASSERT_NE(em.refine, nullptr);
    EXPECT_EQ(em.hopper, nullptr);
}

TEST(Heuristics, AlgorithmAndSizes) {
    EXPECT_TRUE(hopper_covers(128)); // spherical and diagonal, any K, both modes
    EXPECT_FALSE(hopper_covers(129));
    // Diagonal d > 64: the two passes in accurate mode, above one cluster (Kt > 8), or when asked (2).
    EXPECT_TRUE(hopper_diag_two_pass(true, 1, 0));
    EXPECT_TRUE(hopper_diag_two_pass(false, 9, 0));
    EXPECT_TRUE(hopper_diag_two_pass(false, 9, 1)); // the wide kernel cannot run K > 1024
    EXPECT_TRUE(hopper_diag_two_pass(false, 8, 2));
    EXPECT_FALSE(hopper_diag_two_pass(false, 8, 0));
    EXPECT_FALSE(hopper_diag_two_pass(false, 8, 1));
    for (size_t free_b : {size_t(1) << 20, size_t(8) << 30, size_t(140) << 30}) {
        const int64_t rows = auto_chunk_rows(hopper_bytes_per_row(128, 136, false), free_b);
        EXPECT_EQ(rows % 128, 0);
        EXPECT_GE(rows, 1024);
        EXPECT_LE(rows, int64_t(1) << 20);
    }
    EXPECT_EQ(auto_chunk_rows(1.0, size_t(140) << 30), int64_t(1) << 20);
    EXPECT_EQ(blocked_block_rows(300 * 304 * 4, 300, 700), 304);
    EXPECT_EQ(blocked_block_rows(1, 1024, 700), 128);
    EXPECT_EQ(hopper_sub_chunks(10, 128, 15), 1);
    EXPECT_EQ(hopper_sub_chunks(7813, 128, 15), 4); // 1M rows, 15 clusters
    EXPECT_EQ(hopper_sub_chunks(30, 1, 15), 2);
    // Sub-chunk starts: equal (growth 1) as before, geometric, never an empty sub-chunk.
    int t0[kMaxSubChunks + 1];
    hopper_sub_chunk_starts(7813, 4, 1, t0);
    EXPECT_EQ(std::vector<int>(t0, t0 + 5), (std::vector<int>{0, 1953, 3906, 5859, 7813}));
    hopper_sub_chunk_starts(1500, 4, 2, t0);
    EXPECT_EQ(std::vector<int>(t0, t0 + 5), (std::vector<int>{0, 100, 300, 700, 1500}));
    hopper_sub_chunk_starts(1000, 3, 3, t0);
    EXPECT_EQ(std::vector<int>(t0, t0 + 4), (std::vector<int>{0, 76, 307, 1000}));
    for (int tiles = 1; tiles <= 40; tiles++) {
        for (int nsub = 1; nsub <= std::min(tiles, kMaxSubChunks); nsub++) {
            for (int growth = 1; growth <= 4; growth++) {
                hopper_sub_chunk_starts(tiles, nsub, growth, t0);
                EXPECT_EQ(t0[0], 0);
                EXPECT_EQ(t0[nsub], tiles);
                for (int s = 0; s < nsub; s++) {
                    EXPECT_LT(t0[s], t0[s + 1]) << tiles << " tiles, " << nsub << " sub-chunks, growth " << growth;
                }
            }
        }
    }
    // Auto growth: geometric sub-chunks only where the kernel leaves SMs to the features.
    EXPECT_EQ(hopper_auto_sub_chunk_growth(120, 132), 2); // K = 1024: 15 clusters of 8
    EXPECT_EQ(hopper_auto_sub_chunk_growth(132, 132), 1); // K = 256: 66 clusters of 2
    EXPECT_EQ(hopper_row_splits(1000, 132, 8), 16);
    EXPECT_EQ(hopper_row_splits(3, 132, 8), 3);
    EXPECT_EQ(hopper_row_splits(1000, 132, 512), 1);
    EXPECT_EQ(host_copy_threads(0, 64, 2), 8);
    EXPECT_EQ(host_copy_threads(3, 64, 1), 3);
    EXPECT_EQ(host_copy_threads(0, 0, 4), 1);
    // Reproducible blocks: larger ones for the fp32-partial kernels (fp16, d ≤ 128; diagonal d ≤ 64)
    // from 8M rows on.
    EXPECT_EQ(hopper_auto_block_rows(0), 4096);
    EXPECT_EQ(hopper_auto_block_rows((int64_t(8) << 20) - 1), 4096);
    EXPECT_EQ(hopper_auto_block_rows(int64_t(8) << 20), 4 * 4096);
    EXPECT_TRUE(hopper_float_partials(false, 128, true));  // spherical fp16, one pass or two
    EXPECT_TRUE(hopper_float_partials(true, 64, true));    // diagonal at 2d = 128
    EXPECT_FALSE(hopper_float_partials(true, 65, true));   // the wide kernel, the one-plane passes (double partials)
    EXPECT_FALSE(hopper_float_partials(false, 128, false)); // 2×fp16
}

TEST(EStepCudaOptions, RemovedAndInvalidOptionsAreClearErrors) {
    using faiss_gmm::gpu::EStepCudaAlgorithm;
    using faiss_gmm::gpu::parse_estep_cuda_algorithm;
    EXPECT_EQ(parse_estep_cuda_algorithm("Auto"), EStepCudaAlgorithm::Auto);
    EXPECT_EQ(parse_estep_cuda_algorithm("blocked"), EStepCudaAlgorithm::Blocked);
    EXPECT_EQ(parse_estep_cuda_algorithm("HOPPER"), EStepCudaAlgorithm::Hopper);
    for (const char* name : {"fused", "Fused"}) {
        try {
            parse_estep_cuda_algorithm(name);
            ADD_FAILURE() << name << " was accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("removed"), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(parse_estep_cuda_algorithm("bf16"), std::invalid_argument);
    // The constructor checks the options before looking for a GPU.
    faiss_gmm::gpu::EStepCudaOptions o;
    o.algorithm = EStepCudaAlgorithm(1);
    try {
        faiss_gmm::gpu::EStepCuda es(4, 8, o);
        ADD_FAILURE() << "algorithm 1 (Fused) was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("removed"), std::string::npos) << e.what();
    }
    // Reproducible blocks of the Hopper kernels: 0 (auto) or whole 4096-row blocks, up to the limbs' headroom.
    for (int64_t rows : {int64_t(-4096), int64_t(5000), 17 * faiss_gmm::kReproducibleBlockRows}) {
        faiss_gmm::gpu::EStepCudaOptions b;
        b.hopper_reproducible_block_rows = rows;
        try {
            faiss_gmm::gpu::EStepCuda es(4, 8, b);
            ADD_FAILURE() << "hopper_reproducible_block_rows = " << rows << " was accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("hopper_reproducible_block_rows must be 0 (auto) or a multiple of "
                                                 "4096 up to 65536 (got " + std::to_string(rows) + ")"),
                      std::string::npos)
                    << e.what();
        }
    }
}
