// The steps of EM as functions, in the order GmmTrainer::fit calls them:
//
//   subsample      → the training rows (FAISS's K · max_points_per_centroid)
//   data_moments   → center, variance (floor), per-dimension range; NaN/Inf check
//   initial_model  → k-means / k-means++ / a given model, on rank 0, broadcast
//   (E-step)       → SufficientStats, through an EStep backend
//   m_step         → weights, means, variances from the statistics (floor hits, empty components)
//   reseed_empty   → split the heaviest component into each empty one
//
// Every function that needs all ranks takes the Communicator and is called by
// every rank; failures on any rank reach all of them (check_all_ranks).
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "BlockAlignedRows.h"
#include "Communicator.h"
#include "GmmModel.h"
#include "GmmParams.h"
#include "SufficientStats.h"
#include "VectorSource.h"

namespace faiss_gmm::em {

/// The rows EM trains on: all of this rank's rows, or its part of the sample.
struct TrainingRows {
    const VectorSource* rows = nullptr; ///< this rank's training rows
    GlobalRows global;                  ///< where they lie among all ranks' training rows
    std::vector<uint8_t> storage;       ///< the sampled rows, when subsampled
    std::unique_ptr<MemoryVectorSource> sample;
};

/// FAISS's subsampling: K · max_points_per_centroid rows drawn uniformly from the
/// N rows of all ranks (sample_rows), each rank keeping those of its range, so
/// together they hold exactly the rows one process would pick.
TrainingRows subsample(Communicator& comm, const VectorSource& data, const GlobalRows& rows, int64_t K,
                       const GmmParams& p, bool verbose);

/// The training rows' moments: mean, mean per-dimension variance and range
/// (global, every rank the same bits: sums per fixed block, added exactly).
/// Throws when a value is not finite (naming the row and column) or when the
/// variance is outside what float32 can model.
struct DataMoments {
    std::vector<double> mean, min, max;
    double variance = 0;
};
DataMoments data_moments(Communicator& comm, const BlockAlignedRows& rows, int64_t d, int64_t n_train);

/// Per-row bounds of the E-step's statistics in the centered frame (they place
/// StatsAccumulator's grids): |x_j − c_j| <= x_bound for every training row, and
/// one row's second-moment term below sq_bound.
struct RowBounds {
    double x_bound = 0;
    double sq_bound = 0;
};
RowBounds row_bounds(const DataMoments& m, const std::vector<float>& center, const GmmModel& model);

/// The starting model in the centered frame, on every rank: `given` translated
/// (init == Given, used on rank 0), else FAISS k-means or k-means++ means on at
/// most K·256 training rows gathered on rank 0 in global order, with weights and
/// variances from the hard assignment.
GmmModel initial_model(Communicator& comm, const TrainingRows& train, int64_t K, const GmmParams& p,
                       const std::vector<float>& center, double variance_floor, double scale_variance,
                       const GmmModel* given);

/// What one M-step did.
struct MStepResult {
    int nfloored = 0;           ///< variances (full: eigenvalues) raised to the floor
    std::vector<int64_t> empty; ///< components with less than min_mass rows of mass (left for reseed_empty)
    double min_mass = 0;
    double imbalance_factor = 0; ///< K · Σ N_k² / N²
};
/// New weights, means and variances from the statistics (double precision; the
/// second moment is about the E-step's means, shifted to the new ones), with
/// reg_covar added and the floor applied (full covariances: reg_covar on the
/// diagonal, the floor on the eigenvalues; std::invalid_argument naming the
/// component when a matrix is not positive definite after that). Empty components
/// keep their means and variances and get their (tiny) weight.
MStepResult m_step(const SufficientStats& stats, const GmmParams& p, double variance_floor, GmmModel& model);
/// m_step in parts, for second moments that arrive a group of components at a time (full
/// covariances in two walks): m_step_begin reads N_k only (stats.sum_sq may be empty), then
/// m_step_components updates components [k0, k1) from stats' N_k and Σ r x and their second
/// moments at sum_sq (component k's at (k − k0)·nsq). Called for ascending ranges that cover
/// [0, K), they do what m_step does, bit for bit.
MStepResult m_step_begin(const SufficientStats& stats, const GmmParams& p);
void m_step_components(const SufficientStats& stats, const double* sum_sq, int64_t k0, int64_t k1,
                       const GmmParams& p, double variance_floor, GmmModel& model, MStepResult& r);

/// Each empty component takes half of the heaviest non-empty one, the two means
/// moved apart by 1/10 of a standard deviation per dimension in random
/// directions (as FAISS splits centroids); weights renormalized. Returns the
/// number of splits.
int reseed_empty(const MStepResult& m, const SufficientStats& stats, std::mt19937_64& rng, GmmModel& model);

} // namespace faiss_gmm::em
