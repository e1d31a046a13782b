// Distributed EM without MPI (issue 8): threads of this process play the ranks
// through an in-process Communicator, each training on its own range of the
// rows. Every rank must end with the same model, bit-identical to the
// one-process trainer's (the sums are reproducible); a failure on one rank must
// reach every rank as a DistributedError. The MPI tool is tested in tests/mpi.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "faiss_gmm/Communicator.h"
#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/GmmTrainer.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using faiss_gmm::testing::expect_models_identical;

namespace {

/// The state the ranks of one ThreadCommunicator group share: a barrier whose
/// last arrival runs the collective's work, and one slot per rank.
struct ThreadGroup {
    explicit ThreadGroup(int n) : size(n), slots(size_t(n)) {}

    /// Returns once every rank has arrived; the last one runs `work` first.
    /// A rank that never arrives is a bug of the code under test: fail loudly
    /// instead of hanging the test run.
    void barrier(const std::function<void()>& work = nullptr) {
        std::unique_lock<std::mutex> lock(mutex);
        const uint64_t gen = generation;
        if (++arrived == size) {
            if (work) work();
            arrived = 0;
            generation++;
            cv.notify_all();
            return;
        }
        if (!cv.wait_for(lock, std::chrono::seconds(120), [&] { return generation != gen; })) {
            std::fprintf(stderr, "ThreadGroup: a rank never reached the collective (mismatched collectives)\n");
            std::abort();
        }
    }

    const int size;
    std::vector<const void*> slots;
    std::vector<double> reduced;
    std::mutex mutex;
    std::condition_variable cv;
    int arrived = 0;
    uint64_t generation = 0;
};

class ThreadCommunicator : public Communicator {
  public:
    ThreadCommunicator(ThreadGroup& group, int rank) : group_(group), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return group_.size; }

    void allreduce(double* values, size_t n, ReduceOp op) override {
        group_.slots[size_t(rank_)] = values;
        group_.barrier([&] {
            // Once, in rank order: every rank then copies the same bits.
            group_.reduced.assign(static_cast<const double*>(group_.slots[0]),
                                  static_cast<const double*>(group_.slots[0]) + n);
            for (int r = 1; r < group_.size; r++) {
                const auto* v = static_cast<const double*>(group_.slots[size_t(r)]);
                for (size_t i = 0; i < n; i++) {
                    double& acc = group_.reduced[i];
                    acc = op == ReduceOp::Sum ? acc + v[i] : op == ReduceOp::Min ? std::min(acc, v[i]) : std::max(acc, v[i]);
                }
            }
        });
        std::copy(group_.reduced.begin(), group_.reduced.end(), values);
        group_.barrier(); // nobody starts the next collective while another still reads `reduced`
    }

    void broadcast(void* data, size_t bytes, int root) override {
        group_.slots[size_t(rank_)] = data;
        group_.barrier();
        if (rank_ != root && bytes > 0) std::memcpy(data, group_.slots[size_t(root)], bytes);
        group_.barrier();
    }

    void gather(const void* data, void* out, const std::vector<size_t>& counts, int root) override {
        group_.slots[size_t(rank_)] = data;
        group_.barrier();
        if (rank_ == root) {
            auto* dst = static_cast<uint8_t*>(out);
            for (int r = 0; r < group_.size; r++) {
                if (counts[size_t(r)] > 0) std::memcpy(dst, group_.slots[size_t(r)], counts[size_t(r)]);
                dst += counts[size_t(r)];
            }
        }
        group_.barrier();
    }

    [[noreturn]] void abort(int, const std::string& message) override {
        std::fprintf(stderr, "ThreadCommunicator::abort: %s\n", message.c_str());
        std::abort();
    }

  private:
    ThreadGroup& group_;
    int rank_;
};

/// What one rank's fit() gave.
struct RankResult {
    GmmModel model;
    std::vector<GmmIterationStats> stats;
    int64_t n_train = 0;
    std::string error; ///< what() of the DistributedError, if one was thrown
    bool other_exception = false;
};

