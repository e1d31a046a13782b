// Communication between the processes of a distributed training run: one
// process per rank, each holding a contiguous range of the rows (rank 0 the
// first range, rank 1 the next, ...). The statistics of the E-step are sums over
// rows, so EM distributes by summing them; everything else a rank does is
// derived from such sums, so every rank takes the same decisions and ends with
// the same model. The interface has no MPI dependency: mpi/ implements it over
// MPI, the tests over threads, and SingleProcessCommunicator is the one-rank
// case a plain GmmTrainer uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "VectorSource.h"

namespace faiss_gmm {

struct GmmModel;

enum class ReduceOp : int { Sum = 0, Min = 1, Max = 2 };

class Communicator {
  public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;

    /// Element-wise reduction of values[0, n) over all ranks, in place. Every
    /// rank receives bitwise the same result: decisions taken on it
    /// (convergence, re-seeding) must agree, or the ranks would stop calling
    /// the same collectives.
    virtual void allreduce(double* values, size_t n, ReduceOp op) = 0;
    /// Copies root's `bytes` bytes at data to data on every other rank.
    virtual void broadcast(void* data, size_t bytes, int root) = 0;
    /// Every rank's bytes at data, concatenated in rank order into out at root.
    /// counts[r]: the byte count of rank r (any, 0 included), the same vector on
    /// every rank; out holds their sum at root and is not used elsewhere.
    virtual void gather(const void* data, void* out, const std::vector<size_t>& counts, int root) = 0;
    /// Ends every rank of the job with exit status `code` after printing message
    /// to stderr. For failures the ranks cannot agree on (an error outside
    /// check_all_ranks, when others may be waiting in a collective).
    [[noreturn]] virtual void abort(int code, const std::string& message) = 0;

    void allreduce_sum(double* values, size_t n) { allreduce(values, n, ReduceOp::Sum); }

    /// With seconds > 0, a rank that does not reach a collective within that time
    /// ends the job with a message naming it and the step (MpiCommunicator); 0 waits
    /// for ever. Communicators whose collectives cannot hang ignore it.
    virtual void set_collective_timeout(double /*seconds*/) {}

    /// What the ranks are doing, in words ("E-step of iteration 3"), for messages
    /// about a rank that does not reach a collective (MpiCommunicator's timeout).
    void set_step(std::string step) { step_ = std::move(step); }
    const std::string& step() const { return step_; }

  private:
    std::string step_ = "start-up";
};

/// One rank: reductions and broadcasts leave the data as it is.
class SingleProcessCommunicator : public Communicator {
  public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void allreduce(double*, size_t, ReduceOp) override {}
    void broadcast(void*, size_t, int) override {}
    void gather(const void* data, void* out, const std::vector<size_t>& counts, int root) override;
    [[noreturn]] void abort(int code, const std::string& message) override;
};

/// A failure every rank agreed on (check_all_ranks): thrown on every rank with
/// the same message, so each can end cleanly without waiting for the others.
class DistributedError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// Runs step() on this rank, then makes the ranks agree on the outcome: when it
/// threw on any rank, every rank throws DistributedError naming the ranks that
/// failed and their messages. Any work that can fail on some ranks only (I/O,
/// non-finite data, a GPU error) must run inside it, so that no rank leaves
/// while the others wait for it in a collective; step() itself must not
/// communicate (a rank that threw would skip its collectives). With one rank,
/// step() runs alone and its exceptions pass through unchanged.
void check_all_ranks(Communicator& comm, const std::function<void()>& step);

/// value of every rank, indexed by rank (exact for |value| < 2^53).
std::vector<int64_t> values_of_all_ranks(Communicator& comm, int64_t value);

/// Throws DistributedError on every rank unless every rank passed the same
/// values; the message is `what`, then describe(values) of each rank.
void check_same_on_all_ranks(Communicator& comm, const std::vector<int64_t>& values, const std::string& what,
                             const std::function<std::string(const std::vector<int64_t>&)>& describe);

/// A half-open range of row indices.
struct RowRange {
    int64_t begin = 0;
    int64_t end = 0;
    int64_t size() const { return end - begin; }
};

/// The rows of `rank` when n rows are split into `size` contiguous ranges in
/// rank order, the first n % size ranges one row longer.
RowRange rank_row_range(int64_t n, int rank, int size);

/// Where this rank's local rows sit among the rows of all ranks (ranks hold
/// consecutive ranges, in rank order): their range, and the total count.
struct GlobalRows {
    RowRange range;
    int64_t total = 0;
};
GlobalRows locate_rows(Communicator& comm, int64_t local_rows);

/// Every rank's elements, concatenated at root in rank order (so rows come in
/// global order when the ranks hold consecutive ranges); empty elsewhere.
/// counts (optional): every rank's element count, on every rank.
template <class T>
std::vector<T> gather_to_root(Communicator& comm, std::vector<T> local, int root,
                              std::vector<int64_t>* counts = nullptr) {
    const std::vector<int64_t> n = values_of_all_ranks(comm, int64_t(local.size()));
    if (counts) *counts = n;
    if (comm.size() == 1) return local;
    std::vector<size_t> bytes(n.size());
    size_t total = 0;
    for (size_t r = 0; r < n.size(); r++) {
        bytes[r] = size_t(n[r]) * sizeof(T);
        total += size_t(n[r]);
    }
    std::vector<T> out(comm.rank() == root ? total : 0);
    comm.gather(local.data(), out.data(), bytes, root);
    return out;
}

/// root's `value` (a std::string or std::vector of trivially copyable elements) on every rank.
template <class Container>
Container broadcast_from(Communicator& comm, Container value, int root) {
    uint64_t size = value.size();
    comm.broadcast(&size, sizeof(size), root);
    value.resize(size);
    comm.broadcast(value.data(), size * sizeof(value[0]), root);
    return value;
}

/// Copies root's model (any shape) into `model` on every rank.
void broadcast_model(Communicator& comm, GmmModel& model, int root);

} // namespace faiss_gmm
