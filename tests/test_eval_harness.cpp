// The harness end to end on small synthetic data: k-means and GMM IVF built,
// swept and compared; invariants that must hold for any honest measurement;
// reports written; bad requests refused before work starts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "datasets/Dataset.h"
#include "datasets/Synthetic.h"
#include "eval/Evaluation.h"
#include "eval/Report.h"
#include "eval_test_helpers.h"
#include "process_helpers.h"

#include <faiss/index_factory.h>

using namespace faiss_gmm;
using namespace faiss_gmm::eval;

namespace {

datasets::Dataset small_dataset() {
    return faiss_gmm::testing::small_mixture_dataset(200, 4);
}

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

} // namespace

TEST(EvalHarness, KmeansAndGmmSweep) {
    datasets::Dataset ds = small_dataset();
    EvalParams p;
    p.index_description = "IVF32,Flat";
    p.methods = {"kmeans", "gmm", "gmmdiag", "gmmfull"};
    p.verbose = false;
    EvalReport r = evaluate(ds, p);
    ASSERT_EQ(r.methods.size(), 4u);
    for (const MethodResult& m : r.methods) {
        SCOPED_TRACE(m.method);
        EXPECT_EQ(m.nlist, 32);
        EXPECT_EQ(m.ntotal, 4000);
        EXPECT_EQ(m.invlists_bytes, size_t(4000) * (16 * 4 + 8));
        EXPECT_GE(m.imbalance, 1.0);
        ASSERT_EQ(m.points.size(), 6u); // 1 2 4 8 16 32
        for (size_t i = 0; i < m.points.size(); i++) {
            const SweepPoint& pt = m.points[i];
            EXPECT_EQ(pt.coarse, 32);
            EXPECT_EQ(pt.lists, double(pt.nprobe));
            EXPECT_EQ(pt.entries, pt.distinct); // single assignment
            EXPECT_DOUBLE_EQ(pt.entries, pt.faiss_ndis);
            // Recalls are means of per-query hit fractions, summed in the same order: a floating
            // sum and division are monotone, so a termwise >= holds exactly (no tolerance).
            EXPECT_GE(pt.recall_dist, pt.recall); // ties can only help the distance definition
            if (i > 0) {
                EXPECT_GE(pt.entries, m.points[i - 1].entries);
                // More lists probed: a superset of candidates, so no query loses a true neighbour
                // (barring a float tie at its k-th distance, which would cost 1/(nq·k)).
                EXPECT_GE(pt.recall, m.points[i - 1].recall);
            }
        }
        // Probing every list is an exhaustive search.
        EXPECT_DOUBLE_EQ(m.points.back().entries, 4000.0);
        EXPECT_DOUBLE_EQ(m.points.back().recall, 1.0);
    }
    ASSERT_EQ(r.comparisons.size(), 3u);
    for (const Comparison& c : r.comparisons) {
        EXPECT_EQ(c.baseline, "kmeans");
        for (const TargetRatio& t : c.targets) {
            EXPECT_GT(t.ratio_entries, 0.0);
            EXPECT_LT(t.ratio_entries, 10.0); // both trained sensibly on easy data
        }
    }

    // Fixed seeds: a second run measures the same recalls and costs.
    EvalParams p2 = p;
    p2.methods = {"kmeans", "gmm"};
    EvalReport r2 = evaluate(ds, p2);
    for (int m = 0; m < 2; m++) {
        for (size_t i = 0; i < r2.methods[m].points.size(); i++) {
            EXPECT_EQ(r2.methods[m].points[i].recall, r.methods[m].points[i].recall);
            EXPECT_EQ(r2.methods[m].points[i].entries, r.methods[m].points[i].entries);
        }
    }

    // Reports.
    const faiss_gmm::testing::TempDir tmp; // removed with its files
    const std::string& dir = tmp.path;
    write_csv({r}, dir + "/r.csv");
    write_json({r}, dir + "/r.json");
    std::string csv = slurp(dir + "/r.csv");
    EXPECT_NE(csv.find("dataset,metric,nb,nq,d,k,method"), std::string::npos);
    EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 4 * 6);
    std::string json = slurp(dir + "/r.json");
    EXPECT_NE(json.find("\"comparisons\""), std::string::npos);
    EXPECT_EQ(json.find("nan"), std::string::npos); // NaN is written as null
    std::string md = markdown_summary({r});
    EXPECT_NE(md.find("| synthetic |"), std::string::npos);
    EXPECT_NE(markdown_details(r).find("| gmmdiag | 32 |"), std::string::npos);
    EXPECT_NE(r.methods[3].description.find("IVF32_GMMfull"), std::string::npos) << r.methods[3].description;
}

