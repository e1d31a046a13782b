#include "Communicator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>

#include "GmmModel.h"

namespace faiss_gmm {

void SingleProcessCommunicator::gather(const void* data, void* out, const std::vector<size_t>& counts, int) {
    if (counts.at(0) > 0) std::memcpy(out, data, counts[0]);
}

void SingleProcessCommunicator::abort(int code, const std::string& message) {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::exit(code);
}

namespace {

/// "rank 1: msg" lines, ranks with the same message grouped ("ranks 0, 1, 2: msg").
std::string describe_failures(const std::vector<char>& messages, const std::vector<int64_t>& sizes) {
    std::map<std::string, std::vector<int>> ranks_by_message;
    std::vector<std::string> order;
    size_t offset = 0;
    for (size_t r = 0; r < sizes.size(); offset += size_t(sizes[r]), r++) {
        if (sizes[r] == 0) continue; // this rank succeeded
        std::string m(messages.data() + offset, size_t(sizes[r]));
        if (ranks_by_message[m].empty()) order.push_back(m);
        ranks_by_message[m].push_back(int(r));
    }
    std::string out;
    for (const std::string& m : order) {
        const std::vector<int>& ranks = ranks_by_message[m];
        out += out.empty() ? "" : "\n";
        out += ranks.size() == 1 ? "rank " : "ranks ";
        for (size_t i = 0; i < ranks.size(); i++) out += (i ? ", " : "") + std::to_string(ranks[i]);
        out += ": " + m;
    }
    return out;
}

} // namespace

void check_all_ranks(Communicator& comm, const std::function<void()>& step) {
    if (comm.size() == 1) {
        step();
        return;
    }
    std::string message;
    try {
        step();
    } catch (const std::exception& e) {
        message = e.what();
        if (message.empty()) message = "failed (exception with an empty message)";
    } catch (...) {
        message = "failed (unknown exception)";
    }
    double failed = message.empty() ? 0.0 : 1.0;
    comm.allreduce(&failed, 1, ReduceOp::Max);
    if (failed == 0) return;
    // Only now, when the ranks know something failed, do the messages travel.
    std::vector<int64_t> sizes;
    const std::vector<char> messages =
            gather_to_root(comm, std::vector<char>(message.begin(), message.end()), 0, &sizes);
    const std::string report = comm.rank() == 0 ? describe_failures(messages, sizes) : std::string();
    throw DistributedError(broadcast_from(comm, report, 0));
}

std::vector<int64_t> values_of_all_ranks(Communicator& comm, int64_t value) {
    std::vector<double> slots(size_t(comm.size()), 0.0);
    slots[size_t(comm.rank())] = double(value);
    comm.allreduce_sum(slots.data(), slots.size());
    return std::vector<int64_t>(slots.begin(), slots.end());
}

void check_same_on_all_ranks(Communicator& comm, const std::vector<int64_t>& values, const std::string& what,
                             const std::function<std::string(const std::vector<int64_t>&)>& describe) {
    if (comm.size() == 1) return;
    const size_t n = values.size();
    std::vector<double> slots(n * size_t(comm.size()), 0.0);
    std::copy(values.begin(), values.end(), slots.begin() + n * size_t(comm.rank()));
    comm.allreduce_sum(slots.data(), slots.size());
    std::vector<std::vector<int64_t>> by_rank(size_t(comm.size()));
    bool same = true;
    for (size_t r = 0; r < by_rank.size(); r++) {
        by_rank[r].assign(slots.begin() + r * n, slots.begin() + (r + 1) * n);
        same = same && by_rank[r] == by_rank[0];
    }
    if (same) return;
    std::string message = what;
    for (size_t r = 0; r < by_rank.size(); r++) message += "\n  rank " + std::to_string(r) + ": " + describe(by_rank[r]);
    throw DistributedError(message);
}

RowRange rank_row_range(int64_t n, int rank, int size) {
    const int64_t base = n / size, longer = n % size;
    RowRange r;
    r.begin = rank * base + std::min<int64_t>(rank, longer);
    r.end = r.begin + base + (rank < longer ? 1 : 0);
    return r;
}

GlobalRows locate_rows(Communicator& comm, int64_t local_rows) {
    const std::vector<int64_t> counts = values_of_all_ranks(comm, local_rows);
    GlobalRows g;
    for (int r = 0; r < comm.size(); r++) {
        if (r < comm.rank()) g.range.begin += counts[size_t(r)];
        g.total += counts[size_t(r)];
    }
    g.range.end = g.range.begin + local_rows;
    return g;
}

void broadcast_model(Communicator& comm, GmmModel& model, int root) {
    if (comm.size() == 1) return;
    int64_t shape[3] = {model.K, model.d, int64_t(model.covariance_type)};
    comm.broadcast(shape, sizeof(shape), root);
    if (comm.rank() != root) model = GmmModel(shape[0], shape[1], CovarianceType(shape[2]));
    comm.broadcast(model.log_weights.data(), model.log_weights.size() * sizeof(float), root);
    comm.broadcast(model.means.data(), model.means.size() * sizeof(float), root);
    comm.broadcast(model.variances.data(), model.variances.size() * sizeof(float), root);
}

} // namespace faiss_gmm
