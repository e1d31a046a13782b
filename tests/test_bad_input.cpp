// The bad-input matrix at the API boundary (issue 7): every malformed input gives
// a clear exception naming the problem, before any large allocation and before
// FAISS (whose asserts abort) sees it. Each case checks the exception type and a
// piece of its message.
#include <gtest/gtest.h>

#include <faiss/index_io.h>
#include <faiss/IndexIVF.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "datasets/BinFile.h"
#include "datasets/Hdf5File.h"
#include "datasets/IdxFile.h"
#include "datasets/VecsFile.h"
#include "faiss_gmm/Crc32c.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/GmmTrainer.h"
#include "faiss_gmm/VectorSource.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/gmm_io.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using faiss_gmm::testing::expect_error;

namespace {

using Bytes = std::vector<uint8_t>;

class TempDir {
  public:
    TempDir() {
        std::string t = ::testing::TempDir() + "faiss-gmm-bad-input-XXXXXX";
        if (!mkdtemp(t.data())) throw std::runtime_error("mkdtemp failed");
        dir_ = t;
    }
    ~TempDir() { std::system(("rm -rf '" + dir_ + "'").c_str()); }
    std::string write(const std::string& name, const Bytes& b) const {
        const std::string p = dir_ + "/" + name;
        std::ofstream f(p, std::ios::binary);
        f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
        return p;
    }
    std::string path(const std::string& name) const { return dir_ + "/" + name; }

  private:
    std::string dir_;
};

template <class T>
void append(Bytes& b, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
}

/// n records of a vecs file with dimension d, values from val(i, j).
template <class T>
Bytes vecs(int n, int32_t d, T val = T(1)) {
    Bytes b;
    for (int i = 0; i < n; i++) {
        append<int32_t>(b, d);
        for (int j = 0; j < d; j++) append<T>(b, val);
    }
    return b;
}

Bytes be32(uint32_t v) { return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)}; }

} // namespace

// ---------------------------------------------------------------- training

TEST(BadInput, TrainerNonFiniteAnywhere) {
    const int64_t n = 200, d = 6;
    const std::vector<float> x = clustered_data(n, d, 3, 1.0f, 1);
    // First and last entries, a middle one, both element types of NaN/Inf.
    for (int64_t pos : {int64_t(0), n * d - 1, 77 * d + 5}) {
        for (float bad : {NAN, INFINITY, -INFINITY}) {
            std::vector<float> y = x;
            y[size_t(pos)] = bad;
            GmmTrainer t;
            expect_error<std::invalid_argument>([&] { t.fit(n, d, y.data(), 3); },
                                                "row " + std::to_string(pos / d), "NaN/Inf at " + std::to_string(pos));
            // The same through the FAISS entry point: refused before FAISS sees it.
            std::unique_ptr<faiss::Index> index(gmm_index_factory(int(d), "IVF3_GMM,Flat"));
            expect_error<std::invalid_argument>([&] { index->train(n, y.data()); }, "row " + std::to_string(pos / d),
                                                "index->train with NaN/Inf");
        }
    }
}

TEST(BadInput, TrainerSizes) {
    const std::vector<float> x = clustered_data(50, 4, 2, 1.0f, 2);
    GmmTrainer t;
    expect_error<std::invalid_argument>([&] { t.fit(50, 4, x.data(), 0); }, "K >= 1", "K = 0");
    expect_error<std::invalid_argument>([&] { t.fit(50, 4, x.data(), -3); }, "K >= 1", "K < 0");
    expect_error<std::invalid_argument>([&] { t.fit(50, 4, x.data(), 51); }, "only N = 50", "K > N");
    expect_error<std::invalid_argument>([&] { t.fit(0, 4, x.data(), 1); }, "N = 0", "N = 0");
    expect_error<std::invalid_argument>([&] { t.fit(50, 0, x.data(), 1); }, "d >= 1", "d = 0");
    expect_error<std::invalid_argument>([&] { GmmQuantizer q(4, 0); }, "nlist must be >= 1", "nlist = 0");
    // IVF training with fewer rows than lists: our K > N check, not a FAISS assert.
    std::unique_ptr<faiss::Index> index(gmm_index_factory(4, "IVF64_GMM,Flat"));
    expect_error<std::invalid_argument>([&] { index->train(50, x.data()); }, "only N = 50", "nlist > N via FAISS");
}

