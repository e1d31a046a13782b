// IndexIVFSpill (issue 6): spill rules on hand-made cases, memory budgets,
// deduplicated search against a brute-force search of the probed lists' union,
// the research's responsibility rule, the GMM-SOAR rule (issue 14) against a direct computation,
// refusal of the removed probe rankings, factory grammar (the rule a plain _spill<B> gives), save/load
// (trailer versions 1 to 3, files that set the removed temperature), remove_ids / reconstruct, and the
// FastScan refusal.
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>

#include "faiss_gmm/Crc32c.h"
#include "faiss_gmm/GmmPosteriors.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/IndexIVFSpill.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/gmm_io.h"
#include "error_bounds.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using idx_t = faiss::Index::idx_t;

namespace {

// IVFFlat over 2-d centroids set by hand (no training).
std::unique_ptr<IndexIVFSpill> hand_index(const std::vector<float>& centroids, const SpillParams& sp) {
    const int64_t K = int64_t(centroids.size() / 2);
    auto* q = new faiss::IndexFlatL2(2);
    q->add(K, centroids.data());
    auto* ivf = new faiss::IndexIVFFlat(q, 2, size_t(K));
    ivf->own_fields = true;
    ivf->is_trained = true;
    return std::make_unique<IndexIVFSpill>(ivf, sp);
}

// Lists holding each id.
std::map<idx_t, std::set<idx_t>> lists_of(const faiss::IndexIVF* ivf) {
    std::map<idx_t, std::set<idx_t>> out;
    for (size_t l = 0; l < ivf->nlist; l++) {
        const idx_t* ids = ivf->invlists->get_ids(l);
        for (size_t j = 0; j < ivf->invlists->list_size(l); j++) out[ids[j]].insert(idx_t(l));
    }
    return out;
}

std::unique_ptr<faiss::Index> trained(const std::string& desc, int64_t d, int64_t n, const std::vector<float>& x) {
    std::unique_ptr<faiss::Index> index(gmm_index_factory(int(d), desc));
    index->train(n, x.data());
    index->add(n, x.data());
    return index;
}

/// A budget-calibrated index admits the (budget − 1)·n cheapest (row, list) pairs
/// of its first batch, plus any pair tied in float with the last one admitted:
/// exactly n + #{costs <= threshold} entries, with want <= that count <= want − 1 + ties.
void expect_budget_met(const IndexIVFSpill* sp, int64_t n, const std::vector<float>& x, const std::string& desc) {
    const int m1 = sp->spill.max_copies - 1;
    std::vector<idx_t> prim(n), cand(size_t(n) * m1);
    std::vector<float> cost(size_t(n) * m1);
    sp->spill_costs(n, x.data(), prim.data(), cost.data(), cand.data());
    int64_t admitted = 0, ties = 0;
    for (size_t t = 0; t < cost.size(); t++) {
        if (cand[t] < 0 || !std::isfinite(cost[t])) continue;
        admitted += cost[t] <= sp->threshold ? 1 : 0;
        ties += cost[t] == sp->threshold ? 1 : 0;
    }
    const int64_t want = std::llround((sp->spill.budget - 1.0) * double(n));
    EXPECT_EQ(sp->n_entries(), n + admitted) << desc;
    EXPECT_GE(admitted, want) << desc;
    EXPECT_LE(admitted, want - 1 + ties) << desc;
}


/// Bound on 2γ_{M+1}·Σ|terms| of IVFPQ's L2 distance to one code of list l: the scanner adds
/// dis0 = ‖q − c‖² and, per sub-quantizer m, ‖r_m‖² + 2⟨c_m, r_m⟩ − 2⟨q_m, r_m⟩ (r = the
/// decoded residual; without precomputed tables the terms are ‖q_m − c_m − r_m‖², whose sum is
/// smaller). By Cauchy–Schwarz over m, Σ|terms| ≤ ‖q − c‖² + ‖r‖² + 2(‖c‖ + ‖q‖)‖r‖.
double pq_sum_bound(const faiss::IndexIVFPQ& ivf, idx_t l, const float* q, const uint8_t* code) {
    const size_t d = ivf.d;
    std::vector<float> c(d), r(d);
    ivf.quantizer->reconstruct(l, c.data());
    ivf.pq.decode(code, r.data());
    double qc = 0, rr = 0, cc = 0, qq = 0;
    for (size_t t = 0; t < d; t++) {
        qc += (double(q[t]) - c[t]) * (double(q[t]) - c[t]);
        rr += double(r[t]) * r[t];
        cc += double(c[t]) * c[t];
        qq += double(q[t]) * q[t];
    }
    const double terms = qc + rr + 2 * (std::sqrt(cc) + std::sqrt(qq)) * std::sqrt(rr);
    return 2 * faiss_gmm::testing::gamma(double(ivf.pq.M + 1)) * terms;
}

} // namespace

TEST(SpillRules, DistanceRatioHandCase) {
    // c0 = (0,0), c1 = (10,0), c2 = (0,10).
    const std::vector<float> c = {0, 0, 10, 0, 0, 10};
    SpillParams sp;
    sp.rule = SpillRule::DistanceRatio;
    sp.epsilon = 1.5; // list j when d_j <= 2.5 d_1
    sp.max_copies = 3;
    auto index = hand_index(c, sp);
    const std::vector<float> x = {4, 0,   // d = 16, 36, 116: 36 <= 40 -> {0, 1}
                                  1, 0,   // d = 1, 81, 101 -> {0}
                                  5, 5,   // d = 50, 50, 50: primary 0 (lower list), both others -> {0, 1, 2}
                                  6, 0};  // d = 36, 16, 136: primary 1; 36 <= 40 -> {1, 0}
    index->add(4, x.data());
    EXPECT_EQ(index->ntotal, 4);
    EXPECT_EQ(index->n_entries(), 2 + 1 + 3 + 2);
    auto L = lists_of(index->ivf);
    EXPECT_EQ(L[0], (std::set<idx_t>{0, 1}));
    EXPECT_EQ(L[1], (std::set<idx_t>{0}));
    EXPECT_EQ(L[2], (std::set<idx_t>{0, 1, 2}));
    EXPECT_EQ(L[3], (std::set<idx_t>{0, 1}));
    // max_copies caps the copies, the cheapest kept.
    sp.max_copies = 2;
    auto capped = hand_index(c, sp);
    capped->add(4, x.data());
    EXPECT_EQ(capped->n_entries(), 2 + 1 + 2 + 2);
    EXPECT_EQ(lists_of(capped->ivf)[2], (std::set<idx_t>{0, 1}));
}

