#include "gmm_io.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/index_io.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "GmmModel.h"
#include "GmmParams.h"
#include "GmmQuantizer.h"

namespace faiss_gmm {

namespace {

constexpr uint32_t kTrailerMagic = 0x4d4d4746; // "FGMM" little-endian
constexpr uint32_t kTrailerEnd = 0x46474d4d;   // "MMGF"
constexpr uint32_t kTrailerVersion = 1;

template <class T>
void put(faiss::IOWriter* w, const T& v) {
    if ((*w)(&v, sizeof(T), 1) != 1) throw std::runtime_error("write_gmm_index: write failed");
}

template <class T>
void put_vector(faiss::IOWriter* w, const std::vector<T>& v) {
    put<uint64_t>(w, v.size());
    if (!v.empty() && (*w)(v.data(), sizeof(T), v.size()) != v.size()) {
        throw std::runtime_error("write_gmm_index: write failed");
    }
}

template <class T>
T get(faiss::IOReader* r, const char* what) {
    T v;
    if ((*r)(&v, sizeof(T), 1) != 1) {
        throw std::runtime_error(std::string("GMM trailer truncated while reading ") + what);
    }
    return v;
}

/// Reads a vector whose size must be `expected` (known from K and d, never
/// trusted from the file, so a lying header cannot cause a huge allocation).
template <class T>
void get_vector(faiss::IOReader* r, std::vector<T>& v, uint64_t expected, const char* what) {
    const uint64_t n = get<uint64_t>(r, what);
    if (n != expected) {
        throw std::runtime_error(std::string("GMM trailer: ") + what + " has " + std::to_string(n) +
                                 " entries, expected " + std::to_string(expected));
    }
    v.resize(n);
    if (n > 0 && (*r)(v.data(), sizeof(T), n) != n) {
        throw std::runtime_error(std::string("GMM trailer truncated while reading ") + what);
    }
}

/// Installs a GmmQuantizer holding `model` in place of the flat quantizer FAISS
/// read back, after checking both hold the same means.
faiss::Index* attach_model(faiss::Index* index, const GmmModel& model, const GmmParams& params) {
    std::unique_ptr<faiss::Index> owner(index);
    auto check_means = [&](const faiss::IndexFlat* flat) {
        if (!flat || flat->ntotal != model.K || flat->d != model.d ||
            std::memcmp(flat->get_xb(), model.means.data(), sizeof(float) * model.K * model.d) != 0) {
            throw std::runtime_error("GMM trailer does not match the index: its means differ from the "
                                     "coarse quantizer's centroids");
        }
    };
    if (faiss::IndexIVF* ivf = find_ivf(index)) {
        check_means(dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer));
        auto* q = new GmmQuantizer(model.d, model.K, params);
        q->set_model(model);
        if (ivf->own_fields) delete ivf->quantizer;
        ivf->quantizer = q;
        ivf->own_fields = true;
        ivf->quantizer_trains_alone = 1;
        return owner.release();
    }
    // A GmmQuantizer saved on its own was written as a flat index.
    check_means(dynamic_cast<const faiss::IndexFlat*>(index));
    auto* q = new GmmQuantizer(model.d, model.K, params);
    q->set_model(model);
    return q;
}

} // namespace

void write_gmm_model(const GmmModel& m, const GmmParams& p, faiss::IOWriter* w) {
    put(w, kTrailerMagic);
    put(w, kTrailerVersion);
    put<int64_t>(w, m.K);
    put<int64_t>(w, m.d);
    put<int32_t>(w, int32_t(m.covariance_type));
    put<int32_t>(w, p.niter);
    put<double>(w, p.tol);
    put<int64_t>(w, p.seed);
    put<int32_t>(w, int32_t(p.init));
    put<int32_t>(w, p.init_niter);
    put<int32_t>(w, p.max_points_per_centroid);
    put<int32_t>(w, p.min_points_per_centroid);
    put<double>(w, p.min_variance_ratio);
    put<double>(w, p.reg_covar);
    put<double>(w, p.min_component_weight);
    put<int32_t>(w, p.fast_math ? 1 : 0);
    put_vector(w, m.log_weights);
    put_vector(w, m.means);
    put_vector(w, m.variances);
    put(w, kTrailerEnd);
}

