// scripts/fetch_datasets.sh, run offline against file:// URLs holding small
// stand-ins in the upstream layouts (TEXMEX tarball, big-ann-benchmarks 1B-row
// .fbin/.u8bin headers, ann-benchmarks HDF5): its download, prefix, conversion
// and ground-truth steps must produce exactly the expected files.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "datasets/BinFile.h"
#include "datasets/Dataset.h"
#include "datasets/GroundTruth.h"
#include "datasets/Hdf5File.h"
#include "datasets/Synthetic.h"
#include "datasets/VecsFile.h"

using namespace faiss_gmm;
using namespace faiss_gmm::datasets;

namespace {

std::string tool_path() {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0) {
        return "";
    }
    std::string exe(buf, size_t(n));
    return exe.substr(0, exe.rfind('/')) + "/../datasets/faiss-gmm-dataset";
}

bool have(const char* prog) {
    return std::system((std::string("command -v ") + prog + " > /dev/null 2>&1").c_str()) == 0;
}

int run(const std::string& cmd) {
    int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// A big-ann-benchmarks file whose header claims 10^9 rows (as the real ones do)
// but holds only `rows`: the script must fetch a prefix and fix the header.
template <typename T>
void write_fake_1b(const std::string& path, int64_t rows, int32_t d, const std::vector<T>& values) {
    std::ofstream f(path, std::ios::binary);
    int32_t h[2] = {1000000000, d};
    f.write(reinterpret_cast<const char*>(h), 8);
    f.write(reinterpret_cast<const char*>(values.data()), std::streamsize(rows * d * sizeof(T)));
}

} // namespace

