// Recall and cost counting against hand-computed small cases (duplicate ids,
// missing results, ties), curve interpolation, and a cross-check of the list
// walk against FAISS's own counter on a real IVF index.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/invlists/InvertedLists.h>

#include "datasets/Synthetic.h"
#include "eval/CostCounter.h"
#include "eval/Curve.h"
#include "eval/Evaluation.h"
#include "eval/Recall.h"

using namespace faiss_gmm;
using namespace faiss_gmm::eval;
using idx_t = faiss::Index::idx_t;

TEST(EvalRecall, IdRecallHandCases) {
    // k = 3, ground truth of width 4 (only its first 3 count).
    std::vector<int32_t> gt = {
            1, 2, 3, 9, //
            4, 5, 6, 9, //
            7, 8, 0, 9, //
            1, 2, 3, 9};
    std::vector<int64_t> I = {
            3, 2, 1,   // all found, another order: 3/3
            5, 5, 5,   // one id three times: counted once, 1/3
            9, -1, 7,  // 9 is the 4th neighbour (outside k), -1 missing: 1/3
            2, 2, -1}; // duplicate and missing: 1/3
    std::vector<double> r = recall_at_k_per_query(4, 3, I.data(), 3, gt.data(), 4);
    EXPECT_DOUBLE_EQ(r[0], 1.0);
    EXPECT_DOUBLE_EQ(r[1], 1.0 / 3);
    EXPECT_DOUBLE_EQ(r[2], 1.0 / 3);
    EXPECT_DOUBLE_EQ(r[3], 1.0 / 3);
    EXPECT_DOUBLE_EQ(recall_at_k(4, 3, I.data(), 3, gt.data(), 4), (1.0 + 3.0 / 3) / 4);
    // Wider result rows (ldi > k): only the first k results count.
    std::vector<int64_t> wide = {9, 9, 1, 2, 3}; // k = 2 -> {9}: 0 hits of {1, 2}
    std::vector<int32_t> g2 = {1, 2};
    EXPECT_DOUBLE_EQ(recall_at_k(1, 2, wide.data(), 5, g2.data(), 2), 0.0);
    EXPECT_THROW(recall_at_k(1, 3, wide.data(), 5, g2.data(), 2), std::invalid_argument);
}

TEST(EvalRecall, DistanceRecallCountsTies) {
    // 1-d base: points at 0, 1, 1, 2, 5; query at 0. True 3-NN distances: 0, 1, 1.
    // ids 1 and 2 tie at distance 1, so a result with id 2 instead of id 1 is
    // right for the distance definition and wrong for neither... except the id one.
    std::vector<float> base = {0, 1, 1, 2, 5};
    std::vector<float> q = {0};
    std::vector<int32_t> gt = {0, 1, 3}; // a ground truth listing 0, 1 then (wrongly placed) 3 at rank 3
    std::vector<int32_t> gt_true = {0, 1, 2};
    using datasets::Metric;
    std::vector<double> th = kth_distances(Metric::L2, 1, base.data(), 5, 1, q.data(), 3, gt_true.data(), 3);
    EXPECT_DOUBLE_EQ(th[0], 1.0); // Euclidean, not squared
    std::vector<int64_t> I = {0, 2, 1}; // all at distance <= 1
    std::vector<double> rd = result_distances(Metric::L2, 1, base.data(), 5, 1, q.data(), 3, I.data(), 3);
    EXPECT_DOUBLE_EQ(distance_recall(1, 3, I.data(), 3, rd.data(), 3, th.data()), 1.0);
    // Against a ground truth that lists 3 instead of the tied 2, id recall is 2/3.
    EXPECT_DOUBLE_EQ(recall_at_k(1, 3, I.data(), 3, gt.data(), 3), 2.0 / 3);
    // A farther point (id 3 at distance 2) does not count; a duplicate counts once.
    std::vector<int64_t> J = {0, 0, 3};
    rd = result_distances(Metric::L2, 1, base.data(), 5, 1, q.data(), 3, J.data(), 3);
    EXPECT_DOUBLE_EQ(distance_recall(1, 3, J.data(), 3, rd.data(), 3, th.data()), 1.0 / 3);
    // epsilon: ann-benchmarks' 1e-3 slack.
    std::vector<double> close = {0, 1.0005, 7};
    EXPECT_DOUBLE_EQ(distance_recall(1, 3, I.data(), 3, close.data(), 3, th.data()), 2.0 / 3);
    // Missing results (-1) have infinite distance.
    std::vector<int64_t> M = {0, -1, -1};
    rd = result_distances(Metric::L2, 1, base.data(), 5, 1, q.data(), 3, M.data(), 3);
    EXPECT_TRUE(std::isinf(rd[1]));
    EXPECT_DOUBLE_EQ(distance_recall(1, 3, M.data(), 3, rd.data(), 3, th.data()), 1.0 / 3);
    std::vector<int64_t> out_of_base = {7, 0, 0};
    EXPECT_THROW(result_distances(Metric::L2, 1, base.data(), 5, 1, q.data(), 3, out_of_base.data(), 3),
                 std::out_of_range);
}

