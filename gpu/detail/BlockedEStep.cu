// The Blocked algorithm of the CUDA E-step on one GPU (BlockedEStep.h).
#include "gpu/detail/BlockedEStep.h"

#include <algorithm>
#include <tuple>

#include "gpu/detail/BlockedKernels.cuh"
#include "gpu/detail/heuristics.h"

namespace faiss_gmm::gpu::detail {

BlockedEStep::BlockedEStep(int device, bool fast, int64_t block_bytes, bool poison, cudaStream_t stream)
        : device_(device), fast_(fast), poison_(poison), block_bytes_(block_bytes) {
    FAISS_GMM_CUBLAS_CHECK(cublasCreate(&cublas_));
    FAISS_GMM_CUBLAS_CHECK(cublasSetStream(cublas_, stream));
}

BlockedEStep::~BlockedEStep() {
    if (cublas_) {
        DeviceScope scope(device_);
        cublasDestroy(cublas_);
    }
}

double BlockedEStep::bytes_per_row(const EncodedModel& em) const {
    return blocked_bytes_per_row(em.logits.d, em.blocked.ld2);
}

void BlockedEStep::set_model(const EncodedModel& em, int64_t chunk_rows, cudaStream_t) {
    const LogitModel& lm = em.logits;
    const BlockedModel& bm = em.blocked;
    std::tie(K_, d_, Dfeat_, diag_, ld2_, Kp2_) = std::make_tuple(lm.K, lm.d, lm.Dfeat, lm.diag, bm.ld2, bm.Kp2);
    means_ = lm.means;
    mean_sq_ = lm.mean_sq;
    block_rows_ = blocked_block_rows(block_bytes_, Kp2_, chunk_rows);
    center_.allocate(device_, size_t(d_) * 4, false);
    W1_.allocate(device_, bm.w1.size() * 4, poison_);
    bias_.allocate(device_, size_t(Kp2_) * 4, poison_);
    acoef_.allocate(device_, size_t(Kp2_) * 4, poison_);
    F2_.allocate(device_, size_t(chunk_rows) * ld2_ * 4, poison_);
    S_.allocate(device_, size_t(block_rows_) * Kp2_ * 4, poison_);
    tmp_.allocate(device_, size_t(Kp2_) * ld2_ * 4, poison_);
    acc_.allocate(device_, size_t(Kp2_) * ld2_ * 8, poison_);
    loglik_.allocate(device_, 8, poison_);
    FAISS_GMM_CUDA_CHECK(cudaMemcpy(center_.get(), em.center.data(), size_t(d_) * 4, cudaMemcpyHostToDevice));
    FAISS_GMM_CUDA_CHECK(cudaMemcpy(W1_.get(), bm.w1.data(), bm.w1.size() * 4, cudaMemcpyHostToDevice));
    FAISS_GMM_CUDA_CHECK(cudaMemcpy(bias_.get(), bm.bias.data(), bm.bias.size() * 4, cudaMemcpyHostToDevice));
    FAISS_GMM_CUDA_CHECK(cudaMemcpy(acoef_.get(), bm.acoef.data(), bm.acoef.size() * 4, cudaMemcpyHostToDevice));
}

void BlockedEStep::begin(cudaStream_t stream) {
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(acc_.get(), 0, acc_.bytes(), stream));
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(loglik_.get(), 0, loglik_.bytes(), stream));
}

void BlockedEStep::chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport&) {
    if (type == DataType::Float32) {
        run_chunk(static_cast<const float*>(x), n, stream);
    } else {
        run_chunk(static_cast<const uint8_t*>(x), n, stream);
    }
}

