#include "gmm_io.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "AtomicFile.h"
#include "Crc32c.h"
#include "GmmModel.h"
#include "GmmParams.h"
#include "GmmQuantizer.h"
#include "IndexIVFSpill.h"

namespace faiss_gmm {

namespace {

constexpr uint32_t kTrailerMagic = 0x4d4d4746; // "FGMM" little-endian
constexpr uint32_t kTrailerEnd = 0x46474d4d;   // "MMGF"
// Version 2 adds GmmQuantizer::rank_by_posterior and probe_variance_weight,
// version 3 probe_variance_power, version 4 the checksum footer (same fields as
// version 3); versions 1 to 3 still read, unverified. Since issue 14 removed
// those probe rankings they are written as off, and a file that turns one on is
// refused with a message (faiss::read_index still reads it). Version 5 (issue 17)
// allows covariance type 2 (full: K·d·d precision Cholesky factors in the
// variances array), same fields as version 4, which still reads (footer, verified).
constexpr uint32_t kTrailerVersion = 5;
constexpr uint32_t kFirstFullCovarianceTrailerVersion = 5;
constexpr uint32_t kFirstFooterTrailerVersion = 4;
// Optional spill trailer after the GMM one (or right after FAISS's bytes for a
// k-means spill index): the IndexIVFSpill settings and its distinct-vector count.
// Version 2: followed by the checksum footer (same fields as version 1). Issue 14 added
// rule 5 (gmm-soar) in the same layout: files with rules 0 to 4 are unchanged, and a
// reader older than that refuses rule 5 as an invalid rule rather than misreading it.
constexpr uint32_t kSpillMagic = 0x4c505346; // "FSPL"
constexpr uint32_t kSpillEnd = 0x4c505347;
constexpr uint32_t kSpillVersion = 2;
constexpr uint32_t kFirstFooterSpillVersion = 2;
// The checksum footer, last in the file: magic, version, size of the FAISS part,
// CRC-32C of every byte before the CRC field, end marker.
constexpr uint32_t kFooterMagic = 0x4b434746; // "FGCK"
constexpr uint32_t kFooterEnd = 0x4647434b;   // "KCGF"
constexpr uint32_t kFooterVersion = 1;
constexpr size_t kFooterSize = 24;
constexpr size_t kFooterCrcOffset = 16; // from the footer's start

/// A writer that turns a short write into an exception (our IOWriters throw
/// themselves with the reason; a foreign one may only return a short count).
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
    // Read in chunks, never sized by the length field alone: a corrupt length
    // (a full model's K·d·d can claim gigabytes) then allocates at most about twice
    // the bytes the file really holds before the read comes back short.
    constexpr uint64_t kChunk = uint64_t(1) << 20;
    v.clear();
    for (uint64_t done = 0; done < n;) {
        const uint64_t m = std::min(kChunk, n - done);
        v.resize(size_t(done + m));
        if ((*r)(v.data() + done, sizeof(T), size_t(m)) != size_t(m)) {
            throw std::runtime_error(std::string("GMM trailer truncated while reading ") + what);
        }
        done += m;
    }
}

/// Reads at most `limit` bytes of `in` (the trailers' region): a read past it
/// comes back short, which the readers report as truncation.
class BoundedReader : public faiss::IOReader {
  public:
    BoundedReader(faiss::IOReader* in, uint64_t limit) : in_(in), left_(limit) {}
    size_t operator()(void* ptr, size_t size, size_t nitems) override {
        if (size == 0) return 0;
        const size_t n = size_t(std::min<uint64_t>(nitems, left_ / size));
        const size_t got = n > 0 ? (*in_)(ptr, size, n) : 0;
        left_ -= uint64_t(got) * size;
        return got;
    }
    bool at_end() const { return left_ == 0; }

  private:
    faiss::IOReader* in_;
    uint64_t left_;
};

std::string hex32(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "0x%08" PRIx32, v);
    return buf;
}

// ---------------------------------------------------------------- GMM trailer

/// `version` < kTrailerVersion only for detail::serialize_gmm_index_old_format.
void write_gmm_part(const GmmTrailer& t, uint32_t version, faiss::IOWriter* w) {
    const GmmModel& m = t.model;
    const GmmParams& p = t.params;
    put(w, kTrailerMagic);
    put(w, version);
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
    if (version >= 2) {
        put<int32_t>(w, t.rank_by_posterior ? 1 : 0);
        put<double>(w, t.probe_variance_weight);
    }
    // Version 3.
    if (version >= 3) put<double>(w, t.probe_variance_power);
    put_vector(w, m.log_weights);
    put_vector(w, m.means);
    put_vector(w, m.variances);
    put(w, kTrailerEnd);
}

