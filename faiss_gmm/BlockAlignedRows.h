// The training rows one rank sums, cut into calls that start on the global
// multiples of the E-step's block (EStep::reproducible_block_rows: kReproducibleBlockRows
// of ReproducibleSum.h, or a multiple).
//
// Reproducible sums need every block's partial to be computed from the same
// rows whatever the number of ranks, so blocks are fixed by the global row
// index, not by where a rank's range happens to start. A block that straddles
// two ranks is summed whole by the rank where it starts: once per fit(), every
// rank sends the rows before its first block boundary (fewer than one block) to
// the others, and each keeps those of the ranks after it that complete its last
// block. Nothing here depends on FAISS.
#pragma once

#include <cstdint>
#include <vector>

#include "Communicator.h"
#include "VectorSource.h"

namespace faiss_gmm {

class BlockAlignedRows {
  public:
    /// local: this rank's rows, at `rows.range` of `rows.total` global rows.
    /// block_rows: the rows of a block (> 0, the same on every rank).
    /// rows_per_call: the wished call size, rounded to a multiple of the block
    /// (at least one block). Collective: every rank constructs it together.
    BlockAlignedRows(Communicator& comm, const VectorSource& local, const GlobalRows& rows, int64_t block_rows,
                     int64_t rows_per_call);

    /// Rows at the start of this rank's range that belong to a block started on
    /// an earlier rank (sent there by the constructor): fewer than one block.
    static int64_t head_rows(const GlobalRows& rows, int64_t block_rows);

    int64_t block_rows() const { return block_rows_; }

    int64_t ncalls() const;
    /// Call c's rows: views into the source (or into scratch, as its read()),
    /// or the block that completes this rank's range.
    VectorBlock call(int64_t c, std::vector<uint8_t>& scratch) const;
    /// Global index of call c's first row (for messages).
    int64_t first_global_row(int64_t c) const;
    /// Local rows of the source read by the calls: [first_local_row(), + rows_from_source()).
    int64_t first_local_row() const { return first_; }
    int64_t rows_from_source() const { return full_rows_; }
    /// Rows this rank sums (a whole number of blocks, except at the end of the data).
    int64_t rows() const { return full_rows_ + boundary_rows_; }

  private:
    const VectorSource& local_;
    int64_t block_rows_ = 0;
    int64_t first_ = 0;          // local index of the first row on a block boundary
    int64_t first_global_ = 0;   // its global index
    int64_t full_rows_ = 0;      // rows read from local_ (whole blocks, but for the data's last one)
    int64_t rows_per_call_ = 0;  // a multiple of the block
    std::vector<uint8_t> boundary_; // the last block: this rank's remaining rows, then the next ranks' head rows
    int64_t boundary_rows_ = 0;
};

} // namespace faiss_gmm
