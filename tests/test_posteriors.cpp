// GmmPosteriors (faiss_gmm/GmmPosteriors.h), the one posterior API:
//  - against a direct float64 computation (GmmModel::log_joint and a log-sum-exp in
//    double) on fresh random inputs far from the origin, on siftsmall and on rows that
//    need EStepCpu's exact log-density refinement, within the bound stated at
//    `ErrorBound` (derived from the E-step's own error analysis, computed per entry);
//  - centered (the API's convention) and uncentered evaluation agree within the sum of
//    their two bounds;
//  - its users give what it gives, bit for bit: GmmQuantizer::posteriors() (built once
//    per model, rebuilt when the model changes), IndexIVFSpill's posterior rules, and
//    concurrent calls from several threads; predict / predict_proba / score_samples over
//    sources of every element type. (Python's use: tests/python/test_mixture.py.)
#include <gtest/gtest.h>

#include <faiss/IndexIVF.h>

#include <cmath>
#include <memory>
#include <random>
#include <thread>

#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/GmmPosteriors.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/IndexIVFSpill.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using namespace faiss_gmm::testing;

namespace {

constexpr double kU = 1.0 / (1 << 24); // float32 unit roundoff
// EStepCpu's refinement settings (EStepCpu.cpp): a log-density is recomputed in
// double unless its error bound is below kTol nats or below kRel of its quadratic
// term, or the component is more than kWindow nats below the row's best.
constexpr double kTol = 1e-6, kRel = 1e-4, kWindow = 16.2;

/// The float64 truth for one row: log p(x, k), log p(x), r_k.
struct Exact {
    std::vector<double> lj, r;
    double lse = 0;
};

Exact exact_row(const GmmModel& m, const float* xf) {
    std::vector<double> x(xf, xf + m.d);
    Exact e;
    e.lj.resize(size_t(m.K));
    double mx = -INFINITY;
    for (int64_t k = 0; k < m.K; k++) mx = std::max(mx, e.lj[size_t(k)] = m.log_joint(x.data(), k));
    double s = 0;
    for (double v : e.lj) s += std::exp(v - mx);
    e.lse = mx + std::log(s);
    for (double v : e.lj) e.r.push_back(std::exp(v - e.lse));
    return e;
}

/// ErrorBound: how far the float32 E-step evaluated in the frame of x − c may be from
/// the float64 truth, per entry. For a component k within kWindow nats of the row's
/// best log-density ("near"; the E-step refines every such component whose expanded
/// form may have cancelled, so it never skips one of them):
///   err_k   = slope_k·‖x − c‖² + offset_k, the E-step's bound of its expanded form
///             (EStepCpu::set_exact_form, same formula, model in the frame of c);
///   cap_k   = max(kTol, kRel·term_k), term_k = ½ Σ (x − μ_k)²/σ²: a component it does not
///             refine has err_k ≤ cap_k; one it refines is exact to rounding;
///   frame_k = u Σ_j |x_j − μ_kj| (|μ_kj − c_j| + |x_j − c_j|) / σ²_kj: the model's means
///             and the rows are moved to the frame of c in float32 (0 when c = 0);
///   e_k     = min(err_k, cap_k) + frame_k + 2u(|log p(x, k)| + |c_k| + term_k)
///             (the constant, the term and the result in float).
/// A "far" component (more than kWindow below the best) is either refined or skipped,
/// and a skipped one was computed below the best − kWindow, so its share of p(x) is at
/// most r_best·e^-kWindow however wrong its value. Hence, with the relative error of p(x)
/// between Σ_near r_k e^{−e_k} and Σ_near r_k e^{e_k} + Σ_far (r_k + r_best e^-kWindow):
///   |Δ log p(x)| ≤ the larger log of those + (K + 3)·2u (exp to 2 ulp, the sum, the log)
///                  + u|log p(x)| + K·1e-12 (entries below 1e-12 of the largest are dropped);
///   near: |Δ r_k| ≤ r_k·expm1(e_k + |Δ log p(x)| + u|log r_k|) + 1e-12;
///   far:  |Δ r_k| ≤ (r_k + r_best e^-kWindow)·e^{|Δ log p(x)|} + 1e-12.
struct Bound {
    double loglik = 0;
    std::vector<double> r;
};

Bound error_bound(const GmmModel& m, const std::vector<float>& c, bool centered, const float* xf, const Exact& ex) {
    const int64_t K = m.K, d = m.d;
    const bool sph = m.covariance_type == CovarianceType::Spherical;
    const std::vector<double> cst = m.log_constants();
    double xn = 0;
    for (int64_t j = 0; j < d; j++) xn += (double(xf[j]) - c[size_t(j)]) * (double(xf[j]) - c[size_t(j)]);
    const double best = *std::max_element(ex.lj.begin(), ex.lj.end());
    const double r_best = std::exp(best - ex.lse), far_share = r_best * std::exp(-kWindow);
    std::vector<double> e(static_cast<size_t>(K));
    std::vector<bool> far(static_cast<size_t>(K));
    double hi = 0, lo = 0;
    for (int64_t k = 0; k < K; k++) {
        const double rk = ex.r[size_t(k)];
        far[size_t(k)] = ex.lj[size_t(k)] < best - kWindow;
        if (far[size_t(k)]) {
            hi += rk + far_share;
            continue;
        }
        double max_inv = 0, mu_term = 0, mu_sq = 0, term = 0, frame = 0;
        for (int64_t j = 0; j < d; j++) {
            const double var = m.variance(k, j), mu = m.means[size_t(k * d + j)], muc = mu - c[size_t(j)];
            const double x = xf[j];
            max_inv = std::max(max_inv, 1.0 / var);
            mu_term += muc * muc / var;
            mu_sq += muc * muc;
            term += 0.5 * (x - mu) * (x - mu) / var;
            if (centered) frame += kU * std::fabs(x - mu) * (std::fabs(muc) + std::fabs(x - c[size_t(j)])) / var;
        }
        const double slope = sph ? kU * double(d + 3) * max_inv : kU * double(2 * d + 3) * max_inv;
        const double offset = sph ? slope * mu_sq : kU * double(2 * d + 3) * mu_term;
        const double err = slope * xn + offset;
        const double cap = std::max(kTol, kRel * term) * (1 + 1e-3);
        // The E-step's c_k is log_constants() of the model in its frame; |c_k| of either frame bounds its rounding.
        e[size_t(k)] = std::min(err, cap) + frame +
                       2 * kU * (std::fabs(ex.lj[size_t(k)]) + std::fabs(cst[size_t(k)]) + term);
        hi += rk * std::exp(e[size_t(k)]);
        lo += rk * std::exp(-e[size_t(k)]);
    }
    Bound b;
    b.loglik = std::max(std::log(hi), -std::log(lo)) + double(K + 3) * 2 * kU + kU * std::fabs(ex.lse) +
               double(K) * 1e-12;
    for (int64_t k = 0; k < K; k++) {
        const double rk = ex.r[size_t(k)], lr = std::fabs(ex.lj[size_t(k)] - ex.lse);
        b.r.push_back(far[size_t(k)] ? (rk + far_share) * std::exp(b.loglik) + 1e-12
                                     : rk * std::expm1(e[size_t(k)] + b.loglik + kU * lr) + 1e-12);
    }
    return b;
}

struct Outputs {
    std::vector<float> log_resp, loglik;
};

Outputs run_api(const GmmPosteriors& p, const std::vector<float>& x, int64_t n) {
    Outputs o{std::vector<float>(size_t(n * p.model().K)), std::vector<float>(static_cast<size_t>(n))};
    p.log_posteriors(VectorBlock{x.data(), DataType::Float32, n, p.model().d}, o.log_resp.data(), o.loglik.data());
    return o;
}

Outputs run_uncentered(const GmmModel& m, const std::vector<float>& x, int64_t n) {
    EStepCpu estep;
    estep.set_model(m, nullptr);
    Outputs o{std::vector<float>(size_t(n * m.K)), std::vector<float>(static_cast<size_t>(n))};
    estep.log_responsibilities(VectorBlock{x.data(), DataType::Float32, n, m.d}, o.log_resp.data(), o.loglik.data());
    return o;
}

/// Both evaluations against float64, each within its bound, and against each other
/// within the sum of the bounds. Returns the worst ratio error / bound seen.
double check_against_float64(const GmmModel& m, const std::vector<float>& x, int64_t n, const std::string& what) {
    const GmmPosteriors post(m);
    const Outputs api = run_api(post, x, n), unc = run_uncentered(m, x, n);
    const std::vector<float> zero(static_cast<size_t>(m.d), 0.0f);
    const int64_t K = m.K;
    int64_t bad_api = 0, bad_unc = 0, bad_pair = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const float* xi = x.data() + i * m.d;
        const Exact ex = exact_row(m, xi);
        const Bound bc = error_bound(m, post.center(), true, xi, ex), bu = error_bound(m, zero, false, xi, ex);
        auto check = [&](double got, double want, double bound, int64_t* bad) {
            const double err = std::fabs(got - want);
            if (!(err <= bound)) (*bad)++;
            worst = std::max(worst, err / bound);
        };
        check(api.loglik[size_t(i)], ex.lse, bc.loglik, &bad_api);
        check(unc.loglik[size_t(i)], ex.lse, bu.loglik, &bad_unc);
        check(api.loglik[size_t(i)], unc.loglik[size_t(i)], bc.loglik + bu.loglik, &bad_pair);
        for (int64_t k = 0; k < K; k++) {
            const double ra = std::exp(double(api.log_resp[size_t(i * K + k)]));
            const double ru = std::exp(double(unc.log_resp[size_t(i * K + k)]));
            check(ra, ex.r[size_t(k)], bc.r[size_t(k)], &bad_api);
            check(ru, ex.r[size_t(k)], bu.r[size_t(k)], &bad_unc);
            check(ra, ru, bc.r[size_t(k)] + bu.r[size_t(k)], &bad_pair);
        }
    }
    EXPECT_EQ(bad_api, 0) << what << ": centered (the API) beyond its bound";
    EXPECT_EQ(bad_unc, 0) << what << ": uncentered beyond its bound";
    EXPECT_EQ(bad_pair, 0) << what << ": centered and uncentered differ beyond the sum of their bounds";
    return worst;
}

} // namespace

