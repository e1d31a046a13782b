#include "SufficientStats.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "GmmModel.h"

namespace faiss_gmm {

void SufficientStats::resize(int64_t K_, int64_t d_, CovarianceType type, bool with_second_moments) {
    K = K_;
    d = d_;
    covariance_type = type;
    nk.resize(size_t(K));
    sum_x.resize(size_t(K) * size_t(d));
    if (with_second_moments) {
        sum_sq.resize(size_t(K * nsq_of(type, d)));
    } else {
        std::vector<double>().swap(sum_sq); // released, not only emptied
    }
}

void SufficientStats::reset(int64_t K_, int64_t d_, CovarianceType type, bool with_second_moments) {
    resize(K_, d_, type, with_second_moments);
    n = 0;
    loglik = 0;
    for (std::vector<double>* v : {&nk, &sum_x, &sum_sq}) std::fill(v->begin(), v->end(), 0.0);
}

void SufficientStats::clear() {
    reset(K, d, covariance_type);
}

void SufficientStats::add(const SufficientStats& o) {
    if (o.K != K || o.d != d || o.covariance_type != covariance_type) {
        throw std::invalid_argument("SufficientStats::add: shape mismatch (K " + std::to_string(K) + " vs " +
                                    std::to_string(o.K) + ", d " + std::to_string(d) + " vs " +
                                    std::to_string(o.d) + ")");
    }
    n += o.n;
    loglik += o.loglik;
    for (size_t i = 0; i < nk.size(); i++) nk[i] += o.nk[i];
    for (size_t i = 0; i < sum_x.size(); i++) sum_x[i] += o.sum_x[i];
    for (size_t i = 0; i < sum_sq.size(); i++) sum_sq[i] += o.sum_sq[i];
}

std::vector<double> SufficientStats::flat() const {
    std::vector<double> v;
    v.reserve(2 + nk.size() + sum_x.size() + sum_sq.size());
    v.push_back(n);
    v.push_back(loglik);
    v.insert(v.end(), nk.begin(), nk.end());
    v.insert(v.end(), sum_x.begin(), sum_x.end());
    v.insert(v.end(), sum_sq.begin(), sum_sq.end());
    return v;
}

void SufficientStats::from_flat(const double* values, size_t count) {
    const size_t expected = 2 + nk.size() + sum_x.size() + sum_sq.size();
    if (count != expected) {
        throw std::invalid_argument("SufficientStats::from_flat: got " + std::to_string(count) +
                                    " values, expected " + std::to_string(expected));
    }
    n = values[0];
    loglik = values[1];
    const double* p = values + 2;
    std::copy(p, p + nk.size(), nk.begin());
    p += nk.size();
    std::copy(p, p + sum_x.size(), sum_x.begin());
    p += sum_x.size();
    std::copy(p, p + sum_sq.size(), sum_sq.begin());
}

void reference_estep(
        const GmmModel& model,
        const float* center,
        int64_t n,
        const float* x,
        SufficientStats& stats) {
    const int64_t K = model.K, d = model.d;
    if (stats.K != K || stats.d != d || stats.covariance_type != model.covariance_type) {
        throw std::invalid_argument("reference_estep: stats shape does not match the model");
    }
    std::vector<double> xd(d), logp(K);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++) {
            xd[j] = double(x[i * d + j]) - (center ? double(center[j]) : 0.0);
        }
        double mx = -INFINITY;
        for (int64_t k = 0; k < K; k++) {
            logp[k] = model.log_joint(xd.data(), k);
            mx = std::max(mx, logp[k]);
        }
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += std::exp(logp[k] - mx);
        // cppcheck-suppress invalidFunctionArg ; K >= 1 and the largest term is exp(0) = 1, so s >= 1
        const double lse = mx + std::log(s);
        stats.n += 1;
        stats.loglik += lse;
        for (int64_t k = 0; k < K; k++) {
            const double r = std::exp(logp[k] - lse);
            stats.nk[k] += r;
            double sq = 0;
            for (int64_t j = 0; j < d; j++) {
                const double diff = xd[j] - double(model.means[k * d + j]);
                stats.sum_x[k * d + j] += r * xd[j];
                if (model.covariance_type == CovarianceType::Diagonal) {
                    stats.sum_sq[k * d + j] += r * diff * diff;
                } else {
                    sq += diff * diff;
                }
            }
            if (model.covariance_type == CovarianceType::Spherical) stats.sum_sq[k] += r * sq;
            if (model.covariance_type == CovarianceType::Full) {
                double* s2 = stats.sum_sq.data() + k * SufficientStats::nsq_of(CovarianceType::Full, d);
                for (int64_t a = 0; a < d; a++) {
                    const double da = xd[a] - double(model.means[k * d + a]);
                    for (int64_t b = a; b < d; b++) {
                        s2[SufficientStats::sq_index(a, b, d)] += r * da * (xd[b] - double(model.means[k * d + b]));
                    }
                }
            }
        }
    }
}

// ---- StatsAccumulator ----

StatsAccumulator::StatsAccumulator(int64_t K, int64_t d, CovarianceType type, bool with_second_moments)
    : K_(K), d_(d), type_(type), with_sq_(with_second_moments) {
    const size_t nsq = with_second_moments ? size_t(K * SufficientStats::nsq_of(type, d)) : 0;
    values_.resize(size_t(K) + size_t(K) * d + nsq);
}

