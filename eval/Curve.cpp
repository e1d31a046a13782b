#include "Curve.h"

#include <cmath>
#include <stdexcept>

namespace faiss_gmm {
namespace eval {

namespace {
void check(const std::vector<double>& cost, const std::vector<double>& recall) {
    if (cost.size() != recall.size()) {
        throw std::invalid_argument("curve: cost and recall differ in length");
    }
    for (size_t i = 0; i < cost.size(); i++) {
        if (!(cost[i] > 0)) {
            throw std::invalid_argument("curve: costs must be > 0 (log axis)");
        }
        if (i > 0 && cost[i] < cost[i - 1]) {
            throw std::invalid_argument("curve: costs must be non-decreasing");
        }
    }
}
} // namespace

double cost_at_recall(const std::vector<double>& cost, const std::vector<double>& recall, double target,
                      bool* at_first_point) {
    check(cost, recall);
    if (at_first_point) {
        *at_first_point = false;
    }
    for (size_t i = 0; i < cost.size(); i++) {
        if (recall[i] >= target) {
            if (i == 0) {
                if (at_first_point) {
                    *at_first_point = true;
                }
                return cost[0];
            }
            double r0 = recall[i - 1], r1 = recall[i];
            double t = (target - r0) / (r1 - r0); // r1 > r0 here: r0 < target <= r1
            return std::exp(std::log(cost[i - 1]) + t * (std::log(cost[i]) - std::log(cost[i - 1])));
        }
    }
    return NAN;
}

double recall_at_cost(const std::vector<double>& cost, const std::vector<double>& recall, double c) {
    check(cost, recall);
    if (cost.empty() || c < cost.front() || c > cost.back()) {
        return NAN;
    }
    for (size_t i = 1; i < cost.size(); i++) {
        if (c <= cost[i]) {
            if (cost[i] == cost[i - 1]) {
                return std::max(recall[i - 1], recall[i]);
            }
            double t = (std::log(c) - std::log(cost[i - 1])) / (std::log(cost[i]) - std::log(cost[i - 1]));
            return recall[i - 1] + t * (recall[i] - recall[i - 1]);
        }
    }
    return recall.back(); // c == cost.front() == cost.back()
}

} // namespace eval
} // namespace faiss_gmm
