// Benchmark (not a test): the whole GmmTrainer, CPU backend against the CUDA
// backend, on the same data and from the same starting model (issue 4: "20 EM
// iterations on N = 10M, K = 1024, d = 128: total wall time, vs the CPU trainer").
//
//   bench_trainer [N] [K] [d] [iterations] [backends]
//   backends: comma-separated from cpu, cuda-fast, cuda-accurate (default: all
//   three where a GPU is visible, cpu alone otherwise), each optionally with
//   ":ROWS", the trainer's chunk_size (rows handed to the E-step per call;
//   default GmmParams::chunk_size).
//
// The starting model comes from FAISS k-means (init time printed once); every
// trainer then runs exactly `iterations` EM iterations (tol = 0) on all N rows
// (no subsampling), so the wall times compare EM alone. The models are compared
// to the CPU one (max relative difference of means, variances and weights) and
// the final mean log-likelihoods are printed side by side.
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "faiss_gmm/EStep.h"
#include "faiss_gmm/GmmTrainer.h"

using namespace faiss_gmm;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// n rows around `nc` random centers (spread 1.7 per dimension, noise 0.5),
/// generated in parallel, deterministic for a seed.
std::vector<float> make_data(int64_t n, int64_t d, int64_t nc, uint64_t seed) {
    std::vector<float> centers(size_t(nc) * d);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.7f, 1.7f);
    for (float& v : centers) v = u(rng);
    std::vector<float> x(size_t(n) * d);
#pragma omp parallel
    {
        std::mt19937_64 r(seed + 1 + omp_get_thread_num());
        std::normal_distribution<float> g(0.0f, 0.5f);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const float* c = centers.data() + (r() % nc) * d;
            for (int64_t j = 0; j < d; j++) x[i * d + j] = c[j] + g(r);
        }
    }
    return x;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        num = std::max(num, double(std::fabs(a[i] - b[i])));
        den = std::max(den, double(std::fabs(b[i])));
    }
    return den > 0 ? num / den : num;
}

struct Backend {
    std::string name;
    Device device;
    bool fast_math;
    int64_t chunk_rows; // 0: GmmParams' default
};

} // namespace

int main(int argc, char** argv) {
    const int64_t N = argc > 1 ? std::atoll(argv[1]) : 10000000;
    const int64_t K = argc > 2 ? std::atoll(argv[2]) : 1024;
    const int64_t d = argc > 3 ? std::atoll(argv[3]) : 128;
    const int iterations = argc > 4 ? std::atoi(argv[4]) : 20;
    std::string wanted = argc > 5 ? argv[5] : (cuda_available() ? "cpu,cuda-fast,cuda-accurate" : "cpu");

    std::vector<Backend> backends;
    std::stringstream ss(wanted);
    for (std::string tok; std::getline(ss, tok, ',');) {
        const size_t colon = tok.find(':');
        const std::string kind = tok.substr(0, colon);
        const int64_t chunk = colon == std::string::npos ? 0 : std::atoll(tok.c_str() + colon + 1);
        if (kind == "cpu") backends.push_back({tok, Device::Cpu, false, chunk});
        else if (kind == "cuda-fast") backends.push_back({tok, Device::Cuda, true, chunk});
        else if (kind == "cuda-accurate") backends.push_back({tok, Device::Cuda, false, chunk});
        else {
            std::fprintf(stderr, "unknown backend '%s' (cpu, cuda-fast, cuda-accurate)\n", tok.c_str());
            return 2;
        }
    }
    std::printf("bench_trainer: N = %lld, K = %lld, d = %lld, %d EM iterations, %d CPU threads, GPU %s\n",
                (long long)N, (long long)K, (long long)d, iterations, omp_get_max_threads(),
                cuda_available() ? "present" : "absent");

    double t0 = now();
    const std::vector<float> x = make_data(N, d, 2 * K, 42);
    std::printf("data generated: %.1f GB float32 in %.1f s\n", double(x.size()) * 4 / 1e9, now() - t0);

    // Starting model: FAISS k-means (10 iterations on K*256 rows, as the trainer's init does).
    t0 = now();
    faiss::ClusteringParameters cp;
    cp.niter = 10;
    cp.max_points_per_centroid = 256;
    cp.seed = 1234;
    faiss::Clustering km(int(d), int(K), cp);
    faiss::IndexFlatL2 kindex(d);
    km.train(N, x.data(), kindex);
    GmmModel init(K, d, CovarianceType::Spherical);
    init.means = km.centroids;
    {
        double var = 0;
        for (int64_t j = 0; j < std::min<int64_t>(N, 100000) * d; j++) var += double(x[j]) * x[j];
        for (auto& v : init.variances) v = float(var / double(std::min<int64_t>(N, 100000) * d) / 4);
    }
    std::printf("k-means init (shared by every backend): %.1f s\n\n", now() - t0);

    std::printf("%-22s %10s %12s %12s %14s %12s %12s %12s\n", "backend", "EM wall s", "s/iteration",
                "E-step s/it", "final loglik", "means diff", "vars diff", "weights diff");
    GmmModel reference;
    bool have_reference = false;
    double cpu_wall = 0;
    for (const Backend& b : backends) {
        GmmParams p;
        p.init = InitMethod::Given;
        p.niter = iterations;
        p.tol = 0;
        p.max_points_per_centroid = 0;
        p.device = b.device;
        p.fast_math = b.fast_math;
        if (b.chunk_rows > 0) p.chunk_size = b.chunk_rows;
        GmmTrainer trainer(p);
        t0 = now();
        GmmModel m;
        try {
            m = trainer.fit(N, d, x.data(), K, &init);
        } catch (const std::exception& e) {
            std::printf("%-22s failed: %s\n", b.name.c_str(), e.what());
            continue;
        }
        const double wall = now() - t0;
        double estep = 0;
        for (const auto& s : trainer.iteration_stats) estep += s.estep_time_s;
        const double final_ll = trainer.iteration_stats.back().loglik;
        if (!have_reference) {
            reference = m;
            have_reference = true;
        }
        if (b.device == Device::Cpu) cpu_wall = wall;
        std::printf("%-22s %10.2f %12.3f %12.3f %14.6f %12.2e %12.2e %12.2e", b.name.c_str(), wall,
                    wall / iterations, estep / iterations, final_ll, max_rel_diff(m.means, reference.means),
                    max_rel_diff(m.variances, reference.variances),
                    max_rel_diff(m.log_weights, reference.log_weights));
        if (cpu_wall > 0 && b.device != Device::Cpu) std::printf("   %.1fx faster than cpu", cpu_wall / wall);
        std::printf("\n");
    }
    std::printf("\n(diffs: max |a - b| / max |b| against the first backend's model; log-likelihood is the mean per row of "
                "the model entering the last iteration)\n");
    return 0;
}