TEST(SpillRules, SoarPrefersOrthogonalResidual) {
    // x = (4,0), r_1 = x − c0 = (4,0). c1 = (10,0): residual (−6,0) parallel to r_1,
    // ratio cost 36/16 − 1 = 1.25, SOAR cost (36 + 36)/16 − 1 = 3.5. c2 = (4,5):
    // residual (0,−5) orthogonal, both costs 25/16 − 1 = 0.5625.
    const std::vector<float> c = {0, 0, 10, 0, 4, 5};
    const std::vector<float> x = {4, 0};
    SpillParams sp;
    sp.max_copies = 3;
    sp.epsilon = 1.3;
    sp.rule = SpillRule::DistanceRatio;
    auto ratio = hand_index(c, sp);
    ratio->add(1, x.data());
    EXPECT_EQ(lists_of(ratio->ivf)[0], (std::set<idx_t>{0, 1, 2}));
    sp.rule = SpillRule::Soar;
    sp.soar_lambda = 1;
    auto soar = hand_index(c, sp);
    soar->add(1, x.data());
    EXPECT_EQ(lists_of(soar->ivf)[0], (std::set<idx_t>{0, 2}));
    std::vector<idx_t> prim(1), cand(2);
    std::vector<float> cost(2);
    soar->spill_costs(1, x.data(), prim.data(), cost.data(), cand.data());
    EXPECT_EQ(prim[0], 0);
    EXPECT_EQ(cand[0], 2);
    // Small integers: every distance and dot product is exact in float and double,
    // and /16 is exact, so both costs are exact.
    EXPECT_EQ(cost[0], 0.5625f);
    EXPECT_EQ(cand[1], 1);
    EXPECT_EQ(cost[1], 3.5f);
}

TEST(SpillRules, PosteriorRatio) {
    // 1-d, two unit-variance components at 0 and 4, equal weights. At x = 1.5:
    // log r_0 − log r_1 = (2.5² − 1.5²)/2 = 2, so r_1/r_0 = e^-2 = 0.135.
    GmmModel m(2, 1, CovarianceType::Spherical);
    m.means = {0, 4};
    auto make = [&](double tau) {
        auto* q = new GmmQuantizer(1, 2);
        q->set_model(m);
        auto* ivf = new faiss::IndexIVFFlat(q, 1, 2);
        ivf->own_fields = true;
        ivf->is_trained = true;
        SpillParams sp;
        sp.rule = SpillRule::Posterior;
        sp.tau = tau;
        return std::make_unique<IndexIVFSpill>(ivf, sp);
    };
    const float x = 1.5f;
    auto a = make(0.1);
    a->add(1, &x);
    EXPECT_EQ(a->n_entries(), 2); // 0.135 >= 0.1
    auto b = make(0.2);
    b->add(1, &x);
    EXPECT_EQ(b->n_entries(), 1); // 0.135 < 0.2
    std::vector<idx_t> prim(1), cand(1);
    std::vector<float> cost(1);
    b->spill_costs(1, &x, prim.data(), cost.data(), cand.data());
    // ℓ_0 − ℓ_1 = 2, from the E-step's float log r (within log_resp_bound of
    // exact each; evaluated centered on the mixture mean, as GmmPosteriors does), then
    // rounded to float.
    const GmmPosteriors post(m);
    faiss_gmm::testing::EStepRowErrors row(m, post.center().data(), true);
    row.analyse(&x);
    const double tol = row.log_resp_bound(0) + row.log_resp_bound(1) + faiss_gmm::testing::kUnitRoundoff * 2.02;
    EXPECT_NEAR(cost[0], 2.0, tol);
}

// The research's rule: every list whose responsibility r_j ≥ tau (absolute). Checked against
// responsibilities computed here in double from the model's definition (equal weights, unit
// variances, 1-d): r_j = exp(−(x−μ_j)²/2) / Σ_k exp(−(x−μ_k)²/2).
TEST(SpillRules, ResponsibilityAgainstDirectComputation) {
    GmmModel m(4, 1, CovarianceType::Spherical);
    m.means = {0, 3, 5, 20};
    auto* q = new GmmQuantizer(1, 4);
    q->set_model(m);
    auto* ivf = new faiss::IndexIVFFlat(q, 1, 4);
    ivf->own_fields = true;
    ivf->is_trained = true;
    SpillParams sp;
    sp.rule = SpillRule::Responsibility;
    sp.tau = 0.25; // = 1/K
    sp.max_copies = 4;
    IndexIVFSpill index(ivf, sp);
    const std::vector<float> x = {1.5f, 2.0f, 4.0f, 0.2f, 12.5f};
    std::vector<std::set<idx_t>> want(x.size());
    std::vector<std::vector<double>> resp(x.size());
    for (size_t i = 0; i < x.size(); i++) {
        double z = 0;
        for (double mu : m.means) z += std::exp(-0.5 * (x[i] - mu) * (x[i] - mu));
        for (int j = 0; j < 4; j++) {
            const double r = std::exp(-0.5 * (x[i] - m.means[j]) * (x[i] - m.means[j])) / z;
            resp[i].push_back(r);
            if (r >= sp.tau) want[i].insert(j);
        }
        // the nearest mean is the primary list even when its responsibility is < tau
        int p = 0;
        for (int j = 1; j < 4; j++) if (std::fabs(x[i] - m.means[j]) < std::fabs(x[i] - m.means[p])) p = j;
        want[i].insert(p);
    }
    index.add(idx_t(x.size()), x.data());
    auto L = lists_of(index.ivf);
    for (size_t i = 0; i < x.size(); i++) EXPECT_EQ(L[idx_t(i)], want[i]) << "x = " << x[i];
    EXPECT_EQ(L[0], (std::set<idx_t>{0, 1}));    // r = 0.50, 0.50, ~0, 0: both lists
    EXPECT_EQ(L[2], (std::set<idx_t>{1, 2}));    // between 3 and 5
    EXPECT_EQ(L[3], (std::set<idx_t>{0}));       // clearly in list 0
    EXPECT_EQ(L[4], (std::set<idx_t>{2, 3}));    // r_2 = r_3 = 0.5 at the midpoint
    // Costs are −log r_j, ascending, against the direct computation.
    std::vector<idx_t> prim(x.size()), cand(x.size() * 3);
    std::vector<float> cost(x.size() * 3);
    index.spill_costs(idx_t(x.size()), x.data(), prim.data(), cost.data(), cand.data());
    const GmmPosteriors post(m); // the posteriors' frame: centered on the mixture mean
    faiss_gmm::testing::EStepRowErrors row(m, post.center().data(), true);
    for (size_t i = 0; i < x.size(); i++) {
        row.analyse(&x[i]);
        for (int t = 0; t < 3; t++) {
            const idx_t j = cand[i * 3 + t];
            if (j < 0 || !std::isfinite(cost[i * 3 + t])) continue;
            // The E-step's float log r_j (within log_resp_bound of exact), negated;
            // the direct double computation here is within γ^double_8·(1 + |log r|).
            const double want = -std::log(resp[i][j]);
            const double tol = row.log_resp_bound(j) + faiss_gmm::testing::gamma_double(8) * (1 + want);
            EXPECT_NEAR(cost[i * 3 + t], want, tol) << "x = " << x[i] << " list " << j;
        }
    }
    // Needs a GMM.
    auto* q2 = new faiss::IndexFlatL2(1);
    const std::vector<float> means(m.means.begin(), m.means.end());
    q2->add(4, means.data());
    auto* ivf2 = new faiss::IndexIVFFlat(q2, 1, 4);
    ivf2->own_fields = true;
    ivf2->is_trained = true;
    EXPECT_THROW(IndexIVFSpill(ivf2, sp), std::invalid_argument);
    delete ivf2;
}