/// Trains on `ranks` threads, rank r on source_of_rank(r), and returns every rank's result.
/// setup(r, trainer), when given, runs on rank r's trainer before fit() (e.g. set_estep).
std::vector<RankResult> train_on_ranks(int ranks, const GmmParams& params, int64_t K,
                                       const std::function<const VectorSource&(int)>& source_of_rank,
                                       const GmmModel* initial = nullptr, int64_t max_listed_responsibilities = -1,
                                       const std::function<void(int, GmmTrainer&)>& setup = {}) {
    ThreadGroup group(ranks);
    std::vector<RankResult> results(static_cast<size_t>(ranks));
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; r++) {
        threads.emplace_back([&, r] {
            ThreadCommunicator comm(group, r);
            GmmTrainer trainer(params);
            trainer.set_communicator(&comm);
            trainer.max_listed_responsibilities = max_listed_responsibilities;
            if (setup) setup(r, trainer);
            RankResult& out = results[size_t(r)];
            try {
                out.model = trainer.fit(source_of_rank(r), K, initial);
                out.stats = trainer.iteration_stats;
                out.n_train = trainer.n_train;
            } catch (const DistributedError& e) {
                out.error = e.what();
            } catch (...) {
                out.other_exception = true;
            }
        });
    }
    for (auto& t : threads) t.join();
    return results;
}

/// Rows [range) of x (n × d) as one rank's source.
struct RankRows {
    RankRows(const std::vector<float>& x, int64_t n, int64_t d, int rank, int ranks)
            : range(rank_row_range(n, rank, ranks)), source(range.size(), d, x.data() + range.begin * d) {}
    RowRange range;
    MemoryVectorSource source;
};

std::vector<RankRows> split(const std::vector<float>& x, int64_t n, int64_t d, int ranks) {
    std::vector<RankRows> parts;
    parts.reserve(size_t(ranks));
    for (int r = 0; r < ranks; r++) parts.emplace_back(x, n, d, r, ranks);
    return parts;
}

} // namespace

TEST(DistributedTrainer, RowRangesCoverAllRowsInOrder) {
    for (int64_t n : {0, 1, 7, 10000}) {
        for (int ranks : {1, 2, 3, 8}) {
            int64_t next = 0;
            for (int r = 0; r < ranks; r++) {
                const RowRange range = rank_row_range(n, r, ranks);
                EXPECT_EQ(range.begin, next);
                EXPECT_LE(range.size(), n / ranks + 1);
                EXPECT_GE(range.size(), n / ranks);
                next = range.end;
            }
            EXPECT_EQ(next, n);
        }
    }
}

TEST(DistributedTrainer, SampleOfRangesIsTheSampleOfAllRows) {
    const int64_t N = 10007, m = 3001;
    const std::vector<int64_t> all = sample_rows(N, m, 42, 0, N);
    ASSERT_EQ(int64_t(all.size()), m);
    EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
    for (int ranks : {2, 3, 5}) {
        std::vector<int64_t> joined;
        for (int r = 0; r < ranks; r++) {
            const RowRange range = rank_row_range(N, r, ranks);
            const std::vector<int64_t> part = sample_rows(N, m, 42, range.begin, range.end);
            for (int64_t i : part) EXPECT_TRUE(i >= range.begin && i < range.end);
            joined.insert(joined.end(), part.begin(), part.end());
        }
        EXPECT_EQ(joined, all) << ranks << " ranks";
    }
}

TEST(DistributedTrainer, RowRangeSourceReadsItsRows) {
    const int64_t n = 50, d = 3;
    const std::vector<float> x = clustered_data(n, d, 2, 1.0f, 5);
    MemoryVectorSource all(n, d, x.data());
    RowRangeSource part(all, 20, 10);
    EXPECT_EQ(part.ntotal(), 10);
    std::vector<uint8_t> scratch;
    VectorBlock b = part.read(2, 3, scratch);
    EXPECT_EQ(std::memcmp(b.data, x.data() + 22 * d, sizeof(float) * 3 * d), 0);
    EXPECT_THROW(part.read(8, 3, scratch), std::out_of_range);
    EXPECT_THROW(RowRangeSource(all, 45, 10), std::out_of_range);
}

TEST(DistributedTrainer, OneRankCommunicatorChangesNothing) {
    const int64_t n = 3000, d = 8, K = 12;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 3);
    GmmParams p;
    p.niter = 5;
    p.tol = 0;
    p.max_points_per_centroid = 200; // subsampling on
    GmmTrainer plain(p);
    const GmmModel want = plain.fit(n, d, x.data(), K);
    SingleProcessCommunicator one;
    GmmTrainer with_comm(p);
    with_comm.set_communicator(&one);
    expect_models_identical(with_comm.fit(n, d, x.data(), K), want, "SingleProcessCommunicator");
    const MemoryVectorSource all(n, d, x.data());
    const std::vector<RankResult> threads = train_on_ranks(1, p, K, [&](int) -> const VectorSource& { return all; });
    expect_models_identical(threads[0].model, want, "one thread rank");
}