TEST(GmmPosteriors, RandomInputsFarFromTheOriginMatchFloat64) {
    struct Shape {
        int64_t n, d, K;
    };
    for (Shape s : {Shape{400, 5, 3}, Shape{600, 16, 8}, Shape{700, 64, 33}}) {
        for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
            std::vector<float> centers;
            std::vector<float> x = clustered_data(s.n, s.d, s.K, 1.0f, 100 + uint64_t(s.d), &centers);
            GmmModel m = random_model(s.K, s.d, type, 1.0f, 200 + uint64_t(s.K), &centers);
            // Far from the origin (‖x‖² ≈ 1e4·d against unit variances): where centering matters.
            for (float& v : x) v += 100.0f;
            for (float& v : m.means) v += 100.0f;
            const std::string what = "n=" + std::to_string(s.n) + " d=" + std::to_string(s.d) + " K=" +
                                     std::to_string(s.K) + " " + to_string(type);
            const double worst = check_against_float64(m, x, s.n, what);
            RecordProperty(what, std::to_string(worst));
        }
    }
}

TEST(GmmPosteriors, SiftsmallMatchesFloat64) {
    std::unique_ptr<VecsFileSource> src;
    try {
        src = std::make_unique<VecsFileSource>(shared_dataset("siftsmall/siftsmall_base.fvecs"));
    } catch (const std::exception& e) {
        GTEST_SKIP() << "siftsmall not available: " << e.what();
    }
    const int64_t n = 1500, d = src->d(), K = 32;
    std::vector<float> x(size_t(n * d));
    read_as_float(*src, 0, n, x.data());
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmModel m(K, d, type); // in the data's own frame, as a trained quantizer holds it
        for (int64_t k = 0; k < K; k++) {
            for (int64_t j = 0; j < d; j++) m.means[size_t(k * d + j)] = x[size_t((k * 41 + 7) * d + j)];
        }
        // Per-dimension variance of SIFT around a cluster mean is a few hundred: some rows split.
        for (auto& v : m.variances) v = 1500.0f;
        check_against_float64(m, x, n, std::string("siftsmall ") + to_string(type));
    }
}

