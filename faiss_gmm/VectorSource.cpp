#include "VectorSource.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include "ParallelRanges.h"

namespace faiss_gmm {

size_t element_size(DataType t) {
    switch (t) {
        case DataType::Float32: return 4;
        case DataType::UInt8: return 1;
        case DataType::Float64: return 8;
    }
    throw std::invalid_argument("unknown DataType");
}

const char* to_string(DataType t) {
    switch (t) {
        case DataType::Float32: return "float32";
        case DataType::UInt8: return "uint8";
        case DataType::Float64: return "float64";
    }
    return "unknown";
}

void VectorBlock::row_to_float(int64_t i, float* out) const {
    if (type == DataType::Float32) {
        std::memcpy(out, row(i), sizeof(float) * d);
    } else if (type == DataType::Float64) {
        const double* r = static_cast<const double*>(static_cast<const void*>(row(i)));
        for (int64_t j = 0; j < d; j++) {
            out[j] = float(r[j]);
        }
    } else {
        const uint8_t* r = row(i);
        for (int64_t j = 0; j < d; j++) {
            out[j] = float(r[j]);
        }
    }
}

VectorBlock VectorBlock::slice(int64_t i0, int64_t count) const {
    if (i0 < 0 || count < 0 || i0 > n || count > n - i0) {
        throw std::out_of_range("VectorBlock::slice: rows [" + std::to_string(i0) + ", " + std::to_string(i0 + count) +
                                ") out of range (the block has " + std::to_string(n) + " rows)");
    }
    return VectorBlock{row(i0), type, count, d};
}

void VectorSource::check_range(int64_t i0, int64_t n) const {
    if (i0 < 0 || n < 0 || i0 > ntotal() || n > ntotal() - i0) {
        throw std::out_of_range("VectorSource: rows [" + std::to_string(i0) + ", " +
                                std::to_string(i0 + n) + ") out of range (ntotal = " +
                                std::to_string(ntotal()) + ")");
    }
}

// ---------------------------------------------------------------- memory

MemoryVectorSource::MemoryVectorSource(int64_t n, int64_t d, const float* x)
        : MemoryVectorSource(VectorBlock{x, DataType::Float32, n, d}) {}

MemoryVectorSource::MemoryVectorSource(int64_t n, int64_t d, const uint8_t* x)
        : MemoryVectorSource(VectorBlock{x, DataType::UInt8, n, d}) {}

MemoryVectorSource::MemoryVectorSource(const VectorBlock& block) : block_(block) {
    if (block.n < 0 || block.d < 1) {
        throw std::invalid_argument("MemoryVectorSource: need n >= 0 and d >= 1, got n = " +
                                    std::to_string(block.n) + ", d = " + std::to_string(block.d));
    }
    if (block.n > 0 && block.data == nullptr) {
        throw std::invalid_argument("MemoryVectorSource: null data pointer");
    }
}

VectorBlock MemoryVectorSource::read(int64_t i0, int64_t n, std::vector<uint8_t>&) const {
    check_range(i0, n);
    return block_.slice(i0, n);
}

// ---------------------------------------------------------------- float64

Float64VectorSource::Float64VectorSource(int64_t n, int64_t d, const double* x) : n_(n), d_(d), x_(x) {
    if (n < 0 || d < 1) {
        throw std::invalid_argument("Float64VectorSource: need n >= 0 and d >= 1, got n = " + std::to_string(n) +
                                    ", d = " + std::to_string(d));
    }
    if (n > 0 && x == nullptr) throw std::invalid_argument("Float64VectorSource: null data pointer");
}

VectorBlock Float64VectorSource::read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const {
    check_range(i0, n);
    scratch.resize(size_t(n) * d_ * sizeof(float));
    float* out = static_cast<float*>(static_cast<void*>(scratch.data())); // std::vector storage: aligned for float
    const double* in = x_ + size_t(i0) * d_;
    const int64_t total = n * d_;
    // In parallel: the trainer reads chunks from one thread between E-steps, and
    // a serial conversion would leave the other cores idle every chunk. Threads of
    // our own (the core links no OpenMP runtime), only where a chunk is large
    // enough to pay for starting them (~10 µs each against ~1 ns per element).
    parallel_ranges(total, int64_t(1) << 16, [&](int64_t a, int64_t b) {
        for (int64_t i = a; i < b; i++) out[i] = float(in[i]);
    });
    return VectorBlock{scratch.data(), DataType::Float32, n, d_};
}

// ---------------------------------------------------------------- row range

RowRangeSource::RowRangeSource(const VectorSource& base, int64_t begin, int64_t count)
        : base_(base), begin_(begin), count_(count) {
    if (begin < 0 || count < 0 || begin > base.ntotal() || count > base.ntotal() - begin) {
        throw std::out_of_range("RowRangeSource: rows [" + std::to_string(begin) + ", " +
                                std::to_string(begin + count) + ") out of range (ntotal = " +
                                std::to_string(base.ntotal()) + ")");
    }
}

VectorBlock RowRangeSource::read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const {
    check_range(i0, n);
    return base_.read(begin_ + i0, n, scratch);
}

std::vector<int64_t> sample_rows(int64_t N, int64_t m, int64_t seed, int64_t begin, int64_t end) {
    std::mt19937_64 rng{uint64_t(seed)};
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<int64_t> rows;
    int64_t selected = 0;
    // Row i is taken with probability (rows still wanted) / (rows left): every
    // row before `end` costs one draw, whoever keeps it, so all ranks see the
    // same stream of draws.
    for (int64_t i = 0; i < std::min(N, end) && selected < m; i++) {
        if (double(N - i) * u(rng) < double(m - selected)) {
            selected++;
            if (i >= begin) rows.push_back(i);
        }
    }
    return rows;
}

// ---------------------------------------------------------------- mmap

MappedFile::MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) {
        throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        throw std::runtime_error("cannot stat " + path + ": " + std::strerror(e));
    }
    size_ = size_t(st.st_size);
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            ::close(fd);
            throw std::runtime_error("cannot mmap " + path + ": " + std::strerror(e));
        }
        data_ = static_cast<const uint8_t*>(p);
        // Training reads files front to back, chunk after chunk.
        ::madvise(p, size_, MADV_SEQUENTIAL);
    }
    ::close(fd);
}

