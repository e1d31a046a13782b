// The full-covariance algorithm of the CUDA E-step on one GPU (FullEStep.h).
#include "gpu/detail/FullEStep.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "faiss_gmm/ParallelRanges.h"
#include "gpu/detail/BlockedKernels.cuh"
#include "gpu/detail/FullFusedKernel.cuh"
#include "gpu/detail/FullHopperKernel.cuh"
#include "gpu/detail/FullKernels.cuh"
#include "gpu/detail/FullModelEncoding.h"
#include "gpu/detail/ReproducibleKernels.cuh"
#include "gpu/detail/heuristics.h"

namespace faiss_gmm::gpu::detail {

namespace {
int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/// Reproducible sums: a group's N_k (column d of tmp) and Σ r (x − c) (columns 0..d−1) per
/// component (tmp: the ldx × Kp fp32 product, component k's column at k·ldx), cut into limbs on
/// `grid` and added (integers: any order). One thread per (component, column).
__global__ void full_first_moment_limbs_kernel(const float* __restrict__ tmp, int K, int d, int ldx, LimbGrid grid,
                                               unsigned long long* __restrict__ values) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= int64_t(K) * (d + 1)) return;
    const int64_t k = i / (d + 1);
    const int j = int(i % (d + 1));
    const double v = tmp[size_t(k) * ldx + j];
    if (v == 0) return; // no limbs to add
    long long l[kDeviceLimbs];
    fixed_limbs(grid, v, j == d ? grid.inv_nk : grid.inv_x, l);
    add_value_limbs(grid, values, j == d ? k : grid.x_begin + k * d + j, l);
}

