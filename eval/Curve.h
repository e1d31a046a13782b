// Interpolation on recall-versus-cost curves, used to compare methods at equal
// recall (cost ratio) and at equal cost (recall gain). Curves are interpolated
// linearly in log(cost), the axis they are plotted on, between measured points;
// nothing is extrapolated.
#pragma once

#include <vector>

namespace faiss_gmm {
namespace eval {

/// Cost at which the curve first reaches `target` recall. cost and recall are
/// the measured points in sweep order (cost increasing). Returns NaN when the
/// curve never reaches target. When the first point already does, returns its
/// cost and sets *at_first_point (the true crossing lies at or below it).
double cost_at_recall(const std::vector<double>& cost, const std::vector<double>& recall, double target,
                      bool* at_first_point = nullptr);

/// Recall of the curve at `c`, or NaN when c lies outside the measured costs.
double recall_at_cost(const std::vector<double>& cost, const std::vector<double>& recall, double c);

} // namespace eval
} // namespace faiss_gmm
