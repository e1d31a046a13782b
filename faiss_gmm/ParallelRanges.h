// A loop over [0, total) split across threads of our own: the core links no OpenMP runtime
// (cmake/faiss_gmm_core.cmake), and gpu/ builds it standalone. The threads are a pool started
// once (ParallelRanges.cpp): a call wakes them (a few µs) instead of starting threads (~15 µs
// each), which is what a GPU's EM iteration paid per pass over its sums.
#pragma once

#include <algorithm>
#include <cstdint>

namespace faiss_gmm {

namespace detail {

/// Runs piece(context, t) once for every t in [0, pieces), on the calling thread and the pool's
/// workers; returns when all are done. On the caller alone where the pool cannot help: inside a
/// piece (a nested call), or while another thread's call holds the pool.
void run_pieces(int64_t pieces, void (*piece)(const void* context, int64_t t), const void* context);

/// The threads a call can use: the CPUs this process may run on (its affinity mask, as taskset or
/// a container's cpuset leaves it; not std::thread::hardware_concurrency, which counts the
/// machine's), the caller's included.
int pool_threads();

} // namespace detail

/// Calls fn(begin, end) on contiguous pieces of [0, total) that cover it once, each at least
/// min_per_piece elements (one piece when total is smaller), at most kPiecesPerThread per thread
/// of the pool (detail::pool_threads()): threads claim pieces as they come (a worker that wakes
/// late takes fewer). Which thread runs which piece varies: fn must give the same results for any
/// assignment, and must not throw.
constexpr int64_t kPiecesPerThread = 4;
template <class Fn>
void parallel_ranges(int64_t total, int64_t min_per_piece, const Fn& fn) {
    const int64_t pieces = std::clamp<int64_t>(total / min_per_piece, 1, kPiecesPerThread * detail::pool_threads());
    if (pieces == 1) {
        fn(int64_t(0), total);
        return;
    }
    struct Context {
        const Fn& fn;
        int64_t total, pieces;
    } context{fn, total, pieces};
    detail::run_pieces(pieces, [](const void* c, int64_t t) {
        const Context& x = *static_cast<const Context*>(c);
        x.fn(x.total * t / x.pieces, x.total * (t + 1) / x.pieces);
    }, &context);
}

} // namespace faiss_gmm