TEST(GmmPosteriors, RowsNeedingTheExactRefinementMatchFloat64) {
    // As EStepCpu.NarrowAndCollapsedComponentsHaveExactLogDensities, through the API:
    // rows near 1000 in every coordinate, a component of variance 1e-6 on row 0, one
    // collapsed onto row 1 (1e-9), near-duplicates, ordinary ones.
    const int64_t n = 400, d = 16;
    std::mt19937_64 rng(41);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(size_t(n * d));
    for (float& v : x) v = 1000.0f + g(rng);
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmModel m(6, d, type);
        auto set = [&](int64_t k, const float* mu, float var, float shift) {
            for (int64_t j = 0; j < d; j++) m.means[size_t(k * d + j)] = mu[j] + (j == 0 ? shift : 0.0f);
            for (int64_t j = 0; j < m.nvar(); j++) m.variances[size_t(k * m.nvar() + j)] = var;
        };
        set(0, &x[0], 1e-6f, 0);
        set(1, &x[size_t(d)], 1e-9f, 0);
        set(2, &x[size_t(20 * d)], 1.0f, 0);
        set(3, &x[size_t(20 * d)], 1.0f, 1e-4f);
        set(4, &x[size_t(5 * d)], 2.0f, 0);
        set(5, &x[size_t(9 * d)], 2.0f, 0);
        for (float& lw : m.log_weights) lw = float(std::log(1.0 / 6));
        check_against_float64(m, x, n, std::string("narrow components, ") + to_string(type));
        const Outputs api = run_api(GmmPosteriors(m), x, n);
        EXPECT_GT(api.log_resp[0], -1e-5f); // rows 0 and 1 belong to their narrow components
        EXPECT_GT(api.log_resp[size_t(m.K + 1)], -1e-5f);
    }
}

