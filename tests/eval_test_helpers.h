// Shared by the evaluation-harness test suites (they link datasets/ and eval/,
// which test_helpers.h must not pull in: the standalone GPU tests use it too).
#pragma once

#include <cstdint>

#include "datasets/Dataset.h"
#include "datasets/GroundTruth.h"
#include "datasets/Synthetic.h"
#include "faiss_gmm/VectorSource.h"

namespace faiss_gmm::testing {

/// A small synthetic data set: 4000 × 16 rows from a mixture of 24 components
/// (seed 11), `n_queries` queries from the same mixture (seed 12), and their
/// exact L2 top-10.
inline datasets::Dataset small_mixture_dataset(int64_t n_queries, double anisotropy) {
    datasets::MixtureParams mp;
    mp.n = 4000;
    mp.d = 16;
    mp.ncomponents = 24;
    mp.spread = 2.5;
    mp.anisotropy = anisotropy;
    mp.seed = 11;
    datasets::Dataset ds;
    ds.name = "synthetic";
    ds.base = datasets::generate_mixture(mp).x;
    mp.seed = 12;
    mp.n = n_queries;
    ds.queries = datasets::generate_mixture(mp).x;
    MemoryVectorSource src(ds.base.n, ds.base.d, ds.base.data.data());
    ds.groundtruth = datasets::compute_ground_truth(src, ds.queries.n, ds.queries.data.data(), 10,
                                                    datasets::Metric::L2).ids;
    ds.groundtruth_computed = true;
    return ds;
}

} // namespace faiss_gmm::testing
