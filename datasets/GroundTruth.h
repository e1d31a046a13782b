// Exact k-nearest-neighbour ground truth, blocked over the base so that any
// VectorSource (memory-mapped files included) can be processed in bounded
// memory. Each base block is searched with a FAISS flat index for a few more
// than k candidates; the candidates are then re-scored in double precision and
// ranked with ties broken by the lower id, so results do not depend on BLAS
// rounding or block boundaries.
#pragma once

#include <cstdint>
#include <string>

#include <faiss_gmm/VectorSource.h>

#include "Matrix.h"

namespace faiss_gmm {
namespace datasets {

/// The similarity a dataset is searched with.
enum class Metric : int {
    L2 = 0,           ///< Euclidean; distances are squared L2 (FAISS convention)
    InnerProduct = 1, ///< maximum inner product; "distances" are inner products, larger first
    Angular = 2,      ///< cosine: L2 on normalized vectors; distances are ‖x/|x| − y/|y|‖² = 2 − 2 cos
};

const char* to_string(Metric m);
/// Accepts l2/euclidean, ip/inner_product/dot, angular/cosine. Throws std::invalid_argument otherwise.
Metric parse_metric(const std::string& name);

/// Divides every row by its L2 norm (rows of norm 0 are left as they are).
void normalize_rows(int64_t n, int64_t d, float* x);

/// The distance ann-benchmarks reports for a FAISS-convention distance of this
/// metric: L2 -> sqrt, Angular -> 1 − cos = dist / 2, InnerProduct -> unchanged.
double ann_benchmarks_distance(Metric metric, double faiss_distance);

/// Exact distance between two float vectors in the FAISS convention of the
/// metric (double precision; Angular normalizes both).
double exact_distance(Metric metric, int64_t d, const float* x, const float* y);

struct GroundTruthParams {
    int64_t base_block = 1 << 16; ///< base rows per block (memory: base_block * d floats + the flat index)
    int margin = 16;              ///< extra candidates per block re-scored in double, against float rounding at rank k
    bool verbose = false;         ///< progress on stderr, one line per block
};

struct GroundTruth {
    IntMatrix ids;         ///< nq x k, nearest first; -1 where the base has fewer than k rows
    FloatMatrix distances; ///< nq x k, FAISS convention of the metric (see Metric)
};

/// k nearest base rows of each of the nq queries (nq x d floats). Queries are
/// normalized internally for Angular; the base is normalized block by block.
/// Throws std::invalid_argument for k < 1, a dimension mismatch or a base of
/// 2^31 rows or more (ids are written as int32 .ivecs).
GroundTruth compute_ground_truth(const VectorSource& base, int64_t nq, const float* queries, int k,
                                 Metric metric, const GroundTruthParams& params = GroundTruthParams());

} // namespace datasets
} // namespace faiss_gmm