/// Reproducible sums: a group's second moments, the fp32 partials of its nseg segments (part:
/// segment-major, K·nsq each) summed in segment order in double, cut into limbs on `grid` and
/// added. One thread per value.
__global__ void full_second_moment_limbs_kernel(const float* __restrict__ part, int nseg, int64_t count,
                                                LimbGrid grid, unsigned long long* __restrict__ values) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= count) return;
    double v = 0;
    for (int s = 0; s < nseg; s++) v += double(part[size_t(s) * count + i]);
    if (v == 0) return;
    long long l[kDeviceLimbs];
    fixed_limbs(grid, v, grid.inv_sq, l);
    add_value_limbs(grid, values, grid.sq_begin + i, l);
}
template <typename T>
void upload(DeviceBuffer& buf, int device, const std::vector<T>& v) {
    buf.allocate(device, v.size() * sizeof(T), false);
    FAISS_GMM_CUDA_CHECK(cudaMemcpy(buf.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
}
} // namespace

int64_t full_reproducible_group_rows(int64_t K, int64_t block_bytes) {
    const int64_t blocks = block_bytes / (round_up(K, 4) * 4) / kReproducibleBlockRows;
    return kReproducibleBlockRows * std::clamp<int64_t>(blocks, 1, kFullMaxGroupBlocks);
}

FullEStep::FullEStep(int device, bool fast, bool fused, bool sm90, int sm90_group, int64_t block_bytes, bool poison,
                     int sm_count, cudaStream_t stream)
        : device_(device), fast_(fast), fused_(fused), sm90_(fused && sm90), sm90_group_request_(sm90_group),
          poison_(poison), block_bytes_(block_bytes),
          sm_count_(sm_count), cublas_(device, stream) {}

double FullEStep::bytes_per_row(const EncodedModel& em) const {
    // the raw rows (double-buffered, float32 worst case) and the features; the block buffers are
    // sized by block_bytes, not per chunk row
    const double halves = fused_ ? double(em.full->DP) * 2 * (fast_ ? 1 : 2) + 4 : 0; // Xh, Xl, 1/s_row
    return blocked_bytes_per_row(em.full->d, round_up(em.full->d + 2, 4)) + halves;
}

void FullEStep::set_model(const EncodedModel& em, int64_t chunk_rows, cudaStream_t) {
    const FullModel& fm = *em.full;
    K_ = fm.K;
    d_ = fm.d;
    ldx_ = round_up(d_ + 2, 4); // [x − c | 1 | ‖x − c‖²] (blocked_features_kernel), 16-byte rows
    Kp_ = round_up(K_, 4);
    nsq_ = d_ * (d_ + 1) / 2;
    // Rows per block: the block's buffers in block_bytes (blocked: the block × K·d projections;
    // fused: the block × K log-densities), at least 32 rows, at most a chunk.
    const int64_t row_bytes = fused_ ? Kp_ * 4 : K_ * d_ * 4;
    // Reproducible sums run whole groups per chunk: the chunk buffers hold one at least.
    group_rows_ = full_reproducible_group_rows(K_, block_bytes_);
    chunk_rows = std::max(chunk_rows, group_rows_);
    block_rows_ = std::clamp<int64_t>(block_bytes_ / row_bytes, 32, std::max<int64_t>(32, chunk_rows));
    // (not block_rows_, which depends on chunk_rows: a cuBLAS product's sums may depend on its shape)
    sub_rows_ = std::clamp<int64_t>(block_bytes_ / row_bytes, 32, group_rows_);
    center_.allocate(device_, size_t(d_) * 4, false);
    FAISS_GMM_CUDA_CHECK(cudaMemcpy(center_.get(), em.center.data(), size_t(d_) * 4, cudaMemcpyHostToDevice));
    upload(logc2_, device_, fm.logc2);
    upload(means_, device_, fm.means);
    upload(zeros_, device_, std::vector<float>(size_t(Kp_), 0.f));
    F_.allocate(device_, size_t(chunk_rows) * ldx_ * 4, poison_);
    if (fused_) {
        DP_ = fm.DP;
        // Column groups of the Hopper kernel: 0, 32, 64, or the whole row (any larger request).
        sm90_group_ = std::min<int>(sm90_group_request_, DP_);
        if (sm90_ && sm90_group_ != 0 && sm90_group_ != 32 && sm90_group_ != 64 && sm90_group_ != DP_) {
            throw std::invalid_argument("EStepCudaOptions::hopper_full_group = " +
                                        std::to_string(sm90_group_request_) + ": must be 0, 32, 64 or at least d");
        }
        if (sm90_) {
            upload(Wh_, device_, pack_full_factors_sm90(fm.wh, K_, DP_, sm90_group_));
            if (!fast_) upload(Wl_, device_, pack_full_factors_sm90(fm.wl, K_, DP_, sm90_group_));
        } else {
            upload(Wh_, device_, fm.wh);
            if (!fast_) upload(Wl_, device_, fm.wl);
        }
        upload(kinv_, device_, fm.kinv);
        upload(mpad_, device_, fm.mproj_padded);
        Xh_.allocate(device_, size_t(chunk_rows) * DP_ * 2, poison_);
        if (!fast_) Xl_.allocate(device_, size_t(chunk_rows) * DP_ * 2, poison_);
        rinv_.allocate(device_, size_t(chunk_rows) * 4, poison_);
    } else {
        upload(W_, device_, fm.w);
        upload(mproj_, device_, fm.mproj);
        P_.allocate(device_, size_t(block_rows_) * K_ * d_ * 4, poison_);
    }
    S_.allocate(device_, size_t(block_rows_) * Kp_ * 4, poison_);
    tmp_.allocate(device_, size_t(Kp_) * ldx_ * 4, poison_);
    acc_.allocate(device_, size_t(Kp_) * ldx_ * 8, poison_);
    acc2_.allocate(device_, size_t(K_) * nsq_ * 8, poison_);
    loglik_.allocate(device_, 8, poison_);
    // The poisoning memsets (tests) run on the legacy stream, which the worker's non-blocking
    // stream does not wait for: they must be done before the first chunk writes these buffers.
    if (poison_) FAISS_GMM_CUDA_CHECK(cudaDeviceSynchronize());
}

void FullEStep::begin(cudaStream_t stream) {
    by_block_ = false;
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(acc_.get(), 0, size_t(Kp_) * ldx_ * 8, stream));
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(acc2_.get(), 0, size_t(K_) * nsq_ * 8, stream));
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(loglik_.get(), 0, 8, stream));
}

