// Rounding-error bounds of the CUDA E-step against the float64 reference, from the kernels'
// arithmetic: the GPU twin of tests/error_bounds.h (estep_error_bound), which bounds the CPU
// E-step, and whose reference-side analysis (EStepRowErrors: the reference's own error) and
// notation (Higham's γ_n = n·u/(1 − n·u), first order) this reuses. Host-only: no CUDA here.
//
// Every algorithm evaluates the same logit, in log2 units (gpu/detail/ModelEncoding.h):
//   logit2_k(x) = Σ_e w_ke·f_e(x) + bias_k + acoef_k·‖x‖²,  f = [x'] or [x' | x'²], x' = x − c,
// the Dfeat products in a GEMM (the mode's operand format, fp32 accumulation), bias and acoef
// rounded to float, ‖x'‖² a float sum. With T_k = Σ_e |w_ke f_e| and A_k = |bias_k| + |acoef_k|‖x'‖²:
//   |δ2_k| <= prod·T_k + γ_{Dfeat+4}(acc)·(T_k + A_k) + γ_{d+4}(2^-24)·A_k + 8·2^-53·(T_k + A_k)
// (operand roundings, the accumulation in any order, the float terms, the encoding in double),
// and δ_k = ln 2·δ2_k in nats. The mode's parameters (GpuArithmetic):
//   prod  operand roundings of one product w·f: fp32 2·2^-24 (x' and w rounded to float);
//         TF32 2·2^-10 + 2·2^-24 (10-bit mantissas, truncation allowed); fp16 2·2^-11 + 2·2^-24;
//         2×fp16 (hi + lo halves, lo·lo dropped) 3·2^-22 + 2·2^-24
//   acc   fp32 accumulation: 2^-24 (cuBLAS fp32), 2^-23 on tensor cores (TF32, wgmma: alignment
//         without rounding to nearest, Fasi, Higham, Mikaitis, Pranesh, "Numerical behavior of
//         NVIDIA tensor cores", PeerJ CS 2021)
//   exp   relative error of one exponential: exp2f 2 ulp (CUDA Programming Guide, mathematical
//         functions) and ex2.approx (PTX ISA) both within 2^-21, used for both; log2 likewise
//         2^-21 absolute per unit of |log2 Z| + 1
//   resp  rounding of a responsibility entering Rᵀ·F: fp32 2^-24, TF32 2^-10, fp16 3·2^-11 (e and
//         the normalizer f stored as halves, their half product), 2×fp16 2^-22 (+ 2^-24 float)
//   feat  rounding of a feature entering Rᵀ·F: fp32 2^-24 (x' = fl(x − c)), TF32 2^-10,
//         fp16 2^-11, 2×fp16 2^-22 (+ 2^-24); the column of ones is exact; ‖x'‖² adds γ_{d+1}
//   abs   absolute errors of halves below fp16's normal range (2^-14 after the kernels' power-of-two
//         scales): a responsibility 2^-24 (fp16) / 2^-36 (2×fp16, r·2^12 split), a feature
//         2^-24·max_j |x'_j| (fast) / 2^-36·max_j |x'_j| (accurate); 0 for fp32 and TF32.
// A row's responsibilities (as reference_row in error_bounds.h, nothing dropped): the float sum of
// the K exponentials (each rescaled at most K times by the online max) is within
// η = γ_{2K+4}(2^-24 + exp) of exact, so |log Z̃ − log Z| <= δ_max + 2η + the log2's error + the
// float addition max + log2 s (2^-24·|log2 Z|); r̃_k = exp2(fl(logit2_k − log2 Z̃))·(1 ± exp) is
// within a_k = δ_k + Δ + 2^-24·|l_k − lse| + exp of log r_k, so |r̃ − r| <= r·expm1(a_k) = ρ_k r.
// The statistics: each product r̃·f̃ summed in fp32 over at most B rows (the partial one thread
// block or GEMM adds up: B = n covers every algorithm and chunking), the partials in double:
//   |Δ Σ r f| <= Σ_rows [ r|f|·((1 + ρ)(1 + resp)(1 + feat)(1 + γ_B(acc))(1 + γ_{n+8}(2^-53)) − 1)
//                        + abs_r·|f| + r·abs_f ],
// the second moments about the model's means formed from those raw sums (Σ r‖x'‖² − 2μ·Σ r x' +
// N‖μ‖², or per dimension) in double: their errors add, a row contributing r·Σ_j (|x'_j| + |μ_j|)²
// times the largest factor above (‖x'‖²'s own γ_{d+1} included). Rows within fp16's range after the
// scales (the encoder's ~4000× typical) are assumed: the tests' data are.
//
// 2×fp16 accumulates 3 products per operand pair (hi·hi + hi·lo + lo·hi, the wgmma of each into
// the same fp32 accumulator): the accumulation lengths are 3·Dfeat (logits) and 3·B (statistics),
// GpuArithmetic::products = 3.
//
// Two passes (K > 1024, Hopper; fast and accurate alike, Sm90Kernels.cuh / Sm90SplitKernels.cuh):
// pass 1 computes log2 Z̃ of every row from its logits l̃'_k (online max and float sum over the K
// components in column chains, merged across the 4 threads of a row: each exponential rescaled at
// most Kt + 2 ≤ K + 2 times, within η above), pass 2 recomputes the logits l̃_k with the same
// operands (possibly another wgmma shape) and takes r̃_k = exp2(fl(l̃_k − log2 Z̃)), one exponential,
// no normalizer. Both logit evaluations are within δ_k of exact (the same products and
// accumulation lengths), so |log Z̃ − log Z| is bounded by the one-pass terms (δ_max + 2η + log2's
// error + the float addition) and |log r̃_k − log r_k| <= δ_k + Δ + 2^-24·|l_k − lse| + exp: the
// one-pass a_k, whose normalizer f = exp2(m − log2 Z̃) adds an exponential that the two-pass kernel
// does not have (covered by the same `exp` term, counted once per row and component). Rows of the
// padding tile of pass 1 and padding components contribute exact zeros. So the bound below holds
// unchanged for the two-pass kernels: the responsibilities enter Rᵀ·F with the mode's resp and feat
// roundings (2×fp16: r·2^12 split in hi/lo halves, as in one pass), summed in fp32 over at most
// flush_tiles·64 ≤ B rows and then in double.
//
// Accurate diagonal models with d > 64 (Sm90DiagSplitKernels.cuh, two passes at any K, 32-row
// tiles): the logits are the same 2×fp16 products (Wh·Xh + Wl·Xh + Wh·Xl, fp32 accumulation
// over 3·Dfeat terms in one wgmma chain, transposed: M = components, N = rows), so δ_k is as
// above. log2 Z̃ is formed in three levels instead of an online chain: per warp, 2^(l − m_w) of
// its 16 components summed through 4 float additions (2 terms, 3 shuffle levels); per block of 128
// components, the 8 warps' sums rescaled by 2^(m_w − M_c) and added in order (8 additions); per row,
// the Kt blocks' sums rescaled by 2^(M_c − M) and added (Kt ≤ K additions). Each term thus carries
// 3 exponentials, 2 products and at most K + 12 additions: (K + 14)·2^-24 + 3·exp, within
// η = γ_{2K+4}(2^-24 + exp) for every K ≥ 1 (at K = 1: 15·2^-24 + 3·2^-21 < 6·(2^-24 + 2^-21)). Pass 2
// takes r̃_k = exp2(fl(l̃_k − log2 Z̃))·2^12 (one exponential, the power of two exact), split into hi/lo
// halves in registers as in one pass (resp 2^-22 + 2^-24, abs 2^-36), and sums r̃·f̃ in fp32 over at
// most flush_tiles·32 ≤ B rows, 3 products per operand pair, then in double. So the 2×fp16 bound
// below holds for these kernels unchanged.
// Fast mode runs the same two passes with one fp16 plane (K > 1024, or when asked): the logits are
// fp16 products (one per operand pair, fp32 accumulation over Dfeat terms), log2 Z̃ is formed in
// the same three levels (within η as above), and r̃·2^12 is rounded once to fp16 (2^-11 relative,
// within the fp16 resp of 3·2^-11; below fp16's normal range 2^-24·2^-12 absolute, within abs_r)
// before the fp32 sums over at most flush_tiles·32 ≤ B rows: the fp16 bound holds unchanged.
//
// The fast kernels with DP ≤ 128 (the one pass, K ≤ 1024, and the two passes of folded models) take
// bias_k and acoef_k‖x'‖² as products of GEMM1's last k-step (TileShapes.h: BiasColumn), not as
// float terms: with U = c_q·s_q‖x'‖² and the
// exact weights A = acoef_k/(kinv·s_q·c_q), B = bias_k/(kinv·c_b), each an fp16 hi + lo pair (lo·lo
// dropped), the products miss ≤ 3u²|A·U| + u²|B| + 2^-24(|A| + U + c_b) (u = 2^-11; the last term
// covers lo halves below fp16's normal range), in log2 units (× kinv)
//   3u²|acoef_k|‖x'‖² + u²|bias_k| + 2^-24·kinv·(|A| + U + c_b),
// and 5 more products enter the accumulation (γ_{Dfeat+9}). Rows whose U would pass 65504 get the
// rest of acoef_k‖x'‖² as one float difference and one fma: ≤ 2^-23·|acoef_k|‖x'‖² more. Both are
// added to every fast Hopper bound (those kernels, and the wide kernel of diagonal models with
// d > 64, which has the bias columns with a_k = 0), which then also covers the kernels that keep
// the float terms (the two passes of models that are not folded). Fast mode's weights have max|w̃|
// near 2^6, so weights below 2^-20 of the largest are fp16 subnormals: ≤ 2^-25 absolute in w̃
// units, 2^-25·kinv·Σ_e |f̃_e| in log2 units (f̃: the scaled features) for every fast Hopper kernel.
#pragma once

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"
#include "faiss_gmm/VectorSource.h"
#include "gpu/detail/ModelEncoding.h"
#include "tests/error_bounds.h"

