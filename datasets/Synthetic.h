// Synthetic data for scale tests and controlled experiments: Gaussian mixtures
// whose cluster separation, anisotropy and size imbalance are set explicitly,
// plus uniform noise. Every row is generated from (seed, row) alone, so results
// are identical for any thread count and any row range.
#pragma once

#include <cstdint>
#include <vector>

#include "Matrix.h"

namespace faiss_gmm {
namespace datasets {

struct MixtureParams {
    int64_t n = 10000;          ///< rows to generate
    int64_t d = 32;             ///< dimension
    int64_t ncomponents = 16;   ///< mixture components
    double spread = 4.0;        ///< std of the component centers, in units of the mean within-component std (larger = better separated)
    double anisotropy = 1.0;    ///< ratio of largest to smallest per-dimension std inside a component (1 = spherical; log-uniform in between)
    double scale_ratio = 1.0;   ///< ratio of largest to smallest overall component std (log-uniform): clusters of different widths
    double weight_skew = 0.0;   ///< component weights ∝ (k + 1)^(−weight_skew): 0 = equal sizes, 1 = Zipf-like
    double noise_fraction = 0.0;///< fraction of rows drawn uniformly from the bounding box of the centers ± 3 std (label −1)
    uint64_t seed = 1234;       ///< everything is a function of the seed and the row number
};

/// The generated rows and their true component (−1 for noise rows).
struct MixtureSample {
    FloatMatrix x;
    std::vector<int32_t> labels;
    FloatMatrix centers;           ///< ncomponents x d
    std::vector<double> weights;   ///< ncomponents, sum 1
};

/// Rows [i0, i0 + count) of the mixture described by params (count < 0: to n),
/// so a large set can be produced and written block by block.
MixtureSample generate_mixture(const MixtureParams& params, int64_t i0 = 0, int64_t count = -1);

/// n rows uniform in [lo, hi)^d.
FloatMatrix generate_uniform(int64_t n, int64_t d, uint64_t seed, float lo = 0.f, float hi = 1.f);

} // namespace datasets
} // namespace faiss_gmm
