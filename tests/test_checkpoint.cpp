// Checkpoints (issue 13, item 5): a run stopped after some iterations and
// resumed from its checkpoint ends with the model of a run that was never
// interrupted, bit for bit; corrupt, truncated and foreign checkpoints are
// refused with a message. The MPI tool's --checkpoint/--resume (with a rank
// killed mid-run) is tested in tests/mpi.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "faiss_gmm/Checkpoint.h"
#include "faiss_gmm/GmmTrainer.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using faiss_gmm::testing::expect_models_identical;

namespace {

GmmParams run_params(CovarianceType type) {
    GmmParams p;
    p.covariance_type = type;
    p.niter = 9;
    p.tol = 0;
    p.seed = 17;
    p.max_points_per_centroid = 400;
    return p;
}

std::string expect_throw_message(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    ADD_FAILURE() << "no exception";
    return "";
}

} // namespace

TEST(Checkpoint, ResumedRunEndsWithTheUninterruptedModel) {
    const int64_t n = 9000, d = 10, K = 12;
    std::vector<float> x = clustered_data(n, d, K, 1.0f, 51);
    x[0] += 40.0f; // an outlier that empties a component: re-seeding (and its random state) is resumed too
    const std::string path = ::testing::TempDir() + "faiss_gmm_checkpoint.bin";
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal, CovarianceType::Full}) {
        GmmTrainer whole(run_params(type));
        const GmmModel want = whole.fit(n, d, x.data(), K);

        // "Killed" after 5 iterations: the last checkpoint is the one after 4.
        GmmParams first = run_params(type);
        first.niter = 5;
        GmmTrainer stopped(first);
        stopped.checkpoint = {path, 2, false};
        stopped.fit(n, d, x.data(), K);

        GmmTrainer resumed(run_params(type));
        resumed.checkpoint = {path, 0, true};
        const GmmModel got = resumed.fit(n, d, x.data(), K);
        expect_models_identical(got, want, to_string(type));
        ASSERT_EQ(resumed.iteration_stats.size(), whole.iteration_stats.size());
        for (size_t i = 0; i < whole.iteration_stats.size(); i++) {
            EXPECT_EQ(resumed.iteration_stats[i].loglik, whole.iteration_stats[i].loglik) << "iteration " << i;
            EXPECT_EQ(resumed.iteration_stats[i].nsplit, whole.iteration_stats[i].nsplit) << "iteration " << i;
        }
        EXPECT_EQ(resumed.n_iter, whole.n_iter);
        EXPECT_EQ(resumed.total_splits, whole.total_splits);
    }
    std::remove(path.c_str());
}

TEST(Checkpoint, BadCheckpointsAreRefused) {
    const int64_t n = 3000, d = 6, K = 4;
    const std::vector<float> x = clustered_data(n, d, K, 1.0f, 52);
    const std::string path = ::testing::TempDir() + "faiss_gmm_checkpoint_bad.bin";
    GmmParams p = run_params(CovarianceType::Spherical);
    p.niter = 2;
    GmmTrainer writer(p);
    writer.checkpoint = {path, 1, false};
    writer.fit(n, d, x.data(), K);
    const std::vector<uint8_t> good = read_whole_file(path);
    ASSERT_GT(good.size(), 100u);

    auto resume_message = [&](const GmmParams& params) {
        return expect_throw_message([&] {
            GmmTrainer t(params);
            t.checkpoint = {path, 0, true};
            t.fit(n, d, x.data(), K);
        });
    };
    // One flipped byte anywhere, and truncations: the checksum or the framing says so.
    for (size_t at : {size_t(0), size_t(9), good.size() / 2, good.size() - 1}) {
        std::vector<uint8_t> bad = good;
        bad[at] ^= 0x10;
        write_file_atomically(path, bad);
        const std::string m = resume_message(p);
        EXPECT_TRUE(m.find("corrupt") != std::string::npos || m.find("not a faiss-gmm checkpoint") != std::string::npos)
                << "byte " << at << ": " << m;
    }
    write_file_atomically(path, std::vector<uint8_t>(good.begin(), good.begin() + long(good.size() / 3)));
    EXPECT_NE(resume_message(p).find("corrupt or truncated"), std::string::npos);
    // A checkpoint of another run (another seed, another K).
    write_file_atomically(path, good);
    GmmParams other = p;
    other.seed = 99;
    EXPECT_NE(resume_message(other).find("checkpoint of another run"), std::string::npos);
    // No file at all.
    std::remove(path.c_str());
    EXPECT_NE(resume_message(p).find("cannot open " + path), std::string::npos);
    // Resume without a path.
    EXPECT_NE(expect_throw_message([&] {
                  GmmTrainer t(p);
                  t.checkpoint.resume = true;
                  t.fit(n, d, x.data(), K);
              }).find("without a checkpoint path"),
              std::string::npos);
}

TEST(Checkpoint, AtomicWriteLeavesThePreviousFileOnFailure) {
    const std::string path = ::testing::TempDir() + "faiss_gmm_atomic.bin";
    write_file_atomically(path, {1, 2, 3});
    // A target whose folder does not exist: the error names the path and the step.
    const std::string message = expect_throw_message(
            [&] { write_file_atomically(::testing::TempDir() + "no/such/folder/x.bin", {4, 5, 6}); });
    EXPECT_NE(message.find("no/such/folder/x.bin"), std::string::npos) << message;
    EXPECT_NE(message.find("failed"), std::string::npos) << message;
    EXPECT_EQ(read_whole_file(path), (std::vector<uint8_t>{1, 2, 3}));
    std::remove(path.c_str());
}