// _resp without a value is the research's tau = 1/nlist; with _spill<B> it meets the budget.
TEST(SpillRules, ResponsibilityFactoryAndBudget) {
    IvfOptions o;
    std::string fd;
    ASSERT_TRUE(parse_ivf_options("IVF64_GMM_resp,Flat", &fd, &o));
    EXPECT_EQ(fd, "IVF64,Flat");
    EXPECT_EQ(o.spill_params.rule, SpillRule::Responsibility);
    EXPECT_DOUBLE_EQ(o.spill_params.tau, 1.0 / 64);
    EXPECT_EQ(o.spill_params.budget, 0);
    EXPECT_EQ(o.spill_params.max_copies, 8);
    ASSERT_TRUE(parse_ivf_options("IVF64_GMMdiag_resp0.2_max3,Flat", &fd, &o));
    EXPECT_DOUBLE_EQ(o.spill_params.tau, 0.2);
    EXPECT_EQ(o.spill_params.max_copies, 3);
    ASSERT_TRUE(parse_ivf_options("IVF64_GMM_resp_spill1.5,Flat", &fd, &o));
    EXPECT_EQ(o.spill_params.rule, SpillRule::Responsibility);
    EXPECT_DOUBLE_EQ(o.spill_params.budget, 1.5);
    EXPECT_THROW(parse_ivf_options("IVF64_resp,Flat", &fd, &o), std::invalid_argument);           // needs GMM
    EXPECT_THROW(parse_ivf_options("IVF64_GMM_resp_soar_spill1.2,Flat", &fd, &o), std::invalid_argument);
    EXPECT_THROW(parse_ivf_options("IVF64_GMM_resp0.1_spill1.2,Flat", &fd, &o), std::invalid_argument);
    EXPECT_THROW(parse_ivf_options("IVF64_GMM_resp2,Flat", &fd, &o), std::invalid_argument);      // tau > 1

    const int64_t n = 4000, d = 16;
    std::vector<float> x = clustered_data(n, d, 24, 1.5f, 7);
    auto index = trained("IVF32_GMM_resp_spill1.3,Flat", d, n, x);
    auto* sp = as_spill_index(index.get());
    ASSERT_NE(sp, nullptr);
    expect_budget_met(sp, n, x, "IVF32_GMM_resp_spill1.3,Flat");
    // Fixed 1/K: every admitted secondary list has r_j >= 1/K by the model's own posterior.
    auto fixed = trained("IVF32_GMM_resp,Flat", d, n, x);
    auto* sf = as_spill_index(fixed.get());
    ASSERT_NE(sf, nullptr);
    EXPECT_DOUBLE_EQ(sf->threshold, std::log(32.0));
    EXPECT_GE(sf->n_entries(), n);
}

// SpillRule::GmmSoar (issue 14, _gsoar) against its cost computed here in double from the definition:
// (‖x−c_j‖² + λ⟨x−c_j, r̂_1⟩²)/s_j + d·log s_j − 2 log π_j − (‖x−c_1‖²/s_1 + d·log s_1 − 2 log π_1),
// s_j the spherical variance, or the mean of the diagonal ones.
TEST(SpillRules, GmmSoarAgainstDirectComputation) {
    const int64_t K = 4, d = 2, n = 5;
    const std::vector<float> means = {0, 0, 10, 0, 4, 5, 0, -6};
    const std::vector<double> s = {1, 4, 0.5, 2}, w = {0.1, 0.2, 0.3, 0.4};
    // Small integers: every squared distance and dot product below is exact in float and double.
    const std::vector<float> x = {4, 0, 1, 1, 3, 2, -1, -3, 6, 1};
    const double epsilon = 3;
    int64_t admitted = 0, refused = 0; // both outcomes occur among these pairs
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        GmmModel m(K, d, type);
        m.means = means;
        // Diagonal: two variances per list whose mean is s_j (all exact in float).
        m.variances = type == CovarianceType::Spherical ? std::vector<float>{1, 4, 0.5f, 2}
                                                         : std::vector<float>{0.5f, 1.5f, 3, 5, 0.25f, 0.75f, 1, 3};
        for (int64_t j = 0; j < K; j++) m.log_weights[size_t(j)] = float(std::log(w[size_t(j)]));
        for (double lambda : {1.0, 0.5}) {
            GmmParams gp;
            gp.covariance_type = type;
            auto* q = new GmmQuantizer(d, K, gp);
            q->set_model(m);
            auto* ivf = new faiss::IndexIVFFlat(q, d, K);
            ivf->own_fields = true;
            ivf->is_trained = true;
            SpillParams sp;
            sp.rule = SpillRule::GmmSoar;
            sp.soar_lambda = lambda;
            sp.max_copies = int(K);
            sp.epsilon = epsilon;
            IndexIVFSpill index(ivf, sp);
            std::vector<idx_t> prim(n), cand(size_t(n * (K - 1)));
            std::vector<float> cost(size_t(n * (K - 1)));
            index.spill_costs(n, x.data(), prim.data(), cost.data(), cand.data());
            index.add(n, x.data());
            auto L = lists_of(index.ivf);
            for (int64_t i = 0; i < n; i++) {
                const double xi[2] = {x[size_t(2 * i)], x[size_t(2 * i + 1)]};
                std::vector<double> dist(K);
                int64_t p = 0;
                for (int64_t j = 0; j < K; j++) {
                    const double a = xi[0] - means[size_t(2 * j)], b = xi[1] - means[size_t(2 * j + 1)];
                    dist[size_t(j)] = a * a + b * b;
                    if (dist[size_t(j)] < dist[size_t(p)]) p = j;
                }
                ASSERT_EQ(prim[size_t(i)], p) << "x " << i;
                const double r1[2] = {xi[0] - means[size_t(2 * p)], xi[1] - means[size_t(2 * p + 1)]};
                auto log_norm = [&](int64_t j) { return double(d) * std::log(s[size_t(j)]) - 2 * double(m.log_weights[size_t(j)]); };
                const double own = dist[size_t(p)] / s[size_t(p)] + log_norm(p);
                std::set<idx_t> want_lists = {p};
                std::vector<double> want(K, INFINITY), terms(K, 0);
                for (int64_t j = 0; j < K; j++) {
                    if (j == p) continue;
                    const double dot = (xi[0] - means[size_t(2 * j)]) * r1[0] + (xi[1] - means[size_t(2 * j + 1)]) * r1[1];
                    const double amended = dist[size_t(j)] + lambda * dot * dot / dist[size_t(p)];
                    want[size_t(j)] = amended / s[size_t(j)] + log_norm(j) - own;
                    terms[size_t(j)] = amended / s[size_t(j)] + std::fabs(log_norm(j)) + std::fabs(own) + std::fabs(log_norm(p));
                    if (want[size_t(j)] <= epsilon) want_lists.insert(j);
                    (want[size_t(j)] <= epsilon ? admitted : refused)++;
                }
                for (int64_t t = 0; t < K - 1; t++) {
                    const idx_t j = cand[size_t(i * (K - 1) + t)];
                    ASSERT_GE(j, 0);
                    // The double evaluation (a few operations on these terms, logs within 2 ulp) is
                    // within γ^double_16 of their sum; the result is then rounded to float once.
                    const double tol = faiss_gmm::testing::gamma_double(16) * terms[size_t(j)] +
                                       faiss_gmm::testing::kUnitRoundoff * std::fabs(want[size_t(j)]);
                    EXPECT_NEAR(cost[size_t(i * (K - 1) + t)], want[size_t(j)], tol) << "x " << i << " list " << j;
                    if (t > 0) EXPECT_LE(cost[size_t(i * (K - 1) + t - 1)], cost[size_t(i * (K - 1) + t)]);
                    // No cost here sits within its tolerance of epsilon, so the admitted lists are exact.
                    ASSERT_GT(std::fabs(want[size_t(j)] - epsilon), tol);
                }
                EXPECT_EQ(L[i], want_lists) << "x " << i << " lambda " << lambda;
            }
        }
    }
    EXPECT_GT(admitted, 0);
    EXPECT_GT(refused, 0);
    // Needs a GmmQuantizer, with spherical or diagonal variances.
    SpillParams sp;
    sp.rule = SpillRule::GmmSoar;
    sp.budget = 1.5;
    auto* plain = new faiss::IndexIVFFlat(new faiss::IndexFlatL2(d), d, K);
    plain->own_fields = true;
    EXPECT_THROW(IndexIVFSpill(plain, sp), std::invalid_argument);
    delete plain;
    GmmParams full;
    full.covariance_type = CovarianceType::Full;
    auto* fivf = new faiss::IndexIVFFlat(new GmmQuantizer(d, K, full), d, K);
    fivf->own_fields = true;
    try {
        IndexIVFSpill(fivf, sp);
        ADD_FAILURE() << "gmm-soar accepted full covariances";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("spherical or diagonal"), std::string::npos) << e.what();
    }
    delete fivf;
}

