// Host side of the CUDA E-step: model encoding, per-GPU buffers and streams,
// the chunk pipeline (pageable rows → pinned staging → device, overlapped with
// the kernels of the previous chunk), multi-GPU row split and the conversion of
// the raw sums into SufficientStats.
#include "gpu/EStepCuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "gpu/detail/BlockedKernels.cuh"
#include "gpu/detail/CudaUtils.h"
#include "gpu/detail/EStepKernels.cuh"
#include "gpu/detail/Sm90Kernels.cuh"
#include "gpu/detail/Sm90SplitKernels.cuh"

namespace faiss_gmm::gpu {

using namespace detail;

int cuda_device_count() {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        cudaGetLastError(); // clear the sticky-free error so later calls start clean
        return 0;
    }
    return n;
}

namespace {

constexpr double kLog2e = 1.4426950408889634074;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/// Device allocation owned by one GPU (freed on destruction, errors ignored there).
struct DeviceBuffer {
    void* ptr = nullptr;
    size_t bytes = 0;
    int device = 0;
    DeviceBuffer() = default;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() { release(); }
    void release() {
        if (ptr) {
            cudaSetDevice(device);
            cudaFree(ptr);
            ptr = nullptr;
            bytes = 0;
        }
    }
    void allocate(int dev, size_t nbytes, bool poison) {
        if (ptr && bytes >= nbytes) return;
        release();
        device = dev;
        if (nbytes == 0) return;
        cudaError_t err = cudaMalloc(&ptr, nbytes);
        if (err != cudaSuccess) {
            cudaGetLastError();
            ptr = nullptr;
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            char msg[256];
            snprintf(msg, sizeof(msg),
                     "EStepCuda: out of GPU memory on device %d allocating %.1f MiB (%.1f MiB free of %.1f MiB); "
                     "reduce EStepCudaOptions::chunk_rows or K",
                     dev, nbytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
            throw CudaOutOfMemory(msg);
        }
        bytes = nbytes;
        if (poison) FAISS_GMM_CUDA_CHECK(cudaMemset(ptr, 0xff, nbytes)); // 0xffffffff is a NaN
    }
    template <typename T>
    T* as() const {
        return static_cast<T*>(ptr);
    }
};

struct PinnedBuffer {
    void* ptr = nullptr;
    size_t bytes = 0;
    PinnedBuffer() = default;
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    ~PinnedBuffer() {
        if (ptr) cudaFreeHost(ptr);
    }
    void allocate(size_t nbytes) {
        if (ptr && bytes >= nbytes) return;
        if (ptr) cudaFreeHost(ptr);
        ptr = nullptr;
        bytes = 0;
        cudaError_t err = cudaMallocHost(&ptr, nbytes);
        if (err != cudaSuccess) {
            cudaGetLastError();
            ptr = nullptr;
            throw CudaOutOfMemory("EStepCuda: could not allocate " + std::to_string(nbytes >> 20) +
                                  " MiB of pinned host memory for staging");
        }
        bytes = nbytes;
    }
};

/// memcpy split over threads: one thread moves ~10 GB/s, far below PCIe.
void parallel_memcpy(void* dst, const void* src, size_t bytes, int nthreads) {
    const size_t kMinPerThread = size_t(8) << 20;
    int nt = int(std::min<size_t>(nthreads, std::max<size_t>(1, bytes / kMinPerThread)));
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

uint32_t host_tf32(float x) { // cvt.rna.tf32.f32: round to nearest, ties away, keep 10 mantissa bits
    uint32_t b;
    std::memcpy(&b, &x, 4);
    if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0x1000u) & 0xffffe000u;
    return b;
}
float bits_to_float(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
uint16_t host_bf16(float x) { // round to nearest even
    uint32_t b;
    std::memcpy(&b, &x, 4);
    b += 0x7fffu + ((b >> 16) & 1u);
    return uint16_t(b >> 16);
}
/// float → IEEE half, round to nearest even; magnitudes beyond the largest half saturate to ±65504.
uint16_t host_f16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x477ff000u) return uint16_t(sign | 0x7bffu); // ≥ 65520 (or inf/NaN)
    if (ax <= 0x33000000u) return uint16_t(sign);            // ≤ 2^-25: rounds to 0
    const int e = int(ax >> 23);
    if (e < 113) { // half subnormal
        const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
        const int shift = 126 - e;
        uint32_t q = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return uint16_t(sign | q);
    }
    uint32_t h = (uint32_t(e - 112) << 10) | ((ax >> 13) & 0x3ffu);
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return uint16_t(sign | h);
}
/// Value of an IEEE half (as host_f16 makes them: finite).
double host_f16_value(uint16_t h) {
    const int e = (h >> 10) & 31, m = h & 1023;
    const double v = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(1024 + m), e - 25);
    return (h & 0x8000u) ? -v : v;
}
float pow2i(int e) { return std::ldexp(1.0f, std::clamp(e, -120, 120)); }

template <int DP>
void hopper_set_attributes() {
    using S = detail::sm90::Shape<DP>;
    FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(detail::sm90::estep_kernel<DP, false>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, S::kSmem));
    FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(detail::sm90::estep_kernel<DP, true>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, S::kSmem));
    FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(detail::sm90::lse_kernel<DP>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, S::kLseSmem));
    FAISS_GMM_CUDA_CHECK(cudaFuncSetAttribute(detail::sm90::split::estep_split_kernel<DP>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              detail::sm90::split::Shape<DP>::kSmem));
}

/// True when this device runs the sm_90a build of the Hopper kernels: a Hopper GPU (9.0)
/// and device code that really is sm_90a (asked of the device: an sm_90 build also reports
/// binary version 90). Leaves `device` current.
bool hopper_supported(int device) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess || prop.major != 9 || prop.minor != 0 ||
        cudaSetDevice(device) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    int* d_flag = nullptr;
    int flag = 0;
    bool ok = cudaMalloc(&d_flag, sizeof(int)) == cudaSuccess;
    if (ok) {
        detail::sm90::sm90a_probe_kernel<<<1, 1>>>(d_flag);
        ok = cudaGetLastError() == cudaSuccess &&
             cudaMemcpy(&flag, d_flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess;
        cudaFree(d_flag);
    }
    cudaGetLastError();
    return ok && flag == 1;
}

} // namespace

bool hopper_kernels_available(int device) {
    if (device < 0 || device >= cuda_device_count()) return false;
    int prev = 0;
    if (cudaGetDevice(&prev) != cudaSuccess) {
        cudaGetLastError();
        prev = -1;
    }
    const bool ok = hopper_supported(device);
    if (prev >= 0) cudaSetDevice(prev);
    return ok;
}

/// Host-side model of the Hopper path (EStepCuda::set_model → every worker).
struct HopperModel {
    bool split = false; // accurate mode: hi/lo fp16 operands (Sm90SplitKernels.cuh), K ≤ 1024
    int DP = 0, FW = 0, Kt = 0;
    float sx = 1, sq = 1, kinv = 1;
    std::vector<uint16_t> W; // Kt × 128 × DP halves, tiled (Sm90Kernels.cuh); split: hi, then lo
    std::vector<float> means;     // K × d, the model's means (centered frame): finalize_sums_kernel
    std::vector<double> mean_sq;  // K: ‖μ_k‖²
    std::vector<float> ab;   // Kt·128 × 2
};

/// Launch configuration of the Hopper kernels: `clusters` thread-block clusters of C CTAs.
struct ClusterLaunch {
    cudaLaunchConfig_t cfg{};
    cudaLaunchAttribute attr[1];
    ClusterLaunch(int clusters, int C, size_t smem, cudaStream_t stream) {
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = unsigned(C);
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.gridDim = dim3(unsigned(clusters * C));
        cfg.blockDim = dim3(detail::sm90::kThreads);
        cfg.dynamicSmemBytes = smem;
        cfg.stream = stream;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    ClusterLaunch(const ClusterLaunch&) = delete; // cfg points into attr
    ClusterLaunch& operator=(const ClusterLaunch&) = delete;
};

struct EStepCuda::Worker {
    int device = 0;
    bool fast = false;
    bool poison = false;
    int64_t K = 0, d = 0, Kp = 0;
    int64_t chunk_rows = 0;
    int sm_count = 0;
    int p2_blocks_per_sm = 1;
    int host_threads = 1;

    // shape of the current model
    bool diag = false;
    int64_t Dfeat = 0, Dw = 0;

    cudaStream_t stream = nullptr, copy_stream = nullptr;
    cudaEvent_t h2d_done[2] = {nullptr, nullptr};
    cudaEvent_t staged_free[2] = {nullptr, nullptr};
    cudaEvent_t convert_done[2] = {nullptr, nullptr};
    cudaEvent_t t_begin = nullptr, t_end = nullptr; // report.gpu_ms

