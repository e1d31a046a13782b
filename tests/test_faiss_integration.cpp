// GMM training through FAISS's own paths: the factory strings, IndexIVF::train
// with every IVF variant and pre-transform, GmmClustering, save/load, and the
// siftsmall sanity check against k-means IVF.
#include <gtest/gtest.h>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/VectorTransform.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <set>

#include "faiss_gmm/GmmClustering.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/gmm_io.h"
#include "error_bounds.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using namespace faiss_gmm::testing;
using idx_t = faiss::Index::idx_t;

namespace {

struct Siftsmall {
    int64_t nb = 0, nq = 0, d = 0;
    std::vector<float> xb, xq;
    std::vector<int> gt; // nq × 100
};

/// siftsmall from ../shared/datasets, or nullptr when absent.
const Siftsmall* siftsmall() {
    static std::unique_ptr<Siftsmall> data = [] {
        auto s = std::make_unique<Siftsmall>();
        try {
            VecsFileSource base(shared_dataset("siftsmall/siftsmall_base.fvecs"));
            VecsFileSource query(shared_dataset("siftsmall/siftsmall_query.fvecs"));
            s->nb = base.ntotal();
            s->nq = query.ntotal();
            s->d = base.d();
            s->xb.resize(s->nb * s->d);
            s->xq.resize(s->nq * s->d);
            read_as_float(base, 0, s->nb, s->xb.data());
            read_as_float(query, 0, s->nq, s->xq.data());
            // The ground truth is .ivecs: int32 records, read as float-sized elements.
            VecsFileSource gt(shared_dataset("siftsmall/siftsmall_groundtruth.ivecs"), DataType::Float32);
            std::vector<uint8_t> scratch;
            VectorBlock b = gt.read(0, gt.ntotal(), scratch);
            s->gt.resize(size_t(gt.ntotal()) * gt.d());
            std::memcpy(s->gt.data(), b.data, s->gt.size() * sizeof(int));
            if (gt.d() != 100) return std::unique_ptr<Siftsmall>();
        } catch (const std::exception&) {
            return std::unique_ptr<Siftsmall>();
        }
        return s;
    }();
    return data.get();
}

double recall_at_10(const Siftsmall& s, const std::vector<idx_t>& labels) {
    int64_t hits = 0;
    for (int64_t q = 0; q < s.nq; q++) {
        std::set<int> truth(s.gt.begin() + q * 100, s.gt.begin() + q * 100 + 10);
        for (int i = 0; i < 10; i++) hits += truth.count(int(labels[q * 10 + i]));
    }
    return double(hits) / double(s.nq * 10);
}

std::vector<idx_t> search(faiss::Index* index, const Siftsmall& s, int nprobe) {
    faiss::IndexIVF* ivf = find_ivf(index);
    ivf->nprobe = nprobe;
    std::vector<float> dist(s.nq * 10);
    std::vector<idx_t> labels(s.nq * 10);
    index->search(s.nq, s.xq.data(), 10, dist.data(), labels.data());
    return labels;
}

GmmParams quick_params() {
    GmmParams p;
    p.niter = 10;
    return p;
}

} // namespace

TEST(GmmIndexFactory, ParsesGmmTokens) {
    std::string desc;
    CovarianceType type;
    ASSERT_TRUE(parse_gmm_description("IVF1024_GMM,PQ16", &desc, &type));
    EXPECT_EQ(desc, "IVF1024,PQ16");
    EXPECT_EQ(type, CovarianceType::Spherical);
    ASSERT_TRUE(parse_gmm_description("OPQ16_64,IVF256_GMMdiag,PQ16x4fsr", &desc, &type));
    EXPECT_EQ(desc, "OPQ16_64,IVF256,PQ16x4fsr");
    EXPECT_EQ(type, CovarianceType::Diagonal);
    EXPECT_FALSE(parse_gmm_description("IVF1024,PQ16", &desc, &type));
}

