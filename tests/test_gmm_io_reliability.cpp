// Issue 13.2 / 13.3 / 15.6: atomic writes (a failed write leaves the previous
// file intact and says why: a size limit in a child process, /dev/full, a
// rename that fails), the checksum footer (every flipped byte and every
// truncation refused, before FAISS parses anything), older files still read
// (committed fixtures written by the version-3 writer, unverified with a note),
// and GmmTrailer as one unit (every setting survives a round trip).
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <faiss/IndexIVF.h>
#include <faiss/index_io.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "datasets/VecsFile.h"
#include "eval/Report.h"
#include "faiss_gmm/AtomicFile.h"
#include "faiss_gmm/Crc32c.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/IndexIVFSpill.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/gmm_io.h"
#include "fuzz/seed_index.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using Bytes = std::vector<uint8_t>;

namespace {

class TempDir {
  public:
    TempDir() {
        std::string t = ::testing::TempDir() + "faiss-gmm-io-XXXXXX";
        if (!mkdtemp(t.data())) throw std::runtime_error("mkdtemp failed");
        dir_ = t;
    }
    ~TempDir() { std::system(("rm -rf '" + dir_ + "'").c_str()); }
    std::string path(const std::string& name) const { return dir_ + "/" + name; }
    /// Names in the folder (temporary files included: they start with '.').
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        if (DIR* d = opendir(dir_.c_str())) {
            while (dirent* e = readdir(d)) {
                const std::string n = e->d_name;
                if (n != "." && n != "..") out.push_back(n);
            }
            closedir(d);
        }
        return out;
    }

  private:
    std::string dir_;
};

Bytes read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_plain(const std::string& path, const Bytes& b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

bool has(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

std::unique_ptr<faiss::Index> trained(const std::string& desc, int64_t d, int64_t n, uint64_t seed) {
    const std::vector<float> x = clustered_data(n, d, 8, 1.0f, seed);
    GmmParams p;
    p.niter = 5;
    std::unique_ptr<faiss::Index> index(gmm_index_factory(int(d), desc, faiss::METRIC_L2, p));
    index->train(n, x.data());
    index->add(n, x.data());
    return index;
}

bool dev_full_usable() {
    struct stat st;
    return ::stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode) && ::access("/dev/full", W_OK) == 0;
}

} // namespace

// ---------------------------------------------------------------- CRC-32C

TEST(Crc32c, StandardCheckValuesAndBothImplementations) {
    EXPECT_EQ(crc32c_extend(0, "123456789", 9), 0xE3069283u);
    EXPECT_EQ(crc32c_extend_portable(0, "123456789", 9), 0xE3069283u);
    const std::vector<uint8_t> zeros(32, 0), ones(32, 0xff);
    EXPECT_EQ(crc32c_extend(0, zeros.data(), 32), 0x8A9136AAu); // RFC 3720 B.4
    EXPECT_EQ(crc32c_extend(0, ones.data(), 32), 0x62A8AB43u);
    std::mt19937 rng(3);
    std::vector<uint8_t> data(5000);
    for (auto& v : data) v = uint8_t(rng());
    for (size_t off : {0, 1, 3, 7}) {
        for (size_t len : {0, 1, 7, 8, 9, 63, 1000, 4993}) {
            const uint32_t a = crc32c_extend(0, data.data() + off, len);
            EXPECT_EQ(a, crc32c_extend_portable(0, data.data() + off, len)) << off << " " << len;
            // Continuation: the CRC of a then b.
            const size_t h = len / 3;
            EXPECT_EQ(a, crc32c_extend(crc32c_extend(0, data.data() + off, h), data.data() + off + h, len - h));
        }
    }
}

// ---------------------------------------------------------------- AtomicFile

