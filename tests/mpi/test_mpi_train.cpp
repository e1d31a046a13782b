// faiss-gmm-train-mpi under mpiexec (issue 8), with 1, 2 and 3 ranks: the model
// equals an in-process GmmTrainer's on the same file and seed (within the order
// of floating-point sums), the IVF index it builds holds every row once, and
// every failure — a rank that cannot open or read its part, ranks that see
// different data, bad K, non-finite values, a rank killed mid-training — ends
// the job with a non-zero status and a clear message within a bounded time
// (every run is under `timeout`, so a hang fails the test instead of CI).
// Built and registered only when the MPI trainer is (FAISS_GMM_ENABLE_MPI).
#include <gtest/gtest.h>

#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/invlists/InvertedLists.h>

#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "datasets/BinFile.h"
#include "datasets/Dataset.h"
#include "datasets/VecsFile.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/GmmTrainer.h"
#include "faiss_gmm/gmm_io.h"
#include "process_helpers.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using faiss_gmm::testing::run_shell;
using faiss_gmm::testing::RunResult;
using faiss_gmm::testing::TempDir;

namespace {

// Seconds any one mpiexec run may take before it counts as a hang.
constexpr int kRunTimeout = 120;

/// The environment every mpiexec run gets: shared memory between the ranks of
/// this one machine (no InfiniBand/UCX probing, no process_vm_readv, which
/// containers often forbid), ranks not pinned to cores (3 ranks share 2 here).
class MpiEnvironment : public ::testing::Environment {
  public:
    void SetUp() override {
        setenv("OMPI_MCA_btl", "self,vader", 1);
        setenv("OMPI_MCA_pml", "ob1", 1);
        setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
        setenv("OMPI_MCA_hwloc_base_binding_policy", "none", 1);
        setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
        // A rank waiting in a collective yields its core instead of spinning.
        setenv("OMPI_MCA_mpi_yield_when_idle", "1", 1);
        // One OpenMP thread per rank: 3 ranks on the 2 cores of CI are already oversubscribed.
        setenv("OMP_NUM_THREADS", "1", 1);
    }
};
const auto* const kMpiEnvironment = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

/// "timeout ... mpiexec --allow-run-as-root -np R" (CI runs as root).
std::string mpiexec(int ranks) {
    return "timeout -k 10 " + std::to_string(kRunTimeout) + " " + FAISS_GMM_MPIEXEC + " --allow-run-as-root -np " +
           std::to_string(ranks) + " ";
}

const std::string kTool = FAISS_GMM_TRAIN_MPI;

/// The tool on `ranks` ranks with these arguments.
RunResult train(int ranks, const std::string& args) {
    return run_shell(mpiexec(ranks) + kTool + " " + args);
}

bool mpiexec_works() {
    return run_shell(mpiexec(1) + "true").status == 0;
}

#define SKIP_WITHOUT_MPIEXEC()                                                                                  \
    if (!mpiexec_works()) GTEST_SKIP() << FAISS_GMM_MPIEXEC << " cannot start a job here (is openmpi-bin installed?)"

/// The model in a file the tool wrote (a GMM quantizer or an index with one).
GmmModel read_model(const std::string& path) {
    std::unique_ptr<faiss::Index> index(read_gmm_index(path));
    const GmmQuantizer* q = dynamic_cast<const GmmQuantizer*>(index.get());
    if (!q) q = find_gmm_quantizer(index.get());
    if (!q) throw std::runtime_error(path + " holds no GMM quantizer");
    return q->model;
}

/// The one-process model the tool must reproduce.
GmmModel train_in_process(const std::string& data, int64_t K, const GmmParams& p) {
    std::unique_ptr<VectorSource> src = datasets::open_vectors(data);
    return GmmTrainer(p).fit(*src, K);
}

/// Trains with 1, 2 and 3 ranks: each model must be the in-process one, bit for bit.
void expect_ranks_match_one_process(const std::string& data, int64_t K, const GmmParams& p, const std::string& flags,
                                    const TempDir& dir) {
    const GmmModel want = train_in_process(data, K, p);
    for (int ranks : {1, 2, 3}) {
        const std::string out = dir.file("model" + std::to_string(ranks) + ".faiss");
        const RunResult r = train(ranks, "--data " + data + " --k " + std::to_string(K) + " " + flags + " --out " + out);
        ASSERT_EQ(r.status, 0) << r.output;
        EXPECT_NE(r.output.find("EM iter"), std::string::npos) << "progress on rank 0\n" << r.output;
        std::printf("  %d rank(s): %.2f s\n", ranks, r.seconds);
        // Sums are reproducible (ReproducibleSum.h): any rank count and thread
        // count give the in-process model's bits, so no tolerance is needed.
        faiss_gmm::testing::expect_models_identical(read_model(out), want,
                                                    data + ", " + std::to_string(ranks) + " rank(s)");
    }
}

enum class Values { Float, Uint8 };

/// Clustered rows written as `name` in dir (format by extension); Uint8: scaled
/// to integers in 0..255, for .bvecs and .u8bin.
std::string generated_file(const TempDir& dir, const std::string& name, int64_t n, int64_t d, uint64_t seed,
                           Values values = Values::Float) {
    const std::string path = dir.file(name);
    datasets::FloatMatrix x(n, d);
    x.data = clustered_data(n, d, 8, 1.0f, seed);
    if (values == Values::Uint8) {
        for (float& v : x.data) v = std::clamp(std::round(v * 20.0f + 128.0f), 0.0f, 255.0f);
    }
    datasets::write_vectors(path, x);
    return path;
}

/// The run failed cleanly: non-zero, not by the timeout, and said `message`.
void expect_clean_failure(const RunResult& r, const std::string& message) {
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.status, 124) << "timed out (a hang)\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << "expected '" << message << "' in:\n" << r.output;
}

} // namespace