namespace faiss_gmm::testing {

/// The arithmetic of one CUDA E-step mode (the parameters above).
struct GpuArithmetic {
    double prod, acc, exp, resp, feat, abs_r, abs_f;
    int products = 1; ///< products accumulated per operand pair (2×fp16: 3)
    bool fast_hopper = false; ///< fp16 weights near 2^6 (subnormals) and the bias columns (above)
};

constexpr double kU32 = 0x1p-24;
constexpr double kGpuExp = 0x1p-21; ///< exp2f / ex2.approx relative error; log2 absolute, per unit

inline GpuArithmetic gpu_arithmetic(bool hopper, bool fast) {
    if (!hopper && !fast) return {2 * kU32, kU32, kGpuExp, kU32, kU32, 0, 0};                      // Blocked fp32
    if (!hopper) return {2 * 0x1p-10 + 2 * kU32, 0x1p-23, kGpuExp, 0x1p-10, 0x1p-10, 0, 0};       // Blocked TF32
    if (fast) return {2 * 0x1p-11 + 2 * kU32, 0x1p-23, kGpuExp, 3 * 0x1p-11, 0x1p-11, 0x1p-24, 0x1p-24, 1, true}; // fp16
    return {3 * 0x1p-22 + 2 * kU32, 0x1p-23, kGpuExp, 0x1p-22 + kU32, 0x1p-22 + kU32, 0x1p-36, 0x1p-36, 3}; // 2×fp16
}

namespace detail_bounds {

/// gpu_estep_error_bound's per-row terms for rows [begin, end), added to `bound` (all of it but the
/// final log-likelihood sum term); returns Σ |log p(x)| of those rows.
inline double add_gpu_rows_bound(const GmmModel& m, const float* center, const VectorBlock& rows, int64_t begin,
                                 int64_t end, const GpuArithmetic& g, const gpu::detail::LogitModel& lm,
                                 const gpu::detail::HopperShape& hs, bool bias_columns, SufficientStats& bound) {
    const int64_t n = rows.n, K = m.K, d = m.d;
    const bool diag = m.covariance_type == CovarianceType::Diagonal;
    const double ln2 = std::log(2.0);
    const double g_prod = gamma(double(g.products * lm.Dfeat + 9), g.acc), g_float = gamma(double(d + 4));
    const double u2 = 0x1p-22, kinv = hs.kinv, fold_scale = double(hs.sq) * hs.cq; // (fast Hopper)
    const double g_rows = gamma(double(g.products * std::max<int64_t>(n, 1)), g.acc);
    const double g_outer = gamma_double(double(n) + 8);
    const double eta = gamma(double(2 * K + 4), kU32 + g.exp);
    const RowStatsTerms ref_terms{kUnitRoundoffDouble, kUnitRoundoffDouble, double(n + d), 0};
    EStepRowErrors row(m, center);
    std::vector<float> xf(static_cast<size_t>(d));
    std::vector<double> delta(static_cast<size_t>(K)), rho(static_cast<size_t>(K));
    double loglik_abs = 0;
    for (int64_t i = begin; i < end; i++) {
        rows.row_to_float(i, xf.data());
        row.analyse(xf.data());
        const std::vector<double>& xp = row.xp;
        double xx = 0, xmax = 0;
        for (double v : xp) {
            xx += v * v;
            xmax = std::max(xmax, std::fabs(v));
        }
        double wsub = 0; // fast Hopper: subnormal weights, the same for every component
        if (g.fast_hopper) {
            for (int64_t j = 0; j < d; j++)
                wsub += hs.sx * std::fabs(xp[size_t(j)]) + (diag ? hs.sq * xp[size_t(j)] * xp[size_t(j)] : 0.0);
            wsub *= 0x1p-25 * kinv;
        }
        double dmax = 0;
        for (int64_t k = 0; k < K; k++) {
            const double* w = lm.w.data() + k * lm.Dfeat;
            double T = 0;
            for (int64_t j = 0; j < d; j++) {
                T += std::fabs(w[j] * xp[size_t(j)]);
                if (diag) T += std::fabs(w[d + j]) * xp[size_t(j)] * xp[size_t(j)];
            }
            const double ab = std::fabs(double(lm.bias[size_t(k)])), aa = std::fabs(double(lm.acoef[size_t(k)]));
            const double A = ab + aa * xx;
            const double fold = bias_columns ? 3 * u2 * aa * xx + u2 * ab + 0x1p-23 * aa * xx +
                                                       kU32 * kinv * (aa / (kinv * fold_scale) + fold_scale * xx + hs.cb)
                                             : 0.0;
            delta[size_t(k)] = ln2 * (g.prod * T + g_prod * (T + A) + g_float * A + fold + wsub + 8 * kUnitRoundoffDouble * (T + A));
            dmax = std::max(dmax, delta[size_t(k)]);
        }
        // log Z̃: the sum's 2η, log2's error, the float addition (in nats).
        const double lse2 = std::fabs(row.lse) / ln2;
        const double dlse = dmax + 2 * eta + ln2 * (kGpuExp * (lse2 + 1) + kU32 * (lse2 + 1));
        for (int64_t k = 0; k < K; k++) {
            const double a = delta[size_t(k)] + dlse + kU32 * std::fabs(row.l[size_t(k)] - row.lse) + g.exp;
            rho[size_t(k)] = std::expm1(std::min(a, 50.0)); // (capped: a bound past e^50 is as good as none)
        }
        bound.loglik += dlse + row.ref.loglik;
        loglik_abs += std::fabs(row.lse);
        for (int64_t k = 0; k < K; k++) {
            const double r = row.r[size_t(k)], rh = rho[size_t(k)];
            const double f = grow(grow(grow(grow(rh, g.resp), g.feat), g_rows), g_outer);
            const double fn = grow(grow(grow(rh, g.resp), g_rows), g_outer); // the column of ones is exact
            bound.nk[size_t(k)] += r * fn + g.abs_r;
            double s2 = 0;
            for (int64_t j = 0; j < d; j++) {
                const double ax = std::fabs(xp[size_t(j)]), am = std::fabs(double(m.means[size_t(k * d + j)]));
                bound.sum_x[size_t(k * d + j)] += r * ax * f + g.abs_r * ax + r * g.abs_f * xmax;
                const double p = (ax + am) * (ax + am);
                if (diag) bound.sum_sq[size_t(k * d + j)] += r * p * grow(f, kU32) + g.abs_r * p + 3 * r * g.abs_f * xmax * (ax + am);
                s2 += p;
            }
            if (!diag) {
                bound.sum_sq[size_t(k)] += r * s2 * grow(f, gamma(double(d + 1))) + g.abs_r * s2 +
                                           3 * r * g.abs_f * xmax * std::sqrt(double(d) * s2);
            }
        }
        add_row_stats_bound(ref_terms, m, xp, row.r, row.ref.rho, row.dist, row.dist_err_ref, bound);
    }
    return loglik_abs;
}

} // namespace detail_bounds

/// Elementwise bound of |CUDA E-step − reference_estep| (loglik, nk, sum_x, sum_sq; n exact) for
/// the model m given with `center`, the rows, and the mode's arithmetic: the GPU's error against
/// exact arithmetic (above) plus the reference's own (error_bounds.h). Rows are analysed on up to
/// 16 threads (each its own range; the bound is a sum of per-row terms).
inline SufficientStats gpu_estep_error_bound(const GmmModel& m, const float* center, const VectorBlock& rows,
                                             const GpuArithmetic& g) {
    const int64_t n = rows.n;
    const gpu::detail::LogitModel lm = gpu::detail::encode_logits(m);
    // The fast kernels' scales (kinv, s_q, c_q, c_b), for the bias columns' absolute terms.
    // (d > 128 runs Blocked.)
    gpu::detail::HopperShape hs;
    GpuArithmetic ga = g;
    ga.fast_hopper = g.fast_hopper && m.d <= 128;
    const bool bias_columns = ga.fast_hopper;
    if (ga.fast_hopper) hs = gpu::detail::encode_hopper(m, lm, false);
    const int nt = int(std::clamp<int64_t>(std::min<int64_t>(std::thread::hardware_concurrency(), 16), 1,
                                           std::max<int64_t>(1, n / 64)));
    std::vector<SufficientStats> parts(static_cast<size_t>(nt), SufficientStats(m.K, m.d, m.covariance_type));
    std::vector<double> abs_ll(static_cast<size_t>(nt), 0.0);
    std::vector<std::thread> threads;
    for (int t = 0; t < nt; t++) {
        threads.emplace_back([&, t] {
            abs_ll[size_t(t)] = detail_bounds::add_gpu_rows_bound(m, center, rows, n * t / nt, n * (t + 1) / nt, ga, lm, hs, bias_columns,
                                                                  parts[size_t(t)]);
        });
    }
    for (auto& th : threads) th.join();
    SufficientStats bound(m.K, m.d, m.covariance_type);
    double loglik_abs = 0;
    for (int t = 0; t < nt; t++) {
        bound.add(parts[size_t(t)]);
        loglik_abs += abs_ll[size_t(t)];
    }
    bound.loglik += 2 * gamma_double(double(n) + 8) * loglik_abs;
    bound.n = 0;
    return bound;
}

} // namespace faiss_gmm::testing
