// Benchmark of the CUDA E-step for full covariances (issue 17; not a test). On one GPU, rows
// resident on it: the median wall time of accumulate() (and its device time) of the fused path
// (tensor-core log-densities: accurate = three hi/lo fp16 products, fast = fp16) and of the blocked
// path (cuBLAS projections: accurate fp32, fast TF32), and the relative error of every statistic
// of each against the float64 reference (reference_estep) on the last --check-rows rows. The data and
// model are those of bench/gpu/bench_flash_gmm_full.py, which times the research kernel
// (flash_gmm_full_h100.py) on the same recipe: rows around max(64, K/4) centers drawn uniformly
// in [-1.7, 1.7]^d plus uniform noise of variance 1/4 per dimension, means = the first K rows,
// Σ_k = 0.35·I, uniform weights. Prints a table; bench/results/gpu_full_covariance.md records it.
// --reproducible also times accumulate_reproducible() (issue 13: per-group integer limbs,
// gpu/detail/FullEStep.h); --block-bytes sets EStepCudaOptions::block_bytes, and with it the group.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "bench/gpu/bench_util.cuh"
#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"
#include "gpu/EStepCuda.h"
#include "gpu/detail/FullEStep.h"
#include "tests/relative_error.h"

using namespace faiss_gmm;
using faiss_gmm::bench::median;
using faiss_gmm::bench::mix64;
using faiss_gmm::bench::now_s;
using faiss_gmm::gpu::EStepCuda;
using faiss_gmm::gpu::EStepCudaOptions;
using faiss_gmm::testing::relative_l2_error;