void FullEStep::begin_reproducible(const LimbGrid& grid, cudaStream_t stream) {
    by_block_ = true;
    limbs_.begin(device_, grid, stream);
    // S holds a group's log-densities (then responsibilities); part_ the moment kernel's partials,
    // at most as many segments as moment_segment_rows allows for any group (≤ 2·SMs / K, ≤ tiles).
    S_.allocate(device_, size_t(group_rows_) * Kp_ * 4, poison_);
    const int64_t nseg = std::min((2 * sm_count_ + K_ - 1) / K_, group_rows_ / kMomentRows);
    part_.allocate(device_, size_t(nseg) * K_ * nsq_ * 4, poison_);
    ll_slots_.allocate(device_, size_t(group_rows_ / 8) * 8, poison_);
}

void FullEStep::chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport&) {
    if (type == DataType::Float32) {
        prepare_rows(static_cast<const float*>(x), n, stream);
    } else {
        prepare_rows(static_cast<const uint8_t*>(x), n, stream);
    }
    if (by_block_) run_chunk_by_group(n, stream);
    else run_chunk(n, stream);
}

int64_t FullEStep::moment_segment_rows(int64_t nb) const {
    const int64_t tiles = (nb + kMomentRows - 1) / kMomentRows;
    const int64_t nseg = std::clamp<int64_t>((2 * sm_count_ + K_ - 1) / K_, 1, tiles);
    return (tiles + nseg - 1) / nseg * kMomentRows;
}

void FullEStep::first_moments(const float* Fb, int64_t nb) { // (on the handle's stream)
    // tmp (ldx × Kp, column-major) = Fᵀ·R: [Σ r x | N_k | …] per component. Accurate mode fp32;
    // fast mode TF32 (operands within 2^-11 rounded, 2^-10 truncated: below the fp16 log-densities'
    // error of the responsibilities; the tests' bound takes 2^-10). In fp32 cuBLAS ran this shape,
    // K = the block's rows, as a SIMT GEMM at ~17 TFLOP/s: 1.03 ms per 65536 rows at K = 1024,
    // d = 128 on an H100, a seventh of the fast call; TF32: 0.18 ms.
    const float one = 1.f, zero = 0.f;
    FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, int(ldx_), int(Kp_), int(nb), &one, Fb,
                                        CUDA_R_32F, int(ldx_), S_.get(), CUDA_R_32F, int(Kp_), &zero, tmp_.get(),
                                        CUDA_R_32F, int(ldx_),
                                        fast_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
}

int64_t FullEStep::second_moments(const float* Fb, int64_t nb, double* acc, float* part, cudaStream_t stream) const {
    const int64_t seg_rows = moment_segment_rows(nb), nseg = (nb + seg_rows - 1) / seg_rows;
    // TF32 products in fast mode; three (hi/lo) in accurate mode, fp32's accuracy (FullKernels.cuh)
    auto kernel = fast_ ? full_second_moment_kernel<false> : full_second_moment_kernel<true>;
    kernel<<<dim3(unsigned(K_), unsigned(nseg)), 256, 0, stream>>>(Fb, int(ldx_), int(nb), int(d_), S_.as<float>(),
                                                                  int(Kp_), means_.as<float>(), int(seg_rows), acc,
                                                                  part);
    FAISS_GMM_CUDA_CHECK_LAUNCH("full_second_moment_kernel");
    return nseg;
}