TEST(GmmIndexFactory, RefusesBadDescriptionsAndMetrics) {
    EXPECT_THROW(gmm_index_factory(32, "IVF64,Flat"), std::invalid_argument) << "no GMM token";
    EXPECT_THROW(gmm_index_factory(32, "IVF64_GMMtied,Flat"), std::invalid_argument);
    EXPECT_THROW(gmm_index_factory(32, "IVF64_GMM,Bogus"), std::invalid_argument);
    EXPECT_THROW(gmm_index_factory(32, "IVF64_GMM,IVF32_GMM,Flat"), std::invalid_argument);
    EXPECT_THROW(gmm_index_factory(32, "IVF64_GMM,Flat", faiss::METRIC_INNER_PRODUCT), std::invalid_argument);
    EXPECT_THROW(gmm_index_factory(0, "IVF64_GMM,Flat"), std::invalid_argument);
    EXPECT_THROW(gmm_index_factory(32, "HNSW32_GMM"), std::invalid_argument);
}

// Every IVF variant and pre-transform trains through GmmQuantizer::train.
class FactoryStrings : public ::testing::TestWithParam<const char*> {};

TEST_P(FactoryStrings, TrainAddSearch) {
    const Siftsmall* s = siftsmall();
    if (!s) GTEST_SKIP() << "../shared/datasets/siftsmall not available";
    std::unique_ptr<faiss::Index> index(gmm_index_factory(int(s->d), GetParam(), faiss::METRIC_L2, quick_params()));
    GmmQuantizer* q = find_gmm_quantizer(index.get());
    ASSERT_NE(q, nullptr);
    if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index.get())) {
        if (auto* opq = dynamic_cast<faiss::OPQMatrix*>(pt->chain[0])) {
            // Debian's FAISS build trains PQ slowly; OPQ retrains it ~50 times.
            // A few rounds suffice to show the pre-transform feeds GMM training.
            opq->niter = 4;
            opq->niter_pq_0 = 4;
        }
    }
    index->train(s->nb, s->xb.data());
    ASSERT_TRUE(index->is_trained);
    ASSERT_EQ(q->ntotal, 64);
    EXPECT_EQ(q->model.K, 64);
    EXPECT_EQ(int(q->iteration_stats.size()), 10) << "EM ran through the quantizer";
    EXPECT_EQ(q->model.covariance_type,
              std::string(GetParam()).find("GMMdiag") != std::string::npos ? CovarianceType::Diagonal
                                                                          : CovarianceType::Spherical);
    if (std::string(GetParam()).rfind("IDMap", 0) == 0) {
        std::vector<idx_t> ids(s->nb);
        for (int64_t i = 0; i < s->nb; i++) ids[i] = i;
        index->add_with_ids(s->nb, s->xb.data(), ids.data());
    } else {
        index->add(s->nb, s->xb.data());
    }
    EXPECT_EQ(index->ntotal, s->nb);
    // Probing every list makes the search exhaustive over the codes: recall is
    // then limited only by the encoding.
    const double r = recall_at_10(*s, search(index.get(), *s, 64));
    const bool exact = std::string(GetParam()).find("Flat") != std::string::npos &&
                       std::string(GetParam()).find("PCA") == std::string::npos;
    // Not a rounding-error bound: with Flat codes and every list probed the search is
    // exhaustive, so only float ties at the 10th rank (IVF's direct vs the ground truth's
    // BLAS distances) can cost recall; 0.999 allows 0.1% such swaps. For lossy codes 0.3 is
    // a breakage floor (the encodings' recall is not derived here).
    EXPECT_GE(r, exact ? 0.999 : 0.3) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(AllVariants, FactoryStrings,
                         ::testing::Values("IVF64_GMM,Flat", "IVF64_GMMdiag,Flat", "IVF64_GMM,PQ16x4", "IVF64_GMM,SQ8",
                                           "IVF64_GMM,PQ16x4fs", "IVF64_GMM,PQ16x4fsr", "OPQ8_32,IVF64_GMM,PQ8x4",
                                           "PCA32,IVF64_GMM,Flat", "IDMap,IVF64_GMM,Flat"));

