#include "kmeans_init.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/utils/distances.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

namespace faiss_gmm {

std::vector<float> faiss_kmeans_means(int64_t n, int64_t d, const float* x, int64_t K, int niter,
                                      int64_t seed, bool verbose) {
    faiss::ClusteringParameters cp;
    cp.niter = std::max(niter, 0);
    cp.seed = int(seed);
    cp.verbose = verbose;
    cp.max_points_per_centroid = 1 << 30; // the caller already subsampled
    cp.min_points_per_centroid = 1;       // and warned about small samples
    faiss::Clustering clus(int(d), int(K), cp);
    faiss::IndexFlatL2 index(d);
    clus.train(n, x, index);
    return clus.centroids;
}

std::vector<float> kmeans_plus_plus_means(int64_t n, int64_t d, const float* x, int64_t K, int64_t seed) {
    if (n < K) throw std::invalid_argument("k-means++: fewer rows than components");
    std::mt19937_64 rng{uint64_t(seed)};
    const int nt = omp_get_max_threads();
    std::vector<float> means(size_t(K) * d);
    std::vector<float> mind(n, INFINITY);
    int64_t first = int64_t(std::uniform_int_distribution<int64_t>(0, n - 1)(rng));
    std::copy(x + first * d, x + (first + 1) * d, means.begin());
    for (int64_t k = 1; k < K; k++) {
        const float* c = means.data() + (k - 1) * d;
        // Per-thread partial sums over static ranges, added in thread order: an
        // OpenMP reduction combines partials in arrival order, so with 3+ threads
        // `total` (and through it the sampled row) could change from run to run.
        std::vector<double> partial(size_t(nt), 0.0);
#pragma omp parallel num_threads(nt)
        {
            double s = 0;
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n; i++) {
                mind[i] = std::min(mind[i], faiss::fvec_L2sqr(x + i * d, c, d));
                s += mind[i];
            }
            partial[size_t(omp_get_thread_num())] = s;
        }
        double total = 0;
        for (double ps : partial) total += ps;
        int64_t pick;
        if (total <= 0) {
            // Every row coincides with a chosen mean: no D² mass left, pick uniformly.
            pick = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
        } else {
            double u = std::uniform_real_distribution<double>(0, total)(rng);
            pick = n - 1;
            for (int64_t i = 0; i < n; i++) {
                u -= mind[i];
                if (u < 0) {
                    pick = i;
                    break;
                }
            }
        }
        std::copy(x + pick * d, x + (pick + 1) * d, means.begin() + k * d);
    }
    return means;
}

GmmModel model_from_hard_assignment(int64_t n, int64_t d, const float* x, int64_t K,
                                    const std::vector<float>& means, CovarianceType type,
                                    double variance_floor, double fallback_variance) {
    GmmModel model(K, d, type);
    model.means = means;
    faiss::IndexFlatL2 index(d);
    index.add(K, means.data());
    std::vector<faiss::Index::idx_t> label(n);
    std::vector<float> dist(n);
    index.search(n, x, 1, dist.data(), label.data());

    std::vector<double> count(K, 0.0), sq(size_t(K) * model.nvar(), 0.0);
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = label[i];
        if (k < 0) continue;
        count[k] += 1;
        if (type == CovarianceType::Spherical) {
            sq[k] += std::max(0.0f, dist[i]);
        } else {
            for (int64_t j = 0; j < d; j++) {
                const double diff = double(x[i * d + j]) - means[k * d + j];
                sq[k * d + j] += diff * diff;
            }
        }
    }
    double wsum = 0;
    for (int64_t k = 0; k < K; k++) wsum += std::max(count[k], 1.0);
    const int64_t nvar = model.nvar();
    for (int64_t k = 0; k < K; k++) {
        model.log_weights[k] = float(std::log(std::max(count[k], 1.0) / wsum));
        for (int64_t j = 0; j < nvar; j++) {
            double v = count[k] > 0 ? sq[k * nvar + j] / (count[k] * (type == CovarianceType::Spherical ? d : 1))
                                    : fallback_variance;
            model.variances[k * nvar + j] = float(std::max(v, variance_floor));
        }
    }
    return model;
}

} // namespace faiss_gmm
