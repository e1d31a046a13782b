#include "IndexIVFSpill.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFastScan.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "GmmQuantizer.h"
#include "ivf_lookup.h"

namespace faiss_gmm {

using idx_t = faiss::Index::idx_t;

const char* to_string(SpillRule rule) {
    switch (rule) {
        case SpillRule::None: return "none";
        case SpillRule::Posterior: return "posterior";
        case SpillRule::DistanceRatio: return "distance-ratio";
        case SpillRule::Soar: return "soar";
        case SpillRule::Responsibility: return "responsibility";
        case SpillRule::GmmSoar: return "gmm-soar";
    }
    return "?";
}

void SpillParams::validate() const {
    auto bad = [](const std::string& what) { throw std::invalid_argument("SpillParams: " + what); };
    if (int(rule) < 0 || int(rule) > int(SpillRule::GmmSoar)) bad("unknown rule " + std::to_string(int(rule)));
    if (max_copies < 1) bad("max_copies must be >= 1, got " + std::to_string(max_copies));
    if (!(budget == 0 || budget >= 1)) bad("budget must be 0 (off) or >= 1 entries per vector, got " + std::to_string(budget));
    if (budget > max_copies) bad("budget " + std::to_string(budget) + " > max_copies " + std::to_string(max_copies) + " cannot be met");
    if (!(tau > 0 && tau <= 1)) bad("tau must be in (0, 1], got " + std::to_string(tau));
    if (!(epsilon >= 0)) bad("epsilon must be >= 0, got " + std::to_string(epsilon));
    if (!(soar_lambda >= 0)) bad("soar_lambda must be >= 0, got " + std::to_string(soar_lambda));
    if (rule != SpillRule::None && max_copies < 2) bad("a spill rule needs max_copies >= 2");
}

namespace {

const faiss::IndexFlat* flat_quantizer(const faiss::IndexIVF* ivf) {
    return dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer);
}

// The ids one query has already scored. Ids in a small range (add() numbers them 0, 1, ...)
// are one bit each in a bitset over that range, which stays in cache (125 KB at 1M vectors);
// other ids (add_with_ids) go to an open-addressing table tagged with the query's epoch. Neither
// allocates per query. (std::unordered_set allocated a node per candidate, ~10^4 per query at 1M
// vectors: heavy next to one 128-d distance, and it is on the QPS that users pay.)
class VisitedIds {
  public:
    /// Ids of the index lie in [lo, hi]; the bitset is used when that span is at most
    /// kDenseBitsPerEntry bits per stored entry (8 bytes per entry and thread at most).
    VisitedIds(idx_t lo, idx_t hi, int64_t n_entries) : lo_(lo) {
        // In unsigned arithmetic: hi − lo + 1 overflows int64 for ids {0, INT64_MAX}.
        const uint64_t diff = hi >= lo ? uint64_t(hi) - uint64_t(lo) : 0;
        dense_ = diff < uint64_t(kDenseBitsPerEntry) * uint64_t(std::max<int64_t>(n_entries, 1));
        if (dense_) bits_.assign(size_t(diff / 64 + 1), 0);
    }
    /// A new query that will insert at most `expected` ids.
    void start(size_t expected) {
        if (dense_) return; // cleared by finish()
        size_t cap = 16;
        while (cap < 2 * expected) cap <<= 1; // load factor <= 1/2
        if (cap > slots_.size()) {
            slots_.assign(cap, Slot{});
            epoch_ = 0;
        }
        if (++epoch_ == 0) { // wrapped: old tags could match again
            std::fill(slots_.begin(), slots_.end(), Slot{});
            epoch_ = 1;
        }
        mask_ = slots_.size() - 1;
    }
    /// True when id was not seen yet in this query (and marks it seen).
    bool insert(idx_t id) {
        if (dense_) {
            const uint64_t b = uint64_t(id) - uint64_t(lo_);
            uint64_t& w = bits_[b >> 6];
            const uint64_t bit = uint64_t(1) << (b & 63);
            if (w & bit) return false;
            w |= bit;
            return true;
        }
        uint64_t h = uint64_t(id) * 0x9E3779B97F4A7C15ull;
        size_t i = size_t(h ^ (h >> 29)) & mask_;
        for (;;) {
            Slot& s = slots_[i];
            if (s.epoch != epoch_) {
                s.epoch = epoch_;
                s.id = id;
                return true;
            }
            if (s.id == id) return false;
            i = (i + 1) & mask_;
        }
    }
    /// End of a query that scanned `scanned` entries, the ids of `lists`: the bitset is
    /// cleared bit by bit along those ids, or wholesale when that is fewer words to write.
    void finish(const faiss::InvertedLists* il, const idx_t* lists, size_t nlists, size_t scanned) {
        if (!dense_) return; // the next epoch forgets this query
        if (scanned >= bits_.size()) {
            std::fill(bits_.begin(), bits_.end(), 0);
            return;
        }
        for (size_t p = 0; p < nlists; p++) {
            if (lists[p] < 0) continue;
            const size_t ls = il->list_size(lists[p]);
            if (ls == 0) continue;
            faiss::InvertedLists::ScopedIds ids(il, lists[p]);
            for (size_t j = 0; j < ls; j++) {
                bits_[(uint64_t(ids[j]) - uint64_t(lo_)) >> 6] = 0;
            }
        }
    }

