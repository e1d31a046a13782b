#include "Evaluation.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <map>
#include <mutex>
#include <sstream>
#include <sys/stat.h>
#include <regex>
#include <stdexcept>

#include <faiss/IndexIVF.h>
#include <faiss/index_factory.h>

#include <faiss_gmm/AtomicFile.h>
#include <faiss_gmm/Crc32c.h>
#include <faiss_gmm/GmmQuantizer.h>
#include <faiss_gmm/IndexIVFSpill.h>
#include <faiss_gmm/gmm_index_factory.h>
#include <faiss_gmm/gmm_io.h>
#include <faiss_gmm/ivf_lookup.h>
#include <faiss_gmm/ivf_token.h>

#include "CostCounter.h"
#include "Curve.h"
#include "Recall.h"

namespace faiss_gmm {
namespace eval {

using idx_t = faiss::Index::idx_t;

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// FAISS k-means subsamples to nlist * max_points_per_centroid rows; 0 means every row here
// (as for GmmParams), which FAISS spells as a bound no data set reaches.
int kmeans_max_points(const EvalParams& p) {
    return p.max_points_per_centroid > 0 ? p.max_points_per_centroid : (1 << 30);
}

std::unique_ptr<faiss::Index> make_kmeans(int64_t d, const EvalParams& p, std::string* desc) {
    const std::string faiss_desc = parse_ivf_description(p.index_description).faiss_description; // without our options
    *desc = faiss_desc;
    std::unique_ptr<faiss::Index> index(faiss::index_factory(int(d), faiss_desc.c_str(), faiss::METRIC_L2));
    faiss::IndexIVF* ivf = faiss_gmm::find_ivf(index.get());
    if (!ivf) {
        throw std::invalid_argument("'" + faiss_desc + "' has no IVF part");
    }
    ivf->cp.niter = p.kmeans_niter;
    ivf->cp.seed = int(p.seed);
    ivf->cp.max_points_per_centroid = kmeans_max_points(p);
    return index;
}

IndexMaker gmm_maker(CovarianceType type, const char* suffix) {
    return [type, suffix](int64_t d, const EvalParams& p, std::string* desc) {
        GmmParams gp = p.gmm;
        gp.covariance_type = type;
        gp.seed = p.seed;
        gp.max_points_per_centroid = p.max_points_per_centroid;
        *desc = with_ivf_suffix(p.index_description, suffix);
        return std::unique_ptr<faiss::Index>(gmm_index_factory(int(d), *desc, faiss::METRIC_L2, gp));
    };
}

// The IVF-token options of a "<base>_<options>" method: "GMM_spill1.2" for gmm_spill1.2.
std::string method_options(const std::string& base, const std::string& options) {
    if (base == "kmeans") return options;
    return (base == "gmm" ? "GMM_" : base == "gmmdiag" ? "GMMdiag_" : "GMMfull_") + options;
}

// Spill / probing variants (issue 6): "<base>_<options>" with base kmeans, gmm or
// gmmdiag / gmmfull and the IVF-token options of gmm_index_factory ("kmeans_spill1.2" =
// IVF<n>_spill1.2: k-means + distance-ratio spill at 1.2 entries per vector;
// "gmm_soar_spill1.5" = IVF<n>_GMM_soar_spill1.5). The k-means ones get
// the baseline's k-means settings, the GMM ones the GMM settings.
IndexMaker option_maker(const std::string& base, const std::string& options) {
    return [base, options](int64_t d, const EvalParams& p, std::string* desc) {
        GmmParams gp = p.gmm;
        gp.seed = p.seed;
        gp.max_points_per_centroid = p.max_points_per_centroid;
        *desc = with_ivf_options(p.index_description, method_options(base, options));
        std::unique_ptr<faiss::Index> index(gmm_index_factory(int(d), *desc, faiss::METRIC_L2, gp));
        if (base == "kmeans") {
            faiss::IndexIVF* ivf = faiss_gmm::find_ivf(index.get());
            ivf->cp.niter = p.kmeans_niter;
            ivf->cp.seed = int(p.seed);
            ivf->cp.max_points_per_centroid = kmeans_max_points(p);
        }
        return index;
    };
}

std::mutex registry_mutex;
std::map<std::string, IndexMaker>& registry() {
    static std::map<std::string, IndexMaker> r = {
            {"kmeans", make_kmeans},
            {"gmm", gmm_maker(CovarianceType::Spherical, "_GMM")},
            {"gmmdiag", gmm_maker(CovarianceType::Diagonal, "_GMMdiag")},
            {"gmmfull", gmm_maker(CovarianceType::Full, "_GMMfull")},
            // The equal-memory comparison; any other "<base>_<options>" name works too.
            {"kmeans_spill1.2", option_maker("kmeans", "spill1.2")},
            {"kmeans_spill1.5", option_maker("kmeans", "spill1.5")},
            {"gmm_spill1.2", option_maker("gmm", "spill1.2")},
            {"gmm_spill1.5", option_maker("gmm", "spill1.5")},
    };
    return r;
}

// Registered, or of the form <kmeans|gmm|gmmdiag|gmmfull>_<IVF options>; needs registry_mutex held.
bool lookup_method(const std::string& name, IndexMaker* maker) {
    auto it = registry().find(name);
    if (it != registry().end()) {
        if (maker) *maker = it->second;
        return true;
    }
    static const std::regex variant("^(kmeans|gmmdiag|gmmfull|gmm)_([A-Za-z0-9._-]+)$");
    std::smatch m;
    if (!std::regex_match(name, m, variant)) return false;
    const std::string base = m[1].str(), options = m[2].str();
    try {
        if (!parse_ivf_description(with_ivf_options("IVF8,Flat", method_options(base, options))).found) return false;
    } catch (const std::invalid_argument&) {
        return false;
    }
    if (maker) *maker = option_maker(base, options);
    return true;
}

// The coarse lists IndexIVF::search would probe: the queries go through the
// same pre-transforms, then the quantizer's search (as IndexIVF::search does).
const faiss::IndexIVF* coarse_lists(const faiss::Index* index, idx_t nq, const float* x, idx_t nprobe,
                                    std::vector<idx_t>& lists) {
    const IvfPath path = find_ivf_path(const_cast<faiss::Index*>(index)); // only read
    if (!path.ivf) {
        throw std::invalid_argument("cost counting: the index has no IVF part reachable through "
                                    "IndexPreTransform / IndexIDMap / IndexRefine / IndexIVFSpill");
    }
    std::unique_ptr<const float[]> owned;
    const float* xt = path.to_ivf_space(nq, x, owned);
    lists.resize(size_t(nq) * nprobe);
    std::vector<float> dis(size_t(nq) * nprobe);
    path.ivf->quantizer->search(nq, xt, nprobe, dis.data(), lists.data());
    return path.ivf;
}

// The trained coarse quantizer of a method, for the later methods of the same
// evaluate() call that train the same one: spill and probing variants differ only
// in add / search, and the k-means and EM runs are deterministic for a seed, so
// training once is the same as training again (it saves most of the time at 1M
// vectors). Keyed by the quantizer kind (k-means, spherical or diagonal GMM); not
// used behind a pre-transform, whose training would have to be reproduced too.
struct TrainedQuantizer {
    std::string method;            ///< the method that trained it
    std::vector<float> centroids;  ///< k-means
    GmmModel model;                ///< GMM (K > 0)
};

std::string quantizer_key(const faiss::Index* index) {
    const IvfPath path = find_ivf_path(const_cast<faiss::Index*>(index)); // only read
    const faiss::IndexIVF* ivf = path.ivf;
    if (!ivf || !path.transforms.empty()) return "";
    const std::string nl = std::to_string(ivf->nlist) + "/" + std::to_string(ivf->d);
    if (auto* q = dynamic_cast<const GmmQuantizer*>(ivf->quantizer)) {
        return std::string("gmm-") + to_string(q->params.covariance_type) + "/" + nl;
    }
    return dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer) ? "kmeans/" + nl : "";
}

// Installs a cached quantizer so that IndexIVF::train skips its own training
// (train_q1: a trained quantizer holding nlist centroids) and trains only the codes.
bool install_cached(faiss::Index* index, const TrainedQuantizer& t) {
    faiss::IndexIVF* ivf = faiss_gmm::find_ivf(index);
    if (auto* q = dynamic_cast<GmmQuantizer*>(ivf->quantizer)) {
        if (t.model.K == 0) return false;
        q->set_model(t.model);
        return true;
    }
    auto* flat = dynamic_cast<faiss::IndexFlat*>(ivf->quantizer);
    if (!flat || t.centroids.empty()) return false;
    flat->reset();
    flat->add(idx_t(ivf->nlist), t.centroids.data());
    return true;
}

TrainedQuantizer snapshot(const std::string& method, const faiss::Index* index) {
    TrainedQuantizer t;
    t.method = method;
    const faiss::IndexIVF* ivf = faiss_gmm::find_ivf(index);
    if (auto* q = dynamic_cast<const GmmQuantizer*>(ivf->quantizer)) {
        t.model = q->model;
    } else if (auto* flat = dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer)) {
        t.centroids.assign(flat->get_xb(), flat->get_xb() + size_t(flat->ntotal) * flat->d);
    }
    return t;
}

