// The CPU E-step: rows are processed in blocks of params.block_size. Per block,
// one sgemm gives x·μᵀ (or [x, x²]·Wᵀ for diagonal covariances), one fused pass
// per row turns it into log-densities, the log-sum-exp, the responsibilities and
// the accumulation of N_k and the second moment, and Σ r·x is accumulated either
// with a second sgemm (dense responsibilities) or sparsely (in high dimension
// most rows have one or two non-negligible responsibilities). Memory is
// O(threads · block_size · K + K·d): nothing proportional to N·K is allocated.
// Full covariances: the sgemm is x·[U_1 … U_K] (K·d wide, minus the precomputed
// μ_kᵀU_k), reduced per (row, component) to ½‖(x − μ_k)ᵀU_k‖², then the same fused
// pass; the second moments are one syrk per component over the block's rows that
// carry its responsibility. Memory O(threads · block_size · K·d + K·d²).
// Blocks run in parallel (OpenMP) with per-thread accumulators that are summed
// in thread order, so results are deterministic for a fixed thread count.
#pragma once

#include <memory>
#include <vector>

#include "EStep.h"
#include "ExactLogDensity.h"

namespace faiss_gmm {

class EStepCpu : public EStep {
  public:
    /// block_size: rows per block (≥ 1). nthreads ≤ 0: omp_get_max_threads().
    explicit EStepCpu(int block_size = 256, int nthreads = 0);
    ~EStepCpu() override;

    void set_model(const GmmModel& model, const float* center) override;
    void accumulate(const VectorBlock& rows, SufficientStats& stats) override;
    void accumulate_reproducible(const VectorBlock& rows, StatsAccumulator& acc) override;
    const char* name() const override { return "cpu"; }

    /// Per-row log-posteriors log r_nk (n × K, row-major) and log p(x_n) (n), for
    /// predict / predict_proba / multi-assignment. Either output may be nullptr.
    void log_responsibilities(const VectorBlock& rows, float* log_resp, float* loglik);

    /// Responsibilities below this fraction of a row's largest one are treated as
    /// exactly 0 (their total effect on any statistic is < K · 1e-12 relative).
    static constexpr float kNegligibleLogRatio = -27.63f; // log(1e-12)

    const GmmModel& model() const { return model_; }

  private:
    struct Workspace; // per-thread block buffers and accumulators, kept across calls
    Workspace& workspace(int thread);
    void reserve_workspaces(int nthreads);
    // With log_resp (B × K) given, writes log r there; otherwise adds the block's
    // statistics to ws.stats. loglik (B) is written when non-null.
    /// Runs start(ws) once per thread, then block(ws, b) for b in [0, nblocks)
    /// over min(nthreads, nblocks) threads (workspace t for thread t); the first
    /// exception of any block is rethrown after the loop.
    template <class Start, class Block>
    void for_each_block(int64_t nblocks, Start start, Block block);
    void check_call(const VectorBlock& rows, int64_t K, int64_t d, CovarianceType type) const;
    void process_block(const VectorBlock& rows, Workspace& ws, float* log_resp, float* loglik) const;
    void accumulate_full_block(int64_t B, Workspace& ws) const;

    std::vector<std::unique_ptr<Workspace>> workspaces_;
    int block_size_;
    int nthreads_;
    GmmModel model_;
    std::vector<float> center_;         // d, zeros when none
    // Precomputed per-model terms (see GmmModel::log_constants).
    std::vector<float> gemm_weights_;   // spherical: μ (K×d); diagonal: [μ/σ², −1/(2σ²)] (K×2d); full: row (k, j) = column j of U_k (K·d × d)
    std::vector<float> mean_proj_;      // full: μ_kᵀU_k (K × d), computed in double
    std::vector<float> log_const_;      // c_k
    std::vector<float> mean_sqnorm_;    // ‖μ_k‖² (spherical)
    std::vector<float> inv_two_var_;    // 1/(2σ²_k) (spherical)
    ExactLogDensity exact_; // exact log-densities where the expanded form may have cancelled (issue 13)
};

} // namespace faiss_gmm
