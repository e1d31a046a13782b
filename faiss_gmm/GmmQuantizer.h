// A FAISS coarse quantizer trained by EM. It is a flat L2 index over the GMM
// means: search() returns true squared L2 distances, as every IVF variant
// requires. Installed in an IndexIVF with quantizer_trains_alone = 1, it is the
// quantizer's own train() that IndexIVF::train calls, so IVFFlat, IVFPQ, IVFSQ,
// IVFPQFastScan, with or without OPQ/PCA in front, all train with GMM.
#pragma once

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>

#include "GmmModel.h"
#include "GmmParams.h"
#include "GmmPosteriors.h"
#include "GmmTrainer.h"
#include "ivf_lookup.h" // find_ivf, find_gmm_quantizer (declared there; kept reachable from here)

namespace faiss_gmm {

class GmmQuantizer : public faiss::IndexFlatL2 {
  public:
    int64_t nlist;                  ///< number of components = inverted lists
    GmmParams params;               ///< EM settings used by train()
    GmmModel model;                 ///< the trained mixture (empty before train)
    std::vector<GmmIterationStats> iteration_stats; ///< of the last train()
    // Lists are probed by L2 to the means (IndexFlatL2::search). Rankings by GMM posterior
    // or by variance-scaled L2 (rank_by_posterior, probe_variance_weight / _power, issue 6)
    // were removed in issue 14: on every data set, 10K to 1M vectors, they needed more
    // distance computations for the same recall (eval/README.md); gmm_io refuses files
    // that ask for them.

    GmmQuantizer(int64_t d, int64_t nlist, const GmmParams& params = GmmParams());

    /// Runs EM on the n rows, then holds the nlist means (ntotal == nlist).
    void train(faiss::Index::idx_t n, const float* x) override;

    /// Sets a trained model (e.g. after loading): the means become the index content.
    void set_model(const GmmModel& m);

    /// The posteriors of `model` (log-responsibilities, predict, ...), built once per
    /// model and kept: rebuilt only when the model changes. Thread-safe; throws
    /// std::logic_error before training.
    std::shared_ptr<const GmmPosteriors> posteriors() const;

  private:
    GmmPosteriorsCache posteriors_cache_;
};

/// Replaces the coarse quantizer of `index` (an IndexIVF, possibly behind an
/// IndexPreTransform) by a GmmQuantizer with `params` and
/// quantizer_trains_alone = 1; the IVF owns it. Returns it. Throws for a
/// non-IVF index, an inner-product IVF, or an already trained index.
GmmQuantizer* install_gmm_quantizer(faiss::Index* index, const GmmParams& params = GmmParams());

} // namespace faiss_gmm