TEST(MpiTrain, SiftsmallOneTwoThreeRanksMatchOneProcess) {
    SKIP_WITHOUT_MPIEXEC();
    const std::string data = faiss_gmm::testing::shared_dataset("siftsmall/siftsmall_base.fvecs");
    if (!std::ifstream(data)) GTEST_SKIP() << data << " not available";
    TempDir dir;
    GmmParams p; // the tool's defaults, but for:
    p.niter = 8;
    p.tol = 0;
    // 10,000 rows, K * 256 = 8,192 are sampled: the sample is drawn across the ranks' ranges.
    expect_ranks_match_one_process(data, 32, p, "--niter 8 --tol 0", dir);
}

TEST(MpiTrain, GeneratedFbinDiagonalKMeansPlusPlus) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string data = generated_file(dir, "x.fbin", 20000, 16, 1);
    GmmParams p;
    p.covariance_type = CovarianceType::Diagonal;
    p.init = InitMethod::KMeansPlusPlus;
    p.niter = 6;
    p.tol = 0;
    p.seed = 77;
    p.max_points_per_centroid = 0; // every row trains
    p.chunk_size = 3000;           // several chunks per rank
    expect_ranks_match_one_process(
            data, 24, p,
            "--covariance diagonal --init kmeans++ --niter 6 --tol 0 --seed 77 --max-points-per-centroid 0 "
            "--chunk-size 3000",
            dir);
}

