// The evaluation harness: for one dataset and one IVF description, builds the
// k-means IVF (FAISS) and the GMM IVF variants, sweeps nprobe and measures
// recall@k (id-based and ann-benchmarks distance-threshold), the cost per query
// (coarse distances; list entries scanned; distinct distance computations),
// QPS, list memory and training time; then compares each method to the k-means
// baseline at equal recall and at equal cost. New methods (e.g. spill) plug in
// through register_method(): the cost counting reads the probed lists' ids, so
// indexes that store a vector in several lists are counted correctly.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <faiss/Index.h>

#include <faiss_gmm/GmmParams.h>

#include "datasets/Dataset.h"

namespace faiss_gmm {
namespace eval {

struct EvalParams {
    std::string index_description = "IVF256,Flat"; ///< FAISS description of the baseline; GMM methods insert _GMM / _GMMdiag after IVF<nlist>
    std::vector<std::string> methods = {"kmeans", "gmm"}; ///< built in: kmeans, gmm (spherical), gmmdiag, gmmfull; more via register_method()
    std::string baseline = "kmeans";   ///< the method the others are compared with
    std::vector<int64_t> nprobes;      ///< empty: 1, 2, 4, ..., nlist (nlist included)
    int k = 10;                        ///< recall@k
    double stop_recall = 1.01;         ///< a method's sweep stops after the first point with id recall >= this (> 1: never)
    std::vector<double> recall_targets = {0.8, 0.9, 0.95}; ///< where cost ratios are reported

    int64_t seed = 1234;               ///< seed of k-means and of GMM (overrides gmm.seed)
    int kmeans_niter = 25;             ///< k-means iterations of the baseline (faiss::ClusteringParameters::niter)
    int max_points_per_centroid = 256; ///< training subsample for both methods (FAISS default); 0 = every row
    GmmParams gmm;                     ///< EM settings of the GMM methods (covariance type is set per method)
    bool share_quantizers = true;      ///< train each kind of coarse quantizer (k-means, GMM, GMM diag) once per
                                       ///< evaluate() and give it to the spill / probing variants (same seed, same result)
    std::string quantizer_cache;       ///< non-empty (and share_quantizers): a folder where each trained coarse
                                       ///< quantizer is saved and from which a later evaluate() on the same base
                                       ///< with the same training settings reloads it instead of training again
                                       ///< (a study's held-out, official and timing runs train once); see
                                       ///< quantizer_cache_key()

