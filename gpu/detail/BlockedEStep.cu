// The Blocked algorithm of the CUDA E-step on one GPU (BlockedEStep.h).
#include "gpu/detail/BlockedEStep.h"

#include <algorithm>
#include <tuple>

#include "gpu/detail/BlockedKernels.cuh"
#include "gpu/detail/RefineKernels.cuh"
#include "gpu/detail/ReproducibleKernels.cuh"
#include "gpu/detail/heuristics.h"

namespace faiss_gmm::gpu::detail {

BlockedEStep::BlockedEStep(int device, bool fast, int64_t block_bytes, bool poison, cudaStream_t stream)
        : device_(device), fast_requested_(fast), fast_(fast), poison_(poison), block_bytes_(block_bytes),
          cublas_(device, stream) {}

namespace {
template <typename T>
void upload(DeviceBuffer& buf, int device, const std::vector<T>& v) {
    buf.allocate(device, v.size() * sizeof(T), false);
    FAISS_GMM_CUDA_CHECK(cudaMemcpy(buf.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
}
/// Doubles of narrow_sums_kernel's segment partials: at most 32 MiB, whatever the model.
constexpr size_t kNarrowPartDoubles = size_t(4) << 20;
} // namespace

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
    refine_ = em.refine != nullptr;
    fast_ = fast_requested_ && !refine_; // the refinement's bound is that of fp32 products
    narrow_.clear();
    if (refine_) set_refinement(*em.refine);
    // Reproducible sums: the means on the GPU, and the narrow slot of each component (−1: none).
    std::vector<int32_t> slot(size_t(K_), -1);
    for (size_t f = 0; f < narrow_.size(); f++) slot[size_t(narrow_[f])] = int32_t(f);
    upload(mu_, device_, means_);
    upload(mu_sq_, device_, mean_sq_);
    upload(narrow_slot_, device_, slot);
}


void BlockedEStep::set_refinement(const RefineModel& rm) {
    const ExactLogDensity& e = rm.exact;
    upload(r_slope_, device_, e.err_slope);
    upload(r_offset_, device_, e.err_offset);
    upload(r_quad_, device_, e.quad_const);
    upload(r_const_, device_, e.exact_const);
    upload(r_means_, device_, e.exact_means);
    upload(r_inv_, device_, e.exact_inv_var);
    narrow_ = rm.narrow;
    upload(r_narrow_, device_, narrow_);
    upload(zero_bias_, device_, std::vector<float>(size_t(Kp2_), 0.f));
    const size_t per_segment = narrow_.size() * size_t(2 * d_ + 1);
    const int64_t max_segments = (block_rows_ + kNarrowThreads - 1) / kNarrowThreads;
    narrow_segments_ = std::clamp<int64_t>(int64_t(kNarrowPartDoubles / per_segment), 1, max_segments);
    // One reproducible block's segments: fixed by the model alone, not by the chunk's rows.
    block_segments_ = std::clamp<int64_t>(int64_t(kNarrowPartDoubles / per_segment), 1,
                                          (kReproRows + kNarrowThreads - 1) / kNarrowThreads);
    r_part_.allocate(device_, size_t(std::max(narrow_segments_, block_segments_)) * per_segment * 8, poison_);
    r_acc_.allocate(device_, per_segment * 8, poison_);
}

void BlockedEStep::begin(cudaStream_t stream) {
    by_block_ = false;
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(acc_.get(), 0, acc_.bytes(), stream));
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(loglik_.get(), 0, loglik_.bytes(), stream));
    if (refine_) {
        FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(r_acc_.get(), 0, narrow_.size() * size_t(2 * d_ + 1) * 8, stream));
    }
}