TEST(BadInput, TrainerDimensionMismatch) {
    const std::vector<float> x = clustered_data(100, 4, 2, 1.0f, 3);
    GmmParams p;
    p.init = InitMethod::Given;
    GmmTrainer t(p);
    GmmModel wrong_d(2, 5, CovarianceType::Spherical);
    expect_error<std::invalid_argument>([&] { t.fit(100, 4, x.data(), 2, &wrong_d); }, "d = 5", "initial model d");
    GmmModel wrong_k(3, 4, CovarianceType::Spherical);
    expect_error<std::invalid_argument>([&] { t.fit(100, 4, x.data(), 2, &wrong_k); }, "K = 3", "initial model K");
    GmmQuantizer q(4, 2);
    GmmModel m(2, 3, CovarianceType::Spherical);
    expect_error<std::invalid_argument>([&] { q.set_model(m); }, "d = 3", "set_model d mismatch");
}

// ---------------------------------------------------------------- vector files

TEST(BadInput, VecsFiles) {
    TempDir tmp;
    expect_error<std::runtime_error>([&] { VecsFileSource s(tmp.path("missing.fvecs")); }, "cannot open", "missing file");
    expect_error<std::runtime_error>([&] { VecsFileSource s(tmp.write("e.fvecs", {})); }, "empty", "empty file");
    expect_error<std::runtime_error>([&] { VecsFileSource s(tmp.write("s.fvecs", {4, 0})); }, "shorter than one record",
                                     "2-byte file");
    expect_error<std::runtime_error>([&] { VecsFileSource s(tmp.write("z.fvecs", vecs<float>(2, 0))); },
                                     "invalid dimension 0", "d = 0");
    Bytes neg;
    append<int32_t>(neg, -7);
    append<float>(neg, 1.0f);
    expect_error<std::runtime_error>([&] { VecsFileSource s(tmp.write("n.fvecs", neg)); }, "invalid dimension -7",
                                     "negative d");
    Bytes huge;
    append<int32_t>(huge, 0x7fffffff);
    append<float>(huge, 1.0f);
    expect_error<std::runtime_error>([&] { VecsFileSource s(tmp.write("h.fvecs", huge)); }, "invalid dimension 2147483647",
                                     "huge d (no allocation)");
    Bytes trunc = vecs<float>(3, 4);
    trunc.resize(trunc.size() - 3);
    expect_error<std::runtime_error>([&] { VecsFileSource s(tmp.write("t.fvecs", trunc)); }, "size", "truncated record");
    // A middle record with another d: found when that row is read.
    Bytes mid = vecs<float>(3, 2);
    mid[12] = 3;
    VecsFileSource src(tmp.write("m.fvecs", mid));
    std::vector<uint8_t> scratch;
    expect_error<std::runtime_error>([&] { src.read(0, 3, scratch); }, "record 1", "inconsistent middle record");
    expect_error<std::runtime_error>([&] { datasets::read_fvecs(tmp.path("m.fvecs")); }, "record 1",
                                     "read_fvecs inconsistent record");
    expect_error<std::out_of_range>([&] { datasets::read_fvecs(tmp.write("ok.fvecs", vecs<float>(3, 2)), 2, 5); },
                                    "out of range", "row range past the end");
    // NaN inside a file reaches the trainer's finite check.
    Bytes nan = vecs<float>(20, 2, 0.5f);
    const float nan_value = NAN;
    std::memcpy(nan.data() + 7 * 12 + 8, &nan_value, 4); // row 7, column 1
    VecsFileSource nsrc(tmp.write("nan.fvecs", nan));
    GmmTrainer t;
    expect_error<std::invalid_argument>([&] { t.fit(nsrc, 2); }, "row 7", "NaN in an .fvecs file");
    // ivecs.
    expect_error<std::runtime_error>([&] { datasets::read_ivecs(tmp.write("t.ivecs", trunc)); }, "truncated",
                                     "truncated .ivecs");
    expect_error<std::runtime_error>([&] { datasets::read_ivecs(tmp.write("h.ivecs", huge)); }, "dimension 2147483647",
                                     "huge d .ivecs");
}

