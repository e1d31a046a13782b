// Readers and writers of the dataset formats: round trips, row ranges, and
// clear errors on truncated, inconsistent or lying files.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "datasets/BinFile.h"
#include "datasets/Dataset.h"
#include "datasets/Hdf5File.h"
#include "datasets/IdxFile.h"
#include "datasets/VecsFile.h"
#include "process_helpers.h"

using namespace faiss_gmm;
using namespace faiss_gmm::datasets;

namespace {

/// Peak resident memory of this process so far (KiB): it only grows, so a rise
/// across a call bounds what the call allocated and touched.
long peak_rss_kib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

/// Reading a file whose header lies must not allocate from the header's numbers:
/// the files here hold a few bytes, the lies claim gigabytes; 64 MiB separates them.
constexpr long kMaxHeaderTrustKib = 64 * 1024;

/// A file in the suite's scratch directory (removed with its files when the program ends).
std::string tmp_path(const std::string& name) {
    static const faiss_gmm::testing::TempDir dir;
    return dir.file(name);
}

void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::vector<uint8_t> read_raw(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

template <typename T>
void append(std::vector<uint8_t>& v, T x) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(&x);
    v.insert(v.end(), p, p + sizeof(T));
}

FloatMatrix sample(int64_t n, int64_t d) {
    FloatMatrix m(n, d);
    for (int64_t i = 0; i < n * d; i++) {
        m.data[i] = float(i % 251) * 0.5f - 7.25f;
    }
    return m;
}

std::string shared(const std::string& rel) {
    return std::string(FAISS_GMM_SOURCE_DIR) + "/../shared/datasets/" + rel;
}

// Expects `f` to throw an exception whose message contains `needle`.
template <typename F>
void expect_error(F f, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "no exception; expected one mentioning '" << needle << "'";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    }
}

} // namespace

TEST(DatasetsFormats, VecsRoundTripAndRowRanges) {
    FloatMatrix x = sample(37, 13);
    write_fvecs(tmp_path("a.fvecs"), x.n, x.d, x.data.data());
    FloatMatrix y = read_fvecs(tmp_path("a.fvecs"));
    EXPECT_EQ(y.n, 37);
    EXPECT_EQ(y.d, 13);
    EXPECT_EQ(y.data, x.data);
    FloatMatrix part = read_fvecs(tmp_path("a.fvecs"), 5, 7);
    ASSERT_EQ(part.n, 7);
    EXPECT_TRUE(std::equal(part.data.begin(), part.data.end(), x.row(5)));
    EXPECT_EQ(read_fvecs(tmp_path("a.fvecs"), 37, -1).n, 0); // empty range at the end is fine
    EXPECT_THROW(read_fvecs(tmp_path("a.fvecs"), 30, 8), std::out_of_range);

    std::vector<uint8_t> b(20 * 9);
    for (size_t i = 0; i < b.size(); i++) {
        b[i] = uint8_t(i * 7);
    }
    write_bvecs(tmp_path("a.bvecs"), 20, 9, b.data());
    ByteMatrix bb = read_bvecs(tmp_path("a.bvecs"));
    EXPECT_EQ(bb.data, b);
    FloatMatrix bf = read_fvecs(tmp_path("a.bvecs"), 3, 2); // .bvecs read as float
    EXPECT_EQ(bf.at(1, 4), float(b[4 * 9 + 4]));

    std::vector<int32_t> ids(11 * 4);
    for (size_t i = 0; i < ids.size(); i++) {
        ids[i] = int32_t(i * 3) - 5;
    }
    write_ivecs(tmp_path("a.ivecs"), 11, 4, ids.data());
    IntMatrix im = read_ivecs(tmp_path("a.ivecs"));
    EXPECT_EQ(im.data, ids);
    IntMatrix ip = read_ivecs(tmp_path("a.ivecs"), 10, 1);
    EXPECT_EQ(ip.at(0, 3), ids[43]);
    int64_t n, d;
    ivecs_shape(tmp_path("a.ivecs"), &n, &d);
    EXPECT_EQ(n, 11);
    EXPECT_EQ(d, 4);
}