TEST(SpillBudget, MemoryBudgetMet) {
    const int64_t n = 4000, d = 16;
    std::vector<float> x = clustered_data(n, d, 24, 1.5f, 7);
    for (const char* desc : {"IVF32_GMM_spill1.2,Flat", "IVF32_spill1.2,Flat", "IVF32_GMM_spill1.5,SQ8",
                             "IVF32_spill1.5,Flat", "IVF32_GMMdiag_soar_spill1.3,Flat", "IVF32_spill2.5,Flat",
                             "IVF32_GMM_gsoar_spill1.5,Flat", "IVF32_GMMdiag_gsoar0.5_spill1.3_ppost,SQ8"}) {
        auto index = trained(desc, d, n, x);
        auto* sp = as_spill_index(index.get());
        ASSERT_NE(sp, nullptr) << desc;
        EXPECT_EQ(sp->ntotal, n);
        expect_budget_met(sp, n, x, desc);
        EXPECT_TRUE(sp->threshold_set);
    }
}

TEST(SpillSearch, DeduplicatedAndEqualToBruteForceOverProbedLists) {
    const int64_t n = 3000, d = 16, nq = 40, k = 10;
    std::vector<float> x = clustered_data(n, d, 20, 2.0f, 11);
    std::vector<float> q = clustered_data(nq, d, 20, 2.0f, 12);
    for (const char* desc : {"IVF24_GMM_spill1.5,Flat", "IVF24_spill1.5_max3,Flat", "IVF24_GMM_resp_spill1.5,Flat",
                             "IVF24_GMM_spill1.5,SQ8", "IVF24_spill1.5,PQ8x4", "IVF24_GMM_spill1.3_ppost,PQ8x4",
                             "IVF24_GMM_gsoar_spill1.5,Flat"}) {
        auto index = trained(desc, d, n, x);
        auto* sp = as_spill_index(index.get());
        ASSERT_NE(sp, nullptr);
        const auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(sp->ivf);
        for (size_t nprobe : {1, 3, 8}) {
            sp->set_nprobe(nprobe);
            std::vector<float> D(nq * k);
            std::vector<idx_t> I(nq * k);
            sp->search(nq, q.data(), k, D.data(), I.data());
            std::vector<float> cd(nq * nprobe);
            std::vector<idx_t> cl(nq * nprobe);
            sp->ivf->quantizer->search(nq, q.data(), nprobe, cd.data(), cl.data());
            std::unique_ptr<faiss::InvertedListScanner> sc(sp->ivf->get_InvertedListScanner(false));
            for (int64_t i = 0; i < nq; i++) {
                std::set<idx_t> seen;
                for (int64_t j = 0; j < k; j++) {
                    if (I[i * k + j] >= 0) EXPECT_TRUE(seen.insert(I[i * k + j]).second) << desc << ": duplicate id";
                }
                // Brute force over the union: each id's distance from its first probed copy
                // (the codes of copies are the same vector encoded against another list), with
                // the scanner's one-code distance. The search scores runs of codes with
                // scan_codes: for Flat and SQ the same per-code function (equal bit for bit);
                // for PQ the same M + 1 float terms (dis0 + one table entry per sub-quantizer)
                // summed in another order, so each distance may differ by 2γ_{M+1}·Σ|terms|.
                std::map<idx_t, float> best;
                double tol = 0; // the largest per-candidate bound: order statistics move by at most that
                sc->set_query(q.data() + i * d);
                for (size_t p = 0; p < nprobe; p++) {
                    const idx_t l = cl[i * nprobe + p];
                    sc->set_list(l, cd[i * nprobe + p]);
                    const idx_t* ids = sp->ivf->invlists->get_ids(l);
                    const uint8_t* codes = sp->ivf->invlists->get_codes(l);
                    for (size_t j = 0; j < sp->ivf->invlists->list_size(l); j++) {
                        if (best.count(ids[j])) continue;
                        const uint8_t* code = codes + j * sp->ivf->code_size;
                        best[ids[j]] = sc->distance_to_code(code);
                        if (pq) tol = std::max(tol, pq_sum_bound(*pq, l, q.data() + i * d, code));
                    }
                }
                std::vector<std::pair<float, idx_t>> all;
                for (auto& kv : best) all.emplace_back(kv.second, kv.first);
                std::sort(all.begin(), all.end());
                const int64_t kk = std::min<int64_t>(k, int64_t(all.size()));
                for (int64_t j = 0; j < kk; j++) {
                    if (pq) {
                        EXPECT_NEAR(D[i * k + j], all[j].first, tol) << desc << " nprobe " << nprobe;
                    } else {
                        EXPECT_EQ(D[i * k + j], all[j].first) << desc << " nprobe " << nprobe;
                    }
                    // The id is determined where its distance is apart from both neighbours' by more than 2·tol.
                    const bool apart_below = j == 0 || all[j].first - all[j - 1].first > 2 * tol;
                    const bool apart_above = j + 1 >= int64_t(all.size()) || all[j + 1].first - all[j].first > 2 * tol;
                    if (apart_below && apart_above) EXPECT_EQ(I[i * k + j], all[j].second) << desc;
                }
                for (int64_t j = kk; j < k; j++) EXPECT_EQ(I[i * k + j], -1);
            }
        }
    }
}

