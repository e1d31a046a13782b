// Soft multi-assignment ("spill") of border vectors for any flat-quantizer
// IndexIVF (Flat, PQ, SQ; FastScan is refused), with a deduplicated search.
// Each added vector goes to its primary list and to at most max_copies − 1
// further lists chosen by a spill rule (GMM posterior ratio, k-means distance
// ratio, or a SOAR-like orthogonality-amended distance), either with a fixed
// threshold or with the threshold chosen at the first add to meet a memory
// budget (copies per vector). Search scores each candidate id once per query,
// from the first probed list holding it (a visited set: a bitset over the id
// range, or a hash table for sparse ids), feeding runs of unseen entries to
// FAISS's own list kernel (InvertedListScanner::scan_codes), so every id appears
// at most once in the results and a scanned entry costs about what it costs in
// IndexIVF::search.
// FAISS cannot represent this (ntotal would count copies, nothing deduplicates,
// FastScan aborts on precomputed assignments), hence a wrapper faiss::Index that
// owns the IVF (possibly behind an IndexPreTransform) and drives its add_core /
// InvertedListScanner itself.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>

namespace faiss_gmm {

enum class SpillRule : int32_t {
    None = 0,          ///< one list per vector (plain IVF behaviour, deduplicated search)
    Posterior = 1,     ///< GMM: list j if the posterior ratio r_j / r_1 ≥ tau
    DistanceRatio = 2, ///< any quantizer: list j if ‖x−c_j‖² ≤ (1+epsilon)‖x−c_1‖²
    Soar = 3,          ///< any quantizer: list j if ‖x−c_j‖² + λ⟨x−c_j, r̂_1⟩² ≤ (1+epsilon)‖x−c_1‖²,
                       ///< r̂_1 = (x−c_1)/‖x−c_1‖ (SOAR, Sun et al. 2023: prefer residuals not parallel to r_1)
    Responsibility = 4, ///< GMM: list j if its responsibility (posterior) r_j ≥ tau, an absolute threshold
                        ///< (the research's rule: tau = 1/K, a vector in every list it is at least uniformly likely in)
    GmmSoar = 5,        ///< GMM (spherical / diagonal): SOAR's amended distance inside the GMM's −2 log-density,
                        ///< against the primary's: list j if
                        ///<   (‖x−c_j‖² + λ⟨x−c_j, r̂_1⟩²)/s_j + d·log s_j − 2 log π_j
                        ///<     − (‖x−c_1‖²/s_1 + d·log s_1 − 2 log π_1) ≤ epsilon,
                        ///< s_j = the component's variance (diagonal: its mean over the d dimensions), π_j its weight
                        ///< (issue 14: fewer distinct computations than Soar on GMM means, eval/README.md)
};

const char* to_string(SpillRule rule);

struct SpillParams {
    SpillRule rule = SpillRule::None;
    int max_copies = 2;          ///< lists per vector at most (primary included), ≥ 1
    double budget = 0;           ///< > 0: entries per vector to aim at (e.g. 1.2); the threshold is chosen at the first add
    double tau = 0.1;            ///< Posterior: threshold on r_j/r_1; Responsibility: on r_j; in (0, 1] (ignored when budget > 0)
    // (A temperature T of the Posterior rule, (r_j/r_1)^(1/T) ≥ tau, was removed in issue 14: it is
    // tau' = tau^T at a fixed threshold and stores the same copies at a budget. gmm_io reads files that
    // set it as that equivalent.)
    double epsilon = 0.1;        ///< DistanceRatio / Soar / GmmSoar threshold ≥ 0 (ignored when budget > 0)
    double soar_lambda = 1;      ///< Soar / GmmSoar rule: weight of the parallel residual component, ≥ 0
                                 ///< (the factory's default: 1 for _soar, 0.5 for _gsoar and a GMM's plain _spill<B>)
    bool primary_by_posterior = false; ///< primary list = highest posterior (GMM only) instead of the nearest mean

