// Full covariance matrices (issue 17) on the CPU: the model's factorization and
// log-density, the blocked E-step's statistics against the float64 reference with
// the error bound written beside each check (random SPD and ill-conditioned
// covariances, d up to 128, ragged shapes, a cancelling far-away narrow component),
// the M-step against a direct computation, the errors (not positive definite, the
// device choice), posteriors, the factory and save/load.
#include <gtest/gtest.h>

#include <faiss/IndexIVF.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "faiss_gmm/EStep.h"
#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/ExactLogDensity.h"
#include "faiss_gmm/GmmPosteriors.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/em_steps.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/gmm_io.h"
#include "faiss_gmm/ivf_lookup.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using faiss_gmm::testing::expect_error;
using faiss_gmm::testing::random_model;
using faiss_gmm::testing::random_spd;

namespace {

constexpr double kU = 5.9604644775390625e-08;   // float32 unit roundoff 2^-24
constexpr double kEps = 1.1102230246251565e-16; // float64 unit roundoff 2^-53
constexpr double kLog2Pi = 1.8378770664093454835606594728112;

double gamma(double n, double u = kU) { return n * u / (1 - n * u); }

/// log N(diff; 0, Σ) in long double straight from Σ (Gaussian elimination with
/// partial pivoting: log det from the pivots, Σ⁻¹·diff by substitution), sharing
/// nothing with GmmModel's Cholesky code.
long double direct_log_density(const std::vector<double>& cov, const std::vector<double>& diff, int64_t d) {
    std::vector<long double> a(size_t(d * (d + 1)));
    for (int64_t i = 0; i < d; i++) {
        for (int64_t j = 0; j < d; j++) a[i * (d + 1) + j] = cov[i * d + j];
        a[i * (d + 1) + d] = diff[i];
    }
    long double log_det = 0;
    const int64_t w = d + 1;
    for (int64_t c = 0; c < d; c++) {
        int64_t p = c;
        for (int64_t r = c + 1; r < d; r++) {
            if (std::fabs(a[r * w + c]) > std::fabs(a[p * w + c])) p = r;
        }
        for (int64_t j = 0; j < w; j++) std::swap(a[c * w + j], a[p * w + j]);
        log_det += std::log(std::fabs(a[c * w + c]));
        for (int64_t r = c + 1; r < d; r++) {
            const long double f = a[r * w + c] / a[c * w + c];
            for (int64_t j = c; j < w; j++) a[r * w + j] -= f * a[c * w + j];
        }
    }
    std::vector<long double> z(d);
    for (int64_t i = d - 1; i >= 0; i--) {
        long double s = a[i * w + d];
        for (int64_t j = i + 1; j < d; j++) s -= a[i * w + j] * z[j];
        z[i] = s / a[i * w + i];
    }
    long double quad = 0;
    for (int64_t i = 0; i < d; i++) quad += diff[i] * z[i];
    return -0.5L * (d * kLog2Pi + log_det + quad);
}

double max_abs(const std::vector<double>& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::fabs(x));
    return m;
}

} // namespace

TEST(FullCovariance, FactorRoundTripAndLogJointAgreeWithTheCovariance) {
    std::mt19937_64 rng{170};
    for (int64_t d : {1, 2, 5, 33, 128}) {
        for (double cond : {4.0, 1e4}) {
            const std::vector<double> cov = random_spd(d, 2.0, cond, rng);
            GmmModel m(1, d, CovarianceType::Full);
            m.set_covariance(0, cov.data());
            m.validate();
            // U is stored in float32: each entry is off by u relatively, so U Uᵀ = Σ⁻¹ + E with
            // ‖E‖ <= (2u + u²)·d·max|U|² <= (2d+1)u·‖Σ⁻¹‖ (|U_ij| <= ‖U‖₂ = ‖Σ⁻¹‖^½), and the
            // covariance it encodes differs from Σ by <= cond·(2d+1)u·‖Σ‖ / (1 − cond·(2d+1)u);
            // the double arithmetic of set_covariance/covariance adds O(d·cond·2^-53).
            const std::vector<double> back = m.covariance(0);
            const double rel = cond * (2 * d + 1) * kU / (1 - cond * (2 * d + 1) * kU) + 64 * d * cond * kEps;
            double err = 0;
            for (size_t i = 0; i < cov.size(); i++) err = std::max(err, std::fabs(back[i] - cov[i]));
            EXPECT_LE(err, rel * max_abs(cov)) << "d=" << d << " cond=" << cond;
            // log_joint (double, from U) against the density of the covariance U encodes
            // (in long double from back = Σ̃): both evaluate the same model; the gap is double
            // rounding, bounded by 64·d·cond·2^-53 of (|log det| + quad + d) (triangular
            // inversion and Gaussian elimination are backward stable with O(d) growth).
            std::normal_distribution<double> g;
            std::vector<double> x(d), diff(d);
            for (int t = 0; t < 5; t++) {
                for (int64_t j = 0; j < d; j++) {
                    x[j] = double(m.means[j]) + 3 * g(rng) * std::sqrt(back[j * d + j]);
                    diff[j] = x[j] - double(m.means[j]);
                }
                const long double want = direct_log_density(back, diff, d);
                const double got = m.log_joint(x.data(), 0) - double(m.log_weights[0]);
                const double scale = std::fabs(double(want)) + 10 * d * std::log(cond + 1) + d;
                EXPECT_NEAR(got, double(want), 64 * d * cond * kEps * scale) << "d=" << d << " cond=" << cond;
            }
        }
    }
}

