#include "GmmQuantizer.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace faiss_gmm {

GmmQuantizer::GmmQuantizer(int64_t d, int64_t nlist_, const GmmParams& params_)
        : faiss::IndexFlatL2(d), nlist(nlist_), params(params_) {
    if (nlist < 1) throw std::invalid_argument("GmmQuantizer: nlist must be >= 1, got " + std::to_string(nlist));
    params.validate();
}

void GmmQuantizer::train(faiss::Index::idx_t n, const float* x) {
    GmmTrainer trainer(params);
    GmmModel m = trainer.fit(n, d, x, nlist);
    iteration_stats = trainer.iteration_stats;
    set_model(m);
}

void GmmQuantizer::set_model(const GmmModel& m) {
    m.validate();
    if (m.d != d || m.K != nlist) {
        throw std::invalid_argument("GmmQuantizer::set_model: model has K = " + std::to_string(m.K) + ", d = " +
                                    std::to_string(m.d) + "; the quantizer has nlist = " + std::to_string(nlist) +
                                    ", d = " + std::to_string(d));
    }
    model = m;
    params.covariance_type = m.covariance_type;
    reset();
    add(nlist, model.means.data());
}

std::shared_ptr<const GmmPosteriors> GmmQuantizer::posteriors() const {
    if (model.K == 0) throw std::logic_error("GmmQuantizer::posteriors: the quantizer is not trained");
    return posteriors_cache_.get(model);
}

GmmQuantizer* install_gmm_quantizer(faiss::Index* index, const GmmParams& params) {
    faiss::IndexIVF* ivf = find_ivf(index);
    if (!ivf) {
        throw std::invalid_argument("install_gmm_quantizer: the index is not an IndexIVF (nor one behind a "
                                    "pre-transform, IDMap or refine stage)");
    }
    if (ivf->metric_type != faiss::METRIC_L2) {
        throw std::invalid_argument("install_gmm_quantizer: GMM training needs an L2 IVF (metric " +
                                    std::to_string(int(ivf->metric_type)) +
                                    " given); for cosine search, normalize the vectors and use L2");
    }
    if (ivf->is_trained || ivf->ntotal > 0) {
        throw std::invalid_argument("install_gmm_quantizer: the IVF is already trained; install the GMM "
                                    "quantizer on an untrained index");
    }
    auto* q = new GmmQuantizer(ivf->d, int64_t(ivf->nlist), params);
    if (ivf->own_fields) delete ivf->quantizer;
    ivf->quantizer = q;
    ivf->own_fields = true;
    ivf->quantizer_trains_alone = 1; // IndexIVF::train calls q->train(n, x) and nothing else
    return q;
}

} // namespace faiss_gmm
