// faiss-gmm info FILE: what an index or model file holds, read through
// faiss_gmm::read_gmm_index (which verifies the checksum footer before anything
// parses the file): the FAISS index type (and what it wraps), d, ntotal, metric,
// the IVF's nlist and list entries, the GMM (K, d, covariance, training
// parameters), the spill settings, the trailer versions and whether the checksum
// was verified. One "key: value" line each, so that scripts can read it.
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <typeinfo>

#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>

#include "cli/Commands.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/IndexIVFSpill.h"
#include "faiss_gmm/gmm_io.h"

namespace faiss_gmm {
namespace cli {
namespace {

std::string usage(const Invocation& inv) {
    return "usage: " + inv.prog() +
           " FILE\n"
           "What an index or model file written by faiss-gmm (or any FAISS index file) holds: the FAISS index\n"
           "type, d, ntotal, nlist, the GMM (K, d, covariance, training parameters), the spill settings, the\n"
           "trailer versions and whether the checksum was verified. (A vector file: faiss-gmm dataset info FILE.)\n" +
           inv.alias_note();
}

/// "faiss::IndexIVFFlat" for an object of that dynamic type.
std::string type_name(const faiss::Index& index) {
    const char* mangled = typeid(index).name();
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> demangled(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
    return status == 0 && demangled ? demangled.get() : mangled;
}

/// The type, then what it wraps: "faiss_gmm::IndexIVFSpill > faiss::IndexIVFFlat".
std::string type_chain(const faiss::Index* index) {
    std::string out = type_name(*index);
    const faiss::Index* inner = nullptr;
    if (auto* sp = as_spill_index(index)) {
        inner = sp->index;
    } else if (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(index)) {
        out += " (" + std::to_string(pt->chain.size()) + " transform(s))";
        inner = pt->index;
    } else if (auto* idmap = dynamic_cast<const faiss::IndexIDMap*>(index)) {
        inner = idmap->index;
    } else if (auto* refine = dynamic_cast<const faiss::IndexRefine*>(index)) {
        inner = refine->base_index;
    }
    return inner ? out + " > " + type_chain(inner) : out;
}

const char* metric_name(faiss::MetricType m) {
    switch (m) {
        case faiss::METRIC_L2:
            return "L2";
        case faiss::METRIC_INNER_PRODUCT:
            return "inner product";
        default:
            return "other";
    }
}

void print_info(const std::string& path, const faiss::Index* index, const GmmFileInfo& info) {
    std::printf("file: %s\n", path.c_str());
    if (info.verified) {
        std::printf("checksum: verified (CRC-32C footer)\n");
    } else {
        std::printf("checksum: not verified (%s)\n", info.note.empty() ? "no checksum footer" : info.note.c_str());
    }
    std::printf("gmm trailer version: %u%s\n", info.gmm_version, info.gmm_version ? "" : " (none)");
    std::printf("spill trailer version: %u%s\n", info.spill_version, info.spill_version ? "" : " (none)");
    std::printf("faiss part: %llu bytes\n", (unsigned long long)info.faiss_size);
    std::printf("index type: %s\n", type_chain(index).c_str());
    std::printf("d: %d\n", int(index->d));
    std::printf("ntotal: %lld\n", (long long)index->ntotal);
    std::printf("metric: %s\n", metric_name(index->metric_type));
    std::printf("trained: %s\n", index->is_trained ? "yes" : "no");
    if (const faiss::IndexIVF* ivf = find_ivf(index)) {
        std::printf("nlist: %zu\n", ivf->nlist);
        std::printf("nprobe: %zu\n", ivf->nprobe);
        std::printf("code size: %zu bytes\n", ivf->code_size);
        std::printf("coarse quantizer: %s\n", type_name(*ivf->quantizer).c_str());
    }
    const GmmTrailer t = GmmTrailer::of(index);
    if (t.has_gmm) {
        const GmmParams& p = t.params;
        std::printf("gmm: K %lld, d %lld, %s covariance\n", (long long)t.model.K, (long long)t.model.d,
                    to_string(t.model.covariance_type));
        std::printf("gmm params: niter %d, tol %g, seed %lld, init %s (%d iterations), max_points_per_centroid %d, "
                    "min_variance_ratio %g, reg_covar %g\n",
                    p.niter, p.tol, (long long)p.seed, to_string(p.init), p.init_niter, p.max_points_per_centroid,
                    p.min_variance_ratio, p.reg_covar);
    } else {
        std::printf("gmm: none (the coarse quantizer is not a trained GMM)\n");
    }
    if (t.has_spill) {
        const SpillParams& s = t.spill;
        std::printf("spill: rule %s, max copies %d, budget %g, threshold %g%s\n", to_string(s.rule), s.max_copies,
                    s.budget, t.spill_threshold, t.spill_threshold_set ? "" : " (not yet chosen)");
        std::printf("spill vectors: %lld distinct, %.3f list entries per vector\n", (long long)t.spill_ntotal,
                    t.spill_ntotal > 0 && find_ivf(index)
                            ? double(find_ivf(index)->ntotal) / double(t.spill_ntotal)
                            : 0.0);
    } else {
        std::printf("spill: none\n");
    }
}

} // namespace

int info_command(int argc, char** argv, const Invocation& inv) {
    const std::string prog = inv.prog();
    std::string path;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(usage(inv).c_str(), stdout);
            return 0;
        }
        if (a.rfind("-", 0) == 0 || !path.empty()) {
            std::fprintf(stderr, "%s: error: %s '%s' (--help lists the usage)\n", prog.c_str(),
                         a.rfind("-", 0) == 0 ? "unknown option" : "one FILE only, got another:", a.c_str());
            return 2;
        }
        path = a;
    }
    if (path.empty()) {
        std::fprintf(stderr, "%s: error: which FILE? (--help lists the usage)\n", prog.c_str());
        return 2;
    }
    try {
        GmmFileInfo info;
        std::unique_ptr<faiss::Index> index(read_gmm_index(path, &info));
        print_info(path, index.get(), info);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: error: %s\n", prog.c_str(), e.what());
        return 1;
    }
}

} // namespace cli
} // namespace faiss_gmm