/// The GMM trailer after its magic; returns its version.
uint32_t read_gmm_part(faiss::IOReader* r, GmmTrailer* t) {
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
    const bool full_allowed = version >= kFirstFullCovarianceTrailerVersion;
    if (cov != 0 && cov != 1 && !(cov == 2 && full_allowed)) {
        throw std::runtime_error("GMM trailer: invalid covariance type " + std::to_string(cov) +
                                 (cov == 2 ? " (full covariances need trailer version 5, this is version " +
                                                     std::to_string(version) + ")"
                                           : std::string()));
    }
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
        model.K * model.d > (int64_t(1) << 34) ||
        model.K * GmmModel::nvar_of(model.covariance_type, model.d) > (int64_t(1) << 34)) {
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
    t->has_gmm = true;
    t->model = std::move(model);
    t->params = params;
    t->rank_by_posterior = rbp;
    t->probe_variance_weight = pvw;
    t->probe_variance_power = ppow;
    return version;
}

// -------------------------------------------------------------- spill trailer

void write_spill_part(const GmmTrailer& t, uint32_t version, faiss::IOWriter* writer) {
    const SpillParams& s = t.spill;
    put(writer, kSpillMagic);
    put(writer, version);
    put<int32_t>(writer, int32_t(s.rule));
    put<int32_t>(writer, s.max_copies);
    put<double>(writer, s.budget);
    put<double>(writer, s.tau);
    put<double>(writer, 1.0); // the removed temperature of the posterior rule (issue 14): always 1
    put<double>(writer, s.epsilon);
    put<double>(writer, s.soar_lambda);
    put<int32_t>(writer, s.primary_by_posterior ? 1 : 0);
    put<double>(writer, t.spill_threshold);
    put<int32_t>(writer, t.spill_threshold_set ? 1 : 0);
    put<int64_t>(writer, t.spill_ntotal);
    put(writer, kSpillEnd);
}

/// The spill trailer after its magic; returns its version.
uint32_t read_spill_part(faiss::IOReader* r, GmmTrailer* t) {
    const uint32_t version = get<uint32_t>(r, "spill version");
    if (version < 1 || version > kSpillVersion) {
        throw std::runtime_error("spill trailer version " + std::to_string(version) + " is not supported");
    }
    SpillParams s;
    const int32_t rule = get<int32_t>(r, "spill rule");
    if (rule < 0 || rule > int32_t(SpillRule::GmmSoar)) {
        throw std::runtime_error("spill trailer: invalid rule " + std::to_string(rule) + " (rules 0 to " +
                                 std::to_string(int(SpillRule::GmmSoar)) + " are known)");
    }
    s.rule = SpillRule(rule);
    s.max_copies = get<int32_t>(r, "max_copies");
    s.budget = get<double>(r, "budget");
    s.tau = get<double>(r, "tau");
    const double temperature = get<double>(r, "temperature");
    if (!(temperature > 0 && std::isfinite(temperature))) {
        throw std::runtime_error("spill trailer: temperature " + std::to_string(temperature) + " is not > 0 (corrupt file)");
    }
    s.epsilon = get<double>(r, "epsilon");
    s.soar_lambda = get<double>(r, "soar_lambda");
    s.primary_by_posterior = get<int32_t>(r, "primary_by_posterior") != 0;
    double threshold = get<double>(r, "threshold");
    const bool threshold_set = get<int32_t>(r, "threshold_set") != 0;
    const int64_t ntotal = get<int64_t>(r, "ntotal");
    if (get<uint32_t>(r, "spill end marker") != kSpillEnd) {
        throw std::runtime_error("spill trailer: bad end marker (corrupt file)");
    }
    // A file written before issue 14 may set the posterior rule's temperature T, since removed:
    // (r_j/r_1)^(1/T) >= tau is r_j/r_1 >= tau^T, and its threshold on (ℓ_1 − ℓ_j)/T is T times one
    // on ℓ_1 − ℓ_j. Read as that equivalent: the same lists for later adds (up to float rounding of
    // a cost that sits exactly on the threshold). Other rules ignored T.
    if (s.rule == SpillRule::Posterior && temperature != 1) {
        s.tau = std::pow(s.tau, temperature);
        threshold *= temperature;
    }
    try {
        s.validate();
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error(std::string("spill trailer holds invalid settings: ") + e.what());
    }
    if (ntotal < 0) throw std::runtime_error("spill trailer: ntotal " + std::to_string(ntotal) + " is negative");
    t->has_spill = true;
    t->spill = s;
    t->spill_threshold = threshold;
    t->spill_threshold_set = threshold_set;
    t->spill_ntotal = ntotal;
    return version;
}