// The visited set: a bitset over [min_id, max_id] when the ids are dense enough (add()'s
// 0, 1, ...; stride 50: cleared along the probed ids when a query scans fewer entries than the
// bitset has words), a hash table otherwise (ids far apart, or a span past INT64_MAX). Every variant must return the
// results of the add() index, query after query (nothing left marked from an earlier one).
TEST(SpillSearch, SameResultsWhateverTheIds) {
    const int64_t n = 3000, d = 16, nq = 40, k = 10;
    std::vector<float> x = clustered_data(n, d, 20, 2.0f, 11);
    std::vector<float> q = clustered_data(nq, d, 20, 2.0f, 12);
    const char* desc = "IVF24_spill1.5,Flat";
    auto ref = trained(desc, d, n, x);
    // stride 0: ids 0 .. n − 2 and INT64_MAX, a span that overflows int64 (hash table).
    const idx_t top = std::numeric_limits<idx_t>::max();
    for (const auto& [offset, stride] : {std::pair<idx_t, idx_t>{0, 50}, {idx_t(3) << 40, 1000003}, {0, 0}}) {
        auto id_of = [&, offset = offset, stride = stride](idx_t i) {
            return stride == 0 ? (i == n - 1 ? top : i) : offset + stride * i;
        };
        std::unique_ptr<faiss::Index> index(gmm_index_factory(int(d), desc));
        index->train(n, x.data());
        std::vector<idx_t> ids(n);
        for (int64_t i = 0; i < n; i++) ids[i] = id_of(i);
        index->add_with_ids(n, x.data(), ids.data());
        auto* sp = as_spill_index(index.get());
        EXPECT_EQ(sp->min_id, offset);
        EXPECT_EQ(sp->max_id, id_of(n - 1));
        for (size_t nprobe : {1, 3, 8, 24}) {
            sp->set_nprobe(nprobe);
            as_spill_index(ref.get())->set_nprobe(nprobe);
            for (int call = 0; call < 2; call++) {
                std::vector<float> D(nq * k), Dr(nq * k);
                std::vector<idx_t> I(nq * k), Ir(nq * k);
                index->search(nq, q.data(), k, D.data(), I.data());
                ref->search(nq, q.data(), k, Dr.data(), Ir.data());
                for (int64_t t = 0; t < nq * k; t++) {
                    EXPECT_EQ(D[t], Dr[t]) << "stride " << stride << " nprobe " << nprobe;
                    EXPECT_EQ(I[t], Ir[t] < 0 ? -1 : id_of(Ir[t])) << "stride " << stride;
                }
            }
        }
    }
    // -1 marks a missing result: such an id would be indistinguishable from one.
    std::unique_ptr<faiss::Index> index(gmm_index_factory(int(d), desc));
    index->train(n, x.data());
    const idx_t bad = -1;
    try {
        index->add_with_ids(1, x.data(), &bad);
        ADD_FAILURE() << "a negative id was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("negative"), std::string::npos) << e.what();
    }
}

TEST(SpillSearch, FlatDistancesAreExact) {
    const int64_t n = 2000, d = 8, nq = 20, k = 5;
    std::vector<float> x = clustered_data(n, d, 10, 1.0f, 3);
    auto index = trained("IVF16_GMM_spill1.5,Flat", d, n, x);
    auto* sp = as_spill_index(index.get());
    sp->set_nprobe(16); // every list: exact search
    std::vector<float> D(nq * k);
    std::vector<idx_t> I(nq * k);
    sp->search(nq, x.data(), k, D.data(), I.data());
    faiss::IndexFlatL2 flat(d);
    flat.add(n, x.data());
    std::vector<float> D2(nq * k);
    std::vector<idx_t> I2(nq * k);
    flat.search(nq, x.data(), k, D2.data(), I2.data());
    // Both are float32 squared distances, the IVF scan's direct Σ(q − y)² or BLAS's
    // expanded ‖q‖² + ‖y‖² − 2q·y: each within 2γ_{d+3}(‖q‖² + ‖y‖²) of exact, and the
    // k-th smallest moves by at most the largest such error (whichever ids it picks).
    double max_norm = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += double(x[i * d + j]) * x[i * d + j];
        max_norm = std::max(max_norm, s);
    }
    for (int64_t i = 0; i < nq * k; i++) {
        double qn = 0;
        for (int64_t j = 0; j < d; j++) qn += double(x[(i / k) * d + j]) * x[(i / k) * d + j];
        EXPECT_NEAR(D[i], D2[i], 4 * faiss_gmm::testing::gamma(double(d + 3)) * (qn + max_norm));
    }
}

// The probe rankings of issue 6 (_probepost, _pscale, _ppow) were removed in issue 14
// (they never paid): the factory refuses them by name, and a saved file that turns one
// on is refused with a message, while plain FAISS still reads it.
TEST(SpillProbing, RemovedProbeRankingsRefused) {
    for (const char* desc : {"IVF16_GMM_probepost,Flat", "IVF16_GMMdiag_spill1.2_ppow0.5,Flat",
                             "IVF16_GMM_pscale0.1,Flat", "IVF16_ppow0.5,Flat"}) {
        try {
            std::unique_ptr<faiss::Index> idx(gmm_index_factory(8, desc));
            FAIL() << desc << " accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("was removed"), std::string::npos) << e.what();
        }
    }
}

