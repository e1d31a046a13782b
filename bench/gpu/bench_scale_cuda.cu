// Benchmark (not a test) of the CUDA E-step at scale (issue 8), in one run:
//  1. one GPU against all visible GPUs on N rows (default 100M, K = 1024, d = 128):
//     (a) rows resident on the GPUs (each GPU holds its share, as EM iterations over
//         data cached on the GPUs would), one EStepCuda per GPU run from its own
//         host thread, statistics summed on the host;
//     (b) rows in pageable host memory (float32 and uint8), streamed every pass
//         by one EStepCuda over all GPUs (its own row split), and the same rows
//         in pinned host memory (no staging copy: bound by the H2D links);
//     prints time per pass, the speed-up from 1 GPU to G GPUs and the log-likelihoods
//     (which must agree);
//  2. a pass over B rows of BIGANN-shaped uint8 (default 1B) on one GPU, generated
//     on the fly on the host by a pool of threads into a ring of pageable
//     buffers while the GPU consumes the previous buffer: time per pass, the time
//     the GPU side waited for the generator, and the GPU memory held.
// Options: --n N  --big-n B  --k K  --d d  --skip-multi  --skip-big  --skip-f32-stream
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"
#include "bench/gpu/bench_util.cuh"
#include "gpu/EStepCuda.h"

using namespace faiss_gmm;
using faiss_gmm::gpu::EStepCuda;
using faiss_gmm::gpu::EStepCudaOptions;


namespace {

using faiss_gmm::bench::mix64;
using faiss_gmm::bench::now_s;

/// BIGANN-like uint8 row `row` (global index): one of `nc` cluster centers
/// (values 0..127 per dimension, from the hash of (cluster, j)) plus noise in
/// [-16, 16). The same function fills host and device rows, so every backend
/// sees identical data.
__host__ __device__ inline void make_row_u8(int64_t row, int d, int nc, uint8_t* out) {
    const uint64_t c = mix64(uint64_t(row) * 0x9e3779b97f4a7c15ull + 1) % uint64_t(nc);
    for (int j = 0; j < d; j += 8) {
        const uint64_t center_bits = mix64(c * 4096 + uint64_t(j) + 7);
        const uint64_t noise_bits = mix64(uint64_t(row) * 1024 + uint64_t(j) + 3);
        for (int t = 0; t < 8 && j + t < d; t++) {
            const int center = int((center_bits >> (8 * t)) & 127);
            const int noise = int((noise_bits >> (8 * t)) & 31) - 16;
            out[j + t] = uint8_t(center + noise + 16); // in [0, 158]
        }
    }
}

__global__ void gen_rows_f32(float* x, int64_t row0, int64_t n, int d, int nc) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    uint8_t buf[1024];
    make_row_u8(row0 + i, d, nc, buf);
    for (int j = 0; j < d; j++) x[i * d + j] = float(buf[j]);
}

void gen_rows_host_u8(uint8_t* dst, int64_t row0, int64_t n, int d, int nc, int nthreads) {
    std::vector<std::thread> th;
    for (int t = 0; t < nthreads; t++) {
        th.emplace_back([=] {
            for (int64_t i = n * t / nthreads; i < n * (t + 1) / nthreads; i++)
                make_row_u8(row0 + i, d, nc, dst + i * d);
        });
    }
    for (auto& x : th) x.join();
}

/// Model: means at K generated rows (a fitted-looking GMM), variance per
/// dimension ≈ the noise's (uniform on 32 values: 85).
GmmModel make_model(int64_t K, int d, int nc) {
    GmmModel m(K, d, CovarianceType::Spherical);
    std::vector<uint8_t> row(d);
    for (int64_t k = 0; k < K; k++) {
        make_row_u8(k * 7919 + 13, d, nc, row.data());
        for (int j = 0; j < d; j++) m.means[k * d + j] = float(row[j]);
    }
    for (auto& v : m.variances) v = 85.0f;
    return m;
}

std::vector<float> data_center(int d, int nc) {
    std::vector<double> s(d, 0);
    std::vector<uint8_t> row(d);
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        make_row_u8(int64_t(i) * 104729, d, nc, row.data());
        for (int j = 0; j < d; j++) s[j] += row[j];
    }
    std::vector<float> c(d);
    for (int j = 0; j < d; j++) c[j] = float(s[j] / n);
    return c;
}

size_t gpu_used_bytes(int dev) {
    CK(cudaSetDevice(dev));
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    return total_b - free_b;
}