namespace {

/// The E-step's statistics against reference_estep, each value within the bound
/// derived from the error of the float32 log-densities, per (row n, component k):
///  * E_nk = bound + 2u(|c_k| + t): the float32 form is within full_log_density_error's bound;
///    a pair whose bound exceeds the refinement threshold max(kRefineTolerance,
///    kRefineRelative·t) is recomputed in double (refined: bound → 0) unless it is more than
///    kRefineWindow nats below the row's best; plus the rounding of c_k and of c_k − t in
///    float (t = ½ quad, exact here; the double recomputation's own error is far below it);
///  * log p(x_n) = lse is off by at most L_n = log Σ_k r_nk e^{E_nk} (each term of the sum
///    off by a factor <= e^{E_nk}), so r_nk = exp(s_k − lse) by a factor <= e^{E_nk + L_n},
///    plus the fast exp (~2 ulp), the float sum of K terms (γ_K) and the division (u):
///    |Δr| <= r·(expm1(E + L) + 4u + γ_K + u) + 1e-12 (responsibilities below 1e-12 of the
///    row's largest are dropped). A pair more than kRefineWindow nats below the row's best
///    may keep an unrefined value; its true and computed r are both below e^-kRefineWindow;
///  * block sums run in float over B rows (γ_B of the absolute terms) after rounding x − c
///    (u) and, for the second moment, √r and x − μ (2u each, squared: 8u in all):
///    |Δ N_k| <= Σ_n Δr + γ_B N_k, |Δ Σ r x| <= Σ_n (Δr + (γ_B + 2u) r)|x|,
///    |Δ S_ab| <= Σ_n (Δr + (γ_B + 8u) r)|x_a − μ_a||x_b − μ_b|, |Δ loglik| <= Σ_n (L_n + γ_K + 2u|lse|).
/// Returns the largest relative error bound of a responsibility seen (how tight this is).
/// The row bounds a trainer would give StatsAccumulator::set_row_bounds for these rows
/// (x − center) and means: |x_j| <= x_bound, r·|(x − μ)_a (x − μ)_b| <= (‖x‖ + ‖μ‖)² <= sq_bound.
std::pair<double, double> row_bounds(const GmmModel& m, const std::vector<float>& center,
                                     const std::vector<float>& x) {
    double x_bound = 0, mean_norm = 0;
    for (size_t i = 0; i < x.size(); i++) {
        x_bound = std::max(x_bound, std::fabs(double(x[i]) - double(center[i % center.size()])));
    }
    for (float v : m.means) mean_norm = std::max(mean_norm, double(std::fabs(v)));
    return {x_bound, std::pow(std::sqrt(double(m.d)) * (x_bound + mean_norm), 2)};
}

/// reproducible: the statistics of accumulate_reproducible instead of accumulate(): the same
/// float block sums, then double sums over a reproducible block's sub-blocks and a deposit
/// truncated at 2^-96 of the grid's scale (far below the 1e-12 per pair allowed below).
double expect_stats_within_bound(const GmmModel& m, const std::vector<float>& center, int64_t n,
                                 const std::vector<float>& x, int block, const std::string& where,
                                 int64_t scratch = EStepCpu::kDefaultFullScratchFloats, bool reproducible = false) {
    const int64_t K = m.K, d = m.d, nsq = SufficientStats::nsq_of(CovarianceType::Full, d);
    EStepCpu estep(block, 0, scratch);
    estep.set_model(m, center.data());
    SufficientStats got(K, d, CovarianceType::Full), ref(K, d, CovarianceType::Full);
    if (reproducible) {
        StatsAccumulator acc(K, d, CovarianceType::Full);
        const auto bounds = row_bounds(m, center, x);
        acc.set_row_bounds(bounds.first, bounds.second);
        estep.accumulate_reproducible(VectorBlock{x.data(), DataType::Float32, n, d}, acc);
        acc.result(got);
    } else {
        estep.accumulate(VectorBlock{x.data(), DataType::Float32, n, d}, got);
    }
    reference_estep(m, center.data(), n, x.data(), ref);

    const ExactLogDensity e = exact_log_density(m, center.data());
    const std::vector<double> c = m.log_constants();
    const double gb = gamma(double(block)), gk = gamma(double(K)), window = std::exp(-double(kRefineWindow));
    std::vector<double> tol_nk(K, 0.0), tol_x(size_t(K * d), 0.0), tol_sq(size_t(K * nsq), 0.0);
    std::vector<double> xd(d), logp(K), err(K);
    double tol_loglik = 0, worst_rel = 0;
    for (int64_t i = 0; i < n; i++) {
        double xn = 0;
        for (int64_t j = 0; j < d; j++) {
            xd[j] = double(x[i * d + j]) - double(center[j]);
            xn += xd[j] * xd[j];
        }
        double mx = -INFINITY;
        for (int64_t k = 0; k < K; k++) {
            logp[k] = m.log_joint(xd.data(), k);
            mx = std::max(mx, logp[k]);
            const double t = c[k] - logp[k];
            const double a = double(e.err_slope[k]) * std::sqrt(xn) + double(e.err_offset[k]);
            const double bound = full_log_density_error(float(a), float(t), d) * (1 + 1e-6); // its float evaluation
            // Refined (recomputed in double) when the bound exceeds the threshold: the E-step
            // decides on its own float values, so within 1 % of the threshold either may happen.
            const double threshold = std::max(double(kRefineTolerance), double(kRefineRelative) * t);
            const bool refined = bound > 1.01 * threshold;
            err[k] = (refined ? 0.0 : bound) + 2 * kU * (std::fabs(c[k]) + t);
        }
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += std::exp(logp[k] - mx);
        const double lse = mx + std::log(s);
        double lerr = 0;
        for (int64_t k = 0; k < K; k++) {
            if (logp[k] >= mx - kRefineWindow) lerr += std::exp(logp[k] - lse + err[k]);
        }
        lerr = std::log(std::max(lerr, 1.0));
        tol_loglik += lerr + gk + 2 * kU * std::fabs(lse);
        for (int64_t k = 0; k < K; k++) {
            const double r = std::exp(logp[k] - lse);
            const double rel = logp[k] < mx - kRefineWindow ? 0 : std::expm1(err[k] + lerr) + 5 * kU + gk;
            const double dr = r * rel + (logp[k] < mx - kRefineWindow ? 2 * window : 0) + 1e-12;
            if (r > 1e-3) worst_rel = std::max(worst_rel, rel);
            tol_nk[k] += dr + gb * r;
            for (int64_t a = 0; a < d; a++) {
                const double da = std::fabs(xd[a] - double(m.means[k * d + a]));
                tol_x[k * d + a] += (dr + (gb + 2 * kU) * r) * std::fabs(xd[a]);
                for (int64_t b = a; b < d; b++) {
                    tol_sq[k * nsq + SufficientStats::sq_index(a, b, d)] +=
                            (dr + (gb + 8 * kU) * r) * da * std::fabs(xd[b] - double(m.means[k * d + b]));
                }
            }
        }
    }
    EXPECT_EQ(got.n, ref.n) << where;
    EXPECT_NEAR(got.loglik, ref.loglik, tol_loglik) << where;
    for (int64_t k = 0; k < K; k++) EXPECT_NEAR(got.nk[k], ref.nk[k], tol_nk[k]) << where << " nk " << k;
    for (size_t i = 0; i < ref.sum_x.size(); i++) {
        EXPECT_NEAR(got.sum_x[i], ref.sum_x[i], tol_x[i]) << where << " sum_x " << i;
    }
    for (size_t i = 0; i < ref.sum_sq.size(); i++) {
        EXPECT_NEAR(got.sum_sq[i], ref.sum_sq[i], tol_sq[i]) << where << " sum_sq " << i;
    }
    return worst_rel;
}

struct Shape {
    int64_t n, d, K;
    int block;
};

} // namespace

