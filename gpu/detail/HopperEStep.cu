// The Hopper algorithm of the CUDA E-step on one GPU (HopperEStep.h); hopper_kernels(DP) is
// the one switch from the runtime tile width to the per-DP launchers (HopperKernels*.cu).
#include "gpu/detail/HopperEStep.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "faiss_gmm/ParallelRanges.h"
#include "gpu/detail/ReproducibleKernels.cuh"
#include "gpu/detail/Sm90Primitives.cuh"

namespace faiss_gmm::gpu::detail {

namespace {

/// Writes 1 when this device code is the sm_90a build (the wgmma kernels are real), else 0: a
/// build for plain sm_90 also reports binary version 90 but carries only the trap stubs.
__global__ void sm90a_probe_kernel(int* out) { *out = FAISS_GMM_SM90A; }

/// Raw sums of the Hopper kernels (acc: K × FW, columns [s·Σ r x̃ (DP) | s_n·N_k | s·Σ r‖x̃‖² | …],
/// about the center c) → the statistics' increments about the model's means, in double, one warp
/// per component: out (K × (d+2)) = [Σ r x̃ | N_k | Σ r‖x̃ − μ_k‖²], the last one as
/// Σ r‖x̃‖² − 2 μ_k·Σ r x̃ + N_k ‖μ_k‖². Diagonal (columns [s·Σ r x̃ (DP/2) | s_q·Σ r x̃² (DP/2) |
/// s_n·N_k | …]): out (K × (2d+1)) = [Σ r x̃ | N_k | Σ r (x̃_j − μ_kj)² (d)], the last ones as
/// Σ r x̃_j² − 2 μ_kj Σ r x̃_j + N_k μ_kj².
__global__ void finalize_sums_kernel(const double* __restrict__ acc, int K, int d, int DP, int FW, int diag,
                                     const float* __restrict__ mu, const double* __restrict__ mu_sq, double x_scale,
                                     double n_scale, double q_scale, double* __restrict__ out) {
    const int k = int((blockIdx.x * size_t(blockDim.x) + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (k >= K) return; // whole warps leave together
    const double* a = acc + size_t(k) * FW;
    if (diag) {
        double* o = out + size_t(k) * (2 * d + 1);
        const double nk = a[DP] * n_scale;
        if (lane == 0) o[d] = nk;
        for (int j = lane; j < d; j += 32) {
            const double f = a[j] * x_scale, m = double(mu[size_t(k) * d + j]);
            o[j] = f;
            o[d + 1 + j] = a[DP / 2 + j] * q_scale - 2.0 * m * f + nk * m * m;
        }
        return;
    }
    double* o = out + size_t(k) * (d + 2);
    double cross = 0;
    for (int j = lane; j < d; j += 32) {
        const double f = a[j] * x_scale;
        o[j] = f;
        cross += double(mu[size_t(k) * d + j]) * f;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) cross += __shfl_xor_sync(0xffffffffu, cross, off);
    if (lane == 0) {
        const double nk = a[DP] * n_scale;
        o[d] = nk;
        o[d + 1] = a[DP + 1] * q_scale - 2.0 * cross + nk * mu_sq[k];
    }
}

/// Reproducible sums: the blocks' raw sums (part: one Kp × FW slice per block, T = float for the
/// 128-row fast kernel, double for the 64-row ones) → the statistics of each block, as
/// finalize_sums_kernel computes them for a whole call (spherical or diagonal layout), cut into
/// limbs on `grid` and added to `values`. One warp per component and group of blocks_per_warp
/// blocks: the limbs of its blocks add up in registers (integers: any order), then atomically.
/// d ≤ 128 (diagonal: DP = 2·padded d ≤ 256): at most 4 features per lane.
template <typename T>
__global__ void block_limbs_kernel(const T* __restrict__ part, int nblocks, int blocks_per_warp, int Kp, int K,
                                   int d, int DP, int FW, int diag, const float* __restrict__ mu,
                                   const double* __restrict__ mu_sq, double x_scale, double n_scale, double q_scale,
                                   LimbGrid grid, unsigned long long* __restrict__ values) {
    const int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    const int k = int(w % K), group = int(w / K);
    const int b0 = group * blocks_per_warp, b1 = min(nblocks, b0 + blocks_per_warp);
    if (b0 >= b1) return; // whole warps leave together
    const int nk_col = DP;                      // N_k: after the features in both layouts
    const int x2_col = diag ? DP / 2 : DP + 1;  // Σ r x² (diagonal, per feature) or Σ r ‖x‖² (spherical)
    long long lx[4][kDeviceLimbs] = {}, lq2[4][kDeviceLimbs] = {}, ln[kDeviceLimbs] = {}, lq[kDeviceLimbs] = {},
              l[kDeviceLimbs];
    for (int b = b0; b < b1; b++) {
        const T* a = part + (size_t(b) * Kp + k) * FW;
        const double nk = double(a[nk_col]) * n_scale;
        double f[4], cross = 0;
#pragma unroll
        for (int m = 0; m < 4; m++) {
            const int j = lane + 32 * m;
            f[m] = j < d ? double(a[j]) * x_scale : 0.0;
            if (j < d) cross += double(mu[size_t(k) * d + j]) * f[m];
        }
        if (diag) {
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const int j = lane + 32 * m;
                if (j >= d) continue;
                const double mu_j = double(mu[size_t(k) * d + j]);
                fixed_limbs(grid, double(a[x2_col + j]) * q_scale - 2.0 * mu_j * f[m] + nk * mu_j * mu_j, grid.inv_sq,
                            l);
#pragma unroll
                for (int i = 0; i < kDeviceLimbs; i++) lq2[m][i] += l[i];
            }
        } else {
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) cross += __shfl_xor_sync(0xffffffffu, cross, off);
        }
#pragma unroll
        for (int m = 0; m < 4; m++) {
            fixed_limbs(grid, f[m], grid.inv_x, l);
#pragma unroll
            for (int i = 0; i < kDeviceLimbs; i++) lx[m][i] += l[i];
        }
        if (lane == 0) {
            fixed_limbs(grid, nk, grid.inv_nk, l);
#pragma unroll
            for (int i = 0; i < kDeviceLimbs; i++) ln[i] += l[i];
            if (!diag) {
                fixed_limbs(grid, double(a[x2_col]) * q_scale - 2.0 * cross + nk * mu_sq[k], grid.inv_sq, l);
#pragma unroll
                for (int i = 0; i < kDeviceLimbs; i++) lq[i] += l[i];
            }
        }
    }
#pragma unroll
    for (int m = 0; m < 4; m++) {
        const int j = lane + 32 * m;
        if (j >= d) continue;
        add_value_limbs(grid, values, grid.x_begin + int64_t(k) * d + j, lx[m]);
        if (diag) add_value_limbs(grid, values, grid.sq_begin + int64_t(k) * d + j, lq2[m]);
    }
    if (lane == 0) {
        add_value_limbs(grid, values, k, ln);
        if (!diag) add_value_limbs(grid, values, grid.sq_begin + k, lq);
    }
}

/// The stream priority `levels` above the lowest (as far as the device has levels; a smaller number
/// is a higher priority): 0 for the reproducible limbs, 1 for the features, both below the kernels'
/// stream (EStepCuda gives it the highest).
int priority_above_least(int levels) {
    int least = 0, greatest = 0;
    FAISS_GMM_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    return std::max(greatest, least - levels);
}

/// Two pairs of reproducible slices when both fit in this (1M rows × K = 1024 × d = 128: 2 × 136 MB
/// fast, 2 × 272 MB accurate); K = 65536 (35.6 MB a block) keeps one pair.
constexpr size_t kDoubleBufferBytes = size_t(1) << 30;

} // namespace

const HopperKernels& hopper_kernels(int DP) {
    switch (DP) {
    case 32: return hopper_kernels_for<32>();
    case 64: return hopper_kernels_for<64>();
    case 96: return hopper_kernels_for<96>();
    case 128: return hopper_kernels_for<128>();
    case 192: return hopper_kernels_for<192>();
    case 256: return hopper_kernels_for<256>();
    default: throw std::logic_error("hopper_kernels: no kernels for tile width " + std::to_string(DP));
    }
}

bool hopper_supported(int device) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess || prop.major != 9 || prop.minor != 0 ||
        cudaSetDevice(device) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    int* d_flag = nullptr;
    int flag = 0;
    bool ok = cudaMalloc(&d_flag, sizeof(int)) == cudaSuccess;
    if (ok) {
        sm90a_probe_kernel<<<1, 1>>>(d_flag);
        ok = cudaGetLastError() == cudaSuccess &&
             cudaMemcpy(&flag, d_flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess;
        cudaFree(d_flag);
    }
    cudaGetLastError();
    return ok && flag == 1;
}

HopperEStep::HopperEStep(int device, const EStepCudaOptions& options, int sm_count)
        : device_(device), poison_(options.poison_buffers), diag_wide_(options.hopper_diag_wide),
          max_clusters_(options.hopper_max_clusters),
          feat_stream_(priority_above_least(1)),
          limb_stream_(priority_above_least(0)) {
    for (int i = 0; i < kMaxSubChunks; i++) feat_done_handles_[i] = feat_done_[i];
    args_.sm_count = sm_count;
    args_.sub_tiles = options.hopper_sub_tiles;
    args_.sub_growth = options.hopper_sub_chunk_growth;
    args_.exchange = options.hopper_exchange;
    args_.flush_tiles = options.hopper_flush_tiles;
    args_.buf = &buf_;
    args_.feat_stream = feat_stream_;
    args_.feat_gate = feat_gate_;
    args_.feat_done = feat_done_handles_;
}

double HopperEStep::bytes_per_row(const EncodedModel& em) const {
    // (Two-pass diagonal, d > 64: + each row's (max, sum) per component tile between the passes.)
    return hopper_bytes_per_row(em.logits.d, em.hopper->FW, em.hopper->split) +
           (two_pass_diag(*em.hopper) ? 8.0 * em.hopper->Kt : 0.0);
}

void HopperEStep::set_model(const EncodedModel& em, int64_t chunk_rows, cudaStream_t stream) {
    const HopperModel& hm = *em.hopper;
    const LogitModel& lm = em.logits;
    HopperChunkArgs& a = args_;
    a.K = int(lm.K);
    a.d = int(lm.d);
    a.model = hm;
    // 0: two passes (K > 1024; diagonal d > 64: heuristics.h hopper_diag_two_pass; fast models whose
    // bias terms do not fit the one-pass kernel's fp16 weights: HopperShape::folded)
    a.C = hm.Kt <= sm90::kMaxCluster && !two_pass_diag(hm) && !hm.fast_unfolded() ? hm.Kt : 0;
    kernels_ = &hopper_kernels(hm.DP);
    kernels_->set_attributes();
    a.max_clusters = a.C > 0 ? kernels_->max_active_clusters(hm.split, a.C, a.sm_count, stream) : 0; // (wide: its own)
    if (a.C > 0 && max_clusters_ > 0) a.max_clusters = std::min(a.max_clusters, max_clusters_);
    if (a.C > 0 && a.max_clusters < 1) {
        throw std::runtime_error("EStepCuda: the Hopper kernel cannot be launched with clusters of " +
                                 std::to_string(a.C) + " blocks on device " + std::to_string(device_));
    }
    // Rows of G, ‖x‖² and log2 Z: whole tiles; 128 rows for two passes (the accurate LSE kernel
    // reads 64-row tiles in pairs).
    const int64_t BM = hm.tile64() && a.C > 0 ? sm90::split::kBM : sm90::kBM;
    chunk_rows = std::max(chunk_rows, block_rows_); // reproducible calls run one block per chunk at least
    const size_t rows = size_t((chunk_rows + BM - 1) / BM * BM), FW = size_t(hm.FW);
    // Partial sums: what one launch writes, at most ~max(sm_count·128, Kp) components.
    const size_t nparts = size_t(hopper_partial_slices(a.C > 0, a.max_clusters, a.sm_count, hm.Kt));
    HopperBuffers& b = buf_;
    b.center.allocate(device_, size_t(lm.d) * 4, false);
    b.W.allocate(device_, hm.W.size() * 2, poison_);
    b.ab.allocate(device_, hm.ab.size() * 4, poison_);
    b.Wb.allocate(device_, hm.Wb.size() * 2, poison_);
    b.mu.allocate(device_, lm.means.size() * 4, poison_);
    b.mu_sq.allocate(device_, lm.mean_sq.size() * 8, poison_);
    b.G.allocate(device_, rows * FW * 2 * (hm.split ? 2 : 1), poison_);
    b.xx.allocate(device_, rows * 4, poison_);
    if (a.C == 0) b.lse.allocate(device_, rows * 4, poison_);
    if (two_pass_diag(hm)) b.lse_parts.allocate(device_, rows * hm.Kt * 8, poison_);
    b.part.allocate(device_, nparts * hm.Kt * sm90::kKc * FW * (hm.tile64() ? 8 : 4), poison_);
    b.acc.allocate(device_, size_t(lm.K) * FW * 8, poison_);
    b.out.allocate(device_, size_t(lm.K) * out_width() * 8, poison_);
    b.loglik.allocate(device_, 8, poison_);
    auto upload = [](DeviceBuffer& dst, const auto& v) {
        FAISS_GMM_CUDA_CHECK(cudaMemcpy(dst.get(), v.data(), v.size() * sizeof(v[0]), cudaMemcpyHostToDevice));
    };
    upload(b.center, em.center);
    upload(b.W, hm.W);
    upload(b.ab, hm.ab);
    if (!hm.Wb.empty()) upload(b.Wb, hm.Wb);
    upload(b.mu, lm.means);
    upload(b.mu_sq, lm.mean_sq);
}

int64_t HopperEStep::reproducible_chunk_units() const {
    // One pass: Q clusters each sum whole blocks, one wave of Q blocks at a time, so a chunk of
    // 256 blocks on 15 clusters takes 18 block times for 17.1 of work (+5.5 %; 255 take 17).
    // Two passes: the second pass's row splits of a chunk with enough tiles.
    const HopperChunkArgs& a = args_;
    return a.C > 0 ? std::max(1, a.max_clusters)
                   : hopper_row_splits(std::numeric_limits<int>::max(), a.sm_count, std::max(1, a.model.Kt));
}

void HopperEStep::begin(cudaStream_t stream) {
    by_block_ = false;
    args_.block_tiles = 0;
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(buf_.acc.get(), 0, buf_.acc.bytes(), stream));
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(buf_.loglik.get(), 0, buf_.loglik.bytes(), stream));
}

