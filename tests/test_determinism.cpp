// Determinism (issues 7 and 13): the same seed gives bit-identical models
// across runs and for any OpenMP thread count and chunk size (reproducible
// sums), for the CPU E-step with 1 to 3 threads,
// both covariance types, streaming from a file, and through IndexIVF::train
// down to the serialized bytes.
#include <gtest/gtest.h>

#include <omp.h>

#include <dlfcn.h>

#include <memory>
#include <thread>
#include <vector>

#include "datasets/VecsFile.h"
#include "faiss_gmm/GmmTrainer.h"
#include "faiss_gmm/detail/blas.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/gmm_io.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using faiss_gmm::testing::expect_models_identical;

namespace {

/// Restores the OpenMP thread count on scope exit.
struct ThreadCount {
    explicit ThreadCount(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
    ~ThreadCount() { omp_set_num_threads(saved); }
    int saved;
};

} // namespace

TEST(Determinism, SameSeedSameThreadsBitIdentical) {
    // More rows than one E-step block per thread, and subsampling active.
    const int64_t n = 6000, d = 12, K = 16;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 21);
    for (int threads : {1, 2}) {
        ThreadCount tc(threads);
        for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal, CovarianceType::Full}) {
            auto run = [&] {
                GmmParams p;
                p.device = Device::Cpu;
                p.covariance_type = type;
                p.seed = 99;
                p.niter = 6;
                p.tol = 0;
                p.max_points_per_centroid = 300; // 4800 of the 6000 rows: the sample must repeat too
                p.block_size = 128;              // several blocks per thread
                GmmTrainer t(p);
                GmmModel m = t.fit(n, d, x.data(), K);
                EXPECT_EQ(t.n_iter, 6);
                return m;
            };
            const GmmModel a = run(), b = run(), c = run();
            const std::string what = std::to_string(threads) + " thread(s), " + to_string(type);
            expect_models_identical(a, b, what);
            expect_models_identical(a, c, what);
        }
    }
}

TEST(Determinism, KMeansPlusPlusInitAnyThreadCount) {
    // k-means++ sums D² mass over rows in parallel: the sum must not depend on
    // which thread finishes first (3 and 4 threads: more partial sums than
    // floating-point addition keeps order-independent).
    const int64_t n = 20000, d = 8, K = 24;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 25);
    for (int threads : {1, 2, 3, 4}) {
        ThreadCount tc(threads);
        auto run = [&] {
            GmmParams p;
            p.init = InitMethod::KMeansPlusPlus;
            p.seed = 11;
            p.niter = 2;
            p.tol = 0;
            p.max_points_per_centroid = 0;
            GmmTrainer t(p);
            return t.fit(n, d, x.data(), K);
        };
        const GmmModel a = run();
        for (int rep = 0; rep < 4; rep++) expect_models_identical(a, run(), std::to_string(threads) + " thread(s), k-means++");
    }
}

TEST(Determinism, StreamedFileSameAsRepeatedRun) {
    const int64_t n = 3000, d = 8, K = 8;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 22);
    const std::string path = ::testing::TempDir() + "determinism.fvecs";
    datasets::write_fvecs(path, n, d, x.data());
    for (int threads : {1, 2}) {
        ThreadCount tc(threads);
        auto run = [&] {
            GmmParams p;
            p.seed = 5;
            p.niter = 5;
            p.tol = 0;
            p.chunk_size = 1000; // several chunks per pass
            GmmTrainer t(p);
            VecsFileSource src(path);
            return t.fit(src, K);
        };
        expect_models_identical(run(), run(), std::to_string(threads) + " thread(s), streamed");
    }
    std::remove(path.c_str());
}

TEST(Determinism, IndexBytesIdentical) {
    const int64_t n = 4000, d = 16;
    const std::vector<float> x = clustered_data(n, d, 10, 1.0f, 23);
    for (int threads : {1, 2}) {
        ThreadCount tc(threads);
        auto run = [&] {
            std::unique_ptr<faiss::Index> index(gmm_index_factory(int(d), "IVF16_GMMdiag,SQ8"));
            index->train(n, x.data());
            index->add(n, x.data());
            return serialize_gmm_index(index.get());
        };
        const std::vector<uint8_t> a = run(), b = run();
        EXPECT_EQ(a, b) << threads << " thread(s): serialized GMM-IVF indexes differ";
    }
}

