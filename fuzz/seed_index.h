// The fixed GMM-IVF index that fuzz_gmm_trailer puts in front of its inputs and
// make_fuzz_corpus uses for the trailer seeds: built from a hand-made model, no
// training, so its bytes are the same on every machine and thread count.
#pragma once

#include <faiss/IndexIVF.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <faiss_gmm/GmmModel.h>
#include <faiss_gmm/GmmQuantizer.h>
#include <faiss_gmm/gmm_index_factory.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace faiss_gmm::fuzz {

/// spill: the same IVF wrapped as an IndexIVFSpill ("_post_spill1.2": the posterior rule, what
/// "_spill1.2" meant on a GMM when the committed corpus and tests/data files were written), whose
/// file has the same FAISS part followed by the GMM trailer and the spill trailer.
inline std::unique_ptr<faiss::Index> seed_index(CovarianceType type = CovarianceType::Spherical,
                                                bool spill = false) {
    const int K = 8, d = 4;
    GmmModel m(K, d, type);
    for (int k = 0; k < K; k++) {
        m.log_weights[k] = std::log(1.0f / K);
        for (int j = 0; j < d; j++) m.means[k * d + j] = float(k) + 0.25f * float(j);
    }
    if (type == CovarianceType::Full) {
        for (int k = 0; k < K; k++) { // Σ = 0.5·I + 0.1 (ones): positive definite
            double cov[d * d];
            for (int i = 0; i < d * d; i++) cov[i] = (i % (d + 1) == 0 ? 0.5 : 0.0) + 0.1;
            m.set_covariance(k, cov);
        }
    } else {
        for (size_t i = 0; i < m.variances.size(); i++) m.variances[i] = 0.5f + 0.125f * float(i % 5);
    }
    std::string desc = type == CovarianceType::Diagonal ? "IVF8_GMMdiag" : type == CovarianceType::Full ? "IVF8_GMMfull" : "IVF8_GMM";
    desc += spill ? "_post_spill1.2,Flat" : ",Flat";
    std::unique_ptr<faiss::Index> index(gmm_index_factory(d, desc));
    find_gmm_quantizer(index.get())->set_model(m);
    find_ivf(index.get())->is_trained = true;
    index->is_trained = true;
    return index;
}

/// The FAISS part alone (what faiss::write_index writes).
inline std::vector<uint8_t> faiss_bytes(const faiss::Index* index) {
    faiss::VectorIOWriter w;
    faiss::write_index(index, &w);
    return w.data;
}

} // namespace faiss_gmm::fuzz