class FullEStepShapes : public ::testing::TestWithParam<std::tuple<int, double>> {};

TEST_P(FullEStepShapes, MatchesFloat64ReferenceWithinTheBound) {
    // Ragged shapes: d = 1, d not a multiple of 8, K = 1, N below / not a multiple of the block, d = 128.
    static const Shape kShapes[] = {{1, 3, 1, 256},    {7, 5, 3, 256},     {513, 13, 40, 64},
                                    {300, 64, 20, 128}, {257, 128, 8, 256}, {130, 1, 4, 7}};
    const int idx = std::get<0>(GetParam());
    const Shape sh = kShapes[idx];
    const double cond = std::get<1>(GetParam());
    const uint64_t seed = 1700 + uint64_t(idx) * 13 + uint64_t(cond);
    std::vector<float> centers;
    const std::vector<float> x = clustered_data(sh.n, sh.d, sh.K, 1.0f, seed, &centers);
    GmmModel m = random_model(sh.K, sh.d, CovarianceType::Full, 1.0f, seed + 1, &centers);
    std::mt19937_64 rng{seed + 2};
    for (int64_t k = 0; k < sh.K; k++) m.set_covariance(k, random_spd(sh.d, 1.5, cond, rng).data());
    std::vector<float> center(sh.d);
    std::normal_distribution<float> g;
    for (auto& v : center) v = 0.1f * g(rng);
    const double worst = expect_stats_within_bound(m, center, sh.n, x, sh.block,
                                                   "n=" + std::to_string(sh.n) + " d=" + std::to_string(sh.d) +
                                                           " K=" + std::to_string(sh.K) + " cond=" +
                                                           std::to_string(cond));
    std::printf("n=%lld d=%lld K=%lld cond=%g: responsibilities (r > 1e-3) within %.2e relative\n",
                (long long)sh.n, (long long)sh.d, (long long)sh.K, cond, worst);
}

INSTANTIATE_TEST_SUITE_P(Shapes, FullEStepShapes,
                         ::testing::Combine(::testing::Range(0, 6), ::testing::Values(4.0, 1e3)));

