// The CPU E-step: rows are processed in blocks of params.block_size. Per block,
// one sgemm gives x·μᵀ (or [x, x²]·Wᵀ for diagonal covariances), one fused pass
// per row turns it into log-densities, the log-sum-exp, the responsibilities and
// the accumulation of N_k and the second moment, and Σ r·x is accumulated either
// with a second sgemm (dense responsibilities) or sparsely (in high dimension
// most rows have one or two non-negligible responsibilities). Memory is
// O(threads · block_size · K + K·d): nothing proportional to N·K is allocated.
// Full covariances: the product x·[U_1 … U_K] (minus the precomputed μ_kᵀU_k),
// reduced per (row, component) to ½‖(x − μ_k)ᵀU_k‖², then the same fused pass; the
// second moments are one syrk per component over the block's rows that carry its
// responsibility. The product runs a group of components at a time, so its
// output stays in cache (full_scratch_floats per thread, not block_size · K·d),
// and in bands of columns of U_k: band [j0, j1) needs only x's first j1
// coordinates (U_k is upper triangular), which skips most of the zeros. The
// factors are held once, in that banded layout (no copy of the model's U_k).
// Memory: O(K·d²) for the factors, plus per thread O(full_scratch_floats +
// block_size·K + d²) and, for accumulate(), its K·d(d+1)/2 double sums; the
// reproducible path holds no per-thread second moments (accumulate_reproducible:
// they are deposited component by component, from at most kFullDeferredPairs
// listed responsibilities per thread), and between begin_listing and end_listing
// it keeps those lists for the trainer's second walk (EStep.h) instead.
// Blocks run in parallel (OpenMP) with per-thread accumulators that are summed
// in thread order, so results are deterministic for a fixed thread count.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "EStep.h"
#include "ExactLogDensity.h"

namespace faiss_gmm {

class EStepCpu : public EStep {
  public:
    /// Full covariances: floats of one thread's scratch for the log-density
    /// product (1 MiB: the group of components whose product fits stays in L2).
    static constexpr int64_t kDefaultFullScratchFloats = int64_t(1) << 18;
    /// Full covariances: columns of U_k per band of the product (see above).
    static constexpr int64_t kFullBandColumns = 32;
    /// Full covariances, accumulate_reproducible: non-zero responsibilities listed per
    /// thread before their second moments are flushed (16 bytes each: 2 MiB). A block
    /// of sparse responsibilities (a few per row) stays far below it: one flush.
    static constexpr int64_t kFullDeferredPairs = int64_t(1) << 17;

    /// block_size: rows per block (≥ 1). nthreads ≤ 0: omp_get_max_threads().
    /// full_scratch_floats (≥ 1): see kDefaultFullScratchFloats. Part of the
    /// configuration, like block_size: the products' shapes follow from it, and
    /// OpenBLAS may round a product of another shape differently in the last bit;
    /// results never depend on the thread count or how rows are cut into calls.
    explicit EStepCpu(int block_size = 256, int nthreads = 0,
                      int64_t full_scratch_floats = kDefaultFullScratchFloats);
    ~EStepCpu() override;

    void set_model(const GmmModel& model, const float* center) override;
    void accumulate(const VectorBlock& rows, SufficientStats& stats) override;
    void accumulate_reproducible(const VectorBlock& rows, StatsAccumulator& acc) override;
    const char* name() const override { return "cpu"; }

    // Full covariances in two walks (EStep.h). The lists hold 10 bytes per non-zero
    // responsibility, per reproducible block sorted by component, with the points where
    // the one-walk path would have deposited (kFullDeferredPairs): walk 2 deposits the
    // same per-block, per-component sums, so the model is the same bits either way.
    bool can_list_responsibilities() const override;
    void begin_listing(int64_t max_pairs) override;
    bool listing_overflowed() const override { return listing_overflowed_.load(); }
    void accumulate_listed_second_moments(int64_t call, const VectorBlock& rows, int64_t k0,
                                          StatsAccumulator& acc) override;
    void end_listing() override;
    int64_t responsibilities_seen() const override;

    /// Per-row log-posteriors log r_nk (n × K, row-major) and log p(x_n) (n), for
    /// predict / predict_proba / multi-assignment. Either output may be nullptr.
    void log_responsibilities(const VectorBlock& rows, float* log_resp, float* loglik);

