// index_factory for GMM-trained IVF indexes: FAISS's factory grammar plus the
// coarse-quantizer tokens IVF<nlist>_GMM (spherical) and IVF<nlist>_GMMdiag
// (diagonal), e.g. "IVF1024_GMM,PQ16" or "OPQ16_64,IVF256_GMMdiag,PQ16".
// The result is a regular FAISS index whose quantizer is a GmmQuantizer.
#pragma once

#include <string>

#include <faiss/Index.h>

#include "GmmParams.h"

namespace faiss_gmm {

/// Throws std::invalid_argument for a string without a GMM token (use
/// faiss::index_factory for those), an unparsable string, or a metric other than
/// L2 (GMM densities are Euclidean: for cosine / inner-product search of
/// normalized vectors, normalize and use L2, which ranks identically).
faiss::Index* gmm_index_factory(int d, const std::string& description,
                                faiss::MetricType metric = faiss::METRIC_L2,
                                const GmmParams& params = GmmParams());

/// The covariance type a description asks for, and the FAISS description it maps
/// to ("IVF1024_GMMdiag,PQ16" -> Diagonal, "IVF1024,PQ16"); false when none.
bool parse_gmm_description(const std::string& description, std::string* faiss_description,
                           CovarianceType* covariance_type);

} // namespace faiss_gmm