  private:
    static constexpr int64_t kDenseBitsPerEntry = 64;
    struct Slot {
        idx_t id = 0;
        uint32_t epoch = 0;
    };
    idx_t lo_;
    bool dense_ = false;
    std::vector<uint64_t> bits_;
    std::vector<Slot> slots_;
    size_t mask_ = 0;
    uint32_t epoch_ = 0;
};

// Per-rule cost of a secondary list: smaller = more deserving, 0 = as good as the primary.
double threshold_from_params(const SpillParams& s) {
    switch (s.rule) {
        case SpillRule::Posterior: return -std::log(s.tau); // r_j/r_1 >= tau  <=>  ℓ_1 − ℓ_j <= −log tau
        case SpillRule::Responsibility: return -std::log(s.tau); // r_j >= tau  <=>  −log r_j <= −log tau
        case SpillRule::DistanceRatio:
        case SpillRule::Soar:
        case SpillRule::GmmSoar: return s.epsilon;
        case SpillRule::None: return -INFINITY;
    }
    return -INFINITY;
}

} // namespace

IndexIVFSpill::IndexIVFSpill(faiss::Index* index_, const SpillParams& spill_, bool own_fields_, bool require_empty)
        : faiss::Index(index_ ? index_->d : 0, faiss::METRIC_L2), index(index_), own_fields(own_fields_),
          spill(spill_) {
    // Errors before taking ownership, so the caller still owns index on throw.
    if (!index) throw std::invalid_argument("IndexIVFSpill: null index");
    spill.validate();
    const IvfPath path = find_ivf_path(index);
    const bool one_transform_at_most =
            path.wrappers.empty() || (path.wrappers.size() == 1 && path.transforms.size() == 1);
    ivf = one_transform_at_most ? path.ivf : nullptr;
    if (!ivf) {
        own_fields = false;
        throw std::invalid_argument("IndexIVFSpill: needs an IndexIVF, directly or behind one IndexPreTransform");
    }
    auto fail = [&](const std::string& m) {
        own_fields = false;
        throw std::invalid_argument("IndexIVFSpill: " + m);
    };
    if (dynamic_cast<faiss::IndexIVFFastScan*>(ivf)) {
        fail("FastScan IVFs (PQ...x4fs) are not supported: FAISS 1.7.3's IndexIVFFastScan::add_core with "
             "precomputed list assignments terminates the process, and its search cannot skip visited ids; "
             "use IVF..,PQ<m>x4 (non-FastScan) for spill");
    }
    if (ivf->metric_type != faiss::METRIC_L2) fail("only METRIC_L2 IVFs are supported (the spill rules are Euclidean)");
    if (!flat_quantizer(ivf)) fail("the coarse quantizer must be a flat index (IndexFlat / GmmQuantizer)");
    if (!ivf->direct_map.no()) fail("the IVF has a DirectMap: it cannot hold several copies of an id");
    if (require_empty && ivf->ntotal > 0) fail("the IVF already holds vectors: wrap an empty index");
    const bool needs_gmm = spill.rule == SpillRule::Posterior || spill.rule == SpillRule::Responsibility ||
                           spill.rule == SpillRule::GmmSoar || spill.primary_by_posterior;
    const GmmQuantizer* gq = dynamic_cast<GmmQuantizer*>(ivf->quantizer);
    if (needs_gmm && !gq) {
        fail("the posterior / responsibility / gmm-soar spill rules and primary_by_posterior need a GmmQuantizer "
             "(use IVF<n>_GMM...)");
    }
    if (spill.rule == SpillRule::GmmSoar && gq->params.covariance_type == CovarianceType::Full) {
        fail("the gmm-soar spill rule needs spherical or diagonal variances (IVF<n>_GMM or _GMMdiag), not _GMMfull");
    }
    is_trained = index->is_trained;
    ntotal = 0;
    // A loader hands over filled lists: their id range (the search's visited set depends on it).
    const faiss::InvertedLists* il = ivf->invlists;
    for (size_t l = 0; il && l < il->nlist; l++) {
        const size_t ls = il->list_size(l);
        if (ls == 0) continue;
        faiss::InvertedLists::ScopedIds ids(il, l);
        for (size_t j = 0; j < ls; j++) {
            min_id = std::min(min_id, ids[j]);
            max_id = std::max(max_id, ids[j]);
        }
    }
    if (spill.budget == 0) {
        threshold = threshold_from_params(spill);
        threshold_set = true;
    }
}