// ---- the on-disk quantizer cache (EvalParams::quantizer_cache) ----
// FILE = <folder>/<kind>-<64-bit FNV-1a of the key>.index holds the quantizer as write_gmm_index writes
// it (a GmmQuantizer on its own, or FAISS's IndexFlat of the centroids); FILE.key holds the key, a line
// "--", then who trained it and how long it took. A file is used only when its key is the one asked for,
// byte for byte, so a changed base or setting is a miss (and overwrites the entry), never a wrong reuse.

std::string cache_file(const std::string& folder, const std::string& key) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
    std::string kind = key.substr(0, key.find('\n'));
    kind = kind.substr(kind.find('=') + 1);
    for (char& c : kind) {
        if (c == '/') c = '-';
    }
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
    return folder + "/" + kind + "-" + hex + ".index";
}

// The cached quantizer for `key`, or false (no entry, or one written for another key).
bool load_cached(const std::string& folder, const std::string& key, TrainedQuantizer* t) {
    const std::string file = cache_file(folder, key);
    std::ifstream kf(file + ".key");
    if (!kf) return false;
    std::stringstream all;
    all << kf.rdbuf();
    const std::string text = all.str();
    const size_t sep = text.find("--\n");
    if (sep != key.size() || text.compare(0, sep, key) != 0) return false;
    std::unique_ptr<faiss::Index> q(read_gmm_index(file));
    *t = TrainedQuantizer();
    if (auto* g = dynamic_cast<const GmmQuantizer*>(q.get())) {
        t->model = g->model;
    } else if (auto* flat = dynamic_cast<const faiss::IndexFlat*>(q.get())) {
        t->centroids.assign(flat->get_xb(), flat->get_xb() + size_t(flat->ntotal) * flat->d);
    } else {
        throw std::runtime_error(file + ": not a coarse quantizer of the quantizer cache");
    }
    std::string info = text.substr(sep + 3);
    while (!info.empty() && info.back() == '\n') info.pop_back();
    t->method = "cache: " + file + " (" + info + ")";
    return true;
}

