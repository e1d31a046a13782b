#include "ivf_token.h"

#include <cmath>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace faiss_gmm {

namespace {

// Lists per vector at most for the _resp rule without _max: the research's rule admits every list with
// r_j >= 1/K, which can be many; the cap bounds the n x (max - 1) candidate arrays of the add
// (spill_costs); the memory the rule then implies is what the harness reports (n_entries / ntotal).
constexpr int kRespDefaultMaxCopies = 8;

// λ of the GMM-SOAR rule when the description gives none (_gsoar, or _spill<B> alone on a spherical or
// diagonal GMM): the held-out choice on debsift1m at nlist 1024 and 4096 (λ = 0.25 / 0.5 / 1 / 2 screened,
// eval/results/debsift1m-heldout-gmm-soar*.md). SOAR's own λ stays 1, its paper's and k-means' held-out choice.
constexpr double kGmmSoarDefaultLambda = 0.5;

const char* const kGrammar =
        "IVF<nlist>[_GMM|_GMMdiag|_GMMfull][_spill<B>|_tau<t>|_eps<e>][_soar[<l>]|_gsoar[<l>]][_ratio|_post|_resp[<t>]][_max<m>][_ppost]";

/// The options of one token while it is parsed: what they ask for, and which
/// rule-choosing options were given (resolved into a SpillRule at the end).
struct TokenState {
    IvfOptions opts;
    bool fixed_threshold = false, rule_posterior = false, rule_ratio = false, rule_soar = false, rule_resp = false,
         rule_gmm_soar = false, max_given = false, lambda_given = false;
};

bool parse_number(const std::string& text, double* v) {
    if (text.empty()) return false;
    size_t pos = 0;
    try {
        *v = std::stod(text, &pos);
    } catch (const std::exception&) {
        return false;
    }
    return pos == text.size();
}

/// Applies one option of an IVF token ("GMM", "spill1.2", ...) to st; false when unknown.
bool apply_option(const std::string& o, TokenState* st, bool* bad_value) {
    static const std::regex opt("^(GMMdiag|GMMfull|GMM|spill|tau|T|eps|soar|gsoar|ratio|post|resp|max|ppost|probepost|pscale|ppow)([0-9.eE+-]*)$");
    std::smatch m;
    if (!std::regex_match(o, m, opt)) return false;
    const std::string key = m[1].str(), val = m[2].str();
    IvfOptions* opts = &st->opts;
    double v = 0;
    const bool has = parse_number(val, &v);
    *bad_value = !val.empty() && !has;
    auto need = [&](bool ok) {
        if (!ok) *bad_value = true;
    };
    // _tau<t> / _eps<e>: a spill rule with a fixed threshold on its cost.
    auto fixed_threshold = [&](double* threshold, bool* rule) {
        need(has);
        opts->spill = true;
        *threshold = v;
        st->fixed_threshold = true;
        *rule = true;
    };
    if (key == "GMM" || key == "GMMdiag" || key == "GMMfull") {
        need(val.empty());
        opts->gmm = true;
        opts->covariance_type = key == "GMM"       ? CovarianceType::Spherical
                                : key == "GMMdiag" ? CovarianceType::Diagonal
                                                   : CovarianceType::Full;
    } else if (key == "spill") {
        need(has);
        opts->spill = true;
        opts->spill_params.budget = v;
    } else if (key == "tau") {
        fixed_threshold(&opts->spill_params.tau, &st->rule_posterior);
    } else if (key == "T") {
        throw std::invalid_argument("gmm_index_factory: option \"" + o + "\" was removed: the posterior rule's "
                                    "temperature T only re-expressed its threshold ((r_j/r_1)^(1/T) >= t is r_j/r_1 >= "
                                    "t^T: write _tau<t^T>) and stored the same copies at a budget (issue 14)");
    } else if (key == "eps") {
        fixed_threshold(&opts->spill_params.epsilon, &st->rule_ratio);
    } else if (key == "soar" || key == "gsoar") {
        (key == "soar" ? st->rule_soar : st->rule_gmm_soar) = true;
        if (has) opts->spill_params.soar_lambda = v;
        st->lambda_given = has;
    } else if (key == "resp") {
        opts->spill = true;
        st->rule_resp = true;
        if (has) {
            need(v > 0 && v <= 1);
            opts->spill_params.tau = v;
            st->fixed_threshold = true;
        }
    } else if (key == "ratio") {
        need(val.empty());
        st->rule_ratio = true;
    } else if (key == "post") {
        // The posterior-ratio rule by name: _spill<B> alone meant it on a GMM before issue 14's fourth pass.
        need(val.empty());
        st->rule_posterior = true;
    } else if (key == "max") {
        need(has && v == std::floor(v) && v >= 1 && v <= 64);
        opts->spill_params.max_copies = int(v);
        st->max_given = true;
    } else if (key == "ppost") {
        need(val.empty());
        opts->spill = true;
        opts->spill_params.primary_by_posterior = true;
    } else if (key == "probepost" || key == "pscale" || key == "ppow") {
        throw std::invalid_argument("gmm_index_factory: option \"" + o + "\" was removed: ranking lists by GMM "
                                    "posterior or variance-scaled L2 needed more distance computations than L2 on "
                                    "every data set measured (issue 14, eval/README.md); lists are probed by L2");
    }
    return true;
}

/// The spill rule and its settings from the options given; throws for contradictions.
void resolve_rule(TokenState& st, const std::string& description) {
    IvfOptions& opts = st.opts;
    SpillParams& sp = opts.spill_params;
    // _eps sets rule_ratio with its threshold; after _soar / _gsoar it is their threshold instead.
    const bool soar_like = st.rule_soar || st.rule_gmm_soar;
    if ((soar_like && st.rule_ratio && !st.fixed_threshold) || (st.rule_soar && st.rule_gmm_soar) ||
        (st.rule_posterior && (st.rule_ratio || soar_like)) ||
        (st.rule_resp && (st.rule_posterior || st.rule_ratio || soar_like))) {
        throw std::invalid_argument("gmm_index_factory: _soar, _gsoar, _ratio / _eps, _post / _tau and _resp choose different "
                                    "rules in \"" + description + "\"");
    }
    if (!(opts.spill || soar_like || st.rule_ratio || st.rule_posterior)) return;
    opts.spill = true;
    if (st.rule_resp) {
        sp.rule = SpillRule::Responsibility;
        // Every list at least that likely: allow several copies unless _max says otherwise.
        if (!st.max_given) sp.max_copies = kRespDefaultMaxCopies;
    } else if (st.rule_gmm_soar) {
        sp.rule = SpillRule::GmmSoar;
    } else if (st.rule_soar) {
        sp.rule = SpillRule::Soar;
    } else if (st.rule_posterior) {
        sp.rule = SpillRule::Posterior;
    } else if (st.rule_ratio || !opts.gmm) {
        sp.rule = SpillRule::DistanceRatio;
    } else if (opts.covariance_type == CovarianceType::Full) {
        // No rule named, full covariances: GMM-SOAR needs per-list variances it can divide by, so SOAR
        // (which beat the posterior and distance-ratio rules on every GMM measured, issue 14).
        sp.rule = SpillRule::Soar;
    } else {
        // No rule named on a spherical / diagonal GMM: GMM-SOAR, the rule every held-out comparison on
        // debsift1m chose over SOAR, the posterior ratio and the distance ratio (issue 14, eval/README.md).
        sp.rule = SpillRule::GmmSoar;
    }
    if (sp.rule == SpillRule::GmmSoar && !st.lambda_given) sp.soar_lambda = kGmmSoarDefaultLambda;
    if (sp.budget > 0 && st.fixed_threshold) {
        throw std::invalid_argument("gmm_index_factory: _spill<B> (budget) and _tau / _eps (fixed "
                                    "threshold) are exclusive in \"" + description + "\"");
    }
    if (sp.budget == 0 && !st.fixed_threshold && !sp.primary_by_posterior) {
        throw std::invalid_argument("gmm_index_factory: a spill option needs _spill<B>, _tau<t> or _eps<e> in \"" +
                                    description + "\"");
    }
    if (sp.budget == 0 && !st.fixed_threshold) {
        sp.rule = SpillRule::None; // _ppost alone: posterior primary, one list per vector
    }
    if (!st.max_given && sp.budget > 2) sp.max_copies = int(std::ceil(sp.budget));
    if ((st.rule_posterior || st.rule_resp || st.rule_gmm_soar || sp.primary_by_posterior) && !opts.gmm) {
        throw std::invalid_argument("gmm_index_factory: _post / _tau / _resp / _gsoar / _ppost need _GMM, _GMMdiag or _GMMfull "
                                    "in \"" + description + "\"");
    }
    if (st.rule_gmm_soar && opts.covariance_type == CovarianceType::Full) {
        throw std::invalid_argument("gmm_index_factory: _gsoar needs spherical or diagonal variances (_GMM or "
                                    "_GMMdiag), not _GMMfull, in \"" + description + "\"");
    }
}

} // namespace

