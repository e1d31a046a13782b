// The host side of EStepCuda::set_model, which the GPU's EM runs every iteration: the exact
// log-density terms and the narrow-component test (encode_refinement), then the logits, Blocked's and
// the Hopper kernels' encodings (encode_model, fast and 2×fp16). Host only: runs without a GPU.
// Best of 15 calls per line; bench/results/model_encoding.md has the figures and a base built from an
// earlier commit's two source files.
//   bench_model_encoding [K d]   (default 1024 128)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench/gpu/bench_util.cuh"
#include "faiss_gmm/GmmModel.h"
#include "gpu/detail/ModelEncoding.h"

using namespace faiss_gmm;
using namespace faiss_gmm::gpu::detail;

namespace {

/// Means ~N(0, 1), variances in [0.5, 1.5], uniform weights.
GmmModel model_of(int64_t K, int64_t d, CovarianceType type) {
    GmmModel m(K, d, type);
    std::mt19937_64 rng(7);
    std::normal_distribution<float> n01;
    std::uniform_real_distribution<float> var(0.5f, 1.5f);
    for (float& v : m.means) v = n01(rng);
    for (float& v : m.variances) v = var(rng);
    return m;
}

template <class F>
double best_ms(F&& f) {
    double best = 1e30;
    for (int r = 0; r < 15; r++) {
        const double t0 = bench::now_s();
        f();
        best = std::min(best, bench::now_s() - t0);
    }
    return best * 1e3;
}
} // namespace

int main(int argc, char** argv) {
    const int64_t K = argc > 2 ? std::atoll(argv[1]) : 1024, d = argc > 2 ? std::atoll(argv[2]) : 128;
    std::printf("set_model's host side, K=%lld d=%lld (best of 15, ms)\n", (long long)K, (long long)d);
    const std::vector<float> center(size_t(d), 0.f);
    for (CovarianceType type : {CovarianceType::Spherical, CovarianceType::Diagonal}) {
        const GmmModel m = model_of(K, d, type);
        const double refine = best_ms([&] { (void)encode_refinement(m, center.data()); });
        const double fast = best_ms([&] { (void)encode_model(m, center.data(), true, true, nullptr); });
        const double split = best_ms([&] { (void)encode_model(m, center.data(), true, false, nullptr); });
        std::printf("  %-9s encode_refinement %.3f  encode_model fast %.3f  2xfp16 %.3f  (set_model's encoding: "
                    "fast %.3f, 2xfp16 %.3f)\n",
                    type == CovarianceType::Spherical ? "spherical" : "diagonal", refine, fast, split, refine + fast,
                    refine + split);
    }
    return 0;
}
