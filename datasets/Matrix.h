// A dense row-major matrix that owns its values: the in-memory form of the
// vector, id and distance files the dataset tools read and write. Large inputs
// should stay behind a VectorSource (memory-mapped); this is for what fits.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace faiss_gmm {
namespace datasets {

template <typename T>
struct Matrix {
    int64_t n = 0;       ///< rows
    int64_t d = 0;       ///< columns (vector dimension, or k for id / distance files)
    std::vector<T> data; ///< n * d values, row-major

    Matrix() = default;
    Matrix(int64_t n, int64_t d) : n(n), d(d), data(size_t(n) * size_t(d)) {
        if (n < 0 || d < 0) {
            throw std::invalid_argument("Matrix: negative shape " + std::to_string(n) + " x " +
                                        std::to_string(d));
        }
    }
    T* row(int64_t i) { return data.data() + size_t(i) * size_t(d); }
    const T* row(int64_t i) const { return data.data() + size_t(i) * size_t(d); }
    T& at(int64_t i, int64_t j) { return data[size_t(i) * size_t(d) + size_t(j)]; }
    const T& at(int64_t i, int64_t j) const { return data[size_t(i) * size_t(d) + size_t(j)]; }
    bool empty() const { return n == 0; }
};

using FloatMatrix = Matrix<float>;
using ByteMatrix = Matrix<uint8_t>;
using IntMatrix = Matrix<int32_t>;

} // namespace datasets
} // namespace faiss_gmm