TEST(MpiTrain, FaissGmmTrainUnderMpirunIsTheDistributedTrainer) {
    // `faiss-gmm train` started by mpirun with several ranks runs the same
    // distributed trainer as the old tool name: the same model, bit for bit, as
    // one process in one walk (full covariances here, the type the other tests do not
    // run). d = 6, K = 8: the two-walk path's lists would not halve the memory, so one walk
    // on every rank; d = 64, K = 30: two walks on every rank (at most 4096 rows, a rank sums
    // whole blocks, · 30 listed responsibilities against a budget of 128,700), and walk 2
    // sums its groups over the ranks with MPI before each group's M-step.
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    struct Case {
        int64_t n, d, K;
        bool two_walks;
    };
    for (const Case cs : {Case{6000, 6, 8, false}, Case{5000, 64, 30, true}}) {
        const std::string shape = "d = " + std::to_string(cs.d) + ", K = " + std::to_string(cs.K);
        const std::string data = generated_file(dir, "x" + std::to_string(cs.d) + ".fbin", cs.n, cs.d, 3);
        GmmParams p;
        p.covariance_type = CovarianceType::Full;
        p.niter = cs.two_walks ? 3 : 5;
        p.tol = 0;
        std::unique_ptr<VectorSource> src = datasets::open_vectors(data);
        GmmTrainer one_walk(p);
        one_walk.max_listed_responsibilities = 0;
        const GmmModel want = one_walk.fit(*src, cs.K);
        for (int ranks : {2, 3}) {
            const std::string what = "faiss-gmm train, " + shape + ", " + std::to_string(ranks) + " ranks";
            const std::string out = dir.file("cli" + std::to_string(cs.d) + "_" + std::to_string(ranks) + ".faiss");
            const RunResult r = run_shell(mpiexec(ranks) + std::string(FAISS_GMM_CLI) + " train " + data + " --k " +
                                          std::to_string(cs.K) + " --covariance full --niter " +
                                          std::to_string(p.niter) + " --tol 0 --out " + out);
            ASSERT_EQ(r.status, 0) << what << "\n" << r.output;
            EXPECT_NE(r.output.find(std::to_string(ranks) + " rank(s)"), std::string::npos) << what << "\n" << r.output;
            // Printed when some rank's lists overflowed and the iteration went back to one walk.
            if (cs.two_walks) EXPECT_EQ(r.output.find("one walk"), std::string::npos) << what << "\n" << r.output;
            faiss_gmm::testing::expect_models_identical(read_model(out), want, what);
        }
    }
}

TEST(MpiTrain, GeneratedUint8Bvecs) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string data = generated_file(dir, "x.bvecs", 12000, 16, 2, Values::Uint8);
    GmmParams p;
    p.niter = 5;
    p.tol = 0;
    expect_ranks_match_one_process(data, 40, p, "--niter 5 --tol 0", dir);
}

TEST(MpiTrain, IvfFlatIndexAddedOnThreeRanks) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const int64_t n = 20000, d = 16;
    const std::string data = generated_file(dir, "x.fvecs", n, d, 3);
    const std::string out = dir.file("ivf.faiss");
    const RunResult r = train(3, "--data " + data + " --index IVF16_GMM,Flat --add --niter 5 --out " + out);
    ASSERT_EQ(r.status, 0) << r.output;
    std::unique_ptr<faiss::Index> index(read_gmm_index(out));
    auto* ivf = dynamic_cast<faiss::IndexIVFFlat*>(index.get());
    ASSERT_NE(ivf, nullptr);
    ASSERT_EQ(ivf->ntotal, n);
    ASSERT_NE(find_gmm_quantizer(index.get()), nullptr);
    // Every row once, under its global row number.
    std::vector<int> seen(size_t(n), 0);
    for (size_t l = 0; l < ivf->nlist; l++) {
        const faiss::Index::idx_t* ids = ivf->invlists->get_ids(l);
        for (size_t i = 0; i < ivf->invlists->list_size(l); i++) {
            ASSERT_TRUE(ids[i] >= 0 && ids[i] < n);
            seen[size_t(ids[i])]++;
        }
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), n);
    // Each row finds itself: its id and its vector went to the same place.
    const datasets::FloatMatrix x = datasets::read_vectors(data);
    ivf->nprobe = 2;
    const int64_t nq = 500;
    std::vector<float> D(nq);
    std::vector<faiss::Index::idx_t> I(nq);
    const int64_t step = n / nq;
    std::vector<float> queries(size_t(nq * d));
    for (int64_t q = 0; q < nq; q++) std::copy(x.row(q * step), x.row(q * step) + d, queries.begin() + q * d);
    ivf->search(nq, queries.data(), 1, D.data(), I.data());
    int64_t found = 0;
    for (int64_t q = 0; q < nq; q++) found += I[size_t(q)] == q * step;
    EXPECT_EQ(found, nq);
}

TEST(MpiTrain, IvfPqIndexTrainsItsCodebooksOnTwoRanks) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const int64_t n = 12000, d = 16;
    const std::string data = generated_file(dir, "x.u8bin", n, d, 4, Values::Uint8);
    const std::string out = dir.file("ivfpq.faiss");
    // PQ4np: FAISS's factory otherwise adds polysemous training (tens of seconds here).
    const RunResult r = train(2, "--data " + data + " --index IVF32_GMMdiag,PQ4np --add --niter 4 "
                                 "--index-train-rows 10000 --out " + out);
    ASSERT_EQ(r.status, 0) << r.output;
    std::unique_ptr<faiss::Index> index(read_gmm_index(out));
    EXPECT_TRUE(index->is_trained);
    EXPECT_EQ(index->ntotal, n);
    const GmmQuantizer* q = find_gmm_quantizer(index.get());
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->model.covariance_type, CovarianceType::Diagonal);
    EXPECT_EQ(q->model.K, 32);
}

