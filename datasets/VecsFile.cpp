#include "VecsFile.h"

#include <algorithm>
#include <cstdio>
#include <type_traits>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <faiss_gmm/VectorSource.h>

#include "FileWriter.h"

namespace faiss_gmm {
namespace datasets {

int64_t resolve_row_range(const std::string& path, int64_t ntotal, int64_t i0, int64_t n) {
    if (n < 0) {
        n = ntotal - i0;
    }
    if (i0 < 0 || n < 0 || i0 > ntotal || n > ntotal - i0) {
        throw std::out_of_range(path + ": rows [" + std::to_string(i0) + ", " +
                                std::to_string(i0 + n) + ") out of range, the file has " +
                                std::to_string(ntotal) + " rows");
    }
    return n;
}

namespace {

template <typename T>
Matrix<T> read_vecs_source(const std::string& path, DataType type, int64_t i0, int64_t n) {
    VecsFileSource src(path, type);
    n = resolve_row_range(path, src.ntotal(), i0, n);
    Matrix<T> m(n, src.d());
    if (n == 0) {
        return m;
    }
    std::vector<uint8_t> scratch;
    // Read in chunks so the scratch copy stays small for big files.
    const int64_t chunk = 1 << 14;
    for (int64_t r = 0; r < n; r += chunk) {
        int64_t nr = std::min(chunk, n - r);
        VectorBlock b = src.read(i0 + r, nr, scratch);
        if constexpr (std::is_same<T, float>::value) {
            for (int64_t i = 0; i < nr; i++) {
                b.row_to_float(i, m.row(r + i));
            }
        } else {
            std::memcpy(m.row(r), b.data, size_t(nr) * b.row_bytes());
        }
    }
    return m;
}

// Validates the layout of an .ivecs file mapped in memory and returns (n, d).
void check_ivecs(const MappedFile& f, int64_t* n_out, int64_t* d_out) {
    const std::string& path = f.path();
    if (f.size() == 0) {
        *n_out = 0;
        *d_out = 0;
        return;
    }
    if (f.size() < 4) {
        throw std::runtime_error(path + ": truncated .ivecs file (" + std::to_string(f.size()) +
                                 " bytes, less than one header)");
    }
    int32_t d;
    std::memcpy(&d, f.data(), 4);
    if (d < 1 || d > kMaxFileDim) {
        throw std::runtime_error(path + ": corrupt .ivecs header: dimension " + std::to_string(d));
    }
    size_t record = 4 + size_t(d) * 4;
    if (f.size() % record != 0) {
        throw std::runtime_error(path + ": truncated or inconsistent .ivecs file: " +
                                 std::to_string(f.size()) + " bytes is not a multiple of the " +
                                 std::to_string(record) + "-byte record of d = " + std::to_string(d));
    }
    int64_t n = f.size() / record;
    int32_t dlast;
    std::memcpy(&dlast, f.data() + (n - 1) * record, 4);
    if (dlast != d) {
        throw std::runtime_error(path + ": inconsistent .ivecs file: last record has d = " +
                                 std::to_string(dlast) + ", first has " + std::to_string(d));
    }
    *n_out = n;
    *d_out = d;
}

} // namespace

FloatMatrix read_fvecs(const std::string& path, int64_t i0, int64_t n) {
    // The element type comes from the extension (.fvecs / .bvecs), as VecsFileSource does.
    bool is_b = path.size() >= 6 && path.compare(path.size() - 6, 6, ".bvecs") == 0;
    return read_vecs_source<float>(path, is_b ? DataType::UInt8 : DataType::Float32, i0, n);
}

ByteMatrix read_bvecs(const std::string& path, int64_t i0, int64_t n) {
    return read_vecs_source<uint8_t>(path, DataType::UInt8, i0, n);
}

void ivecs_shape(const std::string& path, int64_t* n, int64_t* d) {
    MappedFile f(path);
    check_ivecs(f, n, d);
}

IntMatrix read_ivecs(const std::string& path, int64_t i0, int64_t n) {
    MappedFile f(path);
    int64_t ntotal, d;
    check_ivecs(f, &ntotal, &d);
    n = resolve_row_range(path, ntotal, i0, n);
    IntMatrix m(n, d);
    size_t record = 4 + size_t(d) * 4;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t* rec = f.data() + size_t(i0 + i) * record;
        int32_t di;
        std::memcpy(&di, rec, 4);
        if (di != d) {
            throw std::runtime_error(path + ": inconsistent .ivecs file: record " +
                                     std::to_string(i0 + i) + " has d = " + std::to_string(di) +
                                     ", expected " + std::to_string(d));
        }
        std::memcpy(m.row(i), rec + 4, size_t(d) * 4);
    }
    return m;
}

namespace {

void write_vecs(const std::string& path, int64_t n, int64_t d, const void* x, size_t elsize) {
    if (d < 1 || d > kMaxFileDim || n < 0) {
        throw std::invalid_argument(path + ": cannot write vecs with n = " + std::to_string(n) +
                                    ", d = " + std::to_string(d));
    }
    FileWriter w(path);
    int32_t d32 = int32_t(d);
    const uint8_t* p = static_cast<const uint8_t*>(x);
    for (int64_t i = 0; i < n; i++) {
        w.write(&d32, 4);
        w.write(p + size_t(i) * d * elsize, size_t(d) * elsize);
    }
    w.close();
}

} // namespace

void write_fvecs(const std::string& path, int64_t n, int64_t d, const float* x) {
    write_vecs(path, n, d, x, 4);
}
void write_bvecs(const std::string& path, int64_t n, int64_t d, const uint8_t* x) {
    write_vecs(path, n, d, x, 1);
}
void write_ivecs(const std::string& path, int64_t n, int64_t d, const int32_t* x) {
    write_vecs(path, n, d, x, 4);
}

} // namespace datasets
} // namespace faiss_gmm
