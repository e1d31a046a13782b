// The full-covariance algorithm of the CUDA E-step on one GPU (issue 17; FullKernels.cuh has
// the kernels and the steps). The log-densities of a block of rows come either
//  * fused (sm_80+, unless EStepCudaAlgorithm::Blocked is asked for): FullFusedKernel.cuh computes
//    (x − c)ᵀU_k on tensor cores and reduces it to log p in registers, the projections never
//    written; fast mode fp16 products, accurate mode 3 products of hi/lo fp16 halves; or
//  * blocked: one cuBLAS GEMM against the K·d-wide matrix [U_1 … U_K] of precision factors (fast
//    mode TF32, accurate fp32), then a squared-norm → log-density kernel;
// then the responsibility kernel of Blocked, an fp32 GEMM for N_k and Σ r x, and a second-moment
// kernel over the rows where a component has responsibility (gathered). d ≤ kMaxFullDim.
#pragma once

#include <cublas_v2.h>

#include <stdexcept>
#include <vector>

#include "gpu/detail/ChunkAlgorithm.h"
#include "gpu/detail/CublasHandle.h"
#include "gpu/detail/DeviceResources.h"

namespace faiss_gmm::gpu::detail {

class FullEStep final : public ChunkAlgorithm {
  public:
    /// On `device` (current when constructed); block_bytes: EStepCudaOptions::block_bytes (here the
    /// bytes of the block × K·d projections).
    /// fused: the tensor-core log-density kernel (the GPU must be sm_80 or later), else blocked.
    FullEStep(int device, bool fast, bool fused, int64_t block_bytes, bool poison, int sm_count, cudaStream_t stream);
    const char* name() const override { return fused_ ? "full-fused" : "full-blocked"; }
    double bytes_per_row(const EncodedModel& em) const override;
    void set_model(const EncodedModel& em, int64_t chunk_rows, cudaStream_t stream) override;
    void begin(cudaStream_t stream) override;
    /// Not available: EStepCuda::accumulate_reproducible adds a full-covariance call as one partial.
    void begin_reproducible(const LimbGrid&, cudaStream_t) override {
        throw std::logic_error("FullEStep: reproducible block sums are not implemented for full covariances");
    }
    void chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport& report) override;
    void download(cudaStream_t stream) override;
    void add_to(SufficientStats& stats) const override;
    double loglik() const override { return h_loglik_; }
    size_t device_bytes() const override;

  private:
    template <typename Tin>
    void run_chunk(const Tin* x, int64_t n, cudaStream_t stream);
    /// S (block × Kp) = log2 densities of nb rows starting at chunk row b0 (fused or blocked).
    void log_densities(int64_t b0, int64_t nb, cudaStream_t stream);

    int device_;
    bool fast_, fused_, poison_;
    int64_t block_bytes_;
    int sm_count_;
    CublasHandle cublas_;
    int64_t K_ = 0, d_ = 0, ldx_ = 0, Kp_ = 0, nsq_ = 0, block_rows_ = 0;
    int DP_ = 0; // fused: d padded to a multiple of 32
    // model: W ((K·d) × d), μ_kᵀU_k, log2 constants, means, zeros (bias/acoef of the responsibility kernel)
    DeviceBuffer center_, W_, mproj_, logc2_, means_, zeros_;
    // F = [x − c | 1 | ‖x − c‖² | 0…] per chunk row (ldx floats), P (block × K·d), S / R (block × Kp)
    DeviceBuffer F_, P_, S_, tmp_, acc_, acc2_, loglik_;
    // fused: U_k in fp16 (hi, lo), 1/s_k, μ_kᵀU_k padded; the chunk's rows in fp16 (hi, lo) and 1/s_row
    DeviceBuffer Wh_, Wl_, kinv_, mpad_, Xh_, Xl_, rinv_;
    std::vector<double> h_acc_;  // Kp × ldx: [Σ r x | N_k | …] per component
    std::vector<double> h_acc2_; // K × d(d+1)/2: the second moments
    double h_loglik_ = 0;
};

} // namespace faiss_gmm::gpu::detail
