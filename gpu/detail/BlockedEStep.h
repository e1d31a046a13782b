// The Blocked algorithm of the CUDA E-step on one GPU (BlockedKernels.cuh has the kernels):
// per block of rows, a cuBLAS GEMM for the logits, a responsibility kernel, a cuBLAS GEMM
// for Rᵀ·[x | x² | 1 | ‖x‖²] added to double sums; the host turns those into statistics.
// Every model shape and GPU; fp32 GEMMs (accurate) or TF32 (fast).
#pragma once

#include <cublas_v2.h>

#include <vector>

#include "gpu/detail/ChunkAlgorithm.h"
#include "gpu/detail/CublasHandle.h"
#include "gpu/detail/DeviceResources.h"

namespace faiss_gmm::gpu::detail {

class BlockedEStep final : public ChunkAlgorithm {
  public:
    /// On `device` (current when constructed); block_bytes: EStepCudaOptions::block_bytes.
    BlockedEStep(int device, bool fast, int64_t block_bytes, bool poison, cudaStream_t stream);
    const char* name() const override { return "blocked"; }
    double bytes_per_row(const EncodedModel& em) const override;
    void set_model(const EncodedModel& em, int64_t chunk_rows, cudaStream_t stream) override;
    void begin(cudaStream_t stream) override;
    void begin_reproducible(const LimbGrid& grid, cudaStream_t stream) override;
    void chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport& report) override;
    void download(cudaStream_t stream) override;
    void add_to(SufficientStats& stats) const override;
    double loglik() const override { return h_loglik_; }
    size_t device_bytes() const override;

  private:
    template <typename Tin>
    void run_chunk(const Tin* x, int64_t n, cudaStream_t stream);
    /// Reproducible sums: the chunk's blocks of kReproducibleBlockRows rows one at a time (the
    /// same product shapes for every full block, so cuBLAS sums each the same way), their
    /// statistics into limbs, batch_ blocks per limb kernel.
    template <typename Tin>
    void run_chunk_by_block(const Tin* x, int64_t n, cudaStream_t stream);
    /// S (the block's logits, nb rows) = W1ᵀ·F for the rows at Fb.
    void logits_gemm(const float* Fb, int64_t nb);
    /// out = Σ_b r_bk [x | x² | 1 | ‖x‖²]_b over the nb rows of S and Fb.
    void moments_gemm(const float* Fb, int64_t nb, float* out);
    /// Orientation of the second GEMM that cuBLAS ran faster for each compute type on an H200
    /// (bench/results): fp32 as R·Fᵀ (components major, tmp[j·Kp2 + k]), TF32 as F·Rᵀ (tmp[k·ld2 + j]).
    bool component_major() const { return !fast_; }
    /// Model with narrow components (em.refine): uploads the refinement's terms.
    void set_refinement(const RefineModel& rm);
    template <typename Tin>
    void refine_block(const Tin* x, const float* Fb, int64_t nb, cudaStream_t stream);
    /// The narrow components' sums of nb rows in `segments` segments, added to `sums`.
    template <typename Tin>
    void narrow_sums(const Tin* x, int64_t nb, int64_t segments, double* sums, cudaStream_t stream);

    int device_;
    bool fast_requested_, fast_, poison_; // fast_: this model's (fp32 when it needs refinement)
    int64_t block_bytes_;
    CublasHandle cublas_;
    // model
    int64_t K_ = 0, d_ = 0, Dfeat_ = 0, ld2_ = 0, Kp2_ = 0, block_rows_ = 0;
    bool diag_ = false;
    std::vector<float> means_;     // K × d
    std::vector<double> mean_sq_;  // K
    // F2 = [x | x² | 1 | ‖x‖²] per row (ld2 floats), W1 (Kp2 × ld2), logits S (block × Kp2)
    DeviceBuffer center_, W1_, bias_, acoef_, F2_, S_, tmp_, acc_, loglik_;
    std::vector<double> h_acc_; // Kp2 × ld2 feature sums, downloaded
    double h_loglik_ = 0;
    // Exact log-densities (issue 13), for a model with narrow components only (RefineKernels.cuh).
    bool refine_ = false;
    std::vector<int32_t> narrow_;  // the narrow components
    int64_t narrow_segments_ = 0;  // segments per block of narrow_sums_kernel (sized by its buffer)
    DeviceBuffer r_slope_, r_offset_, r_quad_, r_const_, r_means_, r_inv_, r_narrow_, zero_bias_, r_part_, r_acc_;
    std::vector<double> h_racc_;   // narrow_.size() × (2d + 1): Σ r (x − m), Σ r (x − m)², Σ r
    // Reproducible sums (begin_reproducible): per batch of blocks, each block's moments (tmp_),
    // Σ ln Z per thread block of the responsibilities kernel (ll_slots_), narrow sums (r_blocks_).
    int64_t batch_ = 1;              // blocks per limb kernel
    int64_t block_segments_ = 1;     // narrow_sums segments of one block (fixed by the model)
    DeviceBuffer mu_, mu_sq_, narrow_slot_, ll_slots_, r_blocks_;
};

} // namespace faiss_gmm::gpu::detail