// -------------------------------------------------------------------- footer

void write_footer(ChecksumIOWriter* w, uint64_t faiss_size) {
    put(w, kFooterMagic);
    put(w, kFooterVersion);
    put<uint64_t>(w, faiss_size);
    const uint32_t crc = w->crc(); // of every byte so far
    put(w, crc);
    put(w, kFooterEnd);
}

struct Footer {
    uint32_t magic, version;
    uint64_t faiss_size;
    uint32_t crc, end;
};

Footer decode_footer(const uint8_t* p) {
    Footer f;
    std::memcpy(&f.magic, p, 4);
    std::memcpy(&f.version, p + 4, 4);
    std::memcpy(&f.faiss_size, p + 8, 8);
    std::memcpy(&f.crc, p + kFooterCrcOffset, 4);
    std::memcpy(&f.end, p + 20, 4);
    return f;
}

/// Either marker of the footer present: the file claims a footer, and the other
/// one must match too (one damaged byte in a marker is refused, not mistaken for
/// an older file).
bool claims_footer(const Footer& f) {
    return f.magic == kFooterMagic || f.end == kFooterEnd;
}

void check_footer_fields(const Footer& f) {
    if (f.magic != kFooterMagic) throw std::runtime_error("checksum footer: bad magic (corrupt file)");
    if (f.end != kFooterEnd) throw std::runtime_error("checksum footer: bad end marker (corrupt file)");
    if (f.version != kFooterVersion) {
        throw std::runtime_error("checksum footer version " + std::to_string(f.version) + " is not supported");
    }
}

/// The trailers between the FAISS part and the footer, as the footer version
/// writes them: a GMM trailer (version 4), a spill trailer (version 2), or both.
void parse_trailer_region(faiss::IOReader* in, uint64_t region, GmmFileCheck* c) {
    BoundedReader r(in, region);
    if (r.at_end()) return;
    uint32_t magic = get<uint32_t>(&r, "magic");
    if (magic == kTrailerMagic) {
        c->info.gmm_version = read_gmm_part(&r, &c->trailer);
        if (c->info.gmm_version < kFirstFooterTrailerVersion) {
            throw std::runtime_error("GMM trailer version " + std::to_string(c->info.gmm_version) +
                                     " before a checksum footer (a version " +
                                     std::to_string(kFirstFooterTrailerVersion) + " or later writer wrote it: "
                                     "corrupt file)");
        }
        if (r.at_end()) return;
        magic = get<uint32_t>(&r, "magic");
    }
    if (magic != kSpillMagic) {
        throw std::runtime_error("bytes after the FAISS index are not a GMM or spill trailer (bad magic)");
    }
    c->info.spill_version = read_spill_part(&r, &c->trailer);
    if (c->info.spill_version != kSpillVersion) {
        throw std::runtime_error("spill trailer version " + std::to_string(c->info.spill_version) +
                                 " before a checksum footer (corrupt file)");
    }
    if (!r.at_end()) throw std::runtime_error("unexpected bytes between the trailers and the checksum footer");
}

/// A reader over bytes in memory (faiss::VectorIOReader would copy them).
class SpanReader : public faiss::IOReader {
  public:
    SpanReader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
    size_t operator()(void* ptr, size_t size, size_t nitems) override {
        if (size == 0) return 0;
        const size_t n = std::min(nitems, (n_ - pos_) / size);
        if (n == 0) return 0; // FAISS reads empty vectors into data() == nullptr
        std::memcpy(ptr, p_ + pos_, n * size);
        pos_ += n * size;
        return n;
    }

  private:
    const uint8_t* p_;
    size_t n_, pos_ = 0;
};