void read_gmm_model(faiss::IOReader* r, GmmModel* m, GmmParams* p) {
    if (get<uint32_t>(r, "magic") != kTrailerMagic) {
        throw std::runtime_error("bytes after the FAISS index are not a GMM trailer (bad magic)");
    }
    const uint32_t version = get<uint32_t>(r, "version");
    if (version != kTrailerVersion) {
        throw std::runtime_error("GMM trailer version " + std::to_string(version) + " is not supported (expected " +
                                 std::to_string(kTrailerVersion) + ")");
    }
    GmmModel model;
    GmmParams params;
    model.K = get<int64_t>(r, "K");
    model.d = get<int64_t>(r, "d");
    const int32_t cov = get<int32_t>(r, "covariance type");
    if (cov != 0 && cov != 1) throw std::runtime_error("GMM trailer: invalid covariance type " + std::to_string(cov));
    model.covariance_type = CovarianceType(cov);
    params.covariance_type = model.covariance_type;
    params.niter = get<int32_t>(r, "niter");
    params.tol = get<double>(r, "tol");
    params.seed = get<int64_t>(r, "seed");
    params.init = InitMethod(get<int32_t>(r, "init"));
    params.init_niter = get<int32_t>(r, "init_niter");
    params.max_points_per_centroid = get<int32_t>(r, "max_points_per_centroid");
    params.min_points_per_centroid = get<int32_t>(r, "min_points_per_centroid");
    params.min_variance_ratio = get<double>(r, "min_variance_ratio");
    params.reg_covar = get<double>(r, "reg_covar");
    params.min_component_weight = get<double>(r, "min_component_weight");
    params.fast_math = get<int32_t>(r, "fast_math") != 0;
    try {
        params.validate();
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error(std::string("GMM trailer holds invalid parameters: ") + e.what());
    }
    // Bounds before any allocation sized from the file: the caller checks K and d
    // against the index as well.
    if (model.K < 1 || model.d < 1 || model.K > (int64_t(1) << 31) || model.d > (1 << 20) ||
        model.K * model.d > (int64_t(1) << 34)) {
        throw std::runtime_error("GMM trailer: implausible K = " + std::to_string(model.K) + ", d = " +
                                 std::to_string(model.d));
    }
    get_vector(r, model.log_weights, uint64_t(model.K), "log_weights");
    get_vector(r, model.means, uint64_t(model.K * model.d), "means");
    get_vector(r, model.variances, uint64_t(model.K * model.nvar()), "variances");
    if (get<uint32_t>(r, "end marker") != kTrailerEnd) {
        throw std::runtime_error("GMM trailer: bad end marker (corrupt file)");
    }
    try {
        model.validate();
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error(std::string("GMM trailer holds an invalid model: ") + e.what());
    }
    *m = std::move(model);
    if (p) *p = params;
}

void write_gmm_index(const faiss::Index* index, faiss::IOWriter* writer) {
    faiss::write_index(index, writer);
    if (const GmmQuantizer* q = find_gmm_quantizer(index)) {
        if (q->model.K > 0) write_gmm_model(q->model, q->params, writer);
    } else if (const auto* q = dynamic_cast<const GmmQuantizer*>(index)) {
        if (q->model.K > 0) write_gmm_model(q->model, q->params, writer);
    }
}

void write_gmm_index(const faiss::Index* index, const std::string& fname) {
    faiss::FileIOWriter writer(fname.c_str());
    write_gmm_index(index, &writer);
}

std::vector<uint8_t> serialize_gmm_index(const faiss::Index* index) {
    faiss::VectorIOWriter writer;
    write_gmm_index(index, &writer);
    return std::move(writer.data);
}

namespace {

/// After FAISS's part: end of data (a plain FAISS index) or a GMM trailer.
faiss::Index* read_rest(faiss::Index* index, faiss::IOReader* reader, bool at_end, const std::string& what) {
    std::unique_ptr<faiss::Index> owner(index);
    if (at_end) return owner.release();
    try {
        GmmModel model;
        GmmParams params;
        read_gmm_model(reader, &model, &params);
        return attach_model(owner.release(), model, params);
    } catch (const std::exception& e) {
        throw std::runtime_error(what + ": " + e.what());
    }
}

faiss::Index* read_faiss_part(faiss::IOReader* reader, const std::string& what) {
    try {
        return faiss::read_index(reader);
    } catch (const std::exception& e) {
        throw std::runtime_error(what + ": not a readable FAISS index (truncated or corrupt): " + e.what());
    }
}

} // namespace

faiss::Index* read_gmm_index(const std::string& fname) {
    FILE* f = std::fopen(fname.c_str(), "rb");
    if (!f) throw std::runtime_error("read_gmm_index: cannot open " + fname);
    faiss::FileIOReader reader(f);
    reader.need_close = true;
    std::fseek(f, 0, SEEK_END);
    const long size = std::ftell(f);
    std::fseek(f, 0, SEEK_SET);
    if (size <= 0) throw std::runtime_error("read_gmm_index: " + fname + " is empty");
    faiss::Index* index = read_faiss_part(&reader, "read_gmm_index: " + fname);
    return read_rest(index, &reader, std::ftell(f) >= size, "read_gmm_index: " + fname);
}

faiss::Index* deserialize_gmm_index(const uint8_t* data, size_t size) {
    if (size == 0) throw std::runtime_error("deserialize_gmm_index: empty buffer");
    faiss::VectorIOReader reader;
    reader.data.assign(data, data + size);
    faiss::Index* index = read_faiss_part(&reader, "deserialize_gmm_index");
    return read_rest(index, &reader, reader.rp >= size, "deserialize_gmm_index");
}

} // namespace faiss_gmm