struct PassResult {
    double seconds = 0;
    double loglik = 0;
};

/// Rows resident on `ngpu` GPUs (GPU g holds rows [N·g/ngpu, N·(g+1)/ngpu)), one
/// EStepCuda per GPU, passes run concurrently; median of `reps` passes.
PassResult resident_pass(int ngpu, int64_t N, int d, const GmmModel& m, const std::vector<float>& center, bool fast,
                         int nc, int reps) {
    std::vector<float*> xs(ngpu, nullptr);
    std::vector<std::unique_ptr<EStepCuda>> es;
    std::vector<int64_t> lo(ngpu), hi(ngpu);
    for (int g = 0; g < ngpu; g++) {
        lo[g] = N * g / ngpu;
        hi[g] = N * (g + 1) / ngpu;
        CK(cudaSetDevice(g));
        CK(cudaMalloc(&xs[g], size_t(hi[g] - lo[g]) * d * 4));
        gen_rows_f32<<<unsigned((hi[g] - lo[g] + 255) / 256), 256>>>(xs[g], lo[g], hi[g] - lo[g], d, nc);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        EStepCudaOptions o;
        o.devices = {g};
        o.fast_math = fast;
        es.push_back(std::make_unique<EStepCuda>(m.K, d, o));
        es.back()->set_model(m, center.data());
    }
    std::vector<SufficientStats> st(ngpu, SufficientStats(m.K, d, m.covariance_type));
    auto one_pass = [&] {
        std::vector<std::thread> th;
        for (int g = 0; g < ngpu; g++) {
            th.emplace_back([&, g] {
                CK(cudaSetDevice(g));
                st[g].clear();
                es[g]->accumulate(VectorBlock{xs[g], DataType::Float32, hi[g] - lo[g], d}, st[g]);
            });
        }
        for (auto& t : th) t.join();
    };
    one_pass(); // warm-up
    std::vector<double> t;
    for (int r = 0; r < reps; r++) {
        const double t0 = now_s();
        one_pass();
        t.push_back(now_s() - t0);
    }
    std::sort(t.begin(), t.end());
    PassResult res;
    res.seconds = t[t.size() / 2];
    SufficientStats total(m.K, d, m.covariance_type);
    for (auto& s : st) total.add(s);
    res.loglik = total.loglik / double(N);
    es.clear();
    for (int g = 0; g < ngpu; g++) {
        CK(cudaSetDevice(g));
        CK(cudaFree(xs[g]));
    }
    return res;
}

/// Rows in pageable host memory, one EStepCuda over the first `ngpu` GPUs.
PassResult host_pass(int ngpu, const VectorBlock& rows, const GmmModel& m, const std::vector<float>& center,
                     bool fast, int reps, size_t* gpu_bytes) {
    EStepCudaOptions o;
    for (int g = 0; g < ngpu; g++) o.devices.push_back(g);
    o.fast_math = fast;
    EStepCuda es(m.K, rows.d, o);
    es.set_model(m, center.data());
    SufficientStats st(m.K, rows.d, m.covariance_type);
    es.accumulate(rows, st); // warm-up (allocates the pinned buffers)
    std::vector<double> t;
    for (int r = 0; r < reps; r++) {
        st.clear();
        const double t0 = now_s();
        es.accumulate(rows, st);
        t.push_back(now_s() - t0);
    }
    std::sort(t.begin(), t.end());
    if (gpu_bytes) {
        *gpu_bytes = 0;
        for (const auto& r : es.last_report()) *gpu_bytes = std::max(*gpu_bytes, r.device_bytes);
    }
    return {t[t.size() / 2], st.loglik / double(rows.n)};
}

} // namespace

