#include <cstdio>
#include <stdexcept>

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
    // The CUDA backend has no full-covariance kernel yet (issue 17): Auto runs full
    // models on the CPU with a line on stderr, explicit Cuda is refused rather than
    // running a kernel that would read the d·d factors as d variances.
    const bool full = params.covariance_type == CovarianceType::Full;
    switch (params.device) {
        case Device::Cpu:
            return std::make_unique<EStepCpu>(params.block_size);
        case Device::Auto:
            if (!cuda_available()) return std::make_unique<EStepCpu>(params.block_size);
            if (full) {
                std::fprintf(stderr, "faiss_gmm: device = auto: the CUDA E-step has no kernel for full "
                                     "covariances yet, running the CPU E-step\n");
                return std::make_unique<EStepCpu>(params.block_size);
            }
            [[fallthrough]];
        case Device::Cuda:
            if (full) {
                throw std::invalid_argument("GmmParams.device = Cuda: the CUDA E-step does not support "
                                            "covariance_type = full yet (use Device::Cpu or Device::Auto, "
                                            "which runs full covariances on the CPU)");
            }
#ifdef FAISS_GMM_WITH_CUDA
            if (gpu::cuda_device_count() == 0) {
                throw std::runtime_error("GmmParams.device = Cuda but no CUDA GPU is visible "
                                         "(use Device::Auto to fall back to the CPU)");
            }
            return gpu::make_estep_cuda(params, K, d);
#else
            (void)K;
            (void)d;
            throw std::runtime_error("GmmParams.device = Cuda but faiss_gmm was built without the CUDA "
                                     "backend (configure with FAISS_GMM_ENABLE_CUDA=ON and nvcc)");
#endif
    }
    throw std::invalid_argument("make_estep: unknown device");
}

} // namespace faiss_gmm
