// Benchmark of the CUDA E-step (not a test). In one run, on one GPU:
//  * per E-step time of ours on device-resident rows: Blocked (accurate fp32, fast tf32) and
//    Hopper (fast fp16, accurate 2×fp16 wgmma), next to
//    cuBLAS GEMM floors of the same shape (one N×K×d product in bf16, tf32, fp32); --modes and
//    --shapes select; --sub-tiles-scan 128,32 also times the one-pass Hopper modes at those
//    EStepCudaOptions::hopper_sub_tiles (when a chunk is cut into sub-chunks);
//  * streaming N = 100M rows from pageable host memory (float32 and uint8), through staging
//    copies and pinned in place by retain_rows(): time per pass against max(transfer time at the
//    measured pinned H2D bandwidth, kernel time), and the GPU memory the backend holds;
//  * 20 EM iterations at N = 10M with the GPU E-step and a host M-step (--em-reproducible: rows on
//    the GPU, accumulate() against accumulate_reproducible(); --em-no-refine: with
//    EStepCudaOptions::exact_log_densities off, so that the Hopper kernels run even once this crude
//    M-step, which never re-seeds, has left components narrow enough for the refinement).
//  * --host-sums: the host side of a reproducible EM iteration (grids, clear, add_limbs, result), each alone.
// Prints a table; bench/results/gpu_<name>.md records it.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/ParallelRanges.h"
#include "faiss_gmm/SufficientStats.h"
#include "bench/gpu/bench_util.cuh"
#include "gpu/EStepCuda.h"

using namespace faiss_gmm;
using faiss_gmm::gpu::EStepCuda;
using faiss_gmm::gpu::EStepCudaAlgorithm;
using faiss_gmm::gpu::EStepCudaOptions;