template <typename Tin>
void BlockedEStep::run_chunk(const Tin* x, int64_t nc, cudaStream_t stream) {
    blocked_features_kernel<Tin><<<unsigned((nc + 7) / 8), 256, 0, stream>>>(
            x, int(nc), int(d_), center_.as<float>(), diag_ ? 1 : 0, int(ld2_), F2_.as<float>());
    FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_features_kernel");
    const cublasComputeType_t ct = fast_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float one = 1.f, zero = 0.f;
    for (int64_t b0 = 0; b0 < nc; b0 += block_rows_) {
        const int64_t nb = std::min(block_rows_, nc - b0);
        const float* Fb = F2_.as<float>() + size_t(b0) * ld2_;
        // S (Kp2 × nb, column-major) = W1ᵀ·F: the first Dfeat features of each row.
        FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(Kp2_), int(nb), int(Dfeat_), &one,
                                            W1_.get(), CUDA_R_32F, int(ld2_), Fb, CUDA_R_32F, int(ld2_), &zero,
                                            S_.get(), CUDA_R_32F, int(Kp2_), ct, CUBLAS_GEMM_DEFAULT));
        const unsigned grid = unsigned((nb + 7) / 8);
        const int xx_col = diag_ ? -1 : int(Dfeat_ + 1);
        // (A variant holding the row in registers, one read of S instead of two, was tried:
        // the fast E-step at 1M x 1024 x 128 took 8.9 ms with it and 7.0 ms with this one, H200.)
        blocked_responsibilities_kernel<<<grid, 256, 0, stream>>>(S_.as<float>(), int(nb), int(K_), int(Kp2_),
                                                                  bias_.as<float>(), acoef_.as<float>(), Fb,
                                                                  int(ld2_), xx_col, loglik_.as<double>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_responsibilities_kernel");
        // Σ_b r_bk [x | x² | 1 | ‖x‖²]_b
        if (component_major()) {
            FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, int(Kp2_), int(ld2_), int(nb),
                                                &one, S_.get(), CUDA_R_32F, int(Kp2_), Fb, CUDA_R_32F, int(ld2_),
                                                &zero, tmp_.get(), CUDA_R_32F, int(Kp2_), ct, CUBLAS_GEMM_DEFAULT));
        } else {
            FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, int(ld2_), int(Kp2_), int(nb),
                                                &one, Fb, CUDA_R_32F, int(ld2_), S_.get(), CUDA_R_32F, int(Kp2_),
                                                &zero, tmp_.get(), CUDA_R_32F, int(ld2_), ct, CUBLAS_GEMM_DEFAULT));
        }
        const size_t count = size_t(Kp2_) * ld2_;
        add_to_double_kernel<<<unsigned((count + 255) / 256), 256, 0, stream>>>(tmp_.as<float>(), acc_.as<double>(),
                                                                               count);
        FAISS_GMM_CUDA_CHECK_LAUNCH("add_to_double_kernel");
    }
}

void BlockedEStep::download(cudaStream_t stream) {
    h_acc_.resize(size_t(Kp2_) * ld2_);
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(h_acc_.data(), acc_.get(), h_acc_.size() * 8, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(&h_loglik_, loglik_.get(), 8, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void BlockedEStep::add_to(SufficientStats& stats) const {
    // Feature columns [Σ r x | Σ r x² | N_k | Σ r ‖x‖²] about the center → statistics about the
    // model's means, in double.
    const bool cm = component_major();
    auto at = [&](int64_t k, int64_t e) { return cm ? h_acc_[e * Kp2_ + k] : h_acc_[k * ld2_ + e]; };
    const int64_t d = d_;
    for (int64_t k = 0; k < K_; k++) {
        const float* mu = means_.data() + k * d;
        const double nk = at(k, Dfeat_);
        stats.nk[k] += nk;
        // (four partial sums: this loop is on the critical path of every E-step)
        double cross4[4] = {0, 0, 0, 0};
        for (int64_t j = 0; j < d; j++) {
            const double f = at(k, j);
            stats.sum_x[k * d + j] += f;
            cross4[j & 3] += double(mu[j]) * f;
        }
        const double cross = (cross4[0] + cross4[1]) + (cross4[2] + cross4[3]);
        if (!diag_) {
            stats.sum_sq[k] += at(k, Dfeat_ + 1) - 2.0 * cross + nk * mean_sq_[k];
        } else {
            for (int64_t j = 0; j < d; j++) {
                const double m = mu[j];
                stats.sum_sq[k * d + j] += at(k, d + j) - 2.0 * m * at(k, j) + nk * m * m;
            }
        }
    }
}

size_t BlockedEStep::device_bytes() const {
    return center_.bytes() + W1_.bytes() + bias_.bytes() + acoef_.bytes() + F2_.bytes() + S_.bytes() + tmp_.bytes() +
           acc_.bytes() + loglik_.bytes();
}

} // namespace faiss_gmm::gpu::detail