template <typename Tin>
void BlockedEStep::refine_block(const Tin* x, const float* Fb, int64_t nb, cudaStream_t stream) {
    const RefineArgs ra{r_slope_.as<float>(), r_offset_.as<float>(), r_quad_.as<float>(), r_const_.as<double>(),
                        r_means_.as<double>(),  r_inv_.as<double>(),    diag_ ? 0 : 1};
    blocked_refine_kernel<Tin><<<unsigned((nb + 7) / 8), 256, 0, stream>>>(
            S_.as<float>(), int(nb), int(K_), int(Kp2_), bias_.as<float>(), acoef_.as<float>(), Fb, int(ld2_),
            diag_ ? -1 : int(Dfeat_ + 1), x, int(d_), ra);
    FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_refine_kernel");
}

void BlockedEStep::begin_reproducible(const LimbGrid& grid, cudaStream_t stream) {
    by_block_ = true;
    limbs_.begin(device_, grid, stream);
    // A batch's moments: at most 64 MiB, at most 16 blocks (a warp's lanes hold their N_k).
    const size_t moments = size_t(Kp2_) * size_t(ld2_) * 4;
    batch_ = std::clamp<int64_t>(int64_t((size_t(64) << 20) / moments), 1, 16);
    S_.allocate(device_, size_t(kReproRows) * Kp2_ * 4, poison_);
    tmp_.allocate(device_, size_t(batch_) * moments, poison_);
    ll_slots_.allocate(device_, size_t(batch_) * (kReproRows / 8) * 8, poison_);
    if (refine_) r_blocks_.allocate(device_, size_t(batch_) * narrow_.size() * size_t(2 * d_ + 1) * 8, poison_);
}

template <typename Tin>
void BlockedEStep::narrow_sums(const Tin* x, int64_t nb, int64_t segments, double* sums, cudaStream_t stream) {
    const int F = int(narrow_.size());
    // Segments of a multiple of the kernel's row tile, as few as the partials buffer needs.
    const int64_t tiles = (nb + kNarrowThreads - 1) / kNarrowThreads;
    const int64_t seg_rows = (tiles + segments - 1) / segments * kNarrowThreads;
    const int nseg = int((nb + seg_rows - 1) / seg_rows);
    narrow_sums_kernel<Tin><<<dim3(unsigned(F), unsigned(nseg)), kNarrowThreads, 0, stream>>>(
            S_.as<float>(), int(nb), int(Kp2_), x, int(d_), r_narrow_.as<int>(), F, r_means_.as<double>(),
            int(seg_rows), r_part_.as<double>());
    FAISS_GMM_CUDA_CHECK_LAUNCH("narrow_sums_kernel");
    const size_t count = size_t(F) * size_t(2 * d_ + 1);
    sum_segments_kernel<<<unsigned((count + 255) / 256), 256, 0, stream>>>(r_part_.as<double>(), nseg, count, sums);
    FAISS_GMM_CUDA_CHECK_LAUNCH("sum_segments_kernel");
}

void BlockedEStep::chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport&) {
    if (type == DataType::Float32) {
        if (by_block_) run_chunk_by_block(static_cast<const float*>(x), n, stream);
        else run_chunk(static_cast<const float*>(x), n, stream);
    } else {
        if (by_block_) run_chunk_by_block(static_cast<const uint8_t*>(x), n, stream);
        else run_chunk(static_cast<const uint8_t*>(x), n, stream);
    }
}

void BlockedEStep::logits_gemm(const float* Fb, int64_t nb) {
    const cublasComputeType_t ct = fast_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float one = 1.f, zero = 0.f;
    // S (Kp2 × nb, column-major) = W1ᵀ·F: the first Dfeat features of each row.
    FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(Kp2_), int(nb), int(Dfeat_), &one,
                                        W1_.get(), CUDA_R_32F, int(ld2_), Fb, CUDA_R_32F, int(ld2_), &zero, S_.get(),
                                        CUDA_R_32F, int(Kp2_), ct, CUBLAS_GEMM_DEFAULT));
}