    DeviceBuffer W, bias, acoef, center;          // model
    DeviceBuffer G, xx, logz2, raw[2];            // chunk
    DeviceBuffer acc_f, acc_nk, acc_sxx, loglik;  // statistics
    PinnedBuffer staging[2];

    // results of the last run()
    std::vector<double> h_f, h_nk, h_sxx;
    double h_loglik = 0;
    EStepCudaReport report;

    bool tf32 = false; // fast mode with 1×TF32 products
    bool blocked = true;
    // Hopper path (EStepCudaAlgorithm::Hopper / Auto), chosen per model in set_model.
    bool allow_hopper = false, hopper_ok = false, hopper = false;
    int hop_DP = 0, hop_FW = 0, hop_Kt = 0, hop_C = 0, hop_max_clusters = 0;
    float hop_sx = 1, hop_sq = 1, hop_kinv = 1;
    int hop_exchange = 0;    // cluster exchange: 0 st.async + mbarrier, 1 barrier.cluster; FAISS_GMM_HOPPER_EXCHANGE
    bool hop_split = false;  // accurate-mode kernel (hi/lo halves, 64-row tiles, double partials)
    int hop_flush = detail::sm90::split::kDefaultFlushTiles; // split: tiles per fp32 run; FAISS_GMM_HOPPER_FLUSH
    int hop_sub_tiles = 128; // one-pass: tiles per cluster below which a chunk is not cut; FAISS_GMM_HOPPER_SUB_TILES
    DeviceBuffer hW, hAB, hG, hXX, hLSE, hPart, hAcc;
    DeviceBuffer hMu, hMuSq, hOut; // finalize_sums_kernel: model means, ‖μ‖², K × (d+2) increments
    // One-pass Hopper kernels: a chunk is cut into up to kMaxSub sub-chunks; the features of
    // sub-chunk s+1 run on feat_stream, on the SMs the clusters leave idle (15 clusters of 8 CTAs
    // use 120 of an H100/H200's 132 SMs), while the cluster kernel works on sub-chunk s.
    static constexpr int kMaxSub = 4;
    cudaStream_t feat_stream = nullptr;
    cudaEvent_t feat_gate = nullptr, feat_done[kMaxSub] = {};
    PinnedBuffer h_hacc; // K × (d+2) doubles + loglik: pinned, so the download is a DMA, not a staged copy
    // Hopper path: the last run's statistics increments were finalized on the GPU and are in
    // h_hacc as [Σ r x̃ | N_k | Σ r‖x̃ − μ_k‖²] per component (EStepCuda::accumulate adds them).
    bool finalized = false;
    int64_t block_bytes = 0;
    cublasHandle_t cublas = nullptr;
    // Blocked algorithm: F2 = [x | x² | 1 | ‖x‖²] per row (ld2 floats), W1 (Kp2 × ld2), logits S (block × Kp2).
    int64_t ld2 = 0, Kp2 = 0, block_rows = 0;
    DeviceBuffer F2, S, W1, bias1, acoef1, tmp, accd;
    std::vector<double> h_acc;
    int planes() const { return fast ? 1 : 2; }

    Worker(int dev, bool fast_, bool tf32_, bool blocked_, bool hopper_, int64_t block_bytes_, bool poison_,
           int64_t K_, int64_t d_, int64_t chunk, int threads)
            : device(dev), fast(fast_), poison(poison_), K(K_), d(d_), chunk_rows(chunk), host_threads(threads) {
        tf32 = fast && tf32_;
        blocked = blocked_;
        allow_hopper = hopper_;
        hopper_ok = allow_hopper && hopper_supported(dev);
        // Diagnostic knob of the Hopper kernel: both settings are tested, the default measured faster.
        if (const char* v = std::getenv("FAISS_GMM_HOPPER_EXCHANGE")) hop_exchange = std::atoi(v) != 0;
        // Diagnostic knob of the accurate Hopper kernel (tests measure the error without flushes).
        if (const char* v = std::getenv("FAISS_GMM_HOPPER_FLUSH")) hop_flush = std::max(1, std::atoi(v));
        // Tests set it to 1 so that small problems are cut into sub-chunks too.
        if (const char* v = std::getenv("FAISS_GMM_HOPPER_SUB_TILES")) hop_sub_tiles = std::max(1, std::atoi(v));
        block_bytes = block_bytes_;
        Kp = round_up(K, kP1Comps);
        FAISS_GMM_CUDA_CHECK(cudaSetDevice(device));
        FAISS_GMM_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
        // The kernels' stream gets the highest priority, the features' stream the lowest: when both
        // have blocks waiting, freed SMs go to the cluster kernel, and the features fill the rest.
        int least = 0, greatest = 0;
        FAISS_GMM_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        FAISS_GMM_CUDA_CHECK(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, greatest));
        FAISS_GMM_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
        FAISS_GMM_CUDA_CHECK(cudaStreamCreateWithPriority(&feat_stream, cudaStreamNonBlocking, least));
        FAISS_GMM_CUDA_CHECK(cudaEventCreateWithFlags(&feat_gate, cudaEventDisableTiming));
        for (auto& e : feat_done) FAISS_GMM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        FAISS_GMM_CUDA_CHECK(cudaEventCreate(&t_begin));
        FAISS_GMM_CUDA_CHECK(cudaEventCreate(&t_end));
        for (int b = 0; b < 2; b++) {
            FAISS_GMM_CUDA_CHECK(cudaEventCreateWithFlags(&h2d_done[b], cudaEventDisableTiming));
            FAISS_GMM_CUDA_CHECK(cudaEventCreateWithFlags(&staged_free[b], cudaEventDisableTiming));
            FAISS_GMM_CUDA_CHECK(cudaEventCreateWithFlags(&convert_done[b], cudaEventDisableTiming));
        }
        if (!fast) {
            configure<Math3xTf32>();
        } else if (tf32) {
            configure<MathTf32>();
        } else {
            configure<MathBf16>();
        }
        p2_blocks_per_sm = std::max(1, p2_blocks_per_sm);
        if (blocked) {
            FAISS_GMM_CUBLAS_CHECK(cublasCreate(&cublas));
            FAISS_GMM_CUBLAS_CHECK(cublasSetStream(cublas, stream));
        }
        center.allocate(device, size_t(d) * 4, false);
        bias.allocate(device, size_t(Kp) * 4, poison);
        acoef.allocate(device, size_t(Kp) * 4, poison);
        acc_nk.allocate(device, size_t(K) * 8, poison);
        acc_sxx.allocate(device, size_t(K) * 8, poison);
        loglik.allocate(device, 8, poison);
    }

