// RAII for what the CUDA E-step holds on a GPU, as FAISS's DeviceScope / CudaEvent: the
// current device for a scope, streams, events, device buffers and pinned host buffers.
// Constructors and allocations throw (CudaUtils.h); destructors never do (errors there are
// ignored: the context may be going away).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>

#include "gpu/detail/CudaUtils.h"

namespace faiss_gmm::gpu::detail {

/// Makes `device` current for the scope and restores the previous one after.
class DeviceScope {
  public:
    explicit DeviceScope(int device) {
        if (cudaGetDevice(&prev_) != cudaSuccess) {
            cudaGetLastError();
            prev_ = -1;
        }
        if (prev_ != device) FAISS_GMM_CUDA_CHECK(cudaSetDevice(device));
        device_ = device;
    }
    ~DeviceScope() {
        if (prev_ >= 0 && prev_ != device_) cudaSetDevice(prev_);
    }
    DeviceScope(const DeviceScope&) = delete;
    DeviceScope& operator=(const DeviceScope&) = delete;

  private:
    int prev_ = -1, device_ = 0;
};

/// Owner of a stream or event handle of the current device, destroyed with the owner (a
/// stream after its pending work).
template <typename Handle>
class CudaHandle {
  public:
    CudaHandle(const CudaHandle&) = delete;
    CudaHandle& operator=(const CudaHandle&) = delete;
    ~CudaHandle() {
        if (!h_) return;
        if constexpr (std::is_same_v<Handle, cudaStream_t>) {
            cudaStreamSynchronize(h_);
            cudaStreamDestroy(h_);
        } else {
            cudaEventDestroy(h_);
        }
    }
    Handle get() const { return h_; }
    operator Handle() const { return h_; }

  protected:
    CudaHandle() = default;
    Handle h_ = nullptr;
};

/// A non-blocking stream; priority: cudaDeviceGetStreamPriorityRange's scale (lower numbers
/// run first), 0 = default.
class CudaStream : public CudaHandle<cudaStream_t> {
  public:
    explicit CudaStream(int priority = 0) {
        FAISS_GMM_CUDA_CHECK(cudaStreamCreateWithPriority(&h_, cudaStreamNonBlocking, priority));
    }
};

/// An event; timing = false for ordering-only events (cheaper).
class CudaEvent : public CudaHandle<cudaEvent_t> {
  public:
    explicit CudaEvent(bool timing = false) {
        FAISS_GMM_CUDA_CHECK(cudaEventCreateWithFlags(&h_, timing ? cudaEventDefault : cudaEventDisableTiming));
    }
};

/// Device allocation owned by one GPU; allocate() keeps a large enough buffer.
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() { release(); }
    void release() {
        if (ptr_) {
            DeviceScope scope(device_);
            cudaFree(ptr_);
            ptr_ = nullptr;
            bytes_ = 0;
        }
    }
    /// poison: fill with 0xff bytes (NaN floats) so that reads of unwritten data show in tests.
    void allocate(int device, size_t nbytes, bool poison) {
        if (ptr_ && bytes_ >= nbytes && device_ == device) return;
        release();
        device_ = device;
        if (nbytes == 0) return;
        DeviceScope scope(device);
        if (cudaMalloc(&ptr_, nbytes) != cudaSuccess) {
            cudaGetLastError();
            ptr_ = nullptr;
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            char msg[256];
            snprintf(msg, sizeof(msg),
                     "EStepCuda: out of GPU memory on device %d allocating %.1f MiB (%.1f MiB free of %.1f MiB); "
                     "reduce EStepCudaOptions::chunk_rows or K",
                     device, nbytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
            throw CudaOutOfMemory(msg);
        }
        bytes_ = nbytes;
        if (poison) {
            FAISS_GMM_CUDA_CHECK(cudaMemset(ptr_, 0xff, nbytes)); // 0xffffffff is a NaN
            // cudaMemset runs on the legacy default stream, which does not order with the
            // non-blocking streams of the E-step: without this wait, a buffer allocated between
            // two chunks could be poisoned after the stream's own initialization of it.
            FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
        }
    }
    void* get() const { return ptr_; }
    size_t bytes() const { return bytes_; }
    template <typename T>
    T* as() const {
        return static_cast<T*>(ptr_);
    }
    /// Exchanges the allocations (double buffering without copies).
    void swap(DeviceBuffer& other) noexcept {
        std::swap(ptr_, other.ptr_);
        std::swap(bytes_, other.bytes_);
        std::swap(device_, other.device_);
    }

  private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
    int device_ = 0;
};

/// Pinned (page-locked) host allocation; allocate() keeps a large enough buffer.
class PinnedBuffer {
  public:
    PinnedBuffer() = default;
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    ~PinnedBuffer() {
        if (ptr_) cudaFreeHost(ptr_);
    }
    void allocate(size_t nbytes) {
        if (ptr_ && bytes_ >= nbytes) return;
        if (ptr_) cudaFreeHost(ptr_);
        ptr_ = nullptr;
        bytes_ = 0;
        if (cudaMallocHost(&ptr_, nbytes) != cudaSuccess) {
            cudaGetLastError();
            ptr_ = nullptr;
            throw CudaOutOfMemory("EStepCuda: could not allocate " + std::to_string(nbytes >> 20) +
                                  " MiB of pinned host memory for staging");
        }
        bytes_ = nbytes;
    }
    void* get() const { return ptr_; }
    size_t bytes() const { return bytes_; }

  private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

} // namespace faiss_gmm::gpu::detail
