// Parameters of GMM training: a plain struct with documented defaults, in the
// style of faiss::ClusteringParameters (same names where the concept is the same).
#pragma once

#include <cstdint>
#include <string>

namespace faiss_gmm {

/// Shape of each component's covariance matrix.
enum class CovarianceType : int {
    Spherical = 0, ///< one variance per component: Σ_k = σ_k² I
    Diagonal = 1,  ///< one variance per component and dimension: Σ_k = diag(σ_k²)
    Full = 2,      ///< a full d × d covariance per component, kept as the Cholesky factor of its precision
};

/// How the initial means are chosen (weights and variances follow from a hard
/// assignment of the training sample to those means).
enum class InitMethod : int {
    FaissKMeans = 0,   ///< a few iterations of faiss::Clustering (k-means)
    KMeansPlusPlus = 1,///< k-means++ seeding (D² sampling)
    Given = 2,         ///< the caller supplies a complete initial GmmModel
};

/// Which E-step backend runs the iterations.
enum class Device : int {
    Cpu = 0,  ///< the blocked BLAS backend (EStepCpu)
    Cuda = 1, ///< the CUDA backend; an error when none is built or no GPU is present
    Auto = 2, ///< CUDA when built and a GPU is present, otherwise CPU
};

const char* to_string(CovarianceType t);
const char* to_string(InitMethod m);
const char* to_string(Device d);

struct GmmParams {
    CovarianceType covariance_type = CovarianceType::Spherical; ///< spherical, diagonal or full covariances
    int niter = 25;        ///< maximum number of EM iterations (FAISS k-means default)
    double tol = 1e-3;     ///< stop when the mean log-likelihood per vector changes by less (absolute, as scikit-learn); 0 = run all niter
    int64_t seed = 1234;   ///< seed for subsampling, initialization and re-seeding

    InitMethod init = InitMethod::FaissKMeans; ///< how the initial means are chosen
    int init_niter = 10;   ///< k-means iterations when init == FaissKMeans

    int max_points_per_centroid = 256; ///< subsample the training set to K * this many rows (0 = use all rows), as FAISS
    int min_points_per_centroid = 39;  ///< warn (verbose) when fewer rows than K * this are given, as FAISS

    double min_variance_ratio = 1e-3;  ///< variance floor, relative to the data's mean per-dimension variance
    double reg_covar = 0.0;            ///< absolute value added to every variance estimate (full: to the covariance's diagonal; scikit-learn's reg_covar)
    double min_component_weight = 0.0; ///< a component with fewer than max(1e-3, this * N) rows of mass is re-seeded

    Device device = Device::Cpu;       ///< E-step backend
    bool fast_math = false;            ///< GPU only: tensor-core products with fp32 accumulation (fp16 Hopper kernel for spherical d <= 128 on H100/H200, else TF32; relative error ~1e-3) instead of fp32-accurate (~1e-5)

    int64_t chunk_size = 1 << 16;      ///< rows read from a VectorSource per chunk (bounds memory when streaming)
    int block_size = 256;              ///< rows per CPU E-step block (memory O(block_size * K) per thread)

    bool verbose = false;              ///< print per-iteration statistics to stdout

    /// Throws std::invalid_argument naming the first parameter out of range.
    void validate() const;
};

} // namespace faiss_gmm
