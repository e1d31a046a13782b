// Exact ground truth (blocked FAISS flat + float64 re-ranking) against the
// shipped ground truth of the shared datasets and against brute force; and the
// synthetic generators.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "datasets/Dataset.h"
#include "datasets/GroundTruth.h"
#include "datasets/Synthetic.h"
#include "datasets/VecsFile.h"
#include "error_bounds.h"

using namespace faiss_gmm;
using namespace faiss_gmm::datasets;

namespace {

std::string shared(const std::string& rel) {
    return std::string(FAISS_GMM_SOURCE_DIR) + "/../shared/datasets/" + rel;
}

bool have_shared() {
    return access(shared("siftsmall/siftsmall_base.fvecs").c_str(), R_OK) == 0;
}

// Ids must agree at every rank, except where the two files order tied
// neighbours differently: then the distances at that rank must be equal.
void expect_same_up_to_ties(const IntMatrix& got, const IntMatrix& ref, const FloatMatrix& base,
                            const FloatMatrix& q, Metric metric, int64_t* nties) {
    ASSERT_EQ(got.n, ref.n);
    ASSERT_EQ(got.d, ref.d);
    *nties = 0;
    for (int64_t i = 0; i < got.n; i++) {
        for (int64_t j = 0; j < got.d; j++) {
            int32_t a = got.at(i, j), b = ref.at(i, j);
            if (a == b) {
                continue;
            }
            (*nties)++;
            double da = exact_distance(metric, q.d, q.row(i), base.row(a));
            double db = exact_distance(metric, q.d, q.row(i), base.row(b));
            EXPECT_EQ(da, db) << "query " << i << " rank " << j << ": ids " << a << " vs " << b;
        }
    }
}

GroundTruth brute_force(const FloatMatrix& base, const FloatMatrix& q, int k, Metric metric) {
    GroundTruth gt;
    gt.ids = IntMatrix(q.n, k);
    gt.distances = FloatMatrix(q.n, k);
    bool larger = metric == Metric::InnerProduct;
    for (int64_t i = 0; i < q.n; i++) {
        std::vector<std::pair<double, int>> c;
        for (int64_t j = 0; j < base.n; j++) {
            c.emplace_back(exact_distance(metric, q.d, q.row(i), base.row(j)), int(j));
        }
        std::sort(c.begin(), c.end(), [larger](auto& a, auto& b) {
            if (a.first != b.first) {
                return larger ? a.first > b.first : a.first < b.first;
            }
            return a.second < b.second;
        });
        for (int j = 0; j < k; j++) {
            gt.ids.at(i, j) = c[j].second;
            gt.distances.at(i, j) = float(c[j].first);
        }
    }
    return gt;
}

} // namespace

TEST(DatasetsGroundTruth, EqualsShippedSiftsmall) {
    if (!have_shared()) {
        GTEST_SKIP() << "../shared/datasets not present";
    }
    auto base_src = open_vectors(shared("siftsmall/siftsmall_base.fvecs"));
    FloatMatrix base = read_vectors(shared("siftsmall/siftsmall_base.fvecs"));
    FloatMatrix q = read_vectors(shared("siftsmall/siftsmall_query.fvecs"));
    IntMatrix ref = read_ivecs(shared("siftsmall/siftsmall_groundtruth.ivecs"));
    GroundTruth gt = compute_ground_truth(*base_src, q.n, q.data.data(), 100, Metric::L2);
    int64_t nties;
    expect_same_up_to_ties(gt.ids, ref, base, q, Metric::L2, &nties);
    // The TEXMEX file orders a few exact ties differently; everything else is identical.
    EXPECT_LT(nties, 40);
    // Distances come out in squared L2, exactly (integer-valued SIFT components).
    EXPECT_EQ(gt.distances.at(0, 0), float(exact_distance(Metric::L2, 128, q.row(0), base.row(ref.at(0, 0)))));

    // Blocking over the base does not change anything, ties included.
    GroundTruthParams small;
    small.base_block = 777;
    small.margin = 3;
    GroundTruth gb = compute_ground_truth(*base_src, q.n, q.data.data(), 100, Metric::L2, small);
    EXPECT_EQ(gb.ids.data, gt.ids.data);
    EXPECT_EQ(gb.distances.data, gt.distances.data);
}

TEST(DatasetsGroundTruth, EqualsShippedBigannFromBvecs) {
    if (!have_shared()) {
        GTEST_SKIP() << "../shared/datasets not present";
    }
    auto src = open_vectors(shared("bigann10k/bigann10k_base.bvecs")); // uint8 rows
    FloatMatrix base = read_vectors(shared("bigann10k/bigann10k_base.bvecs"));
    FloatMatrix q = read_vectors(shared("bigann10k/bigann10k_query.bvecs"));
    IntMatrix ref = read_ivecs(shared("bigann10k/bigann10k_groundtruth.ivecs"));
    GroundTruth gt = compute_ground_truth(*src, q.n, q.data.data(), 100, Metric::L2);
    int64_t nties;
    expect_same_up_to_ties(gt.ids, ref, base, q, Metric::L2, &nties);
    EXPECT_LT(nties, 40);
}