// ---- failures: a clear message, a non-zero status, no hang ----

TEST(MpiTrain, MissingFileOnOneRank) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string good = generated_file(dir, "x.fvecs", 2000, 8, 5);
    // MPMD: rank 0 gets the file, rank 1 a path that does not exist (as on a node without it).
    const RunResult r = run_shell(mpiexec(1) + kTool + " --data " + good + " --k 4 : -np 1 " + kTool + " --data " +
                            dir.file("missing.fvecs") + " --k 4");
    expect_clean_failure(r, "rank 1: cannot open " + dir.file("missing.fvecs"));
}

TEST(MpiTrain, TruncatedFile) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string data = generated_file(dir, "x.fvecs", 2000, 8, 6);
    ASSERT_EQ(truncate(data.c_str(), 2000 * 36 - 7), 0);
    expect_clean_failure(train(2, "--data " + data + " --k 4"), "ranks 0, 1: " + data + ": size");
    // A .fbin whose header promises more rows than it holds, seen by rank 1 only.
    const std::string fbin = generated_file(dir, "y.fbin", 2000, 8, 6);
    const std::string cut = dir.file("cut.fbin");
    ASSERT_EQ(run_shell("head -c 40000 " + fbin + " > " + cut).status, 0);
    const RunResult r = run_shell(mpiexec(1) + kTool + " --data " + fbin + " --k 4 : -np 1 " + kTool + " --data " + cut +
                            " --k 4");
    expect_clean_failure(r, "rank 1: " + cut);
}

// Issue 13.2: --out goes through AtomicFile; a write that fails ends the job with
// the path and the reason (a full disk: /dev/full, written in place and never
// replaced; a missing folder; a directory in the way). The size-limit case that
// shows the previous file surviving is in tests/test_gmm_io_reliability.cpp (a
// file-size limit here breaks mpiexec itself).
TEST(MpiTrain, FailedOutWriteSaysWhy) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string data = generated_file(dir, "x.fvecs", 2000, 8, 8);
    if (access("/dev/full", W_OK) == 0) {
        expect_clean_failure(train(2, "--data " + data + " --k 4 --niter 2 --out /dev/full"),
                             "rank 0: cannot write /dev/full: writing failed after 0 bytes: No space left on device");
    }
    const std::string missing = dir.file("no/such/folder/x.index");
    expect_clean_failure(train(2, "--data " + data + " --k 4 --niter 2 --out " + missing),
                         "rank 0: cannot write " + missing + ": creating a temporary file in");
    // Over a directory: refused before anything is written, the directory untouched.
    const std::string out = dir.file("out.index");
    ASSERT_EQ(mkdir(out.c_str(), 0755), 0);
    expect_clean_failure(train(1, "--data " + data + " --k 4 --niter 2 --out " + out), "it is a directory");
    struct stat st;
    ASSERT_EQ(stat(out.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(run_shell("ls -A " + dir.path + " | grep -c tmp").output, "0\n") << "temporary file left behind";
}

TEST(MpiTrain, RanksSeeDifferentData) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string d8 = generated_file(dir, "d8.fvecs", 2000, 8, 7);
    const std::string d6 = generated_file(dir, "d6.fvecs", 2000, 6, 7);
    const RunResult r = run_shell(mpiexec(2) + kTool + " --data " + d8 + " --k 4 : -np 1 " + kTool + " --data " + d6 +
                            " --k 4");
    expect_clean_failure(r, "do not see the same data");
    EXPECT_NE(r.output.find("rank 2: 2000 rows, d = 6, float32"), std::string::npos) << r.output;
}

TEST(MpiTrain, MoreComponentsThanRows) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string data = generated_file(dir, "x.fvecs", 500, 8, 8);
    expect_clean_failure(train(3, "--data " + data + " --k 501"),
                         "ranks 0, 1, 2: GMM training: K = 501 components but only N = 500");
    expect_clean_failure(train(1, "--data " + data + " --k 501"), "K = 501 components but only N = 500");
}