/// Reads the trailers at the footer's faiss_size; `reader_at` gives a reader
/// positioned at a byte offset. On a checksum mismatch the same parse, if it
/// fails, tells which structure is damaged.
template <class ReaderAt>
void finish_check(GmmFileCheck* c, const Footer& f, uint32_t computed, ReaderAt reader_at, const std::string& what) {
    const uint64_t size = c->size;
    const bool offset_ok = f.faiss_size > 0 && f.faiss_size <= size - kFooterSize;
    if (computed != f.crc) {
        std::string detail;
        if (!offset_ok) {
            detail = "the footer's FAISS part size " + std::to_string(f.faiss_size) + " does not fit the file";
        } else {
            try {
                GmmFileCheck probe;
                auto r = reader_at(f.faiss_size);
                parse_trailer_region(r.get(), size - kFooterSize - f.faiss_size, &probe);
                detail = "the trailers parse, so the damage is in the FAISS part, a value or the checksum";
            } catch (const std::exception& e) {
                detail = std::string("reading the trailers: ") + e.what();
            }
        }
        throw std::runtime_error(what + ": checksum mismatch (stored " + hex32(f.crc) + ", computed " +
                                 hex32(computed) + "): the file is damaged and was not read (" + detail + ")");
    }
    if (!offset_ok) {
        throw std::runtime_error(what + ": checksum footer: FAISS part size " + std::to_string(f.faiss_size) +
                                 " does not fit a file of " + std::to_string(size) + " bytes");
    }
    try {
        auto r = reader_at(f.faiss_size);
        parse_trailer_region(r.get(), size - kFooterSize - f.faiss_size, c);
    } catch (const std::exception& e) {
        throw std::runtime_error(what + ": " + e.what());
    }
    c->has_footer = true;
    c->info.verified = true;
    c->info.faiss_size = f.faiss_size;
}

// ------------------------------------------------------ applying a trailer

void check_means(const faiss::IndexFlat* flat, const GmmModel& model) {
    if (!flat || flat->ntotal != model.K || flat->d != model.d ||
        std::memcmp(flat->get_xb(), model.means.data(), sizeof(float) * model.K * model.d) != 0) {
        throw std::runtime_error("GMM trailer does not match the index: its means differ from the "
                                 "coarse quantizer's centroids");
    }
}

/// The GmmQuantizer of a trailer. Files of trailer versions 2 and 3 may ask for
/// a probe ranking that was removed (issue 14: it never paid): refused, since
/// searching them by L2 would not be the index that was saved.
GmmQuantizer* make_quantizer(const GmmTrailer& t) {
    if (t.rank_by_posterior || t.probe_variance_weight != 0 || t.probe_variance_power != 0) {
        throw std::runtime_error(
                std::string("GMM trailer asks for a probe ranking that faiss-gmm no longer has (") +
                (t.rank_by_posterior ? "posterior ranking, _probepost" : "variance-scaled ranking, _pscale / _ppow") +
                "; removed in issue 14 because it never paid): faiss::read_index still reads the file as a plain "
                "IVF probed by L2");
    }
    auto* q = new GmmQuantizer(t.model.d, t.model.K, t.params);
    q->set_model(t.model);
    return q;
}

/// The trailers and the footer, the GMM trailer in `gmm_version` (>= 4: only tests
/// write an older one, through detail::serialize_gmm_index_old_format).
void write_gmm_trailer(const GmmTrailer& t, uint32_t gmm_version, ChecksumIOWriter* w) {
    const uint64_t faiss_size = w->size();
    if (t.has_gmm) write_gmm_part(t, gmm_version, w);
    if (t.has_spill) write_spill_part(t, kSpillVersion, w);
    write_footer(w, faiss_size);
}

void write_all(const faiss::Index* index, faiss::IOWriter* writer, uint32_t gmm_version) {
    const IndexIVFSpill* sp = as_spill_index(index);
    const GmmTrailer t = GmmTrailer::of(index);
    if (gmm_version >= kFirstFooterTrailerVersion) {
        ChecksumIOWriter cw(writer);
        // FAISS writes the IVF with every copy: faiss::read_index reads it (duplicate ids and all).
        faiss::write_index(sp ? sp->index : index, &cw);
        write_gmm_trailer(t, gmm_version, &cw);
        return;
    }
    faiss::write_index(sp ? sp->index : index, writer);
    if (t.has_gmm) write_gmm_part(t, gmm_version, writer);
    if (t.has_spill) write_spill_part(t, 1, writer);
}