IndexIVFSpill::~IndexIVFSpill() {
    if (own_fields) delete index;
}

void IndexIVFSpill::train(idx_t n, const float* x) {
    index->train(n, x);
    is_trained = index->is_trained;
}

void IndexIVFSpill::reset() {
    index->reset();
    ntotal = 0;
    min_id = std::numeric_limits<idx_t>::max();
    max_id = -1;
    if (spill.budget > 0) threshold_set = false; // recalibrated at the next add
}

void IndexIVFSpill::spill_costs(idx_t n, const float* xt, idx_t* primary, float* costs, idx_t* cand) const {
    const faiss::IndexFlat* q = flat_quantizer(ivf);
    const int64_t K = q->ntotal, dd = ivf->d;
    const int m1 = spill.max_copies - 1;
    const GmmQuantizer* gq = dynamic_cast<const GmmQuantizer*>(q);
    const bool use_post = spill.rule == SpillRule::Posterior || spill.rule == SpillRule::Responsibility ||
                          spill.primary_by_posterior;
    const bool gmm_soar = spill.rule == SpillRule::GmmSoar;
    // Every use of the GMM checked here, before any: the constructor checked the quantizer's type, but a
    // model can be replaced or retrained since.
    if ((use_post || gmm_soar) && (!gq || gq->model.K != K)) {
        const char* what = gmm_soar ? "the gmm-soar spill rule" : "posterior spill / primary";
        throw std::runtime_error(std::string("IndexIVFSpill: ") + what + " needs a trained GmmQuantizer");
    }
    if (gmm_soar && gq->model.covariance_type == CovarianceType::Full) {
        throw std::runtime_error("IndexIVFSpill: the gmm-soar rule needs a trained spherical or diagonal GmmQuantizer");
    }
    // The quantizer's posteriors (built once per model): the rows centered on the mixture mean, as everywhere.
    const std::shared_ptr<const GmmPosteriors> post = use_post ? gq->posteriors() : nullptr;
    // GmmSoar: per list, 1/s_j and the part of its −2 log-density that does not depend on x,
    // d·log s_j − 2 log π_j (s_j = the spherical variance; diagonal: the mean of the d variances).
    std::vector<double> inv_var, log_norm;
    if (gmm_soar) {
        const GmmModel& m = gq->model;
        const int64_t nv = m.nvar();
        inv_var.resize(size_t(K));
        log_norm.resize(size_t(K));
        for (int64_t j = 0; j < K; j++) {
            double v = 0;
            for (int64_t t = 0; t < nv; t++) v += m.variances[size_t(j * nv + t)];
            v /= double(nv);
            inv_var[size_t(j)] = 1.0 / v;
            log_norm[size_t(j)] = double(dd) * std::log(v) - 2.0 * double(m.log_weights[size_t(j)]);
        }
    }
    const int64_t bs = 2048;
    std::vector<float> l2(size_t(bs) * K), logr(use_post ? size_t(bs) * K : 0);
    for (int64_t i0 = 0; i0 < n; i0 += bs) {
        const int64_t bn = std::min(bs, n - i0);
        const float* xb = xt + size_t(i0) * dd;
        faiss::pairwise_L2sqr(dd, bn, xb, K, q->get_xb(), l2.data());
        if (use_post) post->log_posteriors(VectorBlock{xb, DataType::Float32, bn, dd}, logr.data(), nullptr);
#pragma omp parallel
        {
            std::vector<float> cost(K);
            std::vector<int64_t> order(K), pre(K);
            std::vector<float> r1(dd);
#pragma omp for schedule(static)
            for (int64_t i = 0; i < bn; i++) {
                const float* li = l2.data() + size_t(i) * K;
                const float* ri = use_post ? logr.data() + size_t(i) * K : nullptr;
                int64_t p = 0;
                for (int64_t j = 1; j < K; j++) {
                    if (spill.primary_by_posterior ? (ri[j] > ri[p]) : (li[j] < li[p])) p = j;
                }
                const double d1 = li[p];
                int64_t ncand = 0;
                if ((spill.rule == SpillRule::Soar || gmm_soar) && m1 > 0) {
                    // SOAR cost needs ⟨x − c_j, r_1⟩: evaluated on the lists nearest in L2 only
                    // (its cost is ≥ the distance-ratio cost, so far lists cannot win). GmmSoar takes
                    // the same candidates: a far list would need a much smaller variance to win, and
                    // its distance over that variance weighs against it (eval/gmm_spill_study.py
                    // screened it on the 15 nearest).
                    const int64_t M = std::min<int64_t>(K, std::max<int64_t>(32, 4 * m1 + 1));
                    std::iota(pre.begin(), pre.end(), 0);
                    std::partial_sort(pre.begin(), pre.begin() + M, pre.end(),
                                      // cppcheck-suppress arrayIndexThenCheck ; 'a < b' breaks ties by id, not a bounds check
                                      [&](int64_t a, int64_t b) { return li[a] < li[b] || (li[a] == li[b] && a < b); });
                    const float* x = xb + size_t(i) * dd;
                    const float* c1 = q->get_xb() + size_t(p) * dd;
                    for (int64_t t = 0; t < dd; t++) r1[t] = x[t] - c1[t];
                    const double inv = d1 > 0 ? 1.0 / d1 : 0;
                    for (int64_t t = 0; t < M; t++) {
                        const int64_t j = pre[t];
                        if (j == p) continue;
                        const float* cj = q->get_xb() + size_t(j) * dd;
                        double dot = 0; // ⟨x − c_j, r_1⟩
                        for (int64_t u = 0; u < dd; u++) dot += double(x[u] - cj[u]) * r1[u];
                        double c;
                        if (gmm_soar) {
                            // x on its primary mean (d1 = 0): no residual direction, no parallel term.
                            const double amended = li[j] + spill.soar_lambda * dot * dot * inv;
                            c = amended * inv_var[size_t(j)] + log_norm[size_t(j)] -
                                (d1 * inv_var[size_t(p)] + log_norm[size_t(p)]);
                        } else {
                            c = d1 > 0 ? (li[j] + spill.soar_lambda * dot * dot * inv) / d1 - 1.0
                                       : (li[j] == 0 ? 0.0 : INFINITY);
                        }
                        cost[ncand] = float(c);
                        order[ncand++] = j;
                    }
                } else if (m1 > 0) {
                    for (int64_t j = 0; j < K; j++) {
                        if (j == p) continue;
                        double c;
                        if (spill.rule == SpillRule::Posterior) {
                            c = double(ri[p]) - double(ri[j]);
                            if (std::isnan(c)) c = INFINITY; // both −inf: j is negligible
                        } else if (spill.rule == SpillRule::Responsibility) {
                            c = -double(ri[j]); // −log r_j: +inf for a negligible list
                        } else {
                            c = d1 > 0 ? li[j] / d1 - 1.0 : (li[j] == 0 ? 0.0 : INFINITY);
                        }
                        cost[ncand] = float(c);
                        order[ncand++] = j;
                    }
                }
                // The m1 cheapest candidates, ascending (ties to the lower list number).
                std::vector<int64_t> idx(ncand);
                std::iota(idx.begin(), idx.end(), 0);
                const int64_t take = std::min<int64_t>(m1, ncand);
                std::partial_sort(idx.begin(), idx.begin() + take, idx.end(), [&](int64_t a, int64_t b) {
                    return cost[a] < cost[b] || (cost[a] == cost[b] && order[a] < order[b]);
                });
                primary[i0 + i] = p;
                for (int t = 0; t < m1; t++) {
                    costs[size_t(i0 + i) * m1 + t] = t < take ? cost[idx[t]] : INFINITY;
                    cand[size_t(i0 + i) * m1 + t] = t < take ? order[idx[t]] : -1;
                }
            }
        }
    }
}

