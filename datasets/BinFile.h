// big-ann-benchmarks binary files: a header of int32 n and int32 d, then n * d
// values (.fbin float32, .u8bin uint8, .ibin int32), little-endian, no per-row
// header. The vector files are memory-mapped VectorSources, so EM and ground
// truth can stream them; the header is checked against the file size before
// anything is trusted (no allocation sized by a header alone).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <faiss_gmm/VectorSource.h>

#include "Matrix.h"

namespace faiss_gmm {
namespace datasets {

/// A memory-mapped .fbin (float32) or .u8bin (uint8) file. Rows are contiguous,
/// so read() returns views into the mapping (no copy).
class BinFileSource : public VectorSource {
  public:
    /// The element type comes from the extension (.fbin / .u8bin) unless given.
    /// allow_prefix: accept a file shorter than its header says (a partial
    /// download of the first rows, as big-ann-benchmarks does for Deep/BIGANN
    /// subsets) and expose the whole rows present; otherwise that is an error.
    explicit BinFileSource(const std::string& path, bool allow_prefix = false);
    BinFileSource(const std::string& path, DataType type, bool allow_prefix = false);

    int64_t ntotal() const override { return n_; }
    int64_t d() const override { return d_; }
    DataType type() const override { return type_; }
    VectorBlock read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const override;

    /// The row count written in the header (may exceed ntotal() with allow_prefix).
    int64_t header_n() const { return header_n_; }

  private:
    std::shared_ptr<MappedFile> file_;
    DataType type_;
    int64_t n_ = 0;
    int64_t d_ = 0;
    int64_t header_n_ = 0;
};

/// Rows [i0, i0 + n) (n < 0: to the end) of an .ibin file.
IntMatrix read_ibin(const std::string& path, int64_t i0 = 0, int64_t n = -1);

/// big-ann-benchmarks ground truth: header n, k; then n*k int32 ids; then n*k
/// float32 distances. distances may be nullptr.
void read_bin_groundtruth(const std::string& path, IntMatrix* ids, FloatMatrix* distances);
void write_bin_groundtruth(const std::string& path, const IntMatrix& ids, const FloatMatrix& distances);

void write_fbin(const std::string& path, int64_t n, int64_t d, const float* x);
void write_u8bin(const std::string& path, int64_t n, int64_t d, const uint8_t* x);
void write_ibin(const std::string& path, int64_t n, int64_t d, const int32_t* x);

} // namespace datasets
} // namespace faiss_gmm
