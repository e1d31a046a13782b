// Host-only encoding of a GmmModel for the CUDA kernels (ModelEncoding.h).
#include "gpu/detail/ModelEncoding.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "gpu/detail/TileShapes.h"

namespace faiss_gmm::gpu::detail {

namespace {
constexpr double kLog2e = 1.4426950408889634074;
int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
} // namespace

uint16_t host_f16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x477ff000u) return uint16_t(sign | 0x7bffu); // ≥ 65520 (or inf/NaN)
    if (ax <= 0x33000000u) return uint16_t(sign);            // ≤ 2^-25: rounds to 0
    const int e = int(ax >> 23);
    if (e < 113) { // half subnormal
        const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
        const int shift = 126 - e;
        uint32_t q = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return uint16_t(sign | q);
    }
    uint32_t h = (uint32_t(e - 112) << 10) | ((ax >> 13) & 0x3ffu);
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return uint16_t(sign | h);
}

namespace {
/// 2^(e − 25) for a half's biased exponent e (e = 0, the subnormals: 2^-24, as e = 1).
struct HalfScales {
    double s[32] = {};
    constexpr HalfScales() {
        double v = 1.0;
        for (int i = 0; i < 24; i++) v *= 0.5; // 2^-24 (exact)
        s[0] = v;
        for (int e = 1; e < 32; e++, v *= 2) s[e] = v;
    }
};
constexpr HalfScales kHalfScales;
} // namespace

double host_f16_value(uint16_t h) {
    // (ldexp was most of the split encoding's time: set_model runs it every EM iteration.)
    const int e = (h >> 10) & 31, m = h & 1023;
    const double v = double(e == 0 ? m : 1024 + m) * kHalfScales.s[e]; // exact: 11 bits × a power of two
    return (h & 0x8000u) ? -v : v;
}

float pow2i(int e) { return std::ldexp(1.0f, std::clamp(e, -120, 120)); }

LogitModel encode_logits(const GmmModel& model) {
    LogitModel lm;
    const int64_t K = model.K, d = model.d;
    lm.K = K;
    lm.d = d;
    lm.diag = model.covariance_type == CovarianceType::Diagonal;
    lm.Dfeat = lm.diag ? 2 * d : d;
    lm.means = model.means;
    lm.mean_sq.assign(K, 0.0);
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < d; j++) lm.mean_sq[k] += double(model.means[k * d + j]) * model.means[k * d + j];
    const std::vector<double> c = model.log_constants();
    lm.w.assign(size_t(K) * lm.Dfeat, 0.0);
    lm.bias.assign(K, 0.f);
    lm.acoef.assign(K, 0.f);
    for (int64_t k = 0; k < K; k++) {
        const float* mu = model.means.data() + k * d;
        double* wk = lm.w.data() + k * lm.Dfeat;
        if (!lm.diag) {
            const double inv = 1.0 / double(model.variances[k]);
            for (int64_t j = 0; j < d; j++) wk[j] = double(mu[j]) * inv * kLog2e;
            lm.bias[k] = float((c[k] - 0.5 * inv * lm.mean_sq[k]) * kLog2e);
            lm.acoef[k] = float(-0.5 * inv * kLog2e);
        } else {
            for (int64_t j = 0; j < d; j++) {
                const double inv = 1.0 / double(model.variances[k * d + j]);
                wk[j] = double(mu[j]) * inv * kLog2e;
                wk[d + j] = -0.5 * inv * kLog2e;
            }
            lm.bias[k] = float(c[k] * kLog2e);
        }
    }
    return lm;
}

BlockedModel encode_blocked(const LogitModel& lm) {
    BlockedModel b;
    b.ld2 = round_up(lm.Dfeat + (lm.diag ? 1 : 2), 4);
    b.Kp2 = round_up(lm.K, 4);
    b.w1.assign(size_t(b.Kp2) * b.ld2, 0.f);
    b.bias.assign(b.Kp2, kNegBig);
    b.acoef.assign(b.Kp2, 0.f);
    for (int64_t k = 0; k < lm.K; k++) {
        for (int64_t e = 0; e < lm.Dfeat; e++) b.w1[k * b.ld2 + e] = float(lm.w[k * lm.Dfeat + e]);
        b.bias[k] = lm.bias[k];
        b.acoef[k] = lm.acoef[k];
    }
    return b;
}