TEST(BadInput, Uint8DataWithAFloatReader) {
    TempDir tmp;
    // A .bvecs file (d = 4, records of 8 bytes) read as float32: the 20-byte
    // float record does not divide the size.
    const Bytes b = vecs<uint8_t>(5, 4, uint8_t(200));
    const std::string as_f = tmp.write("bytes.fvecs", b);
    expect_error<std::runtime_error>([&] { VecsFileSource s(as_f); }, "wrong element type", ".bvecs bytes as .fvecs");
    expect_error<std::runtime_error>([&] { VecsFileSource s(tmp.write("bytes2.bvecs", b), DataType::Float32); },
                                     "wrong element type", ".bvecs with an explicit float type");
    // The real BIGANN file, where present.
    const std::string bigann = faiss_gmm::testing::shared_dataset("bigann10k/bigann10k_base.bvecs");
    if (std::ifstream(bigann).good()) {
        expect_error<std::runtime_error>([&] { VecsFileSource s(bigann, DataType::Float32); }, "wrong element type",
                                         "bigann10k .bvecs as float");
    }
    // .u8bin bytes as .fbin: header n * d * 4 does not match the file size.
    Bytes u8;
    append<int32_t>(u8, 6);
    append<int32_t>(u8, 4);
    u8.resize(u8.size() + 24, 7);
    expect_error<std::runtime_error>([&] { datasets::BinFileSource s(tmp.write("u.fbin", u8)); }, "header says",
                                     ".u8bin bytes as .fbin");
    expect_error<std::invalid_argument>([&] { VecsFileSource s(tmp.write("x.txt", b)); }, "element type",
                                        "unknown extension");
}

TEST(BadInput, BinFilesLyingHeaders) {
    TempDir tmp;
    expect_error<std::runtime_error>([&] { datasets::BinFileSource s(tmp.write("e.fbin", {})); }, "truncated",
                                     "empty .fbin");
    for (auto nd : {std::pair<int32_t, int32_t>{-1, 4}, {4, -1}, {0x7fffffff, 0x7fffffff}, {2, 0}}) {
        Bytes h;
        append<int32_t>(h, nd.first);
        append<int32_t>(h, nd.second);
        append<float>(h, 1.0f);
        const std::string what = "n = " + std::to_string(nd.first) + ", d = " + std::to_string(nd.second);
        expect_error<std::runtime_error>([&] { datasets::BinFileSource s(tmp.write("h.fbin", h)); }, "header", what);
        expect_error<std::runtime_error>([&] { datasets::read_ibin(tmp.write("h.ibin", h)); }, "header", what + " .ibin");
    }
    // A header claiming 1000 rows of d = 4 over a 4-byte body: an error, or with
    // allow_prefix (a partial download) zero whole rows, never 1000 rows.
    Bytes lie;
    append<int32_t>(lie, 1000);
    append<int32_t>(lie, 4);
    append<float>(lie, 1.0f);
    const std::string lie_path = tmp.write("lie.fbin", lie);
    expect_error<std::runtime_error>([&] { datasets::BinFileSource s(lie_path); }, "header says", "lying n");
    datasets::BinFileSource prefix(lie_path, true);
    EXPECT_EQ(prefix.ntotal(), 0);
    EXPECT_EQ(prefix.header_n(), 1000);
    Bytes gt;
    append<int32_t>(gt, 1 << 30);
    append<int32_t>(gt, 100);
    datasets::IntMatrix ids;
    datasets::FloatMatrix dist;
    expect_error<std::runtime_error>([&] { datasets::read_bin_groundtruth(tmp.write("g.bin", gt), &ids, &dist); },
                                     "ground-truth", "lying ground-truth header");
}