void HopperEStep::begin_reproducible(const LimbGrid& grid, cudaStream_t stream) {
    by_block_ = true;
    first_chunk_ = true;
    const int64_t R = reproducible_block_rows();
    args_.block_tiles = int(R / (args_.model.tile64() ? sm90::split::kBM : sm90::kBM));
    args_.llslot_stride = int(R / kReproRows) * kLoglikSlots;
    limbs_.begin(device_, grid, stream);
}

void HopperEStep::chunk(const void* x, DataType type, int64_t n, cudaStream_t stream, EStepCudaReport& report) {
    args_.x = x;
    args_.uint8 = type == DataType::UInt8;
    args_.n = n;
    args_.stream = stream;
    const HopperShape& m = args_.model;
    const int64_t R = reproducible_block_rows();
    const int nblocks = int((n + R - 1) / R);
    const size_t slice = size_t(m.Kt) * sm90::kKc * m.FW, part_bytes = m.tile64() ? 8 : 4;
    if (by_block_) {
        const size_t part_total = size_t(nblocks) * slice * part_bytes;
        if (first_chunk_) { // (the call's first chunk is its largest)
            two_pairs_ = 2 * part_total <= kDoubleBufferBytes;
            first_chunk_ = false;
        } else if (two_pairs_) {
            buf_.block_part.swap(spare_block_part_);
            buf_.llslots.swap(spare_llslots_);
            pair_ ^= 1;
        }
        // The chunk that wrote these slices last (c − 2, or c − 1 with one pair) is read by its limbs.
        FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(stream, limbs_done_[pair_], 0));
        // (Grown on first use: a cudaFree of a smaller buffer synchronizes the device first.)
        buf_.block_part.allocate(device_, part_total, poison_);
        const size_t slot_bytes = size_t(nblocks) * args_.llslot_stride * 8;
        buf_.llslots.allocate(device_, slot_bytes, poison_);
        // Slots no thread writes (the split kernel's second warpgroup, LSE tiles past a block) add 0.
        FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(buf_.llslots.get(), 0, slot_bytes, stream));
    }
    limbs_from_ = 0;
    args_.blocks_enqueued = nullptr;
    if (by_block_) {
        args_.blocks_enqueued = +[](void* self, int b0, int b1) { static_cast<HopperEStep*>(self)->enqueue_limbs(b0, b1); };
    }
    args_.blocks_ctx = this;
    const HopperLaunchShape shape = kernels_->chunk(args_);
    report.blocks = shape.blocks;
    report.cluster = shape.cluster;
    if (!by_block_) return;
    // The blocks no sub-chunk handed over (two passes: all of them). No join here: the chunk that
    // next writes these slices waits for limbs_done_[pair_], download() for the last chunk's.
    if (limbs_from_ < nblocks) enqueue_limbs(limbs_from_, nblocks);
    FAISS_GMM_CUDA_CHECK(cudaEventRecord(limbs_done_[pair_], limb_stream_));
}