faiss::Index* read_faiss_part(faiss::IOReader* reader, const std::string& what) {
    try {
        return faiss::read_index(reader);
    } catch (const std::exception& e) {
        throw std::runtime_error(what + ": not a readable FAISS index (truncated or corrupt): " + e.what());
    }
}

void report(const GmmFileCheck& c, GmmFileInfo* info, const std::string& what) {
    if (info) {
        *info = c.info;
    } else if (!c.info.note.empty()) {
        std::cerr << "faiss-gmm: note: " << what << ": " << c.info.note << "\n";
    }
}

} // namespace

// ------------------------------------------------------------------ public

GmmTrailer GmmTrailer::of(const faiss::Index* index) {
    GmmTrailer t;
    const GmmQuantizer* q = find_gmm_quantizer(index);
    if (!q) q = dynamic_cast<const GmmQuantizer*>(index);
    if (q && q->model.K > 0) {
        t.has_gmm = true;
        t.model = q->model;
        t.params = q->params;
        // The removed probe rankings' fields stay in the layout, written as off.
    }
    if (const IndexIVFSpill* sp = as_spill_index(index)) {
        t.has_spill = true;
        t.spill = sp->spill;
        t.spill_threshold = sp->threshold;
        t.spill_threshold_set = sp->threshold_set;
        t.spill_ntotal = sp->ntotal;
    }
    return t;
}

size_t ChecksumIOWriter::operator()(const void* ptr, size_t size, size_t nitems) {
    const size_t n = (*out_)(ptr, size, nitems);
    crc_ = crc32c_extend(crc_, ptr, n * size);
    size_ += uint64_t(n) * size;
    return n;
}

void write_gmm_trailer(const GmmTrailer& t, ChecksumIOWriter* w) {
    write_gmm_trailer(t, kTrailerVersion, w);
}

GmmTrailer read_gmm_trailer(faiss::IOReader* r) {
    if (get<uint32_t>(r, "magic") != kTrailerMagic) {
        throw std::runtime_error("bytes after the FAISS index are not a GMM trailer (bad magic)");
    }
    GmmTrailer t;
    read_gmm_part(r, &t);
    return t;
}

GmmFileCheck check_gmm_file(const uint8_t* data, size_t size, const std::string& what) {
    GmmFileCheck c;
    c.size = size;
    if (size == 0) throw std::runtime_error(what + ": empty");
    if (size < kFooterSize) return c;
    const Footer f = decode_footer(data + size - kFooterSize);
    if (!claims_footer(f)) return c;
    try {
        check_footer_fields(f);
    } catch (const std::exception& e) {
        throw std::runtime_error(what + ": " + e.what());
    }
    const uint32_t computed = crc32c_extend(0, data, size - kFooterSize + kFooterCrcOffset);
    finish_check(&c, f, computed,
                 [&](uint64_t offset) {
                     return std::make_unique<SpanReader>(data + offset, size - size_t(offset));
                 },
                 what);
    return c;
}

GmmFileCheck check_gmm_file(std::FILE* f, const std::string& what) {
    GmmFileCheck c;
    auto fail_io = [&](const char* step) {
        throw std::runtime_error(what + ": " + step + " failed: " + std::strerror(errno));
    };
    if (std::fseek(f, 0, SEEK_END) != 0) fail_io("seeking");
    const long end = std::ftell(f);
    if (end < 0) fail_io("telling the size");
    c.size = uint64_t(end);
    if (c.size == 0) throw std::runtime_error(what + " is empty");
    if (c.size >= kFooterSize) {
        uint8_t raw[kFooterSize];
        if (std::fseek(f, long(c.size - kFooterSize), SEEK_SET) != 0) fail_io("seeking");
        if (std::fread(raw, 1, kFooterSize, f) != kFooterSize) fail_io("reading the footer");
        const Footer footer = decode_footer(raw);
        if (claims_footer(footer)) {
            try {
                check_footer_fields(footer);
            } catch (const std::exception& e) {
                throw std::runtime_error(what + ": " + e.what());
            }
            // The CRC over the whole file, in blocks, before anything parses it.
            std::rewind(f);
            std::vector<uint8_t> block(size_t(1) << 20);
            uint64_t left = c.size - kFooterSize + kFooterCrcOffset;
            uint32_t crc = 0;
            while (left > 0) {
                const size_t n = size_t(std::min<uint64_t>(left, block.size()));
                if (std::fread(block.data(), 1, n, f) != n) fail_io("reading");
                crc = crc32c_extend(crc, block.data(), n);
                left -= n;
            }
            struct FileAt : faiss::IOReader {
                std::FILE* f;
                size_t operator()(void* ptr, size_t size, size_t nitems) override {
                    return size == 0 || nitems == 0 ? 0 : std::fread(ptr, size, nitems, f);
                }
            };
            finish_check(&c, footer, crc,
                         [&](uint64_t offset) {
                             if (std::fseek(f, long(offset), SEEK_SET) != 0) fail_io("seeking");
                             auto r = std::make_unique<FileAt>();
                             r->f = f;
                             return r;
                         },
                         what);
        }
    }
    std::rewind(f);
    return c;
}