void BlockedEStep::moments_gemm(const float* Fb, int64_t nb, float* out) {
    const cublasComputeType_t ct = fast_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float one = 1.f, zero = 0.f;
    if (component_major()) {
        FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, int(Kp2_), int(ld2_), int(nb), &one,
                                            S_.get(), CUDA_R_32F, int(Kp2_), Fb, CUDA_R_32F, int(ld2_), &zero, out,
                                            CUDA_R_32F, int(Kp2_), ct, CUBLAS_GEMM_DEFAULT));
    } else {
        FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, int(ld2_), int(Kp2_), int(nb), &one,
                                            Fb, CUDA_R_32F, int(ld2_), S_.get(), CUDA_R_32F, int(Kp2_), &zero, out,
                                            CUDA_R_32F, int(ld2_), ct, CUBLAS_GEMM_DEFAULT));
    }
}

namespace {

/// Reproducible sums: the moments of nblocks blocks (tmp: one Kp2 × ld2 product each, components
/// major when cm) and, for narrow components (slot[k] ≥ 0), their direct sums (rsums: per block,
/// F × (2d + 1)) → each block's statistics about the model's means, as BlockedEStep::add_to
/// computes them, cut into limbs on `grid` and added to `values`. One warp per component; lane b
/// keeps block b's N_k and spherical second moment (nblocks ≤ 16).
__global__ void blocked_block_limbs_kernel(const float* __restrict__ tmp, int nblocks, int Kp2, int ld2, int cm,
                                           int K, int d, int Dfeat, int diag, const float* __restrict__ mu,
                                           const double* __restrict__ mu_sq, const int* __restrict__ slot, int F,
                                           const double* __restrict__ rsums, LimbGrid grid,
                                           unsigned long long* __restrict__ values) {
    const int k = int((blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (k >= K) return; // whole warps leave together
    const int f = slot[k];
    const size_t per_block = size_t(Kp2) * ld2, rlen = size_t(2 * d + 1);
    auto at = [&](int b, int e) {
        const float* t = tmp + size_t(b) * per_block;
        return double(cm ? t[size_t(e) * Kp2 + k] : t[size_t(k) * ld2 + e]);
    };
    auto dev = [&](int b) { return rsums + (size_t(b) * F + size_t(f)) * rlen; };
    double my_nk = 0, my_sq = 0; // lane b: block b's
    for (int b = 0; b < nblocks; b++) {
        double cross = 0; // spherical: Σ_j μ_j·Σ r x_j, or a narrow component's Σ r (x − μ)²
        if (!diag) {
            for (int j = lane; j < d; j += 32) cross += f < 0 ? double(mu[size_t(k) * d + j]) * at(b, j) : dev(b)[d + j];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) cross += __shfl_xor_sync(0xffffffffu, cross, off);
        }
        const double nk = at(b, Dfeat);
        if (lane == b) {
            my_nk = nk;
            my_sq = f >= 0 ? cross : at(b, Dfeat + 1) - 2.0 * cross + nk * mu_sq[k];
        }
    }
    long long l[kDeviceLimbs], ln[kDeviceLimbs] = {}, lq[kDeviceLimbs] = {};
    if (lane < nblocks) {
        fixed_limbs(grid, my_nk, grid.inv_nk, ln);
        if (!diag) fixed_limbs(grid, my_sq, grid.inv_sq, lq);
    }
#pragma unroll
    for (int i = 0; i < kDeviceLimbs; i++) { // integers: any order of the lanes gives the same sum
        for (int off = 16; off > 0; off >>= 1) {
            ln[i] += __shfl_xor_sync(0xffffffffu, ln[i], off);
            lq[i] += __shfl_xor_sync(0xffffffffu, lq[i], off);
        }
    }
    if (lane == 0) {
        add_value_limbs(grid, values, k, ln);
        if (!diag) add_value_limbs(grid, values, grid.sq_begin + k, lq);
    }
    for (int j0 = 0; j0 < d; j0 += 32) { // whole warps: the shuffle below needs every lane
        const int j = j0 + lane;
        const bool here = j < d;
        const double m = here ? mu[size_t(k) * d + j] : 0.0;
        long long lx[kDeviceLimbs] = {}, ld[kDeviceLimbs] = {};
        for (int b = 0; b < nblocks; b++) {
            const double nk = __shfl_sync(0xffffffffu, my_nk, b);
            if (!here) continue;
            const double sx = f < 0 ? at(b, j) : dev(b)[j] + dev(b)[2 * d] * m;
            fixed_limbs(grid, sx, grid.inv_x, l);
#pragma unroll
            for (int i = 0; i < kDeviceLimbs; i++) lx[i] += l[i];
            if (diag) {
                fixed_limbs(grid, f < 0 ? at(b, d + j) - 2.0 * m * at(b, j) + nk * m * m : dev(b)[d + j], grid.inv_sq,
                            l);
#pragma unroll
                for (int i = 0; i < kDeviceLimbs; i++) ld[i] += l[i];
            }
        }
        if (!here) continue;
        add_value_limbs(grid, values, grid.x_begin + int64_t(k) * d + j, lx);
        if (diag) add_value_limbs(grid, values, grid.sq_begin + int64_t(k) * d + j, ld);
    }
}

} // namespace

template <typename Tin>
void BlockedEStep::run_chunk_by_block(const Tin* x, int64_t nc, cudaStream_t stream) {
    blocked_features_kernel<Tin><<<unsigned((nc + 7) / 8), 256, 0, stream>>>(
            x, int(nc), int(d_), center_.as<float>(), diag_ ? 1 : 0, int(ld2_), F2_.as<float>());
    FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_features_kernel");
    const int64_t R = kReproRows, nblocks = (nc + R - 1) / R, slots = R / 8;
    const int F = int(narrow_.size());
    const size_t moments = size_t(Kp2_) * ld2_, rlen = size_t(F) * size_t(2 * d_ + 1);
    for (int64_t g0 = 0; g0 < nblocks; g0 += batch_) {
        const int nbatch = int(std::min(batch_, nblocks - g0));
        // A short block has fewer thread blocks of the responsibilities kernel: its other slots add 0.
        FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(ll_slots_.get(), 0, size_t(nbatch) * slots * 8, stream));
        if (refine_) {
            FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(r_blocks_.get(), 0, size_t(nbatch) * rlen * 8, stream));
        }
        for (int i = 0; i < nbatch; i++) {
            const int64_t r0 = (g0 + i) * R, nb = std::min(R, nc - r0);
            const float* Fb = F2_.as<float>() + size_t(r0) * ld2_;
            const Tin* xb = x + size_t(r0) * d_;
            logits_gemm(Fb, nb);
            if (refine_) refine_block(xb, Fb, nb, stream);
            const int xx_col = diag_ || refine_ ? -1 : int(Dfeat_ + 1);
            blocked_responsibilities_kernel<<<unsigned((nb + 7) / 8), 256, 0, stream>>>(
                    S_.as<float>(), int(nb), int(K_), int(Kp2_), (refine_ ? zero_bias_ : bias_).as<float>(),
                    acoef_.as<float>(), Fb, int(ld2_), xx_col, nullptr, ll_slots_.as<double>() + size_t(i) * slots);
            FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_responsibilities_kernel");
            if (refine_) narrow_sums(xb, nb, block_segments_, r_blocks_.as<double>() + size_t(i) * rlen, stream);
            moments_gemm(Fb, nb, tmp_.as<float>() + size_t(i) * moments);
        }
        blocked_block_limbs_kernel<<<unsigned((K_ * 32 + 255) / 256), 256, 0, stream>>>(
                tmp_.as<float>(), nbatch, int(Kp2_), int(ld2_), component_major() ? 1 : 0, int(K_), int(d_),
                int(Dfeat_), diag_ ? 1 : 0, mu_.as<float>(), mu_sq_.as<double>(), narrow_slot_.as<int>(), F,
                refine_ ? r_blocks_.as<double>() : nullptr, limbs_.grid(), limbs_.values());
        FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_block_limbs_kernel");
        limbs_.add_loglik_blocks(ll_slots_.as<double>(), nbatch, int(slots), 1.0, stream);
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
        // With refinement, S holds full logits: no bias and no ‖x‖² term left to add.
        const Tin* xb = x + size_t(b0) * d_;
        if (refine_) refine_block(xb, Fb, nb, stream);
        const int xx_col = diag_ || refine_ ? -1 : int(Dfeat_ + 1);
        // (A variant holding the row in registers, one read of S instead of two, was tried:
        // the fast E-step at 1M x 1024 x 128 took 8.9 ms with it and 7.0 ms with this one, H200.)
        blocked_responsibilities_kernel<<<grid, 256, 0, stream>>>(
                S_.as<float>(), int(nb), int(K_), int(Kp2_), (refine_ ? zero_bias_ : bias_).as<float>(),
                acoef_.as<float>(), Fb, int(ld2_), xx_col, loglik_.as<double>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_responsibilities_kernel");
        if (refine_) narrow_sums(xb, nb, narrow_segments_, r_acc_.as<double>(), stream);
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
    if (by_block_) {
        limbs_.download(stream);
        return;
    }
    h_acc_.resize(size_t(Kp2_) * ld2_);
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(h_acc_.data(), acc_.get(), h_acc_.size() * 8, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(&h_loglik_, loglik_.get(), 8, cudaMemcpyDeviceToHost, stream));
    h_racc_.resize(narrow_.size() * size_t(2 * d_ + 1));
    if (refine_) {
        FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(h_racc_.data(), r_acc_.get(), h_racc_.size() * 8,
                                             cudaMemcpyDeviceToHost, stream));
    }
    FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void BlockedEStep::add_to(SufficientStats& stats) const {
    // Feature columns [Σ r x | Σ r x² | N_k | Σ r ‖x‖²] about the center → statistics about the
    // model's means, in double.
    const bool cm = component_major();
    auto at = [&](int64_t k, int64_t e) { return cm ? h_acc_[e * Kp2_ + k] : h_acc_[k * ld2_ + e]; };
    const int64_t d = d_;
    size_t f = 0; // next narrow component (ascending)
    for (int64_t k = 0; k < K_; k++) {
        const float* mu = means_.data() + k * d;
        const double nk = at(k, Dfeat_);
        stats.nk[k] += nk;
        if (f < narrow_.size() && narrow_[f] == k) {
            // Narrow: Σ r (x − c) = Σ r (x − m) + Σ r·μ and the second moment about μ, summed directly.
            const double* dev = h_racc_.data() + f * size_t(2 * d + 1);
            double sq = 0;
            for (int64_t j = 0; j < d; j++) {
                stats.sum_x[k * d + j] += dev[j] + dev[2 * d] * double(mu[j]);
                if (diag_) stats.sum_sq[k * d + j] += dev[d + j];
                else sq += dev[d + j];
            }
            if (!diag_) stats.sum_sq[k] += sq;
            f++;
            continue;
        }
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
           acc_.bytes() + loglik_.bytes() + r_slope_.bytes() + r_offset_.bytes() + r_quad_.bytes() + r_const_.bytes() +
           r_means_.bytes() + r_inv_.bytes() + r_narrow_.bytes() + zero_bias_.bytes() + r_part_.bytes() + r_acc_.bytes() +
           mu_.bytes() + mu_sq_.bytes() + narrow_slot_.bytes() + ll_slots_.bytes() + r_blocks_.bytes() +
           limbs_.device_bytes();
}

} // namespace faiss_gmm::gpu::detail