#define CB(x)                                                                    \
    do {                                                                         \
        cublasStatus_t s_ = (x);                                                 \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                       \
            fprintf(stderr, "%s:%d %s: cublas %d\n", __FILE__, __LINE__, #x, int(s_)); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

namespace {

using faiss_gmm::bench::median;
using faiss_gmm::bench::now_s;

__device__ uint32_t hash32(uint64_t x) { return uint32_t(faiss_gmm::bench::mix64(x)); }
__device__ float unif(uint64_t i, uint32_t seed) { return (hash32(i * 0x9e3779b97f4a7c15ull + seed) >> 8) * (1.f / 16777216.f); }

/// Rows around `nc` random cluster centers (spread 1 per dim), noise 0.5 per dim: mean ≈ 0.
__global__ void gen_rows(float* x, int64_t n, int d, int nc, uint32_t seed) {
    int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= n * d) return;
    const int64_t row = i / d;
    const int j = int(i - row * d);
    const int c = int(hash32(uint64_t(row) * 7919u + seed) % uint32_t(nc));
    const float mu = 2.f * unif(uint64_t(c) * 4096 + j, seed ^ 0x1234u) - 1.f;
    const float noise = (unif(i, seed) + unif(i, seed + 1) + unif(i, seed + 2) - 1.5f); // var 1/4
    x[i] = 1.7f * mu + noise;
}

/// A model whose means are rows of x (so responsibilities are those of a fitted-looking GMM).
GmmModel model_from_rows(const std::vector<float>& rows, int64_t K, int64_t d, CovarianceType cov) {
    GmmModel m(K, d, cov);
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < d; j++) m.means[k * d + j] = rows[k * d + j];
    for (auto& v : m.variances) v = 0.35f;
    return m;
}

struct Floors {
    double bf16 = 0, tf32 = 0, fp32 = 0;
    int64_t rows = 0;
};

/// One N×K×d product X·Mᵀ (the logits GEMM) per precision; output bf16 for bf16, fp32 otherwise.
/// Rows limited so that the N×K output fits; time scaled to N rows.
Floors gemm_floors(cublasHandle_t h, const float* x, int64_t N, int64_t K, int64_t d) {
    Floors f;
    const int64_t rows = std::min<int64_t>(N, (int64_t(3) << 30) / (K * 4) / 128 * 128);
    f.rows = rows;
    float *c = nullptr, *mu = nullptr;
    __nv_bfloat16 *xb = nullptr, *mb = nullptr, *cb = nullptr;
    CK(cudaMalloc(&c, size_t(rows) * K * 4));
    CK(cudaMalloc(&cb, size_t(rows) * K * 2));
    CK(cudaMalloc(&mu, size_t(K) * d * 4));
    CK(cudaMalloc(&xb, size_t(rows) * d * 2));
    CK(cudaMalloc(&mb, size_t(K) * d * 2));
    CK(cudaMemcpy(mu, x, size_t(std::min(K, N)) * d * 4, cudaMemcpyDeviceToDevice));
    std::vector<float> hx(size_t(rows) * d);
    CK(cudaMemcpy(hx.data(), x, hx.size() * 4, cudaMemcpyDeviceToHost));
    std::vector<__nv_bfloat16> hb(hx.size());
    for (size_t i = 0; i < hx.size(); i++) hb[i] = __float2bfloat16(hx[i]);
    CK(cudaMemcpy(xb, hb.data(), hb.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(mb, hb.data(), size_t(std::min(K, rows)) * d * 2, cudaMemcpyHostToDevice));
    const float one = 1.f, zero = 0.f;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    auto timeit = [&](auto&& fn) {
        for (int i = 0; i < 3; i++) fn();
        std::vector<double> t;
        for (int i = 0; i < 10; i++) {
            CK(cudaEventRecord(e0));
            fn();
            CK(cudaEventRecord(e1));
            CK(cudaEventSynchronize(e1));
            float ms = 0;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            t.push_back(ms);
        }
        return median(t) * double(N) / double(rows);
    };
    // Column-major view: C (K × rows) = Mᵀ(K × d)·... i.e. C = op(A)·op(B) with A = M (d × K col-major → transpose).
    f.bf16 = timeit([&] {
        CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(K), int(rows), int(d), &one, mb, CUDA_R_16BF, int(d), xb,
                        CUDA_R_16BF, int(d), &zero, cb, CUDA_R_16BF, int(K), CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT));
    });
    f.tf32 = timeit([&] {
        CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(K), int(rows), int(d), &one, mu, CUDA_R_32F, int(d), x,
                        CUDA_R_32F, int(d), &zero, c, CUDA_R_32F, int(K), CUBLAS_COMPUTE_32F_FAST_TF32,
                        CUBLAS_GEMM_DEFAULT));
    });
    f.fp32 = timeit([&] {
        CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(K), int(rows), int(d), &one, mu, CUDA_R_32F, int(d), x,
                        CUDA_R_32F, int(d), &zero, c, CUDA_R_32F, int(K), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
    cudaFree(c);
    cudaFree(cb);
    cudaFree(mu);
    cudaFree(xb);
    cudaFree(mb);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return f;
}

struct Mode {
    const char* name;
    const char* column;
    bool fast;
    EStepCudaAlgorithm algo;
};
constexpr int kNumModes = 4;
const Mode kModes[kNumModes] = {{"accurate", "accurate", false, EStepCudaAlgorithm::Blocked},
                                {"fast-tf32", "fast", true, EStepCudaAlgorithm::Blocked},
                                {"hopper-fast", "hopper", true, EStepCudaAlgorithm::Hopper},
                                {"hopper-accurate", "h-accu", false, EStepCudaAlgorithm::Hopper}};
constexpr int kHopperFast = 2, kHopperAccurate = 3;
/// Modes of earlier versions, removed with the code they timed (bench/results has their figures).
const char* const kRemovedModes[] = {"fast-bf16", "fused-accurate", "fused-tf32", "fused-bf16"};

struct Timing {
    double wall_s = 0, gpu_ms = 0, loglik = 0;
    const char* ran = "";
    int blocks = 0, cluster = 0;
};

/// How time_estep sums: accumulate() into SufficientStats; the trainer's path before the GPU had
/// reproducible sums (EStep's default accumulate_reproducible: accumulate(), then one exact add of
/// the whole call); EStepCuda::accumulate_reproducible (every 4096-row block on its own, limbs).
enum class SumPath { Plain, PlainThenExact, Reproducible };

/// The Hopper knobs a timing sets (EStepCudaOptions' fields of the same names; sub_tiles 0: its default).
struct HopperKnobs {
    int exchange = 0, sub_tiles = 0, diag_wide = 0, max_clusters = 0, sub_growth = 0;
    /// A copy with one knob set: HopperKnobs::with(&HopperKnobs::exchange, 1).
    static HopperKnobs with(int HopperKnobs::*knob, int value) {
        HopperKnobs k;
        k.*knob = value;
        return k;
    }
};

/// Median seconds per accumulate() over device-resident rows (and the median device time).
Timing time_estep(const float* x_dev, int64_t N, int64_t d, const GmmModel& m, const Mode& mode, int reps,
                  HopperKnobs knobs = {}, SumPath path = SumPath::Plain) {
    EStepCudaOptions o;
    o.devices = {0};
    o.fast_math = mode.fast;
    o.algorithm = mode.algo;
    o.hopper_exchange = knobs.exchange;
    o.hopper_diag_wide = knobs.diag_wide;
    o.hopper_max_clusters = knobs.max_clusters;
    o.hopper_sub_chunk_growth = knobs.sub_growth;
    if (knobs.sub_tiles > 0) o.hopper_sub_tiles = knobs.sub_tiles;
    EStepCuda es(m.K, d, o);
    es.set_model(m, nullptr);
    VectorBlock rows{x_dev, DataType::Float32, N, d};
    SufficientStats st(m.K, d, m.covariance_type);
    StatsAccumulator acc(m.K, d, m.covariance_type);
    bench::grids_from_means(acc, m);
    auto run = [&] {
        if (path == SumPath::Plain) {
            st.clear();
            es.accumulate(rows, st);
            return;
        }
        acc.clear();
        if (path == SumPath::PlainThenExact) {
            es.EStep::accumulate_reproducible(rows, acc); // the base class's: one partial per call
        } else {
            es.accumulate_reproducible(rows, acc);
        }
    };
    run(); // warm-up: buffers, module load
    std::vector<double> t, g;
    for (int r = 0; r < reps; r++) {
        const double t0 = now_s();
        run();
        t.push_back(now_s() - t0);
        g.push_back(es.last_report()[0].gpu_ms);
    }
    if (path != SumPath::Plain) acc.result(st);
    Timing res;
    res.wall_s = median(t);
    res.gpu_ms = median(g);
    res.loglik = st.loglik / double(N);
    res.ran = es.last_report()[0].algorithm;
    res.blocks = es.last_report()[0].blocks;
    res.cluster = es.last_report()[0].cluster;
    return res;
}

void fill_parallel(float* dst, int64_t count, const float* pattern, int64_t pattern_count) {
    const int nt = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> th;
    for (int t = 0; t < nt; t++) {
        th.emplace_back([=] {
            const int64_t a = count * t / nt, b = count * (t + 1) / nt;
            for (int64_t i = a; i < b;) {
                const int64_t off = i % pattern_count;
                const int64_t len = std::min(b - i, pattern_count - off);
                std::memcpy(dst + i, pattern + off, size_t(len) * 4);
                i += len;
            }
        });
    }
    for (auto& x : th) x.join();
}

/// --host-sums: the host side of a reproducible EM iteration at K = 1024, d = 128 spherical
/// (what bench_estep_cuda --em-reproducible times inside its iterations), each step alone,
/// median of 30: the grids, clear(), add_limbs() of a GPU download's int32 limbs, result().
/// bench_reproducible_sum --host-sums times more (the trainer's row bounds, an MPI fit's flat()),
/// but needs BLAS, which the GPU machines lack; this one runs wherever this benchmark does.
void bench_host_sums() {
    const int64_t K = 1024, d = 128;
    GmmModel m(K, d, CovarianceType::Spherical);
    std::mt19937 rng(5);
    std::normal_distribution<float> g(0.f, 30.f);
    for (float& v : m.means) v = g(rng);
    StatsAccumulator acc(K, d, CovarianceType::Spherical);
    SufficientStats st(K, d, CovarianceType::Spherical);
    std::vector<int32_t> limbs(3 * acc.nvalues());
    for (int32_t& l : limbs) l = int32_t(rng() >> 8); // small positive limbs: sums far inside the grids
    const int64_t ll[ExactSums::kLimbs] = {};
    auto time = [](const char* what, const auto& fn) {
        std::vector<double> t;
        for (int r = 0; r < 30; r++) {
            const double t0 = now_s();
            fn();
            t.push_back(now_s() - t0);
        }
        printf("  host sums %-34s %8.3f ms\n", what, bench::median(t) * 1e3);
    };
    printf("host sums, K = %lld, d = %lld spherical (%zu values), %d threads (the pool's):\n", (long long)K,
           (long long)d, acc.nvalues(), faiss_gmm::detail::pool_threads());
    time("grids (grids_from_means)", [&] { bench::grids_from_means(acc, m); });
    time("clear", [&] { acc.clear(); });
    time("clear + add_limbs", [&] {
        acc.clear();
        acc.add_limbs(1, ll, limbs.data(), 3);
    });
    time("result", [&] { acc.result(st); });
}

} // namespace