IvfDescription parse_ivf_description(const std::string& description) {
    static const std::regex ivf_token("^IVF([0-9]+)_(.+)$");
    IvfDescription out;
    std::stringstream ss(description);
    std::string part, rewritten;
    TokenState state;
    static const std::regex any_ivf("^IVF([0-9]+)(_.*)?$");
    int64_t first_nlist = 0;
    while (std::getline(ss, part, ',')) {
        std::smatch m;
        if (first_nlist == 0 && std::regex_match(part, m, any_ivf)) first_nlist = std::stoll(m[1].str());
        if (std::regex_match(part, m, ivf_token)) {
            std::vector<std::string> items;
            std::stringstream os(m[2].str());
            std::string item;
            while (std::getline(os, item, '_')) items.push_back(item);
            TokenState st;
            size_t known = 0;
            for (const std::string& it : items) {
                bool bad = false;
                if (apply_option(it, &st, &bad)) {
                    known++;
                    if (bad) {
                        throw std::invalid_argument("gmm_index_factory: bad value in option \"" + it + "\" of \"" +
                                                    part + "\" in \"" + description + "\"");
                    }
                }
            }
            if (known == 0) {
                if (out.faiss_ivf_token.empty()) out.faiss_ivf_token = part; // FAISS's own (IVF64_HNSW32)
            } else {
                if (known != items.size()) {
                    throw std::invalid_argument("gmm_index_factory: cannot parse \"" + part + "\" in \"" +
                                                description + "\" (expected " + kGrammar + ")");
                }
                if (out.found) {
                    throw std::invalid_argument("gmm_index_factory: more than one IVF<n>_... token in \"" +
                                                description + "\"");
                }
                out.found = true;
                out.nlist = std::stoll(m[1].str());
                out.token = part;
                out.option_items = items;
                state = st;
                // _resp without a value or a budget: the research's tau = 1/K.
                if (state.rule_resp && !state.fixed_threshold && state.opts.spill_params.budget == 0) {
                    state.opts.spill_params.tau = 1.0 / std::stod(m[1].str());
                    state.fixed_threshold = true;
                }
                part = "IVF" + m[1].str();
            }
        } else if (part.find("_GMM") != std::string::npos) {
            throw std::invalid_argument("gmm_index_factory: cannot parse \"" + part + "\" in \"" + description +
                                        "\" (expected IVF<nlist>_GMM, IVF<nlist>_GMMdiag or IVF<nlist>_GMMfull)");
        }
        rewritten += (rewritten.empty() ? "" : ",") + part;
    }
    if (out.found) {
        resolve_rule(state, description);
        out.options = state.opts;
        out.faiss_description = rewritten;
    } else {
        out.faiss_description = description;
        out.nlist = first_nlist;
    }
    return out;
}

