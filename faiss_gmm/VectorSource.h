// Where training vectors come from: rows of float32 or uint8, held in memory or
// read chunk by chunk (e.g. from a memory-mapped .fvecs/.bvecs file), so EM can
// stream data sets that do not fit in RAM. Nothing here depends on FAISS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace faiss_gmm {

/// Element type of the stored rows.
enum class DataType : int {
    Float32 = 0,
    UInt8 = 1, ///< e.g. BIGANN .bvecs; converted to float inside the E-step
    Float64 = 2, ///< in-memory float64 arrays (numpy's default): converted block by block inside the CPU E-step
};

size_t element_size(DataType t);
const char* to_string(DataType t);

/// A non-owning view of n contiguous rows of d elements.
struct VectorBlock {
    const void* data = nullptr;
    DataType type = DataType::Float32;
    int64_t n = 0;
    int64_t d = 0;

    size_t row_bytes() const { return size_t(d) * element_size(type); }
    const uint8_t* row(int64_t i) const {
        return static_cast<const uint8_t*>(data) + size_t(i) * row_bytes();
    }
    /// Rows [i0, i0 + count) as a block of their own; std::out_of_range when they are not all rows of
    /// this block (a slice past the end would hand the E-step memory it does not own).
    VectorBlock slice(int64_t i0, int64_t count) const;
    /// Copies row i into out[0..d) as float.
    void row_to_float(int64_t i, float* out) const;
};

/// A sequence of ntotal() rows that can be read in ranges. read() must be safe to
/// call concurrently from several threads (each with its own scratch buffer).
class VectorSource {
  public:
    virtual ~VectorSource() = default;
    virtual int64_t ntotal() const = 0;
    virtual int64_t d() const = 0;
    virtual DataType type() const = 0;
    /// Rows [i0, i0 + n). The view points into the source itself when its rows
    /// are contiguous in memory, else into `scratch` (resized as needed); it stays
    /// valid until scratch is modified or the source is destroyed.
    virtual VectorBlock read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const = 0;

  protected:
    void check_range(int64_t i0, int64_t n) const;
};

/// Rows already in memory (not copied: the caller keeps them alive).
class MemoryVectorSource : public VectorSource {
  public:
    MemoryVectorSource(int64_t n, int64_t d, const float* x);
    MemoryVectorSource(int64_t n, int64_t d, const uint8_t* x);
    explicit MemoryVectorSource(const VectorBlock& block);
    int64_t ntotal() const override { return block_.n; }
    int64_t d() const override { return block_.d; }
    DataType type() const override { return block_.type; }
    VectorBlock read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const override;

  private:
    VectorBlock block_;
};

/// float64 rows in memory served as float32 (not copied: the caller keeps them
/// alive), for readers that take only float32 or uint8 rows (the GPU backend).
/// Each read converts its rows into the caller's scratch buffer, so the trainer
/// streams it like any other source and no float32 copy of all rows exists. The
/// CPU E-step reads float64 rows itself (MemoryVectorSource over a Float64
/// block); this source is for the others. Values outside float32's range become
/// ±inf, which check_finite then reports.
class Float64VectorSource : public VectorSource {
  public:
    Float64VectorSource(int64_t n, int64_t d, const double* x);
    int64_t ntotal() const override { return n_; }
    int64_t d() const override { return d_; }
    DataType type() const override { return DataType::Float32; }
    VectorBlock read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const override;

  private:
    int64_t n_, d_;
    const double* x_;
};

/// Rows [begin, begin + count) of another source, as a source of their own (a
/// rank's share of a file, in distributed training). Not owning: the base must
/// outlive it. Reads go straight to the base, so nothing is loaded up front.
class RowRangeSource : public VectorSource {
  public:
    RowRangeSource(const VectorSource& base, int64_t begin, int64_t count);
    int64_t ntotal() const override { return count_; }
    int64_t d() const override { return base_.d(); }
    DataType type() const override { return base_.type(); }
    VectorBlock read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const override;

  private:
    const VectorSource& base_;
    int64_t begin_;
    int64_t count_;
};

/// A read-only memory map of a whole file (closed on destruction).
class MappedFile {
  public:
    explicit MappedFile(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

/// A memory-mapped TEXMEX .fvecs (float32) or .bvecs (uint8) file: each record is
/// an int32 dimension followed by d elements. The header is validated on open
/// (size a whole number of records, positive and plausible d, first and last
/// records consistent); every row's dimension field is checked again when read.
class VecsFileSource : public VectorSource {
  public:
    /// The element type is taken from the extension (.fvecs / .bvecs) unless given.
    explicit VecsFileSource(const std::string& path);
    VecsFileSource(const std::string& path, DataType type);
    int64_t ntotal() const override { return n_; }
    int64_t d() const override { return d_; }
    DataType type() const override { return type_; }
    VectorBlock read(int64_t i0, int64_t n, std::vector<uint8_t>& scratch) const override;

  private:
    std::shared_ptr<MappedFile> file_;
    DataType type_;
    int64_t n_ = 0;
    int64_t d_ = 0;
    size_t record_bytes_ = 0;
};

/// The rows in [begin, end) of a uniform sample of m of the rows 0 .. N-1,
/// without replacement, ascending (Knuth's selection sampling). The sample is a
/// function of N, m and seed only: ranks holding consecutive ranges of the same
/// N rows pick, together, exactly the rows one process picks with [0, N).
/// O(end) time (one random draw per row before end), O(rows returned) memory.
std::vector<int64_t> sample_rows(int64_t N, int64_t m, int64_t seed, int64_t begin, int64_t end);

/// The given rows of any source (indices in any order), as float32: rows.size() * d floats.
std::vector<float> read_rows_as_float(const VectorSource& src, const std::vector<int64_t>& rows);

/// Reads rows [i0, i0+n) of any source as float32 into out (n * d floats).
void read_as_float(const VectorSource& src, int64_t i0, int64_t n, float* out);

/// Throws std::invalid_argument naming the first row and column that holds a NaN
/// or an infinity (uint8 blocks are always finite).
void check_finite(const VectorBlock& block, int64_t row_offset = 0);

} // namespace faiss_gmm