TEST(GmmQuantizer, SiftsmallRecallNotBelowKMeans) {
    // Sanity check that GMM training is not broken: at every nprobe in 1..16 the
    // GMM-IVF recall@10 is at least the k-means IVF's minus 0.03. (The real
    // comparison, with costs, is the evaluation harness's job.) siftsmall has
    // only 100 queries, and one training seed moves recall@10 at nprobe 1 by
    // ±0.03 for either method: both are averaged over the same three seeds.
    const Siftsmall* s = siftsmall();
    if (!s) GTEST_SKIP() << "../shared/datasets/siftsmall not available";
    const int nprobes[] = {1, 2, 4, 8, 16};
    const int seeds[] = {1234, 1, 2};
    auto mean_recalls = [&](auto make_index) {
        std::vector<double> mean(std::size(nprobes), 0.0);
        for (int seed : seeds) {
            std::unique_ptr<faiss::Index> index(make_index(seed));
            index->train(s->nb, s->xb.data());
            index->add(s->nb, s->xb.data());
            for (size_t i = 0; i < std::size(nprobes); i++) {
                mean[i] += recall_at_10(*s, search(index.get(), *s, nprobes[i])) / double(std::size(seeds));
            }
        }
        return mean;
    };
    const std::vector<double> kmeans = mean_recalls([&](int seed) {
        faiss::Index* index = faiss::index_factory(int(s->d), "IVF64,Flat");
        find_ivf(index)->cp.seed = seed;
        return index;
    });
    // The default (spherical) must meet the bound. Diagonal components are
    // probed by plain L2 to their means, which ignores their per-dimension
    // shapes: it trails k-means by about 0.05 at nprobe 1-2 here (as the
    // prototype in QUALITY_NOTES.md found); its bound only guards against breakage.
    for (const char* desc : {"IVF64_GMM,Flat", "IVF64_GMMdiag,Flat"}) {
        const double margin = std::string(desc).find("GMMdiag") != std::string::npos ? 0.08 : 0.03;
        const std::vector<double> gmm = mean_recalls([&](int seed) {
            GmmParams p;
            p.seed = seed;
            return gmm_index_factory(int(s->d), desc, faiss::METRIC_L2, p);
        });
        for (size_t i = 0; i < std::size(nprobes); i++) {
            std::printf("%-20s nprobe %2d: mean recall@10 k-means %.3f  GMM %.3f\n", desc, nprobes[i], kmeans[i],
                        gmm[i]);
            EXPECT_GE(gmm[i], kmeans[i] - margin) << desc << " nprobe " << nprobes[i];
        }
    }
}

TEST(GmmQuantizer, SearchReturnsTrueSquaredL2) {
    std::vector<float> x = clustered_data(3000, 16, 8, 1.0f, 3);
    GmmQuantizer q(16, 8, quick_params());
    q.train(3000, x.data());
    std::vector<float> dist(5 * 3);
    std::vector<idx_t> lab(5 * 3);
    q.search(5, x.data(), 3, dist.data(), lab.data());
    for (int i = 0; i < 5; i++) {
        for (int j = 0; j < 3; j++) {
            // A float32 squared distance, direct or expanded (‖x‖² + ‖μ‖² − 2x·μ): within
            // 2γ_{d+3}(‖x‖² + ‖μ‖²) of exact, whatever the cancellation.
            double ref = 0, norms = 0;
            for (int c = 0; c < 16; c++) {
                const double xc = x[i * 16 + c], mc = q.model.means[lab[i * 3 + j] * 16 + c];
                ref += (xc - mc) * (xc - mc);
                norms += xc * xc + mc * mc;
            }
            EXPECT_NEAR(dist[i * 3 + j], ref, 2 * faiss_gmm::testing::gamma(16 + 3) * norms);
        }
    }
}