TEST(BadInput, IdxFiles) {
    TempDir tmp;
    auto idx = [](uint8_t type, std::vector<uint32_t> dims, size_t payload) {
        Bytes b = {0, 0, type, uint8_t(dims.size())};
        for (uint32_t v : dims)
            for (uint8_t c : be32(v)) b.push_back(c);
        b.resize(b.size() + payload, 1);
        return b;
    };
    expect_error<std::runtime_error>([&] { datasets::read_idx_gz(tmp.write("e.idx", {})); }, "truncated", "empty");
    Bytes bad = idx(8, {2, 3}, 6);
    bad[1] = 9;
    expect_error<std::runtime_error>([&] { datasets::read_idx_gz(tmp.write("m.idx", bad)); }, "bad magic", "bad magic");
    expect_error<std::runtime_error>([&] { datasets::read_idx_gz(tmp.write("f.idx", idx(0x0D, {2, 3}, 24))); },
                                     "element type", "float IDX");
    expect_error<std::runtime_error>([&] { datasets::read_idx_gz(tmp.write("z.idx", idx(8, {}, 0))); },
                                     "0 dimensions", "0 dimensions");
    expect_error<std::runtime_error>(
            [&] { datasets::read_idx_gz(tmp.write("h.idx", idx(8, {0x7fffffff, 0x7fffffff, 0x7fffffff}, 16))); },
            "corrupt IDX header", "huge dimensions (no allocation)");
    expect_error<std::runtime_error>([&] { datasets::read_idx_gz(tmp.write("t.idx", idx(8, {2, 3}, 4))); }, "truncated",
                                     "truncated data");
    expect_error<std::runtime_error>([&] { datasets::read_idx_gz(tmp.write("x.idx", idx(8, {2, 3}, 9))); },
                                     "bytes after", "trailing bytes");
    expect_error<std::runtime_error>([&] { datasets::read_idx_gz(tmp.write("c.idx.gz", {0x1f, 0x8b, 8, 0, 1, 2, 3})); },
                                     "truncated", "cut gzip header");
    Bytes bad_deflate = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    bad_deflate.resize(bad_deflate.size() + 32, 0xff); // an invalid deflate block type
    expect_error<std::runtime_error>([&] { datasets::read_idx_gz(tmp.write("d.idx.gz", bad_deflate)); },
                                     "corrupt gzip stream", "corrupt deflate data");
}

// Regressions of fuzz findings (inputs in fuzz/regressions/, replayed by scripts/test_fuzz.sh).
TEST(BadInput, FuzzRegressions) {
    TempDir tmp;
    // fuzz_bin: an .ibin / ground-truth header with n = 0 gave memcpy a null
    // pointer (the empty matrix's data()): undefined behaviour. Now an empty result.
    Bytes zero_rows;
    append<int32_t>(zero_rows, 0);
    append<int32_t>(zero_rows, 2);
    datasets::IntMatrix ids = datasets::read_ibin(tmp.write("z.ibin", zero_rows));
    EXPECT_EQ(ids.n, 0);
    EXPECT_EQ(ids.d, 2);
    datasets::FloatMatrix dist;
    datasets::read_bin_groundtruth(tmp.write("z.bin", zero_rows), &ids, &dist);
    EXPECT_EQ(ids.n, 0);
    EXPECT_EQ(dist.n, 0);
    // fuzz_idx: 0 items of 8 * 2^31-1 * ... bytes: the row size overflowed int64
    // (the total, 0, passed the bound). Now refused as a corrupt header.
    Bytes idx = {0, 0, 8, 4};
    for (uint32_t v : {0u, 0x7fffffffu, 0x7fffffffu, 0x7fffffffu})
        for (uint8_t c : be32(v)) idx.push_back(c);
    expect_error<std::runtime_error>([&] { datasets::read_idx_gz(tmp.write("o.idx", idx)); }, "corrupt IDX header",
                                     "0 items, huge row size");
}