void IndexIVFSpill::compute_assignment(idx_t n, const float* xt, idx_t* lists) {
    const int m = spill.max_copies, m1 = m - 1;
    std::vector<idx_t> primary(n), cand(size_t(n) * m1);
    std::vector<float> costs(size_t(n) * m1);
    spill_costs(n, xt, primary.data(), costs.data(), cand.data());
    if (!threshold_set) {
        // Budget: admit the (budget − 1)·n cheapest (vector, list) pairs of this batch.
        // The same threshold then applies to later adds.
        const int64_t want = std::llround((spill.budget - 1.0) * double(n));
        std::vector<float> all;
        for (float c : costs) {
            if (std::isfinite(c)) all.push_back(c);
        }
        if (want <= 0 || all.empty() || spill.rule == SpillRule::None) {
            threshold = -INFINITY;
        } else if (want >= int64_t(all.size())) {
            threshold = INFINITY;
        } else {
            std::nth_element(all.begin(), all.begin() + (want - 1), all.end());
            threshold = all[want - 1];
        }
        threshold_set = true;
    }
    for (idx_t i = 0; i < n; i++) {
        idx_t* L = lists + size_t(i) * m;
        L[0] = primary[i];
        int c = 1;
        for (int t = 0; t < m1; t++) {
            const float cost = costs[size_t(i) * m1 + t];
            if (spill.rule != SpillRule::None && cand[size_t(i) * m1 + t] >= 0 && std::isfinite(cost) &&
                cost <= threshold) {
                L[c++] = cand[size_t(i) * m1 + t];
            }
        }
        for (; c < m; c++) L[c] = -1;
    }
}

