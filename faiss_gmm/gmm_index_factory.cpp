#include "gmm_index_factory.h"

#include <faiss/index_factory.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>

#include <memory>
#include <stdexcept>

#include "GmmQuantizer.h"
#include "IndexIVFSpill.h"

namespace faiss_gmm {

faiss::Index* gmm_index_factory(int d, const std::string& description, faiss::MetricType metric,
                                const GmmParams& params) {
    const IvfDescription parsed = parse_ivf_description(description);
    const IvfOptions& opts = parsed.options;
    const std::string& faiss_description = parsed.faiss_description;
    if (!parsed.found || (!opts.gmm && !opts.spill)) {
        throw std::invalid_argument("gmm_index_factory: \"" + description +
                                    "\" has no IVF<nlist>_GMM, IVF<nlist>_GMMdiag, IVF<nlist>_GMMfull or IVF<nlist>_spill... token "
                                    "(use faiss::index_factory for plain FAISS indexes)");
    }
    if (metric != faiss::METRIC_L2) {
        throw std::invalid_argument("gmm_index_factory: only METRIC_L2 is supported (got metric " +
                                    std::to_string(int(metric)) +
                                    "); for cosine / inner-product search of normalized vectors, "
                                    "normalize them and use L2, which ranks them identically");
    }
    if (d < 1) throw std::invalid_argument("gmm_index_factory: d must be >= 1, got " + std::to_string(d));
    std::unique_ptr<faiss::Index> index;
    try {
        index.reset(faiss::index_factory(d, faiss_description.c_str(), metric));
    } catch (const std::exception& e) {
        throw std::invalid_argument("gmm_index_factory: FAISS cannot build \"" + faiss_description + "\" (from \"" +
                                    description + "\"): " + e.what());
    }
    if (!find_ivf(index.get())) {
        throw std::invalid_argument("gmm_index_factory: \"" + description + "\" does not give an IVF index");
    }
    if (opts.gmm) {
        GmmParams p = params;
        p.covariance_type = opts.covariance_type;
        install_gmm_quantizer(index.get(), p);
    }
    if (opts.spill) {
        if (faiss::IndexIVF* ivf = find_ivf(index.get())) {
            if (!dynamic_cast<faiss::IndexFlat*>(ivf->quantizer)) {
                throw std::invalid_argument("gmm_index_factory: spill needs a flat coarse quantizer in \"" +
                                            description + "\"");
            }
        }
        // IndexIVFSpill throws (FastScan, IDMap...) before taking ownership.
        auto* sp = new IndexIVFSpill(index.get(), opts.spill_params, true);
        static_cast<void>(index.release()); // owned by sp now
        return sp;
    }
    return index.release();
}

} // namespace faiss_gmm
