// Counts what an IVF search costs per query, from the probed lists themselves
// rather than from faiss::indexIVF_stats (which only counts list entries):
//   - coarse: distances to centroids computed by the coarse quantizer (nlist for
//     a flat quantizer), reported separately from the list scan;
//   - entries: list entries scanned, duplicates included (what a scan moves);
//   - distinct: distance computations when each candidate is computed once
//     (a visited set skips an id seen in an earlier list of the same query).
// The two scan counts are equal when every vector is in one list; they differ
// once vectors are stored in several lists (spill / soft assignment), which is
// why they are counted from the ids of the lists (InvertedLists::get_ids).
#pragma once

#include <cstdint>
#include <vector>

#include <faiss/invlists/InvertedLists.h>

namespace faiss_gmm {
namespace eval {

/// Cost of one query (see the header comment for the definitions).
struct QueryCost {
    int64_t nprobe = 0;   ///< lists visited (−1 entries of the assignment are skipped)
    int64_t entries = 0;  ///< list entries scanned, duplicates included
    int64_t distinct = 0; ///< distinct ids among them
};

class CostCounter {
  public:
    /// The inverted lists are read, not copied: they must outlive the counter.
    /// Ids are expected to be non-negative; a dense visited array is used when
    /// they are < 4 * (entries + 1), a hash set otherwise.
    explicit CostCounter(const faiss::InvertedLists* invlists);

    /// lists: nq x nprobe list numbers, as returned by the coarse quantizer's
    /// search (−1 = no list). Fills nq costs. Throws std::out_of_range for a
    /// list number ≥ nlist.
    std::vector<QueryCost> count(int64_t nq, int64_t nprobe, const int64_t* lists) const;

    int64_t total_entries() const { return total_entries_; }

  private:
    const faiss::InvertedLists* invlists_;
    int64_t total_entries_ = 0;
    int64_t id_bound_ = 0; // max id + 1
    bool dense_ = true;
};

/// Sum of the costs divided by their number (per-query means).
struct MeanCost {
    double nprobe = 0, entries = 0, distinct = 0;
};
MeanCost mean_cost(const std::vector<QueryCost>& costs);

/// Bytes held by the inverted lists: codes plus one 8-byte id per entry, with
/// the block padding of FastScan's BlockInvertedLists.
size_t invlists_bytes(const faiss::InvertedLists* invlists);

/// FAISS's imbalance factor of the list sizes: nlist · Σ size² / (Σ size)² (1 = balanced).
double invlists_imbalance(const faiss::InvertedLists* invlists);

} // namespace eval
} // namespace faiss_gmm
