#include "MpiCommunicator.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <chrono>

namespace faiss_gmm::mpi {

namespace {

// MPI counts are int: larger buffers travel in pieces of at most this many
// elements (1 GiB of bytes, 2 GiB of doubles).
constexpr size_t kMaxPiece = size_t(1) << 30;

// A tag of its own, so gather() messages never match another point-to-point message.
constexpr int kGatherTag = 0x4647;
// The collective timeout's messages: arrival reports and go signals before a
// collective, and the pings rank 0 sends (and the others answer while they wait)
// to find which rank stopped during one.
constexpr int kArrivalTag = 0x4648;
constexpr int kGoTag = 0x4649;
constexpr int kPingTag = 0x464a;
constexpr int kPongTag = 0x464b;

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

std::string seconds_text(double s) {
    char text[32];
    std::snprintf(text, sizeof(text), "%g", s);
    return text;
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

bool MpiCommunicator::wait(std::vector<MPI_Request>& requests, double seconds) {
    if (!(timeout_s_ > 0)) {
        check(MPI_Waitall(int(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
        return true;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    for (;;) {
        int done = 0;
        check(MPI_Testall(int(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
        if (done) return true;
        if (rank_ != 0) answer_pings();
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

void MpiCommunicator::answer_pings() {
    int pending = 0;
    check(MPI_Iprobe(0, kPingTag, comm_, &pending, MPI_STATUS_IGNORE), "MPI_Iprobe");
    while (pending) {
        long long seq = 0;
        check(MPI_Recv(&seq, 1, MPI_LONG_LONG, 0, kPingTag, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
        check(MPI_Send(&seq, 1, MPI_LONG_LONG, 0, kPongTag, comm_), "MPI_Send");
        check(MPI_Iprobe(0, kPingTag, comm_, &pending, MPI_STATUS_IGNORE), "MPI_Iprobe");
    }
}

std::string MpiCommunicator::where() const {
    return "collective " + std::to_string(sequence_) + " (" + step() + ")";
}

void MpiCommunicator::arrive() {
    if (!(timeout_s_ > 0) || size_ == 1) return;
    const long long seq = ++sequence_;
    if (rank_ == 0) {
        std::vector<long long> got(size_t(size_), 0);
        std::vector<MPI_Request> requests(size_t(size_ - 1));
        for (int r = 1; r < size_; r++) {
            check(MPI_Irecv(&got[size_t(r)], 1, MPI_LONG_LONG, r, kArrivalTag, comm_, &requests[size_t(r - 1)]),
                  "MPI_Irecv");
        }
        if (!wait(requests, timeout_s_)) {
            std::string missing;
            for (int r = 1; r < size_; r++) {
                int done = 0;
                check(MPI_Test(&requests[size_t(r - 1)], &done, MPI_STATUS_IGNORE), "MPI_Test");
                if (!done) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
            }
            abort(1, "faiss-gmm (MPI): rank(s) " + missing + " did not reach " + where() + " within " +
                             seconds_text(timeout_s_) + " s (--collective-timeout): hung or stopped; ending the job");
        }
        for (int r = 1; r < size_; r++) {
            if (got[size_t(r)] != seq) {
                abort(1, "faiss-gmm (MPI): rank " + std::to_string(r) + " is at collective " +
                                 std::to_string(got[size_t(r)]) + " while rank 0 is at " + where() +
                                 ": the ranks disagree on the steps (a bug)");
            }
            check(MPI_Send(&seq, 1, MPI_LONG_LONG, r, kGoTag, comm_), "MPI_Send");
        }
        return;
    }
    std::vector<MPI_Request> requests(2);
    long long go = 0;
    check(MPI_Isend(&seq, 1, MPI_LONG_LONG, 0, kArrivalTag, comm_, &requests[0]), "MPI_Isend");
    check(MPI_Irecv(&go, 1, MPI_LONG_LONG, 0, kGoTag, comm_, &requests[1]), "MPI_Irecv");
    if (!wait(requests, 2 * timeout_s_ + 1)) {
        abort(1, "faiss-gmm (MPI): rank " + std::to_string(rank_) + ": rank 0 did not reach " + where() +
                         " within " + seconds_text(2 * timeout_s_ + 1) + " s (--collective-timeout): hung or stopped");
    }
}

void MpiCommunicator::complete(std::vector<MPI_Request>& requests) {
    if (wait(requests, rank_ == 0 ? timeout_s_ : 2 * timeout_s_ + 1)) return;
    if (rank_ != 0) {
        abort(1, "faiss-gmm (MPI): rank " + std::to_string(rank_) + ": " + where() + " did not complete within " +
                         seconds_text(2 * timeout_s_ + 1) + " s (--collective-timeout): another rank stopped in it");
    }
    // Every rank arrived, and one stopped inside the collective: the ranks that
    // wait in it answer pings, the stopped one does not.
    std::vector<long long> pong(size_t(size_), 0);
    std::vector<MPI_Request> pings(size_t(size_ - 1)), pongs(size_t(size_ - 1));
    for (int r = 1; r < size_; r++) {
        check(MPI_Isend(&sequence_, 1, MPI_LONG_LONG, r, kPingTag, comm_, &pings[size_t(r - 1)]), "MPI_Isend");
        check(MPI_Irecv(&pong[size_t(r)], 1, MPI_LONG_LONG, r, kPongTag, comm_, &pongs[size_t(r - 1)]), "MPI_Irecv");
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < deadline) {
        int done = 0;
        check(MPI_Testall(int(pongs.size()), pongs.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
        if (done) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::string silent;
    for (int r = 1; r < size_; r++) {
        int done = 0;
        check(MPI_Test(&pongs[size_t(r - 1)], &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (!done) silent += (silent.empty() ? "" : ", ") + std::to_string(r);
    }
    abort(1, "faiss-gmm (MPI): rank(s) " + (silent.empty() ? std::string("?") : silent) + " did not complete " +
                     where() + " within " + seconds_text(timeout_s_) +
                     " s (--collective-timeout): hung or stopped; ending the job");
}

void MpiCommunicator::allreduce(double* values, size_t n, ReduceOp op) {
    arrive();
    in_pieces(n, [&](size_t offset, int count) {
        std::vector<MPI_Request> request(1);
        if (op != ReduceOp::Sum) {
            // Minimum and maximum are exact: any reduction order gives every rank the same bits.
            check(MPI_Iallreduce(MPI_IN_PLACE, values + offset, count, MPI_DOUBLE,
                                 op == ReduceOp::Min ? MPI_MIN : MPI_MAX, comm_, &request[0]),
                  "MPI_Iallreduce");
            complete(request);
            return;
        }
        // A floating-point sum depends on its order, and MPI does not promise that
        // MPI_Allreduce adds in the same order on every rank. The ranks take
        // decisions on these sums (convergence, re-seeding), so they must hold the
        // same bits: the sum is formed once, on rank 0 (MPI_Reduce, the
        // reduce-then-broadcast the MPI standard describes allreduce as), and sent
        // to everyone. The volume is that of an allreduce. (The trainer's large
        // sums are integer limbs, exact in any order, but not every caller's.)
        check(MPI_Ireduce(rank_ == 0 ? MPI_IN_PLACE : values + offset, rank_ == 0 ? values + offset : nullptr, count,
                          MPI_DOUBLE, MPI_SUM, 0, comm_, &request[0]),
              "MPI_Ireduce");
        complete(request);
        check(MPI_Ibcast(values + offset, count, MPI_DOUBLE, 0, comm_, &request[0]), "MPI_Ibcast");
        complete(request);
    });
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
    arrive();
    in_pieces(bytes, [&](size_t offset, int count) {
        std::vector<MPI_Request> request(1);
        check(MPI_Ibcast(static_cast<uint8_t*>(data) + offset, count, MPI_BYTE, root, comm_, &request[0]), "MPI_Ibcast");
        complete(request);
    });
}

void MpiCommunicator::gather(const void* data, void* out, const std::vector<size_t>& counts, int root) {
    arrive();
    // Point-to-point rather than MPI_Gatherv: MPI_Gatherv's int displacements cap
    // the gathered total at 2 GiB, and the initialization sample (K · 256 rows)
    // can be larger. Root receives rank after rank, straight into place.
    if (counts.size() != size_t(size_)) {
        throw std::invalid_argument("MpiCommunicator::gather: " + std::to_string(counts.size()) + " counts for " +
                                    std::to_string(size_) + " ranks");
    }
    std::vector<MPI_Request> requests;
    if (rank_ != root) {
        in_pieces(counts[size_t(rank_)], [&](size_t offset, int count) {
            requests.emplace_back();
            check(MPI_Isend(static_cast<const uint8_t*>(data) + offset, count, MPI_BYTE, root, kGatherTag, comm_,
                            &requests.back()),
                  "MPI_Isend");
        });
        complete(requests);
        return;
    }
    auto* dst = static_cast<uint8_t*>(out);
    for (int r = 0; r < size_; r++) {
        const size_t n = counts[size_t(r)];
        if (r == root) {
            if (n > 0) std::memcpy(dst, data, n);
        } else {
            in_pieces(n, [&](size_t offset, int count) {
                requests.emplace_back();
                check(MPI_Irecv(dst + offset, count, MPI_BYTE, r, kGatherTag, comm_, &requests.back()), "MPI_Irecv");
            });
        }
        dst += n;
    }
    complete(requests);
}

void MpiCommunicator::abort(int code, const std::string& message) {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    MPI_Abort(comm_, code);
    std::_Exit(code); // MPI_Abort does not return; this keeps [[noreturn]] true regardless
}

} // namespace faiss_gmm::mpi