int main(int argc, char** argv) {
    bool quick = false, stream = true, em = true;
    int only_mode = -1, reps_override = 0; // profiling: one mode, few repetitions
    int64_t stream_n = 100000000;
    std::string modes_arg, shapes_arg;
    bool hopper_variants = false;
    std::vector<int> sub_tiles_scan; // --sub-tiles-scan 128,32,16: the one-pass Hopper modes at these hopper_sub_tiles
    std::vector<int> clusters_scan;  // --clusters-scan 64,60,56: the one-pass Hopper modes at these hopper_max_clusters
    std::vector<int> growth_scan;    // --growth-scan 2,4: the one-pass Hopper modes at these hopper_sub_chunk_growth
    bool narrow = false; // --narrow: component 0 collapsed onto its row (issue 13): Blocked + refinement
    bool reproducible = false; // --reproducible: the reproducible sums' cost per mode
    bool em_reproducible = false;
    bool em_no_refine = false; // --em-no-refine
    // --em-block-rows 0,4096,16384: the reproducible EM runs once per Hopper block size
    // (EStepCudaOptions::hopper_reproducible_block_rows; 0, the default: auto from the expected rows)
    std::vector<int64_t> em_block_rows;
    int em_rounds = 1; // --em-rounds R: the plain and reproducible runs R times, interleaved
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--quick") quick = true;
        if (a == "--no-stream") stream = false;
        if (a == "--no-em") em = false;
        if (a == "--stream-n" && i + 1 < argc) stream_n = std::atoll(argv[++i]);
        if (a == "--only-mode" && i + 1 < argc) only_mode = std::atoi(argv[++i]);
        if (a == "--reps" && i + 1 < argc) reps_override = std::atoi(argv[++i]);
        if (a == "--modes" && i + 1 < argc) modes_arg = "," + std::string(argv[++i]) + ","; // names, comma-separated
        if (a == "--shapes" && i + 1 < argc) shapes_arg = "," + std::string(argv[++i]) + ","; // indices 0..16
        if (a == "--hopper-variants") hopper_variants = true; // also time the Hopper kernel's other settings
        if (a == "--sub-tiles-scan" && i + 1 < argc) sub_tiles_scan = bench::clamped_int_list(argv[++i], 1, INT_MAX);
        if (a == "--clusters-scan" && i + 1 < argc) clusters_scan = bench::clamped_int_list(argv[++i], 1, INT_MAX);
        if (a == "--growth-scan" && i + 1 < argc) growth_scan = bench::clamped_int_list(argv[++i], 1, 4);
        if (a == "--narrow") narrow = true; // a model with a collapsed component: the refinement's cost
        if (a == "--reproducible") reproducible = true; // also time accumulate_reproducible (issue 13)
        // EM with rows on the GPU only, each mode with accumulate() and accumulate_reproducible()
        // (clear, call, result: what an iteration of the trainer adds for reproducible sums)
        if (a == "--em-reproducible") em_reproducible = true;
        if (a == "--em-no-refine") em_no_refine = true;
        if (a == "--em-block-rows" && i + 1 < argc) {
            for (const std::string& v : bench::split_list(argv[++i])) em_block_rows.push_back(std::atoll(v.c_str()));
        }
        if (a == "--em-rounds" && i + 1 < argc) em_rounds = std::max(1, std::atoi(argv[++i]));
        if (a == "--host-sums") {
            bench_host_sums();
            return 0;
        }
    }
    if (only_mode >= kNumModes) {
        fprintf(stderr, "--only-mode %d: modes are 0..%d (accurate, fast-tf32, hopper-fast, hopper-accurate)\n",
                only_mode, kNumModes - 1);
        return 2;
    }
    if (!modes_arg.empty()) { // every name must be a mode: a typo or a removed mode is an error, not a silent skip
        for (size_t a = 1, b; (b = modes_arg.find(',', a)) != std::string::npos; a = b + 1) {
            const std::string name = modes_arg.substr(a, b - a);
            bool known = name.empty();
            for (const Mode& m : kModes) known = known || name == m.name;
            for (const char* r : kRemovedModes) {
                if (name == r) {
                    fprintf(stderr, "--modes %s: removed with EStepCudaAlgorithm::Fused and EStepCudaOptions::fast_bf16 "
                                    "(slower than Blocked/Hopper everywhere measured; bench/results/gpu_NVIDIA-H200.md "
                                    "has its figures)\n", r);
                    return 2;
                }
            }
            if (!known) {
                fprintf(stderr, "--modes: unknown mode '%s' (accurate, fast-tf32, hopper-fast, hopper-accurate)\n",
                        name.c_str());
                return 2;
            }
        }
    }
    auto mode_on = [&](int i) {
        if (only_mode >= 0) return i == only_mode;
        return modes_arg.empty() || modes_arg.find("," + std::string(kModes[i].name) + ",") != std::string::npos;
    };
    if (!bench::announce_device(gpu::cuda_device_count())) return 0;
    cublasHandle_t h;
    CB(cublasCreate(&h));

    struct Shape {
        int64_t N, K, d;
        CovarianceType cov;
    };
    std::vector<Shape> shapes = {{1000000, 1024, 128, CovarianceType::Spherical}};
    if (!quick) {
        shapes.push_back({1000000, 1024, 128, CovarianceType::Diagonal});
        shapes.push_back({1000000, 1024, 96, CovarianceType::Spherical});
        shapes.push_back({1000000, 1024, 784, CovarianceType::Spherical});
        shapes.push_back({1000000, 4096, 128, CovarianceType::Spherical});
        shapes.push_back({1000000, 65536, 128, CovarianceType::Spherical});
        // cluster-size scan of the Hopper kernel (one pass: clusters of 1, 2, 4 CTAs; two passes at 2048)
        shapes.push_back({1000000, 128, 128, CovarianceType::Spherical});
        shapes.push_back({1000000, 256, 128, CovarianceType::Spherical});
        shapes.push_back({1000000, 512, 128, CovarianceType::Spherical});
        shapes.push_back({1000000, 2048, 128, CovarianceType::Spherical});
        // issue 16: diagonal at d = 96 (the wide kernel at 2d = 192), and the K scan (256 at 4M rows)
        shapes.push_back({1000000, 1024, 96, CovarianceType::Diagonal});  // 10
        shapes.push_back({4000000, 256, 128, CovarianceType::Spherical}); // 11
        shapes.push_back({1000000, 16384, 128, CovarianceType::Spherical}); // 12
        shapes.push_back({1000000, 1024, 64, CovarianceType::Diagonal});  // 13: the fast kernel at 2d = 128
        // issue 16 item 1: diagonal above K = 1024 (accurate d > 64: the 32-row two passes of Sm90DiagSplitKernels.cuh)
        shapes.push_back({1000000, 4096, 128, CovarianceType::Diagonal}); // 14
        shapes.push_back({1000000, 4096, 96, CovarianceType::Diagonal});  // 15
        shapes.push_back({1000000, 4096, 64, CovarianceType::Diagonal});  // 16
    }
    printf("\nE-step time (median host wall time of accumulate(), rows resident on the GPU). Blocked: accurate | "
           "fast-tf32; Hopper: fast (fp16 wgmma, clusters), accurate (2xfp16 wgmma); cuBLAS floors: one N x K x d "
           "GEMM ('-': not run)\n");
    printf("%-26s %9s %9s | %9s %9s | %9s %9s %9s\n", "shape", "accurate", "fast", "hopper", "h-accu", "gemm-bf16",
           "gemm-tf32", "gemm-fp32");
    double main_fast_kernel_s = 0, main_fast_tf32_s = 0, main_acc_s = 0;
    int shape_index = -1;
    for (const Shape& s : shapes) {
        shape_index++;
        if (!shapes_arg.empty() && shapes_arg.find("," + std::to_string(shape_index) + ",") == std::string::npos)
            continue;
        float* x = nullptr;
        CK(cudaMalloc(&x, size_t(s.N) * s.d * 4));
        gen_rows<<<unsigned((s.N * s.d + 255) / 256), 256>>>(x, s.N, int(s.d), int(std::max<int64_t>(64, s.K / 4)),
                                                            1234u);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        std::vector<float> head(size_t(s.K) * s.d);
        CK(cudaMemcpy(head.data(), x, head.size() * 4, cudaMemcpyDeviceToHost));
        GmmModel m = model_from_rows(head, s.K, s.d, s.cov);
        if (narrow) {
            // Component 0's mean is row 0: variance 1e-9 makes it a collapsed component, and every
            // mode runs Blocked + refinement (EStepCudaOptions::exact_log_densities).
            for (int64_t j = 0; j < m.nvar(); j++) m.variances[size_t(j)] = 1e-9f;
            printf("--narrow: component 0 collapsed onto row 0 (variance 1e-9): Blocked + refinement\n");
        }
        const int reps = reps_override > 0 ? reps_override : s.K >= 65536 || s.d >= 784 ? 3 : 10;
        Timing tm[kNumModes];
        bool on[kNumModes];
        for (int i = 0; i < kNumModes; i++) {
            on[i] = mode_on(i);
            if (on[i]) tm[i] = time_estep(x, s.N, s.d, m, kModes[i], reps);
        }
        if (only_mode >= 0) {
            printf("mode %s: %.3f ms (gpu %.3f ms, ran %s)\n", kModes[only_mode].name, tm[only_mode].wall_s * 1e3,
                   tm[only_mode].gpu_ms, tm[only_mode].ran);
            CK(cudaFree(x));
            continue;
        }
        Floors f = gemm_floors(h, x, s.N, s.K, s.d);
        char name[64];
        snprintf(name, sizeof(name), "N=%lldM K=%lld d=%lld %s", (long long)(s.N / 1000000), (long long)s.K,
                 (long long)s.d, s.cov == CovarianceType::Spherical ? "sph" : "diag");
        auto cell = [&](int i) {
            static char buf[kNumModes][16];
            if (on[i]) {
                snprintf(buf[i], sizeof(buf[i]), "%7.2fms", tm[i].wall_s * 1e3);
            } else {
                snprintf(buf[i], sizeof(buf[i]), "%9s", "-");
            }
            return buf[i];
        };
        printf("%-26s %s %s | %s %s | %7.2fms %7.2fms %7.2fms\n", name, cell(0), cell(1), cell(2), cell(3), f.bf16,
               f.tf32, f.fp32);
        printf("    device time (ms):");
        for (int i = 0; i < kNumModes; i++)
            if (on[i]) printf(" %s %.2f%s", kModes[i].column, tm[i].gpu_ms,
                              kModes[i].algo == EStepCudaAlgorithm::Hopper && std::string(tm[i].ran) != "hopper"
                                      ? " (ran blocked)" : "");
        const Timing& hf = tm[kHopperFast];
        if (on[kHopperFast] && std::string(hf.ran) == "hopper")
            printf("; hopper grid %d blocks, %s", hf.blocks,
                   hf.cluster > 0 ? ("clusters of " + std::to_string(hf.cluster)).c_str() : "two passes");
        const bool wide_diag = s.cov == CovarianceType::Diagonal && s.d > 64;
        if (on[kHopperFast] && hopper_variants && hf.cluster > 0 && !wide_diag) { // hopper_exchange = 1
            const Timing o =
                time_estep(x, s.N, s.d, m, kModes[kHopperFast], reps, HopperKnobs::with(&HopperKnobs::exchange, 1));
            printf("; EXCHANGE=1: %.2f ms wall, %.2f ms device", o.wall_s * 1e3, o.gpu_ms);
        }
        if (on[kHopperFast] && hopper_variants && wide_diag && hf.cluster > 0) {
            // fast diagonal d > 64 ran the wide kernel: also time the one-plane two passes (hopper_diag_wide = 2)
            const Timing o =
                time_estep(x, s.N, s.d, m, kModes[kHopperFast], reps, HopperKnobs::with(&HopperKnobs::diag_wide, 2));
            printf("; hopper_diag_wide=2 (two passes, one plane): %.2f ms wall, %.2f ms device, loglik/row %.5f",
                   o.wall_s * 1e3, o.gpu_ms, o.loglik);
        }
        // The one-pass Hopper modes again with other launch knobs (HopperLaunch.cuh: one_pass).
        auto time_one_pass = [&](const HopperKnobs& k, const std::string& what) {
            for (int i : {int(kHopperFast), int(kHopperAccurate)}) {
                if (!on[i] || std::string(tm[i].ran) != "hopper" || tm[i].cluster == 0) continue;
                const Timing v = time_estep(x, s.N, s.d, m, kModes[i], reps, k);
                printf("\n    %s %s (%d blocks): %.3f ms (device %.3f), loglik/row %.6f", kModes[i].column,
                       what.c_str(), v.blocks, v.wall_s * 1e3, v.gpu_ms, v.loglik);
            }
        };
        for (int st : sub_tiles_scan) { // sub-chunks of a chunk
            time_one_pass(HopperKnobs::with(&HopperKnobs::sub_tiles, st), "hopper_sub_tiles=" + std::to_string(st));
        }
        for (int q : clusters_scan) { // clusters at once (fewer leave SMs to the features pass)
            time_one_pass(HopperKnobs::with(&HopperKnobs::max_clusters, q), "hopper_max_clusters=" + std::to_string(q));
        }
        for (int g : growth_scan) { // geometric sub-chunks, with --sub-tiles-scan's first value if any
            HopperKnobs k = HopperKnobs::with(&HopperKnobs::sub_growth, g);
            if (!sub_tiles_scan.empty()) k.sub_tiles = sub_tiles_scan[0];
            time_one_pass(k, "hopper_sub_chunk_growth=" + std::to_string(g) +
                                     (k.sub_tiles > 0 ? ", hopper_sub_tiles=" + std::to_string(k.sub_tiles) : ""));
        }
        if (reproducible) { // the same modes, the two ways the trainer can sum (same machine, same call)
            for (int i = 0; i < kNumModes; i++) {
                if (!on[i]) continue;
                const Timing pe = time_estep(x, s.N, s.d, m, kModes[i], reps, {}, SumPath::PlainThenExact);
                const Timing rp = time_estep(x, s.N, s.d, m, kModes[i], reps, {}, SumPath::Reproducible);
                printf("\n    reproducible %s (ran %s): accumulate %.3f ms (device %.3f) | + one exact add %.3f ms | "
                       "accumulate_reproducible %.3f ms (device %.3f): %+.1f %% vs accumulate, %+.1f %% vs "
                       "accumulate + exact add; loglik/row %.6f vs %.6f",
                       kModes[i].column, rp.ran, tm[i].wall_s * 1e3, tm[i].gpu_ms, pe.wall_s * 1e3, rp.wall_s * 1e3,
                       rp.gpu_ms, 100.0 * (rp.wall_s / tm[i].wall_s - 1), 100.0 * (rp.wall_s / pe.wall_s - 1),
                       rp.loglik, tm[i].loglik);
            }
        }
        printf("\n    mean loglik per row:");
        for (int i = 0; i < kNumModes; i++)
            if (on[i]) printf(" %s %.5f", kModes[i].column, tm[i].loglik);
        printf("\n    ratios:");
        if (on[0]) printf(" accurate/fp32-GEMM %.2f", tm[0].wall_s * 1e3 / f.fp32);
        if (on[1]) printf(" fast/(2 tf32 GEMMs) %.2f", tm[1].wall_s * 1e3 / (2 * f.tf32));
        if (on[kHopperFast]) printf(" hopper/(2 bf16 GEMMs) %.2f", hf.wall_s * 1e3 / (2 * f.bf16));
        const Timing& ha = tm[kHopperAccurate];
        if (on[kHopperAccurate])
            printf(" h-accu/fp32-GEMM %.2f h-accu/(2 bf16 GEMMs) %.2f", ha.wall_s * 1e3 / f.fp32,
                   ha.wall_s * 1e3 / (2 * f.bf16));
        printf("\n");
        if (&s == &shapes[0]) {
            // the default accurate mode (Auto): the Hopper kernel where it ran, else Blocked
            main_acc_s = on[kHopperAccurate] && std::string(ha.ran) == "hopper" ? ha.wall_s : tm[0].wall_s;
            main_fast_kernel_s = on[kHopperFast] ? hf.wall_s : tm[1].wall_s; // the default fast mode (Auto)
            main_fast_tf32_s = tm[1].wall_s;
        }
        CK(cudaFree(x));
    }
    printf("targets (H200, 1M x 1024 x 128): fast <= 2.0 ms, accurate <= 7.8 ms; measured fast (default: hopper) "
           "%.2f ms, blocked tf32 %.2f ms, accurate %.2f ms\n",
           main_fast_kernel_s * 1e3, main_fast_tf32_s * 1e3, main_acc_s * 1e3);


    if (stream) {
        // Pinned H2D bandwidth (the transfer floor of a streamed pass).
        const size_t tb = size_t(1) << 30;
        void *hp = nullptr, *dp = nullptr;
        CK(cudaMallocHost(&hp, tb));
        CK(cudaMalloc(&dp, tb));
        std::memset(hp, 1, tb);
        CK(cudaMemcpy(dp, hp, tb, cudaMemcpyHostToDevice));
        const double t0 = now_s();
        for (int i = 0; i < 4; i++) CK(cudaMemcpy(dp, hp, tb, cudaMemcpyHostToDevice));
        const double h2d_bw = 4.0 * tb / (now_s() - t0);
        CK(cudaFreeHost(hp));
        CK(cudaFree(dp));
        printf("\npinned H2D bandwidth: %.1f GB/s\n", h2d_bw / 1e9);

        const int64_t N = stream_n, d = 128, K = 1024;
        // Rows: a 1M-row pattern generated on the GPU, repeated over N rows of pageable memory.
        const int64_t pn = 1 << 20;
        float* xd = nullptr;
        CK(cudaMalloc(&xd, size_t(pn) * d * 4));
        gen_rows<<<unsigned((pn * d + 255) / 256), 256>>>(xd, pn, int(d), 256, 99u);
        CK(cudaDeviceSynchronize());
        std::vector<float> pattern(size_t(pn) * d);
        CK(cudaMemcpy(pattern.data(), xd, pattern.size() * 4, cudaMemcpyDeviceToHost));
        CK(cudaFree(xd));
        GmmModel m = model_from_rows(pattern, K, d, CovarianceType::Spherical);
        for (int type = 0; type < 2; type++) {
            const size_t esz = type == 0 ? 4 : 1;
            std::unique_ptr<uint8_t[]> host(new (std::nothrow) uint8_t[size_t(N) * d * esz]);
            if (!host) {
                printf("streaming %s: could not allocate %.1f GB of host memory, skipped\n",
                       type == 0 ? "float32" : "uint8", double(N) * d * esz / 1e9);
                continue;
            }
            const double tf0 = now_s();
            if (type == 0) {
                fill_parallel(reinterpret_cast<float*>(host.get()), N * d, pattern.data(), pn * d);
            } else {
                std::vector<float> p8(pattern.size());
                for (size_t i = 0; i < p8.size(); i++) {
                    const float v = std::min(255.f, std::max(0.f, std::round(pattern[i] * 40.f + 128.f)));
                    p8[i] = v;
                }
                std::vector<uint8_t> b8(p8.size());
                for (size_t i = 0; i < p8.size(); i++) b8[i] = uint8_t(p8[i]);
                for (int64_t i = 0; i < N * d; i += pn * d)
                    std::memcpy(host.get() + i, b8.data(), size_t(std::min<int64_t>(pn * d, N * d - i)));
            }
            const double fill_s = now_s() - tf0;
            for (int fast = 1; fast >= 0; fast--) {
                EStepCudaOptions o;
                o.devices = {0};
                o.fast_math = fast;
                EStepCuda es(K, d, o);
                GmmModel mm = m;
                std::vector<float> center(d, 0.f);
                if (type == 1) {
                    for (auto& v : mm.means) v = v * 40.f; // same geometry in the uint8 frame, centered at 128
                    for (auto& v : mm.variances) v *= 1600.f;
                    std::fill(center.begin(), center.end(), 128.f);
                }
                es.set_model(mm, center.data());
                VectorBlock rows{host.get(), type == 0 ? DataType::Float32 : DataType::UInt8, N, d};
                SufficientStats st(K, d, CovarianceType::Spherical);
                size_t free0 = 0, total = 0;
                CK(cudaMemGetInfo(&free0, &total));
                std::vector<double> t;
                for (int r = 0; r < 2; r++) {
                    st.clear();
                    const double t0 = now_s();
                    es.accumulate(rows, st);
                    t.push_back(now_s() - t0);
                }
                const double pass = *std::min_element(t.begin(), t.end());
                const double transfer = double(N) * d * esz / h2d_bw;
                const double kernel = (fast ? main_fast_kernel_s : main_acc_s) * double(N) / 1e6;
                const auto rep = es.last_report();
                // What the trainer does with rows that do not fit on the GPU: retain_rows() pins them in
                // place, and every pass is a DMA from them (registration timed, paid once per fit()).
                EStepCudaOptions op = o;
                op.retain = gpu::EStepCudaRetain::Pin;
                EStepCuda ep(K, d, op);
                ep.set_model(mm, center.data());
                const double tr0 = now_s();
                ep.retain_rows(rows);
                const double register_s = now_s() - tr0;
                std::vector<double> tp;
                for (int r = 0; r < 2 && ep.rows_pinned(); r++) {
                    st.clear();
                    const double t0 = now_s();
                    ep.accumulate(rows, st);
                    tp.push_back(now_s() - t0);
                }
                ep.release_rows();
                printf("streaming N=%lldM %s %-8s: %.3f s/pass (2 passes: %.3f, %.3f), transfer %.3f s, kernel %.3f s, "
                       "ratio %.2f (target <= 1.2); GPU memory held %.2f GB (%lld chunks), pinned %.2f GB; "
                       "host fill %.1f s\n",
                       (long long)(N / 1000000), type == 0 ? "float32" : "uint8", fast ? "fast" : "accurate", pass,
                       t[0], t[1], transfer, kernel, pass / std::max(transfer, kernel), rep[0].device_bytes / 1e9,
                       (long long)rep[0].chunks, rep[0].pinned_bytes / 1e9, fill_s);
                if (!tp.empty()) {
                    const double pp = *std::min_element(tp.begin(), tp.end());
                    printf("streaming N=%lldM %s %-8s, rows pinned in place by retain_rows(): %.3f s/pass (2 passes: "
                           "%.3f, %.3f), ratio %.2f (target <= 1.2); registering the %.1f GB took %.2f s once\n",
                           (long long)(N / 1000000), type == 0 ? "float32" : "uint8", fast ? "fast" : "accurate", pp,
                           tp[0], tp.back(), pp / std::max(transfer, kernel), double(N) * d * esz / 1e9, register_s);
                } else {
                    printf("streaming N=%lldM: retain_rows() could not pin the rows in place\n", (long long)(N / 1000000));
                }
                (void)free0;
            }
        }
    }

    if (em) {
        // 20 EM iterations, N = 10M, K = 1024, d = 128, spherical: GPU E-step + host M-step
        // (the GmmTrainer's M-step is the same O(K·d) arithmetic), rows device-resident and host-resident.
        const int64_t N = quick ? 2000000 : 10000000, K = 1024, d = 128;
        float* xd = nullptr;
        CK(cudaMalloc(&xd, size_t(N) * d * 4));
        gen_rows<<<unsigned((N * d + 255) / 256), 256>>>(xd, N, int(d), 512, 7u);
        CK(cudaDeviceSynchronize());
        std::vector<float> xh(size_t(N) * d);
        CK(cudaMemcpy(xh.data(), xd, xh.size() * 4, cudaMemcpyDeviceToHost));
        // sums 0: accumulate() into SufficientStats; 1 (--em-reproducible): accumulate_reproducible()
        // into a StatsAccumulator on grids from the means, then result(), once per block size.
        if (em_block_rows.empty()) em_block_rows.push_back(0);
        const int nruns = em_reproducible ? 1 + int(em_block_rows.size()) : 1;
        for (int where = 0; where < (em_reproducible ? 1 : 2); where++) {
            for (int fast = 1; fast >= 0; fast--) {
                for (int run = 0; run < nruns * em_rounds; run++) {
                    const int sums = run % nruns == 0 ? 0 : 1;
                    const int64_t block_rows = sums ? em_block_rows[size_t(run % nruns - 1)] : 0;
                    GmmModel m = model_from_rows(xh, K, d, CovarianceType::Spherical);
                    EStepCudaOptions o;
                    o.devices = {0};
                    o.fast_math = fast;
                    o.exact_log_densities = !em_no_refine;
                    o.hopper_reproducible_block_rows = block_rows;
                    EStepCuda es(K, d, o);
                    es.expect_rows(N); // as the trainer does
                    VectorBlock rows{where == 0 ? static_cast<const void*>(xd) : xh.data(), DataType::Float32, N, d};
                    SufficientStats st(K, d, CovarianceType::Spherical);
                    StatsAccumulator acc(K, d, CovarianceType::Spherical);
                    const double t0 = now_s();
                    double ll = 0;
                    // Where an iteration's time goes (summed over the 20): set_model, the accumulator's
                    // grids + clear, the E-step call (its device part from the report's CUDA events),
                    // result(), and the M-step below.
                    double t_model = 0, t_grids = 0, t_call = 0, t_gpu = 0, t_result = 0, t_mstep = 0;
                    for (int it = 0; it < 20; it++) {
                        double ts = now_s();
                        es.set_model(m, nullptr);
                        t_model += now_s() - ts;
                        if (sums == 0) {
                            st.clear();
                            ts = now_s();
                            es.accumulate(rows, st);
                            t_call += now_s() - ts;
                        } else {
                            ts = now_s();
                            bench::grids_from_means(acc, m);
                            acc.clear();
                            t_grids += now_s() - ts;
                            ts = now_s();
                            es.accumulate_reproducible(rows, acc);
                            t_call += now_s() - ts;
                            ts = now_s();
                            acc.result(st);
                            t_result += now_s() - ts;
                        }
                        t_gpu += es.last_report()[0].gpu_ms * 1e-3;
                        ts = now_s();
                        ll = st.loglik / double(N);
                        for (int64_t k = 0; k < K; k++) {
                            const double nk = std::max(st.nk[k], 1e-10);
                            m.log_weights[k] = float(std::log(std::max(st.nk[k], 1e-10) / double(N)));
                            const float* mu_old = m.means.data() + k * d;
                            double shift2 = 0;
                            std::vector<float> mu_new(d);
                            for (int64_t j = 0; j < d; j++) {
                                mu_new[j] = float(st.sum_x[k * d + j] / nk);
                                shift2 += (mu_new[j] - mu_old[j]) * double(mu_new[j] - mu_old[j]);
                            }
                            // Σ r‖x − μ_new‖² = Σ r‖x − μ_old‖² − N_k‖μ_new − μ_old‖²
                            const double var = (st.sum_sq[k] - nk * shift2) / (nk * double(d));
                            m.variances[k] = float(std::max(var, 1e-3));
                            std::copy(mu_new.begin(), mu_new.end(), m.means.begin() + k * d);
                        }
                        // renormalize weights (components with nk ~ 0 keep a tiny weight)
                        double ws = 0;
                        for (auto lw : m.log_weights) ws += std::exp(double(lw));
                        for (auto& lw : m.log_weights) lw = float(lw - std::log(ws));
                        t_mstep += now_s() - ts;
                    }
                    const std::string repro =
                            sums ? ", reproducible (blocks of " +
                                           std::to_string(es.reproducible_block_rows(CovarianceType::Spherical)) +
                                           (block_rows == 0 ? " rows, auto)" : " rows)")
                                 : "";
                    printf("EM 20 iterations N=%lldM K=1024 d=128 sph, rows on %s, %-8s%s%s: %.2f s total "
                           "(%.1f ms/iter), final mean loglik %.4f\n",
                           (long long)(N / 1000000), where == 0 ? "GPU " : "host", fast ? "fast" : "accurate",
                           repro.c_str(), em_no_refine ? ", no refinement" : "", now_s() - t0, (now_s() - t0) * 50.0,
                           ll);
                    printf("   ms per iteration: set_model %.3f, grids+clear %.3f, E-step call %.3f (device %.3f, "
                           "host after it %.3f), result %.3f, M-step %.3f\n",
                           t_model * 50, t_grids * 50, t_call * 50, t_gpu * 50, (t_call - t_gpu) * 50, t_result * 50,
                           t_mstep * 50);
                }
            }
        }
        CK(cudaFree(xd));
    }
    cublasDestroy(h);
    return 0;
}