TEST(DatasetsFetch, ScriptConvertsLocalMirrors) {
    const std::string tool = tool_path();
    const std::string script = std::string(FAISS_GMM_SOURCE_DIR) + "/scripts/fetch_datasets.sh";
    if (access(tool.c_str(), X_OK) != 0) {
        GTEST_SKIP() << "faiss-gmm-dataset not built at " << tool;
    }
    if (!have("curl") || !have("tar") || !have("bash")) {
        GTEST_SKIP() << "curl, tar or bash missing";
    }
    char tmpl[] = "/tmp/faiss_gmm_test_fetch_XXXXXX";
    const std::string root = mkdtemp(tmpl);
    const std::string mirror = root + "/mirror", out = root + "/data";
    ASSERT_EQ(run("mkdir -p " + mirror + "/texmex/sift " + mirror + "/deep " + mirror + "/bigann " + mirror +
                  "/annb"),
              0);

    // TEXMEX: sift.tar.gz with sift/sift_{base,query,learn}.fvecs and sift_groundtruth.ivecs.
    MixtureParams mp;
    mp.n = 1500;
    mp.d = 16;
    FloatMatrix base = generate_mixture(mp).x;
    mp.seed = 5;
    mp.n = 12;
    FloatMatrix q = generate_mixture(mp).x;
    MemoryVectorSource bs(base.n, base.d, base.data.data());
    GroundTruth gt = compute_ground_truth(bs, q.n, q.data.data(), 10, Metric::L2);
    std::string sd = mirror + "/texmex/sift/";
    write_fvecs(sd + "sift_base.fvecs", base.n, base.d, base.data.data());
    write_fvecs(sd + "sift_learn.fvecs", base.n, base.d, base.data.data());
    write_fvecs(sd + "sift_query.fvecs", q.n, q.d, q.data.data());
    write_ivecs(sd + "sift_groundtruth.ivecs", gt.ids.n, gt.ids.d, gt.ids.data.data());
    ASSERT_EQ(run("tar -czf " + mirror + "/texmex/sift.tar.gz -C " + mirror + "/texmex sift"), 0);

    // Deep1B stand-in: 96-d float, 700 rows present; the script takes the first 500.
    mp.d = 96;
    mp.n = 700;
    FloatMatrix deep = generate_mixture(mp).x;
    write_fake_1b(mirror + "/deep/base.1B.fbin", 700, 96, deep.data);
    mp.n = 9;
    FloatMatrix dq = generate_mixture(mp).x;
    write_fbin(mirror + "/deep/query.public.10K.fbin", dq.n, dq.d, dq.data.data());

    // BIGANN stand-in: 128-d uint8.
    std::vector<uint8_t> bg(800 * 128), bq(7 * 128);
    for (size_t i = 0; i < bg.size(); i++) {
        bg[i] = uint8_t((i * 2654435761u) >> 24);
    }
    for (size_t i = 0; i < bq.size(); i++) {
        bq[i] = uint8_t((i * 40503u) >> 8);
    }
    write_fake_1b(mirror + "/bigann/base.1B.u8bin", 800, 128, bg);
    write_u8bin(mirror + "/bigann/query.public.10K.u8bin", 7, 128, bq.data());

    std::string env = "FAISS_GMM_DATA=" + out + " FAISS_GMM_DATASET_TOOL=" + tool + " TEXMEX_URL=file://" + mirror +
                      "/texmex DEEP_URL=file://" + mirror + "/deep BIGANN_URL=file://" + mirror +
                      "/bigann ANN_BENCHMARKS_URL=file://" + mirror + "/annb GT_K=20 ";
    std::string names = "sift1m deep:500 bigann:300";
    // ann-benchmarks: only with HDF5.
    AnnBenchmarksData ab;
    if (hdf5_available()) {
        ab.train = base;
        ab.test = q;
        ab.neighbors = gt.ids;
        ab.distances = gt.distances;
        ab.distance = "euclidean";
        write_ann_benchmarks(mirror + "/annb/tiny-16-euclidean.hdf5", ab);
        names += " annb:tiny-16-euclidean";
    }
    ASSERT_EQ(run(env + "bash " + script + " " + names + " > " + root + "/log.txt 2>&1"), 0)
            << "see " << root << "/log.txt";

    // sift1m: files moved out of the tarball's folder, unchanged.
    EXPECT_EQ(read_fvecs(out + "/sift1m/sift_base.fvecs").data, base.data);
    EXPECT_EQ(read_ivecs(out + "/sift1m/sift_groundtruth.ivecs").data, gt.ids.data);
    EXPECT_EQ(access((out + "/sift1m/SOURCE.txt").c_str(), R_OK), 0);

    // deep:500 — a 500-row .fbin with a correct header, equal to the first 500 rows.
    BinFileSource ds(out + "/deep500/deep500_base.fbin");
    EXPECT_EQ(ds.ntotal(), 500);
    EXPECT_EQ(ds.header_n(), 500);
    FloatMatrix dgot = read_vectors(out + "/deep500/deep500_base.fbin");
    EXPECT_TRUE(std::equal(dgot.data.begin(), dgot.data.end(), deep.data.begin()));
    // Ground truth computed by the tool = computed here on the same prefix.
    MemoryVectorSource dsrc(500, 96, deep.data.data());
    GroundTruth dgt = compute_ground_truth(dsrc, dq.n, dq.data.data(), 20, Metric::L2);
    EXPECT_EQ(read_ivecs(out + "/deep500/deep500_groundtruth.ivecs").data, dgt.ids.data);

    // bigann:300 — uint8 prefix.
    BinFileSource bsrc(out + "/bigann300/bigann300_base.u8bin");
    EXPECT_EQ(bsrc.ntotal(), 300);
    EXPECT_EQ(bsrc.type(), DataType::UInt8);
    std::vector<uint8_t> scratch;
    VectorBlock blk = bsrc.read(0, 300, scratch);
    EXPECT_EQ(std::memcmp(blk.data, bg.data(), 300 * 128), 0);
    int64_t n, d;
    ivecs_shape(out + "/bigann300/bigann300_groundtruth.ivecs", &n, &d);
    EXPECT_EQ(n, 7);
    EXPECT_EQ(d, 20);

    if (hdf5_available()) {
        std::string p = out + "/tiny-16-euclidean/tiny-16-euclidean";
        EXPECT_EQ(read_fvecs(p + "_base.fvecs").data, base.data);
        EXPECT_EQ(read_fvecs(p + "_query.fvecs").data, q.data);
        EXPECT_EQ(read_ivecs(p + "_groundtruth.ivecs").data, gt.ids.data);
    }

    // A prefix longer than the mirror holds fails clearly instead of producing a short file.
    EXPECT_NE(run(env + "bash " + script + " deep:5000 > " + root + "/log2.txt 2>&1"), 0);
    EXPECT_NE(run(env + "bash " + script + " nonsense > /dev/null 2>&1"), 0);
    if (!HasFailure()) {
        run("rm -rf '" + root + "'");
    }
}
