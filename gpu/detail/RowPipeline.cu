// The chunk loop of the CUDA E-step on one GPU (RowPipeline.h).
#include "gpu/detail/RowPipeline.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

namespace faiss_gmm::gpu::detail {

namespace {

/// memcpy split over threads: one thread moves ~10 GB/s, far below PCIe.
void parallel_memcpy(void* dst, const void* src, size_t bytes, int nthreads) {
    const size_t kMinPerThread = size_t(8) << 20;
    const int nt = int(std::min<size_t>(nthreads, std::max<size_t>(1, bytes / kMinPerThread)));
    if (nt <= 1) {
        std::memcpy(dst, src, bytes);
        return;
    }
    std::vector<std::thread> th;
    const size_t per = (bytes + nt - 1) / nt;
    for (int i = 1; i < nt; i++) {
        const size_t b0 = std::min(bytes, per * i), b1 = std::min(bytes, per * (i + 1));
        th.emplace_back([=] {
            std::memcpy(static_cast<char*>(dst) + b0, static_cast<const char*>(src) + b0, b1 - b0);
        });
    }
    std::memcpy(dst, src, std::min(bytes, per));
    for (auto& x : th) x.join();
}

enum class Path { Direct, Dma, Staged };

Path path_of(const VectorBlock& rows, int device) {
    if (rows.n <= 0) return Path::Staged;
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, rows.data) != cudaSuccess) {
        cudaGetLastError();
        return Path::Staged;
    }
    if (attr.type == cudaMemoryTypeDevice && attr.device == device) return Path::Direct;
    if (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeHost || attr.type == cudaMemoryTypeManaged) {
        return Path::Dma;
    }
    return Path::Staged;
}

} // namespace

RowPipeline::RowPipeline(int device, int host_threads, bool poison)
        : device_(device), host_threads_(host_threads), poison_(poison) {}

void RowPipeline::run(const VectorBlock& rows, int64_t chunk_rows, cudaStream_t stream,
                      const std::function<void(const void*, int64_t)>& chunk, EStepCudaReport& report) {
    const Path path = path_of(rows, device_);
    const size_t row_bytes = rows.row_bytes();
    if (path != Path::Direct) {
        for (int b = 0; b < 2; b++) {
            raw_[b].allocate(device_, size_t(chunk_rows) * row_bytes, poison_);
            if (path == Path::Staged) staging_[b].allocate(size_t(chunk_rows) * row_bytes);
        }
    }
    report.pinned_bytes = path == Path::Staged ? staging_[0].bytes() + staging_[1].bytes() : 0;
    int64_t c = 0;
    for (int64_t i0 = 0; i0 < rows.n; i0 += chunk_rows, c++) {
        const int64_t nc = std::min(chunk_rows, rows.n - i0);
        const int b = int(c & 1);
        const void* src = rows.row(i0);
        if (path != Path::Direct) {
            const size_t bytes = size_t(nc) * row_bytes;
            if (path == Path::Staged) {
                // The H2D copy that last read staging[b] (chunk c-2) must be done.
                FAISS_GMM_CUDA_CHECK(cudaEventSynchronize(staged_free_[b]));
                parallel_memcpy(staging_[b].get(), src, bytes, host_threads_);
                src = staging_[b].get();
            }
            // raw[b] is free once the kernels of chunk c-2 have read it.
            FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, convert_done_[b], 0));
            FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(raw_[b].get(), src, bytes, cudaMemcpyDefault, copy_stream_));
            FAISS_GMM_CUDA_CHECK(cudaEventRecord(staged_free_[b], copy_stream_));
            FAISS_GMM_CUDA_CHECK(cudaEventRecord(h2d_done_[b], copy_stream_));
            FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(stream, h2d_done_[b], 0));
            src = raw_[b].get();
            report.h2d_bytes += double(bytes);
        }
        chunk(src, nc);
        FAISS_GMM_CUDA_CHECK(cudaEventRecord(convert_done_[b], stream));
    }
    report.chunks = c;
}

void RowPipeline::finish() { FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(copy_stream_)); }

} // namespace faiss_gmm::gpu::detail