TEST(DatasetsGroundTruth, EqualsShippedGloveAngularAndL2) {
    if (!have_shared()) {
        GTEST_SKIP() << "../shared/datasets not present";
    }
    auto src = open_vectors(shared("glove25_tw12k/glove25_base.fvecs"));
    FloatMatrix q = read_vectors(shared("glove25_tw12k/glove25_query.fvecs"));
    // Both shipped files break ties by the lower id, as we do: identical files.
    GroundTruth ga = compute_ground_truth(*src, q.n, q.data.data(), 100, Metric::Angular);
    EXPECT_EQ(ga.ids.data, read_ivecs(shared("glove25_tw12k/glove25_groundtruth_angular.ivecs")).data);
    GroundTruth gl = compute_ground_truth(*src, q.n, q.data.data(), 100, Metric::L2);
    EXPECT_EQ(gl.ids.data, read_ivecs(shared("glove25_tw12k/glove25_groundtruth_l2.ivecs")).data);
}

TEST(DatasetsGroundTruth, MatchesBruteForceAllMetricsWithTies) {
    MixtureParams mp;
    mp.n = 700;
    mp.d = 11;
    mp.ncomponents = 5;
    mp.seed = 7;
    FloatMatrix base = generate_mixture(mp).x;
    // Exact duplicates of rows 3 and 10 at the end: ties that must go to the lower id.
    for (int src : {3, 10, 3}) {
        base.data.insert(base.data.end(), base.row(src), base.row(src) + base.d);
        base.n++;
    }
    mp.seed = 8;
    mp.n = 23;
    FloatMatrix q = generate_mixture(mp).x;
    std::copy(base.row(3), base.row(3) + q.d, q.row(0)); // a query equal to a duplicated row
    MemoryVectorSource src(base.n, base.d, base.data.data());
    for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Angular}) {
        GroundTruthParams gp;
        gp.base_block = 100; // many blocks
        GroundTruth gt = compute_ground_truth(src, q.n, q.data.data(), 15, m, gp);
        GroundTruth bf = brute_force(base, q, 15, m);
        EXPECT_EQ(gt.ids.data, bf.ids.data) << to_string(m);
        // The same ids, each distance from the same exact_distance() call rounded to float:
        // bit-identical.
        EXPECT_EQ(gt.distances.data, bf.distances.data) << to_string(m);
    }
    // Query 0 equals row 3 and its two copies (ids 700, 702): all at distance 0, lower id first.
    GroundTruth gt = compute_ground_truth(src, q.n, q.data.data(), 3, Metric::L2);
    EXPECT_EQ(gt.ids.at(0, 0), 3);
    EXPECT_EQ(gt.ids.at(0, 1), 700);
    EXPECT_EQ(gt.ids.at(0, 2), 702);
    // k larger than the base: missing neighbours are -1.
    MemoryVectorSource tiny(2, base.d, base.data.data());
    GroundTruth gk = compute_ground_truth(tiny, 1, q.data.data(), 4, Metric::L2);
    EXPECT_EQ(gk.ids.at(0, 2), -1);
    EXPECT_THROW(compute_ground_truth(src, 1, q.data.data(), 0, Metric::L2), std::invalid_argument);
}

TEST(DatasetsGroundTruth, MetricNames) {
    EXPECT_EQ(parse_metric("euclidean"), Metric::L2);
    EXPECT_EQ(parse_metric("cosine"), Metric::Angular);
    EXPECT_EQ(parse_metric("ip"), Metric::InnerProduct);
    EXPECT_THROW(parse_metric("hamming"), std::invalid_argument);
    EXPECT_DOUBLE_EQ(ann_benchmarks_distance(Metric::L2, 9.0), 3.0);
    EXPECT_DOUBLE_EQ(ann_benchmarks_distance(Metric::Angular, 0.5), 0.25);
}