TEST(EvalRecall, AngularDistanceUnits) {
    // Two unit vectors at 90 degrees: 1 - cos = 1.
    std::vector<float> base = {1, 0, 0, 1};
    std::vector<float> q = {1, 0};
    std::vector<int64_t> I = {1};
    std::vector<double> rd = result_distances(datasets::Metric::Angular, 2, base.data(), 2, 1, q.data(), 1, I.data(), 1);
    EXPECT_EQ(rd[0], 1.0); // integer components: the dot product and norms are exact, so is 1 − cos
}

namespace {

// Hand-made lists (code_size 4, codes irrelevant):
//   list 0: ids 1 2 3      list 1: ids 3 4      list 2: empty      list 3: ids 1 5 5
std::unique_ptr<faiss::ArrayInvertedLists> hand_lists(idx_t id_offset = 0) {
    auto il = std::make_unique<faiss::ArrayInvertedLists>(4, 4);
    std::vector<uint8_t> code(4 * 3, 0);
    auto add = [&](size_t l, std::vector<idx_t> ids) {
        for (idx_t& id : ids) {
            id += id_offset;
        }
        il->add_entries(l, ids.size(), ids.data(), code.data());
    };
    add(0, {1, 2, 3});
    add(1, {3, 4});
    add(3, {1, 5, 5});
    return il;
}

} // namespace

TEST(EvalCost, EntriesAndDistinctHandCases) {
    for (idx_t offset : {idx_t(0), idx_t(1) << 40}) { // dense visited array, then the hash-set path
        auto il = hand_lists(offset);
        CostCounter counter(il.get());
        EXPECT_EQ(counter.total_entries(), 8);
        std::vector<idx_t> lists = {
                0, 1,   // 3 + 2 entries; id 3 in both: 4 distinct
                0, 3,   // 3 + 3 entries; id 1 in both, 5 twice in list 3: 4 distinct {1,2,3,5}
                -1, 2,  // no list, then an empty one: 1 list, 0 entries
                3, 3,   // the same list twice (a quantizer never does it; counted as scanned): 6 entries, 2 distinct
                1, 0};  // order does not matter: 5 entries, 4 distinct
        std::vector<QueryCost> c = counter.count(5, 2, lists.data());
        EXPECT_EQ(c[0].entries, 5);
        EXPECT_EQ(c[0].distinct, 4);
        EXPECT_EQ(c[0].nprobe, 2);
        EXPECT_EQ(c[1].entries, 6);
        EXPECT_EQ(c[1].distinct, 4);
        EXPECT_EQ(c[2].nprobe, 1);
        EXPECT_EQ(c[2].entries, 0);
        EXPECT_EQ(c[2].distinct, 0);
        EXPECT_EQ(c[3].entries, 6);
        EXPECT_EQ(c[3].distinct, 2);
        EXPECT_EQ(c[4].entries, 5);
        EXPECT_EQ(c[4].distinct, 4);
        MeanCost m = mean_cost(c);
        EXPECT_DOUBLE_EQ(m.entries, (5 + 6 + 0 + 6 + 5) / 5.0);
        EXPECT_DOUBLE_EQ(m.distinct, (4 + 4 + 0 + 2 + 4) / 5.0);
        EXPECT_DOUBLE_EQ(m.nprobe, (2 + 2 + 1 + 2 + 2) / 5.0);
        std::vector<idx_t> bad = {4};
        EXPECT_THROW(counter.count(1, 1, bad.data()), std::out_of_range);
    }
    auto il = hand_lists();
    // 8 entries x (4 code bytes + 8 id bytes).
    EXPECT_EQ(invlists_bytes(il.get()), size_t(8 * 12));
    // sizes 3 2 0 3: 4 * (9 + 4 + 0 + 9) / 64
    EXPECT_DOUBLE_EQ(invlists_imbalance(il.get()), 4.0 * 22 / 64);
}

