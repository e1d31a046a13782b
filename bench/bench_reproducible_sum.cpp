// Cost of reproducible sums (issue 13): one E-step over the same rows with the
// plain CPU path (EStepCpu::accumulate, double sums in thread order) and the
// reproducible one (accumulate_reproducible: a partial per 1024-row block,
// added exactly), in the same process, alternating, best of R repetitions.
// Prints the ratio; the target is <= 1.05.
//   bench_reproducible_sum [N K d reps]     (defaults 131072 1024 128 5)
// With --host-sums: the host side of a GPU's reproducible EM iteration at K = 1024,
// d = 128 spherical (what the trainer and StatsAccumulator do around the device's
// E-step): the grids (em::row_bounds + set_row_bounds), clear(), add_limbs() of a
// download's int32 limbs (3 per value), result(), an MPI fit's flat() + from_flat(),
// and result() of sums added on the CPU (4 limbs per value), each timed alone, the
// steps interleaved, median of R (default 61).
//   bench_reproducible_sum --host-sums [reps]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/ParallelRanges.h"
#include "faiss_gmm/SufficientStats.h"
#include "faiss_gmm/em_steps.h"

using namespace faiss_gmm;

namespace {

template <class F>
double seconds_of(const F& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

void bench_host_sums(int reps) {
    const int64_t K = 1024, d = 128;
    StatsAccumulator acc(K, d, CovarianceType::Spherical);
    SufficientStats out;
    // A GPU's balanced limbs (gpu/detail/ReproducibleLimbs.h): the first three of each value,
    // int32 of either sign, so the carries are of either sign too.
    std::mt19937_64 rng(5);
    std::vector<int32_t> limbs(3 * acc.nvalues());
    for (int32_t& l : limbs) l = int32_t(uint32_t(rng()));
    const int64_t loglik[ExactSums::kLimbs] = {};
    struct Step {
        const char* name;
        std::function<void()> run;
        std::vector<double> seconds;
    };
    std::vector<Step> steps;
    // The trainer's grids: row bounds from the data's range and the model's means, then set.
    GmmModel model(K, d, CovarianceType::Spherical);
    std::normal_distribution<float> mean(0.0f, 30.0f);
    for (float& m : model.means) m = mean(rng);
    em::DataMoments moments;
    moments.min.assign(size_t(d), -100.0);
    moments.max.assign(size_t(d), 100.0);
    const std::vector<float> center(size_t(d), 0.0f);
    steps.push_back({"row_bounds + set_row_bounds", [&] {
                         const em::RowBounds b = em::row_bounds(moments, center, model);
                         acc.set_row_bounds(b.x_bound, b.sq_bound);
                     }, {}});
    steps.push_back({"clear", [&] { acc.clear(); }, {}});
    steps.push_back({"clear + add_limbs", [&] {
                         acc.clear();
                         acc.add_limbs(1, loglik, limbs.data(), 3);
                     }, {}});
    steps.push_back({"add_limbs (onto sums)", [&] { acc.add_limbs(1, loglik, limbs.data(), 3); }, {}});
    steps.push_back({"result", [&] { acc.result(out); }, {}});
    // An MPI fit's allreduce of the limbs goes through flat() and from_flat() (both normalize).
    steps.push_back({"flat + from_flat", [&] { acc.from_flat(acc.flat()); }, {}});
    // The CPU E-step's accumulator: partials added as doubles fill all four limbs of each value.
    StatsAccumulator cpu(K, d, CovarianceType::Spherical);
    cpu.set_row_bounds(40.0, 3e5);
    SufficientStats partial(K, d, CovarianceType::Spherical);
    std::normal_distribution<double> g(0.0, 10.0);
    for (auto* v : {&partial.nk, &partial.sum_x, &partial.sum_sq}) {
        for (double& x : *v) x = std::fabs(g(rng));
    }
    for (int b = 0; b < 3; b++) cpu.add(partial);
    steps.push_back({"result (CPU adds: 4 limbs)", [&] { cpu.result(out); }, {}});
    for (int r = 0; r < reps; r++) {
        for (Step& s : steps) s.seconds.push_back(seconds_of(s.run));
    }
    std::printf("host sums, K = %lld, d = %lld spherical (%zu values), %d threads (the pool's), median of %d:\n",
                (long long)K, (long long)d, acc.nvalues(), detail::pool_threads(), reps);
    for (const Step& s : steps) std::printf("  %-28s %8.3f ms\n", s.name, median(s.seconds) * 1e3);
    if (out.nk.empty() || out.nk[0] == 42.0) std::printf("(%g)\n", out.nk.empty() ? 0.0 : out.nk[0]);
}

} // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "--host-sums") {
        bench_host_sums(argc > 2 ? std::atoi(argv[2]) : 61);
        return 0;
    }
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
    double best_plain = 1e30, best_exact = 1e30;
    for (int r = 0; r < reps; r++) {
        best_plain = std::min(best_plain, seconds_of([&] {
                                  plain.clear();
                                  estep.accumulate(rows, plain);
                              }));
        best_exact = std::min(best_exact, seconds_of([&] {
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