TEST(FullCovariance, FarNarrowComponentIsRefined) {
    // A component 1e3 from the center with variances ~1e-4: X·U − μ·U cancels by
    // ~‖μ‖‖U‖ ≈ 1e3·1e2·√d, far beyond float32. Its rows are refined in double, from the
    // U_k in the product's banded layout: the narrow component first or last, in one
    // group of components or in groups of 2 (the last one ragged), d in one band or two.
    const int64_t n = 400, K = 3;
    const int block = 64;
    for (const int64_t d : {int64_t(16), EStepCpu::kFullBandColumns + 8}) {
        for (const int64_t narrow : {int64_t(0), K - 1}) {
            std::vector<float> centers;
            std::vector<float> x = clustered_data(n, d, K, 1.0f, 171, &centers);
            GmmModel m = random_model(K, d, CovarianceType::Full, 1.0f, 172, &centers);
            std::mt19937_64 rng{173};
            std::normal_distribution<float> g;
            for (int64_t j = 0; j < d; j++) m.means[narrow * d + j] = 1000.0f + float(j);
            m.set_covariance(narrow, random_spd(d, 1e-4, 10, rng).data());
            for (int64_t i = 0; i < n; i += 4) { // a quarter of the rows near the narrow component
                for (int64_t j = 0; j < d; j++) x[i * d + j] = m.means[narrow * d + j] + 0.005f * g(rng);
            }
            const std::vector<float> center(d, 0.0f);
            const ExactLogDensity e = exact_log_density(m, center.data());
            // The float32 form's bound on those rows: a ≈ slope·‖x‖, times ‖ŷ‖ ≥ 1 nat.
            EXPECT_GT(full_log_density_error(e.err_slope[narrow] * 4000.0f + e.err_offset[narrow], float(d) / 2, d),
                      1.0f);
            for (const int64_t scratch : {EStepCpu::kDefaultFullScratchFloats, 2 * int64_t(block) * d}) {
                const std::string what = "far narrow component " + std::to_string(narrow) + ", d " +
                                         std::to_string(d) + ", scratch " + std::to_string(scratch);
                const double worst = expect_stats_within_bound(m, center, n, x, block, what, scratch);
                // At d = 16 every pair that carries responsibility and may have cancelled is
                // refined, which keeps the bound tight; at d = 40 the unrefined float bounds
                // of the other components (∝ d) dominate it, so only the statistics are checked.
                if (d == 16) EXPECT_LT(worst, 1e-2) << "the refined pairs' bound, " << what;
            }
        }
    }
}

TEST(FullCovariance, MStepIsTheDirectCovarianceWithRegularizationAndFloor) {
    const int64_t n = 3000, d = 6, K = 4;
    std::vector<float> centers;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 174, &centers);
    const GmmModel model = random_model(K, d, CovarianceType::Full, 1.0f, 175, &centers); // no empty component
    SufficientStats stats(K, d, CovarianceType::Full);
    reference_estep(model, nullptr, n, x.data(), stats);
    GmmParams p;
    p.reg_covar = 1e-3;
    GmmModel got = model;
    const em::MStepResult r = em::m_step(stats, p, 0.0, got);
    EXPECT_EQ(r.nfloored, 0);
    ASSERT_TRUE(r.empty.empty());
    // Direct: responsibilities from the E-step's model, new means, Σ r (x − μ_new)(x − μ_new)ᵀ / N_k + reg·I.
    std::vector<double> xd(d), lp(K);
    std::vector<double> nk(K, 0), mean(size_t(K * d), 0), cov(size_t(K * d * d), 0);
    std::vector<std::vector<double>> resp(n, std::vector<double>(K));
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++) xd[j] = x[i * d + j];
        double mx = -INFINITY, s = 0;
        for (int64_t k = 0; k < K; k++) mx = std::max(mx, lp[k] = model.log_joint(xd.data(), k));
        for (int64_t k = 0; k < K; k++) s += std::exp(lp[k] - mx);
        for (int64_t k = 0; k < K; k++) {
            resp[i][k] = std::exp(lp[k] - mx) / s;
            nk[k] += resp[i][k];
            for (int64_t j = 0; j < d; j++) mean[k * d + j] += resp[i][k] * xd[j];
        }
    }
    for (int64_t k = 0; k < K; k++) {
        for (int64_t j = 0; j < d; j++) mean[k * d + j] /= nk[k];
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < K; k++) {
            for (int64_t a = 0; a < d; a++) {
                for (int64_t b = 0; b < d; b++) {
                    cov[(k * d + a) * d + b] += resp[i][k] * (x[i * d + a] - mean[k * d + a]) *
                                                (x[i * d + b] - mean[k * d + b]) / nk[k];
                }
            }
        }
    }
    for (int64_t k = 0; k < K; k++) {
        std::vector<double> want(cov.begin() + k * d * d, cov.begin() + (k + 1) * d * d);
        for (int64_t j = 0; j < d; j++) want[j * d + j] += p.reg_covar;
        // The stored float32 factor encodes Σ within cond·(2d+1)u·‖Σ‖ (see the first test);
        // cond <= max Σ_jj·‖Σ⁻¹‖ is bounded here by the trace over the regularization.
        double trace = 0;
        for (int64_t j = 0; j < d; j++) trace += want[j * d + j];
        const double cond = trace / p.reg_covar;
        const std::vector<double> back = got.covariance(k);
        for (size_t i = 0; i < want.size(); i++) {
            EXPECT_NEAR(back[i], want[i], cond * (2 * d + 1) * kU * 2 * max_abs(want) + 1e-12) << "k=" << k;
        }
        EXPECT_NEAR(std::exp(double(got.log_weights[k])), nk[k] / n, 1e-6);
        for (int64_t j = 0; j < d; j++) EXPECT_NEAR(got.means[k * d + j], mean[k * d + j], 4 * kU * max_abs(mean) + 1e-9);
    }
    // A floor above some eigenvalues raises those to it.
    GmmModel floored = model;
    const double floor = 1.05; // the clusters' eigenvalues are ~1 (unit-variance blobs): some below, some above
    const em::MStepResult rf = em::m_step(stats, p, floor, floored);
    EXPECT_GT(rf.nfloored, 0);
    for (int64_t k = 0; k < K; k++) {
        const std::vector<double> s = floored.covariance(k);
        // λ_min >= floor ⇔ Σ − floor·I is positive semi-definite: its diagonal is >= 0 (up to the float storage).
        for (int64_t j = 0; j < d; j++) EXPECT_GE(s[j * d + j], floor * (1 - 1e-4)) << "k=" << k;
    }
}