TEST(EvalCost, MatchesFaissCounterOnIvfFlat) {
    datasets::MixtureParams mp;
    mp.n = 3000;
    mp.d = 12;
    mp.ncomponents = 20;
    datasets::FloatMatrix x = datasets::generate_mixture(mp).x;
    faiss::IndexFlatL2 quantizer(12);
    faiss::IndexIVFFlat ivf(&quantizer, 12, 32);
    ivf.train(x.n, x.data.data());
    ivf.add(x.n, x.data.data());
    CostCounter counter(ivf.invlists);
    const int64_t nq = 50;
    for (int64_t nprobe : {1, 3, 32}) {
        ivf.nprobe = nprobe;
        std::vector<float> D(nq * 5), cd(nq * nprobe);
        std::vector<idx_t> I(nq * 5), lists(nq * nprobe);
        faiss::indexIVF_stats.reset();
        ivf.search(nq, x.data.data(), 5, D.data(), I.data());
        quantizer.search(nq, x.data.data(), nprobe, cd.data(), lists.data());
        MeanCost m = mean_cost(counter.count(nq, nprobe, lists.data()));
        EXPECT_DOUBLE_EQ(m.entries, double(faiss::indexIVF_stats.ndis) / nq) << "nprobe " << nprobe;
        EXPECT_DOUBLE_EQ(m.distinct, m.entries); // one list per vector
        if (nprobe == 32) {
            EXPECT_DOUBLE_EQ(m.entries, 3000.0);
        }
    }
}

TEST(EvalCurve, Interpolation) {
    std::vector<double> cost = {10, 100, 1000};
    std::vector<double> rec = {0.5, 0.7, 0.9};
    bool first;
    EXPECT_DOUBLE_EQ(cost_at_recall(cost, rec, 0.7, &first), 100);
    EXPECT_FALSE(first);
    // Halfway between 0.7 and 0.9 in recall = halfway in log cost: sqrt(100 * 1000).
    // Double rounding only: t = (0.8 − 0.7)/(0.9 − 0.7) off by <= 26 ulps (the decimals'
    // own rounding, amplified by the differences), three logs <= 1 ulp of 6.9, the sum and
    // exp: exponent off by <= ~120·2^-53, so relative error <= 128·2^-53; 256·2^-53 used.
    const double ulp = 0x1p-53;
    EXPECT_NEAR(cost_at_recall(cost, rec, 0.8), std::sqrt(1e5), 256 * ulp * std::sqrt(1e5));
    EXPECT_DOUBLE_EQ(cost_at_recall(cost, rec, 0.4, &first), 10);
    EXPECT_TRUE(first);
    EXPECT_TRUE(std::isnan(cost_at_recall(cost, rec, 0.95)));
    // t = (log c − log 10)/(log 100 − log 10) = 1/2 to <= 20·2^-53 relative, then
    // 0.5 + t·(0.7 − 0.5): <= 5·2^-53 absolute; 32·2^-53 used.
    EXPECT_NEAR(recall_at_cost(cost, rec, std::sqrt(10.0 * 100)), 0.6, 32 * ulp);
    EXPECT_DOUBLE_EQ(recall_at_cost(cost, rec, 1000), 0.9);
    EXPECT_TRUE(std::isnan(recall_at_cost(cost, rec, 5)));
    EXPECT_TRUE(std::isnan(recall_at_cost(cost, rec, 2000)));
    // A non-monotone recall: the first crossing counts.
    std::vector<double> r2 = {0.5, 0.85, 0.8, 0.95};
    std::vector<double> c2 = {1, 10, 100, 1000};
    // t = 1 exactly (the same difference over itself): exp(log 10), <= 4 ulps of 10.
    EXPECT_NEAR(cost_at_recall(c2, r2, 0.85), 10, 8 * ulp * 10);
    std::vector<double> bad = {10, 5};
    std::vector<double> br = {0.1, 0.2};
    EXPECT_THROW(cost_at_recall(bad, br, 0.1), std::invalid_argument);
}

