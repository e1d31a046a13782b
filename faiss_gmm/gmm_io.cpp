#include "gmm_io.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/index_io.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "GmmModel.h"
#include "GmmParams.h"
#include "GmmQuantizer.h"
#include "IndexIVFSpill.h"

namespace faiss_gmm {

namespace {

constexpr uint32_t kTrailerMagic = 0x4d4d4746; // "FGMM" little-endian
constexpr uint32_t kTrailerEnd = 0x46474d4d;   // "MMGF"
// Version 2 adds GmmQuantizer::rank_by_posterior and probe_variance_weight,
// version 3 probe_variance_power; versions 1 and 2 still read. Since issue 14
// removed those rankings they are written as off, and a file that turns one on
// is refused with a message (faiss::read_index still reads it).
constexpr uint32_t kTrailerVersion = 3;
// Optional spill trailer after the GMM one (or right after FAISS's bytes for a
// k-means spill index): the IndexIVFSpill settings and its distinct-vector count.
constexpr uint32_t kSpillMagic = 0x4c505346; // "FSPL"
constexpr uint32_t kSpillEnd = 0x4c505347;
constexpr uint32_t kSpillVersion = 1;

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
/// read back, after checking both hold the same means. Files of trailer versions 2
/// and 3 may ask for a probe ranking that was removed (issue 14): refused, since
/// searching them by L2 would not be the index that was saved.
faiss::Index* attach_model(faiss::Index* index, const GmmModel& model, const GmmParams& params,
                           bool rank_by_posterior, double probe_variance_weight, double probe_variance_power) {
    std::unique_ptr<faiss::Index> owner(index);
    if (rank_by_posterior || probe_variance_weight != 0 || probe_variance_power != 0) {
        throw std::runtime_error(
                std::string("GMM trailer asks for a probe ranking that faiss-gmm no longer has (") +
                (rank_by_posterior ? "posterior ranking, _probepost"
                                   : "variance-scaled ranking, _pscale / _ppow") +
                "; removed in issue 14 because it never paid): faiss::read_index still reads the file as a plain "
                "IVF probed by L2");
    }
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
    write_gmm_model(m, p, false, 0.0, w);
}

void write_gmm_model(const GmmModel& m, const GmmParams& p, bool rank_by_posterior, double probe_variance_weight,
                     faiss::IOWriter* w) {
    write_gmm_model(m, p, rank_by_posterior, probe_variance_weight, 0.0, w);
}

void write_gmm_model(const GmmModel& m, const GmmParams& p, bool rank_by_posterior, double probe_variance_weight,
                     double probe_variance_power, faiss::IOWriter* w) {
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
    // Version 2: the probing settings, before the arrays (the arrays and the end
    // marker keep their place at the end of the trailer).
    put<int32_t>(w, rank_by_posterior ? 1 : 0);
    put<double>(w, probe_variance_weight);
    // Version 3.
    put<double>(w, probe_variance_power);
    put_vector(w, m.log_weights);
    put_vector(w, m.means);
    put_vector(w, m.variances);
    put(w, kTrailerEnd);
}

void read_gmm_model(faiss::IOReader* r, GmmModel* m, GmmParams* p) {
    if (get<uint32_t>(r, "magic") != kTrailerMagic) {
        throw std::runtime_error("bytes after the FAISS index are not a GMM trailer (bad magic)");
    }
    read_gmm_model_after_magic(r, m, p, nullptr, nullptr);
}

void read_gmm_model_after_magic(faiss::IOReader* r, GmmModel* m, GmmParams* p, bool* rank_by_posterior,
                                double* probe_variance_weight, double* probe_variance_power) {
    const uint32_t version = get<uint32_t>(r, "version");
    if (version < 1 || version > kTrailerVersion) {
        throw std::runtime_error("GMM trailer version " + std::to_string(version) + " is not supported (expected 1 to " +
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
    const bool rbp = version >= 2 ? get<int32_t>(r, "rank_by_posterior") != 0 : false;
    const double pvw = version >= 2 ? get<double>(r, "probe_variance_weight") : 0.0;
    if (!std::isfinite(pvw)) throw std::runtime_error("GMM trailer: probe_variance_weight is not finite");
    const double ppow = version >= 3 ? get<double>(r, "probe_variance_power") : 0.0;
    if (!std::isfinite(ppow)) throw std::runtime_error("GMM trailer: probe_variance_power is not finite");
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
    if (rank_by_posterior) *rank_by_posterior = rbp;
    if (probe_variance_weight) *probe_variance_weight = pvw;
    if (probe_variance_power) *probe_variance_power = ppow;
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
    const IndexIVFSpill* sp = as_spill_index(index);
    // FAISS writes the IVF with every copy: faiss::read_index reads it (duplicate ids and all).
    faiss::write_index(sp ? sp->index : index, writer);
    // The GMM quantizer of an IVF index, or the index itself when it is one.
    const GmmQuantizer* q = find_gmm_quantizer(index);
    if (!q) q = dynamic_cast<const GmmQuantizer*>(index);
    if (q && q->model.K > 0) {
        // Version 3 layout, probe settings off (the rankings were removed in issue 14).
        write_gmm_model(q->model, q->params, false, 0.0, 0.0, writer);
    }
    if (sp) {
        const SpillParams& s = sp->spill;
        put(writer, kSpillMagic);
        put(writer, kSpillVersion);
        put<int32_t>(writer, int32_t(s.rule));
        put<int32_t>(writer, s.max_copies);
        put<double>(writer, s.budget);
        put<double>(writer, s.tau);
        put<double>(writer, s.temperature);
        put<double>(writer, s.epsilon);
        put<double>(writer, s.soar_lambda);
        put<int32_t>(writer, s.primary_by_posterior ? 1 : 0);
        put<double>(writer, sp->threshold);
        put<int32_t>(writer, sp->threshold_set ? 1 : 0);
        put<int64_t>(writer, sp->ntotal);
        put(writer, kSpillEnd);
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

faiss::Index* read_spill(faiss::Index* index, faiss::IOReader* r) {
    std::unique_ptr<faiss::Index> owner(index);
    const uint32_t version = get<uint32_t>(r, "spill version");
    if (version != kSpillVersion) {
        throw std::runtime_error("spill trailer version " + std::to_string(version) + " is not supported");
    }
    SpillParams s;
    const int32_t rule = get<int32_t>(r, "spill rule");
    if (rule < 0 || rule > 4) throw std::runtime_error("spill trailer: invalid rule " + std::to_string(rule));
    s.rule = SpillRule(rule);
    s.max_copies = get<int32_t>(r, "max_copies");
    s.budget = get<double>(r, "budget");
    s.tau = get<double>(r, "tau");
    s.temperature = get<double>(r, "temperature");
    s.epsilon = get<double>(r, "epsilon");
    s.soar_lambda = get<double>(r, "soar_lambda");
    s.primary_by_posterior = get<int32_t>(r, "primary_by_posterior") != 0;
    const double threshold = get<double>(r, "threshold");
    const bool threshold_set = get<int32_t>(r, "threshold_set") != 0;
    const int64_t ntotal = get<int64_t>(r, "ntotal");
    if (get<uint32_t>(r, "spill end marker") != kSpillEnd) {
        throw std::runtime_error("spill trailer: bad end marker (corrupt file)");
    }
    try {
        s.validate();
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error(std::string("spill trailer holds invalid settings: ") + e.what());
    }
    auto* sp = new IndexIVFSpill(owner.get(), s, true, /*require_empty=*/false);
    static_cast<void>(owner.release()); // owned by sp now
    if (ntotal < 0 || ntotal > int64_t(sp->ivf->ntotal)) {
        delete sp;
        throw std::runtime_error("spill trailer: ntotal " + std::to_string(ntotal) + " does not fit the lists");
    }
    sp->ntotal = ntotal;
    sp->threshold = threshold;
    sp->threshold_set = threshold_set;
    return sp;
}

/// After FAISS's part: end of data (a plain FAISS index), a GMM trailer, and/or a spill trailer.
template <class AtEnd>
faiss::Index* read_rest(faiss::Index* index, faiss::IOReader* reader, AtEnd at_end, const std::string& what) {
    std::unique_ptr<faiss::Index> owner(index);
    if (at_end()) return owner.release();
    try {
        uint32_t magic = get<uint32_t>(reader, "magic");
        if (magic == kTrailerMagic) {
            GmmModel model;
            GmmParams params;
            bool rbp = false;
            double pvw = 0, ppow = 0;
            read_gmm_model_after_magic(reader, &model, &params, &rbp, &pvw, &ppow);
            owner.reset(attach_model(owner.release(), model, params, rbp, pvw, ppow));
            if (at_end()) return owner.release();
            magic = get<uint32_t>(reader, "magic");
        }
        if (magic == kSpillMagic) {
            return read_spill(owner.release(), reader);
        }
        throw std::runtime_error("bytes after the FAISS index are not a GMM or spill trailer (bad magic)");
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
    return read_rest(index, &reader, [&] { return std::ftell(f) >= size; }, "read_gmm_index: " + fname);
}

faiss::Index* deserialize_gmm_index(const uint8_t* data, size_t size) {
    if (size == 0) throw std::runtime_error("deserialize_gmm_index: empty buffer");
    faiss::VectorIOReader reader;
    reader.data.assign(data, data + size);
    faiss::Index* index = read_faiss_part(&reader, "deserialize_gmm_index");
    return read_rest(index, &reader, [&] { return reader.rp >= size; }, "deserialize_gmm_index");
}

} // namespace faiss_gmm
