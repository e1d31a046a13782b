// The cuBLAS handle a chunk algorithm owns (BlockedEStep, FullEStep): created on the current
// device and bound to the algorithm's stream, destroyed on that device with its owner.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "gpu/detail/CudaUtils.h"
#include "gpu/detail/DeviceResources.h"

namespace faiss_gmm::gpu::detail {

class CublasHandle {
  public:
    /// `device` must be current (it is where the handle lives); products run on `stream`.
    CublasHandle(int device, cudaStream_t stream) : device_(device) {
        FAISS_GMM_CUBLAS_CHECK(cublasCreate(&h_));
        FAISS_GMM_CUBLAS_CHECK(cublasSetStream(h_, stream));
    }
    ~CublasHandle() {
        if (!h_) return;
        DeviceScope scope(device_);
        cublasDestroy(h_);
    }
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    operator cublasHandle_t() const { return h_; }

  private:
    int device_;
    cublasHandle_t h_ = nullptr;
};

} // namespace faiss_gmm::gpu::detail