    /// Throws std::invalid_argument naming the bad field.
    void validate() const;
};

class IndexIVFSpill : public faiss::Index {
  public:
    faiss::Index* index = nullptr; ///< the IVF, or an IndexPreTransform whose innermost index is the IVF
    faiss::IndexIVF* ivf = nullptr; ///< the IVF inside `index`
    bool own_fields = true;        ///< delete `index` with this
    SpillParams spill;

    /// Threshold actually applied to a secondary list's cost (see spill_costs):
    /// Posterior: cost ℓ_1 − ℓ_j ≤ −log(tau), ℓ = log posterior; DistanceRatio:
    /// cost ‖x−c_j‖²/‖x−c_1‖² − 1 ≤ epsilon; Soar: the amended ratio − 1 ≤ epsilon;
    /// Responsibility: cost −log r_j ≤ −log(tau); GmmSoar: the −2 log-density gap ≤ epsilon.
    /// Set from the params, or by the budget calibration at the first add (the
    /// (budget − 1)·n cheapest pairs of that batch); later adds reuse it.
    double threshold = 0;
    bool threshold_set = false;

    /// Smallest and largest id stored (max_id < min_id: none), kept by add and the constructor.
    /// Search marks the ids it has scored in a bitset over [min_id, max_id] when that span is
    /// small (add() numbers ids 0, 1, ...), else in a hash table.
    idx_t min_id = std::numeric_limits<idx_t>::max();
    idx_t max_id = -1;

    /// Takes an untrained (or trained, empty) IVF / IndexPreTransform(IVF). Throws
    /// std::invalid_argument for FastScan IVFs, quantizers that are not flat,
    /// a DirectMap, non-L2 metrics with the Posterior rule, a Posterior / Responsibility / GmmSoar rule or
    /// primary_by_posterior without a GmmQuantizer, GmmSoar with full covariances, or an index that
    /// already holds vectors.
    /// require_empty = false is for loaders (gmm_io), which then set ntotal and the threshold.
    IndexIVFSpill(faiss::Index* index, const SpillParams& spill, bool own_fields = true, bool require_empty = true);
    ~IndexIVFSpill() override;

    /// nprobe of the inner IVF (what search uses).
    size_t nprobe() const { return ivf->nprobe; }
    void set_nprobe(size_t nprobe) { ivf->nprobe = nprobe; }

    /// Entries in the inverted lists (≥ ntotal: copies included).
    int64_t n_entries() const { return int64_t(ivf->ntotal); }

    void train(idx_t n, const float* x) override;
    void add(idx_t n, const float* x) override;
    /// Ids must be unique across all adds (the dedup is by id) and non-negative.
    void add_with_ids(idx_t n, const float* x, const idx_t* xids) override;
    /// Deduplicated: each id at most once; candidates met in several lists scored once.
    /// SearchParametersIVF may override nprobe.
    void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
                const faiss::SearchParameters* params = nullptr) const override;
    /// Removes every copy; returns the number of distinct ids removed.
    size_t remove_ids(const faiss::IDSelector& sel) override;
    /// By id (not offset): finds a stored copy by scanning the lists (O(entries)), decodes it
    /// (lossy for PQ/SQ) and inverts the pre-transform when there is one. Throws for an unknown id.
    void reconstruct(idx_t key, float* recons) const override;
    void reset() override;

    /// The lists each of the n vectors (already pre-transformed) goes to: n × spill.max_copies,
    /// primary first, −1 padded. Calibrates the threshold first when a budget is set and it is not set yet.
    void compute_assignment(idx_t n, const float* xt, idx_t* lists);

    /// Per vector: the primary list and the max_copies − 1 best other lists with their costs
    /// (smaller = more deserving; a list is admitted when its cost ≤ threshold). n × (max_copies − 1),
    /// sorted ascending per row, +inf / −1 padded.
    void spill_costs(idx_t n, const float* xt, idx_t* primary, float* costs, idx_t* cand) const;
};

/// The IndexIVFSpill at the top of `index` (nullptr when not one).
IndexIVFSpill* as_spill_index(faiss::Index* index);
const IndexIVFSpill* as_spill_index(const faiss::Index* index);

} // namespace faiss_gmm