template <typename Tin>
void FullEStep::prepare_rows(const Tin* x, int64_t nc, cudaStream_t stream) {
    blocked_features_kernel<Tin><<<unsigned((nc + 7) / 8), 256, 0, stream>>>(x, int(nc), int(d_), center_.as<float>(),
                                                                             0, int(ldx_), F_.as<float>());
    FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_features_kernel");
    if (fused_) {
        full_half_rows_kernel<<<unsigned((nc + 7) / 8), 256, 0, stream>>>(
                F_.as<float>(), int(ldx_), int(nc), int(d_), DP_, Xh_.as<__half>(), fast_ ? nullptr : Xl_.as<__half>(),
                rinv_.as<float>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("full_half_rows_kernel");
    }
}

void FullEStep::run_chunk(int64_t nc, cudaStream_t stream) {
    for (int64_t b0 = 0; b0 < nc; b0 += block_rows_) {
        const int64_t nb = std::min(block_rows_, nc - b0);
        const float* Fb = F_.as<float>() + size_t(b0) * ldx_;
        log_densities(b0, nb, stream);
        const unsigned grid = unsigned((nb + 7) / 8);
        blocked_responsibilities_kernel<<<grid, 256, 0, stream>>>(S_.as<float>(), int(nb), int(K_), int(Kp_),
                                                                  zeros_.as<float>(), zeros_.as<float>(), Fb,
                                                                  int(ldx_), -1, loglik_.as<double>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_responsibilities_kernel");
        first_moments(Fb, nb);
        const size_t count = size_t(Kp_) * ldx_;
        add_to_double_kernel<<<unsigned((count + 255) / 256), 256, 0, stream>>>(tmp_.as<float>(), acc_.as<double>(),
                                                                               count);
        FAISS_GMM_CUDA_CHECK_LAUNCH("add_to_double_kernel");
        second_moments(Fb, nb, acc2_.as<double>(), nullptr, stream);
    }
}

void FullEStep::run_chunk_by_group(int64_t nc, cudaStream_t stream) {
    for (int64_t g0 = 0; g0 < nc; g0 += group_rows_) {
        // Everything below is a function of the group's rows (and nb, fixed by the call) alone.
        const int64_t nb = std::min(group_rows_, nc - g0);
        const float* Fb = F_.as<float>() + size_t(g0) * ldx_;
        for (int64_t s0 = 0; s0 < nb; s0 += sub_rows_) {
            log_densities(g0 + s0, std::min(sub_rows_, nb - s0), stream, S_.as<float>() + size_t(s0) * Kp_);
        }
        // Σ ln Z: one slot per thread block of the responsibility kernel (8 rows), summed in runs of
        // kLoglikSlots (fixed by the slot's place in the group; a short last run padded with
        // zeros), each run's sum deposited exactly by a thread of its own. (One thread over all of a
        // group's 8192 slots, a chain of dependent loads, was most of the groups' device time:
        // bench/results/gpu_reproducible_sums.md.)
        const int64_t slots = (nb + 7) / 8, runs = (slots + kLoglikSlots - 1) / kLoglikSlots;
        if (slots < runs * kLoglikSlots) { // (the buffer holds group_rows_ / 8 slots: whole runs)
            FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(ll_slots_.as<double>() + slots, 0,
                                                 size_t(runs * kLoglikSlots - slots) * 8, stream));
        }
        blocked_responsibilities_kernel<<<unsigned(slots), 256, 0, stream>>>(
                S_.as<float>(), int(nb), int(K_), int(Kp_), zeros_.as<float>(), zeros_.as<float>(), Fb, int(ldx_), -1,
                nullptr, ll_slots_.as<double>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_responsibilities_kernel");
        limbs_.add_loglik_blocks(ll_slots_.as<double>(), int(runs), kLoglikSlots, 1.0, stream);
        first_moments(Fb, nb);
        const int64_t nfirst = K_ * (d_ + 1);
        full_first_moment_limbs_kernel<<<unsigned((nfirst + 255) / 256), 256, 0, stream>>>(
                tmp_.as<float>(), int(K_), int(d_), int(ldx_), limbs_.grid(), limbs_.values());
        FAISS_GMM_CUDA_CHECK_LAUNCH("full_first_moment_limbs_kernel");
        const int64_t nseg = second_moments(Fb, nb, nullptr, part_.as<float>(), stream);
        const int64_t count = K_ * nsq_;
        full_second_moment_limbs_kernel<<<unsigned((count + 255) / 256), 256, 0, stream>>>(
                part_.as<float>(), int(nseg), count, limbs_.grid(), limbs_.values());
        FAISS_GMM_CUDA_CHECK_LAUNCH("full_second_moment_limbs_kernel");
    }
}

namespace {
/// The Hopper kernel for one (DP, split) instance (FullHopperKernel.cuh), its shared memory opted in.
template <int DP, bool kSplit, int W>
void launch_sm90(unsigned row_tiles, unsigned ranges, cudaStream_t stream, const __half* Xh, const __half* Xl,
                 const float* rinv, int n, const __half* Wh, const __half* Wl, const float* kinv, const float* mp,
                 const float* logc2, int K, int kc, float* S, int ldS) {
    using Sh = FullSm90Shape<DP, kSplit, W>;
    FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(full_sm90_log_density_kernel<DP, kSplit, W>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, Sh::kSmem));
    full_sm90_log_density_kernel<DP, kSplit, W><<<dim3(row_tiles, ranges), Sh::kThreads, Sh::kSmem, stream>>>(
            Xh, Xl, rinv, n, Wh, Wl, kinv, mp, logc2, K, kc, S, ldS);
    FAISS_GMM_CUDA_CHECK_LAUNCH("full_sm90_log_density_kernel");
}

/// The fused kernel for one (DP, split) instance, its shared memory opted in (at every launch: a
/// few µs, beside milliseconds of kernel).
template <int DP, bool kSplit>
void launch_fused(dim3 grid, cudaStream_t stream, const __half* Xh, const __half* Xl, const float* rinv, int n,
                  const __half* Wh, const __half* Wl, const float* kinv, const float* mp, const float* logc2, int K,
                  int kc, float* S, int ldS) {
    const size_t smem = full_fused_smem_bytes(DP, kSplit);
    FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(full_fused_log_density_kernel<DP, kSplit>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    full_fused_log_density_kernel<DP, kSplit>
            <<<grid, 256, smem, stream>>>(Xh, Xl, rinv, n, Wh, Wl, kinv, mp, logc2, K, kc, S, ldS);
    FAISS_GMM_CUDA_CHECK_LAUNCH("full_fused_log_density_kernel");
}
} // namespace

void FullEStep::log_densities(int64_t b0, int64_t nb, cudaStream_t stream, float* S) {
    if (!S) S = S_.as<float>();
    if (!fused_) {
        // P (K·d × nb, column-major) = Wᵀ·F: every component's projections of the block's rows.
        const float one = 1.f, zero = 0.f;
        const int Kd = int(K_ * d_);
        FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, Kd, int(nb), int(d_), &one, W_.get(),
                                            CUDA_R_32F, int(d_), F_.as<float>() + size_t(b0) * ldx_, CUDA_R_32F,
                                            int(ldx_), &zero, P_.get(), CUDA_R_32F, Kd,
                                            fast_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT));
        const dim3 grid(unsigned((nb + kDensityRows - 1) / kDensityRows),
                        unsigned(std::min<int64_t>((K_ + kDensityComponents - 1) / kDensityComponents, 65535)));
        full_log_density_kernel<<<grid, 256, 0, stream>>>(P_.as<float>(), int(nb), int(K_), int(d_),
                                                          mproj_.as<float>(), logc2_.as<float>(), S, int(Kp_));
        FAISS_GMM_CUDA_CHECK_LAUNCH("full_log_density_kernel");
        return;
    }
    // Row tiles × component ranges (multiples of a staged round): about two CTAs per SM (Hopper
    // kernel: one, it fills an SM) when the block has few row tiles. (The Hopper kernel's rows per
    // CTA depend on the mode only.)
    const int64_t rows_per_cta = sm90_ ? (fast_ ? FullSm90Shape<32, false, 0>::kRows : FullSm90Shape<32, true, 0>::kRows)
                                       : kFusedRows;
    const int64_t ctas_per_sm = sm90_ ? 1 : 2;
    const int64_t tiles = (nb + rows_per_cta - 1) / rows_per_cta;
    const int64_t rounds = (K_ + kFusedRound - 1) / kFusedRound;
    const int64_t ksplit = std::clamp<int64_t>((ctas_per_sm * sm_count_ + tiles - 1) / tiles, 1, rounds);
    const int kc = int((rounds + ksplit - 1) / ksplit * kFusedRound);
    const dim3 grid(unsigned(tiles), unsigned((K_ + kc - 1) / kc));
    const __half* Xh = Xh_.as<__half>() + size_t(b0) * DP_;
    const __half* Xl = fast_ ? nullptr : Xl_.as<__half>() + size_t(b0) * DP_;
    const float* rinv = rinv_.as<float>() + b0;
    const auto* Wh = Wh_.as<__half>();
    const auto* Wl = fast_ ? nullptr : Wl_.as<__half>();
    auto go = [&](auto dp, auto split) {
        constexpr int DP = decltype(dp)::value;
        constexpr bool kSplit = decltype(split)::value;
        if (sm90_) {
            auto with_group = [&](auto group) {
                constexpr int W = decltype(group)::value;
                if constexpr (W <= DP) {
                    launch_sm90<DP, kSplit, W>(grid.x, grid.y, stream, Xh, Xl, rinv, int(nb), Wh, Wl,
                                               kinv_.as<float>(), mpad_.as<float>(), logc2_.as<float>(), int(K_), kc,
                                               S, int(Kp_));
                } else {
                    throw std::logic_error("FullEStep: column groups wider than the row"); // (set_model clamps them)
                }
            };
            switch (sm90_group_) {
                case 0: return with_group(std::integral_constant<int, 0>());
                case 32: return with_group(std::integral_constant<int, 32>());
                case 64: return with_group(std::integral_constant<int, 64>());
            }
            return with_group(std::integral_constant<int, DP>()); // (set_model checked the value)
        } else {
            launch_fused<DP, kSplit>(grid, stream, Xh, Xl, rinv, int(nb), Wh, Wl, kinv_.as<float>(),
                                     mpad_.as<float>(), logc2_.as<float>(), int(K_), kc, S, int(Kp_));
        }
    };
    auto with_dp = [&](auto split) {
        switch (DP_) {
            case 32: return go(std::integral_constant<int, 32>(), split);
            case 64: return go(std::integral_constant<int, 64>(), split);
            case 96: return go(std::integral_constant<int, 96>(), split);
            case 128: return go(std::integral_constant<int, 128>(), split);
        }
        throw std::logic_error("FullEStep: no fused kernel for DP = " + std::to_string(DP_));
    };
    if (fast_) with_dp(std::false_type());
    else with_dp(std::true_type());
}

