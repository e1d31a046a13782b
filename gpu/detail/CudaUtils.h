// Error checking for CUDA runtime calls: every failure becomes a C++ exception
// that names the call, the place and the CUDA error (never an abort), with
// out-of-memory errors reported as such.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace faiss_gmm::gpu::detail {

/// Thrown for CUDA out-of-memory errors (a std::runtime_error, so callers can
/// catch either).
struct CudaOutOfMemory : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
    std::string msg = std::string("CUDA error in ") + what + " (" + file + ":" + std::to_string(line) +
                      "): " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
    if (err == cudaErrorMemoryAllocation) {
        throw CudaOutOfMemory(msg);
    }
    throw std::runtime_error(msg);
}

} // namespace faiss_gmm::gpu::detail

#define FAISS_GMM_CUDA_CHECK(call)                                                          \
    do {                                                                                    \
        cudaError_t faiss_gmm_err_ = (call);                                                \
        if (faiss_gmm_err_ != cudaSuccess) {                                                \
            ::faiss_gmm::gpu::detail::throw_cuda_error(faiss_gmm_err_, #call, __FILE__, __LINE__); \
        }                                                                                   \
    } while (0)

#define FAISS_GMM_CUBLAS_CHECK(call)                                                               \
    do {                                                                                           \
        cublasStatus_t faiss_gmm_st_ = (call);                                                     \
        if (faiss_gmm_st_ != CUBLAS_STATUS_SUCCESS) {                                              \
            throw std::runtime_error(std::string("cuBLAS error ") + std::to_string(int(faiss_gmm_st_)) + \
                                     " in " #call " (" __FILE__ ":" + std::to_string(__LINE__) + ")"); \
        }                                                                                          \
    } while (0)

/// After a kernel launch: launch-configuration errors show up here.
#define FAISS_GMM_CUDA_CHECK_LAUNCH(name) FAISS_GMM_CUDA_CHECK(cudaGetLastError())
