// Shared by the GPU benchmark programs: fail-fast CUDA checks, wall-clock time,
// medians, the grids of a reproducible call, and the 64-bit mixer the data generators hash with.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/SufficientStats.h"

// A benchmark has nothing to recover: print where and exit.
#define CK(x)                                                                                  \
    do {                                                                                       \
        cudaError_t e_ = (x);                                                                  \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

namespace faiss_gmm::bench {

inline double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Prints the GPU the benchmark times (device 0); false, after saying so, when none is visible
/// (`visible`: the number of CUDA devices).
inline bool announce_device(int visible) {
    if (visible == 0) {
        printf("no CUDA GPU visible\n");
        return false;
    }
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
    return true;
}

/// Grids of a reproducible call's accumulator from the model's means, which the benchmarks draw
/// among the rows: |x_j − μ_j| <= 2·max|μ| and ‖x − μ‖² <= 4·d·(2·max|μ|)², with the centre at 0
/// (the grids only place the limbs; any valid bound does). max|μ| is the max of the means' bits
/// without their signs (non-negative floats order as their bits): integer lanes, where a max of
/// floats (NaN rules) stays scalar, ~2.5x slower at K·d = 131K (the EM benchmark's "grids" time
/// was this loop: set_row_bounds itself takes ~1 µs).
inline void grids_from_means(StatsAccumulator& acc, const GmmModel& m) {
    int32_t bits = 0;
    for (float v : m.means) {
        int32_t u;
        std::memcpy(&u, &v, sizeof u);
        bits = std::max(bits, u & 0x7fffffff);
    }
    float xb;
    std::memcpy(&xb, &bits, sizeof xb);
    acc.set_row_bounds(2.0 * xb, 4.0 * double(m.d) * 4.0 * xb * xb);
}

/// The comma-separated items of a command-line value: "a,b" → {"a", "b"} ("" → none, "a," → {"a"}).
inline std::vector<std::string> split_list(const std::string& v) {
    std::vector<std::string> items;
    for (size_t p = 0; p < v.size();) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        items.push_back(v.substr(p, q - p));
        p = q + 1;
    }
    return items;
}

/// The integers of a comma-separated command-line value, each clamped to [lo, hi].
inline std::vector<int> clamped_int_list(const std::string& v, int lo, int hi) {
    std::vector<int> values;
    for (const std::string& item : split_list(v)) values.push_back(std::clamp(std::atoi(item.c_str()), lo, hi));
    return values;
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/// splitmix64's finalizer: a well-mixed 64-bit hash of x.
__host__ __device__ inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

} // namespace faiss_gmm::bench