TEST(DatasetsSynthetic, DeterministicAndRangeIndependent) {
    MixtureParams p;
    p.n = 3000;
    p.d = 8;
    p.ncomponents = 6;
    p.anisotropy = 10;
    p.scale_ratio = 3;
    p.weight_skew = 1;
    p.noise_fraction = 0.1;
    MixtureSample a = generate_mixture(p);
    MixtureSample b = generate_mixture(p);
    EXPECT_EQ(a.x.data, b.x.data);
    MixtureSample part = generate_mixture(p, 1000, 500);
    EXPECT_TRUE(std::equal(part.x.data.begin(), part.x.data.end(), a.x.row(1000)));
    EXPECT_TRUE(std::equal(part.labels.begin(), part.labels.end(), a.labels.begin() + 1000));
    // Noise share and component sizes follow the parameters. Each row is noise with
    // probability 0.1: sd sqrt(0.1·0.9/3000) = 0.0055, 0.03 is 5.5 sd (P = 4e-8 for a
    // random seed; this seed is fixed, so the outcome is deterministic).
    int64_t noise = std::count(a.labels.begin(), a.labels.end(), -1);
    EXPECT_NEAR(double(noise) / p.n, 0.1, 0.03);
    std::vector<int64_t> counts(p.ncomponents, 0);
    for (int32_t l : a.labels) {
        if (l >= 0) {
            counts[l]++;
        }
    }
    // Zipf weights 1 vs 1/6: E[c0 − 2c5] = 3000·0.9·(0.408 − 2·0.068) = 734, sd 41: 18 sd.
    EXPECT_GT(counts[0], 2 * counts[5]);
    // K divisions by the double sum, then a K-term double sum: within γ^double_2K of 1.
    EXPECT_NEAR(std::accumulate(a.weights.begin(), a.weights.end(), 0.0), 1.0,
                faiss_gmm::testing::gamma_double(double(2 * p.ncomponents)));
    // Another seed, other data.
    p.seed = 99;
    EXPECT_NE(generate_mixture(p).x.data, a.x.data);

    FloatMatrix u = generate_uniform(1000, 4, 5, -2.f, 3.f);
    for (float v : u.data) {
        EXPECT_GE(v, -2.f);
        EXPECT_LT(v, 3.f);
    }
    EXPECT_THROW(generate_mixture(MixtureParams{10, 0}), std::invalid_argument);
    MixtureParams bad;
    bad.anisotropy = 0.5;
    EXPECT_THROW(generate_mixture(bad), std::invalid_argument);
}

TEST(DatasetsSynthetic, AnisotropyShapesTheClusters) {
    MixtureParams p;
    p.n = 20000;
    p.d = 16;
    p.ncomponents = 1;
    p.spread = 0;
    p.anisotropy = 100; // per-dimension std in [0.1, 10]
    MixtureSample s = generate_mixture(p);
    std::vector<double> var(p.d, 0);
    for (int64_t i = 0; i < s.x.n; i++) {
        for (int64_t j = 0; j < p.d; j++) {
            var[j] += double(s.x.at(i, j)) * s.x.at(i, j) / s.x.n;
        }
    }
    double lo = *std::min_element(var.begin(), var.end()), hi = *std::max_element(var.begin(), var.end());
    // 16 per-dimension stds log-uniform in [0.1, 10] (ratio <= 100). Above 10 unless the 16
    // draws span less than half the log range: P = 16·2^-15 − 15·2^-16 = 2.6e-4 (seed fixed).
    EXPECT_GT(std::sqrt(hi / lo), 10.0);
    // Each variance from 20000 draws (mean 0 known): relative sd sqrt(2/20000) = 1%; at 5 sd
    // the std ratio is at most 100·sqrt(1.05/0.95) = 105 < 110.
    EXPECT_LE(std::sqrt(hi / lo), 110.0);
}

TEST(DatasetsLoad, NamedDatasetsAndComputedGroundTruth) {
    if (!have_shared()) {
        GTEST_SKIP() << "../shared/datasets not present";
    }
    std::string root = std::string(FAISS_GMM_SOURCE_DIR) + "/../shared/datasets";
    DatasetSpec s = named_dataset("glove25-angular", root);
    s.max_queries = 50;
    Dataset d = load_dataset(s);
    EXPECT_EQ(d.queries.n, 50);
    EXPECT_EQ(d.groundtruth.n, 50);
    EXPECT_FALSE(d.groundtruth_computed);
    // Normalized in float by float(1/‖x‖) (‖x‖ in double): 2 roundings, within 2u(1 + u) of
    // 1 (the double norm here adds ~1e-15); 3u used.
    EXPECT_NEAR(std::sqrt(std::inner_product(d.base.row(5), d.base.row(5) + d.d(), d.base.row(5), 0.0)), 1.0,
                3 * faiss_gmm::testing::kUnitRoundoff);
    // A base prefix: the shipped ground truth no longer applies and is recomputed.
    DatasetSpec p = named_dataset("siftsmall", root);
    p.max_base = 2000;
    p.max_queries = 10;
    Dataset dp = load_dataset(p);
    EXPECT_TRUE(dp.groundtruth_computed);
    for (int32_t id : dp.groundtruth.data) {
        EXPECT_LT(id, 2000);
    }
    EXPECT_THROW(named_dataset("nope", root), std::invalid_argument);
    // Ground-truth ids outside the base are refused.
    DatasetSpec bad = named_dataset("siftsmall", root);
    bad.groundtruth = shared("glove25_tw12k/glove25_groundtruth_l2.ivecs"); // ids up to 10924 > 9999
    EXPECT_THROW(load_dataset(bad), std::runtime_error);
}
