#include "gmm_index_factory.h"

#include <faiss/index_factory.h>

#include <memory>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "GmmQuantizer.h"

namespace faiss_gmm {

bool parse_gmm_description(const std::string& description, std::string* faiss_description,
                           CovarianceType* covariance_type) {
    static const std::regex gmm_token("^IVF([0-9]+)_GMM(diag)?$");
    std::stringstream ss(description);
    std::string part, rewritten;
    bool found = false;
    CovarianceType type = CovarianceType::Spherical;
    while (std::getline(ss, part, ',')) {
        std::smatch m;
        if (std::regex_match(part, m, gmm_token)) {
            if (found) {
                throw std::invalid_argument("gmm_index_factory: more than one IVF<n>_GMM token in \"" +
                                            description + "\"");
            }
            found = true;
            type = m[2].matched ? CovarianceType::Diagonal : CovarianceType::Spherical;
            part = "IVF" + m[1].str();
        } else if (part.find("_GMM") != std::string::npos) {
            throw std::invalid_argument("gmm_index_factory: cannot parse \"" + part + "\" in \"" + description +
                                        "\" (expected IVF<nlist>_GMM or IVF<nlist>_GMMdiag)");
        }
        rewritten += (rewritten.empty() ? "" : ",") + part;
    }
    if (found) {
        if (faiss_description) *faiss_description = rewritten;
        if (covariance_type) *covariance_type = type;
    }
    return found;
}

faiss::Index* gmm_index_factory(int d, const std::string& description, faiss::MetricType metric,
                                const GmmParams& params) {
    std::string faiss_description;
    CovarianceType type;
    if (!parse_gmm_description(description, &faiss_description, &type)) {
        throw std::invalid_argument("gmm_index_factory: \"" + description +
                                    "\" has no IVF<nlist>_GMM or IVF<nlist>_GMMdiag token "
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
    GmmParams p = params;
    p.covariance_type = type;
    install_gmm_quantizer(index.get(), p);
    return index.release();
}

} // namespace faiss_gmm