void IndexIVFSpill::add(idx_t n, const float* x) {
    add_with_ids(n, x, nullptr);
}

void IndexIVFSpill::add_with_ids(idx_t n, const float* x, const idx_t* xids) {
    if (!is_trained) throw std::invalid_argument("IndexIVFSpill::add: the index is not trained");
    if (n <= 0) return;
    std::unique_ptr<const float[]> del;
    const float* xt = find_ivf_path(index).to_ivf_space(n, x, del);
    std::vector<idx_t> ids(n);
    for (idx_t i = 0; i < n; i++) {
        ids[i] = xids ? xids[i] : ntotal + i;
        if (ids[i] < 0) throw std::invalid_argument("IndexIVFSpill::add_with_ids: id " + std::to_string(ids[i]) + " is negative (-1 marks a missing result)");
    }
    const int m = spill.max_copies;
    std::vector<idx_t> lists(size_t(n) * m);
    compute_assignment(n, xt, lists.data());
    const int64_t dd = ivf->d;
    // One add_core per copy column, with only the rows that have that copy: FAISS
    // counts every row handed to add_core in ntotal, so −1 rows are never passed.
    std::vector<float> xs;
    std::vector<idx_t> is, ls;
    for (int c = 0; c < m; c++) {
        xs.clear();
        is.clear();
        ls.clear();
        for (idx_t i = 0; i < n; i++) {
            const idx_t l = lists[size_t(i) * m + c];
            if (l < 0) continue;
            xs.insert(xs.end(), xt + size_t(i) * dd, xt + size_t(i + 1) * dd);
            is.push_back(ids[i]);
            ls.push_back(l);
        }
        if (!is.empty()) ivf->add_core(idx_t(is.size()), xs.data(), is.data(), ls.data());
    }
    for (idx_t id : ids) {
        min_id = std::min(min_id, id);
        max_id = std::max(max_id, id);
    }
    ntotal += n;
}

