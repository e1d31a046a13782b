// Checkpoints of a training run (issue 13): the EM state after an iteration,
// so that a long run killed part-way can resume and end with the same model,
// to the bit, as a run that was never interrupted (the sums are reproducible,
// ReproducibleSum.h, and every other step is a function of the data, the
// params and this state). Written atomically by rank 0; a checkpoint resumes
// only the run it came from (same data moments, K, d and params), else the
// reader says what differs. Nothing here depends on FAISS.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "GmmModel.h"
#include "GmmParams.h"

namespace faiss_gmm {

struct GmmIterationStats;

/// Where and how often the trainer writes checkpoints, and whether it resumes.
struct CheckpointOptions {
    std::string path;    ///< empty: no checkpoints
    int every = 0;       ///< write after every this many iterations (0: never)
    bool resume = false; ///< start from `path` (which must exist) instead of the initial model
};

/// The EM state after `iterations_done` iterations.
struct TrainingCheckpoint {
    uint64_t run_fingerprint = 0; ///< of the data moments, K, d and the params that shape the run
    int iterations_done = 0;
    double prev_loglik = 0;
    int total_splits = 0, total_floored = 0;
    std::string split_rng_state; ///< std::mt19937_64 as text (operator<<)
    std::vector<GmmIterationStats> iteration_stats;
    GmmModel model; ///< in the trainer's centered frame
};

/// The bytes of a checkpoint (magic, version, payload, 64-bit checksum) and back;
/// the parser refuses truncated, corrupt or foreign bytes with a message naming `where`.
std::vector<uint8_t> serialize_checkpoint(const TrainingCheckpoint& c);
TrainingCheckpoint parse_checkpoint(const std::vector<uint8_t>& bytes, const std::string& where);

/// Writes bytes to path through a temporary file in the same folder, flushed and
/// fsync'ed, then renamed over path: a failure leaves any previous file intact
/// (AtomicFile.h's write_file_atomically, for a byte vector).
void write_file_atomically(const std::string& path, const std::vector<uint8_t>& bytes);
std::vector<uint8_t> read_whole_file(const std::string& path);

/// A fingerprint of what must match for a checkpoint to resume a run.
uint64_t run_fingerprint(const GmmParams& p, int64_t K, int64_t d, int64_t n_train, const std::vector<double>& mean,
                         double data_variance);

} // namespace faiss_gmm
