// The full-covariance algorithm of the CUDA E-step on one GPU (issue 17; FullKernels.cuh has
// the kernels and the steps): per block of rows, one cuBLAS GEMM against the K·d-wide matrix
// [U_1 … U_K] of precision factors, a fused squared-norm → log-density kernel, the
// responsibility kernel of Blocked, an fp32 GEMM for N_k and Σ r x, and a second-moment kernel
// that skips the row tiles where a component has no responsibility. Any GPU; d ≤ kMaxFullDim.
// Fast mode: TF32 products in the first GEMM (the others stay fp32); accurate: fp32.
#pragma once

#include <cublas_v2.h>

#include <vector>

#include "gpu/detail/ChunkAlgorithm.h"
#include "gpu/detail/DeviceResources.h"

namespace faiss_gmm::gpu::detail {

class FullEStep final : public ChunkAlgorithm {
  public:
    /// On `device` (current when constructed); block_bytes: EStepCudaOptions::block_bytes (here the
    /// bytes of the block × K·d projections).
    FullEStep(int device, bool fast, int64_t block_bytes, bool poison, int sm_count, cudaStream_t stream);
    ~FullEStep() override;
    const char* name() const override { return "full"; }
    double bytes_per_row(const EncodedModel& em) const override;
    void set_model(const EncodedModel& em, int64_t chunk_rows, cudaStream_t stream) override;
    void begin(cudaStream_t stream) override;
    void chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport& report) override;
    void download(cudaStream_t stream) override;
    void add_to(SufficientStats& stats) const override;
    double loglik() const override { return h_loglik_; }
    size_t device_bytes() const override;

  private:
    template <typename Tin>
    void run_chunk(const Tin* x, int64_t n, cudaStream_t stream);

    int device_;
    bool fast_, poison_;
    int64_t block_bytes_;
    int sm_count_;
    cublasHandle_t cublas_ = nullptr;
    int64_t K_ = 0, d_ = 0, ldx_ = 0, Kp_ = 0, nsq_ = 0, block_rows_ = 0;
    // model: W ((K·d) × d), μ_kᵀU_k, log2 constants, means, zeros (bias/acoef of the responsibility kernel)
    DeviceBuffer center_, W_, mproj_, logc2_, means_, zeros_;
    // F = [x − c | 1 | ‖x − c‖² | 0…] per chunk row (ldx floats), P (block × K·d), S / R (block × Kp)
    DeviceBuffer F_, P_, S_, tmp_, acc_, acc2_, loglik_;
    std::vector<double> h_acc_;  // Kp × ldx: [Σ r x | N_k | …] per component
    std::vector<double> h_acc2_; // K × d(d+1)/2: the second moments
    double h_loglik_ = 0;
};

} // namespace faiss_gmm::gpu::detail