int hopper_padded_dim(int64_t d, bool diag) {
    const int p = d <= 32 ? 32 : d <= 64 ? 64 : d <= 96 ? 96 : 128;
    return diag ? 2 * p : p;
}

namespace {
/// HopperModel::Wb, cq and cb (TileShapes.h: BiasColumn). In units of the accumulator
/// (logit2 = kinv · acc): A_k = a_k / (kinv · s_q · c_q) multiplies u ≈ c_q · s_q‖x‖², and
/// B_k = b_k / (kinv · c_b) multiplies c_b. c_q and c_b are the powers of two that bring the largest
/// |A_k| and |B_k| to [2^13, 2^14]; c_b must be an fp16 normal number (2^-14 … 2^15), and c_q at
/// most 2^6: u = c_q·s_q‖x‖² saturates at 65504 (the kernel then adds the rest of a_k‖x‖² in fp32,
/// Args::xsat), which at c_q ≤ 2^6 happens beyond 64× the typical ‖x‖² (s_q puts it near 16).
/// Otherwise the model is not folded (hm.Wb stays empty: two passes).
/// Each weight is an fp16 pair hi + lo (lo = fp16(v − hi)), the ‖x‖² value too (u + u_lo); the
/// product's missing A_lo · u_lo is below 2^-22 of |A_k · u|.
void encode_bias_weights(const LogitModel& lm, HopperModel& hm) {
    namespace s9 = sm90;
    const double S = 1.0 / double(hm.kinv); // s_x · s_w
    double maxa = 0, maxb = 0;
    for (int64_t k = 0; k < lm.K; k++) {
        maxa = std::max(maxa, std::fabs(double(lm.acoef[k])) * S / double(hm.sq));
        maxb = std::max(maxb, std::fabs(double(lm.bias[k])) * S);
    }
    auto scale = [](double m) { return m > 0 ? pow2i(int(std::ceil(std::log2(m / 16384.0)))) : 1.f; };
    hm.cq = scale(maxa);
    hm.cb = std::clamp(scale(maxb), pow2i(-14), pow2i(15));
    if (hm.cq > pow2i(6) || maxb / hm.cb > 16384.0) return;
    hm.folded = true;
    hm.Wb.assign(size_t(hm.Kt) * s9::kKc * 8, 0);
    auto split_half = [](double v, uint16_t& hi, uint16_t& lo) {
        hi = host_f16(float(v));
        lo = host_f16(float(v - host_f16_value(hi)));
    };
    for (int64_t k = 0; k < lm.K; k++) {
        uint16_t* w = hm.Wb.data() + size_t(k) * 8; // component tile k / 128, row k % 128: contiguous
        split_half(double(lm.acoef[k]) * S / (double(hm.sq) * double(hm.cq)), w[s9::kColU], w[s9::kColU2]);
        w[s9::kColULo] = w[s9::kColU];
        split_half(double(lm.bias[k]) * S / double(hm.cb), w[s9::kColB], w[s9::kColB2]);
    }
}
} // namespace

