#include "BlockAlignedRows.h"

#include <algorithm>
#include <stdexcept>

namespace faiss_gmm {

namespace {

int64_t round_up(int64_t v, int64_t m) {
    return (v + m - 1) / m * m;
}

} // namespace

int64_t BlockAlignedRows::head_rows(const GlobalRows& rows, int64_t block_rows) {
    return std::min(round_up(rows.range.begin, block_rows), rows.range.end) - rows.range.begin;
}

BlockAlignedRows::BlockAlignedRows(Communicator& comm, const VectorSource& local, const GlobalRows& rows,
                                   int64_t block_rows, int64_t rows_per_call)
        : local_(local), block_rows_(block_rows) {
    if (block_rows <= 0) throw std::invalid_argument("BlockAlignedRows: block_rows must be > 0");
    const int64_t R = block_rows;
    rows_per_call_ = std::max<int64_t>(R, rows_per_call / R * R);
    const int64_t b = rows.range.begin, e = rows.range.end;
    const int64_t first_boundary = std::min(round_up(b, R), e);
    const int64_t head = first_boundary - b; // rows that belong to a block started on an earlier rank
    first_ = head;
    first_global_ = first_boundary;

    // This rank's blocks: [first_boundary, own_end); the rows of [e, own_end) are
    // the heads of the next ranks.
    const int64_t own_end = first_boundary < e ? std::min(round_up(e, R), rows.total) : e;
    const int64_t tail = own_end - e;
    // With no rows to take from the next ranks, the last (partial) block is read
    // from the source like the others; else it is assembled in boundary_.
    full_rows_ = tail > 0 ? (e - first_boundary) / R * R : e - first_boundary;
    const int64_t remainder = e - first_boundary - full_rows_;

    const size_t row_bytes = size_t(local.d()) * element_size(local.type());
    std::vector<uint8_t> scratch;
    std::vector<uint8_t> heads; // every rank's head rows, in rank order, on every rank
    if (comm.size() > 1) {
        std::vector<uint8_t> mine;
        if (head > 0) {
            const VectorBlock h = local.read(0, head, scratch);
            mine.assign(h.row(0), h.row(0) + size_t(head) * row_bytes);
        }
        std::vector<int64_t> counts;
        heads = broadcast_from(comm, gather_to_root(comm, std::move(mine), 0, &counts), 0);
        // Skip the heads of this rank and the ones before it: those after it start at row e.
        size_t skip = 0;
        for (size_t r = 0; r < counts.size() && r <= size_t(comm.rank()); r++) skip += size_t(counts[r]);
        if (heads.size() < skip + size_t(tail) * row_bytes) {
            throw std::logic_error("BlockAlignedRows: the next ranks hold fewer rows than the last block needs");
        }
        heads.erase(heads.begin(), heads.begin() + long(skip));
    } else if (tail > 0) {
        throw std::logic_error("BlockAlignedRows: rows past the end of a single rank's range");
    }
    boundary_rows_ = remainder + tail;
    if (boundary_rows_ > 0) {
        boundary_.resize(size_t(boundary_rows_) * row_bytes);
        if (remainder > 0) {
            const VectorBlock r = local.read(first_ + full_rows_, remainder, scratch);
            std::copy(r.row(0), r.row(0) + size_t(remainder) * row_bytes, boundary_.begin());
        }
        std::copy(heads.begin(), heads.begin() + long(size_t(tail) * row_bytes),
                  boundary_.begin() + long(size_t(remainder) * row_bytes));
    }
}

int64_t BlockAlignedRows::ncalls() const {
    return (full_rows_ + rows_per_call_ - 1) / rows_per_call_ + (boundary_rows_ > 0 ? 1 : 0);
}

int64_t BlockAlignedRows::first_global_row(int64_t c) const {
    return first_global_ + std::min(c * rows_per_call_, full_rows_);
}

VectorBlock BlockAlignedRows::call(int64_t c, std::vector<uint8_t>& scratch) const {
    const int64_t i0 = c * rows_per_call_;
    if (i0 < full_rows_) return local_.read(first_ + i0, std::min(rows_per_call_, full_rows_ - i0), scratch);
    if (boundary_rows_ == 0 || c != ncalls() - 1) throw std::out_of_range("BlockAlignedRows::call: no such call");
    return VectorBlock{boundary_.data(), local_.type(), boundary_rows_, local_.d()};
}

} // namespace faiss_gmm