TEST(SpillFactory, GrammarAndErrors) {
    IvfOptions o;
    std::string fd;
    ASSERT_TRUE(parse_ivf_options("OPQ8_16,IVF64_GMMdiag_tau0.05_max3,PQ8", &fd, &o));
    EXPECT_EQ(fd, "OPQ8_16,IVF64,PQ8");
    EXPECT_TRUE(o.gmm);
    EXPECT_EQ(o.covariance_type, CovarianceType::Diagonal);
    EXPECT_TRUE(o.spill);
    EXPECT_EQ(o.spill_params.rule, SpillRule::Posterior);
    EXPECT_DOUBLE_EQ(o.spill_params.tau, 0.05);
    EXPECT_EQ(o.spill_params.max_copies, 3);
    ASSERT_TRUE(parse_ivf_options("IVF64_spill1.2,Flat", &fd, &o));
    EXPECT_FALSE(o.gmm);
    EXPECT_EQ(o.spill_params.rule, SpillRule::DistanceRatio);
    EXPECT_DOUBLE_EQ(o.spill_params.budget, 1.2);
    ASSERT_TRUE(parse_ivf_options("IVF64_GMM_soar2_spill1.5,Flat", &fd, &o));
    EXPECT_EQ(o.spill_params.rule, SpillRule::Soar);
    EXPECT_DOUBLE_EQ(o.spill_params.soar_lambda, 2);
    EXPECT_FALSE(parse_ivf_options("IVF64,Flat", &fd, &o));
    EXPECT_FALSE(parse_ivf_options("IVF64_HNSW32,Flat", &fd, &o)); // FAISS's own, untouched
    EXPECT_THROW(parse_ivf_options("IVF64_GMM_spillx,Flat", &fd, &o), std::invalid_argument);
    EXPECT_THROW(parse_ivf_options("IVF64_GMM_foo,Flat", &fd, &o), std::invalid_argument);
    EXPECT_THROW(parse_ivf_options("IVF64_spill1.2_tau0.1_GMM,Flat", &fd, &o), std::invalid_argument);
    EXPECT_THROW(parse_ivf_options("IVF64_tau0.1,Flat", &fd, &o), std::invalid_argument); // posterior needs GMM
    EXPECT_THROW(parse_ivf_options("IVF64_probepost,Flat", &fd, &o), std::invalid_argument);     // removed
    EXPECT_THROW(parse_ivf_options("IVF64_GMM_soar_spill1.5_ppow0.25,Flat", &fd, &o), std::invalid_argument);
    EXPECT_THROW(gmm_index_factory(8, "IVF64_GMM_spill0.5,Flat"), std::invalid_argument);
    // Plain GMM strings are unchanged by the new grammar.
    CovarianceType t;
    ASSERT_TRUE(parse_gmm_description("IVF64_GMM,PQ8", &fd, &t));
    EXPECT_EQ(fd, "IVF64,PQ8");
    std::unique_ptr<faiss::Index> plain(gmm_index_factory(8, "IVF16_GMM,Flat"));
    EXPECT_EQ(as_spill_index(plain.get()), nullptr);
}

// What the short form builds (issue 14, fourth pass): a plain _spill<B> on a spherical or diagonal GMM is
// the GMM-SOAR rule at λ 0.5, the posterior ratio is _post_spill<B>. Each factory index is compared with
// one built here from explicit SpillParams over the same trained quantizer: the same copies of every
// vector, the same threshold.
TEST(SpillFactory, ShortFormIsTheRecommendedRule) {
    const int64_t n = 3000, d = 16;
    std::vector<float> x = clustered_data(n, d, 20, 2.0f, 31);
    struct Case {
        const char* desc;
        CovarianceType type;
        SpillRule rule;
        double lambda; // soar_lambda of the explicit index
    };
    for (const Case& c : {Case{"IVF24_GMM_spill1.5,Flat", CovarianceType::Spherical, SpillRule::GmmSoar, 0.5},
                          Case{"IVF24_GMMdiag_spill1.3,Flat", CovarianceType::Diagonal, SpillRule::GmmSoar, 0.5},
                          Case{"IVF24_GMM_post_spill1.5,Flat", CovarianceType::Spherical, SpillRule::Posterior, 1}}) {
        auto index = trained(c.desc, d, n, x);
        auto* sp = as_spill_index(index.get());
        ASSERT_NE(sp, nullptr) << c.desc;
        EXPECT_EQ(sp->spill.rule, c.rule) << c.desc;
        GmmParams gp;
        gp.covariance_type = c.type;
        auto* q = new GmmQuantizer(d, 24, gp);
        q->set_model(find_gmm_quantizer(index.get())->model);
        auto* ivf = new faiss::IndexIVFFlat(q, d, 24);
        ivf->own_fields = true;
        ivf->is_trained = true;
        SpillParams explicit_params;
        explicit_params.rule = c.rule;
        explicit_params.soar_lambda = c.lambda;
        explicit_params.budget = sp->spill.budget;
        IndexIVFSpill by_hand(ivf, explicit_params);
        by_hand.add(n, x.data());
        EXPECT_EQ(by_hand.threshold, sp->threshold) << c.desc;
        EXPECT_EQ(by_hand.n_entries(), sp->n_entries()) << c.desc;
        EXPECT_EQ(lists_of(by_hand.ivf), lists_of(sp->ivf)) << c.desc;
    }
}

TEST(SpillFactory, FastScanRefusedClearly) {
    for (const char* desc : {"IVF16_GMM_spill1.2,PQ4x4fs", "IVF16_spill1.2,PQ4x4fsr"}) {
        try {
            std::unique_ptr<faiss::Index> idx(gmm_index_factory(16, desc));
            FAIL() << desc << " accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("FastScan"), std::string::npos) << e.what();
        }
    }
    auto* q = new faiss::IndexFlatL2(16);
    auto* fs = new faiss::IndexIVFPQFastScan(q, 16, 8, 4, 4);
    fs->own_fields = true;
    SpillParams sp;
    sp.rule = SpillRule::DistanceRatio;
    sp.budget = 1.2;
    EXPECT_THROW(IndexIVFSpill(fs, sp), std::invalid_argument);
    delete fs; // refused: the caller still owns it
}