TEST(EvalCompare, RatiosAndGainsFromCurves) {
    EvalReport r;
    r.params.baseline = "kmeans";
    r.params.recall_targets = {0.8, 0.9};
    MethodResult km, gm;
    km.method = "kmeans";
    gm.method = "gmm";
    // GMM reaches each recall at half the cost of k-means.
    double costs[] = {100, 200, 400, 800};
    double recs[] = {0.6, 0.8, 0.9, 0.95};
    for (int i = 0; i < 4; i++) {
        SweepPoint a, b;
        a.nprobe = b.nprobe = int64_t(1) << i;
        a.entries = a.distinct = costs[i];
        b.entries = b.distinct = costs[i] / 2;
        a.recall = b.recall = recs[i];
        km.points.push_back(a);
        gm.points.push_back(b);
    }
    r.methods = {km, gm};
    compare_methods(r);
    ASSERT_EQ(r.comparisons.size(), 1u);
    const Comparison& c = r.comparisons[0];
    EXPECT_EQ(c.method, "gmm");
    // Each cost is exp(log c0 + 1·(log c1 − log c0)) at a curve point (t = 1 exactly):
    // <= (2·|log c| + 2)·2^-53 ≈ 30·2^-53 relative, the ratio twice that; 128·2^-53 used.
    const double ulp = 0x1p-53;
    EXPECT_NEAR(c.targets[0].ratio_entries, 0.5, 128 * ulp * 0.5);
    EXPECT_NEAR(c.targets[1].ratio_distinct, 0.5, 128 * ulp * 0.5);
    EXPECT_FALSE(c.targets[0].bound);
    // At k-means' cost 200, GMM's curve (costs 50..400) gives recall 0.9: gain 0.1.
    // Recalls at curve points (t = 1 exactly): r0 + (r1 − r0), within 2 ulps of 1 of the
    // decimal; the gain subtracts another: <= 6·2^-53 absolute; 16·2^-53 used.
    EXPECT_NEAR(c.gains[1].gain, 0.1, 16 * ulp);
    EXPECT_NEAR(c.gains[0].method_recall, 0.8, 16 * ulp);
    EXPECT_TRUE(std::isnan(c.gains[3].gain)); // 800 is beyond GMM's last point (400)
}

TEST(EvalDescriptions, SuffixAndNlist) {
    EXPECT_EQ(with_ivf_suffix("IVF256,Flat", "_GMM"), "IVF256_GMM,Flat");
    EXPECT_EQ(with_ivf_suffix("OPQ16_64,IVF1024,PQ16", "_GMMdiag"), "OPQ16_64,IVF1024_GMMdiag,PQ16");
    EXPECT_EQ(with_ivf_suffix("IVF64_GMM,SQ8", "_GMMdiag"), "IVF64_GMMdiag,SQ8");
    EXPECT_EQ(nlist_of("PCA32,IVF128,Flat"), 128);
    EXPECT_THROW(with_ivf_suffix("HNSW32", "_GMM"), std::invalid_argument);
    EXPECT_THROW(nlist_of("Flat"), std::invalid_argument);
}
