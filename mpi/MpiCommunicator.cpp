#include "MpiCommunicator.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace faiss_gmm::mpi {

namespace {

// MPI counts are int: larger buffers travel in pieces of at most this many
// elements (1 GiB of bytes, 2 GiB of doubles).
constexpr size_t kMaxPiece = size_t(1) << 30;

// A tag of its own, so gather() messages never match another point-to-point message.
constexpr int kGatherTag = 0x4647;

void check(int rc, const char* call) {
    // The default error handler (MPI_ERRORS_ARE_FATAL) aborts the job before a
    // call can fail; this catches communicators set to return errors instead.
    if (rc != MPI_SUCCESS) {
        char text[MPI_MAX_ERROR_STRING];
        int length = 0;
        MPI_Error_string(rc, text, &length);
        throw std::runtime_error(std::string(call) + " failed: " + std::string(text, size_t(length)));
    }
}

/// Calls piece(offset, count) over [0, n) in pieces of at most kMaxPiece.
template <class F>
void in_pieces(size_t n, F&& piece) {
    for (size_t offset = 0; offset < n; offset += kMaxPiece) piece(offset, int(std::min(kMaxPiece, n - offset)));
}

} // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
}

MpiSession::~MpiSession() {
    MPI_Finalize();
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

void MpiCommunicator::allreduce(double* values, size_t n, ReduceOp op) {
    in_pieces(n, [&](size_t offset, int count) {
        if (op != ReduceOp::Sum) {
            // Minimum and maximum are exact: any reduction order gives every rank the same bits.
            check(MPI_Allreduce(MPI_IN_PLACE, values + offset, count, MPI_DOUBLE, op == ReduceOp::Min ? MPI_MIN : MPI_MAX,
                                comm_),
                  "MPI_Allreduce");
            return;
        }
        // A floating-point sum depends on its order, and MPI does not promise that
        // MPI_Allreduce adds in the same order on every rank. The ranks take
        // decisions on these sums (convergence, re-seeding), so they must hold the
        // same bits: the sum is formed once, on rank 0 (MPI_Reduce, the
        // reduce-then-broadcast the MPI standard describes allreduce as), and sent
        // to everyone. The volume is that of an allreduce.
        check(MPI_Reduce(rank_ == 0 ? MPI_IN_PLACE : values + offset, rank_ == 0 ? values + offset : nullptr, count,
                         MPI_DOUBLE, MPI_SUM, 0, comm_),
              "MPI_Reduce");
        check(MPI_Bcast(values + offset, count, MPI_DOUBLE, 0, comm_), "MPI_Bcast");
    });
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
    in_pieces(bytes, [&](size_t offset, int count) {
        check(MPI_Bcast(static_cast<uint8_t*>(data) + offset, count, MPI_BYTE, root, comm_), "MPI_Bcast");
    });
}

void MpiCommunicator::gather(const void* data, void* out, const std::vector<size_t>& counts, int root) {
    // Point-to-point rather than MPI_Gatherv: MPI_Gatherv's int displacements cap
    // the gathered total at 2 GiB, and the initialization sample (K · 256 rows)
    // can be larger. Root receives rank after rank, straight into place.
    if (counts.size() != size_t(size_)) {
        throw std::invalid_argument("MpiCommunicator::gather: " + std::to_string(counts.size()) + " counts for " +
                                    std::to_string(size_) + " ranks");
    }
    if (rank_ != root) {
        in_pieces(counts[size_t(rank_)], [&](size_t offset, int count) {
            check(MPI_Send(static_cast<const uint8_t*>(data) + offset, count, MPI_BYTE, root, kGatherTag, comm_),
                  "MPI_Send");
        });
        return;
    }
    auto* dst = static_cast<uint8_t*>(out);
    for (int r = 0; r < size_; r++) {
        const size_t n = counts[size_t(r)];
        if (r == root) {
            if (n > 0) std::memcpy(dst, data, n);
        } else {
            in_pieces(n, [&](size_t offset, int count) {
                check(MPI_Recv(dst + offset, count, MPI_BYTE, r, kGatherTag, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
            });
        }
        dst += n;
    }
}

void MpiCommunicator::abort(int code, const std::string& message) {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    MPI_Abort(comm_, code);
    std::_Exit(code); // MPI_Abort does not return; this keeps [[noreturn]] true regardless
}

} // namespace faiss_gmm::mpi