TEST(EvalHarness, QuantizedVariantsAndStopRecall) {
    datasets::Dataset ds = small_dataset();
    EvalParams p;
    p.verbose = false;
    p.methods = {"kmeans", "gmm"};
    p.nprobes = {1, 4, 16, 64}; // 64 > nlist: skipped (PQ4x4: 8-bit PQ training is slow in this FAISS build)
    for (const char* desc : {"IVF16,PQ4x4", "IVF16,SQ8"}) {
        p.index_description = desc;
        EvalReport r = evaluate(ds, p);
        for (const MethodResult& m : r.methods) {
            SCOPED_TRACE(std::string(desc) + " " + m.method);
            ASSERT_EQ(m.points.size(), 3u);
            EXPECT_LT(m.invlists_bytes, size_t(4000) * (16 * 4 + 8)); // compressed codes
            EXPECT_DOUBLE_EQ(m.points.back().entries, 4000.0);
            EXPECT_GT(m.points.back().recall, 0.2);
        }
    }
    p.index_description = "IVF16,Flat";
    p.nprobes.clear();
    p.stop_recall = 0.5;
    EvalReport r = evaluate(ds, p);
    for (const MethodResult& m : r.methods) {
        EXPECT_GE(m.points.back().recall, 0.5);
        if (m.points.size() > 1) {
            EXPECT_LT(m.points[m.points.size() - 2].recall, 0.5);
        }
    }
}

TEST(EvalHarness, RefusesBadRequests) {
    datasets::Dataset ds = small_dataset();
    EvalParams p;
    p.verbose = false;
    p.methods = {"kmeans", "nonsense"};
    EXPECT_THROW(evaluate(ds, p), std::invalid_argument);
    p.methods = {"kmeans"};
    p.k = 20; // the ground truth has 10
    EXPECT_THROW(evaluate(ds, p), std::invalid_argument);
    p.k = 10;
    p.index_description = "HNSW32";
    EXPECT_THROW(evaluate(ds, p), std::invalid_argument);
    datasets::Dataset ip = ds;
    ip.metric = datasets::Metric::InnerProduct;
    p.index_description = "IVF16,Flat";
    EXPECT_THROW(evaluate(ip, p), std::invalid_argument);
}

TEST(EvalHarness, RegisteredMethodPlugsIn) {
    // A method registered from outside (as the spill issue will do) is built,
    // swept and compared like the built-in ones.
    register_method("kmeans-copy", [](int64_t d, const EvalParams& p, std::string* desc) {
        EvalParams q = p;
        q.index_description = "IVF8,Flat";
        *desc = "IVF8,Flat (registered)";
        std::string ignored;
        std::unique_ptr<faiss::Index> idx;
        for (const std::string& name : registered_methods()) {
            EXPECT_FALSE(name.empty());
        }
        return std::unique_ptr<faiss::Index>(faiss::index_factory(int(d), "IVF8,Flat"));
    });
    datasets::Dataset ds = small_dataset();
    EvalParams p;
    p.verbose = false;
    p.index_description = "IVF16,Flat";
    p.methods = {"kmeans", "kmeans-copy"};
    EvalReport r = evaluate(ds, p);
    ASSERT_EQ(r.methods.size(), 2u);
    EXPECT_EQ(r.methods[1].nlist, 8);
    EXPECT_EQ(r.methods[1].points.size(), 4u); // 1 2 4 8
    ASSERT_EQ(r.comparisons.size(), 1u);
    EXPECT_EQ(r.comparisons[0].method, "kmeans-copy");
}