TEST(FullCovariance, NotPositiveDefiniteNamesTheComponent) {
    // Component 1's mass lies on 3 rows in dimension 5: its covariance has rank 2.
    const int64_t d = 5, K = 2;
    SufficientStats s(K, d, CovarianceType::Full);
    const double rows[3][d] = {{1, 2, 0, 0, 1}, {0, 1, 1, 0, 0}, {2, 0, 1, 0, 1}};
    s.n = 103;
    s.nk = {100, 3};
    GmmModel m(K, d, CovarianceType::Full);
    for (int64_t k = 0; k < 1; k++) {
        for (int64_t a = 0; a < d; a++) s.sum_sq[SufficientStats::sq_index(a, a, d)] = 100; // N_0·I
    }
    for (const auto& row : rows) {
        for (int64_t a = 0; a < d; a++) {
            s.sum_x[d + a] += row[a];
            for (int64_t b = a; b < d; b++) {
                s.sum_sq[SufficientStats::nsq_of(CovarianceType::Full, d) + SufficientStats::sq_index(a, b, d)] +=
                        row[a] * row[b];
            }
        }
    }
    GmmParams p;
    GmmModel m1 = m;
    try {
        em::m_step(s, p, 0.0, m1);
        FAIL() << "a rank-2 covariance was accepted";
    } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("component 1"), std::string::npos) << what;
        EXPECT_NE(what.find("not positive definite"), std::string::npos) << what;
        EXPECT_NE(what.find("reg_covar"), std::string::npos) << what;
    }
    p.reg_covar = 1e-6; // scikit-learn's default makes it definite
    GmmModel m2 = m;
    EXPECT_NO_THROW(em::m_step(s, p, 0.0, m2));
    GmmModel m3 = m; // so does the eigenvalue floor
    p.reg_covar = 0;
    EXPECT_GT(em::m_step(s, p, 1e-3, m3).nfloored, 0);
}

TEST(FullCovariance, DeviceSelection) {
    // The CUDA E-step takes full models up to d = 128 (tests/gpu/test_estep_cuda_full.cu checks its
    // statistics); Auto picks it when a GPU is visible, and the CPU for larger d or without a GPU.
    GmmParams p;
    p.covariance_type = CovarianceType::Full;
    p.device = Device::Auto;
    const std::string small = make_estep(p, 4, 8)->name();
    EXPECT_EQ(small.rfind(cuda_available() ? "cuda" : "cpu", 0), 0u) << small;
    EXPECT_STREQ(make_estep(p, 4, 129)->name(), "cpu"); // d > 128: the CPU (a line on stderr with a GPU)
    p.device = Device::Cuda;
    try {
        make_estep(p, 4, 129);
        FAIL() << "Device::Cuda accepted a full-covariance model with d = 129";
    } catch (const std::exception& e) {
        // With a GPU: the limit is named; without one (or without the backend): the GPU is.
        const std::string what = e.what();
        EXPECT_NE(what.find(cuda_available() ? "d = 128" : "CUDA"), std::string::npos) << what;
    }
}

TEST(FullCovariance, PosteriorsMatchLogJoint) {
    const int64_t n = 300, d = 9, K = 5;
    std::vector<float> centers;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 176, &centers);
    const GmmModel m = random_model(K, d, CovarianceType::Full, 1.0f, 177, &centers);
    GmmPosteriors post(m, 64);
    std::vector<float> proba(size_t(n * K));
    std::vector<double> score(n);
    MemoryVectorSource src(n, d, x.data());
    post.predict_proba(src, proba.data());
    post.score_samples(src, score.data());
    std::vector<double> xd(d), lp(K);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++) xd[j] = x[i * d + j];
        double mx = -INFINITY, s = 0;
        for (int64_t k = 0; k < K; k++) mx = std::max(mx, lp[k] = m.log_joint(xd.data(), k));
        for (int64_t k = 0; k < K; k++) s += std::exp(lp[k] - mx);
        const double lse = mx + std::log(s);
        // Float32 evaluation in the mixture-mean frame: the log-densities are within the
        // E-step's bound (≈ 1e-4 nats here: d = 9, ‖x − c‖ ~ 10, ‖U‖_F ~ 3) plus the
        // rounding of c_k − t (u·(|c| + t) ~ 1e-5), so log p within 1e-3 and r within 1e-3.
        EXPECT_NEAR(score[i], lse, 1e-3) << i;
        for (int64_t k = 0; k < K; k++) EXPECT_NEAR(proba[i * K + k], std::exp(lp[k] - lse), 1e-3) << i;
    }
}