HopperModel encode_hopper(const GmmModel& model, const LogitModel& lm, bool split) {
    namespace s9 = sm90;
    const int64_t K = lm.K, d = lm.d, D = lm.Dfeat;
    HopperModel hm;
    hm.split = split;
    hm.diag = lm.diag;
    hm.DP = hopper_padded_dim(d, lm.diag);
    hm.FW = hm.DP + 8;
    hm.Kt = int((K + s9::kKc - 1) / s9::kKc);
    const int half = lm.diag ? hm.DP / 2 : hm.DP; // where the x² features start (diagonal)
    // Typical squared centered value: Σ_k π_k (‖μ_k‖²/d + σ²_k), σ²_k the mean variance.
    double rms2 = 0;
    for (int64_t k = 0; k < K; k++) {
        double var = 0;
        if (lm.diag) {
            for (int64_t j = 0; j < d; j++) var += double(model.variances[k * d + j]);
            var /= double(d);
        } else {
            var = double(model.variances[k]);
        }
        rms2 += std::exp(double(model.log_weights[k])) * (lm.mean_sq[k] / double(d) + var);
    }
    rms2 = std::max(rms2, 1e-300);
    const double typical = split ? 1.0 : 16.0;
    hm.sx = pow2i(int(std::lround(std::log2(typical / std::sqrt(rms2)))));
    // The squares' scale: ‖x‖² ~ d·rms2 (spherical) near `typical`; x_j² ~ rms2 (diagonal) near 1 in
    // both modes: fp16's relative precision does not depend on the scale, and the range does —
    // at 1, a coordinate up to 256× the typical one squares below fp16's largest value (at 16: 64×).
    const double typical_q = lm.diag ? 1.0 : typical;
    hm.sq = pow2i(int(std::lround(std::log2(typical_q / ((lm.diag ? 1.0 : double(d)) * rms2)))));
    // Diagonal: the x² weights are × s_x/s_q, so that one kinv = 1/(s_x·s_w) undoes both halves.
    const double wq = lm.diag ? double(hm.sx) / double(hm.sq) : 1.0;
    double maxw = 0;
    for (int64_t k = 0; k < K; k++)
        for (int64_t e = 0; e < D; e++) maxw = std::max(maxw, std::fabs(lm.w[k * D + e]) * (e < d ? 1.0 : wq));
    // max|w̃| near 2^14 (accurate) or 2^6 (fast). Fast mode's one-pass kernel adds the bias and
    // ‖x‖² terms as fp16 products in the same accumulator (encode_bias_weights): at 2^6 the logit's
    // terms are ~2^8 smaller in its units, which leaves those products (≤ 2^32) headroom for ‖x‖² up to
    // ~2^13× the typical value at d = 128. fp16's relative precision does not depend on the scale;
    // weights below 2^-20·max|w̃| become subnormal (absolute error 2^-25 in w̃ units).
    const double wmax = split ? 16384.0 : 64.0;
    const float sw = maxw > 0 ? pow2i(int(std::floor(std::log2(wmax / maxw)))) : 1.f;
    hm.kinv = float(1.0 / (double(hm.sx) * double(sw)));
    const int DP = hm.DP;
    const size_t wlo = size_t(hm.Kt) * s9::kKc * DP; // split: where the lo halves start
    hm.W.assign(wlo * (split ? 2 : 1), 0);
    hm.ab.assign(size_t(hm.Kt) * s9::kKc * 2, 0.f);
    for (int64_t k = 0; k < int64_t(hm.Kt) * s9::kKc; k++) {
        const int64_t ct = k / s9::kKc, c = k % s9::kKc;
        for (int64_t e = 0; e < D && k < K; e++) {
            const int64_t j = e < d ? e : half + (e - d); // feature column of weight e
            const size_t at = size_t(ct) * s9::kKc * DP + size_t((j / 8) * s9::kKc + c) * 8 + j % 8;
            const double v = lm.w[k * D + e] * sw * (e < d ? 1.0 : wq);
            hm.W[at] = host_f16(float(v));
            if (split) hm.W[wlo + at] = host_f16(float(v - host_f16_value(hm.W[at])));
        }
        hm.ab[2 * k] = k < K ? lm.acoef[k] : 0.f;
        hm.ab[2 * k + 1] = k < K ? lm.bias[k] : kNegBig;
    }
    if (!split) encode_bias_weights(lm, hm);
    return hm;
}

std::unique_ptr<RefineModel> encode_refinement(const GmmModel& model, const float* center) {
    auto r = std::make_unique<RefineModel>();
    r->exact = exact_log_density(model, center);
    for (int64_t k : narrow_components(r->exact)) r->narrow.push_back(int32_t(k));
    if (r->narrow.empty()) return nullptr;
    return r;
}

EncodedModel encode_model(const GmmModel& model, const float* center, bool hopper, bool fast,
                          std::unique_ptr<RefineModel> refine) {
    if (hopper && refine) throw std::logic_error("encode_model: a model that needs refinement runs Blocked");
    EncodedModel em;
    em.refine = std::move(refine);
    em.logits = encode_logits(model);
    em.blocked = encode_blocked(em.logits);
    if (hopper) em.hopper = std::make_unique<HopperModel>(encode_hopper(model, em.logits, !fast));
    em.center.assign(model.d, 0.f);
    if (center) std::copy(center, center + model.d, em.center.begin());
    return em;
}

EncodedModel encode_full_model(const GmmModel& model, const float* center) {
    EncodedModel em;
    em.full = std::make_unique<FullModel>(encode_full(model));
    em.center.assign(model.d, 0.f);
    if (center) std::copy(center, center + model.d, em.center.begin());
    return em;
}

} // namespace faiss_gmm::gpu::detail