    template <class M>
    void configure() {
        const size_t s1 = size_t(logz_smem_words<M>()) * 4;
        const size_t s2 = size_t(accumulate_smem_words<M>()) * 4;
        FAISS_GMM_CUDA_CHECK(
                cudaFuncSetAttribute(logz_kernel<M>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(s1)));
        FAISS_GMM_CUDA_CHECK(
                cudaFuncSetAttribute(accumulate_kernel<M>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(s2)));
        FAISS_GMM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&p2_blocks_per_sm, accumulate_kernel<M>,
                                                                           kThreads, s2));
    }

    ~Worker() {
        cudaSetDevice(device);
        if (stream) cudaStreamSynchronize(stream);
        if (copy_stream) cudaStreamSynchronize(copy_stream);
        if (feat_stream) cudaStreamSynchronize(feat_stream);
        if (feat_gate) cudaEventDestroy(feat_gate);
        for (auto e : feat_done)
            if (e) cudaEventDestroy(e);
        for (int b = 0; b < 2; b++) {
            if (h2d_done[b]) cudaEventDestroy(h2d_done[b]);
            if (staged_free[b]) cudaEventDestroy(staged_free[b]);
            if (convert_done[b]) cudaEventDestroy(convert_done[b]);
        }
        if (t_begin) cudaEventDestroy(t_begin);
        if (t_end) cudaEventDestroy(t_end);
        if (cublas) cublasDestroy(cublas);
        if (stream) cudaStreamDestroy(stream);
        if (copy_stream) cudaStreamDestroy(copy_stream);
        if (feat_stream) cudaStreamDestroy(feat_stream);
    }

    /// Chunk rows from the memory budget: raw input (double-buffered, float32
    /// worst case) + features + per-row scalars, ~2 GB and at most 1M rows.
    void size_chunks() {
        if (chunk_rows > 0) return;
        size_t free_b = 0, total_b = 0;
        FAISS_GMM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        const double per_row = hopper    ? 2.0 * d * 4 + double(hop_FW) * 2 * (hop_split ? 2 : 1) + 8
                               : blocked ? 2.0 * d * 4 + double(ld2) * 4
                                         : 2.0 * d * 4 + double(Dw) * 4 * planes() + 8;
        const double budget = std::min(2.0e9, 0.25 * double(free_b));
        chunk_rows = std::clamp<int64_t>(int64_t(budget / per_row), 1024, int64_t(1) << 20);
        chunk_rows = chunk_rows / kP1Rows * kP1Rows;
    }

    void set_model(const std::vector<uint32_t>& w_words, const std::vector<float>& h_bias,
                   const std::vector<float>& h_acoef, const float* h_center, bool diag_, int64_t Dfeat_,
                   int64_t Dw_, const std::vector<double>& w, const HopperModel* hm) {
        FAISS_GMM_CUDA_CHECK(cudaSetDevice(device));
        FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
        diag = diag_;
        Dfeat = Dfeat_;
        Dw = Dw_;
        ld2 = round_up(Dfeat + (diag ? 1 : 2), 4);
        Kp2 = round_up(K, 4);
        // Hopper when asked for and applicable to this model; otherwise the Blocked path
        // (the worker was built with blocked = true for Hopper/Auto).
        hopper = hm != nullptr && hopper_ok;
        if (hopper) hopper_configure(*hm);
        size_chunks();
        FAISS_GMM_CUDA_CHECK(cudaMemcpy(center.ptr, h_center, size_t(d) * 4, cudaMemcpyHostToDevice));
        if (hopper) {
            hopper_allocate(*hm);
            return;
        }
        if (blocked) {
            block_rows = std::clamp<int64_t>(block_bytes / (Kp2 * 4), 128, std::max<int64_t>(128, chunk_rows));
            std::vector<float> w1(size_t(Kp2) * ld2, 0.f), b1(Kp2, kNegBig), a1(Kp2, 0.f);
            for (int64_t k = 0; k < K; k++) {
                for (int64_t e = 0; e < Dfeat; e++) w1[k * ld2 + e] = float(w[k * Dfeat + e]);
                b1[k] = h_bias[k];
                a1[k] = h_acoef[k];
            }
            W1.allocate(device, w1.size() * 4, poison);
            bias1.allocate(device, size_t(Kp2) * 4, poison);
            acoef1.allocate(device, size_t(Kp2) * 4, poison);
            F2.allocate(device, size_t(chunk_rows) * ld2 * 4, poison);
            S.allocate(device, size_t(block_rows) * Kp2 * 4, poison);
            tmp.allocate(device, size_t(Kp2) * ld2 * 4, poison);
            accd.allocate(device, size_t(Kp2) * ld2 * 8, poison);
            FAISS_GMM_CUDA_CHECK(cudaMemcpy(W1.ptr, w1.data(), w1.size() * 4, cudaMemcpyHostToDevice));
            FAISS_GMM_CUDA_CHECK(cudaMemcpy(bias1.ptr, b1.data(), b1.size() * 4, cudaMemcpyHostToDevice));
            FAISS_GMM_CUDA_CHECK(cudaMemcpy(acoef1.ptr, a1.data(), a1.size() * 4, cudaMemcpyHostToDevice));
            return;
        }
        W.allocate(device, w_words.size() * 4, poison);
        G.allocate(device, size_t(chunk_rows) * Dw * 4 * planes(), poison);
        xx.allocate(device, size_t(chunk_rows) * 4, poison);
        logz2.allocate(device, size_t(chunk_rows) * 4, poison);
        acc_f.allocate(device, size_t(K) * Dfeat * 8, poison);
        FAISS_GMM_CUDA_CHECK(cudaMemcpy(W.ptr, w_words.data(), w_words.size() * 4, cudaMemcpyHostToDevice));
        FAISS_GMM_CUDA_CHECK(cudaMemcpy(bias.ptr, h_bias.data(), size_t(Kp) * 4, cudaMemcpyHostToDevice));
        FAISS_GMM_CUDA_CHECK(cudaMemcpy(acoef.ptr, h_acoef.data(), size_t(Kp) * 4, cudaMemcpyHostToDevice));
    }

    size_t device_bytes() const {
        size_t b = W.bytes + bias.bytes + acoef.bytes + center.bytes + G.bytes + xx.bytes + logz2.bytes +
                   raw[0].bytes + raw[1].bytes + acc_f.bytes + acc_nk.bytes + acc_sxx.bytes + loglik.bytes +
                   F2.bytes + S.bytes + W1.bytes + bias1.bytes + acoef1.bytes + tmp.bytes + accd.bytes;
        b += hW.bytes + hAB.bytes + hG.bytes + hXX.bytes + hLSE.bytes + hPart.bytes + hAcc.bytes + hMu.bytes +
             hMuSq.bytes + hOut.bytes;
        return b;
    }

    // ------------------------------------------------------------ Hopper path

    template <int DP>
    int hopper_clusters(int C) {
        using Sh = detail::sm90::Shape<DP>;
        using Sp = detail::sm90::split::Shape<DP>;
        const ClusterLaunch l(sm_count, C, hop_split ? Sp::kSmem : Sh::kSmem, stream);
        int n = 0;
        if (hop_split) {
            FAISS_GMM_CUDA_CHECK(
                    cudaOccupancyMaxActiveClusters(&n, detail::sm90::split::estep_split_kernel<DP>, &l.cfg));
        } else {
            FAISS_GMM_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, detail::sm90::estep_kernel<DP, false>, &l.cfg));
        }
        return n;
    }

    /// Shape of the Hopper kernels for this model: kernel attributes, cluster size and count.
    void hopper_configure(const HopperModel& hm) {
        hop_DP = hm.DP;
        hop_FW = hm.FW;
        hop_Kt = hm.Kt;
        hop_sx = hm.sx;
        hop_sq = hm.sq;
        hop_kinv = hm.kinv;
        hop_split = hm.split;
        hop_C = hm.Kt <= detail::sm90::kMaxCluster ? hm.Kt : 0; // 0: two passes (never for split: K ≤ 1024)
        switch (hop_DP) {
        case 32: hopper_set_attributes<32>(); break;
        case 64: hopper_set_attributes<64>(); break;
        case 96: hopper_set_attributes<96>(); break;
        default: hopper_set_attributes<128>(); break;
        }
        hop_max_clusters = 0;
        if (hop_C > 0) {
            switch (hop_DP) {
            case 32: hop_max_clusters = hopper_clusters<32>(hop_C); break;
            case 64: hop_max_clusters = hopper_clusters<64>(hop_C); break;
            case 96: hop_max_clusters = hopper_clusters<96>(hop_C); break;
            default: hop_max_clusters = hopper_clusters<128>(hop_C); break;
            }
            if (hop_max_clusters < 1) {
                throw std::runtime_error("EStepCuda: the Hopper kernel cannot be launched with clusters of " +
                                         std::to_string(hop_C) + " blocks on device " + std::to_string(device));
            }
        }
    }

    int hopper_tile_rows() const { return hop_split ? detail::sm90::split::kBM : detail::sm90::kBM; }

    void hopper_allocate(const HopperModel& hm) {
        const int64_t BM = hopper_tile_rows();
        const int64_t tiles = (chunk_rows + BM - 1) / BM;
        const int64_t Kp = int64_t(hop_Kt) * detail::sm90::kKc;
        // Partial sums: one pass, one slice per cluster and sub-chunk; two passes, one per row split
        // (Sn ≤ sm_count / Kt of them, each Kp wide): at most ~max(sm_count·128, Kp) components.
        const int64_t nparts = hop_C > 0 ? int64_t(kMaxSub) * std::max(hop_max_clusters, 1)
                                         : std::max<int64_t>(1, sm_count / hop_Kt);
        hW.allocate(device, hm.W.size() * 2, poison);
        hAB.allocate(device, hm.ab.size() * 4, poison);
        hG.allocate(device, size_t(tiles) * BM * hop_FW * 2 * (hop_split ? 2 : 1), poison);
        hXX.allocate(device, size_t(tiles) * BM * 4, poison);
        if (hop_C == 0) hLSE.allocate(device, size_t(tiles) * BM * 4, poison);
        hPart.allocate(device, size_t(nparts) * Kp * hop_FW * (hop_split ? 8 : 4), poison);
        hAcc.allocate(device, size_t(K) * hop_FW * 8, poison);
        FAISS_GMM_CUDA_CHECK(cudaMemcpy(hW.ptr, hm.W.data(), hm.W.size() * 2, cudaMemcpyHostToDevice));
        hMu.allocate(device, hm.means.size() * 4, poison);
        hMuSq.allocate(device, hm.mean_sq.size() * 8, poison);
        hOut.allocate(device, size_t(K) * (d + 2) * 8, poison);
        FAISS_GMM_CUDA_CHECK(cudaMemcpy(hMu.ptr, hm.means.data(), hm.means.size() * 4, cudaMemcpyHostToDevice));
        FAISS_GMM_CUDA_CHECK(cudaMemcpy(hMuSq.ptr, hm.mean_sq.data(), hm.mean_sq.size() * 8, cudaMemcpyHostToDevice));
        FAISS_GMM_CUDA_CHECK(cudaMemcpy(hAB.ptr, hm.ab.data(), hm.ab.size() * 4, cudaMemcpyHostToDevice));
    }

    /// One-pass Hopper chunk: features(s) on feat_stream, then the cluster kernel on sub-chunk s on
    /// `stream` once they are done; sub-chunk s writes its partial sums to its own slice of hPart
    /// (Q of them), so one reduction at the end sums all of them. features(first_tile, tiles, rows)
    /// and kernel(sub, first_tile, tiles, rows, clusters) enqueue the work (rows: the valid rows of
    /// those tiles). Returns the number of partial slices.
    template <class Features, class Kernel>
    int hopper_one_pass(int64_t nc, int BM, Features features, Kernel kernel) {
        const int tiles = int((nc + BM - 1) / BM);
        const int Q = std::min(hop_max_clusters, tiles);
        // a few hundred tiles per cluster and sub-chunk keep the launches' fill and drain small
        const int nsub = std::clamp(tiles / std::max(1, hop_sub_tiles * Q), 1, kMaxSub);
        // The features may overwrite hG only after the kernels of the previous chunk read it.
        FAISS_GMM_CUDA_CHECK(cudaEventRecord(feat_gate, stream));
        FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(feat_stream, feat_gate, 0));
        for (int sub = 0; sub < nsub; sub++) {
            const int t0 = int(int64_t(tiles) * sub / nsub), t1 = int(int64_t(tiles) * (sub + 1) / nsub);
            features(t0, t1 - t0, int(std::min<int64_t>(nc - int64_t(t0) * BM, int64_t(t1 - t0) * BM)));
            FAISS_GMM_CUDA_CHECK(cudaEventRecord(feat_done[sub], feat_stream));
        }
        for (int sub = 0; sub < nsub; sub++) {
            const int t0 = int(int64_t(tiles) * sub / nsub), t1 = int(int64_t(tiles) * (sub + 1) / nsub);
            FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(stream, feat_done[sub], 0));
            kernel(sub, t0, t1 - t0, int(std::min<int64_t>(nc - int64_t(t0) * BM, int64_t(t1 - t0) * BM)),
                   std::min(Q, t1 - t0));
        }
        report.blocks = Q * hop_C;
        report.cluster = hop_C;
        return nsub * Q;
    }

    /// Accurate mode: hi/lo features, the split kernel on clusters of hop_C CTAs, the double reduction.
    template <typename Tin, int DP>
    void hopper_split_chunk_dp(const Tin* x, int64_t nc, int vec) {
        namespace sp = detail::sm90::split;
        const int64_t Kp = int64_t(hop_Kt) * detail::sm90::kKc;
        const int Q0 = std::min<int>(hop_max_clusters, int((nc + sp::kBM - 1) / sp::kBM));
        const int nparts = hopper_one_pass(
                nc, sp::kBM,
                [&](int t0, int nt, int rows) {
                    sp::features_split_kernel<Tin, DP><<<unsigned(nt * sp::kBM / 16), 256, 0, feat_stream>>>(
                            x + size_t(t0) * sp::kBM * d, rows, int(d), center.as<float>(), hop_sx, hop_sq,
                            hG.as<__half>() + size_t(t0) * 2 * sp::kBM * hop_FW, hXX.as<float>() + size_t(t0) * sp::kBM,
                            nt * sp::kBM, vec);
                    FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::split::features_split_kernel");
                },
                [&](int sub, int t0, int nt, int rows, int Q) {
                    sp::Args a{};
                    a.G = hG.as<__half>() + size_t(t0) * 2 * sp::kBM * hop_FW;
                    a.xx = hXX.as<float>() + size_t(t0) * sp::kBM;
                    a.W = hW.as<__half>();
                    a.ab = hAB.as<float>();
                    a.part = hPart.as<double>() + size_t(sub) * Q0 * Kp * hop_FW;
                    a.loglik = loglik.as<double>();
                    a.n = rows;
                    a.tiles = nt;
                    a.Kt = hop_Kt;
                    a.kinv = hop_kinv;
                    a.flush_tiles = hop_flush;
                    const ClusterLaunch l(Q, hop_C, sp::Shape<DP>::kSmem, stream);
                    FAISS_GMM_CUDA_CHECK(cudaLaunchKernelEx(&l.cfg, sp::estep_split_kernel<DP>, a));
                    // sub-chunks with fewer clusters than Q0 leave slices unwritten: zero them
                    if (Q < Q0) {
                        FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(a.part + size_t(Q) * Kp * hop_FW, 0,
                                                             size_t(Q0 - Q) * Kp * hop_FW * 8, stream));
                    }
                });
        const int count = int(K) * hop_FW;
        detail::sm90::reduce_parts_kernel<<<unsigned((count + 255) / 256), 256, 0, stream>>>(
                hPart.as<double>(), nparts, int(Kp), int(K), hop_FW, hAcc.as<double>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::reduce_parts_kernel<double>");
    }

    template <typename Tin, int DP>
    void hopper_chunk_dp(const Tin* x, int64_t nc) {
        namespace s9 = detail::sm90;
        using Sh = s9::Shape<DP>;
        const uintptr_t xa = reinterpret_cast<uintptr_t>(x);
        const int vec = sizeof(Tin) == 4 ? (xa % 16 == 0 && d % 4 == 0) : (xa % 8 == 0 && d % 8 == 0);
        if (hop_split) return hopper_split_chunk_dp<Tin, DP>(x, nc, vec);
        const int tiles = int((nc + s9::kBM - 1) / s9::kBM);
        const int64_t Kp = int64_t(hop_Kt) * s9::kKc;
        auto features = [&](int t0, int nt, int rows, cudaStream_t st) {
            s9::features_kernel<Tin, DP><<<unsigned(nt * s9::kBM / 16), 256, 0, st>>>(
                    x + size_t(t0) * s9::kBM * d, rows, int(d), center.as<float>(), hop_sx, hop_sq,
                    hG.as<__half>() + size_t(t0) * s9::kBM * hop_FW, hXX.as<float>() + size_t(t0) * s9::kBM,
                    nt * s9::kBM, vec);
            FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::features_kernel");
        };
        s9::Args a{};
        a.G = hG.as<__half>();
        a.xx = hXX.as<float>();
        a.lse = hLSE.as<float>();
        a.W = hW.as<__half>();
        a.ab = hAB.as<float>();
        a.part = hPart.as<float>();
        a.loglik = loglik.as<double>();
        a.n = int(nc);
        a.tiles = tiles;
        a.Kt = hop_Kt;
        a.kinv = hop_kinv;
        a.exchange = hop_exchange;
        int nparts = 0;
        if (hop_C > 0) {
            // Each CTA writes its partial sums (no accumulation), so every slice of a sub-chunk
            // with all Q0 clusters is written; fewer clusters leave slices to zero.
            const int Q0 = std::min(hop_max_clusters, tiles);
            nparts = hopper_one_pass(
                    nc, s9::kBM, [&](int t0, int nt, int rows) { features(t0, nt, rows, feat_stream); },
                    [&](int sub, int t0, int nt, int rows, int Q) {
                        s9::Args b = a;
                        b.G = a.G + size_t(t0) * s9::kBM * hop_FW;
                        b.xx = a.xx + size_t(t0) * s9::kBM;
                        b.part = a.part + size_t(sub) * Q0 * Kp * hop_FW;
                        b.n = rows;
                        b.tiles = nt;
                        const ClusterLaunch l(Q, hop_C, Sh::kSmem, stream);
                        FAISS_GMM_CUDA_CHECK(cudaLaunchKernelEx(&l.cfg, s9::estep_kernel<DP, false>, b));
                        if (Q < Q0) {
                            FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(b.part + size_t(Q) * Kp * hop_FW, 0,
                                                                 size_t(Q0 - Q) * Kp * hop_FW * 4, stream));
                        }
                    });
        } else {
            features(0, tiles, int(nc), stream);
            s9::lse_kernel<DP><<<unsigned(tiles), s9::kThreads, Sh::kLseSmem, stream>>>(a);
            FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::lse_kernel");
            const int Sn = std::max(1, std::min(tiles, sm_count / hop_Kt));
            s9::estep_kernel<DP, true><<<unsigned(Sn * hop_Kt), s9::kThreads, Sh::kSmem, stream>>>(a);
            FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::estep_kernel");
            nparts = Sn;
            report.blocks = Sn * hop_Kt;
            report.cluster = 0;
        }
        const int count = int(K) * hop_FW;
        s9::reduce_parts_kernel<<<unsigned((count + 255) / 256), 256, 0, stream>>>(
                hPart.as<float>(), nparts, hop_Kt * s9::kKc, int(K), hop_FW, hAcc.as<double>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::reduce_parts_kernel");
    }

    template <typename Tin>
    void hopper_chunk(const Tin* x, int64_t nc) {
        switch (hop_DP) {
        case 32: return hopper_chunk_dp<Tin, 32>(x, nc);
        case 64: return hopper_chunk_dp<Tin, 64>(x, nc);
        case 96: return hopper_chunk_dp<Tin, 96>(x, nc);
        default: return hopper_chunk_dp<Tin, 128>(x, nc);
        }
    }

    template <class M, typename Tin>
    void launch_chunk(const Tin* x, int64_t nc) {
        KernelArgs a{};
        a.G = G.as<uint32_t>();
        a.g_plane = size_t(chunk_rows) * Dw;
        a.W = W.as<uint32_t>();
        a.w_plane = size_t(Kp) * Dw;
        a.bias = bias.as<float>();
        a.acoef = acoef.as<float>();
        a.xx = xx.as<float>();
        a.logz2 = logz2.as<float>();
        a.loglik = loglik.as<double>();
        a.acc_f = acc_f.as<double>();
        a.acc_nk = acc_nk.as<double>();
        a.acc_sxx = acc_sxx.as<double>();
        a.n = int(nc);
        a.K = int(K);
        a.Kp = int(Kp);
        a.Dw = int(Dw);
        a.Dfeat = int(Dfeat);

        const int rows_per_block = kThreads / 32;
        convert_kernel<Tin, M><<<unsigned((nc + rows_per_block - 1) / rows_per_block), kThreads, 0, stream>>>(
                x, int(nc), int(d), center.as<float>(), diag ? 1 : 0, int(Dw), G.as<uint32_t>(), a.g_plane,
                xx.as<float>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("convert_kernel");
        return launch_passes<M>(a, nc);
    }

    template <class M>
    void launch_passes(KernelArgs& a, int64_t nc) {
        const size_t s1 = size_t(logz_smem_words<M>()) * 4;
        const size_t s2 = size_t(accumulate_smem_words<M>()) * 4;
        logz_kernel<M><<<unsigned((nc + kP1Rows - 1) / kP1Rows), kThreads, s1, stream>>>(a);
        FAISS_GMM_CUDA_CHECK_LAUNCH("logz_kernel");

        const int nkt = int(Kp / kP2Comps);
        const int nfc = int((Dfeat + kP2Feats - 1) / kP2Feats);
        const int ntiles = int((nc + kP2Rows - 1) / kP2Rows);
        const int cap = sm_count * p2_blocks_per_sm;
        int splits = std::max(1, cap / std::max(1, nkt * nfc));
        splits = std::min(splits, ntiles);
        a.tiles_per_split = (ntiles + splits - 1) / splits;
        splits = (ntiles + a.tiles_per_split - 1) / a.tiles_per_split;
        const dim3 grid{unsigned(nkt), unsigned(nfc), unsigned(splits)};
        accumulate_kernel<M><<<grid, kThreads, s2, stream>>>(a);
        FAISS_GMM_CUDA_CHECK_LAUNCH("accumulate_kernel");
    }

    bool gemm2_component_major() const { return !fast; }

    /// Blocked algorithm: features of the chunk, then per block GEMM → responsibilities → GEMM.
    template <typename Tin>
    void blocked_chunk(const Tin* x, int64_t nc) {
        blocked_features_kernel<Tin><<<unsigned((nc + 7) / 8), 256, 0, stream>>>(
                x, int(nc), int(d), center.as<float>(), diag ? 1 : 0, int(ld2), F2.as<float>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_features_kernel");
        const cublasComputeType_t ct = !fast ? CUBLAS_COMPUTE_32F
                                             : (tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_FAST_16BF);
        const float one = 1.f, zero = 0.f;
        for (int64_t b0 = 0; b0 < nc; b0 += block_rows) {
            const int64_t nb = std::min(block_rows, nc - b0);
            const float* Fb = F2.as<float>() + size_t(b0) * ld2;
            // S (Kp2 × nb, column-major) = W1ᵀ·F: the first Dfeat features of each row.
            FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(Kp2), int(nb), int(Dfeat), &one,
                                                W1.ptr, CUDA_R_32F, int(ld2), Fb, CUDA_R_32F, int(ld2), &zero, S.ptr,
                                                CUDA_R_32F, int(Kp2), ct, CUBLAS_GEMM_DEFAULT));
            const unsigned grid = unsigned((nb + 7) / 8);
            const int xx_col = diag ? -1 : int(Dfeat + 1);
            // (A variant holding the row in registers, one read of S instead of two, was tried:
            // the fast E-step at 1M x 1024 x 128 took 8.9 ms with it and 7.0 ms with this one, H200.)
            blocked_responsibilities_kernel<<<grid, 256, 0, stream>>>(S.as<float>(), int(nb), int(K), int(Kp2),
                                                                      bias1.as<float>(), acoef1.as<float>(), Fb,
                                                                      int(ld2), xx_col, loglik.as<double>());
            FAISS_GMM_CUDA_CHECK_LAUNCH("blocked_responsibilities_kernel");
            // Σ_b r_bk [x | x² | 1 | ‖x‖²]_b, in the orientation cuBLAS ran faster for each
            // compute type on an H200 (bench/results): fp32 as R·Fᵀ (components major,
            // tmp[j·Kp2 + k]), TF32/bf16 as F·Rᵀ (tmp[k·ld2 + j]).
            if (gemm2_component_major()) {
                FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_N, CUBLAS_OP_T, int(Kp2), int(ld2), int(nb),
                                                    &one, S.ptr, CUDA_R_32F, int(Kp2), Fb, CUDA_R_32F, int(ld2),
                                                    &zero, tmp.ptr, CUDA_R_32F, int(Kp2), ct, CUBLAS_GEMM_DEFAULT));
            } else {
                FAISS_GMM_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_N, CUBLAS_OP_T, int(ld2), int(Kp2), int(nb),
                                                    &one, Fb, CUDA_R_32F, int(ld2), S.ptr, CUDA_R_32F, int(Kp2),
                                                    &zero, tmp.ptr, CUDA_R_32F, int(ld2), ct, CUBLAS_GEMM_DEFAULT));
            }
            const size_t count = size_t(Kp2) * ld2;
            add_to_double_kernel<<<unsigned((count + 255) / 256), 256, 0, stream>>>(tmp.as<float>(), accd.as<double>(),
                                                                                   count);
            FAISS_GMM_CUDA_CHECK_LAUNCH("add_to_double_kernel");
        }
    }

    template <typename Tin>
    void launch_chunk_any(const void* x, int64_t nc) {
        if (hopper) return hopper_chunk<Tin>(static_cast<const Tin*>(x), nc);
        if (blocked) return blocked_chunk<Tin>(static_cast<const Tin*>(x), nc);
        if (fast && tf32) {
            launch_chunk<MathTf32>(static_cast<const Tin*>(x), nc);
        } else if (fast) {
            launch_chunk<MathBf16>(static_cast<const Tin*>(x), nc);
        } else {
            launch_chunk<Math3xTf32>(static_cast<const Tin*>(x), nc);
        }
    }

    /// Processes rows (any memory kind), leaving the sums in h_*.
    /// The results of a run over no rows, without touching the GPU.
    void clear_results() {
        report = EStepCudaReport();
        finalized = false;
        h_f.assign(size_t(K) * Dfeat, 0.0);
        h_nk.assign(K, 0.0);
        h_sxx.assign(K, 0.0);
        h_loglik = 0;
    }

    void run(const VectorBlock& rows) {
        FAISS_GMM_CUDA_CHECK(cudaSetDevice(device));
        report = EStepCudaReport();
        report.rows = rows.n;
        report.algorithm = hopper ? "hopper" : blocked ? "blocked" : "fused";
        if (hopper) {
            FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(hAcc.ptr, 0, hAcc.bytes, stream));
        } else if (blocked) {
            FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(accd.ptr, 0, accd.bytes, stream));
        } else {
            FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(acc_f.ptr, 0, acc_f.bytes, stream));
        }
        FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(acc_nk.ptr, 0, acc_nk.bytes, stream));
        FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(acc_sxx.ptr, 0, acc_sxx.bytes, stream));
        FAISS_GMM_CUDA_CHECK(cudaMemsetAsync(loglik.ptr, 0, loglik.bytes, stream));

        enum { kDirect, kDma, kStaged } path = kStaged;
        if (rows.n > 0) {
            cudaPointerAttributes attr{};
            cudaError_t err = cudaPointerGetAttributes(&attr, rows.data);
            if (err != cudaSuccess) {
                cudaGetLastError();
            } else if (attr.type == cudaMemoryTypeDevice && attr.device == device) {
                path = kDirect;
            } else if (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeHost ||
                       attr.type == cudaMemoryTypeManaged) {
                path = kDma;
            }
        }
        const size_t row_bytes = rows.row_bytes();
        if (path != kDirect) {
            for (int b = 0; b < 2; b++) {
                raw[b].allocate(device, size_t(chunk_rows) * row_bytes, poison);
                if (path == kStaged) staging[b].allocate(size_t(chunk_rows) * row_bytes);
            }
        }
        report.pinned_bytes = path == kStaged ? staging[0].bytes + staging[1].bytes : 0;
        FAISS_GMM_CUDA_CHECK(cudaEventRecord(t_begin, stream));

        int64_t c = 0;
        for (int64_t i0 = 0; i0 < rows.n; i0 += chunk_rows, c++) {
            const int64_t nc = std::min(chunk_rows, rows.n - i0);
            const int b = int(c & 1);
            const void* src = rows.row(i0);
            if (path != kDirect) {
                const size_t bytes = size_t(nc) * row_bytes;
                if (path == kStaged) {
                    // The H2D copy that last read staging[b] (chunk c-2) must be done.
                    FAISS_GMM_CUDA_CHECK(cudaEventSynchronize(staged_free[b]));
                    parallel_memcpy(staging[b].ptr, src, bytes, host_threads);
                    src = staging[b].ptr;
                }
                // raw[b] is free once chunk c-2 has been converted.
                FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(copy_stream, convert_done[b], 0));
                FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(raw[b].ptr, src, bytes, cudaMemcpyDefault, copy_stream));
                FAISS_GMM_CUDA_CHECK(cudaEventRecord(staged_free[b], copy_stream));
                FAISS_GMM_CUDA_CHECK(cudaEventRecord(h2d_done[b], copy_stream));
                FAISS_GMM_CUDA_CHECK(cudaStreamWaitEvent(stream, h2d_done[b], 0));
                src = raw[b].ptr;
                report.h2d_bytes += double(bytes);
            }
            if (rows.type == DataType::Float32) {
                launch_chunk_any<float>(src, nc);
            } else {
                launch_chunk_any<uint8_t>(src, nc);
            }
            FAISS_GMM_CUDA_CHECK(cudaEventRecord(convert_done[b], stream));
        }
        report.chunks = c;
        FAISS_GMM_CUDA_CHECK(cudaEventRecord(t_end, stream));

        finalized = hopper;
        if (hopper) {
            download_finalized_sums();
        } else {
            download_raw_sums();
        }
        FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(copy_stream));
        float ms = 0;
        FAISS_GMM_CUDA_CHECK(cudaEventElapsedTime(&ms, t_begin, t_end));
        report.gpu_ms = ms;
        report.device_bytes = device_bytes();
    }

    /// Hopper path: columns [s_x·Σ r x (DP) | N_k | s_q·Σ r ‖x‖² | 0…] (× 2^12 for the split kernel)
    /// → the statistics' increments on the GPU, downloaded with the log-likelihood into h_hacc.
    void download_finalized_sums() {
        const double ir = hop_split ? 1.0 / double(detail::sm90::split::kRScale) : 1.0;
        detail::sm90::finalize_sums_kernel<<<unsigned((K * 32 + 255) / 256), 256, 0, stream>>>(
                hAcc.as<double>(), int(K), int(d), hop_DP, hop_FW, hMu.as<float>(), hMuSq.as<double>(),
                ir / double(hop_sx), ir, ir / double(hop_sq), hOut.as<double>());
        FAISS_GMM_CUDA_CHECK_LAUNCH("sm90::finalize_sums_kernel");
        const size_t bytes = size_t(K) * (d + 2) * 8;
        h_hacc.allocate(bytes + 8);
        FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(h_hacc.ptr, hOut.ptr, bytes, cudaMemcpyDeviceToHost, stream));
        FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(static_cast<uint8_t*>(h_hacc.ptr) + bytes, loglik.ptr, 8,
                                             cudaMemcpyDeviceToHost, stream));
        FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
        std::memcpy(&h_loglik, static_cast<uint8_t*>(h_hacc.ptr) + bytes, 8);
    }

    /// Blocked and Fused paths: the raw sums into h_f, h_nk, h_sxx (EStepCuda::accumulate converts them).
    void download_raw_sums() {
        h_f.resize(size_t(K) * Dfeat);
        h_nk.resize(K);
        h_sxx.resize(K);
        if (blocked) {
            h_acc.resize(size_t(Kp2) * ld2);
            FAISS_GMM_CUDA_CHECK(
                    cudaMemcpyAsync(h_acc.data(), accd.ptr, h_acc.size() * 8, cudaMemcpyDeviceToHost, stream));
        } else {
            FAISS_GMM_CUDA_CHECK(
                    cudaMemcpyAsync(h_f.data(), acc_f.ptr, h_f.size() * 8, cudaMemcpyDeviceToHost, stream));
            FAISS_GMM_CUDA_CHECK(
                    cudaMemcpyAsync(h_nk.data(), acc_nk.ptr, size_t(K) * 8, cudaMemcpyDeviceToHost, stream));
            FAISS_GMM_CUDA_CHECK(
                    cudaMemcpyAsync(h_sxx.data(), acc_sxx.ptr, size_t(K) * 8, cudaMemcpyDeviceToHost, stream));
        }
        FAISS_GMM_CUDA_CHECK(cudaMemcpyAsync(&h_loglik, loglik.ptr, 8, cudaMemcpyDeviceToHost, stream));
        FAISS_GMM_CUDA_CHECK(cudaStreamSynchronize(stream));
        if (blocked) { // feature columns: [Σ r x | Σ r x² | N_k | Σ r ‖x‖²], stored feature-major
            const bool cm = gemm2_component_major();
            auto at = [&](int64_t k, int64_t e) { return cm ? h_acc[e * Kp2 + k] : h_acc[k * ld2 + e]; };
            for (int64_t k = 0; k < K; k++) {
                for (int64_t e = 0; e < Dfeat; e++) h_f[k * Dfeat + e] = at(k, e);
                h_nk[k] = at(k, Dfeat);
                h_sxx[k] = diag ? 0.0 : at(k, Dfeat + 1);
            }
        }
    }
};