TEST(FullCovariance, FactoryTrainSaveLoad) {
    const int64_t n = 5000, d = 8, K = 16;
    std::vector<float> centers;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 178, &centers);
    GmmParams p;
    p.niter = 5;
    p.reg_covar = 1e-6;
    std::unique_ptr<faiss::Index> index(gmm_index_factory(d, "IVF16_GMMfull,Flat", faiss::METRIC_L2, p));
    index->train(n, x.data());
    index->add(n, x.data());
    const GmmQuantizer* q = find_gmm_quantizer(index.get());
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(q->model.covariance_type, CovarianceType::Full);
    q->model.validate();
    // The quantizer still returns true squared L2 to the means.
    std::vector<float> dist(size_t(n) * 2);
    std::vector<faiss::Index::idx_t> lab(size_t(n) * 2);
    q->search(50, x.data(), 2, dist.data(), lab.data());
    for (int64_t i = 0; i < 50; i++) {
        const float want = faiss::fvec_L2sqr(x.data() + i * d, q->model.means.data() + lab[i * 2] * d, d);
        EXPECT_NEAR(dist[i * 2], want, 1e-4f * (1 + want)) << i;
    }
    // Save / load keeps the model to the bit, in trailer version 5.
    const std::vector<uint8_t> bytes = serialize_gmm_index(index.get());
    GmmFileInfo info;
    std::unique_ptr<faiss::Index> back(deserialize_gmm_index(bytes.data(), bytes.size(), &info));
    EXPECT_TRUE(info.verified);
    EXPECT_EQ(info.gmm_version, 5u);
    const GmmQuantizer* qb = find_gmm_quantizer(back.get());
    ASSERT_NE(qb, nullptr);
    faiss_gmm::testing::expect_models_identical(qb->model, q->model, "round trip");
    EXPECT_EQ(qb->model.covariance_type, CovarianceType::Full);
    std::vector<float> d1(20 * 5), d2(20 * 5);
    std::vector<faiss::Index::idx_t> l1(20 * 5), l2(20 * 5);
    index->search(20, x.data(), 5, d1.data(), l1.data());
    back->search(20, x.data(), 5, d2.data(), l2.data());
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(d1, d2);
    // Version 4 (before full covariances) cannot hold one.
    EXPECT_THROW(detail::serialize_gmm_index_old_format(index.get(), 4), std::invalid_argument);
}

TEST(FullCovariance, ProductGroupSizeKeepsTheBoundAndTheReproducibility) {
    // The log-density product runs a group of components at a time (as many as fit
    // full_scratch_floats) in bands of kFullBandColumns columns of U_k: a memory/speed
    // knob. Every group size must stay within the float64 reference's bound, with
    // ragged last groups (K not a multiple of it), ragged last bands (d not a multiple
    // of the band width), d = 1 and d = 128. Not bit-identical across group sizes:
    // OpenBLAS picks its kernel by shape, and a product of another width may round an
    // entry differently (seen: the 9-row last block of n = 777, d = 70, K = 13). For
    // one configuration the products' shapes depend only on block_size, d, K and the
    // scratch, never on threads or on how the rows are cut into calls, so the
    // reproducible sums stay the same bits for any of those: checked here per size.
    struct Case {
        int64_t n, d, K;
        int block;
    };
    const int64_t band = EStepCpu::kFullBandColumns;
    for (const Case cs : {Case{300, 1, 5, 64}, Case{513, band + 1, 7, 128}, Case{777, 2 * band + 6, 13, 256},
                          Case{kReproducibleBlockRows + 257, 128, 9, 100}}) {
        std::vector<float> centers;
        const std::vector<float> x = clustered_data(cs.n, cs.d, cs.K, 1.0f, 1900 + uint64_t(cs.d), &centers);
        const GmmModel m = random_model(cs.K, cs.d, CovarianceType::Full, 1.0f, 1901, &centers);
        const auto [x_bound, sq_bound] = row_bounds(m, std::vector<float>(cs.d, 0.0f), x);
        auto reproducible = [&](int64_t scratch, int threads, int64_t call_rows) {
            EStepCpu estep(cs.block, threads, scratch);
            estep.set_model(m, nullptr);
            StatsAccumulator acc(cs.K, cs.d, CovarianceType::Full);
            acc.set_row_bounds(x_bound, sq_bound);
            for (int64_t i0 = 0; i0 < cs.n; i0 += call_rows) {
                estep.accumulate_reproducible(
                        VectorBlock{x.data() + i0 * cs.d, DataType::Float32, std::min(call_rows, cs.n - i0), cs.d},
                        acc);
            }
            SufficientStats s;
            acc.result(s);
            return s;
        };
        const int64_t per_component = int64_t(cs.block) * cs.d; // scratch floats of one component
        for (int64_t scratch : {int64_t(1), 2 * per_component + 1, 5 * per_component, int64_t(1) << 40}) {
            const std::string what = "n=" + std::to_string(cs.n) + " d=" + std::to_string(cs.d) +
                                     " K=" + std::to_string(cs.K) + ", scratch " + std::to_string(scratch);
            expect_stats_within_bound(m, std::vector<float>(cs.d, 0.0f), cs.n, x, cs.block, what, scratch);
            const SufficientStats want = reproducible(scratch, 1, cs.n);
            const SufficientStats got = reproducible(scratch, 2, kReproducibleBlockRows);
            EXPECT_EQ(got.loglik, want.loglik) << what;
            EXPECT_EQ(got.nk, want.nk) << what;
            EXPECT_EQ(got.sum_x, want.sum_x) << what;
            EXPECT_EQ(got.sum_sq, want.sum_sq) << what;
        }
    }
    EXPECT_THROW(EStepCpu(64, 1, 0), std::invalid_argument);
}

