// The E-step backend interface: given a model, turn rows into sufficient
// statistics. CPU (EStepCpu) and CUDA (gpu/) backends implement it; the trainer
// only sees this interface.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "GmmModel.h"
#include "GmmParams.h"
#include "ReproducibleSum.h"
#include "SufficientStats.h"
#include "VectorSource.h"

namespace faiss_gmm {

class EStep {
  public:
    virtual ~EStep() = default;

    /// Installs the model used by the next accumulate() calls. Rows are used as
    /// x − center (center: d floats, or nullptr for none): the trainer centers the
    /// data so that ‖x‖² − 2x·μ + ‖μ‖² does not cancel on data with large norms.
    /// The model is copied; stats come out in the centered frame.
    virtual void set_model(const GmmModel& model, const float* center) = 0;

    /// Adds the statistics of the rows to stats (which must have the model's shape).
    virtual void accumulate(const VectorBlock& rows, SufficientStats& stats) = 0;
    /// Adds the statistics of the rows to acc so that the sums do not depend on
    /// how rows are cut into calls, threads or ranks: one partial per block of
    /// reproducible_block_rows() rows counted from rows' first row (the trainer
    /// starts every call on a block boundary), each computed on its own and
    /// added exactly (StatsAccumulator). This default adds the whole call as
    /// one partial: reproducible for a given cut of the rows into calls only.
    virtual void accumulate_reproducible(const VectorBlock& rows, StatsAccumulator& acc) {
        SufficientStats partial(acc.K(), acc.d(), acc.covariance_type());
        accumulate(rows, partial);
        acc.add(partial);
    }
    /// The rows of the blocks accumulate_reproducible() sums on their own, for models of
    /// covariance type `cov`: a multiple of kReproducibleBlockRows (ReproducibleSum.h), fixed
    /// until the next expect_rows(). Calls that start on multiples of it (counted from the first
    /// training row) give the same bits however the rows are cut into calls, threads or ranks.
    /// A backend whose per-block work is costly may sum larger blocks (the CUDA backend's Hopper
    /// kernels: fewer block partials to write and convert to integers); the bits then depend on
    /// that size, as they depend on the backend.
    virtual int64_t reproducible_block_rows(CovarianceType /*cov*/) const { return kReproducibleBlockRows; }
    /// A hint before set_model(): the rows the following calls will cover in all (a fit's training
    /// rows, over every rank). A backend may size its reproducible blocks by it (the CUDA backend's
    /// Hopper kernels take larger blocks for many rows); the default ignores it. set_model() must
    /// follow it before the next call.
    virtual void expect_rows(int64_t /*total_rows*/) {}

    // ---- Full covariances in two walks over the rows (GmmTrainer) ----
    //
    // The one-walk path sums every component's second moment while the E-step runs: an
    // exact accumulator of K·d(d+1)/2 values (65.5 MiB at K = 256, d = 128), then their
    // doubles for the M-step (16.4 MiB). A backend that can keep the rows' non-zero
    // responsibilities instead (a few per row) lets the trainer sum the second moments
    // one group of components at a time, each group's M-step right after its sums:
    //   begin_listing(max_pairs);
    //   walk 1, every call c:  accumulate_reproducible(rows of c, acc)    acc without second moments
    //   listing_overflowed()?  then end_listing() and the one-walk path for this iteration
    //   walk 2, every group, every call c:  accumulate_listed_second_moments(c, rows of c, k0, group_acc)
    //   end_listing();
    // A backend deposits exactly what its accumulate_reproducible would have deposited
    // (per block and component, the same products): the sums are the same bits either way.

    /// Whether begin_listing() is available (the CPU backend, full covariances).
    virtual bool can_list_responsibilities() const { return false; }
    /// The next accumulate_reproducible() calls (walk 1) add first moments only and keep
    /// their rows' non-zero responsibilities, at most max_pairs of them: past that they stop
    /// (listing_overflowed()) and what they added is to be thrown away.
    virtual void begin_listing(int64_t max_pairs) {
        (void)max_pairs;
        throw std::logic_error(std::string("EStep::begin_listing: the ") + name() + " backend cannot list responsibilities");
    }
    virtual bool listing_overflowed() const { return false; }
    /// Walk 2: adds the second moments of components [k0, k0 + acc.K()) over the rows of
    /// walk 1's call number `call` (the same rows, passed again) to acc, at index k − k0.
    virtual void accumulate_listed_second_moments(int64_t call, const VectorBlock& rows, int64_t k0,
                                                  StatsAccumulator& acc) {
        (void)call, (void)rows, (void)k0, (void)acc;
        throw std::logic_error("EStep::accumulate_listed_second_moments without begin_listing");
    }
    /// Frees the lists and returns to the one-walk path.
    virtual void end_listing() {}
    /// Non-zero responsibilities of the rows of the calls since set_model() (both paths):
    /// what a listing of those calls would hold. -1 when the backend does not count them.
    virtual int64_t responsibilities_seen() const { return -1; }

    /// A short name for logs ("cpu", "cuda:0", ...).
    virtual const char* name() const = 0;
    /// Rows the backend would like per accumulate() call when handing them over
    /// costs no copy (rows already in memory); 0 = no preference. The trainer
    /// otherwise reads GmmParams::chunk_size rows per call.
    virtual int64_t preferred_rows_per_call() const { return 0; }
    /// Hint: `rows` will be passed to accumulate() again, whole or in slices (the
    /// EM iterations over a training set), so a backend may keep a copy next to
    /// its compute units (a GPU: in device memory, when the rows fit). The caller
    /// keeps the rows alive and unchanged until release_rows(). Never required
    /// for correctness; the default ignores it.
    virtual void retain_rows(const VectorBlock& rows) { (void)rows; }
    virtual void release_rows() {}
};

/// The backend params.device asks for. Device::Auto falls back to the CPU when no
/// CUDA backend is built or no GPU is present, and for full covariances with d > 128
/// (gpu::full_covariance_supported); Device::Cuda throws then.
std::unique_ptr<EStep> make_estep(const GmmParams& params, int64_t K, int64_t d);

/// True when this build has the CUDA backend and a GPU is visible.
bool cuda_available();

} // namespace faiss_gmm