TEST(GmmPosteriors, SourceFunctionsAgreeWithLogPosteriors) {
    const int64_t n = 300, d = 7, K = 5;
    std::vector<float> centers;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 7, &centers);
    const GmmModel m = random_model(K, d, CovarianceType::Diagonal, 1.0f, 8, &centers);
    const GmmPosteriors post(m, 64);
    const Outputs ref = run_api(post, x, n);
    std::vector<double> x64(x.begin(), x.end());
    std::vector<uint8_t> x8(x.size());
    for (size_t i = 0; i < x.size(); i++) x8[i] = uint8_t(std::clamp(std::lround(x[i] * 10 + 128), 0L, 255L));
    std::vector<float> x8f(x8.begin(), x8.end());
    const MemoryVectorSource f32(n, d, x.data());
    const MemoryVectorSource f64(VectorBlock{x64.data(), DataType::Float64, n, d});
    const MemoryVectorSource u8(n, d, x8.data());
    for (const VectorSource* src : {static_cast<const VectorSource*>(&f32), static_cast<const VectorSource*>(&f64)}) {
        // float64 rows are read as their float32 values: the same posteriors, bit for bit.
        std::vector<float> lr(size_t(n * K)), ll(static_cast<size_t>(n)), proba(size_t(n * K));
        std::vector<int64_t> labels(static_cast<size_t>(n));
        std::vector<double> score(static_cast<size_t>(n));
        post.log_posteriors(*src, lr.data(), ll.data());
        post.predict(*src, labels.data());
        post.predict_proba(*src, proba.data());
        post.score_samples(*src, score.data());
        EXPECT_EQ(lr, ref.log_resp) << to_string(src->type());
        EXPECT_EQ(ll, ref.loglik);
        for (int64_t i = 0; i < n; i++) {
            const float* row = ref.log_resp.data() + i * K;
            EXPECT_EQ(labels[size_t(i)], std::max_element(row, row + K) - row);
            EXPECT_EQ(score[size_t(i)], double(ref.loglik[size_t(i)]));
            for (int64_t k = 0; k < K; k++) EXPECT_EQ(proba[size_t(i * K + k)], std::exp(row[k]));
        }
    }
    std::vector<float> lr8(size_t(n * K)), want8 = run_api(post, x8f, n).log_resp;
    post.log_posteriors(u8, lr8.data(), nullptr);
    EXPECT_EQ(lr8, want8) << "uint8 rows: their float values";

    std::vector<float> bad = x;
    bad[size_t(7 * d + 2)] = NAN;
    const MemoryVectorSource nan_src(n, d, bad.data());
    std::vector<int64_t> labels(static_cast<size_t>(n));
    try {
        post.predict(nan_src, labels.data());
        FAIL() << "a NaN row was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("input row 7, column 2 is NaN"), std::string::npos) << e.what();
    }
    const MemoryVectorSource wrong_d(n / 2, d + 1, x.data());
    EXPECT_THROW(post.predict(wrong_d, labels.data()), std::invalid_argument);
    EXPECT_THROW(GmmPosteriors(m, 0), std::invalid_argument);
}