TEST(AtomicFile, ReplacesKeepsModeAndLeavesNoTemporaryFile) {
    TempDir tmp;
    const std::string p = tmp.path("out.txt");
    write_file_atomically(p, "old", 3);
    ASSERT_EQ(::chmod(p.c_str(), 0640), 0);
    write_file_atomically(p, "new content", 11);
    EXPECT_EQ(read_file(p), Bytes({'n', 'e', 'w', ' ', 'c', 'o', 'n', 't', 'e', 'n', 't'}));
    struct stat st;
    ASSERT_EQ(::stat(p.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u);
    EXPECT_EQ(tmp.names(), std::vector<std::string>({"out.txt"}));
    {
        AtomicFile f(p); // never committed: the old content stays, the temporary goes
        f.write("partial", 7);
        EXPECT_EQ(tmp.names().size(), 2u);
    }
    EXPECT_EQ(read_file(p).size(), 11u);
    EXPECT_EQ(tmp.names(), std::vector<std::string>({"out.txt"}));
}

TEST(AtomicFile, FailuresSayWhatFailed) {
    TempDir tmp;
    std::string e = error_of([&] { write_file_atomically("/nonexistent-faiss-gmm-dir/x.index", "x", 1); });
    EXPECT_TRUE(has(e, "/nonexistent-faiss-gmm-dir/x.index") && has(e, "creating a temporary file in") &&
                has(e, "No such file or directory"))
            << e;
    e = error_of([&] { write_file_atomically(tmp.path(""), "x", 1); });
    EXPECT_TRUE(has(e, "not a file name")) << e;
    // The rename fails: the target became a non-empty directory before commit().
    const std::string p = tmp.path("target");
    e = error_of([&] {
        AtomicFile f(p);
        f.write("data", 4);
        ASSERT_EQ(::mkdir(p.c_str(), 0755), 0);
        write_plain(p + "/inside", {1});
        f.commit();
    });
    EXPECT_TRUE(has(e, "renaming the temporary file over it failed") && has(e, p)) << e;
    EXPECT_EQ(tmp.names(), std::vector<std::string>({"target"})) << "temporary file left behind";
    if (!dev_full_usable()) GTEST_SKIP() << "no writable /dev/full";
    e = error_of([&] { write_file_atomically("/dev/full", "x", 1); });
    EXPECT_TRUE(has(e, "/dev/full") && has(e, "No space left on device")) << e;
    // The device node is written in place, never replaced.
    struct stat st;
    ASSERT_EQ(::stat("/dev/full", &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));
}

TEST(AtomicFile, DatasetAndReportWritersReportTheDiskFull) {
    if (!dev_full_usable()) GTEST_SKIP() << "no writable /dev/full";
    const std::vector<float> x(64, 1.0f);
    std::string e = error_of([&] { datasets::write_fvecs("/dev/full", 8, 8, x.data()); });
    EXPECT_TRUE(has(e, "No space left on device")) << e;
    e = error_of([&] { eval::write_text("/dev/full", "a,b\n1,2\n"); });
    EXPECT_TRUE(has(e, "No space left on device")) << e;
    // And a failed report write leaves the previous report.
    TempDir tmp;
    const std::string p = tmp.path("r.csv");
    eval::write_text(p, "old\n");
    EXPECT_THROW(eval::write_text(tmp.path("missing/r.csv"), "x"), std::runtime_error);
    EXPECT_EQ(read_file(p).size(), 4u);
}

// A child process with a file-size limit (SIGXFSZ ignored, so write() fails with
// EFBIG) writes a large index over a good one: the good one must survive.
TEST(GmmIOAtomic, SizeLimitLeavesThePreviousIndexIntact) {
    TempDir tmp;
    const std::string p = tmp.path("gmm.index");
    auto small = trained("IVF8_GMM,Flat", 8, 400, 1);
    write_gmm_index(small.get(), p);
    const Bytes good = read_file(p);
    auto big = trained("IVF8_GMM_spill1.3,Flat", 16, 6000, 2); // ~500 KB
    ASSERT_GT(serialize_gmm_index(big.get()).size(), size_t(256 * 1024));
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::close(fds[0]);
        ::signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {64 * 1024, 64 * 1024};
        ::setrlimit(RLIMIT_FSIZE, &rl);
        int code = 1;
        std::string msg = "no error";
        try {
            write_gmm_index(big.get(), p);
        } catch (const std::exception& e) {
            code = 0;
            msg = e.what();
        }
        if (::write(fds[1], msg.data(), msg.size()) < 0) code = 3;
        ::_exit(code);
    }
    ::close(fds[1]);
    std::string msg;
    char buf[512];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) msg.append(buf, size_t(n));
    ::close(fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "the child died (signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << ")";
    EXPECT_EQ(WEXITSTATUS(status), 0) << msg;
    EXPECT_TRUE(has(msg, p) && has(msg, "File too large") && has(msg, "was left as it was")) << msg;
    EXPECT_EQ(read_file(p), good) << "the previous index changed";
    std::unique_ptr<faiss::Index> back(read_gmm_index(p));
    EXPECT_EQ(back->ntotal, 400);
    EXPECT_EQ(tmp.names(), std::vector<std::string>({"gmm.index"})) << "temporary file left behind";
}

