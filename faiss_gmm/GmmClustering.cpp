#include "GmmClustering.h"

#include <stdexcept>

namespace faiss_gmm {

GmmClustering::GmmClustering(int d, int k) : GmmClustering(d, k, faiss::ClusteringParameters()) {}

GmmClustering::GmmClustering(int d, int k, const faiss::ClusteringParameters& cp, const GmmParams& gmm_)
        : faiss::Clustering(d, k, cp), gmm(gmm_) {
    // The FAISS names win where both structs have the concept.
    gmm.niter = cp.niter;
    gmm.seed = cp.seed;
    gmm.verbose = cp.verbose;
    gmm.max_points_per_centroid = cp.max_points_per_centroid;
    gmm.min_points_per_centroid = cp.min_points_per_centroid;
}

void GmmClustering::train(faiss::Index::idx_t n, const float* x, faiss::Index& index, const float* weights) {
    if (weights) {
        throw std::invalid_argument("GmmClustering::train: per-row weights are not supported");
    }
    if (index.d != int64_t(d)) {
        throw std::invalid_argument("GmmClustering::train: index dimension " + std::to_string(index.d) +
                                    " differs from the clustering's d = " + std::to_string(d));
    }
    GmmTrainer trainer(gmm);
    model = trainer.fit(n, int64_t(d), x, int64_t(k));
    gmm_iteration_stats = trainer.iteration_stats;

    centroids = model.means;
    iteration_stats.clear();
    for (const GmmIterationStats& s : gmm_iteration_stats) {
        faiss::ClusteringIterationStats cs;
        cs.obj = float(-s.loglik); // lower is better, as for k-means' objective
        cs.time = s.time_s;
        cs.time_search = s.estep_time_s;
        cs.imbalance_factor = s.imbalance_factor;
        cs.nsplit = s.nsplit;
        iteration_stats.push_back(cs);
    }
    index.reset();
    index.add(k, centroids.data());
}

} // namespace faiss_gmm