TEST(GmmPosteriors, ConcurrentCallsGiveTheSerialResult) {
    const int64_t n = 2000, d = 24, K = 16;
    std::vector<float> centers;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 9, &centers);
    const GmmPosteriors post(random_model(K, d, CovarianceType::Spherical, 1.0f, 10, &centers));
    const Outputs serial = run_api(post, x, n);
    std::vector<Outputs> got(static_cast<size_t>(4));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&, t] {
            for (int rep = 0; rep < 3; rep++) got[size_t(t)] = run_api(post, x, n);
        });
    }
    for (std::thread& th : threads) th.join();
    for (const Outputs& o : got) {
        EXPECT_EQ(o.log_resp, serial.log_resp);
        EXPECT_EQ(o.loglik, serial.loglik);
    }
}

TEST(GmmPosteriors, QuantizerKeepsOnePerModel) {
    const int64_t n = 3000, d = 8, K = 8;
    std::vector<float> centers;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 11, &centers);
    GmmParams params;
    params.niter = 5;
    GmmQuantizer q(d, K, params);
    EXPECT_THROW(q.posteriors(), std::logic_error); // untrained
    q.train(n, x.data());
    const auto p1 = q.posteriors();
    EXPECT_EQ(q.posteriors(), p1) << "built again without a model change";
    const Outputs fresh = run_api(GmmPosteriors(q.model), x, n), cached = run_api(*p1, x, n);
    EXPECT_EQ(cached.log_resp, fresh.log_resp);
    EXPECT_EQ(cached.loglik, fresh.loglik);

    GmmModel other = random_model(K, d, CovarianceType::Spherical, 1.0f, 12, &centers);
    q.set_model(other);
    const auto p2 = q.posteriors();
    EXPECT_NE(p2, p1);
    EXPECT_EQ(run_api(*p2, x, n).log_resp, run_api(GmmPosteriors(other), x, n).log_resp);
    q.model.means[3] += 0.5f; // changed in place, not through set_model: seen too
    const auto p3 = q.posteriors();
    EXPECT_NE(p3, p2);
    EXPECT_EQ(p3->model().means, q.model.means);
}

TEST(GmmPosteriors, SpillRulesUseTheQuantizersPosteriors) {
    const int64_t n = 3000, d = 8;
    const std::vector<float> x = clustered_data(n, d, 16, 1.5f, 13);
    for (const char* desc : {"IVF16_GMM_ppost_resp,Flat", "IVF16_GMMdiag_tau0.05_max3,Flat"}) {
        std::unique_ptr<faiss::Index> index(gmm_index_factory(int(d), desc));
        index->train(n, x.data());
        IndexIVFSpill* sp = as_spill_index(index.get());
        ASSERT_NE(sp, nullptr) << desc;
        const GmmQuantizer* q = find_gmm_quantizer(index.get());
        const int64_t K = q->nlist, m1 = sp->spill.max_copies - 1;
        std::vector<faiss::Index::idx_t> primary(static_cast<size_t>(n)), cand(size_t(n * m1));
        std::vector<float> costs(size_t(n * m1));
        sp->spill_costs(n, x.data(), primary.data(), costs.data(), cand.data());
        const Outputs post = run_api(*q->posteriors(), x, n);
        int64_t mismatches = 0;
        for (int64_t i = 0; i < n; i++) {
            const float* lr = post.log_resp.data() + i * K;
            const int64_t p = sp->spill.primary_by_posterior ? std::max_element(lr, lr + K) - lr : primary[size_t(i)];
            mismatches += primary[size_t(i)] != p;
            for (int64_t t = 0; t < m1; t++) {
                const int64_t j = cand[size_t(i * m1 + t)];
                if (j < 0) continue;
                const double c = sp->spill.rule == SpillRule::Responsibility
                                         ? -double(lr[j])
                                         : double(lr[p]) - double(lr[j]);
                mismatches += costs[size_t(i * m1 + t)] != float(c);
            }
        }
        EXPECT_EQ(mismatches, 0) << desc << ": spill costs that are not the posteriors'";
    }
}
