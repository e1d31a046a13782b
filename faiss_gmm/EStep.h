// The E-step backend interface: given a model, turn rows into sufficient
// statistics. CPU (EStepCpu) and CUDA (gpu/) backends implement it; the trainer
// only sees this interface.
#pragma once

#include <memory>

#include "GmmModel.h"
#include "GmmParams.h"
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
    /// kReproducibleBlockRows rows counted from rows' first row (the trainer
    /// starts every call on a block boundary), each computed on its own and
    /// added exactly (StatsAccumulator). This default adds the whole call as
    /// one partial: reproducible for a given cut of the rows into calls only.
    virtual void accumulate_reproducible(const VectorBlock& rows, StatsAccumulator& acc) {
        SufficientStats partial(acc.K(), acc.d(), acc.covariance_type());
        accumulate(rows, partial);
        acc.add(partial);
    }

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