void read_gmm_trailer_after_faiss(faiss::IOReader* reader, uint64_t position, GmmFileCheck* c,
                                  const std::string& what) {
    if (c->has_footer) {
        if (position != c->info.faiss_size) {
            throw std::runtime_error(what + ": the FAISS part ends at byte " + std::to_string(position) +
                                     ", the checksum footer says " + std::to_string(c->info.faiss_size));
        }
        return;
    }
    // No footer: a plain FAISS file, or an older one whose trailers follow FAISS's part.
    c->info.faiss_size = position;
    if (position >= c->size) return;
    try {
        BoundedReader r(reader, c->size - position);
        uint32_t magic = get<uint32_t>(&r, "magic");
        bool more = true;
        if (magic == kTrailerMagic) {
            c->info.gmm_version = read_gmm_part(&r, &c->trailer);
            if (c->info.gmm_version >= kFirstFooterTrailerVersion) {
                throw std::runtime_error("GMM trailer version " + std::to_string(c->info.gmm_version) +
                                         " without its checksum footer: the file is truncated, or the footer's "
                                         "magic or end marker is damaged");
            }
            more = !r.at_end();
            if (more) magic = get<uint32_t>(&r, "magic");
        }
        if (more) {
            if (magic == kFooterMagic) {
                throw std::runtime_error("damaged checksum footer (truncated file, or bad end marker)");
            }
            if (magic != kSpillMagic) {
                throw std::runtime_error("bytes after the FAISS index are not a GMM or spill trailer (bad magic)");
            }
            c->info.spill_version = read_spill_part(&r, &c->trailer);
            if (c->info.spill_version >= kFirstFooterSpillVersion) {
                throw std::runtime_error("spill trailer version " + std::to_string(c->info.spill_version) +
                                         " without its checksum footer: the file is truncated, or the footer is "
                                         "damaged");
            }
            if (!r.at_end()) throw std::runtime_error("unexpected bytes after the spill trailer");
        }
    } catch (const std::exception& e) {
        throw std::runtime_error(what + ": " + e.what());
    }
    c->info.note = "GMM trailer version " + std::to_string(c->info.gmm_version) +
                   (c->info.spill_version ? ", spill trailer version " + std::to_string(c->info.spill_version) : "") +
                   ": an older format without a checksum, read unverified (write it again to add one)";
}

void install_gmm_trailer(faiss::IndexIVF* ivf, const GmmTrailer& t) {
    check_means(dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer), t.model);
    GmmQuantizer* q = make_quantizer(t);
    if (ivf->own_fields) delete ivf->quantizer;
    ivf->quantizer = q;
    ivf->own_fields = true;
    ivf->quantizer_trains_alone = 1;
}

faiss::Index* apply_gmm_trailer(faiss::Index* index, const GmmTrailer& t) {
    std::unique_ptr<faiss::Index> owner(index);
    if (t.has_gmm) {
        if (faiss::IndexIVF* ivf = find_ivf(index)) {
            install_gmm_trailer(ivf, t);
        } else {
            // A GmmQuantizer saved on its own was written as a flat index.
            check_means(dynamic_cast<const faiss::IndexFlat*>(index), t.model);
            owner.reset(make_quantizer(t));
        }
    }
    if (t.has_spill) {
        auto* sp = new IndexIVFSpill(owner.get(), t.spill, true, /*require_empty=*/false);
        static_cast<void>(owner.release()); // owned by sp now
        owner.reset(sp);
        if (t.spill_ntotal > int64_t(sp->ivf->ntotal)) {
            throw std::runtime_error("spill trailer: ntotal " + std::to_string(t.spill_ntotal) +
                                     " does not fit the lists");
        }
        sp->ntotal = t.spill_ntotal;
        sp->threshold = t.spill_threshold;
        sp->threshold_set = t.spill_threshold_set;
    }
    return owner.release();
}

