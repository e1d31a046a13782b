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
#include "GmmTrainer.h"

namespace faiss_gmm {

class GmmQuantizer : public faiss::IndexFlatL2 {
  public:
    int64_t nlist;                  ///< number of components = inverted lists
    GmmParams params;               ///< EM settings used by train()
    GmmModel model;                 ///< the trained mixture (empty before train)
    std::vector<GmmIterationStats> iteration_stats; ///< of the last train()
    /// search() ranks the means by GMM log posterior (log w_k + log N(x; μ_k, σ²_k))
    /// instead of by L2, and still writes the true squared L2 distances to the
    /// returned means (IVFPQ / SQ use them as terms of the final distance). It
    /// also changes IndexIVF::add's assignment (quantizer->assign) to the highest
    /// posterior. Saved by gmm_io (trailer version 2).
    bool rank_by_posterior = false;
    /// When non-zero and not ranking by posterior: search() ranks the means by
    /// ‖x − μ_k‖² − γ·tr(Σ_k) (γ = this weight; tr Σ_k = d·σ²_k for spherical), i.e.
    /// lists with a wider spread are probed earlier, by how much their points reach
    /// towards the query; 0 = plain L2. Distances returned are still true squared L2.
    /// Saved by gmm_io (trailer version 2).
    double probe_variance_weight = 0;
    /// When non-zero and not ranking by posterior: the L2 term of the ranking is
    /// tempered by the list's spread, ‖x − μ_k‖² / (σ²_k / σ̄²)^α (α = this power;
    /// σ²_k = tr(Σ_k)/d, the component's mean variance; σ̄² the mean of σ²_k over the
    /// components, a constant that keeps the score in L2 units and does not change
    /// the order). α = 0: plain L2; α = 1 (spherical): the Mahalanobis distance
    /// ‖x − μ_k‖²/σ²_k, i.e. the log posterior without its log-determinant and
    /// weight terms. With probe_variance_weight γ as well the score is
    /// ‖x − μ_k‖² / (σ²_k / σ̄²)^α − γ·tr(Σ_k). Distances returned are still true
    /// squared L2. Saved by gmm_io (trailer version 3).
    double probe_variance_power = 0;

    GmmQuantizer(int64_t d, int64_t nlist, const GmmParams& params = GmmParams());

    /// Runs EM on the n rows, then holds the nlist means (ntotal == nlist).
    void train(faiss::Index::idx_t n, const float* x) override;

    /// L2 ranking (IndexFlatL2's), posterior ranking when rank_by_posterior is set, or the
    /// variance-aware ranking of probe_variance_weight / probe_variance_power.
    void search(faiss::Index::idx_t n, const float* x, faiss::Index::idx_t k, float* distances,
                faiss::Index::idx_t* labels, const faiss::SearchParameters* params = nullptr) const override;

    /// Sets a trained model (e.g. after loading): the means become the index content.
    void set_model(const GmmModel& m);
};

/// Replaces the coarse quantizer of `index` (an IndexIVF, possibly behind an
/// IndexPreTransform) by a GmmQuantizer with `params` and
/// quantizer_trains_alone = 1; the IVF owns it. Returns it. Throws for a
/// non-IVF index, an inner-product IVF, or an already trained index.
GmmQuantizer* install_gmm_quantizer(faiss::Index* index, const GmmParams& params = GmmParams());

/// The IVF inside index (directly, or behind IndexPreTransform / IndexIDMap /
/// IndexRefine / IndexIVFSpill), or nullptr.
faiss::IndexIVF* find_ivf(faiss::Index* index);
const faiss::IndexIVF* find_ivf(const faiss::Index* index);

/// The GmmQuantizer of the IVF inside index, or nullptr.
GmmQuantizer* find_gmm_quantizer(faiss::Index* index);
const GmmQuantizer* find_gmm_quantizer(const faiss::Index* index);

} // namespace faiss_gmm
