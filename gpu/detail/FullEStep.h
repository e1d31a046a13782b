// The full-covariance algorithm of the CUDA E-step on one GPU (issue 17; FullKernels.cuh has
// the kernels and the steps). The log-densities of a block of rows come either
//  * fused (sm_80+, unless EStepCudaAlgorithm::Blocked is asked for): FullFusedKernel.cuh computes
//    (x − c)ᵀU_k on tensor cores and reduces it to log p in registers, the projections never
//    written; fast mode fp16 products, accurate mode 3 products of hi/lo fp16 halves; on Hopper
//    (sm_90a), unless EStepCudaOptions::full_sm90_kernel is off, the same arithmetic with
//    warpgroup products, FullHopperKernel.cuh; or
//  * blocked: one cuBLAS GEMM against the K·d-wide matrix [U_1 … U_K] of precision factors (fast
//    mode TF32, accurate fp32), then a squared-norm → log-density kernel;
// then the responsibility kernel of Blocked, a GEMM for N_k and Σ r x (fp32; TF32 in fast mode),
// and a second-moment kernel over the rows where a component has responsibility (gathered; TF32
// tensor-core products, three hi/lo ones in accurate mode). d ≤ kMaxFullDim.
//
// Reproducible sums (begin_reproducible, issue 13): the unit is a group of G consecutive
// kReproducibleBlockRows blocks of the call (full_reproducible_group_rows), summed on its own:
// log-densities and responsibilities row by row (each value a function of its row alone), N_k
// and Σ r x by one cuBLAS product of the group's fixed shape, the second moments by the moment
// kernel with segments fixed by the group's row count (fp32 partials written, not added), then
// the group's values cut into the caller's integer limbs (ReproducibleLimbs.h): the same bits
// for any chunking or workers (GPUs of one kind), since chunks and shares are whole groups.
// Why groups, not single 4096-row blocks as the spherical and diagonal paths: a partial has
// K·d(d+1)/2 second moments (8.4M at K = 1024, d = 128), each written, read and cut into limbs
// once per partial, while the moment work of a block is only where responsibilities are non-zero
// (a few components per row). Measured at 1M × 1024 × 128 on an H100 (bench_estep_cuda_full
// --reproducible, bench/results/gpu_reproducible_sums.md): groups of one block cost +20.5 %
// (fp16) / +12.2 % (accurate) device time over accumulate(), groups of 16 blocks +1.4 % / +1.5 %
// (+3.0 % / +2.5 % of the faster call of 2026-12-07: wgmma kernel, second moments on tensor cores).
// G is fixed by K and block_bytes alone (the group's S buffer of G × K log-densities stays within
// block_bytes, as the ordinary path's block does: 16 blocks up to K = 1024 with the default
// 256 MiB), never by chunk_rows or the number of workers. What G costs: a call cut into pieces
// gives the same bits only when the pieces are whole groups (the trainer's MPI ranks cut on
// 4096-row blocks: their full-covariance GPU sums are the same bits only for a fixed rank count).
#pragma once

#include <cublas_v2.h>

#include <vector>

#include "gpu/detail/ChunkAlgorithm.h"
#include "gpu/detail/CublasHandle.h"
#include "gpu/detail/DeviceResources.h"

namespace faiss_gmm::gpu::detail {

/// Most kReproducibleBlockRows blocks in a reproducible group: 65536 rows, the ordinary path's
/// block at K = 1024 with the default block_bytes. EStepCuda's retained copies reach this far
/// past a worker's share for full-covariance shapes.
constexpr int64_t kFullMaxGroupBlocks = 16;

/// Rows of a reproducible group for K components (FullEStep.h's note): the kReproducibleBlockRows
/// blocks whose K log-densities (fp32, K rounded up to 4) fit in block_bytes, 1 to kFullMaxGroupBlocks.
int64_t full_reproducible_group_rows(int64_t K, int64_t block_bytes);

class FullEStep final : public ChunkAlgorithm {
  public:
    /// On `device` (current when constructed); block_bytes: EStepCudaOptions::block_bytes (here the
    /// bytes of the block × K·d projections).
    /// fused: the tensor-core log-density kernel (the GPU must be sm_80 or later), else blocked;
    /// sm90: its Hopper version (fused only; the GPU must run sm_90a code: hopper_supported()), its
    /// products in column groups of sm90_group (EStepCudaOptions::hopper_full_group; set_model
    /// refuses widths it has no kernel for).
    FullEStep(int device, bool fast, bool fused, bool sm90, int sm90_group, int64_t block_bytes, bool poison,
              int sm_count, cudaStream_t stream);
    const char* name() const override { return fused_ ? (sm90_ ? "full-fused-sm90" : "full-fused") : "full-blocked"; }
    double bytes_per_row(const EncodedModel& em) const override;
    void set_model(const EncodedModel& em, int64_t chunk_rows, cudaStream_t stream) override;
    void begin(cudaStream_t stream) override;
    void begin_reproducible(const LimbGrid& grid, cudaStream_t stream) override;
    int64_t reproducible_block_rows() const override { return group_rows_; }
    void chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport& report) override;
    void download(cudaStream_t stream) override;
    void add_to(SufficientStats& stats) const override;
    double loglik() const override { return h_loglik_; }
    size_t device_bytes() const override;

