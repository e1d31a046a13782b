#include "GmmQuantizer.h"

#include <faiss/IVFlib.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>

#include <faiss/utils/distances.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "EStepCpu.h"
#include "IndexIVFSpill.h"

namespace faiss_gmm {

GmmQuantizer::GmmQuantizer(int64_t d, int64_t nlist_, const GmmParams& params_)
        : faiss::IndexFlatL2(d), nlist(nlist_), params(params_) {
    if (nlist < 1) throw std::invalid_argument("GmmQuantizer: nlist must be >= 1, got " + std::to_string(nlist));
    params.validate();
}

void GmmQuantizer::train(faiss::Index::idx_t n, const float* x) {
    GmmTrainer trainer(params);
    GmmModel m = trainer.fit(n, d, x, nlist);
    iteration_stats = trainer.iteration_stats;
    set_model(m);
}

void GmmQuantizer::set_model(const GmmModel& m) {
    m.validate();
    if (m.d != d || m.K != nlist) {
        throw std::invalid_argument("GmmQuantizer::set_model: model has K = " + std::to_string(m.K) + ", d = " +
                                    std::to_string(m.d) + "; the quantizer has nlist = " + std::to_string(nlist) +
                                    ", d = " + std::to_string(d));
    }
    model = m;
    params.covariance_type = m.covariance_type;
    reset();
    add(nlist, model.means.data());
}

void GmmQuantizer::search(faiss::Index::idx_t n, const float* x, faiss::Index::idx_t k, float* distances,
                          faiss::Index::idx_t* labels, const faiss::SearchParameters* sp) const {
    const bool scaled = !rank_by_posterior && (probe_variance_weight != 0 || probe_variance_power != 0);
    if ((!rank_by_posterior && !scaled) || model.K == 0) {
        faiss::IndexFlatL2::search(n, x, k, distances, labels, sp);
        return;
    }
    if (k < 1) throw std::invalid_argument("GmmQuantizer::search: k must be >= 1");
    // score_k = ‖x−μ_k‖² · inv_scale[k] − spread[k], smaller is better:
    // spread = γ·tr(Σ_k), inv_scale = (σ̄²/σ²_k)^α with σ²_k = tr(Σ_k)/d.
    std::vector<float> spread, inv_scale;
    if (scaled) {
        spread.resize(model.K);
        inv_scale.resize(model.K);
        std::vector<double> trace(model.K);
        double mean_var = 0;
        for (int64_t c = 0; c < model.K; c++) {
            double t = 0;
            for (int64_t j = 0; j < d; j++) t += model.variance(c, j);
            trace[c] = t;
            mean_var += t / double(d);
        }
        mean_var /= double(model.K);
        for (int64_t c = 0; c < model.K; c++) {
            spread[c] = float(probe_variance_weight * trace[c]);
            double r = probe_variance_power == 0 ? 1.0 : std::pow(mean_var / (trace[c] / double(d)), probe_variance_power);
            if (std::isnan(r)) r = 1.0; // a NaN power only (the factory and the reader refuse one)
            // Finite and > 0 even for a huge |α|, so the score never becomes 0·∞ = NaN.
            inv_scale[c] = float(std::clamp(r, 1e-30, 1e30));
        }
    }
    // Posterior ranking: log r_k differs from log p(x, k) by a per-row constant, so
    // EStepCpu's log-responsibilities rank exactly as THE log-density (GmmModel::log_joint).
    EStepCpu estep;
    if (!scaled) estep.set_model(model, nullptr);
    const int64_t K = model.K;
    const int64_t bs = 1024;
    std::vector<float> logr(size_t(bs) * K), l2(size_t(bs) * K);
    std::vector<int64_t> order(K);
    for (int64_t i0 = 0; i0 < n; i0 += bs) {
        const int64_t bn = std::min(bs, n - i0);
        const float* xb = x + size_t(i0) * d;
        faiss::pairwise_L2sqr(d, bn, xb, K, get_xb(), l2.data());
        if (scaled) {
            // The same "larger is better" score as the posterior path.
            for (int64_t i = 0; i < bn; i++) {
                for (int64_t c = 0; c < K; c++) {
                    logr[size_t(i) * K + c] = spread[c] - l2[size_t(i) * K + c] * inv_scale[c];
                }
            }
        } else {
            estep.log_responsibilities(VectorBlock{xb, DataType::Float32, bn, d}, logr.data(), nullptr);
        }
        for (int64_t i = 0; i < bn; i++) {
            const float* lr = logr.data() + size_t(i) * K;
            std::iota(order.begin(), order.end(), 0);
            const int64_t kk = std::min<int64_t>(k, K);
            // Ties (e.g. −inf for far components) broken by L2, then by index.
            auto better = [&](int64_t a, int64_t b) {
                if (lr[a] != lr[b]) return lr[a] > lr[b];
                float da = l2[size_t(i) * K + a], db = l2[size_t(i) * K + b];
                return da != db ? da < db : a < b;
            };
            std::partial_sort(order.begin(), order.begin() + kk, order.end(), better);
            float* D = distances + size_t(i0 + i) * k;
            faiss::Index::idx_t* I = labels + size_t(i0 + i) * k;
            for (int64_t j = 0; j < k; j++) {
                if (j < kk) {
                    I[j] = order[j];
                    D[j] = l2[size_t(i) * K + order[j]];
                } else {
                    I[j] = -1;
                    D[j] = INFINITY;
                }
            }
        }
    }
}

faiss::IndexIVF* find_ivf(faiss::Index* index) {
    if (!index) return nullptr;
    if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index)) return ivf;
    if (auto* sp = dynamic_cast<IndexIVFSpill*>(index)) return find_ivf(sp->index);
    if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) return find_ivf(pt->index);
    if (auto* idmap = dynamic_cast<faiss::IndexIDMap*>(index)) return find_ivf(idmap->index);
    if (auto* refine = dynamic_cast<faiss::IndexRefine*>(index)) return find_ivf(refine->base_index);
    return nullptr;
}

