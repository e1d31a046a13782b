#include "GroundTruth.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include <faiss/IndexFlat.h>

namespace faiss_gmm {
namespace datasets {

const char* to_string(Metric m) {
    switch (m) {
        case Metric::L2:
            return "l2";
        case Metric::InnerProduct:
            return "ip";
        case Metric::Angular:
            return "angular";
    }
    return "?";
}

Metric parse_metric(const std::string& name) {
    if (name == "l2" || name == "L2" || name == "euclidean") {
        return Metric::L2;
    }
    if (name == "ip" || name == "IP" || name == "inner_product" || name == "dot") {
        return Metric::InnerProduct;
    }
    if (name == "angular" || name == "cosine") {
        return Metric::Angular;
    }
    throw std::invalid_argument("unknown metric '" + name + "' (expected l2, ip or angular)");
}

void normalize_rows(int64_t n, int64_t d, float* x) {
#pragma omp parallel for if (n > 4096)
    for (int64_t i = 0; i < n; i++) {
        float* r = x + i * d;
        double s = 0;
        for (int64_t j = 0; j < d; j++) {
            s += double(r[j]) * r[j];
        }
        if (s > 0) {
            float inv = float(1.0 / std::sqrt(s));
            for (int64_t j = 0; j < d; j++) {
                r[j] *= inv;
            }
        }
    }
}

double ann_benchmarks_distance(Metric metric, double dist) {
    switch (metric) {
        case Metric::L2:
            return std::sqrt(std::max(0.0, dist));
        case Metric::Angular:
            return dist / 2;
        case Metric::InnerProduct:
            return dist;
    }
    return dist;
}

double exact_distance(Metric metric, int64_t d, const float* x, const float* y) {
    if (metric == Metric::L2) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) {
            double t = double(x[j]) - double(y[j]);
            s += t * t;
        }
        return s;
    }
    double xy = 0, xx = 0, yy = 0;
    for (int64_t j = 0; j < d; j++) {
        xy += double(x[j]) * y[j];
        xx += double(x[j]) * x[j];
        yy += double(y[j]) * y[j];
    }
    if (metric == Metric::InnerProduct) {
        return xy;
    }
    // Angular: ‖x/|x| − y/|y|‖² = 2 − 2 cos; a zero vector is at distance 2 (cos = 0) from all.
    double cos = (xx > 0 && yy > 0) ? xy / std::sqrt(xx * yy) : 0.0;
    return 2 - 2 * cos;
}

GroundTruth compute_ground_truth(const VectorSource& base, int64_t nq, const float* queries, int k,
                                 Metric metric, const GroundTruthParams& params) {
    const int64_t d = base.d();
    const int64_t nb = base.ntotal();
    if (k < 1) {
        throw std::invalid_argument("compute_ground_truth: k = " + std::to_string(k) + " < 1");
    }
    if (nb >= (int64_t(1) << 31)) {
        throw std::invalid_argument("compute_ground_truth: base of " + std::to_string(nb) +
                                    " rows does not fit int32 ids");
    }
    if (nq < 0 || (nq > 0 && !queries)) {
        throw std::invalid_argument("compute_ground_truth: bad queries");
    }
    if (params.base_block < 1 || params.margin < 0) {
        throw std::invalid_argument("compute_ground_truth: base_block must be >= 1 and margin >= 0");
    }
    const bool larger_first = metric == Metric::InnerProduct;
    // For Angular, FAISS searches L2 on normalized copies; the re-scoring uses exact_distance.
    std::vector<float> q(queries, queries + nq * d);
    if (metric == Metric::Angular) {
        normalize_rows(nq, d, q.data());
    }
    faiss::MetricType fm = larger_first ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;

    // Running top-k per query: (distance in double, id), sorted best first.
    using Cand = std::pair<double, int64_t>;
    auto better = [larger_first](const Cand& a, const Cand& b) {
        if (a.first != b.first) {
            return larger_first ? a.first > b.first : a.first < b.first;
        }
        return a.second < b.second;
    };
    std::vector<std::vector<Cand>> best(nq);

    std::vector<float> block;
    std::vector<uint8_t> scratch;
    int64_t nblocks = (nb + params.base_block - 1) / params.base_block;
    for (int64_t b0 = 0, bi = 0; b0 < nb; b0 += params.base_block, bi++) {
        int64_t bn = std::min(params.base_block, nb - b0);
        block.resize(size_t(bn) * d);
        read_as_float(base, b0, bn, block.data());
        std::vector<float> raw;
        if (metric == Metric::Angular) {
            raw = block; // exact re-scoring normalizes itself, from the raw values
            normalize_rows(bn, d, block.data());
        }
        const float* rescore_rows = metric == Metric::Angular ? raw.data() : block.data();
        int64_t kb = std::min<int64_t>(bn, int64_t(k) + params.margin);
        std::vector<float> D(size_t(nq) * kb);
        std::vector<faiss::Index::idx_t> I(size_t(nq) * kb);
        {
            faiss::IndexFlat flat(int(d), fm);
            flat.add(bn, block.data());
            flat.search(nq, q.data(), kb, D.data(), I.data());
        }
#pragma omp parallel for schedule(dynamic, 64)
        for (int64_t i = 0; i < nq; i++) {
            std::vector<Cand>& c = best[i];
            for (int64_t j = 0; j < kb; j++) {
                faiss::Index::idx_t id = I[i * kb + j];
                if (id < 0) {
                    continue;
                }
                double dist = exact_distance(metric, d, queries + i * d, rescore_rows + id * d);
                c.emplace_back(dist, b0 + id);
            }
            size_t keep = std::min<size_t>(c.size(), size_t(k));
            std::partial_sort(c.begin(), c.begin() + keep, c.end(), better);
            c.resize(keep);
        }
        if (params.verbose) {
            std::fprintf(stderr, "\rground truth: base block %ld/%ld (%ld rows)", long(bi + 1), long(nblocks),
                         long(b0 + bn));
            if (b0 + bn == nb) {
                std::fprintf(stderr, "\n");
            }
        }
    }
    GroundTruth gt;
    gt.ids = IntMatrix(nq, k);
    gt.distances = FloatMatrix(nq, k);
    for (int64_t i = 0; i < nq; i++) {
        for (int j = 0; j < k; j++) {
            bool ok = size_t(j) < best[i].size();
            gt.ids.at(i, j) = ok ? int32_t(best[i][j].second) : -1;
            gt.distances.at(i, j) = ok ? float(best[i][j].first)
                                       : (larger_first ? -INFINITY : INFINITY);
        }
    }
    return gt;
}

} // namespace datasets
} // namespace faiss_gmm