TEST(FullCovariance, ReproducibleSecondMomentsOfDenseBlocksAreFlushedByComponent) {
    // accumulate_reproducible lists a block's non-zero responsibilities and deposits each
    // component's second moment on its own; past kFullDeferredPairs pairs the list is
    // flushed mid-block. Overlapping components (every row carries every component), so
    // a 4096-row block holds 4096·K > kFullDeferredPairs pairs: flushed after the sub-block
    // that crossed it, then at the block's end. Within the float64 reference's bound, and
    // the same bits for any thread count or cut of the rows into calls.
    const int64_t K = 48, d = 6, n = 2 * kReproducibleBlockRows + 300;
    const int block = 256;
    std::vector<float> centers;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 2100, &centers);
    GmmModel m = random_model(K, d, CovarianceType::Full, 1.0f, 2101, &centers);
    std::mt19937_64 rng{2102};
    for (int64_t k = 0; k < K; k++) m.set_covariance(k, random_spd(d, 400.0, 4.0, rng).data()); // σ ≫ the spread of the means
    const std::vector<float> center(d, 0.0f);
    {
        // The premise: the first block's pairs above the E-step's cut-off exceed the list's limit.
        EStepCpu estep(block, 1);
        estep.set_model(m, nullptr);
        std::vector<float> log_resp(size_t(kReproducibleBlockRows * K));
        estep.log_responsibilities(VectorBlock{x.data(), DataType::Float32, kReproducibleBlockRows, d},
                                   log_resp.data(), nullptr);
        int64_t pairs = 0;
        for (float v : log_resp) pairs += v > -20.0f ? 1 : 0; // far above kNegligibleLogRatio's cut
        ASSERT_GT(pairs, EStepCpu::kFullDeferredPairs + int64_t(block) * K);
    }
    expect_stats_within_bound(m, center, n, x, block, "dense, reproducible", EStepCpu::kDefaultFullScratchFloats,
                              true);
    const auto bounds = row_bounds(m, center, x);
    auto reproducible = [&](int threads, int64_t call_rows) {
        EStepCpu estep(block, threads);
        estep.set_model(m, nullptr);
        StatsAccumulator acc(K, d, CovarianceType::Full);
        acc.set_row_bounds(bounds.first, bounds.second);
        for (int64_t i0 = 0; i0 < n; i0 += call_rows) {
            estep.accumulate_reproducible(
                    VectorBlock{x.data() + i0 * d, DataType::Float32, std::min(call_rows, n - i0), d}, acc);
        }
        SufficientStats s;
        acc.result(s);
        return s;
    };
    const SufficientStats want = reproducible(1, n);
    const SufficientStats got = reproducible(2, kReproducibleBlockRows);
    EXPECT_EQ(got.loglik, want.loglik);
    EXPECT_EQ(got.nk, want.nk);
    EXPECT_EQ(got.sum_x, want.sum_x);
    EXPECT_EQ(got.sum_sq, want.sum_sq);
}

namespace {

/// The statistics of x in two walks (EStep.h): walk 1 with listing, in calls of call_rows rows,
/// then walk 2 a group of `group` components at a time, each group's second moments copied into
/// the result at their place.
SufficientStats two_walk_stats(EStepCpu& estep, const GmmModel& m, const std::vector<float>& x, int64_t n,
                               int64_t call_rows, int64_t group, std::pair<double, double> bounds) {
    const int64_t K = m.K, d = m.d, nsq = SufficientStats::nsq_of(CovarianceType::Full, d);
    estep.set_model(m, nullptr);
    EXPECT_TRUE(estep.can_list_responsibilities());
    estep.begin_listing(INT64_MAX);
    StatsAccumulator first(K, d, CovarianceType::Full, false);
    first.set_row_bounds(bounds.first, bounds.second);
    auto call = [&](int64_t i0) {
        return VectorBlock{x.data() + i0 * d, DataType::Float32, std::min(call_rows, n - i0), d};
    };
    for (int64_t i0 = 0; i0 < n; i0 += call_rows) estep.accumulate_reproducible(call(i0), first);
    EXPECT_FALSE(estep.listing_overflowed());
    SufficientStats out;
    first.result(out);
    EXPECT_TRUE(out.sum_sq.empty());
    out.sum_sq.assign(size_t(K * nsq), 0.0);
    for (int64_t k0 = 0; k0 < K; k0 += group) {
        const int64_t ng = std::min(group, K - k0);
        StatsAccumulator acc(ng, d, CovarianceType::Full);
        acc.set_row_bounds(bounds.first, bounds.second);
        int64_t c = 0;
        for (int64_t i0 = 0; i0 < n; i0 += call_rows, c++) estep.accumulate_listed_second_moments(c, call(i0), k0, acc);
        SufficientStats s;
        acc.result(s);
        std::copy(s.sum_sq.begin(), s.sum_sq.end(), out.sum_sq.begin() + k0 * nsq);
    }
    estep.end_listing();
    return out;
}

} // namespace

