// Posteriors of a fixed mixture: log-responsibilities, predict, predict_proba and
// score_samples (scikit-learn's names), over rows or a VectorSource. The one
// implementation behind the spill index's posterior rules (through the
// GmmQuantizer, which keeps one per model) and Python's GaussianMixture.
//
// One centering convention: rows are evaluated as x − c against the model moved by
// −c, c = the mixture mean Σ_k w_k μ_k (after EM, the training data's mean). The
// float32 expanded form ‖x‖² − 2x·μ + ‖μ‖² then works on small numbers; where it may
// still cancel (a component far narrower than ‖x − c‖²·2^-24), EStepCpu recomputes
// the log-density in double (its refinement), so results do not depend on the
// frame beyond float32 rounding (tests/test_posteriors.cpp states the bound).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "GmmModel.h"
#include "VectorSource.h"

namespace faiss_gmm {

class EStepCpu;

class GmmPosteriors {
  public:
    /// Validates the model (std::invalid_argument). block_size: rows per block of the E-step (≥ 1).
    explicit GmmPosteriors(const GmmModel& model, int block_size = 256);
    ~GmmPosteriors();
    GmmPosteriors(const GmmPosteriors&) = delete;
    GmmPosteriors& operator=(const GmmPosteriors&) = delete;

    const GmmModel& model() const { return model_; }
    /// The centering point c (d values): the mixture mean.
    const std::vector<float>& center() const { return center_; }

    /// log r_nk (rows.n × K, row-major) and log p(x_n) (rows.n); either may be nullptr.
    /// Safe to call from several threads at once (each call takes an E-step of its own).
    void log_posteriors(const VectorBlock& rows, float* log_resp, float* loglik) const;

    /// Over a source, read in chunks (only a chunk of posteriors exists at a time
    /// unless log_resp asks for all); rows with NaN / infinity are refused with their
    /// row number (std::invalid_argument). Either output may be nullptr.
    void log_posteriors(const VectorSource& x, float* log_resp, float* loglik) const;
    /// argmax_k r_nk per row (the first on ties): x.ntotal() labels.
    void predict(const VectorSource& x, int64_t* labels) const;
    /// r_nk: x.ntotal() × K.
    void predict_proba(const VectorSource& x, float* proba) const;
    /// log p(x_n): x.ntotal() values.
    void score_samples(const VectorSource& x, double* loglik) const;

    /// Rows per chunk of the source functions: ~32 MB of posteriors, enough to keep every thread busy.
    int64_t chunk_rows() const;

  private:
    /// fn(i0, n, log_resp of the chunk or nullptr, loglik of the chunk) for each chunk;
    /// log_resp_all: the caller's n × K output, or nullptr (then a chunk buffer when want_resp).
    template <class Fn>
    void for_each_chunk(const VectorSource& x, bool want_resp, float* log_resp_all, Fn fn) const;
    std::unique_ptr<EStepCpu> acquire() const;
    void release(std::unique_ptr<EStepCpu> estep) const;

    GmmModel model_;
    std::vector<float> center_;
    GmmModel centered_; // the model in the frame of x − c
    int block_size_;
    // E-steps not in use. An E-step keeps per-thread workspaces across calls, so
    // one call at a time uses it; concurrent callers (FAISS may search or add
    // from several threads) each take one, made when none is idle.
    mutable std::mutex mutex_;
    mutable std::vector<std::unique_ptr<EStepCpu>> idle_;
};

/// A GmmPosteriors kept for the model it was built for: get(m) returns it while m
/// is unchanged and builds a new one when m differs (compared value by value, so
/// any change of the model is seen). Thread-safe. Copies start empty.
class GmmPosteriorsCache {
  public:
    GmmPosteriorsCache() = default;
    GmmPosteriorsCache(const GmmPosteriorsCache&) {}
    GmmPosteriorsCache& operator=(const GmmPosteriorsCache&) {
        clear();
        return *this;
    }
    std::shared_ptr<const GmmPosteriors> get(const GmmModel& model) const;
    void clear();

  private:
    mutable std::mutex mutex_;
    mutable std::shared_ptr<const GmmPosteriors> cached_;
};

/// The mixture mean Σ_k w_k μ_k (d values), in double then rounded.
std::vector<float> mixture_mean(const GmmModel& model);

} // namespace faiss_gmm
