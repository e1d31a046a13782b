// Initial models for EM: means from FAISS k-means or k-means++, then weights and
// variances from the hard assignment of the rows to those means.
#pragma once

#include <cstdint>
#include <vector>

#include "GmmModel.h"

namespace faiss_gmm {

/// K means from `niter` iterations of faiss::Clustering on the n rows (float, d).
std::vector<float> faiss_kmeans_means(int64_t n, int64_t d, const float* x, int64_t K, int niter,
                                      int64_t seed, bool verbose);

/// K means by k-means++ seeding (D² sampling, Arthur & Vassilvitskii 2007).
std::vector<float> kmeans_plus_plus_means(int64_t n, int64_t d, const float* x, int64_t K, int64_t seed);

/// A model with the given means whose weights and variances come from assigning
/// every row to its nearest mean: w_k ∝ max(n_k, 1), σ² = mean squared distance
/// (per dimension for diagonal), at least variance_floor; a component that got no
/// row takes the data's variance `fallback_variance`.
GmmModel model_from_hard_assignment(int64_t n, int64_t d, const float* x, int64_t K,
                                    const std::vector<float>& means, CovarianceType type,
                                    double variance_floor, double fallback_variance);

} // namespace faiss_gmm