void save_cached(const std::string& folder, const std::string& key, const faiss::Index* index,
                 const std::string& method, double train_s) {
    mkdir(folder.c_str(), 0777); // may exist; the writes below say if it is unusable
    const std::string file = cache_file(folder, key);
    write_gmm_index(faiss_gmm::find_ivf(index)->quantizer, file);
    std::ostringstream info;
    info << key << "--\ntrained by " << method << " in " << std::fixed << std::setprecision(1) << train_s << " s\n";
    const std::string text = info.str();
    AtomicFile kf(file + ".key");
    kf.write(text.data(), text.size());
    kf.commit();
}

} // namespace

std::string quantizer_cache_key(const faiss::Index* index, int64_t nb, uint32_t base_crc32c) {
    const std::string kind = quantizer_key(index);
    if (kind.empty()) return "";
    std::ostringstream k;
    k << std::setprecision(17);
    k << "quantizer=" << kind << "\nbase=" << nb << " rows, crc32c " << base_crc32c << "\n";
    const faiss::IndexIVF* ivf = faiss_gmm::find_ivf(index);
    if (auto* q = dynamic_cast<const GmmQuantizer*>(ivf->quantizer)) {
        const GmmParams& g = q->params;
        k << "gmm: covariance " << to_string(g.covariance_type) << ", niter " << g.niter << ", tol " << g.tol
          << ", seed " << g.seed << ", init " << to_string(g.init) << ", init_niter " << g.init_niter
          << ", max_points_per_centroid " << g.max_points_per_centroid << ", min_variance_ratio "
          << g.min_variance_ratio << ", reg_covar " << g.reg_covar << ", min_component_weight "
          << g.min_component_weight << ", device " << to_string(g.device) << ", fast_math " << g.fast_math << "\n";
    } else {
        const faiss::ClusteringParameters& cp = ivf->cp;
        k << "kmeans: niter " << cp.niter << ", nredo " << cp.nredo << ", seed " << cp.seed << ", spherical "
          << cp.spherical << ", int_centroids " << cp.int_centroids << ", max_points_per_centroid "
          << cp.max_points_per_centroid << ", metric " << int(ivf->metric_type) << "\n";
    }
    return k.str();
}

