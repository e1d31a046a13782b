#include "GmmParams.h"

#include <stdexcept>
#include <string>

namespace faiss_gmm {

const char* to_string(CovarianceType t) {
    switch (t) {
        case CovarianceType::Spherical: return "spherical";
        case CovarianceType::Diagonal: return "diagonal";
        case CovarianceType::Full: return "full";
    }
    return "unknown";
}

const char* to_string(InitMethod m) {
    switch (m) {
        case InitMethod::FaissKMeans: return "faiss_kmeans";
        case InitMethod::KMeansPlusPlus: return "kmeans++";
        case InitMethod::Given: return "given";
    }
    return "unknown";
}

const char* to_string(Device d) {
    switch (d) {
        case Device::Cpu: return "cpu";
        case Device::Cuda: return "cuda";
        case Device::Auto: return "auto";
    }
    return "unknown";
}

namespace {
void require(bool ok, const std::string& what) {
    if (!ok) {
        throw std::invalid_argument("GmmParams: " + what);
    }
}
} // namespace

void GmmParams::validate() const {
    require(covariance_type == CovarianceType::Spherical ||
                    covariance_type == CovarianceType::Diagonal || covariance_type == CovarianceType::Full,
            "unknown covariance_type");
    require(niter >= 0, "niter must be >= 0, got " + std::to_string(niter));
    require(tol >= 0, "tol must be >= 0, got " + std::to_string(tol));
    require(init == InitMethod::FaissKMeans || init == InitMethod::KMeansPlusPlus ||
                    init == InitMethod::Given,
            "unknown init method");
    require(init_niter >= 0, "init_niter must be >= 0");
    require(max_points_per_centroid >= 0, "max_points_per_centroid must be >= 0 (0 = no subsampling)");
    require(min_points_per_centroid >= 0, "min_points_per_centroid must be >= 0");
    require(min_variance_ratio >= 0 && min_variance_ratio < 1,
            "min_variance_ratio must be in [0, 1), got " + std::to_string(min_variance_ratio));
    require(reg_covar >= 0, "reg_covar must be >= 0, got " + std::to_string(reg_covar));
    require(min_component_weight >= 0 && min_component_weight < 1,
            "min_component_weight must be in [0, 1)");
    require(device == Device::Cpu || device == Device::Cuda || device == Device::Auto,
            "unknown device");
    require(chunk_size >= 1, "chunk_size must be >= 1");
    require(block_size >= 1, "block_size must be >= 1");
}

} // namespace faiss_gmm