void write_gmm_index(const faiss::Index* index, faiss::IOWriter* writer) {
    write_all(index, writer, kTrailerVersion);
}

namespace {
/// faiss::IOWriter over an AtomicFile (which throws with the reason itself).
struct AtomicFileIOWriter : faiss::IOWriter {
    AtomicFile* f;
    explicit AtomicFileIOWriter(AtomicFile* file) : f(file) {}
    size_t operator()(const void* ptr, size_t size, size_t nitems) override {
        f->write(ptr, size * nitems);
        return nitems;
    }
};
} // namespace

void write_gmm_index(const faiss::Index* index, const std::string& fname) {
    AtomicFile file(fname);
    AtomicFileIOWriter writer(&file);
    write_gmm_index(index, &writer);
    file.commit();
}

std::vector<uint8_t> serialize_gmm_index(const faiss::Index* index) {
    faiss::VectorIOWriter writer;
    write_gmm_index(index, &writer);
    return std::move(writer.data);
}

faiss::Index* read_gmm_index(const std::string& fname, GmmFileInfo* info) {
    const std::string what = "read_gmm_index: " + fname;
    FILE* f = std::fopen(fname.c_str(), "rb");
    if (!f) throw std::runtime_error("read_gmm_index: cannot open " + fname + ": " + std::strerror(errno));
    faiss::FileIOReader reader(f);
    reader.need_close = true;
    GmmFileCheck c = check_gmm_file(f, what);
    std::unique_ptr<faiss::Index> index(read_faiss_part(&reader, what));
    const long pos = std::ftell(f);
    read_gmm_trailer_after_faiss(&reader, pos < 0 ? 0 : uint64_t(pos), &c, what);
    try {
        index.reset(apply_gmm_trailer(index.release(), c.trailer));
    } catch (const std::exception& e) {
        throw std::runtime_error(what + ": " + e.what());
    }
    report(c, info, fname);
    return index.release();
}

faiss::Index* deserialize_gmm_index(const uint8_t* data, size_t size, GmmFileInfo* info) {
    const std::string what = "deserialize_gmm_index";
    if (size == 0) throw std::runtime_error("deserialize_gmm_index: empty buffer");
    GmmFileCheck c = check_gmm_file(data, size, what);
    // Only the FAISS part goes to FAISS (what follows it is ours).
    SpanReader reader(data, c.has_footer ? size_t(c.info.faiss_size) : size);
    struct Counting : faiss::IOReader {
        faiss::IOReader* in;
        uint64_t pos = 0;
        size_t operator()(void* ptr, size_t s, size_t n) override {
            const size_t got = (*in)(ptr, s, n);
            pos += uint64_t(got) * s;
            return got;
        }
    } counting;
    counting.in = &reader;
    std::unique_ptr<faiss::Index> index(read_faiss_part(&counting, what));
    read_gmm_trailer_after_faiss(&counting, counting.pos, &c, what);
    try {
        index.reset(apply_gmm_trailer(index.release(), c.trailer));
    } catch (const std::exception& e) {
        throw std::runtime_error(what + ": " + e.what());
    }
    report(c, info, what);
    return index.release();
}

namespace detail {
std::vector<uint8_t> serialize_gmm_index_old_format(const faiss::Index* index, uint32_t gmm_trailer_version) {
    if (gmm_trailer_version < 1 || gmm_trailer_version >= kTrailerVersion) {
        throw std::invalid_argument("serialize_gmm_index_old_format: version " + std::to_string(gmm_trailer_version) +
                                    " is not an older one (1 to " + std::to_string(kTrailerVersion - 1) + ")");
    }
    const GmmTrailer t = GmmTrailer::of(index);
    if (t.has_gmm && t.model.covariance_type == CovarianceType::Full &&
        gmm_trailer_version < kFirstFullCovarianceTrailerVersion) {
        throw std::invalid_argument("serialize_gmm_index_old_format: trailer version " +
                                    std::to_string(gmm_trailer_version) + " cannot hold full covariances");
    }
    faiss::VectorIOWriter writer;
    write_all(index, &writer, gmm_trailer_version);
    return std::move(writer.data);
}
} // namespace detail

} // namespace faiss_gmm