void register_method(const std::string& name, IndexMaker maker) {
    std::lock_guard<std::mutex> lock(registry_mutex);
    registry()[name] = std::move(maker);
}

bool is_method(const std::string& name) {
    std::lock_guard<std::mutex> lock(registry_mutex);
    return lookup_method(name, nullptr);
}

std::vector<std::string> registered_methods() {
    std::lock_guard<std::mutex> lock(registry_mutex);
    std::vector<std::string> names;
    for (const auto& kv : registry()) {
        names.push_back(kv.first);
    }
    return names;
}

std::string with_ivf_suffix(const std::string& description, const std::string& suffix) {
    return with_ivf_options(description, suffix.empty() || suffix[0] != '_' ? suffix : suffix.substr(1));
}

int64_t nlist_of(const std::string& description) {
    const int64_t nlist = parse_ivf_description(description).nlist;
    if (nlist == 0) throw std::invalid_argument("index description '" + description + "' has no IVF<nlist> token");
    return nlist;
}

std::vector<SweepPoint> sweep_nprobe(faiss::Index* index, const datasets::Dataset& data, const EvalParams& p,
                                     const std::string& label) {
    faiss::IndexIVF* ivf = faiss_gmm::find_ivf(index); // sees through IndexIVFSpill too
    if (!ivf) {
        throw std::invalid_argument("sweep_nprobe: the index has no IVF part");
    }
    const int64_t nlist = int64_t(ivf->nlist);
    const int64_t nq = data.queries.n, d = data.d(), k = p.k;
    if (data.groundtruth.d < k) {
        throw std::invalid_argument("k = " + std::to_string(k) + " but the ground truth has only " +
                                    std::to_string(data.groundtruth.d) + " neighbours");
    }
    if (data.groundtruth.n != nq) {
        throw std::invalid_argument("ground truth rows != number of queries");
    }
    std::vector<int64_t> nprobes = p.nprobes;
    if (nprobes.empty()) {
        for (int64_t np = 1; np < nlist; np *= 2) {
            nprobes.push_back(np);
        }
        nprobes.push_back(nlist);
    }
    // Distances in the dataset's own metric (Angular: 1 − cos, on the normalized vectors).
    const datasets::Metric metric = data.metric;
    std::vector<double> thresholds = kth_distances(metric, d, data.base.data.data(), data.base.n, nq,
                                                   data.queries.data.data(), int(k), data.groundtruth.data.data(),
                                                   data.groundtruth.d);
    CostCounter counter(ivf->invlists);
    std::vector<SweepPoint> points;
    std::vector<float> D(size_t(nq) * k);
    std::vector<idx_t> I(size_t(nq) * k);
    const int saved_threads = omp_get_max_threads();
    for (int64_t np : nprobes) {
        if (np < 1 || np > nlist) {
            if (p.verbose) {
                std::fprintf(stderr, "  %s: nprobe %ld skipped (nlist %ld)\n", label.c_str(), long(np), long(nlist));
            }
            continue;
        }
        ivf->nprobe = size_t(np);
        SweepPoint pt;
        pt.nprobe = np;
        // Timed search (QPS) at search_threads; the fastest of the repeats.
        pt.search_s = INFINITY;
        faiss::indexIVF_stats.reset();
        omp_set_num_threads(p.search_threads > 0 ? p.search_threads : saved_threads);
        for (int r = 0; r < std::max(1, p.search_repeats); r++) {
            double t0 = now_s();
            index->search(nq, data.queries.data.data(), k, D.data(), I.data());
            pt.search_s = std::min(pt.search_s, now_s() - t0);
        }
        omp_set_num_threads(saved_threads);
        pt.faiss_ndis = faiss::indexIVF_stats.nq > 0
                ? double(faiss::indexIVF_stats.ndis) / double(faiss::indexIVF_stats.nq)
                : -1;
        pt.qps = nq / std::max(pt.search_s, 1e-9);

        pt.recall = recall_at_k(nq, int(k), I.data(), k, data.groundtruth.data.data(), data.groundtruth.d);
        // ann-benchmarks recall: true distances of the returned ids against the k-th true distance.
        std::vector<double> rd = result_distances(metric, d,
                data.base.data.data(), data.base.n, nq, data.queries.data.data(), int(k), I.data(), k);
        pt.recall_dist = distance_recall(nq, int(k), I.data(), k, rd.data(), k, thresholds.data());

        // Cost, from the probed lists' ids.
        std::vector<idx_t> lists;
        const faiss::IndexIVF* civf = coarse_lists(index, nq, data.queries.data.data(), np, lists);
        pt.coarse = double(civf->quantizer->ntotal); // a flat quantizer compares with every centroid
        MeanCost mc = mean_cost(counter.count(nq, np, lists.data()));
        pt.lists = mc.nprobe;
        pt.entries = mc.entries;
        pt.distinct = mc.distinct;
        points.push_back(pt);
        if (p.verbose) {
            std::fprintf(stderr,
                         "  %-8s nprobe %5ld  recall@%ld %.4f (dist %.4f)  entries %9.1f  distinct %9.1f  "
                         "QPS %9.1f\n",
                         label.c_str(), long(np), long(k), pt.recall, pt.recall_dist, pt.entries, pt.distinct, pt.qps);
        }
        if (pt.recall >= p.stop_recall) {
            break;
        }
    }
    return points;
}