TEST(GmmQuantizer, InstallRefusesWhatItCannotTrain) {
    std::unique_ptr<faiss::Index> flat(faiss::index_factory(16, "Flat"));
    EXPECT_THROW(install_gmm_quantizer(flat.get()), std::invalid_argument);
    std::unique_ptr<faiss::Index> ip(faiss::index_factory(16, "IVF8,Flat", faiss::METRIC_INNER_PRODUCT));
    EXPECT_THROW(install_gmm_quantizer(ip.get()), std::invalid_argument);
    std::vector<float> x = clustered_data(1000, 16, 8, 1.0f, 4);
    std::unique_ptr<faiss::Index> trained(faiss::index_factory(16, "IVF8,Flat"));
    trained->train(1000, x.data());
    EXPECT_THROW(install_gmm_quantizer(trained.get()), std::invalid_argument);
    // K > N surfaces through IndexIVF::train with a clear message.
    std::unique_ptr<faiss::Index> index(gmm_index_factory(16, "IVF64_GMM,Flat"));
    try {
        index->train(10, x.data());
        FAIL() << "K > N accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("need N >= K"), std::string::npos) << e.what();
    }
}

TEST(GmmClustering, FollowsTheFaissClusteringInterface) {
    std::vector<float> x = clustered_data(4000, 10, 6, 1.0f, 5);
    faiss::ClusteringParameters cp;
    cp.niter = 12;
    GmmParams gp;
    gp.tol = 0; // run all niter iterations, as faiss::Clustering does
    GmmClustering clus(10, 6, cp, gp);
    faiss::IndexFlatL2 index(10);
    faiss::Clustering& base = clus; // through the base class, as FAISS users call it
    base.train(4000, x.data(), index);
    EXPECT_EQ(clus.centroids.size(), size_t(60));
    EXPECT_EQ(index.ntotal, 6);
    EXPECT_EQ(std::vector<float>(index.get_xb(), index.get_xb() + 60), clus.centroids);
    ASSERT_EQ(clus.iteration_stats.size(), size_t(12));
    EXPECT_EQ(clus.iteration_stats.size(), clus.gmm_iteration_stats.size());
    // obj is the negative mean log-likelihood of each iteration, as a float. (That EM never
    // lowers it, up to the E-step's rounding-error bound, is test_trainer's
    // LogLikelihoodNeverDecreases: the same trainer.)
    for (size_t i = 0; i < clus.iteration_stats.size(); i++) {
        EXPECT_EQ(clus.iteration_stats[i].obj, float(-clus.gmm_iteration_stats[i].loglik));
    }
    std::vector<float> w(4000, 1.0f);
    EXPECT_THROW(base.train(4000, x.data(), index, w.data()), std::invalid_argument);
}

TEST(GmmIO, RoundTripKeepsTheModelAndStaysFaissReadable) {
    const std::string fname = ::testing::TempDir() + "/gmm_roundtrip.faissindex";
    std::vector<float> x = clustered_data(5000, 24, 16, 1.0f, 6);
    for (const char* desc : {"IVF16_GMM,Flat", "IVF16_GMMdiag,PQ8x4", "PCA16,IVF16_GMM,SQ8"}) {
        std::unique_ptr<faiss::Index> index(gmm_index_factory(24, desc, faiss::METRIC_L2, quick_params()));
        index->train(5000, x.data());
        index->add(5000, x.data());
        write_gmm_index(index.get(), fname);

        std::unique_ptr<faiss::Index> back(read_gmm_index(fname));
        const GmmQuantizer* q0 = find_gmm_quantizer(index.get());
        const GmmQuantizer* q1 = find_gmm_quantizer(back.get());
        ASSERT_NE(q1, nullptr) << desc;
        EXPECT_EQ(q1->model.means, q0->model.means);
        EXPECT_EQ(q1->model.variances, q0->model.variances);
        EXPECT_EQ(q1->model.log_weights, q0->model.log_weights);
        EXPECT_EQ(q1->params.niter, q0->params.niter);
        EXPECT_EQ(q1->model.covariance_type, q0->model.covariance_type);

        // Same search results from the original and the reloaded index.
        std::vector<float> d0(50), d1(50);
        std::vector<idx_t> l0(50), l1(50);
        find_ivf(index.get())->nprobe = find_ivf(back.get())->nprobe = 4;
        index->search(5, x.data(), 10, d0.data(), l0.data());
        back->search(5, x.data(), 10, d1.data(), l1.data());
        EXPECT_EQ(l0, l1);

        // Plain FAISS reads the same file (trailer ignored) with a flat quantizer.
        std::unique_ptr<faiss::Index> plain(faiss::read_index(fname.c_str()));
        EXPECT_EQ(plain->ntotal, 5000);
        find_ivf(plain.get())->nprobe = 4;
        std::vector<idx_t> l2(50);
        plain->search(5, x.data(), 10, d1.data(), l2.data());
        EXPECT_EQ(l0, l2);

        // In-memory serialization too.
        std::vector<uint8_t> bytes = serialize_gmm_index(index.get());
        std::unique_ptr<faiss::Index> back2(deserialize_gmm_index(bytes.data(), bytes.size()));
        EXPECT_EQ(find_gmm_quantizer(back2.get())->model.means, q0->model.means);
    }
    std::remove(fname.c_str());
}