TEST(BadInput, Hdf5Files) {
    if (!datasets::hdf5_available()) GTEST_SKIP() << "this build has no HDF5";
    TempDir tmp;
    expect_error<std::runtime_error>([&] { datasets::read_ann_benchmarks(tmp.path("missing.hdf5")); }, "no such file",
                                     "missing file");
    expect_error<std::runtime_error>([&] { datasets::read_ann_benchmarks(tmp.write("e.hdf5", {})); },
                                     "not a readable HDF5 file", "empty file");
    expect_error<std::runtime_error>([&] { datasets::read_ann_benchmarks(tmp.write("g.hdf5", vecs<float>(10, 4))); },
                                     "not a readable HDF5 file", "an .fvecs file named .hdf5");
    datasets::AnnBenchmarksData d;
    d.train = datasets::FloatMatrix(4, 3);
    d.test = datasets::FloatMatrix(2, 3);
    d.distance = "euclidean";
    const std::string ok = tmp.path("ok.hdf5");
    datasets::write_ann_benchmarks(ok, d);
    expect_error<std::runtime_error>([&] { datasets::read_hdf5_float(ok, "nope"); }, "no such dataset",
                                     "missing dataset");
    expect_error<std::out_of_range>([&] { datasets::read_hdf5_float(ok, "train", 3, 5); }, "out of range",
                                    "row range past the end");
}

// ---------------------------------------------------------------- indexes

namespace {

Bytes trained_index_bytes() {
    const std::vector<float> x = clustered_data(600, 8, 4, 1.0f, 4);
    std::unique_ptr<faiss::Index> index(gmm_index_factory(8, "IVF4_GMM,Flat"));
    index->train(600, x.data());
    index->add(100, x.data());
    return serialize_gmm_index(index.get());
}

size_t faiss_part_size(const Bytes& full) {
    std::unique_ptr<faiss::Index> index(deserialize_gmm_index(full.data(), full.size()));
    faiss::VectorIOWriter w;
    faiss::write_index(index.get(), &w); // the GmmQuantizer is written as the flat quantizer it is
    return w.data.size();
}

} // namespace