int main(int argc, char** argv) {
    int64_t N = 100000000, big_n = 1000000000, K = 1024;
    int d = 128;
    bool multi = true, big = true, f32_stream = true;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--n" && i + 1 < argc) N = std::atoll(argv[++i]);
        else if (a == "--big-n" && i + 1 < argc) big_n = std::atoll(argv[++i]);
        else if (a == "--k" && i + 1 < argc) K = std::atoll(argv[++i]);
        else if (a == "--d" && i + 1 < argc) d = std::atoi(argv[++i]);
        else if (a == "--skip-multi") multi = false;
        else if (a == "--skip-big") big = false;
        else if (a == "--skip-f32-stream") f32_stream = false;
        else {
            fprintf(stderr, "unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    if (d > 1024) {
        fprintf(stderr, "--d at most 1024\n");
        return 2;
    }
    int ngpu = 0;
    CK(cudaGetDeviceCount(&ngpu));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int host_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    printf("bench_scale_cuda: %d x %s, %d host threads; K = %lld, d = %d\n", ngpu, prop.name, host_threads,
           (long long)K, d);
    const int nc = int(2 * K);
    const GmmModel m = make_model(K, d, nc);
    const std::vector<float> center = data_center(d, nc);

    if (multi) {
        printf("\n== 1 GPU vs %d GPUs, N = %lld, spherical\n", ngpu, (long long)N);
        printf("%-34s %-9s %12s %12s %9s %16s %16s\n", "rows", "mode", "1 GPU s", "all GPUs s", "speed-up",
               "loglik 1 GPU", "loglik all");
        for (bool fast : {true, false}) {
            const PassResult a = resident_pass(1, N, d, m, center, fast, nc, 3);
            const PassResult b = resident_pass(ngpu, N, d, m, center, fast, nc, 3);
            printf("%-34s %-9s %12.3f %12.3f %8.2fx %16.6f %16.6f\n", "resident on the GPUs (float32)",
                   fast ? "fast" : "accurate", a.seconds, b.seconds, a.seconds / b.seconds, a.loglik, b.loglik);
            fflush(stdout);
        }
        {
            // new T[] leaves the memory uninitialized: the generator's threads touch it first.
            std::unique_ptr<uint8_t[]> hu8(new uint8_t[size_t(N) * d]);
            double t0 = now_s();
            gen_rows_host_u8(hu8.get(), 0, N, d, nc, host_threads);
            printf("(host uint8 rows generated in %.1f s)\n", now_s() - t0);
            const VectorBlock rows{hu8.get(), DataType::UInt8, N, d};
            for (bool fast : {true, false}) {
                size_t gb1 = 0, gbn = 0;
                const PassResult a = host_pass(1, rows, m, center, fast, 3, &gb1);
                const PassResult b = host_pass(ngpu, rows, m, center, fast, 3, &gbn);
                printf("%-34s %-9s %12.3f %12.3f %8.2fx %16.6f %16.6f   (GPU memory held: %.2f / %.2f GB per GPU)\n",
                       "pageable host memory (uint8)", fast ? "fast" : "accurate", a.seconds, b.seconds,
                       a.seconds / b.seconds, a.loglik, b.loglik, gb1 / 1e9, gbn / 1e9);
                fflush(stdout);
            }
            {
                // The same rows in pinned host memory (cudaHostAllocPortable: every GPU
                // DMAs from it), as a trainer that pins its training rows would hold them:
                // no staging copy, so a pass is bound by the H2D links and the kernels.
                uint8_t* pinned = nullptr;
                t0 = now_s();
                CK(cudaHostAlloc(&pinned, size_t(N) * d, cudaHostAllocPortable));
                std::memcpy(pinned, hu8.get(), size_t(N) * d);
                printf("(pinned uint8 copy made in %.1f s)\n", now_s() - t0);
                const VectorBlock prow{pinned, DataType::UInt8, N, d};
                const PassResult a = host_pass(1, prow, m, center, true, 3, nullptr);
                const PassResult b = host_pass(ngpu, prow, m, center, true, 3, nullptr);
                printf("%-34s %-9s %12.3f %12.3f %8.2fx %16.6f %16.6f   (H2D at 1 GPU: %.1f GB/s)\n",
                       "pinned host memory (uint8)", "fast", a.seconds, b.seconds, a.seconds / b.seconds, a.loglik,
                       b.loglik, double(N) * d / a.seconds / 1e9);
                fflush(stdout);
                CK(cudaFreeHost(pinned));
            }
            if (f32_stream) {
                const size_t count = size_t(N) * d;
                std::unique_ptr<float[]> hf(new float[count]);
                t0 = now_s();
                std::vector<std::thread> th;
                for (int t = 0; t < host_threads; t++) {
                    th.emplace_back([&, t] {
                        for (size_t i = count * t / host_threads; i < count * (t + 1) / host_threads; i++)
                            hf[i] = float(hu8[i]);
                    });
                }
                for (auto& x : th) x.join();
                printf("(host float32 rows converted in %.1f s)\n", now_s() - t0);
                const VectorBlock frows{hf.get(), DataType::Float32, N, d};
                const PassResult a = host_pass(1, frows, m, center, true, 3, nullptr);
                const PassResult b = host_pass(ngpu, frows, m, center, true, 3, nullptr);
                printf("%-34s %-9s %12.3f %12.3f %8.2fx %16.6f %16.6f\n", "pageable host memory (float32)", "fast",
                       a.seconds, b.seconds, a.seconds / b.seconds, a.loglik, b.loglik);
                fflush(stdout);
                hf.reset();
                float* pinned = nullptr;
                t0 = now_s();
                CK(cudaHostAlloc(&pinned, count * 4, cudaHostAllocPortable));
                std::vector<std::thread> fill;
                for (int t = 0; t < host_threads; t++) {
                    fill.emplace_back([&, t] {
                        for (size_t i = count * t / host_threads; i < count * (t + 1) / host_threads; i++)
                            pinned[i] = float(hu8[i]);
                    });
                }
                for (auto& x : fill) x.join();
                printf("(pinned float32 copy made in %.1f s)\n", now_s() - t0);
                const VectorBlock prow{pinned, DataType::Float32, N, d};
                const PassResult pa = host_pass(1, prow, m, center, true, 3, nullptr);
                const PassResult pb = host_pass(ngpu, prow, m, center, true, 3, nullptr);
                printf("%-34s %-9s %12.3f %12.3f %8.2fx %16.6f %16.6f   (H2D at 1 GPU: %.1f GB/s)\n",
                       "pinned host memory (float32)", "fast", pa.seconds, pb.seconds, pa.seconds / pb.seconds,
                       pa.loglik, pb.loglik, double(count) * 4 / pa.seconds / 1e9);
                fflush(stdout);
                CK(cudaFreeHost(pinned));
            }
        }
    }

    if (big) {
        // Ring of pageable buffers: generator threads fill buffer i+1 while the GPU
        // E-step consumes buffer i (accumulate() copies it through its own pinned
        // double buffers, overlapping H2D with its kernels).
        const int64_t chunk = int64_t(1) << 24; // 16M rows = 2 GB of uint8 at d = 128
        const int64_t nchunks = (big_n + chunk - 1) / chunk;
        printf("\n== one E-step pass over %lld uint8 rows generated on the fly (%lld chunks of %lld rows), GPU 0\n",
               (long long)big_n, (long long)nchunks, (long long)chunk);
        for (bool fast : {true, false}) {
            EStepCudaOptions o;
            o.devices = {0};
            o.fast_math = fast;
            EStepCuda es(K, d, o);
            es.set_model(m, center.data());
            SufficientStats st(K, d, m.covariance_type);
            std::unique_ptr<uint8_t[]> ring_mem(new uint8_t[2 * size_t(chunk) * d]);
            uint8_t* ring[2] = {ring_mem.get(), ring_mem.get() + size_t(chunk) * d};
            // Half the cores generate; the E-step's own threads copy into its pinned buffers.
            const int gen_threads = std::max(1, host_threads / 2);
            auto rows_of = [&](int64_t c) { return std::min(chunk, big_n - c * chunk); };
            double wait_s = 0, gpu_s = 0;
            const double t0 = now_s();
            gen_rows_host_u8(ring[0], 0, rows_of(0), d, nc, gen_threads);
            const double first_gen = now_s() - t0;
            for (int64_t c = 0; c < nchunks; c++) {
                std::thread producer;
                if (c + 1 < nchunks) {
                    producer = std::thread([&, c] {
                        gen_rows_host_u8(ring[(c + 1) % 2], (c + 1) * chunk, rows_of(c + 1), d, nc,
                                         gen_threads);
                    });
                }
                const double g0 = now_s();
                es.accumulate(VectorBlock{ring[c % 2], DataType::UInt8, rows_of(c), d}, st);
                gpu_s += now_s() - g0;
                const double w0 = now_s();
                if (producer.joinable()) producer.join();
                wait_s += now_s() - w0;
            }
            const double total = now_s() - t0;
            size_t held = 0;
            for (const auto& r : es.last_report()) held = std::max(held, r.device_bytes);
            printf("%-9s pass %.1f s (%.2f min) for %lld rows: E-step calls %.1f s, waiting for the generator %.1f s "
                   "(first chunk %.1f s); mean loglik %.4f; GPU memory held by the backend %.2f GB, in use on GPU 0 "
                   "%.2f GB\n",
                   fast ? "fast" : "accurate", total, total / 60, (long long)big_n, gpu_s, wait_s, first_gen,
                   st.loglik / double(big_n), held / 1e9, gpu_used_bytes(0) / 1e9);
            fflush(stdout);
        }
    }
    return 0;
}