    /// Responsibilities below this fraction of a row's largest one are treated as
    /// exactly 0 (their total effect on any statistic is < K · 1e-12 relative).
    static constexpr float kNegligibleLogRatio = -27.63f; // log(1e-12)


  private:
    /// Full covariances: one reproducible block's non-zero responsibilities (or those of one
    /// flush of it), by component, rows ascending within a component.
    struct ListedPairs {
        std::vector<int32_t> k;     // ascending
        std::vector<uint16_t> row;  // in the block (kReproducibleBlockRows <= 65536)
        std::vector<float> r;       // > 0
        /// Rows where the one-walk path flushed its list mid-block: a component's pairs on
        /// either side of a cut are summed and deposited separately, as that path does.
        std::vector<int32_t> cuts;
    };
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
    /// Full: adds Σ z zᵀ over the m rows z of ws.zbuf (upper triangle, packed as sum_sq) to sq.
    void add_second_moment_of_rows(int64_t m, Workspace& ws, double* sq) const;
    /// Full, accumulate_reproducible: deposits the second moments of the pairs listed in ws
    /// (rows of `rows`, one reproducible block) into acc, component by component, and clears the list.
    void flush_full_pairs(const VectorBlock& rows, Workspace& ws, StatsAccumulator& acc, std::mutex& deposit) const;
    /// Full: moves ws's pairs (row order) into `out` by component (a stable counting sort).
    void sort_pairs(Workspace& ws, ListedPairs& out) const;
    /// Full: deposits the second moments of the listed components in [k0, k0 + acc.K()) over their
    /// rows in `block` (its reproducible block) into acc at k − k0: per component and segment
    /// between cuts, one syrk per sub-block of block_size_ rows, summed in double.
    void deposit_listed(const VectorBlock& block, const ListedPairs& pairs, int64_t k0, StatsAccumulator& acc,
                        std::mutex& deposit, Workspace& ws) const;
    void set_full_model(const GmmModel& model);
    /// Full covariances: the per-thread product of one component group, band by
    /// band, into ws.proj (layout: see full_group_log_densities in the .cpp).
    void full_group_product(int64_t B, int64_t k0, int64_t ng, Workspace& ws) const;

    std::vector<std::unique_ptr<Workspace>> workspaces_;
    int block_size_;
    int nthreads_;
    GmmModel model_;                    // full: without its factors (variances empty), see gemm_weights_
    std::vector<float> center_;         // d, zeros when none
    // Precomputed per-model terms (see GmmModel::log_constants).
    std::vector<float> gemm_weights_;   // spherical: μ (K×d); diagonal: [μ/σ², −1/(2σ²)] (K×2d); full: banded, see set_full_model
    std::vector<float> mean_proj_;      // full: μ_kᵀU_k (K × d), computed in double
    int64_t full_scratch_floats_;
    int64_t full_group_ = 1;            // full: components per product (from full_scratch_floats_)
    std::vector<int64_t> band_end_;     // full: band c holds columns [band_end_[c-1], band_end_[c]) of each U_k
    std::vector<int64_t> band_offset_;  // full: Σ over earlier bands of width · band_end (floats per component)
    std::vector<float> log_const_;      // c_k
    std::vector<float> mean_sqnorm_;    // ‖μ_k‖² (spherical)
    std::vector<float> inv_two_var_;    // 1/(2σ²_k) (spherical)
    ExactLogDensity exact_; // exact log-densities where the expanded form may have cancelled (issue 13)
    // Full covariances: the non-zero responsibilities counted since set_model (both paths) and,
    // between begin_listing and end_listing, those listed by walk 1, per call and block.
    mutable std::atomic<int64_t> pairs_seen_{0};
    bool listing_ = false;
    int64_t max_listed_pairs_ = 0;
    std::atomic<int64_t> listed_pairs_{0};
    std::atomic<bool> listing_overflowed_{false};
    std::vector<std::vector<ListedPairs>> listed_; // [call][block]
    std::vector<int64_t> listed_rows_;             // [call]: its rows, checked by walk 2
};

} // namespace faiss_gmm
