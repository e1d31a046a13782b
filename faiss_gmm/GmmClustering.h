// GMM training behind FAISS's Clustering interface, for code written against
// faiss::Clustering: train(n, x, index) leaves the means in `centroids` and in
// the index, and one entry per EM iteration in `iteration_stats`
// (obj = negative mean log-likelihood). IndexIVF cannot take a Clustering
// subclass (it builds its own by value): use GmmQuantizer there.
#pragma once

#include <faiss/Clustering.h>

#include "GmmModel.h"
#include "GmmParams.h"
#include "GmmTrainer.h"

namespace faiss_gmm {

struct GmmClustering : faiss::Clustering {
    GmmParams gmm;                  ///< EM settings; niter, seed, verbose and the points-per-centroid bounds come from ClusteringParameters
    GmmModel model;                 ///< the trained mixture
    std::vector<GmmIterationStats> gmm_iteration_stats;

    GmmClustering(int d, int k);
    GmmClustering(int d, int k, const faiss::ClusteringParameters& cp, const GmmParams& gmm = GmmParams());

    /// weights (per-row sample weights) are not supported: passing them throws.
    void train(faiss::Index::idx_t n, const float* x, faiss::Index& index, const float* weights = nullptr) override;
};

} // namespace faiss_gmm