TEST(GmmIO, CorruptAndTruncatedFilesAreRefused) {
    std::vector<float> x = clustered_data(2000, 8, 4, 1.0f, 7);
    std::unique_ptr<faiss::Index> index(gmm_index_factory(8, "IVF4_GMM,Flat", faiss::METRIC_L2, quick_params()));
    index->train(2000, x.data());
    index->add(2000, x.data());
    const std::vector<uint8_t> good = serialize_gmm_index(index.get());
    const std::vector<uint8_t> plain_part = [&] {
        faiss::VectorIOWriter w;
        faiss::write_index(index.get(), &w);
        return w.data;
    }();
    ASSERT_GT(good.size(), plain_part.size());

    // Every truncation inside the GMM trailer.
    for (size_t cut = plain_part.size() + 1; cut < good.size(); cut += 7) {
        EXPECT_THROW(deserialize_gmm_index(good.data(), cut), std::runtime_error) << "cut at " << cut;
    }
    // Bad magic, bad K (lying header), bad variance.
    auto corrupt = [&](size_t offset_in_trailer, uint8_t value) {
        std::vector<uint8_t> b = good;
        b[plain_part.size() + offset_in_trailer] = value;
        return b;
    };
    for (size_t off : {size_t(0), size_t(8), size_t(15)}) {
        std::vector<uint8_t> b = corrupt(off, 0x7f);
        EXPECT_THROW(deserialize_gmm_index(b.data(), b.size()), std::runtime_error) << "offset " << off;
    }
    {
        std::vector<uint8_t> b = good; // last variance → negative
        float neg = -1.0f;
        std::memcpy(b.data() + b.size() - 8, &neg, 4);
        EXPECT_THROW(deserialize_gmm_index(b.data(), b.size()), std::runtime_error);
    }
    // Empty and missing files, garbage.
    EXPECT_THROW(deserialize_gmm_index(good.data(), 0), std::runtime_error);
    EXPECT_THROW(read_gmm_index("/nonexistent/file.index"), std::runtime_error);
    const std::string fname = ::testing::TempDir() + "/garbage.index";
    {
        std::ofstream f(fname, std::ios::binary);
        f << "this is not an index at all";
    }
    EXPECT_THROW(read_gmm_index(fname), std::runtime_error);
    {
        std::ofstream f(fname, std::ios::binary | std::ios::trunc);
    }
    EXPECT_THROW(read_gmm_index(fname), std::runtime_error);
    std::remove(fname.c_str());

    // A plain FAISS index (no trailer) is returned as FAISS reads it.
    std::unique_ptr<faiss::Index> plain(deserialize_gmm_index(plain_part.data(), plain_part.size()));
    EXPECT_EQ(find_gmm_quantizer(plain.get()), nullptr);
    EXPECT_EQ(plain->ntotal, 2000);
}