  private:
    /// F (and the fused path's fp16 rows) of the chunk's nc rows.
    template <typename Tin>
    void prepare_rows(const Tin* x, int64_t nc, cudaStream_t stream);
    /// Ordinary sums: blocks of block_rows_ rows, added to acc_ / acc2_ / loglik_.
    void run_chunk(int64_t nc, cudaStream_t stream);
    /// Reproducible sums: groups of group_rows_ rows (the chunk starts on a group), limbs.
    void run_chunk_by_group(int64_t nc, cudaStream_t stream);
    /// S rows [0, nb) (Kp wide) = log2 densities of the nb rows starting at chunk row b0
    /// (fused or blocked); S = S_ unless given.
    void log_densities(int64_t b0, int64_t nb, cudaStream_t stream, float* S = nullptr);
    /// Rows of a cut of the second-moment kernel over nb rows (about two CTAs per SM in all, whole
    /// shared-memory tiles): a function of nb, K and the SM count only.
    int64_t moment_segment_rows(int64_t nb) const;
    /// tmp_ = Fᵀ·R over nb rows of F from Fb and their responsibilities in S_: Σ r x and N_k.
    void first_moments(const float* Fb, int64_t nb);
    /// The second-moment kernel on nb rows of F from Fb and their responsibilities in S_, one CTA per
    /// component and segment (moment_segment_rows): added to acc, or written to part (reproducible
    /// sums). Returns the number of segments.
    int64_t second_moments(const float* Fb, int64_t nb, double* acc, float* part, cudaStream_t stream) const;

    int device_;
    bool fast_, fused_, sm90_;
    int sm90_group_request_, sm90_group_ = 0; // FullSm90Layout.h's W: as asked, and for the model's DP
    bool poison_;
    int64_t block_bytes_;
    int sm_count_;
    CublasHandle cublas_;
    int64_t K_ = 0, d_ = 0, ldx_ = 0, Kp_ = 0, nsq_ = 0, block_rows_ = 0;
    int64_t group_rows_ = kReproducibleBlockRows; // reproducible unit (full_reproducible_group_rows)
    int64_t sub_rows_ = 0; // blocked log-densities of a group: pieces of this many rows from its start
    int DP_ = 0; // fused: d padded to a multiple of 32
    // model: W ((K·d) × d), μ_kᵀU_k, log2 constants, means, zeros (bias/acoef of the responsibility kernel)
    DeviceBuffer center_, W_, mproj_, logc2_, means_, zeros_;
    // F = [x − c | 1 | ‖x − c‖² | 0…] per chunk row (ldx floats), P (block × K·d), S / R (block × Kp)
    DeviceBuffer F_, P_, S_, tmp_, acc_, acc2_, loglik_;
    // fused: U_k in fp16 (hi, lo; sm90: packed, pack_full_factors_sm90), 1/s_k, μ_kᵀU_k padded; the
    // chunk's rows in fp16 (hi, lo) and 1/s_row
    DeviceBuffer Wh_, Wl_, kinv_, mpad_, Xh_, Xl_, rinv_;
    // reproducible sums: a group's second-moment partials (fp32, segment × K × nsq), Σ ln Z slots
    DeviceBuffer part_, ll_slots_;
    // The downloaded sums, pinned (a direct copy, no staging through pageable memory): 67 MB of
    // second moments at K = 1024, d = 128, 1.3 ms on an H100.
    PinnedBuffer h_acc_;  // Kp × ldx doubles: [Σ r x | N_k | …] per component
    PinnedBuffer h_acc2_; // K × d(d+1)/2 doubles: the second moments
    double h_loglik_ = 0;
};

} // namespace faiss_gmm::gpu::detail