TEST(DistributedTrainer, RanksMatchOneProcess) {
    // 6000 rows subsampled to 4800 (300 per component), of which 4096 (K * 256)
    // initialize: both samples are drawn across the ranks' ranges.
    const int64_t n = 6000, d = 12, K = 16;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 21);
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal, CovarianceType::Full}) {
        for (InitMethod init : {InitMethod::FaissKMeans, InitMethod::KMeansPlusPlus}) {
            GmmParams p;
            p.covariance_type = type;
            p.init = init;
            p.seed = 99;
            p.niter = 8;
            p.tol = 0;
            p.max_points_per_centroid = 300;
            p.chunk_size = 1000; // several chunks per rank
            GmmTrainer one(p);
            const GmmModel want = one.fit(n, d, x.data(), K);
            for (int ranks : {2, 3}) {
                const std::string what = std::to_string(ranks) + " ranks, " + to_string(type) + ", " + to_string(init);
                const std::vector<RankRows> parts = split(x, n, d, ranks);
                const std::vector<RankResult> got =
                        train_on_ranks(ranks, p, K, [&](int r) -> const VectorSource& { return parts[size_t(r)].source; });
                for (int r = 0; r < ranks; r++) {
                    ASSERT_TRUE(got[size_t(r)].error.empty()) << what << ": " << got[size_t(r)].error;
                    ASSERT_FALSE(got[size_t(r)].other_exception) << what;
                    expect_models_identical(got[size_t(r)].model, got[0].model, what + ": rank " + std::to_string(r));
                    EXPECT_EQ(got[size_t(r)].n_train, one.n_train) << what;
                }
                // Reproducible sums (ReproducibleSum.h): the same bits as one process.
                expect_models_identical(got[0].model, want, what);
                ASSERT_EQ(got[0].stats.size(), one.iteration_stats.size()) << what;
                for (size_t i = 0; i < one.iteration_stats.size(); i++) {
                    EXPECT_EQ(got[0].stats[i].loglik, one.iteration_stats[i].loglik) << what << ", iteration " << i;
                }
            }
        }
    }
}

TEST(DistributedTrainer, Uint8RowsAndEveryRowTraining) {
    // uint8 rows, no subsampling, more ranks than some ranges have rows for a chunk.
    const int64_t n = 2500, d = 16, K = 8;
    const std::vector<float> xf = clustered_data(n, d, K, 6.0f, 8);
    std::vector<uint8_t> x(xf.size());
    for (size_t i = 0; i < x.size(); i++) x[i] = uint8_t(std::clamp(std::lround(xf[i] * 4.0f + 128.0f), 0L, 255L));
    GmmParams p;
    p.niter = 6;
    p.tol = 0;
    p.max_points_per_centroid = 0;
    p.covariance_type = CovarianceType::Diagonal;
    GmmTrainer one(p);
    const GmmModel want = one.fit(MemoryVectorSource(n, d, x.data()), K);
    const int ranks = 3;
    std::vector<MemoryVectorSource> parts;
    for (int r = 0; r < ranks; r++) {
        const RowRange range = rank_row_range(n, r, ranks);
        parts.emplace_back(range.size(), d, x.data() + range.begin * d);
    }
    const std::vector<RankResult> got =
            train_on_ranks(ranks, p, K, [&](int r) -> const VectorSource& { return parts[size_t(r)]; });
    ASSERT_TRUE(got[0].error.empty()) << got[0].error;
    expect_models_identical(got[0].model, want, "uint8, 3 ranks");
    expect_models_identical(got[2].model, got[0].model, "uint8: rank 2 vs rank 0");
}