TEST(MpiTrain, NonFiniteValueOnOneRank) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const int64_t n = 3000, d = 8;
    std::vector<float> x = clustered_data(n, d, 4, 1.0f, 9);
    x[2900 * d + 3] = NAN; // rank 2 of 3 holds rows 2000..2999
    const std::string data = dir.file("nan.fvecs");
    datasets::write_fvecs(data, n, d, x.data());
    expect_clean_failure(train(3, "--data " + data + " --k 4 --max-points-per-centroid 0"),
                         "rank 2: input row 2900, column 3 is NaN");
}

TEST(MpiTrain, BadArguments) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string data = generated_file(dir, "x.fvecs", 500, 8, 11);
    expect_clean_failure(train(2, "--data " + data + " --k 4 --frobnicate"),
                         "ranks 0, 1: unknown argument '--frobnicate'");
    expect_clean_failure(train(2, "--data x.txt --k 4"), "not a memory-mapped vector file");
    expect_clean_failure(train(1, "--data " + data + " --index IVF8_spill1.2,Flat"), "has no GMM coarse quantizer");
    expect_clean_failure(train(2, "--data " + data + " --index PCA4,IVF8_GMM,Flat"), "pre-transforms");
    const RunResult help = train(2, "--help");
    EXPECT_EQ(help.status, 0) << help.output;
    EXPECT_NE(help.output.find("mpirun -np R faiss-gmm-train-mpi"), std::string::npos) << help.output;
    EXPECT_NE(help.output.find("is now `faiss-gmm train`"), std::string::npos) << help.output;
}

