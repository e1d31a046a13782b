#include "CostCounter.h"

#include <stdexcept>
#include <string>
#include <unordered_set>

#include <faiss/invlists/BlockInvertedLists.h>

namespace faiss_gmm {
namespace eval {

namespace {

// get_ids() may hand out a temporary buffer (on-disk lists): released on scope exit.
struct ScopedIds {
    const faiss::InvertedLists* il;
    size_t list;
    const faiss::Index::idx_t* ids;
    ScopedIds(const faiss::InvertedLists* il, size_t list) : il(il), list(list), ids(il->get_ids(list)) {}
    ~ScopedIds() { il->release_ids(list, ids); }
};

} // namespace

CostCounter::CostCounter(const faiss::InvertedLists* invlists) : invlists_(invlists) {
    if (!invlists) {
        throw std::invalid_argument("CostCounter: no inverted lists");
    }
    int64_t max_id = -1;
    for (size_t l = 0; l < invlists->nlist; l++) {
        size_t n = invlists->list_size(l);
        total_entries_ += int64_t(n);
        if (n == 0) {
            continue;
        }
        ScopedIds ids(invlists, l);
        for (size_t j = 0; j < n; j++) {
            if (ids.ids[j] < 0) {
                throw std::invalid_argument("CostCounter: negative id in list " + std::to_string(l));
            }
            max_id = std::max<int64_t>(max_id, ids.ids[j]);
        }
    }
    id_bound_ = max_id + 1;
    dense_ = id_bound_ < 4 * (total_entries_ + 1);
}

std::vector<QueryCost> CostCounter::count(int64_t nq, int64_t nprobe, const int64_t* lists) const {
    if (nq < 0 || nprobe < 0) {
        throw std::invalid_argument("CostCounter::count: negative nq or nprobe");
    }
    for (int64_t i = 0; i < nq * nprobe; i++) {
        if (lists[i] >= int64_t(invlists_->nlist)) {
            throw std::out_of_range("CostCounter::count: list " + std::to_string(lists[i]) + " >= nlist " +
                                    std::to_string(invlists_->nlist));
        }
    }
    std::vector<QueryCost> out(nq);
#pragma omp parallel
    {
        // Per-thread visited set. Dense: a stamp per id, the stamp being the query
        // number + 1, so it never needs clearing between queries.
        std::vector<int64_t> stamp(dense_ ? size_t(id_bound_) : 0, 0);
        std::unordered_set<int64_t> seen;
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < nq; i++) {
            QueryCost c;
            seen.clear();
            for (int64_t p = 0; p < nprobe; p++) {
                int64_t l = lists[i * nprobe + p];
                if (l < 0) {
                    continue;
                }
                c.nprobe++;
                size_t n = invlists_->list_size(l);
                c.entries += int64_t(n);
                if (n == 0) {
                    continue;
                }
                ScopedIds ids(invlists_, size_t(l));
                for (size_t j = 0; j < n; j++) {
                    int64_t id = ids.ids[j];
                    if (dense_) {
                        if (stamp[id] != i + 1) {
                            stamp[id] = i + 1;
                            c.distinct++;
                        }
                    } else if (seen.insert(id).second) {
                        c.distinct++;
                    }
                }
            }
            out[i] = c;
        }
    }
    return out;
}

MeanCost mean_cost(const std::vector<QueryCost>& costs) {
    MeanCost m;
    for (const QueryCost& c : costs) {
        m.nprobe += double(c.nprobe);
        m.entries += double(c.entries);
        m.distinct += double(c.distinct);
    }
    if (!costs.empty()) {
        m.nprobe /= costs.size();
        m.entries /= costs.size();
        m.distinct /= costs.size();
    }
    return m;
}

size_t invlists_bytes(const faiss::InvertedLists* il) {
    size_t bytes = 0;
    const auto* block = dynamic_cast<const faiss::BlockInvertedLists*>(il);
    for (size_t l = 0; l < il->nlist; l++) {
        size_t n = il->list_size(l);
        if (block) {
            bytes += (n + block->n_per_block - 1) / block->n_per_block * block->block_size;
        } else {
            bytes += n * il->code_size;
        }
        bytes += n * sizeof(faiss::Index::idx_t);
    }
    return bytes;
}

double invlists_imbalance(const faiss::InvertedLists* il) {
    double tot = 0, sq = 0;
    for (size_t l = 0; l < il->nlist; l++) {
        double n = double(il->list_size(l));
        tot += n;
        sq += n * n;
    }
    return tot > 0 ? il->nlist * sq / (tot * tot) : 0;
}

} // namespace eval
} // namespace faiss_gmm
