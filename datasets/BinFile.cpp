#include "BinFile.h"

#include <cstring>
#include <stdexcept>

#include "FileWriter.h"
#include "VecsFile.h"

namespace faiss_gmm {
namespace datasets {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

DataType type_from_extension(const std::string& path) {
    if (ends_with(path, ".fbin")) {
        return DataType::Float32;
    }
    if (ends_with(path, ".u8bin")) {
        return DataType::UInt8;
    }
    throw std::invalid_argument(path + ": unknown extension for a vector .bin file (expected .fbin or .u8bin)");
}

// Reads and checks the (n, d) header of a .bin file of elsize-byte values.
// Returns the number of whole rows present (== header n unless allow_prefix).
void check_bin_header(const MappedFile& f, size_t elsize, bool allow_prefix, int64_t* n_out,
                      int64_t* d_out, int64_t* header_n_out) {
    const std::string& path = f.path();
    if (f.size() < 8) {
        throw std::runtime_error(path + ": truncated .bin file (" + std::to_string(f.size()) +
                                 " bytes, the header alone is 8)");
    }
    int32_t n, d;
    std::memcpy(&n, f.data(), 4);
    std::memcpy(&d, f.data() + 4, 4);
    if (n < 0 || d < 1 || d > kMaxFileDim) {
        throw std::runtime_error(path + ": corrupt .bin header: n = " + std::to_string(n) +
                                 ", d = " + std::to_string(d));
    }
    size_t row = size_t(d) * elsize;
    size_t payload = f.size() - 8;
    size_t expected = size_t(n) * row;
    int64_t rows = n;
    if (payload != expected) {
        if (allow_prefix && payload < expected) {
            rows = int64_t(payload / row); // trailing partial row ignored
        } else {
            throw std::runtime_error(path + ": inconsistent .bin file: header says " +
                                     std::to_string(n) + " x " + std::to_string(d) + " (" +
                                     std::to_string(expected) + " bytes of data) but the file has " +
                                     std::to_string(payload) + (payload < expected ? " (truncated)" : ""));
        }
    }
    *n_out = rows;
    *d_out = d;
    *header_n_out = n;
}

} // namespace

BinFileSource::BinFileSource(const std::string& path, bool allow_prefix)
        : BinFileSource(path, type_from_extension(path), allow_prefix) {}

BinFileSource::BinFileSource(const std::string& path, DataType type, bool allow_prefix)
        : file_(std::make_shared<MappedFile>(path)), type_(type) {
    check_bin_header(*file_, element_size(type), allow_prefix, &n_, &d_, &header_n_);
}

VectorBlock BinFileSource::read(int64_t i0, int64_t n, std::vector<uint8_t>& /*scratch*/) const {
    check_range(i0, n);
    size_t row = size_t(d_) * element_size(type_);
    return VectorBlock{file_->data() + 8 + size_t(i0) * row, type_, n, d_};
}

IntMatrix read_ibin(const std::string& path, int64_t i0, int64_t n) {
    MappedFile f(path);
    int64_t ntotal, d, hn;
    check_bin_header(f, 4, false, &ntotal, &d, &hn);
    n = resolve_row_range(path, ntotal, i0, n);
    IntMatrix m(n, d);
    if (n > 0) { // memcpy from/to the null data() of an empty matrix is undefined
        std::memcpy(m.data.data(), f.data() + 8 + size_t(i0) * d * 4, size_t(n) * d * 4);
    }
    return m;
}

void read_bin_groundtruth(const std::string& path, IntMatrix* ids, FloatMatrix* distances) {
    MappedFile f(path);
    if (f.size() < 8) {
        throw std::runtime_error(path + ": truncated ground-truth .bin file");
    }
    int32_t n, k;
    std::memcpy(&n, f.data(), 4);
    std::memcpy(&k, f.data() + 4, 4);
    if (n < 0 || k < 1 || k > kMaxFileDim || f.size() - 8 != size_t(n) * k * 8) {
        throw std::runtime_error(path + ": inconsistent ground-truth .bin file: header n = " +
                                 std::to_string(n) + ", k = " + std::to_string(k) + ", " +
                                 std::to_string(f.size()) + " bytes (expected 8 + n*k*8)");
    }
    size_t bytes = size_t(n) * k * 4;
    // (n = 0: no memcpy, whose null pointers of empty matrices are undefined)
    if (ids) {
        *ids = IntMatrix(n, k);
        if (bytes > 0) std::memcpy(ids->data.data(), f.data() + 8, bytes);
    }
    if (distances) {
        *distances = FloatMatrix(n, k);
        if (bytes > 0) std::memcpy(distances->data.data(), f.data() + 8 + bytes, bytes);
    }
}

namespace {

void write_bin(const std::string& path, int64_t n, int64_t d, const void* x, size_t elsize,
               const void* extra = nullptr) {
    if (n < 0 || n > INT32_MAX || d < 1 || d > kMaxFileDim) {
        throw std::invalid_argument(path + ": cannot write .bin with n = " + std::to_string(n) +
                                    ", d = " + std::to_string(d));
    }
    FileWriter w(path);
    int32_t h[2] = {int32_t(n), int32_t(d)};
    w.write(h, 8);
    w.write(x, size_t(n) * d * elsize);
    if (extra) {
        w.write(extra, size_t(n) * d * elsize);
    }
    w.close();
}

} // namespace

void write_bin_groundtruth(const std::string& path, const IntMatrix& ids, const FloatMatrix& distances) {
    if (ids.n != distances.n || ids.d != distances.d) {
        throw std::invalid_argument(path + ": ids and distances differ in shape");
    }
    write_bin(path, ids.n, ids.d, ids.data.data(), 4, distances.data.data());
}

void write_fbin(const std::string& path, int64_t n, int64_t d, const float* x) {
    write_bin(path, n, d, x, 4);
}
void write_u8bin(const std::string& path, int64_t n, int64_t d, const uint8_t* x) {
    write_bin(path, n, d, x, 1);
}
void write_ibin(const std::string& path, int64_t n, int64_t d, const int32_t* x) {
    write_bin(path, n, d, x, 4);
}

} // namespace datasets
} // namespace faiss_gmm