TEST(DistributedTrainer, ReseedingAgreesWithOneProcess) {
    // The same empty component as GmmTrainer.ReseedsEmptyComponents: the split is
    // decided on the summed statistics, with the same random directions.
    const int64_t n = 2000, d = 4;
    std::vector<float> x = clustered_data(n, d, 3, 0.5f, 15);
    GmmModel init(3, d, CovarianceType::Spherical);
    for (int64_t j = 0; j < d; j++) {
        init.means[0 * d + j] = x[j];
        init.means[1 * d + j] = 1e4f;
        init.means[2 * d + j] = x[4 + j];
    }
    init.variances = {1.0f, 1e-3f, 1.0f};
    GmmParams p;
    p.init = InitMethod::Given;
    p.niter = 10;
    GmmTrainer one(p);
    const GmmModel want = one.fit(n, d, x.data(), 3, &init);
    ASSERT_GE(one.total_splits, 1);
    const std::vector<RankRows> parts = split(x, n, d, 3);
    const std::vector<RankResult> got =
            train_on_ranks(3, p, 3, [&](int r) -> const VectorSource& { return parts[size_t(r)].source; }, &init);
    ASSERT_TRUE(got[0].error.empty()) << got[0].error;
    ASSERT_EQ(got[0].stats.size(), one.iteration_stats.size());
    for (size_t i = 0; i < got[0].stats.size(); i++) EXPECT_EQ(got[0].stats[i].nsplit, one.iteration_stats[i].nsplit);
    expect_models_identical(got[0].model, want, "re-seeded");
}

TEST(DistributedTrainer, BadRowsOnOneRankFailEveryRank) {
    // 900 rows: all in one reproducible block that rank 0 sums, so rank 2's rows
    // are sent to rank 0; they are checked on rank 2 first, which reports them.
    const int64_t n = 900, d = 4;
    std::vector<float> x = clustered_data(n, d, 3, 1.0f, 4);
    x[700 * d + 1] = NAN; // row 700: rank 2 of 3
    const std::vector<RankRows> parts = split(x, n, d, 3);
    GmmParams p;
    p.max_points_per_centroid = 0;
    const std::vector<RankResult> got =
            train_on_ranks(3, p, 3, [&](int r) -> const VectorSource& { return parts[size_t(r)].source; });
    for (const RankResult& r : got) {
        EXPECT_FALSE(r.other_exception);
        EXPECT_NE(r.error.find("rank 2: input row 700, column 1 is NaN"), std::string::npos) << r.error;
        EXPECT_EQ(r.error, got[0].error) << "every rank reports the same failure";
    }
}

namespace {
/// A source whose nth read of a chunk (more than one row; single rows are the
/// initialization sample) fails: a disk or network error mid-training.
class FailingSource : public VectorSource {
  public:
    FailingSource(const VectorSource& base, int fail_at) : base_(base), fail_at_(fail_at) {}
    int64_t ntotal() const override { return base_.ntotal(); }
    int64_t d() const override { return base_.d(); }
    DataType type() const override { return base_.type(); }
    VectorBlock read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const override {
        if (n > 1 && ++chunk_reads_ == fail_at_) {
            throw std::runtime_error("I/O error on chunk read " + std::to_string(chunk_reads_));
        }
        return base_.read(i0, n, scratch);
    }

  private:
    const VectorSource& base_;
    int fail_at_;
    mutable int chunk_reads_ = 0;
};
} // namespace

TEST(DistributedTrainer, ReadErrorDuringEmFailsEveryRank) {
    // Two ranks of 4 reproducible blocks each, read one block per call (rank 1
    // starts on a block boundary: it sends no rows): reads 1-4 are the moments,
    // 5-8 the first E-step.
    const int64_t R = kReproducibleBlockRows, n = 8 * R, d = 4;
    const std::vector<float> x = clustered_data(n, d, 3, 1.0f, 6);
    const std::vector<RankRows> parts = split(x, n, d, 2);
    FailingSource failing(parts[1].source, 6);
    GmmParams p;
    p.max_points_per_centroid = 0;
    p.chunk_size = R;
    p.init = InitMethod::KMeansPlusPlus;
    p.niter = 20;
    p.tol = 0;
    const std::vector<RankResult> got = train_on_ranks(2, p, 3, [&](int r) -> const VectorSource& {
        return r == 1 ? static_cast<const VectorSource&>(failing) : parts[0].source;
    });
    for (const RankResult& r : got) {
        EXPECT_FALSE(r.other_exception);
        EXPECT_NE(r.error.find("rank 1: I/O error on chunk read 6"), std::string::npos) << r.error;
    }
}

TEST(DistributedTrainer, InconsistentRanksAreRefused) {
    const std::vector<float> x = clustered_data(300, 6, 3, 1.0f, 7);
    MemoryVectorSource d6(100, 6, x.data()), d5(120, 5, x.data());
    GmmParams p;
    std::vector<RankResult> got =
            train_on_ranks(2, p, 3, [&](int r) -> const VectorSource& { return r == 0 ? d6 : d5; });
    for (const RankResult& r : got) {
        EXPECT_NE(r.error.find("differ in shape"), std::string::npos) << r.error;
        EXPECT_NE(r.error.find("rank 1: d = 5, float32"), std::string::npos) << r.error;
    }
    // K above the rows of all ranks together (each rank alone has fewer still).
    MemoryVectorSource few(4, 6, x.data());
    got = train_on_ranks(3, p, 13, [&](int) -> const VectorSource& { return few; });
    for (const RankResult& r : got) {
        EXPECT_NE(r.error.find("ranks 0, 1, 2: GMM training: K = 13 components but only N = 12"), std::string::npos)
                << r.error;
    }
}