MappedFile::~MappedFile() {
    if (data_) {
        ::munmap(const_cast<uint8_t*>(data_), size_);
    }
}

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

DataType vecs_type_from_extension(const std::string& path) {
    if (ends_with(path, ".fvecs")) return DataType::Float32;
    if (ends_with(path, ".bvecs")) return DataType::UInt8;
    throw std::invalid_argument("VecsFileSource: cannot tell the element type of " + path +
                                " (expected a .fvecs or .bvecs extension)");
}

int32_t read_dim(const uint8_t* p) {
    int32_t d;
    std::memcpy(&d, p, sizeof(d));
    return d;
}
} // namespace

VecsFileSource::VecsFileSource(const std::string& path)
        : VecsFileSource(path, vecs_type_from_extension(path)) {}

VecsFileSource::VecsFileSource(const std::string& path, DataType type)
        : file_(std::make_shared<MappedFile>(path)), type_(type) {
    const size_t size = file_->size();
    if (size < 4) {
        throw std::runtime_error(path + ": file is empty or shorter than one record header (" +
                                 std::to_string(size) + " bytes)");
    }
    const int32_t d = read_dim(file_->data());
    // 1<<20 dimensions is far beyond any ANN data set: a larger value is a corrupt
    // header (or a file of another format), not a reason to trust it.
    if (d <= 0 || d > (1 << 20)) {
        throw std::runtime_error(path + ": invalid dimension " + std::to_string(d) +
                                 " in the first record header");
    }
    d_ = d;
    record_bytes_ = 4 + size_t(d) * element_size(type);
    if (size % record_bytes_ != 0) {
        throw std::runtime_error(path + ": size " + std::to_string(size) +
                                 " bytes is not a whole number of " + std::to_string(record_bytes_) +
                                 "-byte records (d = " + std::to_string(d) + ", " + to_string(type) +
                                 "): truncated file or wrong element type");
    }
    n_ = int64_t(size / record_bytes_);
    const int32_t d_last = read_dim(file_->data() + (n_ - 1) * record_bytes_);
    if (d_last != d) {
        throw std::runtime_error(path + ": last record has dimension " + std::to_string(d_last) +
                                 ", first has " + std::to_string(d) + ": inconsistent or wrong element type");
    }
}

VectorBlock VecsFileSource::read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const {
    check_range(i0, n);
    const size_t row_bytes = size_t(d_) * element_size(type_);
    scratch.resize(size_t(n) * row_bytes);
    const uint8_t* base = file_->data() + size_t(i0) * record_bytes_;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t* rec = base + size_t(i) * record_bytes_;
        if (read_dim(rec) != d_) {
            throw std::runtime_error(file_->path() + ": record " + std::to_string(i0 + i) +
                                     " has dimension " + std::to_string(read_dim(rec)) + ", expected " +
                                     std::to_string(d_));
        }
        std::memcpy(scratch.data() + size_t(i) * row_bytes, rec + 4, row_bytes);
    }
    return VectorBlock{scratch.data(), type_, n, d_};
}

void read_as_float(const VectorSource& src, int64_t i0, int64_t n, float* out) {
    std::vector<uint8_t> scratch;
    VectorBlock b = src.read(i0, n, scratch);
    for (int64_t i = 0; i < n; i++) {
        b.row_to_float(i, out + size_t(i) * b.d);
    }
}

std::vector<float> read_rows_as_float(const VectorSource& src, const std::vector<int64_t>& rows) {
    const size_t d = size_t(src.d());
    std::vector<float> out(rows.size() * d);
    std::vector<uint8_t> scratch;
    for (size_t i = 0; i < rows.size(); i++) src.read(rows[i], 1, scratch).row_to_float(0, out.data() + i * d);
    return out;
}

void check_finite(const VectorBlock& block, int64_t row_offset) {
    if (block.type == DataType::Float64) {
        // Finite doubles beyond float's range would become infinite in the E-step.
        const double* x = static_cast<const double*>(block.data);
        const size_t total = size_t(block.n) * block.d;
        for (size_t i = 0; i < total; i++) {
            if (!(std::fabs(x[i]) <= double(std::numeric_limits<float>::max()))) {
                throw std::invalid_argument("input row " + std::to_string(row_offset + int64_t(i / block.d)) +
                                            ", column " + std::to_string(i % block.d) + " is " +
                                            (std::isnan(x[i]) ? "NaN" : std::isinf(x[i]) ? "infinite" : "beyond the float32 range") +
                                            ": the data must be finite (and within float32's range)");
            }
        }
        return;
    }
    if (block.type != DataType::Float32) {
        return;
    }
    const float* x = static_cast<const float*>(block.data);
    const size_t total = size_t(block.n) * block.d;
    for (size_t i = 0; i < total; i++) {
        if (!std::isfinite(x[i])) {
            throw std::invalid_argument("input row " + std::to_string(row_offset + int64_t(i / block.d)) +
                                        ", column " + std::to_string(i % block.d) + " is " +
                                        (std::isnan(x[i]) ? "NaN" : "infinite") +
                                        ": the data must be finite");
        }
    }
}

} // namespace faiss_gmm