TEST(DatasetsFormats, IvecsRejectsCorruptFiles) {
    std::vector<int32_t> ids(6 * 4, 1);
    write_ivecs(tmp_path("c.ivecs"), 6, 4, ids.data());
    std::vector<uint8_t> raw = read_raw(tmp_path("c.ivecs"));
    // Truncated by 3 bytes: not a whole number of records.
    write_raw(tmp_path("t.ivecs"), std::vector<uint8_t>(raw.begin(), raw.end() - 3));
    expect_error([] { read_ivecs(tmp_path("t.ivecs")); }, "truncated");
    // A record in the middle with another dimension.
    std::vector<uint8_t> bad = raw;
    int32_t five = 5;
    std::memcpy(bad.data() + 2 * 20, &five, 4);
    write_raw(tmp_path("m.ivecs"), bad);
    expect_error([] { read_ivecs(tmp_path("m.ivecs")); }, "record 2");
    // Lying header: a huge or negative dimension is a corrupt header, not an allocation.
    for (int32_t dd : {-4, 0, int32_t(1) << 30}) {
        std::vector<uint8_t> h = raw;
        std::memcpy(h.data(), &dd, 4);
        write_raw(tmp_path("h.ivecs"), h);
        expect_error([] { read_ivecs(tmp_path("h.ivecs")); }, "corrupt");
    }
    write_raw(tmp_path("s.ivecs"), {1, 0});
    expect_error([] { read_ivecs(tmp_path("s.ivecs")); }, "truncated");
    expect_error([] { read_ivecs(tmp_path("does_not_exist.ivecs")); }, "does_not_exist");
}

TEST(DatasetsFormats, VecsVectorFilesRejectTruncation) {
    FloatMatrix x = sample(5, 8);
    write_fvecs(tmp_path("v.fvecs"), x.n, x.d, x.data.data());
    std::vector<uint8_t> raw = read_raw(tmp_path("v.fvecs"));
    write_raw(tmp_path("vt.fvecs"), std::vector<uint8_t>(raw.begin(), raw.end() - 1));
    EXPECT_ANY_THROW(read_fvecs(tmp_path("vt.fvecs")));
    EXPECT_ANY_THROW(open_vectors(tmp_path("vt.fvecs")));
}

TEST(DatasetsFormats, BinRoundTripViewsAndPrefix) {
    FloatMatrix x = sample(25, 6);
    write_fbin(tmp_path("a.fbin"), x.n, x.d, x.data.data());
    BinFileSource src(tmp_path("a.fbin"));
    EXPECT_EQ(src.ntotal(), 25);
    EXPECT_EQ(src.d(), 6);
    EXPECT_EQ(src.type(), DataType::Float32);
    std::vector<uint8_t> scratch;
    VectorBlock b = src.read(4, 3, scratch);
    EXPECT_TRUE(scratch.empty()); // contiguous rows: a view into the mapping
    EXPECT_EQ(std::memcmp(b.data, x.row(4), 3 * 6 * 4), 0);
    EXPECT_EQ(read_vectors(tmp_path("a.fbin")).data, x.data);

    std::vector<uint8_t> u(10 * 3);
    for (size_t i = 0; i < u.size(); i++) {
        u[i] = uint8_t(255 - i);
    }
    write_u8bin(tmp_path("a.u8bin"), 10, 3, u.data());
    BinFileSource us(tmp_path("a.u8bin"));
    EXPECT_EQ(us.type(), DataType::UInt8);
    EXPECT_EQ(read_vectors(tmp_path("a.u8bin"), 9, 1).at(0, 2), float(u[29]));

    std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6};
    write_ibin(tmp_path("a.ibin"), 3, 2, ids.data());
    EXPECT_EQ(read_ibin(tmp_path("a.ibin")).data, ids);
    EXPECT_EQ(read_ibin(tmp_path("a.ibin"), 1, 1).at(0, 1), 4);

    // big-ann ground truth: ids then distances.
    IntMatrix gi(2, 3);
    FloatMatrix gd(2, 3);
    for (int i = 0; i < 6; i++) {
        gi.data[i] = i * 10;
        gd.data[i] = i * 0.5f;
    }
    write_bin_groundtruth(tmp_path("gt.bin"), gi, gd);
    IntMatrix ri;
    FloatMatrix rd;
    read_bin_groundtruth(tmp_path("gt.bin"), &ri, &rd);
    EXPECT_EQ(ri.data, gi.data);
    EXPECT_EQ(rd.data, gd.data);
    EXPECT_EQ(read_ids(tmp_path("gt.bin"), 1, 1).at(0, 2), 50);

    // A prefix of a big file (partial download): rejected unless allowed.
    std::vector<uint8_t> raw = read_raw(tmp_path("a.fbin"));
    write_raw(tmp_path("p.fbin"), std::vector<uint8_t>(raw.begin(), raw.begin() + 8 + 10 * 6 * 4 + 5));
    expect_error([] { BinFileSource s(tmp_path("p.fbin")); }, "truncated");
    BinFileSource pre(tmp_path("p.fbin"), true);
    EXPECT_EQ(pre.ntotal(), 10); // the partial 11th row is ignored
    EXPECT_EQ(pre.header_n(), 25);
}