EStepCuda::EStepCuda(int64_t K, int64_t d, const EStepCudaOptions& options) : options_(options), K_(K), d_(d) {
    if (K < 1 || d < 1) throw std::invalid_argument("EStepCuda: K and d must be >= 1");
    if (K > (int64_t(1) << 24)) throw std::invalid_argument("EStepCuda: K > 2^24 is not supported");
    const int ndev = cuda_device_count();
    if (ndev == 0) {
        throw std::runtime_error("EStepCuda: no CUDA GPU is visible (no driver, or CUDA_VISIBLE_DEVICES is empty)");
    }
    if (options_.devices.empty()) {
        for (int i = 0; i < ndev; i++) options_.devices.push_back(i);
    }
    for (int dev : options_.devices) {
        if (dev < 0 || dev >= ndev) {
            throw std::invalid_argument("EStepCuda: device " + std::to_string(dev) + " does not exist (" +
                                        std::to_string(ndev) + " visible)");
        }
    }
    if (options_.chunk_rows < 0) throw std::invalid_argument("EStepCuda: chunk_rows must be >= 0");
    int threads = options_.host_copy_threads;
    if (threads <= 0) threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    threads = std::max(1, threads / int(options_.devices.size()));
    int64_t chunk = options_.chunk_rows;
    for (int dev : options_.devices) {
        const bool hopper = options_.algorithm == EStepCudaAlgorithm::Hopper ||
                            options_.algorithm == EStepCudaAlgorithm::Auto;
        workers_.push_back(std::make_unique<Worker>(dev, options_.fast_math, !options_.fast_bf16,
                                                    options_.algorithm != EStepCudaAlgorithm::Fused, hopper,
                                                    options_.block_bytes, options_.poison_buffers, K, d, chunk,
                                                    threads));
    }
    if (options_.devices.size() == 1) {
        snprintf(name_, sizeof(name_), "cuda:%d%s", options_.devices[0], options_.fast_math ? (options_.fast_bf16 ? ":bf16" : ":tf32") : "");
    } else {
        snprintf(name_, sizeof(name_), "cuda:x%d%s", int(options_.devices.size()),
                 options_.fast_math ? (options_.fast_bf16 ? ":bf16" : ":tf32") : "");
    }
}