TEST(SpillIO, SaveLoadRoundTrip) {
    const int64_t n = 3000, d = 16, nq = 30, k = 10;
    std::vector<float> x = clustered_data(n, d, 20, 2.0f, 21);
    for (const char* desc : {"IVF24_GMMdiag_spill1.4,Flat", "IVF24_spill1.3_soar0.5,SQ8",
                             "IVF24_GMM_tau0.02_max3_ppost,PQ8x4", "IVF24_GMM_soar_spill1.3,Flat",
                             "IVF24_GMM_resp_max4,SQ8", "IVF24_GMM_gsoar0.5_spill1.3,Flat",
                             "IVF24_GMMdiag_gsoar_eps40_ppost,SQ8", "IVF24_GMM_post_spill1.3,Flat"}) {
        auto index = trained(desc, d, n, x);
        auto* sp = as_spill_index(index.get());
        sp->set_nprobe(4);
        std::vector<uint8_t> bytes = serialize_gmm_index(index.get());
        std::unique_ptr<faiss::Index> back(deserialize_gmm_index(bytes.data(), bytes.size()));
        auto* sb = as_spill_index(back.get());
        ASSERT_NE(sb, nullptr) << desc;
        EXPECT_EQ(sb->ntotal, sp->ntotal);
        EXPECT_EQ(sb->n_entries(), sp->n_entries());
        EXPECT_EQ(int(sb->spill.rule), int(sp->spill.rule));
        EXPECT_EQ(sb->spill.max_copies, sp->spill.max_copies);
        EXPECT_EQ(sb->spill.budget, sp->spill.budget);
        EXPECT_EQ(sb->spill.tau, sp->spill.tau);
        EXPECT_EQ(sb->spill.soar_lambda, sp->spill.soar_lambda);
        EXPECT_EQ(sb->spill.primary_by_posterior, sp->spill.primary_by_posterior);
        EXPECT_EQ(sb->threshold, sp->threshold);
        // Not stored: the loader's constructor reads the id range back from the lists (the search's visited set).
        EXPECT_EQ(sb->min_id, 0);
        EXPECT_EQ(sb->max_id, n - 1);
        EXPECT_EQ(sp->min_id, 0);
        EXPECT_EQ(sp->max_id, n - 1);
        const GmmQuantizer* qa = find_gmm_quantizer(index.get());
        const GmmQuantizer* qb = find_gmm_quantizer(back.get());
        ASSERT_EQ(qa == nullptr, qb == nullptr);
        if (qa) EXPECT_EQ(qa->model.means, qb->model.means);
        std::vector<float> Da(nq * k), Db(nq * k);
        std::vector<idx_t> Ia(nq * k), Ib(nq * k);
        sb->set_nprobe(4);
        sp->search(nq, x.data(), k, Da.data(), Ia.data());
        sb->search(nq, x.data(), k, Db.data(), Ib.data());
        EXPECT_EQ(Ia, Ib);
        EXPECT_EQ(Da, Db);
        // Later adds use the saved threshold.
        sb->add(100, x.data());
        EXPECT_EQ(sb->ntotal, n + 100);
        // Plain FAISS still reads the file (every copy in the lists).
        faiss::VectorIOReader r;
        r.data = bytes;
        std::unique_ptr<faiss::Index> plain(faiss::read_index(&r));
        EXPECT_EQ(plain->ntotal, sp->n_entries());
    }
}

// Files written before issue 14 may set the posterior rule's temperature T, since removed: they are
// read as its exact equivalent (tau^T, threshold·T), so later adds store what the old index would
// have stored. Made here from a current file by editing its spill trailer (T = 2 and the tau and
// threshold an old index with the same lists held) and re-sealing the checksum footer.
TEST(SpillIO, ReadsTheRemovedTemperatureAsItsEquivalent) {
    const int64_t n = 3000, d = 16;
    std::vector<float> x = clustered_data(n, d, 20, 2.0f, 23);
    const std::vector<float> more = clustered_data(500, d, 20, 2.0f, 24);
    for (const char* desc : {"IVF24_GMM_post_spill1.3,Flat", "IVF24_GMM_tau0.04,Flat"}) {
        auto index = trained(desc, d, n, x);
        auto* sp = as_spill_index(index.get());
        std::vector<uint8_t> bytes = serialize_gmm_index(index.get());
        // The spill trailer: magic "FSPL", version, rule, max_copies, budget, tau, temperature, epsilon,
        // soar_lambda, primary_by_posterior, threshold, ...; the last "FSPL" in the file is its magic.
        const uint8_t magic[4] = {'F', 'S', 'P', 'L'};
        size_t at = bytes.size();
        for (size_t i = 0; i + 4 <= bytes.size(); i++) {
            if (std::memcmp(bytes.data() + i, magic, 4) == 0) at = i;
        }
        ASSERT_LT(at, bytes.size()) << desc;
        const size_t tau_at = at + 16 + 8, temp_at = tau_at + 8, thr_at = temp_at + 8 + 8 + 8 + 4;
        double tau = 0, temp = 0, thr = 0;
        std::memcpy(&tau, bytes.data() + tau_at, 8);
        std::memcpy(&temp, bytes.data() + temp_at, 8);
        std::memcpy(&thr, bytes.data() + thr_at, 8);
        ASSERT_EQ(temp, 1.0) << desc; // written as 1
        ASSERT_EQ(tau, sp->spill.tau) << desc;
        ASSERT_EQ(thr, sp->threshold) << desc;
        const double T = 2, tau_old = std::sqrt(tau), thr_old = thr / T;
        std::memcpy(bytes.data() + tau_at, &tau_old, 8);
        std::memcpy(bytes.data() + temp_at, &T, 8);
        std::memcpy(bytes.data() + thr_at, &thr_old, 8);
        // The footer (24 bytes, last): CRC-32C of every byte before its CRC field, at footer offset 16.
        const size_t crc_at = bytes.size() - 24 + 16;
        const uint32_t crc = crc32c_extend(0, bytes.data(), crc_at);
        std::memcpy(bytes.data() + crc_at, &crc, 4);
        std::unique_ptr<faiss::Index> back(deserialize_gmm_index(bytes.data(), bytes.size()));
        auto* sb = as_spill_index(back.get());
        ASSERT_NE(sb, nullptr) << desc;
        EXPECT_EQ(sb->threshold, sp->threshold) << desc; // halved, then doubled: exact in binary
        // sqrt, then pow(., 2): correctly rounded within 1 ulp each, so within γ^double_4 of tau.
        EXPECT_NEAR(sb->spill.tau, sp->spill.tau, faiss_gmm::testing::gamma_double(4) * sp->spill.tau) << desc;
        sp->add(500, more.data());
        sb->add(500, more.data());
        EXPECT_EQ(sb->n_entries(), sp->n_entries()) << desc;
        EXPECT_EQ(lists_of(sb->ivf), lists_of(sp->ivf)) << desc;
    }
}

