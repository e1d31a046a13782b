#include "kmeans_init.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/utils/distances.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

#include "detail/blas.h"

namespace faiss_gmm {

namespace {

/// IndexFlatL2 whose nearest-neighbour search (k = 1, what k-means and the
/// hard assignment ask) gives the same bits for any thread count.
/// Multithreaded OpenBLAS does not: with 2 threads its sgemm can round the
/// distances differently from 1 thread, and the k-means start (hence the whole
/// model) then depended on OPENBLAS_NUM_THREADS. Here queries are cut into fixed
/// blocks that OpenMP threads search in parallel, each with single-threaded
/// BLAS against fixed blocks of centroids, so a query's distances depend only on
/// its block. Buffers are allocated once per call for every thread: memory is
/// O(threads · 256 · 1024), whatever the number of rows.
struct ThreadInvariantFlatL2 : faiss::IndexFlatL2 {
    using faiss::IndexFlatL2::IndexFlatL2;
    void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
                const faiss::SearchParameters* params = nullptr) const override {
        if (k != 1) {
            faiss::IndexFlatL2::search(n, x, k, distances, labels, params);
            return;
        }
        // 256 queries × 1024 centroids: 1 MiB of products per thread.
        constexpr idx_t kBlock = 256, kCentroidBlock = 1024;
        const float* c = get_xb();
        std::vector<float> c_norm(static_cast<size_t>(ntotal));
        for (idx_t j = 0; j < ntotal; j++) c_norm[size_t(j)] = faiss::fvec_norm_L2sqr(c + j * d, d);
        const int nt = omp_get_max_threads();
        std::vector<float> ip(size_t(nt) * kBlock * kCentroidBlock);
        detail::SingleThreadedBlas single_threaded_blas;
        const idx_t nblocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (idx_t b = 0; b < nblocks; b++) {
            float* block_ip = ip.data() + size_t(omp_get_thread_num()) * kBlock * kCentroidBlock;
            const idx_t i0 = b * kBlock, m = std::min(kBlock, n - i0);
            for (idx_t i = i0; i < i0 + m; i++) {
                distances[i] = INFINITY;
                labels[i] = -1;
            }
            for (idx_t j0 = 0; j0 < ntotal; j0 += kCentroidBlock) {
                const idx_t nc = std::min(kCentroidBlock, ntotal - j0);
                detail::gemm_abt(int(m), int(nc), int(d), x + i0 * d, c + j0 * d, block_ip);
                for (idx_t i = 0; i < m; i++) {
                    const float xn = faiss::fvec_norm_L2sqr(x + (i0 + i) * d, d);
                    for (idx_t j = 0; j < nc; j++) {
                        // FAISS's expanded distance, clamped at 0 as it does; ties keep the lower index.
                        const float dist = std::max(0.0f, xn + c_norm[size_t(j0 + j)] - 2 * block_ip[i * nc + j]);
                        if (dist < distances[i0 + i]) {
                            distances[i0 + i] = dist;
                            labels[i0 + i] = j0 + j;
                        }
                    }
                }
            }
        }
    }
};

} // namespace

