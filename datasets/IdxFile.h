// IDX files (MNIST, Fashion-MNIST), gzipped or not: magic 0x00 0x00 type ndim,
// then ndim big-endian int32 dimensions, then the values. Only unsigned-byte
// data (type 0x08) is used by these datasets and supported. Images come back as
// one row per item (d = product of the other dimensions, 784 for 28 x 28).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "Matrix.h"

namespace faiss_gmm {
namespace datasets {

/// Reads a (gzipped) IDX file of unsigned bytes: n = first dimension, d = the
/// product of the others (1 for label files). dims (optional) gets the header's
/// dimensions. Throws std::runtime_error on a bad magic, unsupported type,
/// truncated data or trailing bytes; memory grows with the data actually
/// decompressed, never with the header's claim alone.
ByteMatrix read_idx_gz(const std::string& path, std::vector<int64_t>* dims = nullptr);

/// Writes an IDX file of unsigned bytes, gzipped (level 6) unless the path does
/// not end in ".gz". prod(dims) must equal x.size().
void write_idx_gz(const std::string& path, const std::vector<int64_t>& dims, const std::vector<uint8_t>& x);

} // namespace datasets
} // namespace faiss_gmm
