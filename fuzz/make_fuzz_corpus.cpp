// Writes the seed corpus of every fuzz target: small slices of the real data sets
// in ../shared/datasets and Fashion-MNIST, small files written by our own
// writers, and hand-made edge cases (empty, truncated, lying headers, NaN).
// Usage: make_fuzz_corpus OUT_DIR SHARED_DATASETS_DIR [FASHION_MNIST_DIR]
// The output is committed under fuzz/corpus/; rerun only to refresh it.
#include <datasets/BinFile.h>
#include <datasets/Hdf5File.h>
#include <datasets/IdxFile.h>
#include <datasets/VecsFile.h>

#include <faiss_gmm/gmm_io.h>
#include <faiss_gmm/gmm_index_factory.h>

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "seed_index.h"

using namespace faiss_gmm;
using Bytes = std::vector<uint8_t>;

namespace {

std::string out_dir;

Bytes slurp(const std::string& path, size_t max_bytes) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read " + path);
    Bytes b(max_bytes);
    f.read(reinterpret_cast<char*>(b.data()), std::streamsize(max_bytes));
    b.resize(size_t(f.gcount()));
    return b;
}

void put(const std::string& target, const std::string& name, const Bytes& b) {
    const std::string dir = out_dir + "/" + target;
    mkdir(dir.c_str(), 0755);
    FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write " + dir + "/" + name);
    if (!b.empty()) std::fwrite(b.data(), 1, b.size(), f);
    std::fclose(f);
}

template <class T>
void append(Bytes& b, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
}

Bytes be32(uint32_t v) { return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)}; }

Bytes gzip(const Bytes& raw) {
    const std::string tmp = out_dir + "/.tmp.gz";
    gzFile gz = gzopen(tmp.c_str(), "wb9");
    if (!raw.empty()) gzwrite(gz, raw.data(), unsigned(raw.size()));
    gzclose(gz);
    Bytes b = slurp(tmp, 1 << 20);
    std::remove(tmp.c_str());
    return b;
}

Bytes file_bytes(const std::string& path) {
    Bytes b = slurp(path, 1 << 20);
    std::remove(path.c_str());
    return b;
}

void vecs_seeds(const std::string& shared) {
    // Real records: 3 SIFT rows (516 bytes each), 5 BIGANN uint8 rows, 2 ground-truth rows, 4 GloVe rows.
    put("vecs", "siftsmall_base_3rows.fvecs", slurp(shared + "/siftsmall/siftsmall_base.fvecs", 3 * 516));
    put("vecs", "bigann10k_base_5rows.bvecs", slurp(shared + "/bigann10k/bigann10k_base.bvecs", 5 * 132));
    put("vecs", "siftsmall_gt_2rows.ivecs", slurp(shared + "/siftsmall/siftsmall_groundtruth.ivecs", 2 * 404));
    put("vecs", "glove25_4rows.fvecs", slurp(shared + "/glove25_tw12k/glove25_base.fvecs", 4 * 104));
    // Hand-made.
    put("vecs", "empty", {});
    put("vecs", "short_header", {1, 0, 0});
    Bytes b;
    append<int32_t>(b, 0);
    put("vecs", "d_zero", b);
    b.clear();
    append<int32_t>(b, -4);
    append<float>(b, 1.0f);
    put("vecs", "d_negative", b);
    b.clear();
    append<int32_t>(b, 0x7fffffff);
    append<float>(b, 1.0f);
    put("vecs", "d_huge", b);
    b.clear();
    for (int r = 0; r < 3; r++) {
        append<int32_t>(b, 2);
        append<float>(b, float(r));
        append<float>(b, r == 1 ? NAN : (r == 2 ? INFINITY : 0.5f));
    }
    put("vecs", "nan_inf_d2", b);
    b.clear();
    for (int r = 0; r < 3; r++) {
        append<int32_t>(b, r == 1 ? 3 : 2); // middle record lies about d
        append<float>(b, 1.0f);
        append<float>(b, 2.0f);
    }
    put("vecs", "inconsistent_middle_d", b);
    b.pop_back();
    put("vecs", "truncated_record", b);
}