namespace {

/// Reads /proc/<pid>/<what> (NUL-separated fields) or "".
std::string proc_file(const std::string& pid, const char* what) {
    std::ifstream f("/proc/" + pid + "/" + what);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

/// The pid of the process of MPI rank `rank` whose command line mentions `marker`, or -1.
pid_t find_rank_process(int rank, const std::string& marker) {
    const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + '\0';
    std::unique_ptr<DIR, int (*)(DIR*)> proc(opendir("/proc"), closedir);
    while (dirent* e = readdir(proc.get())) {
        const std::string pid = e->d_name;
        if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
        if (proc_file(pid, "cmdline").find(marker) == std::string::npos) continue;
        if (('\0' + proc_file(pid, "environ")).find('\0' + want) != std::string::npos) return pid_t(std::stoi(pid));
    }
    return -1;
}

/// A job started in the background (its output in `log`), to be interfered with.
class BackgroundJob {
  public:
    BackgroundJob(const std::string& command, std::string log) : log_(std::move(log)) {
        t0_ = std::chrono::steady_clock::now();
        pid_ = fork();
        if (pid_ == 0) {
            execl("/bin/sh", "sh", "-c", (command + " > " + log_ + " 2>&1").c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
    }
    bool started() const { return pid_ > 0; }
    std::string output() const {
        std::ifstream f(log_);
        std::stringstream text;
        text << f.rdbuf();
        return text.str();
    }
    /// Polls the output for `text` for up to a minute, then returns the pid of
    /// `rank`'s process (-1 if it never appeared).
    pid_t rank_process_once(const std::string& text, int rank, const std::string& marker) const {
        for (int i = 0; i < 600; i++) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            if (output().find(text) != std::string::npos) return find_rank_process(rank, marker);
        }
        return -1;
    }
    /// Waits for the job; its exit status (-1 if it did not exit normally).
    int wait() {
        int status = 0;
        if (waitpid(pid_, &status, 0) != pid_ || !WIFEXITED(status)) return -1;
        return WEXITSTATUS(status);
    }
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

  private:
    std::string log_;
    pid_t pid_ = -1;
    std::chrono::steady_clock::time_point t0_;
};

} // namespace

TEST(MpiTrain, RankKilledMidTraining) {
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string data = generated_file(dir, "kill.fvecs", 20000, 16, 10);
    // EM that would run for hours (tol 0, a million iterations): only the kill ends it.
    BackgroundJob job(mpiexec(3) + kTool + " --data " + data + " --k 16 --niter 1000000 --tol 0", dir.file("kill.log"));
    ASSERT_TRUE(job.started());
    // Wait for EM to be under way, then kill rank 1 as an out-of-memory killer would.
    const pid_t victim = job.rank_process_once("EM iter   3/", 1, data);
    ASSERT_GT(victim, 0) << "rank 1 never got to EM iteration 3";
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    const int status = job.wait();
    EXPECT_NE(status, 0);
    EXPECT_NE(status, 124) << "mpiexec did not end the job: the other ranks hung";
    EXPECT_LT(job.seconds(), kRunTimeout);
    std::printf("  killed rank 1 (pid %d): the job ended with status %d after %.1f s in all\n", int(victim), status,
                job.seconds());
}

TEST(MpiTrain, KilledRunResumesFromItsCheckpointToTheSameModel) {
    // Issue 13: checkpoints every 2 iterations; rank 1 killed after iteration 7
    // of 300 (a few ms each: the run is far from its end when the kill lands);
    // --resume on the same ranks ends with the uninterrupted run's model, bit for bit.
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string data = generated_file(dir, "resume.fvecs", 30000, 16, 12);
    const std::string flags = " --data " + data + " --k 24 --niter 300 --tol 0 --seed 5";
    const std::string full = dir.file("full.faiss"), resumed = dir.file("resumed.faiss"), ck = dir.file("ck.bin");
    const RunResult whole = train(2, flags + " --out " + full);
    ASSERT_EQ(whole.status, 0) << whole.output;

    BackgroundJob job(mpiexec(2) + kTool + flags + " --checkpoint " + ck + " --checkpoint-every 2 --out " + resumed,
                      dir.file("killed.log"));
    ASSERT_TRUE(job.started());
    const pid_t victim = job.rank_process_once("EM iter   7/", 1, data);
    ASSERT_GT(victim, 0) << "rank 1 never got to EM iteration 7\n" << job.output();
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    EXPECT_NE(job.wait(), 0);
    ASSERT_TRUE(std::ifstream(ck).good()) << "no checkpoint was written\n" << job.output();
    EXPECT_FALSE(std::ifstream(resumed).good()) << "the killed run must not have written its model";

    const RunResult again = train(2, flags + " --checkpoint " + ck + " --resume --out " + resumed);
    ASSERT_EQ(again.status, 0) << again.output;
    EXPECT_NE(again.output.find("resumed from " + ck), std::string::npos) << again.output;
    faiss_gmm::testing::expect_models_identical(read_model(resumed), read_model(full), "resumed after a kill");
    expect_clean_failure(train(2, flags + " --resume"), "--resume and --checkpoint-every need --checkpoint FILE");
}

TEST(MpiTrain, StoppedRankEndsTheJobAfterTheCollectiveTimeout) {
    // Issue 13: a rank that hangs without dying (SIGSTOP) would keep the others in
    // a collective forever; --collective-timeout ends the job naming it and the step.
    SKIP_WITHOUT_MPIEXEC();
    TempDir dir;
    const std::string data = generated_file(dir, "stop.fvecs", 20000, 16, 13);
    BackgroundJob job(mpiexec(3) + kTool + " --data " + data + " --k 16 --niter 1000000 --tol 0 --collective-timeout 2",
                      dir.file("stop.log"));
    ASSERT_TRUE(job.started());
    const pid_t victim = job.rank_process_once("EM iter   3/", 2, data);
    ASSERT_GT(victim, 0) << "rank 2 never got to EM iteration 3";
    ASSERT_EQ(kill(victim, SIGSTOP), 0);
    const int status = job.wait();
    kill(victim, SIGKILL); // in case mpiexec left the stopped process behind
    const std::string out = job.output();
    EXPECT_NE(status, 0) << out;
    EXPECT_NE(status, 124) << "the job hung until the test's timeout\n" << out;
    // Stopped before a collective ("did not reach") or inside one ("did not complete").
    EXPECT_NE(out.find("rank(s) 2 did not "), std::string::npos) << out;
    EXPECT_NE(out.find("E-step of iteration"), std::string::npos) << out;
    std::printf("  stopped rank 2: the job ended with status %d after %.1f s in all\n", status, job.seconds());
}