namespace {

// The measured curve of a method: what must not change when its quantizer comes from the cache.
void expect_same_points(const MethodResult& a, const MethodResult& b) {
    ASSERT_EQ(a.points.size(), b.points.size()) << a.method;
    EXPECT_EQ(a.ntotal, b.ntotal) << a.method;
    for (size_t i = 0; i < a.points.size(); i++) {
        // Same centroids (write/read restores the floats bit for bit) -> same lists -> same counts.
        EXPECT_EQ(a.points[i].recall, b.points[i].recall) << a.method << " nprobe " << a.points[i].nprobe;
        EXPECT_EQ(a.points[i].entries, b.points[i].entries) << a.method << " nprobe " << a.points[i].nprobe;
        EXPECT_EQ(a.points[i].distinct, b.points[i].distinct) << a.method << " nprobe " << a.points[i].nprobe;
    }
}

bool from_cache(const MethodResult& m) {
    return m.quantizer_from.rfind("cache: ", 0) == 0;
}

} // namespace

TEST(EvalHarness, QuantizerCacheReusesOnlyTheSameTraining) {
    // A study runs the harness several times on one base (held-out selection, official report,
    // timing): the second run must read every coarse quantizer back and measure exactly what the
    // first did, and anything that changes the training (seed, base rows) must train again.
    datasets::Dataset ds = small_dataset();
    const faiss_gmm::testing::TempDir tmp; // removed with its files
    const std::string& dir = tmp.path;
    EvalParams p;
    p.verbose = false;
    p.index_description = "IVF16,Flat";
    p.nprobes = {1, 2, 4};
    p.methods = {"kmeans", "gmm", "gmm_soar_spill1.5"};
    p.quantizer_cache = dir;
    const EvalReport first = evaluate(ds, p);
    ASSERT_EQ(first.methods.size(), 3u);
    EXPECT_TRUE(first.methods[0].quantizer_from.empty());
    EXPECT_TRUE(first.methods[1].quantizer_from.empty());
    EXPECT_EQ(first.methods[2].quantizer_from, "gmm"); // shared within the run, as without a cache

    const EvalReport second = evaluate(ds, p);
    for (size_t i = 0; i < 3; i++) {
        EXPECT_TRUE(from_cache(second.methods[i])) << second.methods[i].method << ": " << second.methods[i].quantizer_from;
        expect_same_points(first.methods[i], second.methods[i]);
    }
    EXPECT_NE(second.methods[1].quantizer_from.find("trained by gmm"), std::string::npos);

    // Another index code on the same quantizer settings shares the quantizer (it sees only the base rows).
    EvalParams sq = p;
    sq.index_description = "IVF16,SQ8";
    sq.methods = {"kmeans"};
    EXPECT_TRUE(from_cache(evaluate(ds, sq).methods[0]));

    // Another seed: a different training, so no reuse.
    EvalParams seeded = p;
    seeded.seed = p.seed + 1;
    seeded.methods = {"kmeans", "gmm"};
    const EvalReport other_seed = evaluate(ds, seeded);
    EXPECT_FALSE(from_cache(other_seed.methods[0]));
    EXPECT_FALSE(from_cache(other_seed.methods[1]));

    // Another base (one value changed): its CRC differs, so no reuse.
    datasets::Dataset changed = ds;
    changed.base.data[5] += 1.0f;
    p.methods = {"kmeans"};
    EXPECT_FALSE(from_cache(evaluate(changed, p).methods[0]));

    // The key is spelled out beside each entry; a quantizer that cannot be shared has none.
    std::unique_ptr<faiss::Index> plain(faiss::index_factory(16, "IVF16,Flat"));
    const std::string key = quantizer_cache_key(plain.get(), ds.base.n, 42);
    EXPECT_NE(key.find("quantizer=kmeans/16/16"), std::string::npos) << key;
    EXPECT_NE(key.find("crc32c 42"), std::string::npos) << key;
    std::unique_ptr<faiss::Index> transformed(faiss::index_factory(16, "PCA8,IVF16,Flat"));
    EXPECT_EQ(quantizer_cache_key(transformed.get(), ds.base.n, 42), "");
}