EStepCuda::~EStepCuda() { release_rows(); }

/// Rows copied to the GPUs by retain_rows(): worker i holds the caller's rows
/// [begin[i], end[i]) in copies[i], on its device.
struct EStepCuda::Retained {
    VectorBlock host;
    std::vector<int64_t> begin, end;
    std::vector<std::unique_ptr<DeviceBuffer>> copies;

    /// Index of rows' first row within the retained rows, or −1 when rows are
    /// not a slice of them (other memory, type or dimension).
    int64_t first_row_of(const VectorBlock& rows) const {
        if (rows.type != host.type || rows.d != host.d || rows.n > host.n) return -1;
        const auto at = reinterpret_cast<uintptr_t>(rows.data), base = reinterpret_cast<uintptr_t>(host.data);
        const size_t rb = host.row_bytes();
        if (at < base || (at - base) % rb != 0) return -1;
        const int64_t first = int64_t((at - base) / rb);
        return first + rows.n <= host.n ? first : -1;
    }
};

void EStepCuda::retain_rows(const VectorBlock& rows) {
    release_rows();
    if (rows.n <= 0 || rows.d != d_ || (rows.type != DataType::Float32 && rows.type != DataType::UInt8)) return;
    if (options_.retain == EStepCudaRetain::Ignore) return;
    if (options_.retain == EStepCudaRetain::Pin || !copy_rows_to_gpus(rows)) pin_rows(rows);
}

