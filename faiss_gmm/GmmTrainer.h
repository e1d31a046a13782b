// The EM loop: initialization, E-step (through an EStep backend), M-step,
// convergence test, variance floor and re-seeding of empty components, with the
// statistics of every iteration kept on the object.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "Checkpoint.h"
#include "Communicator.h"
#include "EStep.h"
#include "GmmModel.h"
#include "GmmParams.h"
#include "SufficientStats.h"
#include "VectorSource.h"

namespace faiss_gmm {

/// What one EM iteration did (FAISS's ClusteringIterationStats, for a GMM).
struct GmmIterationStats {
    int iteration = 0;          ///< 0-based
    double loglik = 0;          ///< mean log-likelihood per vector of the model entering this iteration
    double time_s = 0;          ///< seconds since fit() started, at the end of this iteration
    double estep_time_s = 0;    ///< seconds spent in this iteration's E-step (the slowest rank's, distributed)
    double imbalance_factor = 0;///< K · Σ N_k² / N²  (1 = perfectly balanced)
    int nsplit = 0;             ///< components re-seeded in this iteration
    int nfloored = 0;           ///< variances raised to the floor in this iteration
};

class GmmTrainer {
  public:
    explicit GmmTrainer(const GmmParams& params = GmmParams());

    /// Trains K components on all rows of data (subsampled to
    /// K * max_points_per_centroid rows, as FAISS does). With params.init == Given,
    /// `initial` is the starting model (in the data's frame). Returns the model in
    /// the data's frame. Throws std::invalid_argument on bad input (K < 1, K > N,
    /// NaN/Inf, dimension mismatch) before any work starts.
    ///
    /// With a communicator of several ranks, every rank calls fit() with the same
    /// params and K, `data` being its own range of the rows (rank 0 the first
    /// range, rank 1 the next, ...; N is their total). Every step that needs all
    /// rows is global: data moments, the subsample (the rows one process would
    /// pick), the initialization (run on rank 0 on the sample gathered there, then
    /// broadcast; rank 0's `initial` with init == Given), the statistics of each
    /// E-step (summed over ranks), log-likelihood, convergence and re-seeding. Every
    /// rank returns the same model, bit-identical to the one-process result for any
    /// number of ranks, threads and chunk sizes (the sums are reproducible:
    /// ReproducibleSum.h; the CPU backend, with a fixed block_size). A failure on any rank makes every rank throw
    /// DistributedError (see check_all_ranks) instead of the exceptions above.
    GmmModel fit(const VectorSource& data, int64_t K, const GmmModel* initial = nullptr);
    GmmModel fit(int64_t n, int64_t d, const float* x, int64_t K, const GmmModel* initial = nullptr);

    /// Replaces the E-step backend (by default make_estep(params)).
    void set_estep(std::unique_ptr<EStep> estep) { estep_ = std::move(estep); }
    /// Trains as one rank of a distributed run (see fit()); nullptr = one process.
    /// Not owned: it must outlive the fit() calls.
    void set_communicator(Communicator* comm) { comm_ = comm; }

    const GmmParams& params() const { return params_; }

    /// Checkpoints (Checkpoint.h): with a path and every > 0, rank 0 writes the EM
    /// state after every `every` iterations (atomically); with resume, fit() starts
    /// from the checkpoint at path instead of the initial model and ends with the
    /// model an uninterrupted run would have, bit for bit.
    CheckpointOptions checkpoint;
    /// Full covariances on a backend that can list responsibilities (the CPU): the E-step's
    /// second moments are summed in a second walk over the rows, a group of components at a
    /// time, while the non-zero responsibilities listed by the first walk number at most this
    /// many per rank (10 bytes each); past it, one walk with every statistic held at once.
    /// The model is the same bits either way; only memory and time differ. -1: automatic (while
    /// the lists at least halve the one-walk path's 40·K·(1 + d + d(d+1)/2) bytes); 0: never.
    int64_t max_listed_responsibilities = -1;

    // ---- results of the last fit() ----
    std::vector<GmmIterationStats> iteration_stats;
    int n_iter = 0;             ///< EM iterations run
    bool converged = false;     ///< stopped by tol before niter
    int total_splits = 0;       ///< components re-seeded, all iterations
    int total_floored = 0;      ///< variance-floor hits, all iterations
    double variance_floor = 0;  ///< absolute floor used (min_variance_ratio × data variance)
    double data_variance = 0;   ///< mean per-dimension variance of the training rows
    int64_t n_train = 0;        ///< rows EM ran on (after subsampling), all ranks together
    std::string backend;        ///< name of the E-step backend used

  private:
    GmmParams params_;
    std::unique_ptr<EStep> estep_;
    Communicator* comm_ = nullptr;
};

} // namespace faiss_gmm