TEST(FullCovariance, TwoWalksGiveTheBitsOfOne) {
    // Walk 1 lists the responsibilities, walk 2 sums the second moments a group of
    // components at a time from the lists: the deposits are those of the one-walk path
    // (per block, component and flush), so every statistic is the same bits, for any group
    // size, thread count and cut into calls. Sparse responsibilities (separated clusters),
    // and dense ones whose 4096-row blocks pass kFullDeferredPairs (the one-walk path flushes
    // mid-block: walk 2 must cut the components' sums at the same rows).
    struct Case {
        int64_t n, d, K;
        double spread; // covariance scale: 1 = clusters apart, 400 = every row on every component
    };
    for (const Case cs : {Case{2 * kReproducibleBlockRows + 300, 20, 11, 1.0},
                          Case{2 * kReproducibleBlockRows + 300, 6, 48, 400.0}}) {
        std::vector<float> centers;
        const std::vector<float> x = clustered_data(cs.n, cs.d, cs.K, 1.0f, 2200 + uint64_t(cs.K), &centers);
        GmmModel m = random_model(cs.K, cs.d, CovarianceType::Full, 1.0f, 2201, &centers);
        std::mt19937_64 rng{2202};
        for (int64_t k = 0; k < cs.K; k++) m.set_covariance(k, random_spd(cs.d, cs.spread, 4.0, rng).data());
        const auto bounds = row_bounds(m, std::vector<float>(cs.d, 0.0f), x);
        EStepCpu one_walk_estep(256, 2);
        one_walk_estep.set_model(m, nullptr);
        StatsAccumulator acc(cs.K, cs.d, CovarianceType::Full);
        acc.set_row_bounds(bounds.first, bounds.second);
        one_walk_estep.accumulate_reproducible(VectorBlock{x.data(), DataType::Float32, cs.n, cs.d}, acc);
        SufficientStats want;
        acc.result(want);
        const int64_t seen = one_walk_estep.responsibilities_seen();
        EXPECT_GE(seen, cs.n);
        if (cs.spread > 1) EXPECT_GT(seen, 2 * EStepCpu::kFullDeferredPairs); // the premise: mid-block flushes
        for (const auto& [threads, call_rows, group] :
             {std::tuple<int, int64_t, int64_t>{1, cs.n, cs.K}, {2, kReproducibleBlockRows, 1}, {2, cs.n, 5}}) {
            const std::string what = "K=" + std::to_string(cs.K) + " threads=" + std::to_string(threads) +
                                     " call_rows=" + std::to_string(call_rows) + " group=" + std::to_string(group);
            EStepCpu estep(256, threads);
            const SufficientStats got = two_walk_stats(estep, m, x, cs.n, call_rows, group, bounds);
            EXPECT_EQ(estep.responsibilities_seen(), seen) << what;
            EXPECT_EQ(got.n, want.n) << what;
            EXPECT_EQ(got.loglik, want.loglik) << what;
            EXPECT_EQ(got.nk, want.nk) << what;
            EXPECT_EQ(got.sum_x, want.sum_x) << what;
            EXPECT_EQ(got.sum_sq, want.sum_sq) << what;
        }
    }
}

TEST(FullCovariance, ListingMisuseIsRefusedWithAMessage) {
    // The two-walk protocol of EStep.h, called out of order or with other rows: each
    // refusal names what is wrong (the trainer never does these).
    const int64_t n = 600, d = 5, K = 4;
    std::vector<float> centers;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 2300, &centers);
    const GmmModel m = random_model(K, d, CovarianceType::Full, 1.0f, 2301, &centers);
    const auto bounds = row_bounds(m, std::vector<float>(d, 0.0f), x);
    const VectorBlock rows{x.data(), DataType::Float32, n, d};
    EStepCpu estep(64, 1);
    EXPECT_FALSE(estep.can_list_responsibilities()); // no model yet
    EXPECT_THROW(estep.begin_listing(100), std::logic_error);
    estep.set_model(random_model(K, d, CovarianceType::Diagonal, 1.0f, 2302, &centers), nullptr);
    EXPECT_FALSE(estep.can_list_responsibilities());
    EXPECT_EQ(estep.responsibilities_seen(), -1);
    estep.set_model(m, nullptr);
    StatsAccumulator first(K, d, CovarianceType::Full, false), all(K, d, CovarianceType::Full), group(2, d,
                                                                                                     CovarianceType::Full);
    for (StatsAccumulator* a : {&first, &all, &group}) a->set_row_bounds(bounds.first, bounds.second);
    // Walk 2 before walk 1, and first moments only without a listing.
    expect_error<std::logic_error>([&] { estep.accumulate_listed_second_moments(0, rows, 0, group); },
                                              "no complete listing");
    expect_error<std::invalid_argument>([&] { estep.accumulate_reproducible(rows, first); },
                                                   "needs begin_listing");
    estep.begin_listing(INT64_MAX);
    expect_error<std::invalid_argument>([&] { estep.accumulate_reproducible(rows, all); },
                                                   "must hold no second moments");
    estep.accumulate_reproducible(rows, first);
    expect_error<std::out_of_range>([&] { estep.accumulate_listed_second_moments(1, rows, 0, group); },
                                               "call 1 of walk 1's 1");
    expect_error<std::invalid_argument>(
            [&] { estep.accumulate_listed_second_moments(0, rows.slice(0, n - 1), 0, group); }, "had 600 rows");
    expect_error<std::invalid_argument>([&] { estep.accumulate_listed_second_moments(0, rows, 3, group); },
                                                   "components [3, 5)");
    estep.accumulate_listed_second_moments(0, rows, 2, group); // components 2 and 3: fine
    // A listing past its limit says so, and walk 2 is then refused.
    estep.begin_listing(10);
    estep.accumulate_reproducible(rows, first);
    EXPECT_TRUE(estep.listing_overflowed());
    EXPECT_THROW(estep.accumulate_listed_second_moments(0, rows, 0, group), std::logic_error);
    estep.end_listing();
    EXPECT_FALSE(estep.listing_overflowed());
}