namespace {

float unif(uint64_t i, uint64_t stream) { return float(mix64(i * 0x9e3779b97f4a7c15ull + stream) >> 40) * (1.f / 16777216.f); }

/// The rows of the recipe above, generated on the host by every core.
std::vector<float> make_rows(int64_t N, int64_t d, int64_t nc) {
    std::vector<float> x(size_t(N * d));
    const int nt = int(std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::thread> th;
    for (int t = 0; t < nt; t++) {
        th.emplace_back([&, t] {
            for (int64_t i = N * t / nt; i < N * (t + 1) / nt; i++) {
                const uint64_t c = mix64(uint64_t(i) + 77) % uint64_t(nc);
                for (int64_t j = 0; j < d; j++) {
                    const uint64_t e = uint64_t(i * d + j);
                    const float center = 1.7f * (2.f * unif(c * 4096 + uint64_t(j), 11) - 1.f);
                    x[size_t(i * d + j)] = center + unif(e, 1) + unif(e, 2) + unif(e, 3) - 1.5f;
                }
            }
        });
    }
    for (auto& t : th) t.join();
    return x;
}

struct Timing {
    double wall_ms = 0, gpu_ms = 0, loglik = 0;
    size_t device_bytes = 0;
    const char* algorithm = ""; ///< EStepCudaReport::algorithm: which kernel ran
    double download_ms = 0, add_ms = 0; ///< the host's part after the device's (EStepCudaReport), medians
};

/// accumulate() (ordinary sums); accumulate() then one exact add of the call's statistics (EStep's
/// default accumulate_reproducible: the GPU's full-covariance path before per-group limbs);
/// EStepCuda::accumulate_reproducible() (per-group limbs, issue 13).
enum class SumPath { Plain, PlainThenExact, Reproducible };

struct Mode {
    const char* name;
    bool fast;
    gpu::EStepCudaAlgorithm algorithm;
    bool sm90 = false; ///< EStepCudaOptions::full_sm90_kernel: on Hopper, the wgmma kernel instead of mma.sync
};
const Mode kModes[] = {{"fused-accurate", false, gpu::EStepCudaAlgorithm::Auto},
                       {"fused-fast", true, gpu::EStepCudaAlgorithm::Auto},
                       {"sm90-accurate", false, gpu::EStepCudaAlgorithm::Auto, true},
                       {"sm90-fast", true, gpu::EStepCudaAlgorithm::Auto, true},
                       {"blocked-accurate", false, gpu::EStepCudaAlgorithm::Blocked},
                       {"blocked-fast", true, gpu::EStepCudaAlgorithm::Blocked}};

EStepCudaOptions options_of(const Mode& mode, int64_t block_bytes = 0, int group = -1) {
    EStepCudaOptions o;
    if (group >= 0) o.hopper_full_group = group;
    o.devices = {0};
    o.fast_math = mode.fast;
    o.algorithm = mode.algorithm;
    o.full_sm90_kernel = mode.sm90;
    if (block_bytes > 0) o.block_bytes = block_bytes;
    return o;
}

Timing time_estep(const float* x_dev, int64_t N, const GmmModel& m, const Mode& mode, int reps,
                  int64_t block_bytes = 0, SumPath path = SumPath::Plain, int group = -1) {
    const EStepCudaOptions o = options_of(mode, block_bytes, group);
    EStepCuda es(m.K, m.d, o);
    es.set_model(m, nullptr);
    const VectorBlock rows{x_dev, DataType::Float32, N, m.d};
    SufficientStats st(m.K, m.d, CovarianceType::Full);
    StatsAccumulator acc(m.K, m.d, CovarianceType::Full);
    bench::grids_from_means(acc, m);
    // (the caller's statistics are cleared outside the timing: 67 MB of second moments at
    // K = 1024, d = 128, ~3 ms that are not accumulate()'s)
    auto clear = [&] {
        if (path == SumPath::Plain) st.clear();
        else acc.clear();
    };
    auto run = [&] {
        if (path == SumPath::Plain) {
            es.accumulate(rows, st);
        } else if (path == SumPath::PlainThenExact) {
            es.EStep::accumulate_reproducible(rows, acc); // the base class's: one partial per call
        } else {
            es.accumulate_reproducible(rows, acc);
        }
    };
    clear();
    run(); // warm-up: buffers, module load
    std::vector<double> t, g, dl, add;
    for (int r = 0; r < reps; r++) {
        clear();
        const double t0 = now_s();
        run();
        t.push_back((now_s() - t0) * 1e3);
        g.push_back(es.last_report()[0].gpu_ms);
        dl.push_back(es.last_report()[0].download_ms);
        add.push_back(es.last_report()[0].add_ms);
    }
    if (path != SumPath::Plain) acc.result(st);
    return {median(t), median(g), st.loglik / double(N), es.last_report()[0].device_bytes,
            es.last_report()[0].algorithm, median(dl), median(add)};
}

/// Relative errors (loglik, N_k, Σ r x, second moments) of one mode on n rows at x.
void errors(const float* x, int64_t n, const GmmModel& m, const Mode& mode, const SufficientStats& ref) {
    EStepCuda es(m.K, m.d, options_of(mode));
    es.set_model(m, nullptr);
    SufficientStats st(m.K, m.d, CovarianceType::Full);
    es.accumulate(VectorBlock{x, DataType::Float32, n, m.d}, st);
    printf("    %-16s vs float64 on %lld rows: loglik %.2e  nk %.2e  sum_x %.2e  sum_sq %.2e  (budget %.0e)\n",
           mode.name, (long long)n, std::fabs(st.loglik - ref.loglik) / std::fabs(ref.loglik),
           relative_l2_error(st.nk, ref.nk), relative_l2_error(st.sum_x, ref.sum_x),
           relative_l2_error(st.sum_sq, ref.sum_sq), mode.fast ? 5e-3 : 1e-4);
}

} // namespace

int main(int argc, char** argv) {
    std::string shapes = "1000000x1024x128";
    int reps = 5;
    int64_t check_rows = 256;
    std::string modes; // --modes: names of kModes, comma-separated; empty = all
    bool reproducible = false;
    std::vector<int64_t> block_bytes = {0}; // 0: EStepCudaOptions' default
    std::vector<int> groups;                // --groups: EStepCudaOptions::hopper_full_group values to time
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--reproducible") { // also time accumulate_reproducible (issue 13)
            reproducible = true;
            continue;
        }
        if (a == "--block-bytes" && i + 1 < argc) { // MiB, comma-separated (sets the reproducible group too)
            block_bytes.clear();
            for (const std::string& v : bench::split_list(argv[++i])) {
                block_bytes.push_back(int64_t(std::atof(v.c_str()) * 1048576.0));
            }
            continue;
        }
        if (a == "--groups" && i + 1 < argc) { // the wgmma kernel's column groups, comma-separated (fused modes)
            for (const std::string& v : bench::split_list(argv[++i])) groups.push_back(std::atoi(v.c_str()));
            continue;
        }
        if (a == "--shapes" && i + 1 < argc) shapes = argv[++i]; // NxKxd, comma-separated
        else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
        else if (a == "--check-rows" && i + 1 < argc) check_rows = std::atoll(argv[++i]);
        else if (a == "--modes" && i + 1 < argc) modes = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--shapes NxKxd,...] [--reps R] [--check-rows n] [--modes m1,m2] [--reproducible] "
                    "[--block-bytes MiB,...] [--groups W,...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!bench::announce_device(gpu::cuda_device_count())) return 0;
    printf("full covariances, rows resident on the GPU; median of %d accumulate() calls (wall; device time in "
           "brackets)\n", reps);
    for (const std::string& shape : bench::split_list(shapes)) {
        long long N = 0, K = 0, d = 0;
        if (sscanf(shape.c_str(), "%lldx%lldx%lld", &N, &K, &d) != 3) {
            fprintf(stderr, "bad shape '%s' (NxKxd)\n", shape.c_str());
            return 2;
        }
        const std::vector<float> x = make_rows(N, d, std::max<int64_t>(64, K / 4));
        GmmModel m(K, d, CovarianceType::Full);
        std::vector<double> cov(size_t(d * d), 0.0);
        for (int64_t j = 0; j < d; j++) cov[size_t(j * d + j)] = 0.35;
        for (int64_t k = 0; k < K; k++) {
            std::copy(x.begin() + k * d, x.begin() + (k + 1) * d, m.means.begin() + k * d);
            m.set_covariance(k, cov.data());
        }
        float* x_dev = nullptr;
        CK(cudaMalloc(&x_dev, x.size() * 4));
        CK(cudaMemcpy(x_dev, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
        printf("N=%lld K=%lld d=%lld:\n", N, K, d);
        for (const Mode& mode : kModes) {
            if (!modes.empty() && ("," + modes + ",").find("," + std::string(mode.name) + ",") == std::string::npos)
                continue;
            for (int64_t bb : block_bytes) {
                const int64_t bytes = bb > 0 ? bb : EStepCudaOptions().block_bytes;
                const Timing t = time_estep(x_dev, N, m, mode, reps, bb);
                printf("    %-16s block_bytes %4lld MiB: %8.1f ms (device %8.1f ms; download %.1f, add %.1f)  mean "
                       "loglik/row %.5f  GPU memory held %.2f GiB  [%s]\n",
                       mode.name, (long long)(bytes >> 20), t.wall_ms, t.gpu_ms, t.download_ms, t.add_ms, t.loglik,
                       t.device_bytes / 1073741824.0, t.algorithm);
                const bool fused = mode.sm90; // (the column groups are the wgmma kernel's)
                for (int group : groups) {
                    if (!fused) break;
                    const Timing w = time_estep(x_dev, N, m, mode, reps, bb, SumPath::Plain, group);
                    printf("    %-16s   column groups %3d: %8.1f ms (device %8.1f ms)  mean loglik/row %.5f  [%s]\n",
                           mode.name, group, w.wall_ms, w.gpu_ms, w.loglik, w.algorithm);
                }
                if (!reproducible) continue;
                const Timing e = time_estep(x_dev, N, m, mode, reps, bb, SumPath::PlainThenExact);
                const Timing r = time_estep(x_dev, N, m, mode, reps, bb, SumPath::Reproducible);
                printf("    %-16s   + one exact add %8.1f ms | reproducible, groups of %lld rows: %8.1f ms (device %8.1f "
                       "ms): %+.1f %% wall, %+.1f %% device vs accumulate, %+.1f %% vs + exact add; mean loglik/row "
                       "%.5f\n",
                       mode.name, e.wall_ms, (long long)gpu::detail::full_reproducible_group_rows(K, bytes), r.wall_ms,
                       r.gpu_ms, 100.0 * (r.wall_ms / t.wall_ms - 1), 100.0 * (r.gpu_ms / t.gpu_ms - 1),
                       100.0 * (r.wall_ms / e.wall_ms - 1), r.loglik);
            }
        }
        CK(cudaFree(x_dev));
        const int64_t n = std::min<int64_t>(check_rows, N);
        if (n > 0) {
            SufficientStats ref(K, d, CovarianceType::Full);
            const float* last = x.data() + (N - n) * d; // the last rows (the first K are the means)
            reference_estep(m, nullptr, n, last, ref);
            for (const Mode& mode : kModes) errors(last, n, m, mode, ref);
        }
    }
    return 0;
}
