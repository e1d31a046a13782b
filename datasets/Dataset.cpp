#include "Dataset.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "BinFile.h"
#include "Hdf5File.h"
#include "IdxFile.h"
#include "VecsFile.h"

namespace faiss_gmm {
namespace datasets {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Splits "file.hdf5:name" into the path and the dataset name (default def).
bool split_hdf5(const std::string& spec, const std::string& def, std::string* path, std::string* name) {
    for (const char* ext : {".hdf5", ".h5"}) {
        size_t pos = spec.rfind(ext);
        if (pos == std::string::npos) {
            continue;
        }
        size_t end = pos + std::string(ext).size();
        if (end == spec.size()) {
            *path = spec;
            *name = def;
            return true;
        }
        if (spec[end] == ':') {
            *path = spec.substr(0, end);
            *name = spec.substr(end + 1);
            return true;
        }
    }
    return false;
}

bool is_idx(const std::string& spec) {
    return ends_with(spec, ".gz") || ends_with(spec, ".idx") || ends_with(spec, "-ubyte");
}

} // namespace

MatrixSource::MatrixSource(FloatMatrix m) : f_(std::move(m)), type_(DataType::Float32), n_(f_.n), d_(f_.d) {}
MatrixSource::MatrixSource(ByteMatrix m) : b_(std::move(m)), type_(DataType::UInt8), n_(b_.n), d_(b_.d) {}

VectorBlock MatrixSource::read(int64_t i0, int64_t n, std::vector<uint8_t>& /*scratch*/) const {
    check_range(i0, n);
    const void* p = type_ == DataType::Float32 ? static_cast<const void*>(f_.row(i0))
                                               : static_cast<const void*>(b_.row(i0));
    return VectorBlock{p, type_, n, d_};
}

std::unique_ptr<VectorSource> open_mapped_vectors(const std::string& path) {
    if (ends_with(path, ".fvecs") || ends_with(path, ".bvecs")) {
        return std::make_unique<VecsFileSource>(path);
    }
    if (ends_with(path, ".fbin") || ends_with(path, ".u8bin")) {
        return std::make_unique<BinFileSource>(path);
    }
    throw std::invalid_argument(path + ": not a memory-mapped vector file (expected .fvecs, .bvecs, .fbin or .u8bin)");
}

std::unique_ptr<VectorSource> open_vectors(const std::string& spec) {
    std::string path, name;
    if (ends_with(spec, ".fvecs") || ends_with(spec, ".bvecs") || ends_with(spec, ".fbin") ||
        ends_with(spec, ".u8bin")) {
        return open_mapped_vectors(spec);
    }
    if (is_idx(spec)) {
        return std::make_unique<MatrixSource>(read_idx_gz(spec));
    }
    if (split_hdf5(spec, "train", &path, &name)) {
        return std::make_unique<MatrixSource>(read_hdf5_float(path, name));
    }
    throw std::invalid_argument(spec + ": unknown vector file type (expected .fvecs, .bvecs, .fbin, "
                                       ".u8bin, IDX .gz or .hdf5[:dataset])");
}

FloatMatrix read_vectors(const std::string& spec, int64_t i0, int64_t n) {
    std::string path, name;
    if (split_hdf5(spec, "train", &path, &name)) { // hyperslab: only the rows asked for
        return read_hdf5_float(path, name, i0, n);
    }
    std::unique_ptr<VectorSource> src = open_vectors(spec);
    n = resolve_row_range(spec, src->ntotal(), i0, n);
    FloatMatrix m(n, src->d());
    const int64_t chunk = 1 << 14;
    for (int64_t r = 0; r < n; r += chunk) {
        read_as_float(*src, i0 + r, std::min(chunk, n - r), m.row(r));
    }
    return m;
}

IntMatrix read_ids(const std::string& spec, int64_t i0, int64_t n) {
    std::string path, name;
    if (ends_with(spec, ".ivecs")) {
        return read_ivecs(spec, i0, n);
    }
    if (ends_with(spec, ".ibin")) {
        return read_ibin(spec, i0, n);
    }
    if (ends_with(spec, ".bin")) {
        IntMatrix ids;
        read_bin_groundtruth(spec, &ids, nullptr);
        n = resolve_row_range(spec, ids.n, i0, n);
        IntMatrix out(n, ids.d);
        std::copy(ids.row(i0), ids.row(i0) + size_t(n) * ids.d, out.data.begin());
        return out;
    }
    if (split_hdf5(spec, "neighbors", &path, &name)) {
        return read_hdf5_int(path, name, i0, n);
    }
    throw std::invalid_argument(spec + ": unknown id file type (expected .ivecs, .ibin, .bin or .hdf5[:dataset])");
}

void write_vectors(const std::string& path, const FloatMatrix& x) {
    bool bytes = ends_with(path, ".bvecs") || ends_with(path, ".u8bin");
    if (bytes) {
        std::vector<uint8_t> b(x.data.size());
        for (size_t i = 0; i < b.size(); i++) {
            float v = x.data[i];
            if (!(v >= 0 && v <= 255 && v == std::floor(v))) {
                throw std::invalid_argument(path + ": value " + std::to_string(v) + " at row " +
                                            std::to_string(i / x.d) + " is not a uint8");
            }
            b[i] = uint8_t(v);
        }
        if (ends_with(path, ".bvecs")) {
            write_bvecs(path, x.n, x.d, b.data());
        } else {
            write_u8bin(path, x.n, x.d, b.data());
        }
    } else if (ends_with(path, ".fvecs")) {
        write_fvecs(path, x.n, x.d, x.data.data());
    } else if (ends_with(path, ".fbin")) {
        write_fbin(path, x.n, x.d, x.data.data());
    } else {
        throw std::invalid_argument(path + ": unknown output vector type (expected .fvecs, .bvecs, .fbin, .u8bin)");
    }
}

void write_ids(const std::string& path, const IntMatrix& ids) {
    if (ends_with(path, ".ivecs")) {
        write_ivecs(path, ids.n, ids.d, ids.data.data());
    } else if (ends_with(path, ".ibin")) {
        write_ibin(path, ids.n, ids.d, ids.data.data());
    } else {
        throw std::invalid_argument(path + ": unknown output id type (expected .ivecs or .ibin)");
    }
}

Dataset load_dataset(const DatasetSpec& spec, bool verbose) {
    Dataset ds;
    ds.name = spec.name.empty() ? spec.base : spec.name;
    ds.metric = spec.metric;
    if (spec.max_base < 0 || spec.max_queries < 0 || spec.gt_k < 1) {
        throw std::invalid_argument("load_dataset: max_base, max_queries must be >= 0 and gt_k >= 1");
    }
    std::unique_ptr<VectorSource> bsrc = open_vectors(spec.base);
    const int64_t nb_file = bsrc->ntotal();
    int64_t nb = spec.max_base > 0 ? std::min(spec.max_base, nb_file) : nb_file;
    ds.base = FloatMatrix(nb, bsrc->d());
    for (int64_t r = 0; r < nb; r += 1 << 14) {
        int64_t nr = std::min<int64_t>(1 << 14, nb - r);
        read_as_float(*bsrc, r, nr, ds.base.row(r));
    }
    bsrc.reset();
    int64_t nq_file;
    {
        std::unique_ptr<VectorSource> qsrc = open_vectors(spec.queries);
        nq_file = qsrc->ntotal();
    }
    int64_t nq = spec.max_queries > 0 ? std::min(spec.max_queries, nq_file) : nq_file;
    ds.queries = read_vectors(spec.queries, 0, nq);
    if (ds.queries.d != ds.base.d) {
        throw std::invalid_argument(ds.name + ": queries have d = " + std::to_string(ds.queries.d) +
                                    ", base has d = " + std::to_string(ds.base.d));
    }
    check_finite(VectorBlock{ds.base.data.data(), DataType::Float32, ds.base.n, ds.base.d});
    check_finite(VectorBlock{ds.queries.data.data(), DataType::Float32, ds.queries.n, ds.queries.d});

    // The shipped ground truth refers to the whole base: a prefix needs its own.
    bool subset_base = nb < nb_file;
    if (!spec.groundtruth.empty() && !subset_base) {
        ds.groundtruth = read_ids(spec.groundtruth, 0, nq);
        for (int64_t i = 0; i < ds.groundtruth.n; i++) {
            for (int64_t j = 0; j < ds.groundtruth.d; j++) {
                int32_t id = ds.groundtruth.at(i, j);
                if (id < 0 || id >= nb) {
                    throw std::runtime_error(spec.groundtruth + ": id " + std::to_string(id) + " at query " +
                                             std::to_string(i) + " outside the base [0, " + std::to_string(nb) + ")");
                }
            }
        }
    } else {
        auto t0 = std::chrono::steady_clock::now();
        MemoryVectorSource src(ds.base.n, ds.base.d, ds.base.data.data());
        GroundTruthParams gp;
        gp.verbose = verbose;
        int k = int(std::min<int64_t>(spec.gt_k, nb));
        ds.groundtruth = compute_ground_truth(src, nq, ds.queries.data.data(), k, spec.metric, gp).ids;
        ds.groundtruth_computed = true;
        ds.groundtruth_time_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (spec.metric == Metric::Angular) {
        normalize_rows(ds.base.n, ds.base.d, ds.base.data.data());
        normalize_rows(ds.queries.n, ds.queries.d, ds.queries.data.data());
    }
    return ds;
}

std::vector<std::string> named_datasets() {
    return {"siftsmall", "bigann10k", "glove25-angular", "glove25-l2", "fashion-mnist"};
}

DatasetSpec named_dataset(const std::string& name, const std::string& root) {
    DatasetSpec s;
    s.name = name;
    if (name == "siftsmall") {
        s.base = root + "/siftsmall/siftsmall_base.fvecs";
        s.queries = root + "/siftsmall/siftsmall_query.fvecs";
        s.groundtruth = root + "/siftsmall/siftsmall_groundtruth.ivecs";
    } else if (name == "bigann10k") {
        s.base = root + "/bigann10k/bigann10k_base.bvecs";
        s.queries = root + "/bigann10k/bigann10k_query.bvecs";
        s.groundtruth = root + "/bigann10k/bigann10k_groundtruth.ivecs";
    } else if (name == "glove25-angular" || name == "glove25-l2") {
        bool ang = name == "glove25-angular";
        s.base = root + "/glove25_tw12k/glove25_base.fvecs";
        s.queries = root + "/glove25_tw12k/glove25_query.fvecs";
        s.groundtruth = root + "/glove25_tw12k/glove25_groundtruth_" + (ang ? "angular" : "l2") + ".ivecs";
        s.metric = ang ? Metric::Angular : Metric::L2;
    } else if (name == "fashion-mnist") {
        s.base = std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz";
        s.queries = std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz";
    } else {
        std::string all;
        for (const std::string& n : named_datasets()) {
            all += " " + n;
        }
        throw std::invalid_argument("unknown dataset '" + name + "' (known:" + all + ")");
    }
    return s;
}

} // namespace datasets
} // namespace faiss_gmm
