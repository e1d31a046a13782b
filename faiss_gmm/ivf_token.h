// The one parser of faiss-gmm's IVF token, used by the factory
// (gmm_index_factory), the evaluation (eval/) and Python (faiss_gmm.index_factory):
// FAISS's IVF<nlist> token with options appended with '_':
//   IVF<nlist>[_GMM|_GMMdiag|_GMMfull][_spill<B>|_tau<t>|_eps<e>][_soar[<λ>]|_gsoar[<λ>]][_ratio|_post|_resp[<t>]][_max<m>][_ppost]
//   _GMM / _GMMdiag / _GMMfull  the coarse quantizer is a GMM with spherical / diagonal / full
//               covariances (the quantizer still returns true squared L2 to the means)
//   _spill<B>   store border vectors in several lists, B entries per vector on average
//               (threshold chosen at the first add). Without a rule named: GMM-SOAR (λ 0.5) with
//               _GMM / _GMMdiag, SOAR with _GMMfull, the k-means distance ratio without a GMM.
//               (Before issue 14's fourth pass a GMM got the posterior ratio here, the rule that
//               never won a held-out comparison on debsift1m: it is now _post_spill<B>. Saved files
//               store their rule and read back unchanged.)
//   _post       GMM posterior-ratio rule (with _spill<B>);  _tau<t> the same with the fixed threshold r_j/r_1 ≥ t
//   _eps<e>     distance-ratio rule with the fixed threshold ‖x−c_j‖² ≤ (1+e)‖x−c_1‖²
//   _ratio      distance-ratio rule even with _GMM*;  _soar[<λ>] SOAR-amended ratio (λ default 1)
//   _gsoar[<λ>] GMM (spherical / diagonal) rule: SOAR's amended distance inside the −2 log-density gap
//               to the primary, (A_j/s_j + d log s_j − 2 log π_j) − (d_1/s_1 + d log s_1 − 2 log π_1)
//               (SpillRule::GmmSoar; λ default 0.5, the held-out choice; with _spill<B>, or _eps<e> as
//               its threshold)
//   _resp[<t>]  GMM responsibility rule: every list j with r_j ≥ t (absolute; default t = 1/nlist,
//               the research's rule; with _spill<B> the B·n most likely pairs); at most 8 lists unless _max
//   _max<m>     at most m lists per vector (default 2, or ⌈B⌉ when B > 2)
//   _ppost      primary list = highest posterior instead of nearest mean
//   (_probepost, _pscale<γ>, _ppow<α>: probe rankings by posterior / variance, removed in issue 14
//   because they never paid; _T<t>: the posterior rule's temperature, removed in issue 14 because it
//   is _tau<t^T>; all refused with a message saying so)
// Everything else in a description is FAISS's, passed through untouched.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "GmmParams.h"
#include "IndexIVFSpill.h"

namespace faiss_gmm {

/// What the IVF token of a description asks for.
struct IvfOptions {
    bool gmm = false;                ///< _GMM / _GMMdiag / _GMMfull given
    CovarianceType covariance_type = CovarianceType::Spherical;
    bool spill = false;              ///< an IndexIVFSpill is wanted
    SpillParams spill_params;        ///< its settings
};

/// A description parsed: the IVF token with faiss-gmm options, if any, and the rest.
struct IvfDescription {
    bool found = false;            ///< the description has an IVF<nlist>_... token with faiss-gmm options
    std::string faiss_description; ///< what faiss::index_factory builds: that token as IVF<nlist> (= input when !found)
    int64_t nlist = 0;             ///< of that token (when !found: of the first IVF<nlist> token, FAISS's; 0 if none)
    std::string token;             ///< that token as written, e.g. "IVF1024_GMM_soar_spill1.5"
    std::vector<std::string> option_items; ///< its options in order, e.g. {"GMM", "soar", "spill1.5"}
    IvfOptions options;            ///< what they ask for
    std::string faiss_ivf_token;   ///< the first IVF<nlist>_... token left to FAISS (e.g. "IVF64_HNSW32"), else ""
};

/// Parses a factory description (see above). Throws std::invalid_argument, naming
/// the token and the description, for a malformed or contradictory token of ours,
/// more than one, or a removed option (with the reason it was removed).
IvfDescription parse_ivf_description(const std::string& description);

/// The description with its IVF token's faiss-gmm options replaced by `options`
/// ("GMM_spill1.2", "GMMdiag", "spill1.5"; "" for none): how the evaluation turns a
/// base description ("OPQ16_64,IVF1024,PQ16") into a method's. The result is parsed
/// again, so bad options throw as in parse_ivf_description. Throws std::invalid_argument
/// when the description has no IVF<nlist> token.
std::string with_ivf_options(const std::string& description, const std::string& options);

/// parse_ivf_description's outputs in the older form: false when the description has
/// none of our options (then the outputs are untouched).
bool parse_ivf_options(const std::string& description, std::string* faiss_description, IvfOptions* options);

/// The covariance type a description asks for, and the FAISS description it maps
/// to ("IVF1024_GMMdiag,PQ16" -> Diagonal, "IVF1024,PQ16"); false when there is no
/// GMM token (spill options are stripped too).
bool parse_gmm_description(const std::string& description, std::string* faiss_description,
                           CovarianceType* covariance_type);

} // namespace faiss_gmm