TEST(DatasetsFormats, BinRejectsLyingHeaders) {
    // Header claims 2^31 - 1 rows of d = 1000, the file holds 8 bytes of data: a
    // clear error, at once, with nothing allocated from the header's numbers.
    std::vector<uint8_t> raw;
    append<int32_t>(raw, INT32_MAX);
    append<int32_t>(raw, 1000);
    append<double>(raw, 1.0);
    write_raw(tmp_path("lie.fbin"), raw);
    const long rss0 = peak_rss_kib();
    expect_error([] { BinFileSource s(tmp_path("lie.fbin")); }, "inconsistent");
    expect_error([] { read_ibin(tmp_path("lie.fbin")); }, "inconsistent");
    // The header's 8 GB were never allocated and touched (a memory check, not a
    // timing one: a loaded machine must not fail it).
    EXPECT_LT(peak_rss_kib() - rss0, kMaxHeaderTrustKib);
    // Longer than the header says.
    std::vector<uint8_t> more;
    append<int32_t>(more, 1);
    append<int32_t>(more, 2);
    for (int i = 0; i < 3; i++) {
        append<float>(more, 1.f);
    }
    write_raw(tmp_path("more.fbin"), more);
    expect_error([] { BinFileSource s(tmp_path("more.fbin")); }, "inconsistent");
    // Negative counts and short headers.
    std::vector<uint8_t> neg;
    append<int32_t>(neg, -1);
    append<int32_t>(neg, 4);
    write_raw(tmp_path("neg.fbin"), neg);
    expect_error([] { BinFileSource s(tmp_path("neg.fbin")); }, "corrupt");
    write_raw(tmp_path("short.fbin"), {1, 2, 3});
    expect_error([] { BinFileSource s(tmp_path("short.fbin")); }, "truncated");
    // Ground-truth .bin whose size does not match n, k.
    std::vector<uint8_t> g;
    append<int32_t>(g, 1000);
    append<int32_t>(g, 100);
    write_raw(tmp_path("g.bin"), g);
    expect_error([] { read_bin_groundtruth(tmp_path("g.bin"), nullptr, nullptr); }, "inconsistent");
}

