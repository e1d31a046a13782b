// TEXMEX .fvecs / .bvecs / .ivecs files (each record: int32 d, then d float32 /
// uint8 / int32 values, little-endian). Vector files are read through
// faiss_gmm::VecsFileSource (memory-mapped, validated); this adds .ivecs (ground
// truth ids), row-range helpers and the writers.
#pragma once

#include <cstdint>
#include <string>

#include "Matrix.h"

namespace faiss_gmm {
namespace datasets {

/// Rows [i0, i0 + n) of a .fvecs or .bvecs file, as float (n < 0: to the end).
FloatMatrix read_fvecs(const std::string& path, int64_t i0 = 0, int64_t n = -1);
/// Rows [i0, i0 + n) of a .bvecs file, as uint8.
ByteMatrix read_bvecs(const std::string& path, int64_t i0 = 0, int64_t n = -1);
/// Rows [i0, i0 + n) of an .ivecs file. The file is memory-mapped and validated
/// (whole number of records, plausible d) before anything is allocated; every
/// row's dimension field is checked.
IntMatrix read_ivecs(const std::string& path, int64_t i0 = 0, int64_t n = -1);

/// Shape of an .ivecs file without reading it (validated as read_ivecs does).
void ivecs_shape(const std::string& path, int64_t* n, int64_t* d);

/// Writers. They throw std::runtime_error when the file cannot be written
/// completely (disk full, bad path) and std::invalid_argument for d < 1.
void write_fvecs(const std::string& path, int64_t n, int64_t d, const float* x);
void write_bvecs(const std::string& path, int64_t n, int64_t d, const uint8_t* x);
void write_ivecs(const std::string& path, int64_t n, int64_t d, const int32_t* x);

/// Largest dimension accepted from a file header: larger values are taken as a
/// corrupt header, not as a request to allocate.
constexpr int64_t kMaxFileDim = 1 << 20;

/// Resolves a row range [i0, i0 + n) against ntotal rows (n < 0 = to the end);
/// throws std::out_of_range naming the file when it does not fit.
int64_t resolve_row_range(const std::string& path, int64_t ntotal, int64_t i0, int64_t n);

} // namespace datasets
} // namespace faiss_gmm
