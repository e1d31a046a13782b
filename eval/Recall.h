// Recall@k of search results against exact ground truth, in the two common
// definitions: by ids (FAISS / big-ann-benchmarks) and by distance threshold
// (ann-benchmarks, robust to ties). Result lists may contain duplicate ids (an
// index that stores a vector in several lists and does not deduplicate): a
// duplicate is counted once, so it can never raise recall.
#pragma once

#include <cstdint>
#include <vector>

#include "datasets/GroundTruth.h"

namespace faiss_gmm {
namespace eval {

/// Per-query id recall: |distinct ids among I[i, 0..k) ∩ gt[i, 0..k)| / k.
/// I has stride ldi (≥ k), gt stride ldgt (≥ k); negative ids (missing results)
/// never match. Returns nq values.
std::vector<double> recall_at_k_per_query(int64_t nq, int k, const int64_t* I, int64_t ldi,
                                          const int32_t* gt, int64_t ldgt);

/// Mean of recall_at_k_per_query.
double recall_at_k(int64_t nq, int k, const int64_t* I, int64_t ldi, const int32_t* gt, int64_t ldgt);

/// ann-benchmarks' "k-nn" recall: the fraction of the first k results (distinct
/// ids) whose true distance is ≤ the k-th ground-truth distance + epsilon. Both
/// distances are in ann-benchmarks units (Euclidean, not squared; 1 − cos for
/// angular): result_dist[i * ldr + j] is the exact distance of result I[i, j]
/// (see result_distances), threshold[i] the k-th ground-truth distance.
std::vector<double> distance_recall_per_query(int64_t nq, int k, const int64_t* I, int64_t ldi,
                                              const double* result_dist, int64_t ldr,
                                              const double* threshold, double epsilon = 1e-3);
double distance_recall(int64_t nq, int k, const int64_t* I, int64_t ldi, const double* result_dist,
                       int64_t ldr, const double* threshold, double epsilon = 1e-3);

/// Exact distances, in ann-benchmarks units of metric, from each query to its
/// first k result ids (nq x k; +inf for missing results). base and queries are
/// the vectors as searched (already normalized for Angular). For InnerProduct
/// the values are −ip, so that "smaller is better" holds for every metric.
std::vector<double> result_distances(datasets::Metric metric, int64_t d, const float* base, int64_t nb,
                                     int64_t nq, const float* queries, int k, const int64_t* I, int64_t ldi);

/// The k-th ground-truth distance of each query (ann-benchmarks units), from the
/// ground-truth ids (distances are recomputed, so files without distances work).
std::vector<double> kth_distances(datasets::Metric metric, int64_t d, const float* base, int64_t nb,
                                  int64_t nq, const float* queries, int k, const int32_t* gt, int64_t ldgt);

} // namespace eval
} // namespace faiss_gmm