TEST(DatasetsFormats, IdxGzRoundTripAndErrors) {
    std::vector<uint8_t> img(7 * 4 * 3);
    for (size_t i = 0; i < img.size(); i++) {
        img[i] = uint8_t(i * 13);
    }
    write_idx_gz(tmp_path("img.gz"), {7, 4, 3}, img);
    std::vector<int64_t> dims;
    ByteMatrix m = read_idx_gz(tmp_path("img.gz"), &dims);
    EXPECT_EQ(m.n, 7);
    EXPECT_EQ(m.d, 12);
    EXPECT_EQ(m.data, img);
    EXPECT_EQ(dims, (std::vector<int64_t>{7, 4, 3}));
    // Uncompressed IDX is read too (zlib passes it through).
    write_idx_gz(tmp_path("lab.idx"), {5}, {1, 2, 3, 4, 5});
    ByteMatrix lab = read_idx_gz(tmp_path("lab.idx"));
    EXPECT_EQ(lab.n, 5);
    EXPECT_EQ(lab.d, 1);
    EXPECT_EQ(read_vectors(tmp_path("img.gz"), 2, 1).at(0, 0), float(img[24]));

    // Truncated gzip stream.
    std::vector<uint8_t> raw = read_raw(tmp_path("img.gz"));
    write_raw(tmp_path("trunc.gz"), std::vector<uint8_t>(raw.begin(), raw.begin() + raw.size() / 2));
    EXPECT_ANY_THROW(read_idx_gz(tmp_path("trunc.gz")));
    // Lying header: 2^24-1 items of 784 bytes (13 GB) claimed, 12 bytes present ->
    // "truncated", quickly (memory grows with the data actually read).
    std::vector<uint8_t> lie = {0, 0, 0x08, 3, 0x00, 0xff, 0xff, 0xff, 0, 0, 0, 28, 0, 0, 0, 28};
    lie.insert(lie.end(), 12, 7);
    write_raw(tmp_path("lie.idx"), lie);
    const long rss0 = peak_rss_kib();
    expect_error([] { read_idx_gz(tmp_path("lie.idx")); }, "truncated");
    EXPECT_LT(peak_rss_kib() - rss0, kMaxHeaderTrustKib);
    // A claim beyond 2^40 bytes is a corrupt header.
    lie[4] = 0x7f;
    write_raw(tmp_path("huge.idx"), lie);
    expect_error([] { read_idx_gz(tmp_path("huge.idx")); }, "corrupt");
    // Bad magic, unsupported type, trailing bytes.
    write_raw(tmp_path("magic.idx"), {1, 2, 8, 1, 0, 0, 0, 1, 9});
    expect_error([] { read_idx_gz(tmp_path("magic.idx")); }, "magic");
    write_raw(tmp_path("type.idx"), {0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0});
    expect_error([] { read_idx_gz(tmp_path("type.idx")); }, "not supported");
    write_raw(tmp_path("trail.idx"), {0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3});
    expect_error([] { read_idx_gz(tmp_path("trail.idx")); }, "after the data");
    EXPECT_THROW(write_idx_gz(tmp_path("x.gz"), {2, 2}, {1, 2, 3}), std::invalid_argument);
}

TEST(DatasetsFormats, FashionMnistFromDebian) {
    std::string p = std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz";
    if (access(p.c_str(), R_OK) != 0) {
        GTEST_SKIP() << "dataset-fashion-mnist not installed";
    }
    std::vector<int64_t> dims;
    ByteMatrix m = read_idx_gz(p, &dims);
    EXPECT_EQ(dims, (std::vector<int64_t>{10000, 28, 28}));
    ByteMatrix lab = read_idx_gz(std::string(kFashionMnistDir) + "/t10k-labels-idx1-ubyte.gz");
    EXPECT_EQ(lab.n, 10000);
    for (uint8_t v : lab.data) {
        EXPECT_LT(v, 10);
    }
}