std::string with_ivf_options(const std::string& description, const std::string& options) {
    static const std::regex plain_ivf("^IVF[0-9]+$");
    const std::string base = parse_ivf_description(description).faiss_description;
    std::stringstream ss(base);
    std::string part, out;
    bool done = false;
    while (std::getline(ss, part, ',')) {
        if (!done && std::regex_match(part, plain_ivf)) {
            if (!options.empty()) part += "_" + options;
            done = true;
        }
        out += (out.empty() ? "" : ",") + part;
    }
    if (!done) throw std::invalid_argument("index description '" + description + "' has no IVF<nlist> token");
    parse_ivf_description(out); // the options checked by the one parser
    return out;
}

bool parse_ivf_options(const std::string& description, std::string* faiss_description, IvfOptions* options) {
    IvfDescription p = parse_ivf_description(description);
    if (!p.found) return false;
    if (faiss_description) *faiss_description = p.faiss_description;
    if (options) *options = p.options;
    return true;
}

bool parse_gmm_description(const std::string& description, std::string* faiss_description,
                           CovarianceType* covariance_type) {
    IvfDescription p = parse_ivf_description(description);
    if (!p.found || !p.options.gmm) return false;
    if (faiss_description) *faiss_description = p.faiss_description;
    if (covariance_type) *covariance_type = p.options.covariance_type;
    return true;
}

} // namespace faiss_gmm
