// The error measure the issues' budgets use ("errors <= 1e-4 against float64"): the relative
// difference of a statistic as a whole, ‖got − ref‖₂ / ‖ref‖₂ (‖got − ref‖₂ when ref is zero).
// Header-only and free of GoogleTest, so benchmarks print the same figure the tests do.
#pragma once

#include <cmath>
#include <vector>

namespace faiss_gmm::testing {

inline double relative_l2_error(const std::vector<double>& got, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

} // namespace faiss_gmm::testing