void EStepCuda::pin_rows(const VectorBlock& rows) {
    // Read-only registration first (the GPU only reads the rows; it also accepts read-only mappings).
    void* p = const_cast<void*>(rows.data);
    const size_t bytes = size_t(rows.n) * rows.row_bytes();
    if (cudaHostRegister(p, bytes, cudaHostRegisterPortable | cudaHostRegisterReadOnly) != cudaSuccess) {
        cudaGetLastError();
        if (cudaHostRegister(p, bytes, cudaHostRegisterPortable) != cudaSuccess) {
            cudaGetLastError(); // already pinned, device memory, or not allowed: passes stream as before
            return;
        }
    }
    pinned_rows_ = p;
}

bool EStepCuda::copy_rows_to_gpus(const VectorBlock& rows) {
    const int nw = int(workers_.size());
    auto r = std::make_unique<Retained>();
    r->host = rows;
    // Devices may repeat (several workers on one GPU): check each device's total.
    std::vector<std::pair<int, size_t>> need;
    for (int i = 0; i < nw; i++) {
        r->begin.push_back(rows.n * i / nw);
        r->end.push_back(rows.n * (i + 1) / nw);
        const size_t bytes = size_t(r->end[i] - r->begin[i]) * rows.row_bytes();
        auto it = std::find_if(need.begin(), need.end(), [&](auto& e) { return e.first == workers_[i]->device; });
        if (it == need.end()) need.emplace_back(workers_[i]->device, bytes);
        else it->second += bytes;
    }
    for (const auto& [dev, bytes] : need) {
        size_t free_b = 0, total_b = 0;
        if (cudaSetDevice(dev) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        // Room for the E-step's own buffers and for whoever else uses the GPU.
        const size_t keep_free = std::max<size_t>(size_t(4) << 30, total_b / 10);
        if (bytes + keep_free > free_b) return false; // does not fit
    }
    try {
        for (int i = 0; i < nw; i++) {
            auto copy = std::make_unique<DeviceBuffer>();
            const size_t bytes = size_t(r->end[i] - r->begin[i]) * rows.row_bytes();
            // allocate() uses the current device: make it this worker's.
            FAISS_GMM_CUDA_CHECK(cudaSetDevice(workers_[i]->device));
            copy->allocate(workers_[i]->device, bytes, false);
            FAISS_GMM_CUDA_CHECK(cudaMemcpy(copy->ptr, rows.row(r->begin[i]), bytes, cudaMemcpyDefault));
            r->copies.push_back(std::move(copy));
        }
    } catch (const std::exception&) {
        return false; // out of memory after all (another process); r frees what it got
    }
    retained_ = std::move(r);
    return true;
}

void EStepCuda::release_rows() {
    retained_.reset();
    if (pinned_rows_) {
        cudaHostUnregister(pinned_rows_);
        cudaGetLastError();
        pinned_rows_ = nullptr;
    }
}

const char* EStepCuda::name() const { return name_; }

void EStepCuda::set_model(const GmmModel& model, const float* center) {
    model.validate();
    if (model.K != K_ || model.d != d_) {
        throw std::invalid_argument("EStepCuda::set_model: model is K=" + std::to_string(model.K) +
                                    ", d=" + std::to_string(model.d) + " but this E-step was built for K=" +
                                    std::to_string(K_) + ", d=" + std::to_string(d_));
    }
    const bool diag = model.covariance_type == CovarianceType::Diagonal;
    const int64_t K = K_, d = d_;
    const int64_t Kp = round_up(K, kP1Comps);
    const int64_t Dfeat = diag ? 2 * d : d;
    const bool fast = options_.fast_math;
    const bool bf16 = fast && options_.fast_bf16;
    // Words per row: a whole number of pipeline chunks (16 words = 32 bf16 or 16 tf32 values).
    const int64_t Dw = bf16 ? round_up(Dfeat, 2 * kChunkWords) / 2 : round_up(Dfeat, kChunkWords);
    const int planes = fast ? 1 : 2;

    mean_sq_.assign(K, 0.0); // ‖μ_k‖²: the sum_sq conversion (host or finalize_sums_kernel)
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < d; j++) mean_sq_[k] += double(model.means[k * d + j]) * model.means[k * d + j];
    // Everything in log2 units, computed in double (GmmModel::log_constants is the definition).
    const std::vector<double> c = model.log_constants();
    std::vector<double> w(size_t(Kp) * Dfeat, 0.0);
    std::vector<float> h_bias(Kp, kNegBig), h_acoef(Kp, 0.f);
    for (int64_t k = 0; k < K; k++) {
        const float* mu = model.means.data() + k * d;
        if (!diag) {
            const double inv = 1.0 / double(model.variances[k]);
            double mm = 0;
            for (int64_t j = 0; j < d; j++) {
                w[k * Dfeat + j] = double(mu[j]) * inv * kLog2e;
                mm += double(mu[j]) * mu[j];
            }
            h_bias[k] = float((c[k] - 0.5 * inv * mm) * kLog2e);
            h_acoef[k] = float(-0.5 * inv * kLog2e);
        } else {
            for (int64_t j = 0; j < d; j++) {
                const double inv = 1.0 / double(model.variances[k * d + j]);
                w[k * Dfeat + j] = double(mu[j]) * inv * kLog2e;
                w[k * Dfeat + d + j] = -0.5 * inv * kLog2e;
            }
            h_bias[k] = float(c[k] * kLog2e);
        }
    }
    std::vector<uint32_t> words(size_t(planes) * Kp * Dw, 0u);
    for (int64_t k = 0; k < Kp; k++) {
        for (int64_t e = 0; e < Dfeat; e++) {
            const float v = float(w[k * Dfeat + e]);
            if (bf16) {
                uint32_t& word = words[k * Dw + e / 2];
                word |= uint32_t(host_bf16(v)) << (16 * (e & 1));
            } else if (fast) {
                words[k * Dw + e] = host_tf32(v);
            } else {
                const uint32_t hi = host_tf32(v);
                words[k * Dw + e] = hi;
                words[size_t(Kp) * Dw + k * Dw + e] = host_tf32(v - bits_to_float(hi));
            }
        }
    }
    // Hopper path: fp16 operands with power-of-two scales (exact to undo). Fast mode: s_x puts
    // the typical centered value (rms from the model: Σ_k π_k (‖μ_k‖²/d + σ²_k)) near 16, so
    // values up to ~4000× typical fit fp16 (larger ones saturate); s_q does the same for
    // ‖x‖² (the column GEMM2 turns into Σ r‖x‖²); s_w puts max|w| near 2^14. Accurate mode
    // (split: hi + lo halves, one pass, so K ≤ 1024) puts the typical values near 1 instead:
    // range up to ~6.5e4 × typical, and the lo halves of typical values stay normal.
    std::unique_ptr<HopperModel> hm;
    const bool want_hopper = options_.algorithm == EStepCudaAlgorithm::Hopper ||
                             options_.algorithm == EStepCudaAlgorithm::Auto;
    namespace s9 = detail::sm90;
    if (want_hopper && !diag && d <= 128 && (fast || K <= int64_t(s9::kKc) * s9::kMaxCluster)) {
        hm = std::make_unique<HopperModel>();
        hm->split = !fast;
        hm->DP = d <= 32 ? 32 : d <= 64 ? 64 : d <= 96 ? 96 : 128;
        hm->FW = hm->DP + 8;
        hm->Kt = int((K + s9::kKc - 1) / s9::kKc);
        double rms2 = 0, maxw = 0;
        for (int64_t k = 0; k < K; k++) {
            double mm = 0;
            for (int64_t j = 0; j < d; j++) {
                mm += double(model.means[k * d + j]) * model.means[k * d + j];
                maxw = std::max(maxw, std::fabs(w[k * d + j]));
            }
            rms2 += std::exp(double(model.log_weights[k])) * (mm / double(d) + double(model.variances[k]));
        }
        rms2 = std::max(rms2, 1e-300);
        const double typical = hm->split ? 1.0 : 16.0;
        hm->sx = pow2i(int(std::lround(std::log2(typical / std::sqrt(rms2)))));
        hm->sq = pow2i(int(std::lround(std::log2(typical / (double(d) * rms2)))));
        const float sw = maxw > 0 ? pow2i(int(std::floor(std::log2(16384.0 / maxw)))) : 1.f;
        hm->kinv = float(1.0 / (double(hm->sx) * double(sw)));
        const int DP = hm->DP;
        hm->means = model.means;
        hm->mean_sq = mean_sq_;
        const size_t wlo = size_t(hm->Kt) * s9::kKc * DP; // split: where the lo halves start
        hm->W.assign(wlo * (hm->split ? 2 : 1), 0);
        hm->ab.assign(size_t(hm->Kt) * s9::kKc * 2, 0.f);
        for (int64_t k = 0; k < int64_t(hm->Kt) * s9::kKc; k++) {
            const int64_t ct = k / s9::kKc, c = k % s9::kKc;
            for (int64_t j = 0; j < d && k < K; j++) {
                const size_t at = size_t(ct) * s9::kKc * DP + size_t((j / 8) * s9::kKc + c) * 8 + j % 8;
                const double v = w[k * d + j] * sw;
                hm->W[at] = host_f16(float(v));
                if (hm->split) hm->W[wlo + at] = host_f16(float(v - host_f16_value(hm->W[at])));
            }
            hm->ab[2 * k] = k < K ? h_acoef[k] : 0.f;
            hm->ab[2 * k + 1] = k < K ? h_bias[k] : kNegBig;
        }
    }
    std::vector<float> h_center(d, 0.f);
    if (center) std::copy(center, center + d, h_center.begin());
    for (auto& wk : workers_) wk->set_model(words, h_bias, h_acoef, h_center.data(), diag, Dfeat, Dw, w, hm.get());
    model_ = model;
    have_model_ = true;
}

