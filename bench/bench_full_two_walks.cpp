// Benchmark (not a test): full covariances on the CPU, the trainer's two walks (the
// second moments summed a group of components at a time from the listed
// responsibilities, GmmTrainer::max_listed_responsibilities) against one walk (every
// statistic held at once), in the same process, on the same data and start (issue 17:
// the memory of one EM iteration; this measures what the two walks cost in time).
//
//   bench_full_two_walks [N] [K] [d] [iterations] [rounds]
//
// N rows around K random centers (as bench_python's blobs: well separated, a few
// non-zero responsibilities per row); the start is FAISS k-means (init_niter 5) with
// the same seed for both. Every round runs both trainers once, alternating which goes
// first; the fastest EM iteration after the first (the first pays for page faults)
// of each is printed, with their ratio, and the two models are compared bit for bit.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <random>
#include <vector>

#include "faiss_gmm/EStepCpu.h"
#include "faiss_gmm/GmmTrainer.h"

using namespace faiss_gmm;

namespace {

std::vector<float> make_blobs(int64_t n, int64_t d, int64_t nc, uint64_t seed) {
    std::vector<float> centers(size_t(nc) * d);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> spread(0.0f, 2.0f);
    for (float& v : centers) v = spread(rng);
    std::vector<float> x(size_t(n) * d);
    std::normal_distribution<float> noise(0.0f, 1.0f);
    for (int64_t i = 0; i < n; i++) {
        const float* c = centers.data() + (rng() % nc) * d;
        for (int64_t j = 0; j < d; j++) x[i * d + j] = c[j] + noise(rng);
    }
    return x;
}

struct Run {
    GmmModel model;
    double best_iteration_s = 1e300;
};

Run train(const std::vector<float>& x, int64_t n, int64_t d, int64_t K, int iterations, int64_t max_listed) {
    GmmParams p;
    p.covariance_type = CovarianceType::Full;
    p.niter = iterations;
    p.tol = 0;
    p.init_niter = 5;
    p.max_points_per_centroid = 0; // every row
    p.reg_covar = 1e-6;
    GmmTrainer trainer(p);
    trainer.max_listed_responsibilities = max_listed;
    Run r;
    r.model = trainer.fit(n, d, x.data(), K);
    for (size_t i = 1; i < trainer.iteration_stats.size(); i++) {
        r.best_iteration_s = std::min(r.best_iteration_s,
                                      trainer.iteration_stats[i].time_s - trainer.iteration_stats[i - 1].time_s);
    }
    return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

} // namespace

int main(int argc, char** argv) {
    const int64_t N = argc > 1 ? std::atoll(argv[1]) : 100000;
    const int64_t K = argc > 2 ? std::atoll(argv[2]) : 256;
    const int64_t d = argc > 3 ? std::atoll(argv[3]) : 128;
    const int iterations = argc > 4 ? std::atoi(argv[4]) : 3;
    const int rounds = argc > 5 ? std::atoi(argv[5]) : 2;
    if (N < K || K < 1 || d < 1 || iterations < 2 || rounds < 1) {
        std::fprintf(stderr, "usage: bench_full_two_walks [N >= K] [K] [d] [iterations >= 2] [rounds]\n");
        return 2;
    }
    std::printf("full covariances, N = %lld, K = %lld, d = %lld, %d EM iterations, %d round(s), %d threads\n",
                (long long)N, (long long)K, (long long)d, iterations, rounds, omp_get_max_threads());
    const std::vector<float> x = make_blobs(N, d, K, 17);
    Run one, two;
    for (int round = 0; round < rounds; round++) {
        for (int turn = 0; turn < 2; turn++) {
            const bool two_first = round % 2 == 0;
            const bool run_two = (turn == 0) == two_first;
            Run r = train(x, N, d, K, iterations, run_two ? INT64_MAX : 0); // two walks whatever the lists hold
            Run& keep = run_two ? two : one;
            keep.best_iteration_s = std::min(keep.best_iteration_s, r.best_iteration_s);
            keep.model = std::move(r.model);
        }
    }
    const bool identical = same_bits(one.model.means, two.model.means) &&
                           same_bits(one.model.variances, two.model.variances) &&
                           same_bits(one.model.log_weights, two.model.log_weights);
    std::printf("one walk:  %.3f s per EM iteration\n", one.best_iteration_s);
    std::printf("two walks: %.3f s per EM iteration (%.3fx one walk's time)\n", two.best_iteration_s,
                two.best_iteration_s / one.best_iteration_s);
    {
        // What walk 1 lists under the final model: its non-zero responsibilities.
        EStepCpu estep;
        estep.set_model(two.model, nullptr);
        StatsAccumulator acc(K, d, CovarianceType::Full);
        float x_bound = 0;
        for (float v : x) x_bound = std::max(x_bound, std::fabs(v));
        acc.set_row_bounds(x_bound, 4.0 * double(x_bound) * x_bound * double(d)); // places the grids only
        estep.accumulate_reproducible(VectorBlock{x.data(), DataType::Float32, N, d}, acc);
        const double pairs = double(estep.responsibilities_seen());
        std::printf("non-zero responsibilities under the final model: %.2f per row (%.1f MB listed at 10 bytes each)\n",
                    pairs / double(N), pairs * 10 / 1e6);
    }
    std::printf("models: %s\n", identical ? "the same bits" : "DIFFERENT (a bug: the sums should be the same)");
    return identical ? 0 : 1;
}
