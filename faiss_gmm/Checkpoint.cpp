#include "Checkpoint.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "AtomicFile.h"
#include "GmmTrainer.h"

namespace faiss_gmm {

namespace {

constexpr char kMagic[8] = {'F', 'G', 'M', 'M', 'C', 'K', 'P', 'T'};
constexpr uint32_t kVersion = 1;

uint64_t fnv1a(const uint8_t* p, size_t n, uint64_t h = 1469598103934665603ull) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

struct Writer {
    std::vector<uint8_t> out;
    template <class T>
    void pod(const T& v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        out.insert(out.end(), p, p + sizeof(T));
    }
    template <class T>
    void vec(const std::vector<T>& v) {
        pod(uint64_t(v.size()));
        const auto* p = reinterpret_cast<const uint8_t*>(v.data());
        out.insert(out.end(), p, p + v.size() * sizeof(T));
    }
};

struct Reader {
    const std::vector<uint8_t>& in;
    size_t pos;
    const std::string& where;
    void need(size_t n) const {
        if (n > in.size() - pos) throw std::runtime_error(where + ": checkpoint is truncated");
    }
    template <class T>
    T pod() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, in.data() + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }
    template <class T>
    std::vector<T> vec(size_t expected) {
        const uint64_t n = pod<uint64_t>();
        if (n != expected) throw std::runtime_error(where + ": checkpoint arrays do not match its shape");
        need(n * sizeof(T));
        std::vector<T> v(n);
        std::memcpy(v.data(), in.data() + pos, n * sizeof(T));
        pos += n * sizeof(T);
        return v;
    }
};

} // namespace

std::vector<uint8_t> serialize_checkpoint(const TrainingCheckpoint& c) {
    Writer w;
    w.out.insert(w.out.end(), kMagic, kMagic + sizeof(kMagic));
    w.pod(kVersion);
    w.pod(c.run_fingerprint);
    w.pod(int32_t(c.iterations_done));
    w.pod(c.prev_loglik);
    w.pod(int32_t(c.total_splits));
    w.pod(int32_t(c.total_floored));
    w.vec(std::vector<char>(c.split_rng_state.begin(), c.split_rng_state.end()));
    w.pod(uint64_t(c.iteration_stats.size()));
    for (const GmmIterationStats& s : c.iteration_stats) {
        w.pod(int32_t(s.iteration));
        w.pod(s.loglik);
        w.pod(s.time_s);
        w.pod(s.estep_time_s);
        w.pod(s.imbalance_factor);
        w.pod(int32_t(s.nsplit));
        w.pod(int32_t(s.nfloored));
    }
    w.pod(c.model.K);
    w.pod(c.model.d);
    w.pod(int32_t(c.model.covariance_type));
    w.vec(c.model.log_weights);
    w.vec(c.model.means);
    w.vec(c.model.variances);
    w.pod(fnv1a(w.out.data(), w.out.size()));
    return std::move(w.out);
}

TrainingCheckpoint parse_checkpoint(const std::vector<uint8_t>& bytes, const std::string& where) {
    if (bytes.size() < sizeof(kMagic) + sizeof(uint32_t) + sizeof(uint64_t) ||
        std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
        throw std::runtime_error(where + ": not a faiss-gmm checkpoint (bad magic or too short)");
    }
    uint64_t stored = 0;
    std::memcpy(&stored, bytes.data() + bytes.size() - sizeof(stored), sizeof(stored));
    if (fnv1a(bytes.data(), bytes.size() - sizeof(stored)) != stored) {
        throw std::runtime_error(where + ": checkpoint checksum mismatch (the file is corrupt or truncated)");
    }
    Reader r{bytes, sizeof(kMagic), where};
    const uint32_t version = r.pod<uint32_t>();
    if (version != kVersion) {
        throw std::runtime_error(where + ": checkpoint version " + std::to_string(version) + ", this build reads " +
                                 std::to_string(kVersion));
    }
    TrainingCheckpoint c;
    c.run_fingerprint = r.pod<uint64_t>();
    c.iterations_done = r.pod<int32_t>();
    c.prev_loglik = r.pod<double>();
    c.total_splits = r.pod<int32_t>();
    c.total_floored = r.pod<int32_t>();
    const uint64_t rng_bytes = r.pod<uint64_t>();
    r.pos -= sizeof(uint64_t);
    const std::vector<char> rng = r.vec<char>(size_t(rng_bytes));
    c.split_rng_state.assign(rng.begin(), rng.end());
    const uint64_t nstats = r.pod<uint64_t>();
    if (nstats != uint64_t(c.iterations_done)) throw std::runtime_error(where + ": checkpoint statistics are inconsistent");
    for (uint64_t i = 0; i < nstats; i++) {
        GmmIterationStats s;
        s.iteration = r.pod<int32_t>();
        s.loglik = r.pod<double>();
        s.time_s = r.pod<double>();
        s.estep_time_s = r.pod<double>();
        s.imbalance_factor = r.pod<double>();
        s.nsplit = r.pod<int32_t>();
        s.nfloored = r.pod<int32_t>();
        c.iteration_stats.push_back(s);
    }
    const int64_t K = r.pod<int64_t>(), d = r.pod<int64_t>();
    const int32_t type = r.pod<int32_t>();
    // Types 0-2 (spherical, diagonal, full); a full model holds K·d·d values, so the
    // size limit is checked on d² then (every shape checked before anything is allocated).
    const bool known_type = type == int32_t(CovarianceType::Spherical) || type == int32_t(CovarianceType::Diagonal) ||
                            type == int32_t(CovarianceType::Full);
    const int64_t per_component = type == int32_t(CovarianceType::Full) && d > 0 && d < (int64_t(1) << 20) ? d * d : d;
    if (K < 1 || d < 1 || !known_type || d >= (int64_t(1) << 20) || K > (int64_t(1) << 40) / per_component) {
        throw std::runtime_error(where + ": checkpoint has an invalid model shape");
    }
    c.model = GmmModel(K, d, CovarianceType(type));
    c.model.log_weights = r.vec<float>(c.model.log_weights.size());
    c.model.means = r.vec<float>(c.model.means.size());
    c.model.variances = r.vec<float>(c.model.variances.size());
    if (r.pos + sizeof(uint64_t) != bytes.size()) throw std::runtime_error(where + ": checkpoint has trailing bytes");
    c.model.validate();
    return c;
}

void write_file_atomically(const std::string& path, const std::vector<uint8_t>& bytes) {
    // One implementation of atomic replacement for the project (AtomicFile.h).
    write_file_atomically(path, bytes.data(), bytes.size());
}

std::vector<uint8_t> read_whole_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

uint64_t run_fingerprint(const GmmParams& p, int64_t K, int64_t d, int64_t n_train, const std::vector<double>& mean,
                         double data_variance) {
    Writer w;
    w.pod(K);
    w.pod(d);
    w.pod(n_train);
    w.vec(mean);
    w.pod(data_variance);
    w.pod(int32_t(p.covariance_type));
    w.pod(int32_t(p.init));
    w.pod(p.seed);
    w.pod(p.tol);
    w.pod(p.reg_covar);
    w.pod(p.min_variance_ratio);
    w.pod(p.min_component_weight);
    w.pod(int32_t(p.max_points_per_centroid));
    w.pod(int32_t(p.init_niter));
    w.pod(int32_t(p.block_size));
    return fnv1a(w.out.data(), w.out.size());
}

} // namespace faiss_gmm
