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

/// The value limbs → canonical form before the download (limbs 1..3 in [0, 2^32), carries
/// into limb 0), written back as doubles (exact: limb 0 is a sum over rows of values below one
/// grid scale each, far below 2^53), which is what FixedPointSums::add_limbs takes. One thread
/// per value (it alone reads and writes the value's limbs).
__global__ void carry_value_limbs_kernel(unsigned long long* __restrict__ values, int64_t nvalues) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= nvalues) return;
    long long l[kValueLimbs];
#pragma unroll
    for (int j = 0; j < kValueLimbs; j++) l[j] = (long long)values[size_t(j) * nvalues + i];
#pragma unroll
    for (int j = kValueLimbs - 1; j >= 1; j--) {
        const long long c = l[j] >> 32; // floor division by 2^32 (arithmetic shift)
        l[j] -= c * (1ll << 32);
        l[j - 1] += c;
    }
    double* out = reinterpret_cast<double*>(values);
#pragma unroll
    for (int j = 0; j < kValueLimbs; j++) out[size_t(j) * nvalues + i] = double(l[j]);
}

} // namespace

void ReproducibleLimbs::begin(int device, const LimbGrid& grid, cudaStream_t stream) {
    grid_ = grid;
    dev_.allocate(device, count() * 8, false);
    FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(dev_.get(), 0, count() * 8, stream));
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
    carry_value_limbs_kernel<<<unsigned((nv + 255) / 256), 256, 0, stream>>>(values(), nv);
    FAISS_GMM_CUDA_CHECK_LAUNCH("carry_value_limbs_kernel");
    host_.allocate(count() * 8);
    FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(host_.get(), dev_.get(), count() * 8, cudaMemcpyDeviceToHost, stream));
    FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
}

} // namespace faiss_gmm::gpu::detail