void FullEStep::download(cudaStream_t stream) {
    if (by_block_) {
        limbs_.download(stream);
        return;
    }
    const size_t acc_bytes = size_t(Kp_) * ldx_ * 8, acc2_bytes = size_t(K_) * nsq_ * 8;
    h_acc_.allocate(acc_bytes);
    h_acc2_.allocate(acc2_bytes);
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(h_acc_.get(), acc_.get(), acc_bytes, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(h_acc2_.get(), acc2_.get(), acc2_bytes, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(&h_loglik_, loglik_.get(), 8, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void FullEStep::add_to(SufficientStats& stats) const {
    // Σ r (x − c) and N_k from the GEMM's columns; the second moments are about the model's means already.
    const double* acc = static_cast<const double*>(h_acc_.get());
    const double* acc2 = static_cast<const double*>(h_acc2_.get());
    auto add_components = [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; k++) {
            const double* a = acc + k * ldx_;
            stats.nk[k] += a[d_];
            for (int64_t j = 0; j < d_; j++) stats.sum_x[k * d_ + j] += a[j];
            const double* s = acc2 + k * nsq_;
            double* out = stats.sum_sq.data() + k * nsq_;
            for (int64_t i = 0; i < nsq_; i++) out[i] += s[i];
        }
    };
    // 8.4M second moments at K = 1024, d = 128: ~6 ms on one core of the dev VM, which accumulate()
    // waits for, so large models are added on the core's thread pool (disjoint components, pieces
    // of ≥ 2^20 values: 8 at that shape). Measured with 8 threads started per call, before the pool:
    // 2.4 ms on the H100 host, where wall − device time was 20 ms with one thread and the caller's clear.
    const int64_t per_component = nsq_ + d_ + 1;
    parallel_ranges(K_, std::max<int64_t>(1, (int64_t(1) << 20) / per_component), add_components);
}

size_t FullEStep::device_bytes() const {
    return center_.bytes() + W_.bytes() + mproj_.bytes() + logc2_.bytes() + means_.bytes() + zeros_.bytes() +
           F_.bytes() + P_.bytes() + S_.bytes() + tmp_.bytes() + acc_.bytes() + acc2_.bytes() + loglik_.bytes() +
           Wh_.bytes() + Wl_.bytes() + kinv_.bytes() + mpad_.bytes() + Xh_.bytes() + Xl_.bytes() + rinv_.bytes() + part_.bytes() + ll_slots_.bytes() + limbs_.device_bytes();
}

} // namespace faiss_gmm::gpu::detail
