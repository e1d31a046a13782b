// The chunk loop of the CUDA E-step on one GPU: rows of any memory kind become chunks in
// device memory, double-buffered, the copy of chunk c+1 overlapping the kernels of chunk c.
// Three paths, picked per call from where the rows are: direct (device memory of this GPU:
// no copy), DMA (pinned host memory, another GPU, managed memory: asynchronous copies) and
// staged (pageable host memory: threads copy it into pinned staging buffers first).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>

#include "faiss_gmm/VectorSource.h"
#include "gpu/EStepCuda.h"
#include "gpu/detail/DeviceResources.h"

namespace faiss_gmm::gpu::detail {

class RowPipeline {
  public:
    /// Buffers are made on `device` (current when constructed); poison: see DeviceBuffer.
    RowPipeline(int device, int host_threads, bool poison);

    /// chunk(x, n): enqueue the work on n rows at device pointer x on `stream`; x stays valid
    /// until the work enqueued by the next call but one has run. Fills report's chunks,
    /// h2d_bytes and pinned_bytes.
    void run(const VectorBlock& rows, int64_t chunk_rows, cudaStream_t stream,
             const std::function<void(const void* x, int64_t n)>& chunk, EStepCudaReport& report);
    /// Waits for the copies of the last run().
    void finish();
    size_t device_bytes() const { return raw_[0].bytes() + raw_[1].bytes(); }

  private:
    int device_, host_threads_;
    bool poison_;
    CudaStream copy_stream_;
    CudaEvent h2d_done_[2], staged_free_[2], convert_done_[2];
    DeviceBuffer raw_[2];
    PinnedBuffer staging_[2];
};

} // namespace faiss_gmm::gpu::detail