void compare_methods(EvalReport& report) {
    report.comparisons.clear();
    const MethodResult* base = nullptr;
    for (const MethodResult& m : report.methods) {
        if (m.method == report.params.baseline) {
            base = &m;
        }
    }
    if (!base) {
        return;
    }
    auto curve = [](const MethodResult& m, bool distinct, std::vector<double>& cost, std::vector<double>& rec) {
        cost.clear();
        rec.clear();
        for (const SweepPoint& pt : m.points) {
            cost.push_back(std::max(distinct ? pt.distinct : pt.entries, 1e-9));
            rec.push_back(pt.recall);
        }
    };
    for (const MethodResult& m : report.methods) {
        if (&m == base) {
            continue;
        }
        Comparison c;
        c.baseline = base->method;
        c.method = m.method;
        std::vector<double> bc, br, mc, mr;
        for (double target : report.params.recall_targets) {
            TargetRatio t;
            t.target = target;
            bool f1, f2, f3, f4;
            curve(*base, false, bc, br);
            curve(m, false, mc, mr);
            t.base_entries = cost_at_recall(bc, br, target, &f1);
            t.method_entries = cost_at_recall(mc, mr, target, &f2);
            curve(*base, true, bc, br);
            curve(m, true, mc, mr);
            t.base_distinct = cost_at_recall(bc, br, target, &f3);
            t.method_distinct = cost_at_recall(mc, mr, target, &f4);
            t.ratio_entries = t.method_entries / t.base_entries;
            t.ratio_distinct = t.method_distinct / t.base_distinct;
            t.bound = f1 || f2 || f3 || f4;
            c.targets.push_back(t);
        }
        curve(*base, true, bc, br);
        curve(m, true, mc, mr);
        double sum = 0;
        int cnt = 0;
        for (size_t i = 0; i < base->points.size(); i++) {
            CostMatchedGain g;
            g.base_nprobe = base->points[i].nprobe;
            g.cost = bc[i];
            g.base_recall = br[i];
            g.method_recall = recall_at_cost(mc, mr, bc[i]);
            g.gain = g.method_recall - g.base_recall;
            if (!std::isnan(g.gain)) {
                sum += g.gain;
                cnt++;
            }
            c.gains.push_back(g);
        }
        c.mean_gain = cnt ? sum / cnt : NAN;
        report.comparisons.push_back(c);
    }
}

