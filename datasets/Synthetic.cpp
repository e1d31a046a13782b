#include "Synthetic.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace faiss_gmm {
namespace datasets {

namespace {

// splitmix64: a counter-based generator, so (seed, stream, index) -> value with no
// state to carry between rows or threads.
uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct Rng {
    uint64_t state;
    Rng(uint64_t seed, uint64_t stream, uint64_t index)
            : state(mix64(mix64(seed ^ 0x5851f42d4c957f2dULL) + stream * 0x9e3779b97f4a7c15ULL) + index) {}
    uint64_t next() {
        state += 0x9e3779b97f4a7c15ULL;
        return mix64(state);
    }
    double uniform() { return double(next() >> 11) * 0x1.0p-53; } // [0, 1)
    double normal() {                                               // Box-Muller
        double u1 = std::max(uniform(), 1e-300), u2 = uniform();
        return std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
    }
};

enum Stream : uint64_t { kCenters = 1, kScales = 2, kRows = 3 };

} // namespace

MixtureSample generate_mixture(const MixtureParams& p, int64_t i0, int64_t count) {
    if (p.n < 0 || p.d < 1 || p.ncomponents < 1 || p.spread < 0 || p.anisotropy < 1 ||
        p.scale_ratio < 1 || p.weight_skew < 0 || p.noise_fraction < 0 || p.noise_fraction > 1) {
        throw std::invalid_argument("generate_mixture: parameters out of range (need n >= 0, d >= 1, "
                                    "ncomponents >= 1, spread >= 0, anisotropy >= 1, scale_ratio >= 1, "
                                    "weight_skew >= 0, 0 <= noise_fraction <= 1)");
    }
    if (count < 0) {
        count = p.n - i0;
    }
    if (i0 < 0 || count < 0 || i0 + count > p.n) {
        throw std::out_of_range("generate_mixture: rows [" + std::to_string(i0) + ", " +
                                std::to_string(i0 + count) + ") outside [0, " + std::to_string(p.n) + ")");
    }
    const int64_t K = p.ncomponents, d = p.d;
    MixtureSample s;
    // Component parameters depend on the seed only (not on the row range).
    s.centers = FloatMatrix(K, d);
    std::vector<double> stds(size_t(K) * d);
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t k = 0; k < K; k++) {
        Rng rc(p.seed, kCenters, uint64_t(k));
        Rng rs(p.seed, kScales, uint64_t(k));
        // Overall width of this component (log-uniform in [1/√r, √r]) ...
        double scale = std::exp((rs.uniform() - 0.5) * std::log(p.scale_ratio));
        for (int64_t j = 0; j < d; j++) {
            s.centers.at(k, j) = float(p.spread * rc.normal());
            // ... times a per-dimension factor log-uniform in [1/√a, √a].
            stds[k * d + j] = scale * std::exp((rs.uniform() - 0.5) * std::log(p.anisotropy));
            lo = std::min(lo, double(s.centers.at(k, j)) - 3 * stds[k * d + j]);
            hi = std::max(hi, double(s.centers.at(k, j)) + 3 * stds[k * d + j]);
        }
    }
    s.weights.resize(K);
    double wsum = 0;
    for (int64_t k = 0; k < K; k++) {
        s.weights[k] = std::pow(double(k + 1), -p.weight_skew);
        wsum += s.weights[k];
    }
    std::vector<double> cdf(K);
    double acc = 0;
    for (int64_t k = 0; k < K; k++) {
        s.weights[k] /= wsum;
        acc += s.weights[k];
        cdf[k] = acc;
    }
    s.x = FloatMatrix(count, d);
    s.labels.resize(count);
#pragma omp parallel for if (count * d > 100000)
    for (int64_t i = 0; i < count; i++) {
        Rng r(p.seed, kRows, uint64_t(i0 + i));
        float* row = s.x.row(i);
        if (r.uniform() < p.noise_fraction) {
            for (int64_t j = 0; j < d; j++) {
                row[j] = float(lo + (hi - lo) * r.uniform());
            }
            s.labels[i] = -1;
            continue;
        }
        double u = r.uniform();
        int64_t k = std::min<int64_t>(K - 1, std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
        for (int64_t j = 0; j < d; j++) {
            row[j] = float(s.centers.at(k, j) + stds[k * d + j] * r.normal());
        }
        s.labels[i] = int32_t(k);
    }
    return s;
}

FloatMatrix generate_uniform(int64_t n, int64_t d, uint64_t seed, float lo, float hi) {
    if (n < 0 || d < 1 || !(hi > lo)) {
        throw std::invalid_argument("generate_uniform: need n >= 0, d >= 1 and hi > lo");
    }
    FloatMatrix x(n, d);
#pragma omp parallel for if (n * d > 100000)
    for (int64_t i = 0; i < n; i++) {
        Rng r(seed, kRows, uint64_t(i));
        for (int64_t j = 0; j < d; j++) {
            x.at(i, j) = float(lo + (double(hi) - lo) * r.uniform());
        }
    }
    return x;
}

} // namespace datasets
} // namespace faiss_gmm