const faiss::IndexIVF* find_ivf(const faiss::Index* index) {
    return find_ivf(const_cast<faiss::Index*>(index));
}

GmmQuantizer* find_gmm_quantizer(faiss::Index* index) {
    faiss::IndexIVF* ivf = find_ivf(index);
    return ivf ? dynamic_cast<GmmQuantizer*>(ivf->quantizer) : nullptr;
}

const GmmQuantizer* find_gmm_quantizer(const faiss::Index* index) {
    return find_gmm_quantizer(const_cast<faiss::Index*>(index));
}

GmmQuantizer* install_gmm_quantizer(faiss::Index* index, const GmmParams& params) {
    faiss::IndexIVF* ivf = find_ivf(index);
    if (!ivf) {
        throw std::invalid_argument("install_gmm_quantizer: the index is not an IndexIVF (nor one behind a "
                                    "pre-transform, IDMap or refine stage)");
    }
    if (ivf->metric_type != faiss::METRIC_L2) {
        throw std::invalid_argument("install_gmm_quantizer: GMM training needs an L2 IVF (metric " +
                                    std::to_string(int(ivf->metric_type)) +
                                    " given); for cosine search, normalize the vectors and use L2");
    }
    if (ivf->is_trained || ivf->ntotal > 0) {
        throw std::invalid_argument("install_gmm_quantizer: the IVF is already trained; install the GMM "
                                    "quantizer on an untrained index");
    }
    auto* q = new GmmQuantizer(ivf->d, int64_t(ivf->nlist), params);
    if (ivf->own_fields) delete ivf->quantizer;
    ivf->quantizer = q;
    ivf->own_fields = true;
    ivf->quantizer_trains_alone = 1; // IndexIVF::train calls q->train(n, x) and nothing else
    return q;
}

} // namespace faiss_gmm
