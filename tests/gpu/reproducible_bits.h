// Shared by the GPU tests of reproducible sums (issue 13; test_estep_cuda.cu for spherical and
// diagonal models, test_estep_cuda_full.cu for full covariances): the accumulator's row bounds,
// the layouts a reproducible call must give the same bits for (workers, chunk sizes, pieces,
// retained rows), one run of a layout, and the bit comparison. Several workers on GPU 0 stand
// for several GPUs of one kind: each worker has its own stream, buffers and limbs.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"
#include "faiss_gmm/VectorSource.h"
#include "gpu/EStepCuda.h"

namespace faiss_gmm::testing {

/// Per-row bounds for the accumulator's grids (they only place the limbs, any valid bound does):
/// max |x_j − c_j|, and (max ‖x − c‖ + max ‖μ_k‖)² >= ‖x − μ_k‖² >= |(x − μ_k)_a (x − μ_k)_b|
/// (spherical, full), (max |x_j − c_j| + max |μ_kj|)² >= (x_j − μ_kj)² (diagonal): O(n·d + K·d).
/// x: n × d rows in the data frame, the model's means in the centered frame.
inline void set_row_bounds_of(const float* x, int64_t n, const float* center, const GmmModel& m,
                              StatsAccumulator& acc) {
    const int64_t d = m.d;
    double xb = 0, xn = 0, mb = 0, mn = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) {
            const double y = double(x[i * d + j]) - center[j];
            xb = std::max(xb, std::fabs(y));
            s += y * y;
        }
        xn = std::max(xn, std::sqrt(s));
    }
    for (int64_t k = 0; k < m.K; k++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) {
            const double v = m.means[k * d + j];
            mb = std::max(mb, std::fabs(v));
            s += v * v;
        }
        mn = std::max(mn, std::sqrt(s));
    }
    const double sq = m.covariance_type == CovarianceType::Diagonal ? (xb + mb) * (xb + mb) : (xn + mn) * (xn + mn);
    acc.set_row_bounds(xb, sq);
}

/// One way to run a reproducible call: workers, chunk rows, pieces (row ranges [cuts[i],
/// cuts[i+1]), on unit boundaries; cuts past the end give fewer pieces), rows retained or not.
struct ReproLayout {
    const char* name;
    std::vector<int> devices;
    int64_t chunk_rows;
    std::vector<int64_t> cuts;
    bool retain;
};

/// The layouts compared with one worker, default chunks, one call: `unit` is the rows the backend
/// sums on its own (kReproducibleBlockRows, or a full-covariance group), n the call's rows.
inline std::vector<ReproLayout> reproducible_layouts(int64_t unit, int64_t n) {
    const int64_t U = unit;
    return {
            {"2 workers", {0, 0}, 0, {0, n}, false},
            {"3 workers", {0, 0, 0}, 8 * U, {0, n}, false},
            {"chunks of 1 unit", {0}, U, {0, n}, false},
            {"chunks of 2 units, 3 workers", {0, 0, 0}, 2 * U, {0, n}, false},
            {"chunk_rows 5000 (1 unit)", {0, 0}, 5000, {0, n}, false},
            {"chunk_rows 1000 (1 unit)", {0}, 1000, {0, n}, false},
            {"2 pieces", {0}, 8 * U, {0, 2 * U, n}, false},
            {"3 pieces, 2 workers", {0, 0}, U, {0, U, 3 * U, n}, false},
            {"retained, 3 workers", {0, 0, 0}, 8 * U, {0, n}, true},
            {"retained, 2 workers, 2 pieces", {0, 0}, 8 * U, {0, U, n}, true},
    };
}

/// The statistics of the layout's calls summed reproducibly (options o with the layout's
/// devices and chunk rows). x: the rows' values as floats (for the bounds). refined: the first
/// worker's EStepCudaReport::refined_components, when asked for.
inline SufficientStats run_reproducible(const GmmModel& model, const float* center, const float* x,
                                        gpu::EStepCudaOptions o, const VectorBlock& rows, const ReproLayout& l,
                                        int64_t* refined = nullptr) {
    o.devices = l.devices;
    o.chunk_rows = l.chunk_rows;
    gpu::EStepCuda es(model.K, model.d, o);
    es.set_model(model, center);
    if (l.retain) es.retain_rows(rows);
    StatsAccumulator acc(model.K, model.d, model.covariance_type);
    set_row_bounds_of(x, rows.n, center, model, acc);
    for (size_t c = 0; c + 1 < l.cuts.size(); c++) {
        const int64_t a = std::min(l.cuts[c], rows.n), b = std::min(l.cuts[c + 1], rows.n);
        if (b > a) es.accumulate_reproducible(rows.slice(a, b - a), acc);
    }
    if (refined) *refined = es.last_report()[0].refined_components;
    SufficientStats out;
    acc.result(out);
    return out;
}

inline bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

inline void expect_same_bits(const SufficientStats& got, const SufficientStats& want, const std::string& label) {
    EXPECT_EQ(got.n, want.n) << label;
    EXPECT_EQ(std::memcmp(&got.loglik, &want.loglik, sizeof(double)), 0)
            << label << ": loglik " << got.loglik << " vs " << want.loglik;
    EXPECT_TRUE(same_bits(got.nk, want.nk)) << label << ": nk";
    EXPECT_TRUE(same_bits(got.sum_x, want.sum_x)) << label << ": sum_x";
    EXPECT_TRUE(same_bits(got.sum_sq, want.sum_sq)) << label << ": sum_sq";
}

} // namespace faiss_gmm::testing