namespace {

// QPS of every sweep point again, in rounds that visit each method in turn: on a
// shared machine the load drifts over an hour-long run, which would otherwise be
// charged to whichever method happened to be swept at a busy moment.
void time_interleaved(const std::vector<std::unique_ptr<faiss::Index>>& indexes, const datasets::Dataset& data,
                      const EvalParams& p, EvalReport& report) {
    const int64_t nq = std::min<int64_t>(data.queries.n, std::max<int64_t>(1, p.timing_queries));
    std::vector<float> D(size_t(nq) * p.k);
    std::vector<idx_t> I(size_t(nq) * p.k);
    const int saved_threads = omp_get_max_threads();
    for (MethodResult& m : report.methods) {
        for (SweepPoint& pt : m.points) pt.search_s = INFINITY;
    }
    for (int round = 0; round < p.timing_rounds; round++) {
        for (size_t mi = 0; mi < indexes.size(); mi++) {
            faiss::IndexIVF* ivf = faiss_gmm::find_ivf(indexes[mi].get());
            for (SweepPoint& pt : report.methods[mi].points) {
                ivf->nprobe = size_t(pt.nprobe);
                omp_set_num_threads(p.search_threads > 0 ? p.search_threads : saved_threads);
                const double t0 = now_s();
                indexes[mi]->search(nq, data.queries.data.data(), p.k, D.data(), I.data());
                const double t = now_s() - t0;
                omp_set_num_threads(saved_threads);
                pt.search_s = std::min(pt.search_s, t);
                pt.qps = double(nq) / std::max(pt.search_s, 1e-9);
            }
        }
        if (p.verbose) {
            std::fprintf(stderr, "[%s] timing round %d/%d done (%ld queries per search)\n", data.name.c_str(),
                         round + 1, p.timing_rounds, long(nq));
        }
    }
}

} // namespace