void bin_seeds() {
    std::vector<float> x(3 * 4);
    for (size_t i = 0; i < x.size(); i++) x[i] = float(i) * 0.5f;
    const std::string tmp = out_dir + "/.tmp";
    datasets::write_fbin(tmp + ".fbin", 3, 4, x.data());
    put("bin", "small.fbin", file_bytes(tmp + ".fbin"));
    std::vector<uint8_t> u(5 * 3);
    for (size_t i = 0; i < u.size(); i++) u[i] = uint8_t(i * 17);
    datasets::write_u8bin(tmp + ".u8bin", 5, 3, u.data());
    put("bin", "small.u8bin", file_bytes(tmp + ".u8bin"));
    std::vector<int32_t> ids = {0, 1, 2, 2, 1, 0};
    datasets::write_ibin(tmp + ".ibin", 2, 3, ids.data());
    put("bin", "small.ibin", file_bytes(tmp + ".ibin"));
    datasets::IntMatrix gi(2, 3);
    gi.data = ids;
    datasets::FloatMatrix gd(2, 3);
    gd.data = {0.f, 1.f, 2.f, 0.5f, 1.5f, 2.5f};
    datasets::write_bin_groundtruth(tmp + ".bin", gi, gd);
    put("bin", "groundtruth.bin", file_bytes(tmp + ".bin"));
    put("bin", "empty", {});
    Bytes b;
    append<int32_t>(b, 1000000000); // lying n
    append<int32_t>(b, 1000);
    append<float>(b, 1.0f);
    put("bin", "lying_header", b);
    b.clear();
    append<int32_t>(b, -1);
    append<int32_t>(b, 4);
    put("bin", "negative_n", b);
    b.clear();
    append<int32_t>(b, 2);
    append<int32_t>(b, 0);
    put("bin", "d_zero", b);
}

void idx_seeds(const std::string& fmnist) {
    // Real: the first 3 Fashion-MNIST test images and 3 labels (re-gzipped slices).
    if (!fmnist.empty()) {
        std::vector<int64_t> dims;
        const std::string tmp = out_dir + "/.tmp.idx.gz";
        datasets::ByteMatrix img = datasets::read_idx_gz(fmnist + "/t10k-images-idx3-ubyte.gz", &dims);
        datasets::write_idx_gz(tmp, {3, 28, 28}, std::vector<uint8_t>(img.data.begin(), img.data.begin() + 3 * 784));
        put("idx", "fmnist_3images.idx.gz", file_bytes(tmp));
        datasets::ByteMatrix lab = datasets::read_idx_gz(fmnist + "/t10k-labels-idx1-ubyte.gz");
        datasets::write_idx_gz(tmp, {3}, std::vector<uint8_t>(lab.data.begin(), lab.data.begin() + 3));
        put("idx", "fmnist_3labels.idx.gz", file_bytes(tmp));
    }
    Bytes raw = {0, 0, 0x08, 2};
    for (uint8_t v : be32(2)) raw.push_back(v);
    for (uint8_t v : be32(3)) raw.push_back(v);
    for (int i = 0; i < 6; i++) raw.push_back(uint8_t(i));
    put("idx", "plain_2x3", raw); // uncompressed IDX
    put("idx", "gz_2x3", gzip(raw));
    Bytes bad = raw;
    bad[0] = 1;
    put("idx", "bad_magic", gzip(bad));
    bad = raw;
    bad[2] = 0x0D; // float data: unsupported
    put("idx", "float_type", gzip(bad));
    Bytes huge = {0, 0, 0x08, 3};
    for (int i = 0; i < 3; i++)
        for (uint8_t v : be32(0x7fffffff)) huge.push_back(v);
    put("idx", "huge_dims", gzip(huge));
    Bytes trunc(raw.begin(), raw.end() - 2);
    put("idx", "truncated", gzip(trunc));
    put("idx", "empty", {});
}

void hdf5_seeds() {
    if (!datasets::hdf5_available()) return;
    datasets::AnnBenchmarksData d;
    d.train = datasets::FloatMatrix(4, 3);
    for (size_t i = 0; i < d.train.data.size(); i++) d.train.data[i] = float(i);
    d.test = datasets::FloatMatrix(2, 3);
    d.neighbors = datasets::IntMatrix(2, 2);
    d.neighbors.data = {0, 1, 2, 3};
    d.distances = datasets::FloatMatrix(2, 2);
    d.distance = "euclidean";
    const std::string tmp = out_dir + "/.tmp.hdf5";
    datasets::write_ann_benchmarks(tmp, d);
    put("hdf5", "small_ann_benchmarks.hdf5", file_bytes(tmp));
    put("hdf5", "empty", {});
}