TEST(Determinism, AnyThreadCountAndChunkSizeBitIdentical) {
    // Reproducible sums (issue 13): threads and chunk sizes only change which
    // thread sums which fixed block and when, never the bits of the model. Both
    // covariance types, subsampling on, k-means and k-means++ starts, and a file
    // streamed in chunks against the same rows in memory.
    const int64_t n = 7000, d = 10, K = 12;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 26);
    const std::string path = ::testing::TempDir() + "determinism-any.fvecs";
    datasets::write_fvecs(path, n, d, x.data());
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal, CovarianceType::Full}) {
        for (InitMethod init : {InitMethod::FaissKMeans, InitMethod::KMeansPlusPlus}) {
            auto run = [&](int threads, int64_t chunk, bool from_file) {
                ThreadCount tc(threads);
                GmmParams p;
                p.covariance_type = type;
                p.init = init;
                p.seed = 3;
                p.niter = 5;
                p.tol = 0;
                p.max_points_per_centroid = 500; // 6000 of the 7000 rows
                p.chunk_size = chunk;
                GmmTrainer t(p);
                if (from_file) return t.fit(VecsFileSource(path), K);
                return t.fit(n, d, x.data(), K);
            };
            const GmmModel want = run(1, 1 << 16, false);
            const std::string what = std::string(to_string(type)) + ", " + to_string(init);
            for (int threads : {2, 3}) {
                for (int64_t chunk : {int64_t(1000), int64_t(3000), int64_t(1) << 16}) {
                    expect_models_identical(run(threads, chunk, false), want,
                                            what + ", " + std::to_string(threads) + " threads, chunk " +
                                                    std::to_string(chunk));
                }
            }
            expect_models_identical(run(2, 2500, true), want, what + ", streamed from a file");
        }
    }
    std::remove(path.c_str());
}

TEST(Determinism, DifferentSeedsDiffer) {
    // Guards the tests above against a trainer that ignores its seed.
    const std::vector<float> x = clustered_data(3000, 8, 8, 1.0f, 24);
    ThreadCount tc(2);
    auto run = [&](int64_t seed) {
        GmmParams p;
        p.seed = seed;
        p.niter = 4;
        GmmTrainer t(p);
        return t.fit(3000, 8, x.data(), 8);
    };
    EXPECT_NE(run(1).means, run(2).means);
}

TEST(Determinism, SingleThreadedBlasGuardsShareOneSetting) {
    // OpenBLAS's thread count is one setting per process. E-steps on two threads at once
    // (the in-process ranks of test_distributed_trainer) each hold a guard: the first one
    // destroyed must not make the other's products multi-threaded (threaded OpenBLAS may
    // round them differently: DistributedTrainer.RanksMatchOneProcess failed from run to run
    // on a 2-core EPYC VM that way). The last guard restores what the first one found.
    using GetThreads = int (*)();
    using SetThreads = void (*)(int);
    const auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    const auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    if (!get || !set) GTEST_SKIP() << "the BLAS in use is not OpenBLAS: no thread setting to share";
    const int before = get();
    set(2);
    if (get() != 2) {
        set(before);
        GTEST_SKIP() << "this OpenBLAS build runs one thread only (openblas_set_num_threads(2) left " << get() << ")";
    }
    {
        auto first = std::make_unique<detail::SingleThreadedBlas>();
        EXPECT_EQ(get(), 1);
        std::thread other([&] {
            detail::SingleThreadedBlas second;
            EXPECT_EQ(get(), 1);
            first.reset(); // the first guard ends while the second is alive
            EXPECT_EQ(get(), 1);
        });
        other.join();
        EXPECT_EQ(get(), 2); // the last one restored it
    }
    set(before);
}
