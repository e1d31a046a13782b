// The CUDA E-step's reproducible limbs (ReproducibleLimbs.h).
#include "gpu/detail/ReproducibleLimbs.h"

#include <stdexcept>

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

/// The device accumulators → the balanced 32-bit limbs of ReproducibleLimbs.h (out: limb-major,
/// nvalues each). One thread per value. The total T = hi·2^32 + lo (units of 2^-64) is cut as
/// T = L0·2^64 + L1·2^32 + L2 with L1, L2 the low 32 bits read as signed, which carries the
/// rest upward exactly (|T| < 2^94: |L0| < 2^30 + 1).
__global__ void value_limbs_kernel(const unsigned long long* __restrict__ acc, int64_t nvalues,
                                   int32_t* __restrict__ out) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= nvalues) return;
    long long hi = (long long)acc[i], lo = (long long)acc[nvalues + i];
    const int32_t l2 = int32_t(uint32_t(lo)); // lo − l2 is a multiple of 2^32
    hi += (lo - l2) >> 32;
    const int32_t l1 = int32_t(uint32_t(hi));
    out[i] = int32_t((hi - l1) >> 32);
    out[nvalues + i] = l1;
    out[2 * nvalues + i] = l2;
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
    value_limbs_kernel<<<unsigned((nv + 255) / 256), 256, 0, stream>>>(values(), nv, limbs);
    FAISS_GMM_CUDA_CHECK_LAUNCH("value_limbs_kernel");
    host_.allocate(download_words() * 8);
    FAISS_GMM_CUDA_CHECK(
            cudaMemcpyAsync(host_.get(), dev_.get(), download_words() * 8, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

} // namespace faiss_gmm::gpu::detail