TEST(BadInput, CorruptIndexFiles) {
    const Bytes full = trained_index_bytes();
    const size_t prefix = faiss_part_size(full);
    ASSERT_LT(prefix, full.size()) << "the GMM trailer is missing";
    auto load = [](const Bytes& b) { std::unique_ptr<faiss::Index> i(deserialize_gmm_index(b.data(), b.size())); };
    expect_error<std::runtime_error>([&] { load({}); }, "empty", "empty buffer");
    expect_error<std::runtime_error>([&] { load(Bytes(full.begin(), full.begin() + 3)); }, "not a readable FAISS index",
                                     "3 bytes");
    expect_error<std::runtime_error>([&] { load(Bytes(full.begin(), full.begin() + long(prefix / 2))); },
                                     "not a readable FAISS index", "truncated in the FAISS part");
    Bytes garbage(4096);
    for (size_t i = 0; i < garbage.size(); i++) garbage[i] = uint8_t(i * 131 + 7);
    expect_error<std::runtime_error>([&] { load(garbage); }, "not a readable FAISS index", "garbage");
    // Trailer: truncated at every field boundary region, bad magic, version, end marker.
    for (size_t cut : {size_t(2), size_t(9), size_t(30), size_t(100)}) {
        expect_error<std::runtime_error>([&] { load(Bytes(full.begin(), full.begin() + long(prefix + cut))); },
                                         "truncated", "trailer cut at " + std::to_string(cut));
    }
    Bytes b = full;
    b[prefix] ^= 0xff;
    expect_error<std::runtime_error>([&] { load(b); }, "bad magic", "trailer magic");
    b = full;
    b[prefix + 4] = 99;
    expect_error<std::runtime_error>([&] { load(b); }, "version 99", "trailer version");
    b = full;
    b.back() ^= 0xff;
    expect_error<std::runtime_error>([&] { load(b); }, "end marker", "end marker");
    // Lying K (2^40) in the trailer: refused before any allocation.
    b = full;
    const int64_t big = int64_t(1) << 40;
    std::memcpy(b.data() + prefix + 8, &big, 8);
    expect_error<std::runtime_error>([&] { load(b); }, "implausible K", "huge K");
    const int64_t neg = -5;
    std::memcpy(b.data() + prefix + 8, &neg, 8);
    expect_error<std::runtime_error>([&] { load(b); }, "implausible K", "negative K");
    // A trailer whose means differ from the quantizer's centroids: find the
    // means in the trailer (they also sit in the FAISS part, before `prefix`).
    {
        std::unique_ptr<faiss::Index> index(deserialize_gmm_index(full.data(), full.size()));
        const GmmQuantizer* q = find_gmm_quantizer(index.get());
        ASSERT_NE(q, nullptr);
        const auto* m0 = reinterpret_cast<const uint8_t*>(q->model.means.data());
        const size_t nbytes = q->model.means.size() * sizeof(float);
        auto it = std::search(full.begin() + long(prefix), full.end(), m0, m0 + nbytes);
        ASSERT_NE(it, full.end()) << "means not found in the trailer";
        b = full;
        b[size_t(it - full.begin()) + 1] ^= 0x10;
        // Refused by the checksum first; with a new checksum (a consistent file
        // that lies), by the comparison with the quantizer's centroids.
        expect_error<std::runtime_error>([&] { load(b); }, "checksum mismatch", "means changed, old checksum");
        const uint32_t crc = crc32c_extend(0, b.data(), b.size() - 8);
        std::memcpy(b.data() + b.size() - 8, &crc, 4);
        expect_error<std::runtime_error>([&] { load(b); }, "means differ", "means changed in the trailer");
    }
    // Files: missing, empty, truncated.
    TempDir tmp;
    expect_error<std::runtime_error>([&] { delete read_gmm_index(tmp.path("missing.index")); }, "cannot open",
                                     "missing index file");
    expect_error<std::runtime_error>([&] { delete read_gmm_index(tmp.write("e.index", {})); }, "empty",
                                     "empty index file");
    expect_error<std::runtime_error>(
            [&] { delete read_gmm_index(tmp.write("t.index", Bytes(full.begin(), full.end() - 10))); }, "truncated",
            "truncated index file");
}

TEST(BadInput, UnsupportedFactoryStrings) {
    for (const char* s : {"IVF16_GMM,Foo", "IVF_GMM,Flat", "IVFx_GMM,Flat", "IVF16_GMM,IVF8_GMM,Flat", "IVF16_GMMtied,Flat"}) {
        expect_error<std::invalid_argument>([&] { delete gmm_index_factory(8, s); }, "gmm_index_factory", s);
    }
    expect_error<std::invalid_argument>([&] { delete gmm_index_factory(8, "IVF16,Flat"); }, "gmm_index_factory",
                                        "no GMM token");
    expect_error<std::invalid_argument>([&] { delete gmm_index_factory(8, "HNSW32"); }, "gmm_index_factory",
                                        "not IVF");
    expect_error<std::invalid_argument>([&] { delete gmm_index_factory(0, "IVF16_GMM,Flat"); }, "d must be >= 1", "d = 0");
    expect_error<std::invalid_argument>(
            [&] { delete gmm_index_factory(8, "IVF16_GMM,Flat", faiss::METRIC_INNER_PRODUCT); }, "METRIC_L2",
            "inner product");
}
