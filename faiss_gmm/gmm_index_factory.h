// index_factory for GMM-trained IVF indexes: FAISS's factory grammar plus the
// coarse-quantizer tokens IVF<nlist>_GMM (spherical), IVF<nlist>_GMMdiag
// (diagonal) and IVF<nlist>_GMMfull (full), e.g. "IVF1024_GMM,PQ16" or "OPQ16_64,IVF256_GMMdiag,PQ16".
// The result is a regular FAISS index whose quantizer is a GmmQuantizer.
//
// Spill options on the IVF token (IVF1024_GMM_spill1.2, _soar, _resp, ...): the grammar and
// its one parser are in ivf_token.h.
// With a spill option the result is an IndexIVFSpill (deduplicated search) wrapping
// the FAISS index; otherwise a regular FAISS index. Examples: "IVF1024_GMM_spill1.2,Flat",
// "IVF1024_spill1.2,PQ16x4" (k-means + distance-ratio spill), "IVF1024_GMM_soar_spill1.5,Flat".
#pragma once

#include <string>

#include <faiss/Index.h>

#include "GmmParams.h"
#include "IndexIVFSpill.h"
#include "ivf_token.h" // parse_ivf_description (and the older parse_ivf_options / parse_gmm_description)

namespace faiss_gmm {

/// Throws std::invalid_argument for a string without a GMM or spill token (use
/// faiss::index_factory for those), an unparsable string, or a metric other than
/// L2 (GMM densities are Euclidean: for cosine / inner-product search of
/// normalized vectors, normalize and use L2, which ranks identically).
faiss::Index* gmm_index_factory(int d, const std::string& description,
                                faiss::MetricType metric = faiss::METRIC_L2,
                                const GmmParams& params = GmmParams());

} // namespace faiss_gmm