/// The calls one rank's WideBlockEStep saw.
struct CallRecord {
    std::vector<int64_t> first_rows; ///< global first row of each call that reads x in place
    int64_t other_calls = 0;         ///< calls on the trainer's own buffer (a rank's completed last block)
    int64_t expected_rows = -1;      ///< what the trainer announced (expect_rows)
};

/// The CPU E-step declaring a larger reproducible block (as the CUDA backend's Hopper kernels
/// do): it still sums 4096-row blocks, so any calls starting on its blocks give the bits of the
/// plain backend. Records where each call starts in x (n rows of d).
class WideBlockEStep : public EStepCpu {
  public:
    WideBlockEStep(int64_t block_rows, const std::vector<float>& x, int64_t d, CallRecord& record)
            : block_rows_(block_rows), x_(x), d_(d), record_(record) {}
    int64_t reproducible_block_rows(CovarianceType) const override { return block_rows_; }
    void expect_rows(int64_t total_rows) override { record_.expected_rows = total_rows; }
    void accumulate_reproducible(const VectorBlock& rows, StatsAccumulator& acc) override {
        const auto* p = reinterpret_cast<const float*>(rows.data);
        if (p >= x_.data() && p < x_.data() + x_.size()) {
            record_.first_rows.push_back((p - x_.data()) / d_);
        } else {
            record_.other_calls++;
        }
        EStepCpu::accumulate_reproducible(rows, acc);
    }

  private:
    int64_t block_rows_;
    const std::vector<float>& x_;
    int64_t d_;
    CallRecord& record_;
};

TEST(DistributedTrainer, CallsStartOnTheBackendsBlocks) {
    // A backend's reproducible block (EStep::reproducible_block_rows) may be a multiple of
    // kReproducibleBlockRows: every rank's calls then start on the global multiples of it, and
    // the model is the same bits for any ranks (here also those of the plain backend).
    const int64_t n = 40000, d = 8, K = 8, unit = 3 * kReproducibleBlockRows;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 31);
    GmmParams p;
    p.seed = 3;
    p.niter = 3;
    p.tol = 0;
    p.max_points_per_centroid = 0; // every row: the ranks read x in place
    p.chunk_size = 1000;           // rounded up to one block per call
    p.covariance_type = CovarianceType::Diagonal;
    GmmTrainer plain(p);
    const GmmModel want = plain.fit(n, d, x.data(), K);
    // Rank r's backend sums blocks of block_rows(r) rows and records its calls in records[r].
    auto train = [&](int ranks, const std::function<int64_t(int)>& block_rows, std::vector<CallRecord>& records) {
        const std::vector<RankRows> parts = split(x, n, d, ranks);
        records.assign(size_t(ranks), CallRecord());
        return train_on_ranks(
                ranks, p, K, [&](int r) -> const VectorSource& { return parts[size_t(r)].source; }, nullptr, -1,
                [&](int r, GmmTrainer& t) {
                    t.set_estep(std::make_unique<WideBlockEStep>(block_rows(r), x, d, records[size_t(r)]));
                });
    };
    for (int ranks : {1, 2, 3}) {
        const std::string what = std::to_string(ranks) + " ranks, blocks of " + std::to_string(unit) + " rows";
        std::vector<CallRecord> records;
        const std::vector<RankResult> got = train(ranks, [&](int) { return unit; }, records);
        // (A rank may have no call of its own rows: 3 ranks of 13333 rows, rank 1's only block
        // starts at 24576 and ends in rank 2's rows.)
        EXPECT_GT(records[0].first_rows.size(), 0u) << what;
        for (int r = 0; r < ranks; r++) {
            const std::string rank = what + ", rank " + std::to_string(r);
            ASSERT_TRUE(got[size_t(r)].error.empty()) << rank << ": " << got[size_t(r)].error;
            ASSERT_FALSE(got[size_t(r)].other_exception) << rank;
            expect_models_identical(got[size_t(r)].model, want, rank);
            const CallRecord& c = records[size_t(r)];
            EXPECT_EQ(c.expected_rows, n) << rank;
            for (int64_t first : c.first_rows) EXPECT_EQ(first % unit, 0) << rank << ": call at row " << first;
            // At most the block this rank completes with the next ranks' rows, per walk.
            EXPECT_LE(c.other_calls, p.niter + 1) << rank;
        }
    }
    // Backends that disagree on the block, or a block that is not whole 4096-row blocks.
    for (int64_t other : {int64_t(kReproducibleBlockRows), int64_t(5000)}) {
        std::vector<CallRecord> records;
        const std::vector<RankResult> got = train(2, [&](int r) { return r == 0 ? unit : other; }, records);
        const std::string want_error = other == 5000 ? "sums blocks of 5000 rows, not a positive multiple of 4096"
                                                     : "the ranks' E-step backends sum blocks of different sizes "
                                                       "(4096 to 12288 rows)";
        for (int r = 0; r < 2; r++) {
            EXPECT_NE(got[size_t(r)].error.find(want_error), std::string::npos) << "rank " << r << ": " << got[size_t(r)].error;
        }
    }
}