void index_seeds() {
    // Trained indexes of a few kinds (small d and nlist so seeds stay small).
    std::vector<float> x(400 * 8);
    std::mt19937 rng(3);
    std::normal_distribution<float> g;
    for (auto& v : x) v = g(rng);
    for (const char* desc : {"IVF4_GMM,Flat", "IVF4_GMMdiag,SQ8", "IVF4_GMM,PQ2x4"}) {
        std::unique_ptr<faiss::Index> index(gmm_index_factory(8, desc));
        index->train(400, x.data());
        index->add(20, x.data());
        std::string name = desc;
        for (char& c : name)
            if (c == ',') c = '_';
        put("gmm_index", name, serialize_gmm_index(index.get()));
    }
    auto seed = fuzz::seed_index();
    const Bytes full = serialize_gmm_index(seed.get());
    const Bytes prefix = fuzz::faiss_bytes(seed.get());
    put("gmm_index", "seed_index_ivf8", full);
    put("gmm_index", "plain_faiss_flat", prefix.size() > 0 ? fuzz::faiss_bytes(find_ivf(seed.get())->quantizer) : prefix);
    put("gmm_index", "truncated_in_trailer", Bytes(full.begin(), full.end() - 40));
    put("gmm_index", "truncated_in_faiss_part", Bytes(full.begin(), full.begin() + 60));
    // Trailer seeds: what follows the fixed FAISS part of seed_index().
    put("gmm_trailer", "spherical", Bytes(full.begin() + long(prefix.size()), full.end()));
    auto diag = fuzz::seed_index(CovarianceType::Diagonal);
    const Bytes full_diag = serialize_gmm_index(diag.get());
    put("gmm_trailer", "diagonal",
        Bytes(full_diag.begin() + long(fuzz::faiss_bytes(diag.get()).size()), full_diag.end()));
    auto full_cov = fuzz::seed_index(CovarianceType::Full); // trailer version 5 (issue 17)
    const Bytes full_full = serialize_gmm_index(full_cov.get());
    put("gmm_trailer", "full", Bytes(full_full.begin() + long(fuzz::faiss_bytes(full_cov.get()).size()), full_full.end()));
    // The spill trailer (IndexIVFSpill) follows the GMM trailer: a seed with both,
    // when the spill index's FAISS part is the same bytes as seed_index()'s.
    auto spill = fuzz::seed_index(CovarianceType::Spherical, true);
    const Bytes full_spill = serialize_gmm_index(spill.get());
    put("gmm_index", "seed_index_ivf8_spill", full_spill);
    if (full_spill.size() > prefix.size() && std::equal(prefix.begin(), prefix.end(), full_spill.begin())) {
        put("gmm_trailer", "spherical_spill", Bytes(full_spill.begin() + long(prefix.size()), full_spill.end()));
    } else {
        std::cerr << "note: the spill index's FAISS part differs from seed_index()'s: no spill trailer seed\n";
    }
    // Probing settings set (the fields of trailer versions 2 and 3 non-zero: probe_variance_weight at
    // byte 96 and probe_variance_power at 104 of the trailer): the reader's refusal of the removed rankings.
    Bytes probe(full.begin() + long(prefix.size()), full.end());
    if (probe.size() >= 112) {
        const double w = 0.25, a = 0.5;
        std::memcpy(probe.data() + 96, &w, 8);
        std::memcpy(probe.data() + 104, &a, 8);
        put("gmm_trailer", "spherical_probe", probe);
    }
    Bytes lying(full.begin() + long(prefix.size()), full.begin() + long(prefix.size()) + 8);
    append<int64_t>(lying, int64_t(1) << 40); // K
    append<int64_t>(lying, int64_t(1) << 20); // d
    put("gmm_trailer", "lying_sizes", lying);
    put("gmm_trailer", "empty", {});
}

/// Issue 13.3: seeds of the older format (no checksum footer: the legacy reader)
/// and files damaged where the footer is (its markers, its CRC).
void checksum_seeds() {
    auto seed = fuzz::seed_index();
    const Bytes prefix = fuzz::faiss_bytes(seed.get());
    for (uint32_t v : {1u, 3u}) {
        const Bytes old = detail::serialize_gmm_index_old_format(seed.get(), v);
        put("gmm_trailer", "old_v" + std::to_string(v) + "_spherical", Bytes(old.begin() + long(prefix.size()), old.end()));
    }
    auto spill = fuzz::seed_index(CovarianceType::Spherical, true);
    const Bytes old_spill = detail::serialize_gmm_index_old_format(spill.get(), 3);
    put("gmm_index", "old_v3_seed_index_ivf8_spill", old_spill);
    if (std::equal(prefix.begin(), prefix.end(), old_spill.begin())) {
        put("gmm_trailer", "old_v3_spherical_spill", Bytes(old_spill.begin() + long(prefix.size()), old_spill.end()));
    }
    const Bytes full = serialize_gmm_index(seed.get());
    Bytes b = full;
    b[b.size() - 24] ^= 1; // footer magic
    put("gmm_index", "footer_bad_magic", b);
    b = full;
    b[b.size() - 6] ^= 1; // CRC
    put("gmm_index", "footer_bad_crc", b);
    b = full;
    b[prefix.size() / 2] ^= 1; // FAISS part
    put("gmm_index", "damaged_faiss_part", b);
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: make_fuzz_corpus OUT_DIR SHARED_DATASETS_DIR [FASHION_MNIST_DIR]\n";
        return 2;
    }
    out_dir = argv[1];
    mkdir(out_dir.c_str(), 0755);
    vecs_seeds(argv[2]);
    bin_seeds();
    idx_seeds(argc > 3 ? argv[3] : "");
    hdf5_seeds();
    index_seeds();
    checksum_seeds();
    return 0;
}