std::vector<float> faiss_kmeans_means(int64_t n, int64_t d, const float* x, int64_t K, int niter,
                                      int64_t seed, bool verbose) {
    faiss::ClusteringParameters cp;
    cp.niter = std::max(niter, 0);
    cp.seed = int(seed);
    cp.verbose = verbose;
    cp.max_points_per_centroid = 1 << 30; // the caller already subsampled
    cp.min_points_per_centroid = 1;       // and warned about small samples
    faiss::Clustering clus(int(d), int(K), cp);
    ThreadInvariantFlatL2 index(d);
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

GmmModel model_from_hard_assignment(const VectorSource& data, int64_t K, const std::vector<float>& means,
                                    CovarianceType type, double variance_floor, double fallback_variance) {
    const int64_t N = data.ntotal(), d = data.d();
    if (int64_t(means.size()) != K * d) {
        throw std::invalid_argument("model_from_hard_assignment: " + std::to_string(means.size()) +
                                    " mean values for K = " + std::to_string(K) + ", d = " + std::to_string(d));
    }
    GmmModel model(K, d, type);
    model.means = means;
    const int64_t nvar = model.nvar();
    ThreadInvariantFlatL2 index(d);
    index.add(K, means.data());

    // The data's moments are needed only to derive the fallback variance.
    const bool need_moments = fallback_variance < 0;
    // Full: the upper triangles of Σ (x − μ_k)(x − μ_k)ᵀ, K × d × d (O(K·d²), as the model).
    std::vector<double> count(K, 0.0), sq(size_t(K) * nvar, 0.0), s1(d, 0.0), s2(d, 0.0);
    constexpr int64_t kChunk = 16384;
    std::vector<float> x, dist;
    std::vector<faiss::Index::idx_t> label;
    for (int64_t i0 = 0; i0 < N; i0 += kChunk) {
        const int64_t n = std::min(kChunk, N - i0);
        x.resize(size_t(n) * d);
        dist.resize(n);
        label.resize(n);
        read_as_float(data, i0, n, x.data());
        check_finite(VectorBlock{x.data(), DataType::Float32, n, d}, i0);
        index.search(n, x.data(), 1, dist.data(), label.data());
        for (int64_t i = 0; i < n; i++) {
            const float* row = x.data() + size_t(i) * d;
            if (need_moments) {
                for (int64_t j = 0; j < d; j++) {
                    s1[j] += row[j];
                    s2[j] += double(row[j]) * row[j];
                }
            }
            const int64_t k = label[i];
            if (k < 0) continue;
            count[k] += 1;
            if (type == CovarianceType::Spherical) {
                sq[k] += std::max(0.0f, dist[i]);
            } else if (type == CovarianceType::Full) {
                double* s = sq.data() + k * d * d;
                for (int64_t a = 0; a < d; a++) {
                    const double da = double(row[a]) - means[k * d + a];
                    for (int64_t b = a; b < d; b++) s[a * d + b] += da * (double(row[b]) - means[k * d + b]);
                }
            } else {
                for (int64_t j = 0; j < d; j++) {
                    const double diff = double(row[j]) - means[k * d + j];
                    sq[k * d + j] += diff * diff;
                }
            }
        }
    }
    if (need_moments) {
        fallback_variance = 0;
        for (int64_t j = 0; j < d; j++) {
            const double m1 = s1[j] / double(N);
            fallback_variance += std::max(0.0, s2[j] / double(N) - m1 * m1);
        }
        fallback_variance = fallback_variance > 0 ? fallback_variance / double(d) : 1.0;
    }
    // A cluster of identical rows has variance 0: keep every variance positive.
    const double floor = std::max(variance_floor, 1e-30);
    double wsum = 0;
    for (int64_t k = 0; k < K; k++) wsum += std::max(count[k], 1.0);
    for (int64_t k = 0; k < K; k++) {
        model.log_weights[k] = float(std::log(std::max(count[k], 1.0) / wsum));
        if (type == CovarianceType::Full) {
            // Σ_k of the assigned rows (fallback_variance·I for none), floor on its eigenvalues.
            double* s = sq.data() + k * d * d;
            for (int64_t a = 0; a < d; a++) {
                for (int64_t b = a; b < d; b++) {
                    s[a * d + b] = count[k] > 0 ? s[a * d + b] / count[k] : (a == b ? fallback_variance : 0.0);
                }
            }
            model.set_covariance(k, s, floor);
            continue;
        }
        for (int64_t j = 0; j < nvar; j++) {
            const double v = count[k] > 0
                    ? sq[k * nvar + j] / (count[k] * (type == CovarianceType::Spherical ? double(d) : 1.0))
                    : fallback_variance;
            model.variances[k * nvar + j] = float(std::max(v, floor));
        }
    }
    return model;
}

GmmModel model_from_hard_assignment(int64_t n, int64_t d, const float* x, int64_t K,
                                    const std::vector<float>& means, CovarianceType type,
                                    double variance_floor, double fallback_variance) {
    return model_from_hard_assignment(MemoryVectorSource(n, d, x), K, means, type, variance_floor,
                                      fallback_variance);
}

} // namespace faiss_gmm