void StatsAccumulator::set_row_bounds(double x_bound, double sq_bound) {
    const size_t K = size_t(K_), Kd = size_t(K_) * d_;
    x_exp_ = scale_exponent_for(x_bound);
    sq_exp_ = scale_exponent_for(sq_bound);
    values_.set_scale(0, K, 0); // r <= 1
    values_.set_scale(K, K + Kd, x_exp_);
    if (with_sq_) values_.set_scale(K + Kd, values_.size(), sq_exp_);
}

void StatsAccumulator::clear() {
    n_ = 0;
    loglik_.clear();
    values_.clear();
}

void StatsAccumulator::check_shape(const SufficientStats& p, const char* what) const {
    if (p.K != K_ || p.d != d_ || p.covariance_type != type_) {
        throw std::invalid_argument(std::string("StatsAccumulator::") + what +
                                    ": the partial's shape differs from the accumulator's");
    }
}

void StatsAccumulator::add_first_moment_segments(const SufficientStats& p) {
    n_ += p.n;
    loglik_.add(0, p.loglik);
    values_.add_segment(0, p.nk.data(), p.nk.size());
    values_.add_segment(p.nk.size(), p.sum_x.data(), p.sum_x.size());
}

void StatsAccumulator::add(const SufficientStats& p) {
    check_shape(p, "add");
    if (!with_sq_) throw std::logic_error("StatsAccumulator::add: this accumulator holds no second moments");
    add_first_moment_segments(p);
    values_.add_segment(p.nk.size() + p.sum_x.size(), p.sum_sq.data(), p.sum_sq.size());
    values_.done();
}

void StatsAccumulator::add_first_moments(const SufficientStats& p) {
    check_shape(p, "add_first_moments");
    add_first_moment_segments(p);
    values_.done();
}

void StatsAccumulator::add_second_moment(int64_t k, const double* values) {
    if (k < 0 || k >= K_) {
        throw std::out_of_range("StatsAccumulator::add_second_moment: component " + std::to_string(k) +
                                " outside [0, " + std::to_string(K_) + ")");
    }
    if (!with_sq_) {
        throw std::logic_error("StatsAccumulator::add_second_moment: this accumulator holds no second moments");
    }
    const size_t nsq = size_t(SufficientStats::nsq_of(type_, d_));
    values_.add_segment(size_t(K_) + size_t(K_) * size_t(d_) + size_t(k) * nsq, values, nsq);
    values_.done(); // one addition to these values: counts toward the carries like a partial
}

void StatsAccumulator::merge(const StatsAccumulator& o) {
    if (o.K_ != K_ || o.d_ != d_ || o.type_ != type_ || o.with_sq_ != with_sq_) {
        throw std::invalid_argument("StatsAccumulator::merge: shapes differ");
    }
    n_ += o.n_;
    loglik_.merge(o.loglik_);
    values_.merge(o.values_);
}

void StatsAccumulator::add_limbs(int64_t rows, const int64_t* loglik_limbs, const int32_t* value_limbs,
                                 int value_nlimbs) {
    if (!with_sq_) throw std::logic_error("StatsAccumulator::add_limbs: this accumulator holds no second moments");
    n_ += double(rows);
    loglik_.add_limbs(loglik_limbs);
    values_.add_limbs(value_limbs, value_nlimbs);
}

std::vector<double> StatsAccumulator::flat() {
    loglik_.normalize();
    values_.normalize(); // limbs below 2^32: a sum over ranks stays exact
    std::vector<double> v;
    v.reserve(1 + loglik_.limbs().size() + values_.limbs().size());
    v.push_back(n_);
    v.insert(v.end(), loglik_.limbs().begin(), loglik_.limbs().end());
    v.insert(v.end(), values_.limbs().begin(), values_.limbs().end());
    return v;
}

void StatsAccumulator::from_flat(const std::vector<double>& v) {
    const size_t nl = loglik_.limbs().size(), nv = values_.limbs().size();
    if (v.size() != 1 + nl + nv) {
        throw std::invalid_argument("StatsAccumulator::from_flat: got " + std::to_string(v.size()) +
                                    " values, expected " + std::to_string(1 + nl + nv));
    }
    n_ = v[0];
    std::copy(v.begin() + 1, v.begin() + 1 + long(nl), loglik_.limbs().begin());
    std::copy(v.begin() + 1 + long(nl), v.end(), values_.limbs().begin());
    loglik_.normalize();
    values_.normalize();
}

void StatsAccumulator::result(SufficientStats& out) const {
    // Every value is written below: resized, not zeroed first as reset() would (1 MiB at K = 1024,
    // d = 128, ~10 % of result() once values() went to vector lanes), unless it grows.
    out.resize(K_, d_, type_, with_sq_);
    out.n = n_;
    out.loglik = loglik_.value(0);
    size_t t = 0;
    for (std::vector<double>* part : {&out.nk, &out.sum_x, &out.sum_sq}) {
        values_.values(t, t + part->size(), part->data());
        t += part->size();
    }
}

} // namespace faiss_gmm
