#include "Recall.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace faiss_gmm {
namespace eval {

namespace {

void check_args(int64_t nq, int k, int64_t ldi, int64_t ld2) {
    if (nq < 0 || k < 1 || ldi < k || ld2 < k) {
        throw std::invalid_argument("recall: need nq >= 0, k >= 1 and strides >= k (k = " + std::to_string(k) +
                                    ", strides " + std::to_string(ldi) + ", " + std::to_string(ld2) + ")");
    }
}

// True when I[j] already appeared in I[0..j): the later copy is not counted.
bool seen_before(const int64_t* I, int j) {
    for (int t = 0; t < j; t++) {
        if (I[t] == I[j]) {
            return true;
        }
    }
    return false;
}

double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) {
        s += x;
    }
    return v.empty() ? 0 : s / v.size();
}

// ann-benchmarks units of a FAISS-convention distance; inner products are
// negated so that smaller is better for every metric and one threshold test fits all.
double ab_distance(datasets::Metric metric, int64_t d, const float* x, const float* y) {
    double v = datasets::ann_benchmarks_distance(metric, datasets::exact_distance(metric, d, x, y));
    return metric == datasets::Metric::InnerProduct ? -v : v;
}

} // namespace

std::vector<double> recall_at_k_per_query(int64_t nq, int k, const int64_t* I, int64_t ldi,
                                          const int32_t* gt, int64_t ldgt) {
    check_args(nq, k, ldi, ldgt);
    std::vector<double> r(nq);
    for (int64_t i = 0; i < nq; i++) {
        const int64_t* Ii = I + i * ldi;
        const int32_t* gi = gt + i * ldgt;
        int hits = 0;
        for (int j = 0; j < k; j++) {
            if (Ii[j] < 0 || seen_before(Ii, j)) {
                continue;
            }
            for (int t = 0; t < k; t++) {
                if (gi[t] == Ii[j]) {
                    hits++;
                    break;
                }
            }
        }
        r[i] = double(hits) / k;
    }
    return r;
}

double recall_at_k(int64_t nq, int k, const int64_t* I, int64_t ldi, const int32_t* gt, int64_t ldgt) {
    return mean(recall_at_k_per_query(nq, k, I, ldi, gt, ldgt));
}

std::vector<double> distance_recall_per_query(int64_t nq, int k, const int64_t* I, int64_t ldi,
                                              const double* result_dist, int64_t ldr,
                                              const double* threshold, double epsilon) {
    check_args(nq, k, ldi, ldr);
    std::vector<double> r(nq);
    for (int64_t i = 0; i < nq; i++) {
        const int64_t* Ii = I + i * ldi;
        int hits = 0;
        for (int j = 0; j < k; j++) {
            if (Ii[j] < 0 || seen_before(Ii, j)) {
                continue;
            }
            if (result_dist[i * ldr + j] <= threshold[i] + epsilon) {
                hits++;
            }
        }
        r[i] = double(hits) / k;
    }
    return r;
}

double distance_recall(int64_t nq, int k, const int64_t* I, int64_t ldi, const double* result_dist,
                       int64_t ldr, const double* threshold, double epsilon) {
    return mean(distance_recall_per_query(nq, k, I, ldi, result_dist, ldr, threshold, epsilon));
}

std::vector<double> result_distances(datasets::Metric metric, int64_t d, const float* base, int64_t nb,
                                     int64_t nq, const float* queries, int k, const int64_t* I, int64_t ldi) {
    if (k < 1 || ldi < k) {
        throw std::invalid_argument("result_distances: need k >= 1 and ldi >= k");
    }
    // Checked before the parallel loop: an exception cannot leave an OpenMP region.
    for (int64_t i = 0; i < nq; i++) {
        for (int j = 0; j < k; j++) {
            if (I[i * ldi + j] >= nb) {
                throw std::out_of_range("result id " + std::to_string(I[i * ldi + j]) + " outside the base");
            }
        }
    }
    std::vector<double> out(size_t(nq) * k, INFINITY);
#pragma omp parallel for if (nq > 256)
    for (int64_t i = 0; i < nq; i++) {
        for (int j = 0; j < k; j++) {
            int64_t id = I[i * ldi + j];
            if (id >= 0) {
                out[i * k + j] = ab_distance(metric, d, queries + i * d, base + id * d);
            }
        }
    }
    return out;
}

std::vector<double> kth_distances(datasets::Metric metric, int64_t d, const float* base, int64_t nb,
                                  int64_t nq, const float* queries, int k, const int32_t* gt, int64_t ldgt) {
    if (k < 1 || ldgt < k) {
        throw std::invalid_argument("kth_distances: the ground truth has fewer than k = " + std::to_string(k) +
                                    " neighbours");
    }
    std::vector<double> out(nq);
    for (int64_t i = 0; i < nq; i++) {
        int32_t id = gt[i * ldgt + k - 1];
        if (id < 0 || id >= nb) {
            throw std::out_of_range("ground-truth id " + std::to_string(id) + " outside the base");
        }
        out[i] = ab_distance(metric, d, queries + i * d, base + int64_t(id) * d);
    }
    return out;
}

} // namespace eval
} // namespace faiss_gmm