TEST(GmmIOAtomic, DevFullIsAClearError) {
    if (!dev_full_usable()) GTEST_SKIP() << "no writable /dev/full";
    auto index = trained("IVF8_GMM,Flat", 8, 400, 3);
    const std::string e = error_of([&] { write_gmm_index(index.get(), "/dev/full"); });
    EXPECT_TRUE(has(e, "/dev/full") && has(e, "No space left on device")) << e;
}

// ---------------------------------------------------------------- checksum

namespace {

/// A small file with every part: FAISS, GMM trailer, spill trailer, footer.
Bytes spill_file(size_t* faiss_size) {
    auto index = trained("IVF8_GMM_spill1.3,Flat", 4, 300, 4);
    const Bytes b = serialize_gmm_index(index.get());
    faiss::VectorIOWriter w;
    faiss::write_index(as_spill_index(index.get())->index, &w);
    *faiss_size = w.data.size();
    return b;
}

} // namespace

TEST(GmmIOChecksum, EveryFlippedByteIsRefusedBeforeFaissParses) {
    size_t faiss_size = 0;
    const Bytes good = spill_file(&faiss_size);
    GmmFileInfo info;
    std::unique_ptr<faiss::Index> ok(deserialize_gmm_index(good.data(), good.size(), &info));
    EXPECT_TRUE(info.verified);
    EXPECT_EQ(info.gmm_version, 5u);
    EXPECT_EQ(info.spill_version, 2u);
    EXPECT_EQ(info.faiss_size, faiss_size);
    EXPECT_TRUE(info.note.empty());
    ASSERT_NE(as_spill_index(ok.get()), nullptr);
    for (size_t i = 0; i < good.size(); i++) {
        for (uint8_t mask : {uint8_t(0x01), uint8_t(0x80)}) {
            Bytes b = good;
            b[i] ^= mask;
            const std::string e = error_of([&] {
                std::unique_ptr<faiss::Index> x(deserialize_gmm_index(b.data(), b.size()));
            });
            // "checksum mismatch", or a damaged footer marker ("checksum footer: ...").
            ASSERT_TRUE(has(e, "checksum")) << "byte " << i << " of " << good.size() << ": " << e;
            ASSERT_FALSE(has(e, "not a readable FAISS index")) << "FAISS saw damaged bytes (byte " << i << "): " << e;
        }
    }
}

TEST(GmmIOChecksum, TruncatedAndExtendedFilesAreRefused) {
    size_t faiss_size = 0;
    const Bytes good = spill_file(&faiss_size);
    for (size_t cut = 0; cut < good.size(); cut++) {
        if (cut == faiss_size) {
            // Cut exactly after the FAISS part: a plain FAISS file, which is valid
            // input (returned as FAISS reads it, unverified, no GMM): the one cut
            // no format appended to FAISS's can tell from a plain index.
            GmmFileInfo info;
            std::unique_ptr<faiss::Index> x(deserialize_gmm_index(good.data(), cut, &info));
            EXPECT_FALSE(info.verified);
            EXPECT_EQ(info.gmm_version, 0u);
            EXPECT_EQ(find_gmm_quantizer(x.get()), nullptr);
            continue;
        }
        const std::string e = error_of([&] { std::unique_ptr<faiss::Index> x(deserialize_gmm_index(good.data(), cut)); });
        ASSERT_FALSE(e.empty()) << "cut at " << cut << " read without error";
        if (cut >= faiss_size) ASSERT_TRUE(has(e, "truncated") || has(e, "checksum")) << cut << ": " << e;
    }
    Bytes longer = good;
    longer.insert(longer.end(), 8, 0);
    EXPECT_THROW(deserialize_gmm_index(longer.data(), longer.size()), std::runtime_error);
}

