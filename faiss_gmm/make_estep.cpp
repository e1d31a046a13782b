#include <cstdio>
#include <stdexcept>
#include <string>

#include "EStep.h"
#include "EStepCpu.h"

#ifdef FAISS_GMM_WITH_CUDA
#include "gpu/EStepCuda.h"
#endif

namespace faiss_gmm {

bool cuda_available() {
#ifdef FAISS_GMM_WITH_CUDA
    return gpu::cuda_device_count() > 0;
#else
    return false;
#endif
}

std::unique_ptr<EStep> make_estep(const GmmParams& params, int64_t K, int64_t d) {
    // Full covariances run on the GPU for d <= 128 (gpu::full_covariance_supported); Auto runs a
    // larger full model on the CPU with a line on stderr, explicit Cuda refuses it.
    const bool full = params.covariance_type == CovarianceType::Full;
    switch (params.device) {
        case Device::Cpu:
            return std::make_unique<EStepCpu>(params.block_size);
        case Device::Auto:
            if (!cuda_available()) return std::make_unique<EStepCpu>(params.block_size);
#ifdef FAISS_GMM_WITH_CUDA
            if (full && !gpu::full_covariance_supported(K, d)) {
                std::fprintf(stderr, "faiss_gmm: device = auto: the CUDA E-step takes full covariances up to d = 128 "
                                     "(this model: K=%lld, d=%lld), running the CPU E-step\n",
                             (long long)K, (long long)d);
                return std::make_unique<EStepCpu>(params.block_size);
            }
#endif
            [[fallthrough]];
        case Device::Cuda:
#ifdef FAISS_GMM_WITH_CUDA
            if (gpu::cuda_device_count() == 0) {
                throw std::runtime_error("GmmParams.device = Cuda but no CUDA GPU is visible "
                                         "(use Device::Auto to fall back to the CPU)");
            }
            if (full && !gpu::full_covariance_supported(K, d)) {
                throw std::invalid_argument("GmmParams.device = Cuda: the CUDA E-step takes covariance_type = full "
                                            "up to d = 128 and K·d < 2^31 (this model: K=" + std::to_string(K) +
                                            ", d=" + std::to_string(d) + "); use Device::Cpu or Device::Auto");
            }
            return gpu::make_estep_cuda(params, K, d);
#else
            (void)K;
            (void)d;
            (void)full;
            throw std::runtime_error("GmmParams.device = Cuda but faiss_gmm was built without the CUDA "
                                     "backend (configure with FAISS_GMM_ENABLE_CUDA=ON and nvcc)");
#endif
    }
    throw std::invalid_argument("make_estep: unknown device");
}

} // namespace faiss_gmm