// Older trailers still read: version 1 (no probing settings) and version 2 (no
// probe_variance_power), made from a version-3 file (the older writer, kept for
// tests: no checksum footer) by editing its bytes; a file whose removed probe
// settings are on (versions 2 and 3) is refused with a message, and plain FAISS
// still reads it.
TEST(SpillIO, ReadsVersion1And2TrailersRefusesRemovedProbing) {
    const int64_t n = 2000, d = 8;
    std::vector<float> x = clustered_data(n, d, 10, 1.0f, 9);
    auto index = trained("IVF16_GMM,Flat", d, n, x);
    std::vector<uint8_t> v3 = detail::serialize_gmm_index_old_format(index.get(), 3);
    // rank_by_posterior (int32) and probe_variance_weight (double), the version-2
    // fields, sit 92 bytes after the magic (after fast_math); probe_variance_power
    // (double, version 3) follows them at 104.
    const uint32_t magic = 0x4d4d4746;
    size_t pos = v3.size();
    for (size_t i = 0; i + 8 <= v3.size(); i++) {
        uint32_t m, v;
        std::memcpy(&m, v3.data() + i, 4);
        std::memcpy(&v, v3.data() + i + 4, 4);
        if (m == magic && v == 3) pos = i;
    }
    ASSERT_LT(pos, v3.size());
    for (uint32_t version : {1u, 2u, 3u}) {
        std::vector<uint8_t> old = v3;
        std::memcpy(old.data() + pos + 4, &version, 4);
        if (version < 3) {
            const long first = long(pos) + (version == 1 ? 92 : 104);
            old.erase(old.begin() + first, old.begin() + long(pos) + 112);
        }
        std::unique_ptr<faiss::Index> back(deserialize_gmm_index(old.data(), old.size()));
        const GmmQuantizer* q = find_gmm_quantizer(back.get());
        ASSERT_NE(q, nullptr) << "version " << version;
        EXPECT_EQ(q->model.means, find_gmm_quantizer(index.get())->model.means);
    }
    const int32_t on = 1;
    const double half = 0.5;
    for (size_t field : {size_t(92), size_t(96), size_t(104)}) { // rank_by_posterior, _weight, _power
        std::vector<uint8_t> probing = v3;
        if (field == 92) std::memcpy(probing.data() + pos + field, &on, 4);
        else std::memcpy(probing.data() + pos + field, &half, 8);
        try {
            std::unique_ptr<faiss::Index> back(deserialize_gmm_index(probing.data(), probing.size()));
            FAIL() << "a file with a removed probe ranking (field at " << field << ") was accepted";
        } catch (const std::runtime_error& e) {
            EXPECT_NE(std::string(e.what()).find("no longer has"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("faiss::read_index"), std::string::npos) << e.what();
        }
        faiss::VectorIOReader r;
        r.data = probing;
        std::unique_ptr<faiss::Index> plain(faiss::read_index(&r));
        EXPECT_EQ(plain->ntotal, n);
    }
    // A version from the future is refused with a clear message (4 is today's, with a
    // checksum footer: without one it is refused as truncated).
    for (uint32_t future : {4u, 5u}) {
        std::vector<uint8_t> v4 = v3;
        std::memcpy(v4.data() + pos + 4, &future, 4);
        EXPECT_THROW(deserialize_gmm_index(v4.data(), v4.size()), std::runtime_error);
    }
}

TEST(SpillEdit, RemoveIdsAndReconstruct) {
    const int64_t n = 2000, d = 8, k = 10;
    std::vector<float> x = clustered_data(n, d, 10, 1.0f, 13);
    for (const char* desc : {"IVF16_GMM_spill1.5,Flat", "PCA8,IVF16_spill1.5,Flat"}) {
        auto index = trained(desc, d, n, x);
        auto* sp = as_spill_index(index.get());
        // reconstruct by id, whichever copy: exact for Flat; through PCA, x̂ = Aᵀ(fl(Ax + b) − b)
        // (faiss's LinearTransform), so |x̂ − x| <= |(AᵀA − I)x| (A's own orthonormality, exact
        // here in double) + γ_{2d+4}|Aᵀ|(|A||x| + 2|b|) (the two float GEMVs and the bias).
        const auto* pre = dynamic_cast<const faiss::IndexPreTransform*>(sp->index); // the spill index wraps it
        const auto* lt = pre ? dynamic_cast<const faiss::LinearTransform*>(pre->chain.at(0)) : nullptr;
        std::vector<float> r(d);
        for (idx_t id : {idx_t(0), idx_t(17), idx_t(n - 1)}) {
            sp->reconstruct(id, r.data());
            const float* xi = x.data() + id * d;
            if (!lt) {
                for (int64_t j = 0; j < d; j++) EXPECT_EQ(r[j], xi[j]) << desc;
                continue;
            }
            const int64_t dout = lt->d_out;
            std::vector<double> y(dout), ay(dout); // A x and |A||x| + 2|b|
            for (int64_t t = 0; t < dout; t++) {
                for (int64_t j = 0; j < d; j++) {
                    y[t] += double(lt->A[t * d + j]) * xi[j];
                    ay[t] += std::fabs(double(lt->A[t * d + j]) * xi[j]);
                }
                ay[t] += lt->have_bias ? 2 * std::fabs(double(lt->b[t])) : 0.0;
            }
            for (int64_t j = 0; j < d; j++) {
                double back = 0, mag = 0;
                for (int64_t t = 0; t < dout; t++) {
                    back += double(lt->A[t * d + j]) * y[t];
                    mag += std::fabs(double(lt->A[t * d + j])) * ay[t];
                }
                const double tol = std::fabs(back - xi[j]) + faiss_gmm::testing::gamma(double(2 * d + 4)) * mag +
                                   faiss_gmm::testing::gamma_double(double(2 * d)) * mag;
                EXPECT_NEAR(r[j], xi[j], tol) << desc;
            }
        }
        EXPECT_THROW(sp->reconstruct(n + 5, r.data()), std::invalid_argument);
        // remove_ids removes every copy and counts distinct ids.
        auto before = lists_of(sp->ivf);
        int64_t copies = 0;
        for (idx_t id = 0; id < 100; id++) copies += int64_t(before[id].size());
        EXPECT_GT(copies, 100); // some of them were spilled
        const int64_t entries = sp->n_entries();
        faiss::IDSelectorRange sel(0, 100);
        EXPECT_EQ(sp->remove_ids(sel), 100u);
        EXPECT_EQ(sp->ntotal, n - 100);
        EXPECT_EQ(sp->n_entries(), entries - copies);
        sp->set_nprobe(16);
        std::vector<float> D(100 * k);
        std::vector<idx_t> I(100 * k);
        sp->search(100, x.data(), k, D.data(), I.data());
        for (idx_t v : I) EXPECT_TRUE(v < 0 || v >= 100);
        EXPECT_THROW(sp->reconstruct(5, r.data()), std::invalid_argument);
    }
}