EvalReport evaluate(const datasets::Dataset& data, const EvalParams& p) {
    if (p.k < 1) {
        throw std::invalid_argument("evaluate: k must be >= 1");
    }
    if (data.groundtruth.d < p.k) {
        throw std::invalid_argument("evaluate: k = " + std::to_string(p.k) + " but the ground truth of " +
                                    data.name + " has " + std::to_string(data.groundtruth.d) + " neighbours");
    }
    std::vector<std::pair<std::string, IndexMaker>> makers;
    {
        std::lock_guard<std::mutex> lock(registry_mutex);
        for (const std::string& m : p.methods) {
            IndexMaker maker;
            if (!lookup_method(m, &maker)) {
                std::string known;
                for (const auto& kv : registry()) {
                    known += " " + kv.first;
                }
                throw std::invalid_argument("unknown method '" + m + "' (known:" + known + ")");
            }
            makers.emplace_back(m, maker);
        }
    }
    nlist_of(p.index_description); // validates the description before any work
    if (data.metric == datasets::Metric::InnerProduct) {
        throw std::invalid_argument("evaluate: GMM densities are Euclidean; evaluate inner-product data as "
                                    "angular (normalized, L2) or L2");
    }
    EvalReport report;
    report.dataset = data.name;
    report.metric = datasets::to_string(data.metric);
    report.nb = data.base.n;
    report.nq = data.queries.n;
    report.d = data.d();
    report.k = p.k;
    report.groundtruth_computed = data.groundtruth_computed;
    report.groundtruth_s = data.groundtruth_time_s;
    report.params = p;
    report.train_threads = omp_get_max_threads();
    std::map<std::string, TrainedQuantizer> trained;
    std::vector<std::unique_ptr<faiss::Index>> kept; // for the timing rounds
    const bool use_cache = p.share_quantizers && !p.quantizer_cache.empty();
    const uint32_t base_crc = use_cache ? crc32c_extend(0, data.base.data.data(), data.base.data.size() * sizeof(float))
                                        : 0;
    for (const auto& mk : makers) {
        MethodResult r;
        r.method = mk.first;
        std::unique_ptr<faiss::Index> index = mk.second(data.d(), p, &r.description);
        const std::string key = p.share_quantizers ? quantizer_key(index.get()) : "";
        const std::string cache_key = use_cache ? quantizer_cache_key(index.get(), data.base.n, base_crc) : "";
        if (!cache_key.empty() && !trained.count(key)) {
            TrainedQuantizer from_disk;
            if (load_cached(p.quantizer_cache, cache_key, &from_disk)) trained[key] = from_disk;
        }
        auto cached = key.empty() ? trained.end() : trained.find(key);
        if (cached != trained.end() && install_cached(index.get(), cached->second)) {
            r.quantizer_from = cached->second.method;
        }
        if (p.verbose) {
            std::fprintf(stderr, "[%s] %s: training %s on %ld x %ld%s ...\n", data.name.c_str(), r.method.c_str(),
                         r.description.c_str(), long(data.base.n), long(data.d()),
                         r.quantizer_from.empty() ? "" : (" (coarse quantizer of " + r.quantizer_from + ")").c_str());
        }
        if (p.progress) {
            p.progress(r.method + ": training " + r.description +
                       (r.quantizer_from.empty() ? "" : " (coarse quantizer of " + r.quantizer_from + ")"));
        }
        double t0 = now_s();
        index->train(data.base.n, data.base.data.data());
        r.train_s = now_s() - t0;
        if (!key.empty() && r.quantizer_from.empty()) {
            trained[key] = snapshot(r.method, index.get());
            if (!cache_key.empty()) save_cached(p.quantizer_cache, cache_key, index.get(), r.method, r.train_s);
        }
        t0 = now_s();
        index->add(data.base.n, data.base.data.data());
        r.add_s = now_s() - t0;
        faiss::IndexIVF* ivf = faiss_gmm::find_ivf(index.get());
        if (!ivf) {
            throw std::invalid_argument(r.description + ": no IVF part");
        }
        r.nlist = int64_t(ivf->nlist);
        r.ntotal = int64_t(CostCounter(ivf->invlists).total_entries());
        r.invlists_bytes = invlists_bytes(ivf->invlists);
        r.imbalance = invlists_imbalance(ivf->invlists);
        if (p.verbose) {
            std::fprintf(stderr, "[%s] %s: trained in %.2f s, added in %.2f s, imbalance %.3f; nprobe sweep:\n",
                         data.name.c_str(), r.method.c_str(), r.train_s, r.add_s, r.imbalance);
        }
        if (p.progress) {
            char line[160];
            std::snprintf(line, sizeof(line), "%s: trained in %.1f s, added in %.1f s; nprobe sweep", r.method.c_str(),
                          r.train_s, r.add_s);
            p.progress(line);
        }
        r.points = sweep_nprobe(index.get(), data, p, r.method);
        if (p.progress) p.progress(r.method + ": sweep done");
        report.methods.push_back(std::move(r));
        if (p.timing_rounds > 0) kept.push_back(std::move(index));
    }
    if (p.timing_rounds > 0) time_interleaved(kept, data, p, report);
    compare_methods(report);
    return report;
}

} // namespace eval
} // namespace faiss_gmm
