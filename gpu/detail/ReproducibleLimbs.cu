// The CUDA E-step's reproducible limbs (ReproducibleLimbs.h).
#include "gpu/detail/ReproducibleLimbs.h"

#include "gpu/detail/CudaUtils.h"
#include "gpu/detail/ReproducibleKernels.cuh"

namespace faiss_gmm::gpu::detail {

namespace {

/// Σ ln Z of every block: the block's `per_block` slots summed in order, times `unit` (ln 2 for
/// log2 units), deposited exactly. One thread per block.
__global__ void loglik_blocks_kernel(const double* __restrict__ slots, int nblocks, int per_block, double unit,
                                     unsigned long long* __restrict__ limbs) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nblocks) return;
    double s = 0;
    for (int i = 0; i < per_block; i++) s += slots[size_t(b) * per_block + i];
    deposit_exact(s * unit, limbs);
}

/// The device accumulators → the balanced 32-bit limbs (LimbFormat.h: cut_limbs; out:
/// limb-major, nvalues each); a sum too large for them sets the overflow flag. One thread per value.
__global__ void value_limbs_kernel(const unsigned long long* __restrict__ acc, int64_t nvalues,
                                   int32_t* __restrict__ out, unsigned long long* __restrict__ overflow) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= nvalues) return;
    int32_t l[kHostLimbs];
    if (!cut_limbs((long long)acc[i], (long long)acc[nvalues + i], l)) atomicOr(overflow, 1ull);
#pragma unroll
    for (int j = 0; j < kHostLimbs; j++) out[size_t(j) * nvalues + i] = l[j];
}

} // namespace

void ReproducibleLimbs::begin(int device, const LimbGrid& grid, cudaStream_t stream) {
    grid_ = grid;
    dev_.allocate(device, count() * 8, false);
    grid_.overflow = dev_.as<unsigned long long>() + kLoglikLimbs;
    // Σ ln Z's limbs and the flag, and the accumulators (the int32 limbs are written whole).
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(dev_.get(), 0, (kLoglikLimbs + 1) * 8, stream));
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(values(), 0, size_t(kDeviceLimbs) * grid_.nvalues * 8, stream));
}

void ReproducibleLimbs::add_loglik_blocks(const double* slots, int nblocks, int per_block, double unit,
                                          cudaStream_t stream) {
    if (nblocks <= 0) return;
    loglik_blocks_kernel<<<unsigned((nblocks + 127) / 128), 128, 0, stream>>>(slots, nblocks, per_block, unit,
                                                                             loglik());
    FAISS_GMM_CUDA_CHECK_LAUNCH("loglik_blocks_kernel");
}

void ReproducibleLimbs::download(cudaStream_t stream) {
    const int64_t nv = grid_.nvalues;
    int32_t* limbs = reinterpret_cast<int32_t*>(dev_.as<unsigned long long>() + kLoglikLimbs + 1);
    value_limbs_kernel<<<unsigned((nv + 255) / 256), 256, 0, stream>>>(values(), nv, limbs, grid_.overflow);
    FAISS_GMM_CUDA_CHECK_LAUNCH("value_limbs_kernel");
    host_.allocate(download_words() * 8);
    FAISS_GMM_CUDA_CHECK(
            cudaMemcpyAsync(host_.get(), dev_.get(), download_words() * 8, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

} // namespace faiss_gmm::gpu::detail