void HopperEStep::enqueue_limbs(int b0, int b1) {
    b0 = std::max(b0, limbs_from_); // (each block once)
    if (b1 <= b0) return;
    limbs_from_ = b1;
    FAISS_GMM_CUDA_CHECK(cudaEventRecord(sub_done_, args_.stream));
    FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(limb_stream_, sub_done_, 0));
    const HopperShape& m = args_.model;
    const int nblocks = b1 - b0;
    const size_t slice = size_t(m.Kt) * sm90::kKc * m.FW;
    // Each warp sums ~16 blocks (fewer atomics) while the K·groups warps keep the GPU busy.
    const int groups = (nblocks + 15) / 16, per_warp = (nblocks + groups - 1) / groups;
    const double ir = m.tile64() ? 1.0 / double(sm90::split::kRScale) : 1.0;
    const unsigned grid = unsigned((int64_t(args_.K) * groups * 32 + 255) / 256);
    const int Kp = m.Kt * sm90::kKc;
    if (m.tile64()) {
        block_limbs_kernel<double><<<grid, 256, 0, limb_stream_>>>(
                buf_.block_part.as<double>() + size_t(b0) * slice, nblocks, per_warp, Kp, args_.K, args_.d, m.DP,
                m.FW, m.diag ? 1 : 0, buf_.mu.as<float>(), buf_.mu_sq.as<double>(), ir / double(m.sx), ir,
                ir / double(m.sq), limbs_.grid(), limbs_.values());
    } else {
        block_limbs_kernel<float><<<grid, 256, 0, limb_stream_>>>(
                buf_.block_part.as<float>() + size_t(b0) * slice, nblocks, per_warp, Kp, args_.K, args_.d, m.DP,
                m.FW, m.diag ? 1 : 0, buf_.mu.as<float>(), buf_.mu_sq.as<double>(), ir / double(m.sx), ir,
                ir / double(m.sq), limbs_.grid(), limbs_.values());
    }
    FAISS_GMM_CUDA_CHECK_LAUNCH("block_limbs_kernel");
    limbs_.add_loglik_blocks(buf_.llslots.as<double>() + size_t(b0) * args_.llslot_stride, nblocks, args_.llslot_stride, kLn2,
                             limb_stream_);
}

