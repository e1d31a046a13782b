// ann-benchmarks HDF5 files (http://ann-benchmarks.com/*.hdf5): datasets
// "train" (base vectors), "test" (queries), "neighbors" (int32 ids of the 100
// nearest) and "distances" (float32), and a string attribute "distance"
// ("euclidean", "angular", ...). Row ranges are read with hyperslabs, so a slice
// of a large file costs only that slice. Needs HDF5 at build time
// (FAISS_GMM_WITH_HDF5); without it every function throws std::runtime_error.
#pragma once

#include <cstdint>
#include <string>

#include "Matrix.h"

namespace faiss_gmm {
namespace datasets {

/// True when this build can read HDF5.
bool hdf5_available();

/// Shape of a 2-d dataset (a 1-d dataset has d = 1).
void hdf5_shape(const std::string& path, const std::string& name, int64_t* n, int64_t* d);

/// Rows [i0, i0 + n) (n < 0: to the end) of a 2-d numeric dataset, converted by
/// HDF5 to float32 / int32.
FloatMatrix read_hdf5_float(const std::string& path, const std::string& name, int64_t i0 = 0, int64_t n = -1);
IntMatrix read_hdf5_int(const std::string& path, const std::string& name, int64_t i0 = 0, int64_t n = -1);

/// A string attribute of the root group ("" when absent).
std::string read_hdf5_attribute(const std::string& path, const std::string& name);

/// The content of an ann-benchmarks file.
struct AnnBenchmarksData {
    FloatMatrix train;     ///< base vectors
    FloatMatrix test;      ///< queries
    IntMatrix neighbors;   ///< ground-truth ids, nearest first
    FloatMatrix distances; ///< ground-truth distances (the file's metric: L2, or 1 - cos for angular)
    std::string distance;  ///< metric name from the "distance" attribute
};

/// Reads a whole ann-benchmarks file (train can be skipped: it is the big part).
AnnBenchmarksData read_ann_benchmarks(const std::string& path, bool with_train = true);

/// Writes a file in the same layout (string attribute as variable-length UTF-8,
/// as h5py writes it). Empty matrices are not written.
void write_ann_benchmarks(const std::string& path, const AnnBenchmarksData& data);

} // namespace datasets
} // namespace faiss_gmm