TEST(DistributedTrainer, FullCovariancesInTwoWalksMatchOneWalkInOneProcess) {
    // Full covariances on the CPU in two walks (EStep.h): each rank lists its rows'
    // responsibilities, and every group of walk 2 is summed over the ranks before its
    // M-step. d = 64: 2 MiB of statistics hold 24 components, so K = 30 takes two groups.
    // The model and every iteration's log-likelihood are the same bits as one process in one
    // walk, for every way of choosing between one and two walks.
    const int64_t n = 5000, d = 64, K = 30;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 23);
    GmmParams p;
    p.covariance_type = CovarianceType::Full;
    p.seed = 5;
    p.niter = 3;
    p.tol = 0;
    p.max_points_per_centroid = 0;
    p.chunk_size = 3000; // several calls per rank: walk 2 must find each call's lists
    GmmTrainer one_walk(p);
    one_walk.max_listed_responsibilities = 0;
    const GmmModel want = one_walk.fit(n, d, x.data(), K);
    auto expect_same_iterations = [&](const std::vector<GmmIterationStats>& got, const std::string& what) {
        ASSERT_EQ(got.size(), one_walk.iteration_stats.size()) << what;
        for (size_t i = 0; i < got.size(); i++) {
            EXPECT_EQ(got[i].loglik, one_walk.iteration_stats[i].loglik) << what << ", iteration " << i;
        }
    };
    // One process: two walks whatever the lists hold, the automatic choice (two walks here),
    // and a limit walk 1 passes (n / 2: the lists overflow, the iteration restarts in one walk).
    for (int64_t max_listed : {int64_t(INT64_MAX), int64_t(-1), n / 2}) {
        const std::string what = "one process, max_listed_responsibilities = " + std::to_string(max_listed);
        GmmTrainer t(p);
        t.max_listed_responsibilities = max_listed;
        expect_models_identical(t.fit(n, d, x.data(), K), want, what);
        expect_same_iterations(t.iteration_stats, what);
    }
    {
        // Rows from a source that copies them out: walk 2's groups are an eighth of the one-walk
        // memory (3 components here: 10 groups), each reading the rows again.
        const std::vector<double> x64(x.begin(), x.end());
        const Float64VectorSource copying(n, d, x64.data());
        GmmTrainer t(p);
        t.max_listed_responsibilities = INT64_MAX;
        expect_models_identical(t.fit(copying, K), want, "one process, rows copied out");
        expect_same_iterations(t.iteration_stats, "one process, rows copied out");
    }
    for (int ranks : {2, 3}) {
        const std::string what = std::to_string(ranks) + " ranks, two walks";
        const std::vector<RankRows> parts = split(x, n, d, ranks);
        const std::vector<RankResult> got = train_on_ranks(
                ranks, p, K, [&](int r) -> const VectorSource& { return parts[size_t(r)].source; }, nullptr,
                INT64_MAX);
        for (int r = 0; r < ranks; r++) {
            ASSERT_TRUE(got[size_t(r)].error.empty()) << what << ": " << got[size_t(r)].error;
            ASSERT_FALSE(got[size_t(r)].other_exception) << what;
            expect_models_identical(got[size_t(r)].model, want, what + ": rank " + std::to_string(r));
        }
        expect_same_iterations(got[0].stats, what);
    }
}