    int search_threads = 1;            ///< OpenMP threads of the timed searches (QPS); 0 = all. Training uses all.
    int search_repeats = 1;            ///< timed runs per sweep point; the fastest is kept
    int timing_rounds = 0;             ///< > 0: QPS re-measured after all sweeps, in this many rounds that visit every
                                       ///< method's points in turn (fastest kept), so a machine whose load changes
                                       ///< over the run slows every method alike; keeps all indexes in memory
    int64_t timing_queries = 500;      ///< queries of each timed search in those rounds (the first ones)
    bool verbose = true;               ///< progress on stderr
    /// Called when each step of evaluate() starts and ends (a method's training, its sweep), with a
    /// line saying what; for callers that show their own progress (the demo: elapsed time per step).
    std::function<void(const std::string& step)> progress;
};

/// One point of an nprobe sweep (costs are means per query).
struct SweepPoint {
    int64_t nprobe = 0;
    double recall = 0;          ///< id-based recall@k
    double recall_dist = 0;     ///< ann-benchmarks distance-threshold recall@k (epsilon 1e-3)
    double coarse = 0;          ///< distances computed by the coarse quantizer (nlist for a flat one)
    double lists = 0;           ///< lists probed (≤ nprobe when lists are missing)
    double entries = 0;         ///< list entries scanned, duplicates included
    double distinct = 0;        ///< distinct distance computations (visited set)
    double faiss_ndis = -1;     ///< faiss::indexIVF_stats.ndis per query, as a cross-check (−1: not counted)
    double search_s = 0;        ///< wall time of the whole query batch (fastest repeat)
    double qps = 0;             ///< queries per second at search_threads threads
};

/// Everything measured for one method.
struct MethodResult {
    std::string method;          ///< kmeans, gmm, ...
    std::string description;     ///< the index description it was built from
    int64_t nlist = 0;
    int64_t ntotal = 0;          ///< entries in the lists (> base size with spill)
    double train_s = 0;          ///< IndexIVF::train wall time (all threads)
    std::string quantizer_from;  ///< non-empty: the coarse quantizer was trained by that method, or read from the
                                 ///< quantizer cache ("cache: FILE (trained by M in T s)") (train_s: the rest only)
    double add_s = 0;            ///< add wall time
    size_t invlists_bytes = 0;   ///< codes + ids of the inverted lists
    double imbalance = 0;        ///< nlist · Σ size² / N²
    std::vector<SweepPoint> points;
};

/// A method's cost relative to the baseline at one recall target.
struct TargetRatio {
    double target = 0;
    double base_entries = NAN, method_entries = NAN;   ///< interpolated costs (NaN: target not reached)
    double base_distinct = NAN, method_distinct = NAN;
    double ratio_entries = NAN;  ///< method / baseline: < 1 means the method needs fewer
    double ratio_distinct = NAN;
    bool bound = false;          ///< a curve reached the target at its first point: the ratio is only a bound
};

/// Recall gain of a method over the baseline at the baseline's measured costs.
struct CostMatchedGain {
    int64_t base_nprobe = 0;
    double cost = 0;          ///< baseline's distinct distance computations per query
    double base_recall = 0;
    double method_recall = NAN; ///< interpolated on the method's curve (NaN outside its range)
    double gain = NAN;          ///< method_recall − base_recall
};

struct Comparison {
    std::string baseline, method;
    std::vector<TargetRatio> targets;
    std::vector<CostMatchedGain> gains;
    double mean_gain = NAN;     ///< mean of the defined gains
};

struct EvalReport {
    std::string dataset;
    std::string metric;
    int64_t nb = 0, nq = 0, d = 0;
    int k = 10;
    bool groundtruth_computed = false;
    double groundtruth_s = 0;
    EvalParams params;
    int train_threads = 0;
    std::vector<MethodResult> methods;
    std::vector<Comparison> comparisons;
};

/// Builds an untrained index for a method; *description receives what it built.
using IndexMaker = std::function<std::unique_ptr<faiss::Index>(int64_t d, const EvalParams& params,
                                                               std::string* description)>;

/// Makes a method available by name (replaces one of the same name).
void register_method(const std::string& name, IndexMaker maker);
std::vector<std::string> registered_methods();
/// Registered, or a spill / probing variant "<kmeans|gmm|gmmdiag|gmmfull>_<options>" whose options are
/// gmm_index_factory's IVF-token options ("kmeans_spill1.2", "gmm_spill1.5", "gmm_soar_spill1.2", "gmm_resp").
bool is_method(const std::string& name);

/// "IVF256,Flat" + "_GMM" -> "IVF256_GMM,Flat" (also behind OPQ/PCA prefixes).
/// Throws std::invalid_argument when the description has no IVF<nlist> token.
std::string with_ivf_suffix(const std::string& description, const std::string& suffix);

/// The nlist of the IVF<nlist> token of a description.
int64_t nlist_of(const std::string& description);

/// What a cached coarse quantizer must match to be reused (EvalParams::quantizer_cache): its kind
/// ("kmeans/1024/128", "gmm-spherical/1024/128"), the base's size and CRC-32C of its float rows, and
/// every training setting that `index` (a method's untrained index) carries: FAISS's clustering
/// parameters for k-means, the GmmQuantizer's GmmParams for a GMM. Empty when the quantizer cannot be
/// shared (pre-transforms, other quantizer types). One line per item, for the .key file beside the cache.
std::string quantizer_cache_key(const faiss::Index* index, int64_t nb, uint32_t base_crc32c);

/// Runs the whole evaluation. Index metric: L2 (Angular datasets are normalized
/// on load). Throws std::invalid_argument for an unknown method, k larger than
/// the ground truth, or an index without an IVF part.
EvalReport evaluate(const datasets::Dataset& data, const EvalParams& params);

/// One method's sweep on an already trained and filled index (used by evaluate()
/// and by callers with their own indexes).
std::vector<SweepPoint> sweep_nprobe(faiss::Index* index, const datasets::Dataset& data,
                                     const EvalParams& params, const std::string& label = "");

/// Fills report.comparisons from report.methods (every method vs params.baseline).
void compare_methods(EvalReport& report);

} // namespace eval
} // namespace faiss_gmm