void IndexIVFSpill::search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
                           const faiss::SearchParameters* sp) const {
    if (k < 1) throw std::invalid_argument("IndexIVFSpill::search: k must be >= 1");
    if (!is_trained) throw std::invalid_argument("IndexIVFSpill::search: the index is not trained");
    size_t nprobe = ivf->nprobe;
    if (sp) {
        auto* ivp = dynamic_cast<const faiss::SearchParametersIVF*>(sp);
        if (!ivp) throw std::invalid_argument("IndexIVFSpill::search: only SearchParametersIVF (nprobe) is supported");
        nprobe = ivp->nprobe;
    }
    nprobe = std::max<size_t>(1, std::min<size_t>(nprobe, ivf->nlist));
    std::unique_ptr<const float[]> del;
    const float* xt = find_ivf_path(index).to_ivf_space(n, x, del);
    std::vector<idx_t> cidx(size_t(n) * nprobe);
    std::vector<float> cdis(size_t(n) * nprobe);
    // True squared L2 in cdis (GmmQuantizer guarantees it with posterior ranking
    // too): IVFPQ/SQ scanners use it as a term of the distance.
    ivf->quantizer->search(n, xt, idx_t(nprobe), cdis.data(), cidx.data());
    const faiss::InvertedLists* il = ivf->invlists;
    const size_t code_size = il->code_size;
    const int64_t dd = ivf->d;
    size_t ndis = 0;
#pragma omp parallel reduction(+ : ndis)
    {
        std::unique_ptr<faiss::InvertedListScanner> sc(ivf->get_InvertedListScanner(false));
        VisitedIds seen(min_id, max_id, n_entries());
#pragma omp for schedule(dynamic, 8)
        for (idx_t i = 0; i < n; i++) {
            float* D = distances + size_t(i) * k;
            idx_t* I = labels + size_t(i) * k;
            const idx_t* probed = cidx.data() + size_t(i) * nprobe;
            faiss::maxheap_heapify(k, D, I);
            size_t expected = 0;
            for (size_t p = 0; p < nprobe; p++) {
                if (probed[p] >= 0) expected += il->list_size(probed[p]);
            }
            seen.start(expected);
            sc->set_query(xt + size_t(i) * dd);
            for (size_t p = 0; p < nprobe; p++) {
                const idx_t l = probed[p];
                if (l < 0) continue;
                const size_t ls = il->list_size(l);
                if (ls == 0) continue;
                sc->set_list(l, cdis[size_t(i) * nprobe + p]);
                faiss::InvertedLists::ScopedCodes codes(il, l);
                faiss::InvertedLists::ScopedIds ids(il, l);
                // Runs of ids not met in an earlier list go to FAISS's own kernel
                // (scan_codes: the loop IndexIVF::search runs); a copy met before is
                // skipped, so each id is scored once, from the first probed list holding it.
                size_t j = 0;
                while (j < ls) {
                    if (!seen.insert(ids[j])) {
                        j++;
                        continue;
                    }
                    size_t end = j + 1;
                    while (end < ls && seen.insert(ids[end])) end++;
                    sc->scan_codes(end - j, codes.get() + j * code_size, ids.get() + j, D, I, size_t(k));
                    ndis += end - j;
                    j = end + 1; // ids[end], if any, was met before
                }
            }
            seen.finish(il, probed, nprobe, expected);
            faiss::maxheap_reorder(k, D, I);
        }
    }
    faiss::indexIVF_stats.nq += n;
    faiss::indexIVF_stats.ndis += ndis;
}

size_t IndexIVFSpill::remove_ids(const faiss::IDSelector& sel) {
    const faiss::InvertedLists* il = ivf->invlists;
    std::unordered_set<idx_t> gone;
    for (size_t l = 0; l < il->nlist; l++) {
        const size_t ls = il->list_size(l);
        if (ls == 0) continue;
        faiss::InvertedLists::ScopedIds ids(il, l);
        for (size_t j = 0; j < ls; j++) {
            if (sel.is_member(ids[j])) gone.insert(ids[j]);
        }
    }
    ivf->remove_ids(sel); // removes every copy (it walks all lists)
    ntotal -= idx_t(gone.size());
    return gone.size();
}

void IndexIVFSpill::reconstruct(idx_t key, float* recons) const {
    const faiss::InvertedLists* il = ivf->invlists;
    for (size_t l = 0; l < il->nlist; l++) {
        const size_t ls = il->list_size(l);
        if (ls == 0) continue;
        faiss::InvertedLists::ScopedIds ids(il, l);
        for (size_t j = 0; j < ls; j++) {
            if (ids[j] != key) continue;
            if (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(index)) {
                std::vector<float> xt(ivf->d);
                ivf->reconstruct_from_offset(idx_t(l), idx_t(j), xt.data());
                pt->reverse_chain(1, xt.data(), recons);
            } else {
                ivf->reconstruct_from_offset(idx_t(l), idx_t(j), recons);
            }
            return;
        }
    }
    throw std::invalid_argument("IndexIVFSpill::reconstruct: id " + std::to_string(key) + " is not in the index");
}

IndexIVFSpill* as_spill_index(faiss::Index* index) {
    return dynamic_cast<IndexIVFSpill*>(index);
}

const IndexIVFSpill* as_spill_index(const faiss::Index* index) {
    return dynamic_cast<const IndexIVFSpill*>(index);
}

} // namespace faiss_gmm
