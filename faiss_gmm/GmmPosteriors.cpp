#include "GmmPosteriors.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "EStepCpu.h"

namespace faiss_gmm {

std::vector<float> mixture_mean(const GmmModel& m) {
    std::vector<double> c(size_t(m.d), 0.0);
    for (int64_t k = 0; k < m.K; k++) {
        const double w = std::exp(double(m.log_weights[size_t(k)]));
        for (int64_t j = 0; j < m.d; j++) c[size_t(j)] += w * m.means[size_t(k * m.d + j)];
    }
    return std::vector<float>(c.begin(), c.end());
}

GmmPosteriors::GmmPosteriors(const GmmModel& model, int block_size) : model_(model), block_size_(block_size) {
    model.validate();
    if (block_size < 1) {
        throw std::invalid_argument("GmmPosteriors: block_size must be >= 1, got " + std::to_string(block_size));
    }
    center_ = mixture_mean(model);
    std::vector<float> neg(center_.size());
    for (size_t j = 0; j < center_.size(); j++) neg[j] = -center_[j];
    centered_ = model.translated(neg.data());
    release(acquire()); // the first E-step, built now: errors surface here, not in a search
}

GmmPosteriors::~GmmPosteriors() = default;

std::unique_ptr<EStepCpu> GmmPosteriors::acquire() const {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!idle_.empty()) {
            std::unique_ptr<EStepCpu> e = std::move(idle_.back());
            idle_.pop_back();
            return e;
        }
    }
    auto e = std::make_unique<EStepCpu>(block_size_);
    e->set_model(centered_, center_.data());
    return e;
}

void GmmPosteriors::release(std::unique_ptr<EStepCpu> estep) const {
    std::lock_guard<std::mutex> lock(mutex_);
    idle_.push_back(std::move(estep));
}

void GmmPosteriors::log_posteriors(const VectorBlock& rows, float* log_resp, float* loglik) const {
    if (rows.d != model_.d) {
        throw std::invalid_argument("GmmPosteriors: the rows have d = " + std::to_string(rows.d) +
                                    " but the model has d = " + std::to_string(model_.d));
    }
    std::unique_ptr<EStepCpu> e = acquire();
    try {
        e->log_responsibilities(rows, log_resp, loglik);
    } catch (...) {
        release(std::move(e));
        throw;
    }
    release(std::move(e));
}

int64_t GmmPosteriors::chunk_rows() const {
    return std::clamp<int64_t>((int64_t(8) << 20) / std::max<int64_t>(model_.K, 1), 1024, 1 << 18);
}

template <class Fn>
void GmmPosteriors::for_each_chunk(const VectorSource& x, bool want_resp, float* log_resp_all, Fn fn) const {
    if (x.d() != model_.d) {
        throw std::invalid_argument("the rows have d = " + std::to_string(x.d()) + " but the model has d = " +
                                    std::to_string(model_.d));
    }
    const int64_t chunk = chunk_rows(), K = model_.K;
    std::vector<uint8_t> scratch;
    std::vector<float> resp, loglik;
    for (int64_t i0 = 0; i0 < x.ntotal(); i0 += chunk) {
        const int64_t n = std::min(chunk, x.ntotal() - i0);
        const VectorBlock b = x.read(i0, n, scratch);
        check_finite(b, i0);
        loglik.resize(size_t(n));
        float* lr = nullptr;
        if (log_resp_all) {
            lr = log_resp_all + size_t(i0) * K;
        } else if (want_resp) {
            resp.resize(size_t(n) * K);
            lr = resp.data();
        }
        log_posteriors(b, lr, loglik.data());
        fn(i0, n, lr, loglik.data());
    }
}

void GmmPosteriors::log_posteriors(const VectorSource& x, float* log_resp, float* loglik) const {
    for_each_chunk(x, false, log_resp, [&](int64_t i0, int64_t n, const float*, const float* ll) {
        if (loglik) std::copy(ll, ll + n, loglik + i0);
    });
}

void GmmPosteriors::predict(const VectorSource& x, int64_t* labels) const {
    const int64_t K = model_.K;
    for_each_chunk(x, true, nullptr, [&](int64_t i0, int64_t n, const float* lr, const float*) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const float* row = lr + i * K;
            labels[i0 + i] = std::max_element(row, row + K) - row;
        }
    });
}

void GmmPosteriors::predict_proba(const VectorSource& x, float* proba) const {
    const int64_t K = model_.K;
    // Posteriors are written straight into the result: the N×K output is the only N×K array.
    for_each_chunk(x, true, proba, [&](int64_t i0, int64_t n, const float*, const float*) {
        float* p = proba + size_t(i0) * K;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n * K; i++) p[i] = std::exp(p[i]);
    });
}

void GmmPosteriors::score_samples(const VectorSource& x, double* loglik) const {
    for_each_chunk(x, false, nullptr, [&](int64_t i0, int64_t n, const float*, const float* ll) {
        for (int64_t i = 0; i < n; i++) loglik[i0 + i] = ll[i];
    });
}

// ------------------------------------------------------------------- cache

std::shared_ptr<const GmmPosteriors> GmmPosteriorsCache::get(const GmmModel& m) const {
    std::lock_guard<std::mutex> lock(mutex_);
    // Value comparison (O(K·d), far below one call's O(n·K·d)): a model changed
    // in place, not only through set_model, is never served stale posteriors.
    const GmmModel* c = cached_ ? &cached_->model() : nullptr;
    if (!c || c->K != m.K || c->d != m.d || c->covariance_type != m.covariance_type ||
        c->log_weights != m.log_weights || c->means != m.means || c->variances != m.variances) {
        cached_ = std::make_shared<const GmmPosteriors>(m);
    }
    return cached_;
}

void GmmPosteriorsCache::clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    cached_.reset();
}

} // namespace faiss_gmm