TEST(DatasetsFormats, Hdf5AnnBenchmarksRoundTrip) {
    if (!hdf5_available()) {
        GTEST_SKIP() << "built without HDF5";
    }
    AnnBenchmarksData a;
    a.train = sample(30, 5);
    a.test = sample(4, 5);
    a.neighbors = IntMatrix(4, 3);
    a.distances = FloatMatrix(4, 3);
    for (int i = 0; i < 12; i++) {
        a.neighbors.data[i] = i;
        a.distances.data[i] = 0.25f * i;
    }
    a.distance = "angular";
    write_ann_benchmarks(tmp_path("a.hdf5"), a);
    AnnBenchmarksData b = read_ann_benchmarks(tmp_path("a.hdf5"));
    EXPECT_EQ(b.train.data, a.train.data);
    EXPECT_EQ(b.test.data, a.test.data);
    EXPECT_EQ(b.neighbors.data, a.neighbors.data);
    EXPECT_EQ(b.distances.data, a.distances.data);
    EXPECT_EQ(b.distance, "angular");
    // Row ranges through hyperslabs, and the "file:dataset" spelling.
    FloatMatrix part = read_vectors(tmp_path("a.hdf5") + ":train", 10, 4);
    ASSERT_EQ(part.n, 4);
    EXPECT_TRUE(std::equal(part.data.begin(), part.data.end(), a.train.row(10)));
    EXPECT_EQ(read_ids(tmp_path("a.hdf5")).data, a.neighbors.data);
    EXPECT_EQ(open_vectors(tmp_path("a.hdf5") + ":test")->ntotal(), 4);
    EXPECT_EQ(read_hdf5_attribute(tmp_path("a.hdf5"), "absent"), "");

    expect_error([] { read_hdf5_float(tmp_path("a.hdf5"), "nope"); }, "no such dataset");
    EXPECT_THROW(read_hdf5_float(tmp_path("a.hdf5"), "train", 28, 5), std::out_of_range);
    // Not HDF5 at all; a truncated HDF5 file.
    write_raw(tmp_path("junk.hdf5"), std::vector<uint8_t>(4096, 0xAB));
    expect_error([] { read_ann_benchmarks(tmp_path("junk.hdf5")); }, "HDF5");
    std::vector<uint8_t> raw = read_raw(tmp_path("a.hdf5"));
    write_raw(tmp_path("trunc.hdf5"), std::vector<uint8_t>(raw.begin(), raw.begin() + raw.size() / 2));
    EXPECT_ANY_THROW(read_ann_benchmarks(tmp_path("trunc.hdf5")));
    // Inconsistent content: neighbors for another number of queries.
    AnnBenchmarksData c = a;
    c.neighbors = IntMatrix(3, 3);
    write_ann_benchmarks(tmp_path("inc.hdf5"), c);
    expect_error([] { read_ann_benchmarks(tmp_path("inc.hdf5")); }, "inconsistent");
}

TEST(DatasetsFormats, SharedSiftsmallShapes) {
    std::string base = shared("siftsmall/siftsmall_base.fvecs");
    if (access(base.c_str(), R_OK) != 0) {
        GTEST_SKIP() << "../shared/datasets not present";
    }
    auto src = open_vectors(base);
    EXPECT_EQ(src->ntotal(), 10000);
    EXPECT_EQ(src->d(), 128);
    IntMatrix gt = read_ids(shared("siftsmall/siftsmall_groundtruth.ivecs"));
    EXPECT_EQ(gt.n, 100);
    EXPECT_EQ(gt.d, 100);
    // The .bvecs and .fvecs copies of bigann10k hold the same vectors.
    FloatMatrix a = read_vectors(shared("bigann10k/bigann10k_base.bvecs"), 9000, 1000);
    FloatMatrix b = read_vectors(shared("bigann10k/bigann10k_base.fvecs"), 9000, 1000);
    EXPECT_EQ(a.data, b.data);
}

TEST(DatasetsFormats, WritersValidate) {
    FloatMatrix x = sample(2, 3); // has non-integer values
    EXPECT_THROW(write_vectors(tmp_path("x.bvecs"), x), std::invalid_argument);
    EXPECT_THROW(write_vectors(tmp_path("x.txt"), x), std::invalid_argument);
    EXPECT_THROW(write_fvecs(tmp_path("x.fvecs"), 1, 0, x.data.data()), std::invalid_argument);
    EXPECT_THROW(write_fvecs("/nonexistent_dir/x.fvecs", 2, 3, x.data.data()), std::runtime_error);
    EXPECT_THROW(open_vectors(tmp_path("x.txt")), std::invalid_argument);
}
