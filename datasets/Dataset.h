// One entry point for the file formats: open any supported vector file as a
// VectorSource (by extension), read vectors or ids as matrices, and load an
// evaluation dataset (base, queries, ground truth, metric), including the
// named sets of ../shared/datasets and Debian's Fashion-MNIST.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <faiss_gmm/VectorSource.h>

#include "GroundTruth.h"
#include "Matrix.h"

namespace faiss_gmm {
namespace datasets {

/// A VectorSource that owns its rows (for formats read into memory: IDX, HDF5).
class MatrixSource : public VectorSource {
  public:
    explicit MatrixSource(FloatMatrix m);
    explicit MatrixSource(ByteMatrix m);
    int64_t ntotal() const override { return n_; }
    int64_t d() const override { return d_; }
    DataType type() const override { return type_; }
    VectorBlock read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const override;

  private:
    FloatMatrix f_;
    ByteMatrix b_;
    DataType type_;
    int64_t n_ = 0, d_ = 0;
};

/// Opens a vector file by its extension:
///   .fvecs / .bvecs          memory-mapped (faiss_gmm::VecsFileSource)
///   .fbin / .u8bin           memory-mapped (BinFileSource)
///   .gz / .idx / *-ubyte     IDX (MNIST), read into memory
///   file.hdf5[:dataset]      HDF5 dataset (default "train"), read into memory
/// Throws std::invalid_argument for an unknown extension.
std::unique_ptr<VectorSource> open_vectors(const std::string& spec);

/// Opens a .fvecs, .bvecs, .fbin or .u8bin file memory-mapped: nothing is read
/// until rows are (a distributed rank reads only its own). Throws
/// std::invalid_argument for the formats open_vectors reads into memory.
std::unique_ptr<VectorSource> open_mapped_vectors(const std::string& path);

/// Rows [i0, i0 + n) (n < 0: to the end) of any vector file, as float.
FloatMatrix read_vectors(const std::string& spec, int64_t i0 = 0, int64_t n = -1);

/// Rows of an id file: .ivecs, .ibin, a big-ann ground-truth .bin, or
/// file.hdf5[:dataset] (default "neighbors").
IntMatrix read_ids(const std::string& spec, int64_t i0 = 0, int64_t n = -1);

/// Writes vectors by extension (.fvecs, .bvecs, .fbin, .u8bin; uint8 formats
/// require values that are integers in 0..255, else std::invalid_argument).
void write_vectors(const std::string& path, const FloatMatrix& x);
/// Writes ids by extension (.ivecs, .ibin).
void write_ids(const std::string& path, const IntMatrix& ids);

/// Where a dataset's files are and how it is searched.
struct DatasetSpec {
    std::string name;            ///< label in reports
    std::string base;            ///< base vectors (any format open_vectors takes)
    std::string queries;         ///< query vectors
    std::string groundtruth;     ///< ids of the exact neighbours ("" = compute them)
    Metric metric = Metric::L2;  ///< search metric (Angular: vectors are normalized on load, then L2)
    int64_t max_base = 0;        ///< use only the first max_base base rows (0 = all; ground truth is then recomputed)
    int64_t max_queries = 0;     ///< use only the first max_queries queries (0 = all)
    int gt_k = 100;              ///< neighbours to compute when ground truth is computed
};

/// A dataset in memory, ready for FAISS.
struct Dataset {
    std::string name;
    Metric metric = Metric::L2;  ///< the metric of the ground truth (see index_metric())
    FloatMatrix base;            ///< normalized for Angular
    FloatMatrix queries;         ///< normalized for Angular
    IntMatrix groundtruth;       ///< nq x k ids, nearest first
    bool groundtruth_computed = false; ///< true when computed here rather than read from a file
    double groundtruth_time_s = 0;     ///< time to compute it (0 when read)

    int64_t d() const { return base.d; }
    /// The metric a FAISS index for this dataset uses: Angular data is normalized, so L2.
    Metric index_metric() const { return metric == Metric::InnerProduct ? Metric::InnerProduct : Metric::L2; }
};

/// Loads a dataset; checks shapes (same d, ground-truth rows = queries, ids in
/// range) and finiteness, and computes the ground truth when none is given.
Dataset load_dataset(const DatasetSpec& spec, bool verbose = false);

/// Built-in dataset names: siftsmall, bigann10k, glove25-angular, glove25-l2
/// (under shared_root, normally <project>/../shared/datasets) and fashion-mnist
/// (Debian's dataset-fashion-mnist package: 60K train images as base, the 10K
/// test images as queries, ground truth computed).
std::vector<std::string> named_datasets();
DatasetSpec named_dataset(const std::string& name, const std::string& shared_root);

/// Debian's Fashion-MNIST location.
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

} // namespace datasets
} // namespace faiss_gmm