TEST(GmmIOChecksum, FilesAreVerifiedAndStayReadableByFaiss) {
    TempDir tmp;
    auto index = trained("IVF8_GMMdiag_spill1.3,Flat", 8, 500, 5);
    const std::string p = tmp.path("x.index");
    write_gmm_index(index.get(), p);
    const Bytes good = read_file(p);
    EXPECT_EQ(good, serialize_gmm_index(index.get()));
    GmmFileInfo info;
    std::unique_ptr<faiss::Index> back(read_gmm_index(p, &info));
    EXPECT_TRUE(info.verified);
    // Plain FAISS reads the file and ignores what follows its part.
    std::unique_ptr<faiss::Index> plain(faiss::read_index(p.c_str()));
    EXPECT_EQ(plain->ntotal, as_spill_index(index.get())->n_entries());
    // Damaged in the FAISS part, the GMM trailer, the spill trailer, the CRC itself.
    for (size_t pos : {size_t(40), info.faiss_size + 30, good.size() - 40, good.size() - 7}) {
        Bytes b = good;
        b[pos] ^= 0x04;
        write_plain(p, b);
        const std::string e = error_of([&] { delete read_gmm_index(p); });
        EXPECT_TRUE(has(e, p) && has(e, "checksum mismatch")) << pos << ": " << e;
    }
}

// ---------------------------------------------------------------- older files

TEST(GmmIOOldFormat, CommittedVersion3FilesStillReadUnverified) {
    const std::string dir = std::string(FAISS_GMM_SOURCE_DIR) + "/tests/data/gmm_io_v3/";
    struct Case {
        const char* file;
        CovarianceType type;
        bool spill;
    };
    // (ivf8_gmmdiag_probe_v3.index turns on a probe ranking removed in issue 14:
    // refused, see RemovedProbeRankingIsRefused.)
    for (const Case& c : {Case{"ivf8_gmm_v3.index", CovarianceType::Spherical, false},
                          Case{"ivf8_gmm_spill_v3.index", CovarianceType::Spherical, true}}) {
        GmmFileInfo info;
        std::unique_ptr<faiss::Index> back(read_gmm_index(dir + c.file, &info));
        EXPECT_FALSE(info.verified) << c.file;
        EXPECT_EQ(info.gmm_version, 3u) << c.file;
        EXPECT_EQ(info.spill_version, c.spill ? 1u : 0u) << c.file;
        EXPECT_TRUE(has(info.note, "without a checksum") && has(info.note, "unverified")) << info.note;
        const GmmQuantizer* q = find_gmm_quantizer(back.get());
        ASSERT_NE(q, nullptr) << c.file;
        auto expected = fuzz::seed_index(c.type, c.spill);
        const GmmModel& m = find_gmm_quantizer(expected.get())->model;
        EXPECT_EQ(q->model.means, m.means) << c.file;
        EXPECT_EQ(q->model.variances, m.variances) << c.file;
        EXPECT_EQ(q->model.log_weights, m.log_weights) << c.file;
        EXPECT_EQ(back->ntotal, 40) << c.file;
        EXPECT_EQ(as_spill_index(back.get()) != nullptr, c.spill) << c.file;
        // Written when a GMM's plain "_spill1.2" meant the posterior rule (issue 14 made it GMM-SOAR):
        // the file stores its rule, so it still reads as the index it was.
        if (c.spill) EXPECT_EQ(as_spill_index(back.get())->spill.rule, SpillRule::Posterior) << c.file;
        // Written again, it is today's format, verified.
        const Bytes again = serialize_gmm_index(back.get());
        std::unique_ptr<faiss::Index> back2(deserialize_gmm_index(again.data(), again.size(), &info));
        EXPECT_TRUE(info.verified);
        EXPECT_EQ(find_gmm_quantizer(back2.get())->model.means, q->model.means);
    }
    // Without an info argument the note goes to stderr.
    ::testing::internal::CaptureStderr();
    delete read_gmm_index(dir + "ivf8_gmm_v3.index");
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_TRUE(has(err, "ivf8_gmm_v3.index") && has(err, "unverified")) << err;
}

TEST(GmmIOOldFormat, RemovedProbeRankingIsRefused) {
    const std::string path = std::string(FAISS_GMM_SOURCE_DIR) + "/tests/data/gmm_io_v3/ivf8_gmmdiag_probe_v3.index";
    const std::string e = error_of([&] { delete read_gmm_index(path); });
    EXPECT_TRUE(has(e, "no longer has") && has(e, "faiss::read_index")) << e;
    std::unique_ptr<faiss::Index> plain(faiss::read_index(path.c_str()));
    EXPECT_EQ(plain->ntotal, 40);
}

