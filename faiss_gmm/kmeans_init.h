// Initial models for EM: means from FAISS k-means or k-means++, then weights and
// variances from the hard assignment of the rows to those means.
#pragma once

#include <cstdint>
#include <vector>

#include "GmmModel.h"
#include "VectorSource.h"

namespace faiss_gmm {

/// K means from `niter` iterations of faiss::Clustering on the n rows (float, d).
std::vector<float> faiss_kmeans_means(int64_t n, int64_t d, const float* x, int64_t K, int niter,
                                      int64_t seed, bool verbose);

/// K means by k-means++ seeding (D² sampling, Arthur & Vassilvitskii 2007).
std::vector<float> kmeans_plus_plus_means(int64_t n, int64_t d, const float* x, int64_t K, int64_t seed);

/// A model with the given means whose weights and variances come from assigning
/// every row to its nearest mean: w_k ∝ max(n_k, 1), σ² = mean squared distance
/// (per dimension for diagonal; full: the assigned rows' covariance, its
/// eigenvalues at least the floor), at least max(variance_floor, 1e-30); a
/// component that got no row takes `fallback_variance`, or, when that is < 0,
/// the data's mean per-dimension variance (1 if the data has none). Rows are read
/// chunk by chunk (no float copy of the source) and checked to be finite.
GmmModel model_from_hard_assignment(const VectorSource& data, int64_t K, const std::vector<float>& means,
                                    CovarianceType type, double variance_floor, double fallback_variance = -1);
GmmModel model_from_hard_assignment(int64_t n, int64_t d, const float* x, int64_t K,
                                    const std::vector<float>& means, CovarianceType type,
                                    double variance_floor, double fallback_variance = -1);

} // namespace faiss_gmm
