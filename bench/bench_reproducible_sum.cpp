// Cost of reproducible sums (issue 13): one E-step over the same rows with the
// plain CPU path (EStepCpu::accumulate, double sums in thread order) and the
// reproducible one (accumulate_reproducible: a partial per 1024-row block,
// added exactly), in the same process, alternating, best of R repetitions.
// Prints the ratio; the target is <= 1.05.
//   bench_reproducible_sum [N K d reps]     (defaults 131072 1024 128 5)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/SufficientStats.h"

using namespace faiss_gmm;

int main(int argc, char** argv) {
    const int64_t N = argc > 1 ? std::atoll(argv[1]) : 131072;
    const int64_t K = argc > 2 ? std::atoll(argv[2]) : 1024;
    const int64_t d = argc > 3 ? std::atoll(argv[3]) : 128;
    const int reps = argc > 4 ? std::atoi(argv[4]) : 5;
    std::mt19937_64 rng(1);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(size_t(N * d));
    GmmModel model(K, d, CovarianceType::Spherical);
    for (float& v : model.means) v = g(rng);
    for (float& v : model.variances) v = 2.0f; // overlapping components: the dense path, the costly one
    for (int64_t i = 0; i < N; i++) {
        const int64_t k = int64_t(rng() % uint64_t(K));
        for (int64_t j = 0; j < d; j++) x[size_t(i * d + j)] = model.means[size_t(k * d + j)] + 1.4f * g(rng);
    }
    const VectorBlock rows{x.data(), DataType::Float32, N, d};
    EStepCpu estep(256, 0);
    estep.set_model(model, nullptr);
    SufficientStats plain(K, d, model.covariance_type);
    StatsAccumulator exact(K, d, model.covariance_type);
    exact.set_row_bounds(10.0, 1e4);
    auto seconds = [](auto&& f) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    double best_plain = 1e30, best_exact = 1e30;
    for (int r = 0; r < reps; r++) {
        best_plain = std::min(best_plain, seconds([&] {
                                  plain.clear();
                                  estep.accumulate(rows, plain);
                              }));
        best_exact = std::min(best_exact, seconds([&] {
                                  exact.clear();
                                  estep.accumulate_reproducible(rows, exact);
                                  SufficientStats s;
                                  exact.result(s);
                              }));
    }
    std::printf("E-step %lld x %lld x %lld, %d threads: plain %.3f s, reproducible %.3f s, ratio %.3f\n",
                (long long)N, (long long)K, (long long)d, omp_get_max_threads(), best_plain, best_exact,
                best_exact / best_plain);
    return 0;
}