TEST(GmmIOOldFormat, OldWriterVersions1To3StillRead) {
    auto index = trained("IVF8_GMM_spill1.3,Flat", 8, 500, 6);
    for (uint32_t v : {1u, 2u, 3u}) {
        const Bytes b = detail::serialize_gmm_index_old_format(index.get(), v);
        GmmFileInfo info;
        std::unique_ptr<faiss::Index> back(deserialize_gmm_index(b.data(), b.size(), &info));
        EXPECT_FALSE(info.verified);
        EXPECT_EQ(info.gmm_version, v);
        const GmmQuantizer* q = find_gmm_quantizer(back.get());
        ASSERT_NE(q, nullptr);
        EXPECT_EQ(q->model.means, find_gmm_quantizer(index.get())->model.means);
        ASSERT_NE(as_spill_index(back.get()), nullptr);
    }
    EXPECT_THROW(detail::serialize_gmm_index_old_format(index.get(), 5), std::invalid_argument);
}

TEST(GmmIOOldFormat, Version4WithFooterStillReadsVerified) {
    // Trailer version 5 (issue 17) only adds full covariances: version 4 files read as before.
    auto index = trained("IVF8_GMMdiag_spill1.3,Flat", 8, 500, 6);
    const Bytes b = detail::serialize_gmm_index_old_format(index.get(), 4);
    GmmFileInfo info;
    std::unique_ptr<faiss::Index> back(deserialize_gmm_index(b.data(), b.size(), &info));
    EXPECT_TRUE(info.verified);
    EXPECT_EQ(info.gmm_version, 4u);
    const GmmQuantizer* q = find_gmm_quantizer(back.get());
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->model.variances, find_gmm_quantizer(index.get())->model.variances);
    ASSERT_NE(as_spill_index(back.get()), nullptr);
}

// ---------------------------------------------------------------- GmmTrailer

TEST(GmmTrailerUnit, EverySettingSurvivesARoundTrip) {
    auto index = trained("IVF8_GMMdiag_tau0.05_max3_ppost,Flat", 8, 600, 7);
    const GmmTrailer a = GmmTrailer::of(index.get());
    ASSERT_TRUE(a.has_gmm && a.has_spill);
    const Bytes b = serialize_gmm_index(index.get());
    std::unique_ptr<faiss::Index> back(deserialize_gmm_index(b.data(), b.size()));
    const GmmTrailer t = GmmTrailer::of(back.get());
    EXPECT_EQ(t.model.means, a.model.means);
    EXPECT_EQ(t.model.variances, a.model.variances);
    EXPECT_EQ(t.params.niter, a.params.niter);
    EXPECT_EQ(t.params.seed, a.params.seed);
    EXPECT_FALSE(t.rank_by_posterior); // removed probe rankings: written as off
    EXPECT_EQ(t.probe_variance_weight, 0.0);
    EXPECT_EQ(t.probe_variance_power, 0.0);
    EXPECT_EQ(int(t.spill.rule), int(a.spill.rule));
    EXPECT_EQ(t.spill.tau, 0.05);
    EXPECT_EQ(t.spill.max_copies, 3);
    EXPECT_EQ(t.spill.primary_by_posterior, a.spill.primary_by_posterior);
    EXPECT_EQ(t.spill_threshold, a.spill_threshold);
    EXPECT_EQ(t.spill_threshold_set, a.spill_threshold_set);
    EXPECT_EQ(t.spill_ntotal, 600);
    // A GmmQuantizer saved on its own comes back as one.
    const Bytes qb = serialize_gmm_index(find_gmm_quantizer(index.get()));
    std::unique_ptr<faiss::Index> q(deserialize_gmm_index(qb.data(), qb.size()));
    ASSERT_NE(dynamic_cast<GmmQuantizer*>(q.get()), nullptr);
    EXPECT_EQ(dynamic_cast<GmmQuantizer*>(q.get())->model.means, a.model.means);
}

// An index with empty lists: FAISS reads its empty vectors into a null data()
// (found by fuzz_gmm_trailer under UBSan: a memcpy of 0 bytes from the reader).
TEST(GmmTrailerUnit, EmptyListsRoundTrip) {
    for (bool spill : {false, true}) {
        auto index = fuzz::seed_index(CovarianceType::Spherical, spill);
        const Bytes b = serialize_gmm_index(index.get());
        GmmFileInfo info;
        std::unique_ptr<faiss::Index> back(deserialize_gmm_index(b.data(), b.size(), &info));
        EXPECT_TRUE(info.verified);
        EXPECT_EQ(back->ntotal, 0);
        EXPECT_EQ(find_gmm_quantizer(back.get())->model.means, find_gmm_quantizer(index.get())->model.means);
    }
}
