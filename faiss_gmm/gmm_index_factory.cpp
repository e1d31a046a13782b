#include "gmm_index_factory.h"

#include <faiss/index_factory.h>

#include <memory>
#include <regex>
#include <sstream>
#include <stdexcept>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>

#include <cmath>
#include <vector>

#include "GmmQuantizer.h"
#include "IndexIVFSpill.h"

namespace faiss_gmm {

namespace {

// Lists per vector at most for the _resp rule without _max: the research's rule admits every list with
// r_j >= 1/K, which can be many; the cap bounds the n x (max - 1) candidate arrays of the add
// (spill_costs); the memory the rule then implies is what the harness reports (n_entries / ntotal).
constexpr int kRespDefaultMaxCopies = 8;

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

/// Applies one option of an IVF token ("GMM", "spill1.2", ...) to opts; false when unknown.
bool apply_option(const std::string& o, IvfOptions* opts, bool* bad_value) {
    static const std::regex opt("^(GMMdiag|GMM|spill|tau|T|eps|soar|ratio|resp|max|ppost|probepost|pscale|ppow)([0-9.eE+-]*)$");
    std::smatch m;
    if (!std::regex_match(o, m, opt)) return false;
    const std::string key = m[1].str(), val = m[2].str();
    double v = 0;
    const bool has = parse_number(val, &v);
    *bad_value = !val.empty() && !has;
    auto need = [&](bool ok) {
        if (!ok) *bad_value = true;
    };
    if (key == "GMM" || key == "GMMdiag") {
        need(val.empty());
        opts->gmm = true;
        opts->covariance_type = key == "GMM" ? CovarianceType::Spherical : CovarianceType::Diagonal;
    } else if (key == "spill") {
        need(has);
        opts->spill = true;
        opts->spill_params.budget = v;
    } else if (key == "tau") {
        need(has);
        opts->spill = true;
        opts->spill_params.tau = v;
        opts->fixed_threshold = true;
        opts->rule_posterior = true;
    } else if (key == "T") {
        need(has);
        opts->spill_params.temperature = v;
    } else if (key == "eps") {
        need(has);
        opts->spill = true;
        opts->spill_params.epsilon = v;
        opts->fixed_threshold = true;
        opts->rule_ratio = true;
    } else if (key == "soar") {
        opts->rule_soar = true;
        if (has) opts->spill_params.soar_lambda = v;
    } else if (key == "resp") {
        opts->spill = true;
        opts->rule_resp = true;
        if (has) {
            need(v > 0 && v <= 1);
            opts->spill_params.tau = v;
            opts->fixed_threshold = true;
        }
    } else if (key == "ratio") {
        need(val.empty());
        opts->rule_ratio = true;
    } else if (key == "max") {
        need(has && v == std::floor(v) && v >= 1 && v <= 64);
        opts->spill_params.max_copies = int(v);
        opts->max_given = true;
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

} // namespace

bool parse_ivf_options(const std::string& description, std::string* faiss_description, IvfOptions* options) {
    static const std::regex ivf_token("^IVF([0-9]+)_(.+)$");
    std::stringstream ss(description);
    std::string part, rewritten;
    bool found = false;
    IvfOptions opts;
    while (std::getline(ss, part, ',')) {
        std::smatch m;
        if (std::regex_match(part, m, ivf_token)) {
            std::vector<std::string> items;
            std::stringstream os(m[2].str());
            std::string item;
            while (std::getline(os, item, '_')) items.push_back(item);
            IvfOptions o;
            size_t known = 0;
            for (const std::string& it : items) {
                bool bad = false;
                if (apply_option(it, &o, &bad)) {
                    known++;
                    if (bad) {
                        throw std::invalid_argument("gmm_index_factory: bad value in option \"" + it + "\" of \"" +
                                                    part + "\" in \"" + description + "\"");
                    }
                }
            }
            if (known > 0) {
                if (known != items.size()) {
                    throw std::invalid_argument(
                            "gmm_index_factory: cannot parse \"" + part + "\" in \"" + description +
                            "\" (expected IVF<nlist>[_GMM|_GMMdiag][_spill<B>|_tau<t>|_eps<e>][_T<t>][_soar[<l>]]"
                            "[_ratio|_resp[<t>]][_max<m>][_ppost])");
                }
                if (found) {
                    throw std::invalid_argument("gmm_index_factory: more than one IVF<n>_... token in \"" +
                                                description + "\"");
                }
                found = true;
                opts = o;
                // _resp without a value or a budget: the research's tau = 1/K.
                if (opts.rule_resp && !opts.fixed_threshold && opts.spill_params.budget == 0) {
                    opts.spill_params.tau = 1.0 / std::stod(m[1].str());
                    opts.fixed_threshold = true;
                }
                part = "IVF" + m[1].str();
            }
        } else if (part.find("_GMM") != std::string::npos) {
            throw std::invalid_argument("gmm_index_factory: cannot parse \"" + part + "\" in \"" + description +
                                        "\" (expected IVF<nlist>_GMM or IVF<nlist>_GMMdiag)");
        }
        rewritten += (rewritten.empty() ? "" : ",") + part;
    }
    if (found) {
        SpillParams& sp = opts.spill_params;
        if ((opts.rule_soar && opts.rule_ratio && !opts.fixed_threshold) ||
            (opts.rule_posterior && (opts.rule_ratio || opts.rule_soar)) ||
            (opts.rule_resp && (opts.rule_posterior || opts.rule_ratio || opts.rule_soar))) {
            throw std::invalid_argument("gmm_index_factory: _soar, _ratio / _eps, _tau and _resp choose different rules in \"" + description + "\"");
        }
        if (opts.spill || opts.rule_soar || opts.rule_ratio) {
            opts.spill = true;
            if (opts.rule_resp) {
                sp.rule = SpillRule::Responsibility;
                // Every list at least that likely: allow several copies unless _max says otherwise.
                if (!opts.max_given) sp.max_copies = kRespDefaultMaxCopies;
            } else if (opts.rule_soar) {
                sp.rule = SpillRule::Soar;
            } else if (opts.rule_ratio || !opts.gmm) {
                sp.rule = SpillRule::DistanceRatio;
            } else {
                sp.rule = SpillRule::Posterior;
            }
            if (sp.budget > 0 && opts.fixed_threshold) {
                throw std::invalid_argument("gmm_index_factory: _spill<B> (budget) and _tau / _eps (fixed "
                                            "threshold) are exclusive in \"" + description + "\"");
            }
            if (sp.budget == 0 && !opts.fixed_threshold && !sp.primary_by_posterior) {
                throw std::invalid_argument("gmm_index_factory: a spill option needs _spill<B>, _tau<t> or _eps<e> in \"" +
                                            description + "\"");
            }
            if (sp.budget == 0 && !opts.fixed_threshold) {
                sp.rule = SpillRule::None; // _ppost alone: posterior primary, one list per vector
            }
            if (!opts.max_given && sp.budget > 2) sp.max_copies = int(std::ceil(sp.budget));
            if ((opts.rule_posterior || opts.rule_resp || sp.primary_by_posterior) && !opts.gmm) {
                throw std::invalid_argument("gmm_index_factory: _tau / _resp / _ppost need _GMM or _GMMdiag in \"" +
                                            description + "\"");
            }
        }
        if (faiss_description) *faiss_description = rewritten;
        if (options) *options = opts;
    }
    return found;
}

bool parse_gmm_description(const std::string& description, std::string* faiss_description,
                           CovarianceType* covariance_type) {
    IvfOptions opts;
    std::string fd;
    if (!parse_ivf_options(description, &fd, &opts) || !opts.gmm) return false;
    if (faiss_description) *faiss_description = fd;
    if (covariance_type) *covariance_type = opts.covariance_type;
    return true;
}

faiss::Index* gmm_index_factory(int d, const std::string& description, faiss::MetricType metric,
                                const GmmParams& params) {
    std::string faiss_description;
    IvfOptions opts;
    if (!parse_ivf_options(description, &faiss_description, &opts) || (!opts.gmm && !opts.spill)) {
        throw std::invalid_argument("gmm_index_factory: \"" + description +
                                    "\" has no IVF<nlist>_GMM, IVF<nlist>_GMMdiag or IVF<nlist>_spill... token "
                                    "(use faiss::index_factory for plain FAISS indexes)");
    }
    if (metric != faiss::METRIC_L2) {
        throw std::invalid_argument("gmm_index_factory: only METRIC_L2 is supported (got metric " +
                                    std::to_string(int(metric)) +
                                    "); for cosine / inner-product search of normalized vectors, "
                                    "normalize them and use L2, which ranks them identically");
    }
    if (d < 1) throw std::invalid_argument("gmm_index_factory: d must be >= 1, got " + std::to_string(d));
    std::unique_ptr<faiss::Index> index;
    try {
        index.reset(faiss::index_factory(d, faiss_description.c_str(), metric));
    } catch (const std::exception& e) {
        throw std::invalid_argument("gmm_index_factory: FAISS cannot build \"" + faiss_description + "\" (from \"" +
                                    description + "\"): " + e.what());
    }
    if (!find_ivf(index.get())) {
        throw std::invalid_argument("gmm_index_factory: \"" + description + "\" does not give an IVF index");
    }
    if (opts.gmm) {
        GmmParams p = params;
        p.covariance_type = opts.covariance_type;
        install_gmm_quantizer(index.get(), p);
    }
    if (opts.spill) {
        if (faiss::IndexIVF* ivf = find_ivf(index.get())) {
            if (!dynamic_cast<faiss::IndexFlat*>(ivf->quantizer)) {
                throw std::invalid_argument("gmm_index_factory: spill needs a flat coarse quantizer in \"" +
                                            description + "\"");
            }
        }
        // IndexIVFSpill throws (FastScan, IDMap...) before taking ownership.
        auto* sp = new IndexIVFSpill(index.get(), opts.spill_params, true);
        static_cast<void>(index.release()); // owned by sp now
        return sp;
    }
    return index.release();
}

} // namespace faiss_gmm
