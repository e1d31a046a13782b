// index_factory for GMM-trained IVF indexes: FAISS's factory grammar plus the
// coarse-quantizer tokens IVF<nlist>_GMM (spherical) and IVF<nlist>_GMMdiag
// (diagonal), e.g. "IVF1024_GMM,PQ16" or "OPQ16_64,IVF256_GMMdiag,PQ16".
// The result is a regular FAISS index whose quantizer is a GmmQuantizer.
//
// Spill / probing options (issue 6), appended to the IVF token with '_':
//   IVF<nlist>[_GMM|_GMMdiag][_spill<B>|_tau<t>|_eps<e>][_T<t>][_soar[<λ>]][_ratio|_resp[<t>]][_max<m>][_ppost]
//   _spill<B>   store border vectors in several lists, B entries per vector on average
//               (threshold chosen at the first add); the rule is the GMM posterior ratio
//               with _GMM*, the k-means distance ratio without
//   _tau<t>     GMM posterior rule with the fixed threshold (r_j/r_1)^(1/T) ≥ t; _T<t> temperature
//   _eps<e>     distance-ratio rule with the fixed threshold ‖x−c_j‖² ≤ (1+e)‖x−c_1‖²
//   _ratio      distance-ratio rule even with _GMM*;  _soar[<λ>] SOAR-amended ratio (λ default 1)
//   _resp[<t>]  GMM responsibility rule: every list j with r_j ≥ t (absolute; default t = 1/nlist,
//               the research's rule; with _spill<B> the B·n most likely pairs); at most 8 lists unless _max
//   _max<m>     at most m lists per vector (default 2, or ⌈B⌉ when B > 2)
//   _ppost      primary list = highest posterior instead of nearest mean
//   (_probepost, _pscale<γ>, _ppow<α>: probe rankings by posterior / variance, removed in issue 14
//   because they never paid; refused with a message saying so)
// With a spill option the result is an IndexIVFSpill (deduplicated search) wrapping
// the FAISS index; otherwise a regular FAISS index. Examples: "IVF1024_GMM_spill1.2,Flat",
// "IVF1024_spill1.2,PQ16x4" (k-means + distance-ratio spill), "IVF1024_GMM_soar_spill1.5,Flat".
#pragma once

#include <string>

#include <faiss/Index.h>

#include "GmmParams.h"

#include "IndexIVFSpill.h"

namespace faiss_gmm {

/// What the IVF token of a description asks for.
struct IvfOptions {
    bool gmm = false;                ///< _GMM / _GMMdiag given
    CovarianceType covariance_type = CovarianceType::Spherical;
    bool spill = false;              ///< an IndexIVFSpill is wanted
    SpillParams spill_params;        ///< its settings
    bool fixed_threshold = false, rule_posterior = false, rule_ratio = false, rule_soar = false, rule_resp = false,
         max_given = false; ///< parse bookkeeping
};

/// Parses the IVF<nlist>_... token (see above); false when the description has none of
/// our options (then the outputs are untouched). Throws std::invalid_argument for a
/// malformed or contradictory token.
bool parse_ivf_options(const std::string& description, std::string* faiss_description, IvfOptions* options);

/// Throws std::invalid_argument for a string without a GMM or spill token (use
/// faiss::index_factory for those), an unparsable string, or a metric other than
/// L2 (GMM densities are Euclidean: for cosine / inner-product search of
/// normalized vectors, normalize and use L2, which ranks identically).
faiss::Index* gmm_index_factory(int d, const std::string& description,
                                faiss::MetricType metric = faiss::METRIC_L2,
                                const GmmParams& params = GmmParams());

/// The covariance type a description asks for, and the FAISS description it maps
/// to ("IVF1024_GMMdiag,PQ16" -> Diagonal, "IVF1024,PQ16"); false when there is no
/// GMM token (spill options are stripped too).
bool parse_gmm_description(const std::string& description, std::string* faiss_description,
                           CovarianceType* covariance_type);

} // namespace faiss_gmm