void EStepCuda::accumulate(const VectorBlock& rows, SufficientStats& stats) {
    if (!have_model_) throw std::logic_error("EStepCuda::accumulate called before set_model");
    if (rows.d != d_) {
        throw std::invalid_argument("EStepCuda::accumulate: rows have d=" + std::to_string(rows.d) +
                                    ", the model d=" + std::to_string(d_));
    }
    if (stats.K != K_ || stats.d != d_ || stats.covariance_type != model_.covariance_type) {
        throw std::invalid_argument("EStepCuda::accumulate: stats shape does not match the model");
    }
    if (rows.n < 0 || (rows.n > 0 && rows.data == nullptr)) {
        throw std::invalid_argument("EStepCuda::accumulate: invalid rows (null data or negative n)");
    }
    if (rows.type != DataType::Float32 && rows.type != DataType::UInt8) {
        throw std::invalid_argument(std::string("EStepCuda::accumulate: ") + to_string(rows.type) +
                                    " rows are not supported on the GPU (convert to float32 or uint8)");
    }
    if (rows.n == 0) return;

    // Contiguous share of rows per worker (statistics are sums, so any split works).
    // Rows retained on the GPUs: each worker reads the part of its own copy that
    // overlaps them (possibly nothing).
    const int nw = int(workers_.size());
    std::vector<VectorBlock> shares(nw);
    const int64_t first = retained_ ? retained_->first_row_of(rows) : -1;
    for (int i = 0; i < nw; i++) {
        if (first >= 0) {
            const int64_t a = std::max(first, retained_->begin[i]);
            const int64_t b = std::min(first + rows.n, retained_->end[i]);
            const size_t offset = size_t(a - retained_->begin[i]) * rows.row_bytes(); // a >= begin[i]
            shares[i] = VectorBlock{static_cast<const uint8_t*>(retained_->copies[i]->ptr) + offset, rows.type,
                                    std::max<int64_t>(b - a, 0), d_};
        } else {
            const int64_t a = rows.n * i / nw, b = rows.n * (i + 1) / nw;
            shares[i] = rows.slice(a, b - a);
        }
    }
    auto run_share = [&](int i) {
        if (shares[i].n > 0) {
            workers_[i]->run(shares[i]);
        } else {
            workers_[i]->clear_results();
        }
    };
    if (nw == 1) {
        run_share(0);
    } else {
        std::vector<std::exception_ptr> errors(nw);
        std::vector<std::thread> threads;
        for (int i = 0; i < nw; i++) {
            threads.emplace_back([&, i] {
                try {
                    run_share(i);
                } catch (...) {
                    errors[i] = std::current_exception();
                }
            });
        }
        for (auto& t : threads) t.join();
        for (auto& e : errors)
            if (e) std::rethrow_exception(e);
    }

    // Raw sums → statistics about the E-step model's means, in double.
    const int64_t K = K_, d = d_;
    const bool diag = model_.covariance_type == CovarianceType::Diagonal;
    const int64_t Dfeat = diag ? 2 * d : d;
    double ll = 0;
    for (auto& wk : workers_) ll += wk->h_loglik;
    stats.n += double(rows.n);
    stats.loglik += ll;
    // Workers of the Hopper path finalized their increments on the GPU: one pass of additions.
    std::vector<Worker*> raw;
    for (auto& wk : workers_) {
        if (!wk->finalized) {
            raw.push_back(wk.get());
            continue;
        }
        const double* o = static_cast<const double*>(wk->h_hacc.ptr);
        for (int64_t k = 0; k < K; k++, o += d + 2) {
            double* sx = stats.sum_x.data() + k * d;
            for (int64_t j = 0; j < d; j++) sx[j] += o[j];
            stats.nk[k] += o[d];
            stats.sum_sq[k] += o[d + 1];
        }
    }
    if (raw.empty()) return;
    // The other workers' sums, converted here (one worker: used in place).
    std::vector<double> fsum, nksum, sxxsum;
    const double *f = raw[0]->h_f.data(), *nk = raw[0]->h_nk.data(), *sxx = raw[0]->h_sxx.data();
    if (raw.size() > 1) {
        fsum.assign(size_t(K) * Dfeat, 0.0);
        nksum.assign(K, 0.0);
        sxxsum.assign(K, 0.0);
        for (Worker* wk : raw) {
            for (size_t i = 0; i < fsum.size(); i++) fsum[i] += wk->h_f[i];
            for (int64_t k = 0; k < K; k++) {
                nksum[k] += wk->h_nk[k];
                sxxsum[k] += wk->h_sxx[k];
            }
        }
        f = fsum.data();
        nk = nksum.data();
        sxx = sxxsum.data();
    }
    for (int64_t k = 0; k < K; k++) {
        const float* mu = model_.means.data() + k * d;
        const double* fk = f + k * Dfeat;
        stats.nk[k] += nk[k];
        // (four partial sums: this loop is on the critical path of every E-step)
        double cross4[4] = {0, 0, 0, 0};
        for (int64_t j = 0; j < d; j++) {
            stats.sum_x[k * d + j] += fk[j];
            cross4[j & 3] += double(mu[j]) * fk[j];
        }
        const double cross = (cross4[0] + cross4[1]) + (cross4[2] + cross4[3]);
        if (!diag) {
            stats.sum_sq[k] += sxx[k] - 2.0 * cross + nk[k] * mean_sq_[k];
        } else {
            for (int64_t j = 0; j < d; j++) {
                const double m = mu[j];
                stats.sum_sq[k * d + j] += fk[d + j] - 2.0 * m * fk[j] + nk[k] * m * m;
            }
        }
    }
}

std::vector<EStepCudaReport> EStepCuda::last_report() const {
    std::vector<EStepCudaReport> r;
    for (auto& wk : workers_) r.push_back(wk->report);
    return r;
}

std::unique_ptr<EStep> make_estep_cuda(const GmmParams& params, int64_t K, int64_t d) {
    EStepCudaOptions opt;
    opt.fast_math = params.fast_math;
    return std::make_unique<EStepCuda>(K, d, opt);
}

} // namespace faiss_gmm::gpu
