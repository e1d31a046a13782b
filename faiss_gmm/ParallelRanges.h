// A loop over [0, total) split across threads of our own: the core links no OpenMP runtime
// (cmake/faiss_gmm_core.cmake), and gpu/ builds it standalone. Only where there is enough work
// to pay for starting the threads (~10 µs each).
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace faiss_gmm {

/// Calls fn(begin, end) on contiguous pieces of [0, total) that cover it once, each at least
/// min_per_thread elements (one piece when total is smaller), at most one per hardware thread;
/// the first piece runs on the calling thread. fn must not throw.
template <class Fn>
void parallel_ranges(int64_t total, int64_t min_per_thread, const Fn& fn) {
    const int64_t nt =
            std::clamp<int64_t>(total / min_per_thread, 1, std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::thread> threads;
    for (int64_t t = 1; t < nt; t++) {
        threads.emplace_back([&fn, total, nt, t] { fn(total * t / nt, total * (t + 1) / nt); });
    }
    fn(int64_t(0), total / nt);
    for (std::thread& th : threads) th.join();
}

} // namespace faiss_gmm