void HopperEStep::download(cudaStream_t stream) {
    if (by_block_) {
        // The last chunk's limbs are the last work on limb_stream_.
        FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(stream, limbs_done_[pair_], 0));
        limbs_.download(stream);
        return;
    }
    // Columns [s_x·Σ r x (DP) | N_k | s_q·Σ r ‖x‖² | 0…] (diagonal: [s_x·Σ r x | s_q·Σ r x² | N_k | 0…])
    // × 2^12 for the 64-row kernels.
    const HopperShape& m = args_.model;
    const int K = args_.K, d = args_.d;
    const double ir = m.tile64() ? 1.0 / double(sm90::split::kRScale) : 1.0;
    finalize_sums_kernel<<<unsigned((K * 32 + 255) / 256), 256, 0, stream>>>(
            buf_.acc.as<double>(), K, d, m.DP, m.FW, m.diag ? 1 : 0, buf_.mu.as<float>(), buf_.mu_sq.as<double>(),
            ir / double(m.sx), ir, ir / double(m.sq), buf_.out.as<double>());
    FAISS_GMM_CUDA_CHECK_LAUNCH("finalize_sums_kernel");
    const size_t bytes = size_t(K) * out_width() * 8;
    h_out_.allocate(bytes + 8);
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(h_out_.get(), buf_.out.get(), bytes, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(static_cast<uint8_t*>(h_out_.get()) + bytes, buf_.loglik.get(), 8,
                                         cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::memcpy(&h_loglik_, static_cast<uint8_t*>(h_out_.get()) + bytes, 8);
}

void HopperEStep::add_to(SufficientStats& stats) const {
    const int64_t d = args_.d, nsq = args_.model.diag ? d : 1; // [Σ r x (d) | N_k | second moments (nsq)]
    const int64_t width = int64_t(out_width());
    const double* out = static_cast<const double*>(h_out_.get());
    auto add_components = [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; k++) {
            const double* o = out + k * width;
            double* sx = stats.sum_x.data() + k * d;
            for (int64_t j = 0; j < d; j++) sx[j] += o[j];
            stats.nk[k] += o[d];
            double* sq = stats.sum_sq.data() + k * nsq;
            for (int64_t j = 0; j < nsq; j++) sq[j] += o[d + 1 + j];
        }
    };
    // Large K: 8.5M values at K = 65536, d = 128, which accumulate() waits for (its wall time was
    // 16 ms above its device time on the H100 host: bench/results/gpu_k_sweep_NVIDIA-H100.md), so
    // they are added on the core's thread pool, disjoint components in pieces of ≥ 2^20 values, as
    // FullEStep::add_to does.
    parallel_ranges(args_.K, std::max<int64_t>(1, (int64_t(1) << 20) / width), add_components);
}

size_t HopperEStep::device_bytes() const {
    size_t total = 0;
    for (const DeviceBuffer* b : {&buf_.center, &buf_.W, &buf_.ab, &buf_.Wb, &buf_.mu, &buf_.mu_sq, &buf_.G, &buf_.xx,
                                  &buf_.lse, &buf_.lse_parts, &buf_.part, &buf_.acc, &buf_.out, &buf_.loglik, &buf_.block_part,
                                  &buf_.llslots, &spare_block_part_, &spare_llslots_}) {
        total += b->bytes();
    }
    return total + limbs_.device_bytes();
}

} // namespace faiss_gmm::gpu::detail
